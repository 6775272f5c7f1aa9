//! Seed inputs: real specs and real encoded messages, as a node sees them. The ignored
//! test `write_seeds` writes them to `corpus/<target>/` (and the libFuzzer dictionaries to
//! `fuzz/dict/`); the harness starts from the files, so a seed added by hand counts too.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use flotilla_proto::convert::spec_document;
use flotilla_proto::v1;
use flotilla_raft_types::wire::{
    self, AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use flotilla_raft_types::{Entry, LogId, NodeId, SnapshotMeta, StoredMembership, Vote};
use flotilla_security::{ca, cred, Ca};
use flotilla_types::{
    Availability, Capacity, ClientRole, ClientToken, Command, NewTask, NodeRegistration, NodeStatus, PlanUpdate,
    RolloutOp, Security, SecurityOp, ServiceSpec, State, StopReason, TaskReport, TaskState,
};
use openraft::error::{Fatal, InstallSnapshotError, RaftError};
use openraft::{BasicNode, CommittedLeaderId, EntryPayload, Membership};
use prost::Message as _;

use crate::Target;

/// The example service of the repository.
pub const WEB_YAML: &str = include_str!("../../../examples/web.yaml");

/// A spec that sets every field.
pub const FULL_YAML: &str = r#"name: api
image: registry.local/api:1.4
command: ["/bin/api"]
args: ["--port", "8080", "--verbose"]
env:
  RUST_LOG: info
  EMPTY: ""
replicas: 5
resources: {cpu_millis: 250, memory_mb: 128}
ports:
  - {container: 8080, host: 18080, protocol: tcp}
  - container: 5353
    protocol: udp
health_check:
  exec: ["sh", "-c", "test -f /tmp/ok"]
  interval: 5s
  timeout: 1s500ms
  retries: 5
  start_period: 10s
restart:
  condition: on-failure
  max_attempts: 3
  delay: 250ms
  max_delay: 1m
placement:
  constraints: ["zone == a", "disk != hdd", "rack in (r1, r2)"]
  max_per_node: 2
labels: {team: core, tier: backend}
stop_grace: 30s
update:
  parallelism: 2
  delay: 1s
  order: start-first
  monitor: 10s
  failure_action: rollback
  max_failure_ratio: 0.25
  history: 5
"#;

const STREAM_YAML: &str =
    "name: a\nimage: busybox\n---\nname: b\nimage: busybox\nreplicas: 0\nhealth_check:\n  tcp: {port: 80}\n---\n";

const VIEW_YAML: &str = "name: web\nversion: 3\ncreated_at: 1700000000000\nupdated_at: 1700000001000\nspec:\n  name: web\n  image: nginx\n  replicas: 2\n";

const ANCHORS_YAML: &str = "name: &n svc\nimage: *n\nlabels: &l {a: b}\nenv: *l\nrestart: {condition: never}\nhealth_check: {http: {port: 80}}\n";

const TYPO_YAML: &str = "name: web\nimage: nginx\nreplica: 2\nresources: {cpu: 1}\n";

pub fn web() -> ServiceSpec {
    ServiceSpec::parse(WEB_YAML).expect("examples/web.yaml parses")
}

pub fn full() -> ServiceSpec {
    ServiceSpec::parse(FULL_YAML).expect("the full spec parses")
}

fn registration(id: NodeId, zone: &str) -> NodeRegistration {
    NodeRegistration {
        id,
        address: format!("10.0.0.{id}:7000"),
        labels: [("zone".to_string(), zone.to_string())].into(),
        capacity: Capacity {
            cpu_millis: 4000,
            memory_mb: 8192,
        },
        instance: format!("{id:032x}"),
        publish_addr: format!("10.0.0.{id}"),
        mesh_errors: Default::default(),
    }
}

fn new_task(service: &str, slot: u32, node: NodeId) -> NewTask {
    NewTask {
        service: service.into(),
        slot,
        spec_version: 1,
        attempt: 0,
        node: Some(node),
        message: String::new(),
        start_first: false,
        rebalanced_from: None,
    }
}

/// A small cluster's state: two nodes, two services, their tasks.
pub fn state() -> State {
    let mut s = State::default();
    for cmd in [
        Command::RegisterNode {
            node: registration(1, "a"),
            at: 1_000,
        },
        Command::RegisterNode {
            node: registration(2, "b"),
            at: 1_000,
        },
        Command::PutService {
            spec: web(),
            at: 1_001,
            exclusive_ingress: false,
        },
        Command::PutService {
            spec: full(),
            at: 1_002,
            exclusive_ingress: false,
        },
        Command::ApplyPlan {
            plan: PlanUpdate {
                create: vec![new_task("web", 0, 1), new_task("web", 1, 2), new_task("api", 0, 1)],
                ..PlanUpdate::default()
            },
            at: 1_003,
        },
    ] {
        s.apply(&cmd);
    }
    s
}

fn log_id(term: u64, node: NodeId, index: u64) -> LogId {
    openraft::LogId::new(CommittedLeaderId::new(term, node), index)
}

fn membership() -> StoredMembership {
    let nodes: BTreeMap<NodeId, BasicNode> = (1..=3)
        .map(|id| (id, BasicNode::new(format!("10.0.0.{id}:7000"))))
        .collect();
    let voters: BTreeSet<NodeId> = [1, 2, 3].into();
    StoredMembership::new(Some(log_id(1, 1, 1)), Membership::new(vec![voters], nodes))
}

fn snapshot_meta() -> SnapshotMeta {
    SnapshotMeta {
        last_log_id: Some(log_id(3, 1, 42)),
        last_membership: membership(),
        snapshot_id: "3-42-7".into(),
    }
}

fn security() -> (Security, String) {
    let ca = Ca::generate("c0ffee", SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)).expect("a CA");
    let (_, id, hash) = cred::new_client_token();
    let sec = Security {
        cluster_id: "c0ffee".into(),
        ca_cert: ca.cert_pem.clone(),
        ca_key: ca.key_pem(),
        join_secret: cred::new_secret(),
        tokens: [(
            "admin".to_string(),
            ClientToken {
                id,
                hash,
                role: ClientRole::Admin,
                created_at: 1,
                expires_at: None,
                revoked_at: None,
            },
        )]
        .into(),
        issued: [(1, "ab".repeat(32))].into(),
        previous_ca: None,
        cross_cert: None,
    };
    (sec, ca.key_pem())
}

fn report(task: &str, state: TaskState) -> TaskReport {
    TaskReport {
        task: task.into(),
        state,
        container_id: Some("c0ntainer".into()),
        address: None,
        exit_code: Some(137),
        message: "killed".into(),
        stop_reason: None,
    }
}

/// One command of each kind.
pub fn commands() -> Vec<Command> {
    let (sec, _) = security();
    let token = sec.tokens["admin"].clone();
    vec![
        Command::PutService {
            spec: full(),
            at: 5,
            exclusive_ingress: false,
        },
        Command::DeleteService {
            name: "web".into(),
            at: 6,
        },
        Command::ScaleService {
            name: "web".into(),
            replicas: 7,
            at: 7,
        },
        Command::RegisterNode {
            node: registration(3, "c"),
            at: 8,
        },
        Command::SetNodeStatus {
            id: 2,
            status: NodeStatus::Down,
            at: 9,
        },
        Command::SetAvailability {
            id: 1,
            availability: Availability::Drain,
            at: 10,
        },
        Command::DeclareNodeDead { id: 2, at: 10 },
        Command::ApplyPlan {
            plan: PlanUpdate {
                nodes_down: vec![2],
                lost: vec!["web.1.2".into()],
                stop: vec![("web.0.1".into(), StopReason::Outdated)],
                create: vec![new_task("web", 2, 1)],
                assign: vec![("api.0.3".into(), 2)],
                unplaced: vec![("api.1.4".into(), "no node fits".into())],
                remove: vec!["web.0.0".into()],
                rollouts: vec![],
            },
            at: 11,
        },
        Command::ReportStatus {
            node: 1,
            reports: vec![
                report("web.0.1", TaskState::Running),
                report("web.1.2", TaskState::Exited),
            ],
            at: 12,
        },
        Command::Rollout {
            name: "web".into(),
            op: RolloutOp::Undo { to_version: Some(1) },
            at: 13,
        },
        Command::Batch(vec![
            Command::ScaleService {
                name: "api".into(),
                replicas: 1,
                at: 14,
            },
            Command::Rollout {
                name: "api".into(),
                op: RolloutOp::Pause,
                at: 14,
            },
        ]),
        Command::RemoveNode { id: 2, at: 15 },
        Command::By {
            by: "ci".into(),
            cmd: Box::new(Command::DeleteService {
                name: "api".into(),
                at: 16,
            }),
        },
        Command::Security {
            op: SecurityOp::Init(sec),
            by: String::new(),
            at: 17,
        },
        Command::Security {
            op: SecurityOp::CreateToken {
                name: "ci".into(),
                token,
            },
            by: "admin".into(),
            at: 18,
        },
        Command::Security {
            op: SecurityOp::RevokeToken { name: "ci".into() },
            by: "admin".into(),
            at: 19,
        },
        Command::Security {
            op: SecurityOp::RotateJoin {
                secret: cred::new_secret(),
            },
            by: "admin".into(),
            at: 20,
        },
        Command::Security {
            op: SecurityOp::Issued {
                id: 3,
                key: "cd".repeat(32),
                replace: false,
            },
            by: String::new(),
            at: 21,
        },
    ]
}

fn entries() -> Vec<Entry> {
    let mut out = vec![
        Entry {
            log_id: log_id(3, 1, 40),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(3, 1, 41),
            payload: EntryPayload::Membership(membership().membership().clone()),
        },
    ];
    out.extend(commands().into_iter().take(3).enumerate().map(|(i, cmd)| Entry {
        log_id: log_id(3, 1, 42 + i as u64),
        payload: EntryPayload::Normal(cmd),
    }));
    out
}

fn append_entries() -> AppendEntriesRequest {
    AppendEntriesRequest {
        vote: Vote::new_committed(3, 1),
        prev_log_id: Some(log_id(3, 1, 39)),
        entries: entries(),
        leader_commit: Some(log_id(3, 1, 39)),
    }
}

/// A seed: its file name and bytes (with the byte choosing its message, for a target
/// that decodes several).
pub type Seed = (String, Vec<u8>);

struct Seeds<'a> {
    target: &'a Target,
    out: Vec<Seed>,
}

impl Seeds<'_> {
    fn add(&mut self, message: &str, tag: &str, bytes: Vec<u8>) {
        let mut data = Vec::with_capacity(bytes.len() + 1);
        if self.target.selects() {
            let choice = self
                .target
                .selector(message)
                .unwrap_or_else(|| panic!("{} decodes no {message}", self.target.name));
            data.push(choice);
        }
        data.extend(bytes);
        let file = message.replace(':', "-");
        self.out.push((format!("{file}-{tag}"), data));
    }

    fn json<T: serde::Serialize>(&mut self, name: &str, tag: &str, value: &T) {
        self.add(&format!("json:{name}"), tag, wire::encode(value));
    }

    fn proto<M: prost::Message>(&mut self, tag: &str, m: &M) {
        let name = std::any::type_name::<M>()
            .rsplit("::")
            .next()
            .unwrap_or_default()
            .to_string();
        self.add(&name, tag, m.encode_to_vec());
    }
}

/// The seeds of `target`.
pub fn seeds(target: &Target) -> Vec<Seed> {
    let mut s = Seeds {
        target,
        out: Vec::new(),
    };
    match target.name {
        "spec" => spec(&mut s),
        "raft" => raft(&mut s),
        "snapshot_header" => snapshot(&mut s),
        "agent_request" => agent(&mut s),
        "client_request" => client(&mut s),
        "credentials" => credentials(&mut s),
        "dns" => dns(&mut s),
        other => panic!("no seeds for target {other}"),
    }
    s.out
}

fn spec(s: &mut Seeds) {
    let web = web();
    let full = full();
    let list = serde_json::to_string(&[&web, &full]).expect("json");
    for (tag, text) in [
        ("web.yaml", WEB_YAML.to_string()),
        ("web.json", web.to_json()),
        ("full.yaml", FULL_YAML.to_string()),
        ("full.json", serde_json::to_string_pretty(&full).expect("json")),
        ("full-out.yaml", serde_norway::to_string(&full).expect("yaml")),
        ("stream.yaml", STREAM_YAML.to_string()),
        ("list.json", list),
        ("view.yaml", VIEW_YAML.to_string()),
        ("anchors.yaml", ANCHORS_YAML.to_string()),
        ("typo.yaml", TYPO_YAML.to_string()),
        (
            "flow.yaml",
            "{name: x, image: y, replicas: 0, ports: [{container: 1}]}\n".to_string(),
        ),
    ] {
        s.add("ServiceSpec", tag, text.into_bytes());
    }
}

fn raft(s: &mut Seeds) {
    let ae = append_entries();
    let vote = VoteRequest::new(Vote::new(4, 2), Some(log_id(3, 1, 44)));
    s.add(
        "RaftMessage",
        "append",
        v1::RaftMessage {
            data: wire::encode(&ae),
        }
        .encode_to_vec(),
    );
    s.add(
        "RaftMessage",
        "vote",
        v1::RaftMessage {
            data: wire::encode(&vote),
        }
        .encode_to_vec(),
    );
    s.json("AppendEntriesRequest", "entries", &ae);
    s.json(
        "AppendEntriesRequest",
        "heartbeat",
        &AppendEntriesRequest {
            entries: vec![],
            ..append_entries()
        },
    );
    s.json("VoteRequest", "0", &vote);
    s.json("VoteRequest", "first", &VoteRequest::new(Vote::new(1, 3), None));
    s.json(
        "InstallSnapshotRequest",
        "0",
        &InstallSnapshotRequest {
            vote: Vote::new_committed(3, 1),
            meta: snapshot_meta(),
            offset: 0,
            data: b"{\"services\":{}}".to_vec(),
            done: true,
        },
    );
    for (i, e) in entries().iter().enumerate() {
        s.json("Entry", &i.to_string(), e);
    }
    for (i, cmd) in commands().iter().enumerate() {
        s.json("Command", &format!("{i:02}-{}", cmd.kind()), cmd);
    }
    // Commands newer than some of this code, as JSON text.
    let (sec, _) = security();
    let pem = serde_json::to_string(&sec.ca_cert).expect("json");
    let key = serde_json::to_string(&sec.ca_key).expect("json");
    for (tag, text) in [
        (
            "rotate_ca",
            format!(
                r#"{{"Security":{{"op":{{"RotateCa":{{"ca_cert":{pem},"ca_key":{key},"cross_cert":{pem}}}}},"by":"admin","at":22}}}}"#
            ),
        ),
        (
            "finish_ca_rotation",
            format!(r#"{{"Security":{{"op":{{"FinishCaRotation":{{"ca_cert":{pem}}}}},"by":"","at":23}}}}"#),
        ),
    ] {
        s.add("json:Command", tag, text.into_bytes());
    }
    let fatal: RaftError<NodeId> = RaftError::Fatal(Fatal::Stopped);
    s.json(
        "AppendEntriesResult",
        "ok",
        &Ok::<_, RaftError<NodeId>>(AppendEntriesResponse::Success),
    );
    s.json(
        "AppendEntriesResult",
        "partial",
        &Ok::<_, RaftError<NodeId>>(AppendEntriesResponse::PartialSuccess(Some(log_id(3, 1, 41)))),
    );
    s.json(
        "AppendEntriesResult",
        "higher",
        &Ok::<_, RaftError<NodeId>>(AppendEntriesResponse::HigherVote(Vote::new(5, 3))),
    );
    s.json(
        "AppendEntriesResult",
        "conflict",
        &Ok::<_, RaftError<NodeId>>(AppendEntriesResponse::Conflict),
    );
    s.json(
        "AppendEntriesResult",
        "fatal",
        &Err::<AppendEntriesResponse, _>(fatal.clone()),
    );
    s.json(
        "VoteResult",
        "granted",
        &Ok::<_, RaftError<NodeId>>(VoteResponse {
            vote: Vote::new(4, 2),
            vote_granted: true,
            last_log_id: Some(log_id(3, 1, 44)),
        }),
    );
    s.json("VoteResult", "fatal", &Err::<VoteResponse, _>(fatal));
    s.json(
        "InstallSnapshotResult",
        "ok",
        &Ok::<_, RaftError<NodeId, InstallSnapshotError>>(InstallSnapshotResponse {
            vote: Vote::new_committed(3, 1),
        }),
    );
    s.json(
        "SnapshotResult",
        "ok",
        &Ok::<_, Fatal<NodeId>>(SnapshotResponse {
            vote: Vote::new_committed(3, 1),
        }),
    );
    s.json(
        "SnapshotResult",
        "panicked",
        &Err::<SnapshotResponse, _>(Fatal::<NodeId>::Panicked),
    );
}

fn snapshot(s: &mut Seeds) {
    let header = v1::SnapshotHeader {
        vote: wire::encode(&Vote::new_committed(3, 1)),
        meta: wire::encode(&snapshot_meta()),
        total_bytes: 4096,
    };
    s.proto(
        "header",
        &v1::SnapshotChunk {
            kind: Some(v1::snapshot_chunk::Kind::Header(header.clone())),
        },
    );
    s.proto(
        "data",
        &v1::SnapshotChunk {
            kind: Some(v1::snapshot_chunk::Kind::Data(b"{\"services\":{}}".to_vec())),
        },
    );
    s.proto("0", &header);
    s.json("Vote", "committed", &Vote::new_committed(3, 1));
    s.json("Vote", "candidate", &Vote::new(4, 2));
    s.json("SnapshotMeta", "0", &snapshot_meta());
    s.json("State", "small", &state());
    let mut secured = state();
    secured.security = Some(security().0);
    secured.removed.insert(9);
    secured.epoch = 2;
    secured.apply(&Command::Rollout {
        name: "web".into(),
        op: RolloutOp::Pause,
        at: 1_004,
    });
    s.json("State", "secured", &secured);
    s.json("State", "empty", &State::default());
}

fn agent(s: &mut Seeds) {
    s.proto(
        "0",
        &v1::HeartbeatRequest {
            node_id: 2,
            address: "10.0.0.2:7000".into(),
            labels: [("zone".to_string(), "b".to_string())].into(),
            cpu_millis: 4000,
            memory_mb: 8192,
            epoch: 1,
            instance: "0123456789abcdef0123456789abcdef".into(),
            publish_addr: "10.0.0.2".into(),
            mesh_errors: [("8080/tcp".to_string(), "address in use".to_string())].into(),
        },
    );
    s.proto(
        "0",
        &v1::ReportStatusRequest {
            node_id: 1,
            reports: vec![
                v1::TaskStatusReport::from(&report("web.0.1", TaskState::Running)),
                v1::TaskStatusReport::from(&report("web.1.2", TaskState::Failed)),
            ],
        },
    );
    s.proto(
        "0",
        &v1::TaskLogsRequest {
            task: "web.0.1".into(),
            follow: true,
            tail: Some(100),
            since_ms: Some(1_700_000_000_000),
        },
    );
    s.proto("0", &v1::InspectTaskRequest { task: "web.0.1".into() });
    exec_inputs(s);
    s.add("TaskStatsRequest", "0", Vec::new());
    s.proto(
        "open",
        &v1::TunnelInput {
            input: Some(v1::tunnel_input::Input::Open(v1::TunnelOpen {
                task: "web.0.1".into(),
                port: 8080,
                protocol: "tcp".into(),
            })),
        },
    );
    s.proto(
        "data",
        &v1::TunnelInput {
            input: Some(v1::tunnel_input::Input::Data(b"GET / HTTP/1.0\r\n\r\n".to_vec())),
        },
    );
    let (sec, _) = security();
    for (tag, op) in [
        ("init", SecurityOp::Init(sec)),
        (
            "issued",
            SecurityOp::Issued {
                id: 3,
                key: "ef".repeat(32),
                replace: true,
            },
        ),
    ] {
        s.proto(
            tag,
            &v1::ProposeSecurityRequest {
                op: serde_json::to_vec(&op).expect("json"),
            },
        );
    }
}

/// Protobuf by hand, for messages newer than some of this code (no tie to their Rust
/// field names): a varint field, a length-delimited field.
fn varint_field(number: u32, mut v: u64) -> Vec<u8> {
    let mut out = vec![(number << 3) as u8];
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn bytes_field(number: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = varint_field(number, bytes.len() as u64);
    out[0] |= 2;
    out.extend_from_slice(bytes);
    out
}

/// `ExecInput`s: a start (task, command, tty, stdin, rows, cols), stdin, a resize, the
/// end of stdin.
fn exec_inputs(s: &mut Seeds) {
    let start = [
        bytes_field(1, b"web.0.1"),
        bytes_field(2, b"sh"),
        bytes_field(2, b"-c"),
        bytes_field(2, b"id"),
        varint_field(3, 1),
        varint_field(4, 1),
        varint_field(5, 24),
        varint_field(6, 80),
    ]
    .concat();
    s.add("ExecInput", "start", bytes_field(1, &start));
    s.add("ExecInput", "stdin", bytes_field(2, b"ls -l\n"));
    s.add(
        "ExecInput",
        "resize",
        bytes_field(3, &[varint_field(1, 40), varint_field(2, 120)].concat()),
    );
    s.add("ExecInput", "closed", varint_field(4, 1));
}

/// A signing request for node `id` and its proof under `secret`.
fn csr(id: u64, secret: &str) -> (Vec<u8>, String) {
    let key = ca::new_key().expect("a key");
    let csr = ca::csr(&key, id).expect("a csr");
    let proof = cred::proof(secret, cred::PROOF_REQUEST, "digest", &csr);
    (csr, proof)
}

fn client(s: &mut Seeds) {
    let doc = spec_document(&full());
    s.proto(
        "0",
        &v1::ApplyRequest {
            spec_document: doc.clone(),
        },
    );
    s.proto(
        "yaml",
        &v1::ApplyRequest {
            spec_document: WEB_YAML.as_bytes().to_vec(),
        },
    );
    s.proto("0", &v1::DryRunRequest { spec_document: doc });
    s.proto(
        "0",
        &v1::GetServiceRequest {
            name: "web".into(),
            stale: true,
        },
    );
    s.proto("0", &v1::ListServicesRequest { stale: true });
    s.proto("0", &v1::DeleteServiceRequest { name: "web".into() });
    s.proto("0", &v1::ClusterStatusRequest {});
    s.proto("0", &v1::NodeStatusRequest {});
    s.proto(
        "0",
        &v1::ScaleServiceRequest {
            name: "web".into(),
            replicas: 4,
        },
    );
    s.proto(
        "0",
        &v1::ListTasksRequest {
            service: "web".into(),
            stale: false,
        },
    );
    s.proto("0", &v1::ListNodesRequest { stale: true });
    s.proto(
        "0",
        &v1::SetNodeAvailabilityRequest {
            id: 2,
            availability: v1::NodeAvailability::Drain.into(),
        },
    );
    s.proto(
        "0",
        &v1::LogsRequest {
            target: "web".into(),
            follow: false,
            tail: Some(10),
            since_ms: None,
        },
    );
    s.proto("0", &v1::InspectTaskRequest { task: "web.0.1".into() });
    s.proto("0", &v1::VerifyRequest {});
    s.proto("0", &v1::StateDigestRequest { index: 42 });
    s.proto(
        "0",
        &v1::EventsRequest {
            since: 10,
            follow: true,
        },
    );
    s.proto(
        "0",
        &v1::RolloutRequest {
            name: "web".into(),
            stale: false,
        },
    );
    s.proto(
        "0",
        &v1::RolloutHistoryRequest {
            name: "web".into(),
            stale: true,
        },
    );
    s.proto(
        "undo",
        &v1::RolloutControlRequest {
            name: "web".into(),
            action: v1::RolloutAction::Undo.into(),
            to_version: Some(2),
        },
    );
    s.proto(
        "pause",
        &v1::RolloutControlRequest {
            name: "web".into(),
            action: v1::RolloutAction::Pause.into(),
            to_version: None,
        },
    );
    s.proto(
        "0",
        &v1::JoinRequest {
            id: 4,
            address: "10.0.0.4:7000".into(),
            fresh: true,
            epoch: 0,
        },
    );
    s.proto("0", &v1::RemoveNodeRequest { id: 3 });
    s.proto("0", &v1::SaveSnapshotRequest {});
    let (csr, proof) = csr(4, &"5".repeat(64));
    s.proto("0", &v1::IssueCertificateRequest { id: 4, csr, proof });
    s.proto(
        "0",
        &v1::CreateTokenRequest {
            name: "ci".into(),
            role: "operator".into(),
            ttl_ms: 3_600_000,
        },
    );
    s.proto("0", &v1::ListTokensRequest {});
    s.proto("0", &v1::RevokeTokenRequest { name: "ci".into() });
    s.proto("0", &v1::GetJoinTokenRequest {});
    s.proto("0", &v1::RotateJoinTokenRequest {});
    s.proto("0", &v1::CaStatusRequest {});
    s.proto("0", &v1::RotateCaRequest {});
    exec_inputs(s);
    s.add(
        "RecordExecRequest",
        "0",
        [
            bytes_field(1, b"web.0.1"),
            varint_field(2, 1),
            bytes_field(3, b"sh -c id"),
        ]
        .concat(),
    );
    s.add("TopRequest", "0", Vec::new());
    s.proto("0", &v1::DeclareNodeDeadRequest { id: 2 });
}

fn credentials(s: &mut Seeds) {
    let ca = Ca::generate("c0ffee", SystemTime::now()).expect("a CA");
    let key = ca::new_key().expect("a key");
    let node_pem = ca
        .issue_for_key(3, &key, SystemTime::now(), Duration::from_secs(86_400))
        .expect("a node certificate");
    let node_der = flotilla_security::identity::pem_certs(&node_pem).expect("pem")[0].clone();
    let ca_der = flotilla_security::identity::pem_certs(&ca.cert_pem).expect("pem")[0].clone();
    let (client, _, hash) = cred::new_client_token();
    let secret = cred::new_secret();
    let (csr, _) = csr(3, &secret);
    let proof = cred::proof(&secret, cred::PROOF_REQUEST, "digest", b"csr");
    let pair = |a: &str, b: &str| [a.as_bytes(), b"\0", b.as_bytes()].concat();
    s.add(
        "NodeToken",
        "bootstrap",
        cred::NodeToken::new_bootstrap().to_string().into_bytes(),
    );
    s.add(
        "NodeToken",
        "join",
        cred::NodeToken::join(&ca.digest(), &secret).to_string().into_bytes(),
    );
    s.add("ClientToken", "0", client.clone().into_bytes());
    s.add("ClientToken", "bearer", format!("Bearer {client}").into_bytes());
    s.add("Proof", "0", pair(&secret, &proof));
    s.add("SecretHash", "0", pair(&secret, &cred::hash_secret(&secret)));
    s.add("SecretHash", "other", pair(&secret, &hash));
    s.add("CertificatePem", "node", node_pem.clone().into_bytes());
    s.add(
        "CertificatePem",
        "chain",
        format!("{node_pem}{}", ca.cert_pem).into_bytes(),
    );
    s.add("CertificateDer", "node", node_der);
    s.add("CertificateDer", "ca", ca_der);
    s.add("CertificateSigningRequest", "0", csr);
    s.add("PrivateKeyPem", "p256", key.serialize_pem().into_bytes());
    s.add("CaPem", "0", pair(&ca.cert_pem, &ca.key_pem()));
}

fn dns(s: &mut Seeds) {
    use flotilla_dns::{build_query, encode_response, parse_query, RData, Record, Response};
    let names = [
        ("a", "web.prod.flotilla", flotilla_dns::TYPE_A, None),
        ("tasks", "tasks.web.prod.flotilla", flotilla_dns::TYPE_A, Some(1232)),
        ("srv", "_8080._tcp.web.prod.flotilla", flotilla_dns::TYPE_SRV, None),
        ("root", "", flotilla_dns::TYPE_SOA, Some(4096)),
    ];
    for (tag, name, qtype, edns) in names {
        let query = build_query(7, name, qtype, edns);
        s.add("Query", tag, query.clone());
        let q = parse_query(&query).expect("a seed query");
        let answer = Response {
            authoritative: true,
            answers: vec![Record {
                name: name.to_string(),
                ttl: 5,
                data: match qtype {
                    flotilla_dns::TYPE_SRV => RData::Srv {
                        priority: 0,
                        weight: 1,
                        port: 8080,
                        target: format!("web-1-3.tasks.{name}"),
                    },
                    _ => RData::A([172, 17, 0, 5].into()),
                },
            }],
            ..Response::default()
        };
        s.add("Response", tag, encode_response(&q, &answer, 512));
    }
}
