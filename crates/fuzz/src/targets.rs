//! The targets: what each decodes, and what it checks once something decodes.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use flotilla_proto::convert::parse_spec_document;
use flotilla_proto::v1;
use flotilla_raft_types::wire::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, SnapshotResponse,
    VoteRequest, VoteResponse,
};
use flotilla_raft_types::{Entry, NodeId, SnapshotMeta, Vote};
use flotilla_security::{ca, cred, identity, Ca};
use flotilla_types::{
    Availability, ClientRole, Command, NodeRegistration, RolloutOp, SecurityOp, ServiceSpec, State, TaskReport,
};
use openraft::error::{Fatal, InstallSnapshotError, RaftError};
use openraft::EntryPayload;

use crate::checks::{self, halves, text};
use crate::{select, Message, Target};

/// A protobuf message, decoded and re-encoded, then `$then` on it.
macro_rules! proto {
    ($ty:ident) => {
        Message {
            name: stringify!($ty),
            decode: |d| {
                checks::proto::<v1::$ty>(d);
            },
        }
    };
    ($ty:ident, $then:expr) => {
        Message {
            name: stringify!($ty),
            decode: |d| {
                if let Some(m) = checks::proto::<v1::$ty>(d) {
                    let then: fn(&v1::$ty) = $then;
                    then(&m);
                }
            },
        }
    };
}

/// A JSON value (the Raft codec), decoded and re-encoded.
macro_rules! json {
    ($name:literal, $ty:ty) => {
        Message {
            name: concat!("json:", $name),
            decode: |d| {
                checks::json::<$ty>(d);
            },
        }
    };
}

const JSON_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1e309",
    "-0",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "\\u0000",
    "\\ud800",
    "\"\":",
    "{}",
    "[]",
];

/// Boundary varints and wire-type bytes for protobuf.
const PROTO_TOKENS: &[&str] = &[
    "\u{8}", "\u{a}", "\u{10}", "\u{12}", "\u{18}", "\u{1a}", "\u{20}", "\u{22}", "\u{28}", "\u{30}", "\u{3a}",
    "\u{4a}", "\u{7f}", "\u{0}",
];

// ---------------------------------------------------------------------------------------
// spec

pub const SPEC: Target = Target {
    name: "spec",
    messages: &[Message {
        name: "ServiceSpec",
        decode: spec,
    }],
    tokens: &[
        "name: ",
        "image: ",
        "command: ",
        "args: ",
        "env: ",
        "replicas: ",
        "resources: ",
        "cpu_millis: ",
        "memory_mb: ",
        "ports: ",
        "container: ",
        "host: ",
        "protocol: ",
        "tcp",
        "udp",
        "health_check: ",
        "exec: ",
        "http: ",
        "port: ",
        "path: ",
        "interval: ",
        "timeout: ",
        "retries: ",
        "start_period: ",
        "restart: ",
        "condition: ",
        "on-failure",
        "always",
        "never",
        "max_attempts: ",
        "delay: ",
        "max_delay: ",
        "placement: ",
        "constraints: ",
        "max_per_node: ",
        "labels: ",
        "stop_grace: ",
        "update: ",
        "parallelism: ",
        "order: ",
        "stop-first",
        "start-first",
        "monitor: ",
        "failure_action: ",
        "pause",
        "rollback",
        "continue",
        "max_failure_ratio: ",
        "history: ",
        "spec: ",
        "version: ",
        "created_at: ",
        "updated_at: ",
        "\n",
        "\n  ",
        "\n- ",
        "---\n",
        "...\n",
        "- ",
        ": ",
        "{",
        "}",
        "[",
        "]",
        "\"",
        "'",
        ",",
        "&a ",
        "*a",
        "<<: ",
        "!!str ",
        "!!binary ",
        "? ",
        "|\n",
        ">-\n",
        "# ",
        "~",
        "null",
        "true",
        "0x1f",
        "0o17",
        ".nan",
        ".inf",
        "-.inf",
        "1e3",
        "10s",
        "500ms",
        "1m30s",
        "0",
        "1ns",
        "18446744073709551615s",
        "== ",
        "!= ",
        " in (",
        ")",
        "zone",
        "4294967295",
        "4294967296",
        "-1",
        "1.5",
        "0.25",
        "\t",
        "\r\n",
        "\u{feff}",
    ],
    run: spec,
};

/// The spec parser: `ServiceSpec::parse` and `parse_many` (what `flotilla apply` reads)
/// and `parse_spec_document` (what a node reads from `ApplyRequest.spec_document`), which
/// must agree; every spec they return is valid and survives its JSON and YAML.
pub fn spec(data: &[u8]) {
    let document = parse_spec_document(data);
    let many = ServiceSpec::parse_many(&text(data));
    // `parse` is `parse_many` expecting one spec: it is not run a third time.
    match (&document, &many) {
        (Ok(s), Ok(all)) => assert!(all.len() == 1 && all[0] == *s, "a spec document reads as its text"),
        (Ok(_), Err(e)) => panic!("a spec document is accepted, its text refused: {e}"),
        (Err(_), Ok(all)) if std::str::from_utf8(data).is_ok() => {
            assert_ne!(all.len(), 1, "a spec document is refused, its text accepted")
        }
        _ => {}
    }
    if let Ok(all) = many {
        for s in &all {
            checks::spec(s);
        }
    }
}

// ---------------------------------------------------------------------------------------
// raft

type AppendEntriesResult = Result<AppendEntriesResponse, RaftError<NodeId>>;
type VoteResult = Result<VoteResponse, RaftError<NodeId>>;
type InstallSnapshotResult = Result<InstallSnapshotResponse, RaftError<NodeId, InstallSnapshotError>>;
type SnapshotResult = Result<SnapshotResponse, Fatal<NodeId>>;

static RAFT_MESSAGES: &[Message] = &[
    proto!(RaftMessage, |m| {
        // The server decodes `data` as the request of the RPC called, the client as its
        // answer.
        if let Some(rpc) = checks::json::<AppendEntriesRequest>(&m.data) {
            append_entries(&rpc);
        }
        if let Some(rpc) = checks::json::<VoteRequest>(&m.data) {
            let _ = rpc.vote.leader_id().voted_for();
        }
        checks::json::<AppendEntriesResult>(&m.data);
        checks::json::<VoteResult>(&m.data);
        checks::json::<SnapshotResult>(&m.data);
    }),
    Message {
        name: "json:AppendEntriesRequest",
        decode: |d| {
            if let Some(rpc) = checks::json::<AppendEntriesRequest>(d) {
                append_entries(&rpc);
            }
        },
    },
    json!("VoteRequest", VoteRequest),
    json!("InstallSnapshotRequest", InstallSnapshotRequest),
    Message {
        name: "json:Entry",
        decode: |d| {
            if let Some(entry) = checks::json::<Entry>(d) {
                if let EntryPayload::Normal(cmd) = &entry.payload {
                    apply(std::slice::from_ref(cmd));
                }
            }
        },
    },
    Message {
        name: "json:Command",
        decode: |d| {
            if let Some(cmd) = checks::json_eq::<Command>(d) {
                apply(std::slice::from_ref(&cmd));
            }
        },
    },
    json!("AppendEntriesResult", AppendEntriesResult),
    json!("VoteResult", VoteResult),
    json!("InstallSnapshotResult", InstallSnapshotResult),
    json!("SnapshotResult", SnapshotResult),
];

pub const RAFT: Target = Target {
    name: "raft",
    messages: RAFT_MESSAGES,
    tokens: JSON_TOKENS,
    run: raft,
};

/// Raft RPCs: the `RaftMessage` envelope and the JSON it carries, requests (append
/// entries, vote, install snapshot) and answers, log entries and the `Command`s in them,
/// which are then applied to a small state (`State::apply` must not panic either).
pub fn raft(data: &[u8]) {
    select(RAFT_MESSAGES, data)
}

fn append_entries(rpc: &AppendEntriesRequest) {
    let _ = rpc.vote.leader_id().voted_for();
    let _ = rpc.leader_commit.map_or(0, |l| l.index);
    let cmds: Vec<Command> = rpc
        .entries
        .iter()
        .filter_map(|e| match &e.payload {
            EntryPayload::Normal(cmd) => Some(cmd.clone()),
            _ => None,
        })
        .collect();
    apply(&cmds);
}

/// Applies `cmds` in order to a copy of a small cluster's state, which then still
/// serializes (a snapshot is built from it).
fn apply(cmds: &[Command]) {
    static BASE: OnceLock<State> = OnceLock::new();
    let mut state = BASE.get_or_init(crate::seeds::state).clone();
    for cmd in cmds {
        let _ = state.apply(cmd);
    }
    serde_json::to_vec(&state).expect("a state serializes");
}

// ---------------------------------------------------------------------------------------
// snapshot_header

static SNAPSHOT_MESSAGES: &[Message] = &[
    proto!(SnapshotChunk, |c| {
        if let Some(v1::snapshot_chunk::Kind::Header(h)) = &c.kind {
            header(h);
        }
    }),
    proto!(SnapshotHeader, header),
    Message {
        name: "json:Vote",
        decode: |d| {
            if let Some(vote) = checks::json_eq::<Vote>(d) {
                let _ = vote.leader_id().voted_for();
            }
        },
    },
    json!("SnapshotMeta", SnapshotMeta),
    Message {
        name: "json:State",
        decode: |d| {
            checks::json_eq::<State>(d);
        },
    },
];

pub const SNAPSHOT_HEADER: Target = Target {
    name: "snapshot_header",
    messages: SNAPSHOT_MESSAGES,
    tokens: JSON_TOKENS,
    run: snapshot_header,
};

/// `InstallSnapshot`'s stream: its chunks, the header's `vote` and `meta` as
/// `raft_service.rs` decodes them, and the snapshot's body (the JSON `State` the state
/// machine installs).
pub fn snapshot_header(data: &[u8]) {
    select(SNAPSHOT_MESSAGES, data)
}

fn header(h: &v1::SnapshotHeader) {
    if let Some(vote) = checks::json_eq::<Vote>(&h.vote) {
        let _ = vote.leader_id().voted_for();
    }
    if let Some(meta) = checks::json::<SnapshotMeta>(&h.meta) {
        let _ = meta.signature();
    }
    // The receiver reserves at most one chunk up front, whatever the header says.
    let _ = Vec::<u8>::with_capacity(h.total_bytes.min(1 << 20) as usize);
}

// ---------------------------------------------------------------------------------------
// agent_request

static AGENT_MESSAGES: &[Message] = &[
    proto!(HeartbeatRequest, |r| {
        let node = NodeRegistration {
            id: r.node_id,
            address: r.address.clone(),
            labels: r.labels.clone().into_iter().collect(),
            capacity: flotilla_types::Capacity {
                cpu_millis: r.cpu_millis,
                memory_mb: r.memory_mb,
            },
            instance: r.instance.clone(),
            publish_addr: r.publish_addr.clone(),
            mesh_errors: r.mesh_errors.clone().into_iter().collect(),
        };
        logged(Command::RegisterNode { node, at: 1 });
    }),
    proto!(ReportStatusRequest, |r| {
        let reports: Result<Vec<TaskReport>, String> = r.reports.iter().map(TaskReport::try_from).collect();
        if let Ok(reports) = reports {
            for report in &reports {
                let back = TaskReport::try_from(&v1::TaskStatusReport::from(report));
                assert_eq!(back.as_ref(), Ok(report), "a task report survives the wire");
            }
            logged(Command::ReportStatus {
                node: r.node_id,
                reports,
                at: 1,
            });
        }
    }),
    proto!(TaskLogsRequest),
    proto!(InspectTaskRequest),
    proto!(ProposeSecurityRequest, |r| {
        if let Some(op) = checks::json_eq::<SecurityOp>(&r.op) {
            if let SecurityOp::Init(sec) = &op {
                if let Ok(ca) = Ca::from_pem(&sec.ca_cert, &sec.ca_key) {
                    let _ = ca.digest();
                }
            }
            logged(Command::Security {
                op,
                by: String::new(),
                at: 1,
            });
        }
    }),
    proto!(ExecInput),
    proto!(TaskStatsRequest),
    proto!(TunnelInput),
];

pub const AGENT_REQUEST: Target = Target {
    name: "agent_request",
    messages: AGENT_MESSAGES,
    tokens: PROTO_TOKENS,
    run: agent_request,
};

/// The requests of `AgentService`, and the commands a leader makes of them.
pub fn agent_request(data: &[u8]) {
    select(AGENT_MESSAGES, data)
}

/// A command made of a request goes into the Raft log: it survives its JSON exactly.
fn logged(cmd: Command) {
    let bytes = flotilla_raft_types::wire::encode(&cmd);
    let back: Command = flotilla_raft_types::wire::decode(&bytes).expect("a command decodes");
    assert_eq!(back, cmd, "a command survives the log");
}

// ---------------------------------------------------------------------------------------
// client_request

fn spec_request(doc: &[u8]) {
    if let Ok(spec) = parse_spec_document(doc) {
        checks::spec(&spec);
        logged(Command::PutService {
            spec,
            at: 1,
            exclusive_ingress: false,
        });
    }
}

static CLIENT_MESSAGES: &[Message] = &[
    proto!(ApplyRequest, |r| spec_request(&r.spec_document)),
    proto!(GetServiceRequest),
    proto!(ListServicesRequest),
    proto!(DeleteServiceRequest, |r| logged(Command::DeleteService {
        name: r.name.clone(),
        at: 1
    })),
    proto!(ClusterStatusRequest),
    proto!(NodeStatusRequest),
    proto!(ScaleServiceRequest, |r| logged(Command::ScaleService {
        name: r.name.clone(),
        replicas: r.replicas,
        at: 1
    })),
    proto!(ListTasksRequest),
    proto!(ListNodesRequest),
    proto!(SetNodeAvailabilityRequest, |r| {
        if let Ok(availability) = Availability::try_from(r.availability()) {
            logged(Command::SetAvailability {
                id: r.id,
                availability,
                at: 1,
            });
        }
    }),
    proto!(LogsRequest),
    proto!(InspectTaskRequest),
    proto!(VerifyRequest),
    proto!(StateDigestRequest),
    proto!(EventsRequest),
    proto!(DryRunRequest, |r| spec_request(&r.spec_document)),
    proto!(RolloutRequest),
    proto!(RolloutHistoryRequest),
    proto!(RolloutControlRequest, |r| {
        if let Ok(op) = RolloutOp::try_from(r) {
            let back = RolloutOp::try_from(&v1::RolloutControlRequest::from(&op));
            assert_eq!(back.as_ref(), Ok(&op), "a rollout action survives the wire");
            logged(Command::Rollout {
                name: r.name.clone(),
                op,
                at: 1,
            });
        }
    }),
    proto!(JoinRequest),
    proto!(RemoveNodeRequest, |r| logged(Command::RemoveNode { id: r.id, at: 1 })),
    proto!(SaveSnapshotRequest),
    proto!(IssueCertificateRequest, issue_certificate),
    proto!(CreateTokenRequest, |r| {
        if let Some(role) = ClientRole::parse(&r.role) {
            assert_eq!(ClientRole::parse(role.as_str()), Some(role));
        }
    }),
    proto!(ListTokensRequest),
    proto!(RevokeTokenRequest),
    proto!(GetJoinTokenRequest),
    proto!(RotateJoinTokenRequest),
    proto!(CaStatusRequest),
    proto!(RotateCaRequest),
    proto!(ExecInput),
    proto!(RecordExecRequest),
    proto!(TopRequest),
    proto!(DeclareNodeDeadRequest, |r| logged(Command::DeclareNodeDead {
        id: r.id,
        at: 1
    })),
];

pub const CLIENT_REQUEST: Target = Target {
    name: "client_request",
    messages: CLIENT_MESSAGES,
    tokens: PROTO_TOKENS,
    run: client_request,
};

/// The requests of `ClusterService`: the spec documents of `Apply` and `DryRun`, rollout
/// actions, availabilities, certificate requests, and the commands made of them.
pub fn client_request(data: &[u8]) {
    select(CLIENT_MESSAGES, data)
}

/// What `security::issue` does with a request before it looks at the state: the same
/// bounds, the signing request's key, the proof; then what issuing does with the key.
fn issue_certificate(r: &v1::IssueCertificateRequest) {
    if r.id == 0 || r.csr.len() > 16 << 10 || r.proof.len() > 128 {
        return;
    }
    let _ = cred::check_proof(&"5".repeat(64), cred::PROOF_REQUEST, "digest", &r.csr, &r.proof);
    issue(r.id, &r.csr);
}

/// Parses a signing request as a node does, and when it parses, issues a certificate for
/// its key with a test CA: the certificate names node `id`.
fn issue(id: u64, csr: &[u8]) {
    use rcgen::PublicKeyData;
    let Ok(params) = rcgen::CertificateSigningRequestParams::from_der(&csr.into()) else {
        return;
    };
    let _ = identity::sha256_hex(params.public_key.der_bytes());
    if id == 0 {
        return;
    }
    let ca = test_ca();
    let Ok(pem) = ca.issue_for_csr(id, csr, SystemTime::now(), Duration::from_secs(3600)) else {
        return;
    };
    let der = identity::pem_certs(&pem).expect("an issued certificate is PEM");
    let who = identity::node_identity(&der[0]).expect("an issued certificate names its node");
    assert_eq!((who.cluster.as_str(), who.id), ("fuzz", id));
}

fn test_ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| Ca::generate("fuzz", SystemTime::now()).expect("a CA"))
}

// ---------------------------------------------------------------------------------------
// credentials

static CREDENTIAL_MESSAGES: &[Message] = &[
    Message {
        name: "NodeToken",
        decode: |d| {
            if let Ok(token) = cred::NodeToken::parse(&text(d)) {
                assert!(!token.secret().is_empty());
                let back = cred::NodeToken::parse(&token.to_string()).expect("a token reads back");
                assert_eq!(back, token, "a node token survives its text");
            }
        },
    },
    Message {
        name: "ClientToken",
        decode: |d| {
            let t = text(d);
            // As `auth.rs` reads the `authorization` header.
            let t = t.strip_prefix("Bearer ").unwrap_or(&t).trim();
            if let Some((id, secret)) = cred::parse_client_token(t) {
                let again = format!("flt_{id}_{secret}");
                assert_eq!(cred::parse_client_token(&again), Some((id, secret)));
                assert!(cred::secret_matches(secret, &cred::hash_secret(secret)));
            }
        },
    },
    Message {
        name: "Proof",
        decode: |d| {
            let (secret, proof) = halves(d);
            let (secret, proof) = (text(secret), text(proof));
            let right = cred::proof(&secret, cred::PROOF_REQUEST, "digest", b"csr");
            assert!(cred::check_proof(
                &secret,
                cred::PROOF_REQUEST,
                "digest",
                b"csr",
                &right
            ));
            let ok = cred::check_proof(&secret, cred::PROOF_REQUEST, "digest", b"csr", &proof);
            assert_eq!(
                ok,
                proof.eq_ignore_ascii_case(&right),
                "a proof is accepted iff it is the right one"
            );
        },
    },
    Message {
        name: "SecretHash",
        decode: |d| {
            let (secret, hash) = halves(d);
            let (secret, hash) = (text(secret), text(hash));
            let right = cred::hash_secret(&secret);
            assert!(cred::secret_matches(&secret, &right));
            let ok = cred::secret_matches(&secret, &hash);
            assert_eq!(
                ok,
                hash.eq_ignore_ascii_case(&right),
                "a hash matches iff it is the secret's"
            );
        },
    },
    Message {
        name: "CertificatePem",
        decode: |d| {
            let pem = text(d);
            if let Ok(ders) = identity::pem_certs(&pem) {
                assert!(!ders.is_empty());
                for der in &ders {
                    let _ = identity::node_identity(der);
                    let _ = identity::ca_cluster_id(der);
                }
            }
            let _ = identity::not_after(&pem);
        },
    },
    Message {
        name: "CertificateDer",
        decode: |d| {
            if let Ok(who) = identity::node_identity(d) {
                assert!(who.id > 0, "node 0 is nobody");
            }
            let _ = identity::ca_cluster_id(d);
        },
    },
    Message {
        name: "CertificateSigningRequest",
        decode: |d| issue(1, d),
    },
    Message {
        name: "PrivateKeyPem",
        decode: |d| {
            if let Ok(key) = ca::key_from_pem(&text(d)) {
                ca::key_from_pem(&key.serialize_pem()).expect("a key reads back");
            }
        },
    },
    Message {
        name: "CaPem",
        decode: |d| {
            let (cert, key) = halves(d);
            if let Ok(ca) = Ca::from_pem(&text(cert), &text(key)) {
                let _ = ca.digest();
                let _ = ca.key_pem();
            }
        },
    },
];

pub const CREDENTIALS: Target = Target {
    name: "credentials",
    messages: CREDENTIAL_MESSAGES,
    tokens: &[
        "FLTB1-",
        "FLTJ1-",
        "flt_",
        "_",
        "-",
        "Bearer ",
        "-----BEGIN CERTIFICATE-----\n",
        "\n-----END CERTIFICATE-----\n",
        "-----BEGIN PRIVATE KEY-----\n",
        "\n-----END PRIVATE KEY-----\n",
        "-----BEGIN CERTIFICATE REQUEST-----\n",
        "flotilla://",
        "/node/",
        "flotilla cluster CA ",
        "\u{0}",
        "0",
        "a",
        "F",
        " ",
        "\n",
        "0000000000000000000000000000000000000000000000000000000000000000",
    ],
    run: credentials,
};

/// Credentials as a node reads them: node and client tokens, proofs and token hashes,
/// certificates (PEM and DER), signing requests (then issued by a test CA), keys and a
/// CA (as a `SecurityOp::Init` carries them).
pub fn credentials(data: &[u8]) {
    select(CREDENTIAL_MESSAGES, data)
}

// dns

static DNS_MESSAGES: &[Message] = &[
    Message {
        name: "Query",
        decode: |d| {
            if let Ok(q) = flotilla_dns::parse_query(d) {
                dns_answer(&q);
            }
        },
    },
    Message {
        name: "Response",
        decode: |d| {
            let _ = flotilla_dns::parse_response(d);
        },
    },
];

pub const DNS: Target = Target {
    name: "dns",
    messages: DNS_MESSAGES,
    tokens: &[
        "\u{c0}\u{c}",
        "\u{0}",
        "\u{3}www",
        "\u{8}flotilla",
        "\u{0}\u{1}",
        "\u{0}\u{21}",
        "\u{0})",
    ],
    run: dns,
};

/// What an agent's DNS server reads from any container or client: a query, which an
/// answer must echo so that a client reads it back as asked (id, name, type); and the
/// answers of upstream resolvers it passes on (read by tests and clients).
pub fn dns(data: &[u8]) {
    select(DNS_MESSAGES, data)
}

/// An answer to `q` with one record of each kind, truncated to what UDP allows, must
/// decode with the query's id and the records that fit, in order.
fn dns_answer(q: &flotilla_dns::Query) {
    use flotilla_dns::{RData, Record, Response};
    let name = if q.name.is_empty() {
        "flotilla".to_string()
    } else {
        q.name.clone()
    };
    let record = |data| Record {
        name: name.clone(),
        ttl: 5,
        data,
    };
    let r = Response {
        authoritative: true,
        answers: vec![
            record(RData::A([10, 0, 0, 1].into())),
            record(RData::Srv {
                priority: 0,
                weight: 1,
                port: 80,
                target: format!("t.{name}"),
            }),
        ],
        ..Response::default()
    };
    let limit = flotilla_dns::udp_limit(q);
    let out = flotilla_dns::encode_response(q, &r, limit);
    assert!(out.len() <= limit.max(512), "an answer over its limit");
    let back = flotilla_dns::parse_response(&out).expect("an answer this crate wrote decodes");
    assert_eq!(back.id, q.id);
    assert!(back.answers.len() <= 2);
    let echoed = flotilla_dns::parse_response(&flotilla_dns::encode_error(q.id, Some(q), flotilla_dns::Rcode::Refused))
        .expect("an error answer decodes");
    assert_eq!((echoed.id, echoed.rcode), (q.id, 5));
}
