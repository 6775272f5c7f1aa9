//! Secure by default, tried the way an intruder and an operator would: real agents over
//! TLS on loopback, the CLI with and without credentials, and raw gRPC with stolen,
//! foreign and missing certificates.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use flotilla_proto::v1::agent_service_client::AgentServiceClient;
use flotilla_proto::v1::cluster_service_client::ClusterServiceClient;
use flotilla_proto::v1::raft_service_client::RaftServiceClient;
use flotilla_proto::v1::{
    snapshot_chunk, ApplyRequest, HeartbeatRequest, ListServicesRequest, RaftMessage, ReportStatusRequest,
    SnapshotChunk, SnapshotHeader,
};
use flotilla_security::tls::{self, ClientTls, NodeTls};
use flotilla_security::{Ca, Shared};
use flotilla_testkit::{flotilla_bin, wait_until, wait_until_async, Cluster};
use tonic::transport::Channel;

const T: Duration = Duration::from_secs(60);

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts the CLI refused the credential (exit 5) with `word` in its message.
fn refused(o: &Output, word: &str) {
    assert_eq!(o.status.code(), Some(5), "{}", text(o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(word), "expected {word:?}: {}", text(o));
}

/// The CLI with `config` (a client config file) or none at all (an empty HOME).
fn cli_with(cluster: &Cluster, config: Option<&Path>, args: &[&str]) -> Output {
    let home = cluster.root().join("empty-home");
    std::fs::create_dir_all(&home).expect("home");
    let mut c = Command::new(flotilla_bin());
    c.arg("--addr").arg(cluster.live_addrs()).args(args);
    c.env_remove("FLOTILLA_ADDR").env("HOME", &home);
    match config {
        Some(p) => c.env("FLOTILLA_CONFIG", p),
        None => c.env_remove("FLOTILLA_CONFIG"),
    };
    c.output().expect("run flotilla")
}

/// A client config file for a new token of `role` (made with the admin config).
fn token_config(cluster: &Cluster, role: &str, extra: &[&str]) -> std::path::PathBuf {
    let path = cluster.root().join(format!("{role}-{}.yaml", rand::random::<u32>()));
    let p = path.to_str().expect("utf-8");
    let mut args = vec!["token", "create", "--role", role, "--write-config", p];
    args.extend_from_slice(extra);
    ok(cluster.cli(&args));
    path
}

fn spec(cluster: &Cluster, name: &str) -> String {
    cluster
        .write_file(
            &format!("{name}.yaml"),
            &format!("name: {name}\nimage: x\ncommand: [\"sleep\", \"600\"]\nreplicas: 0\n"),
        )
        .to_str()
        .expect("utf-8")
        .to_string()
}

fn services(cluster: &Cluster) -> Vec<String> {
    let list: serde_json::Value =
        serde_json::from_str(&ok(cluster.cli(&["get", "services", "-o", "json"]))).expect("json");
    list.as_array()
        .expect("array")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Node `id`'s own TLS material, as an intruder who copied its data dir has it.
fn stolen(cluster: &Cluster, id: u64) -> NodeTls {
    let dir = cluster.agent(id).data_dir.join("tls");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("tls file");
    NodeTls {
        ca_pem: read("ca.pem"),
        cert_pem: read("node.pem"),
        key_pem: read("node.key"),
    }
}

/// A channel to `addr` presenting `material`'s certificate (the server checked against
/// its CA).
async fn channel_as(addr: &str, material: &NodeTls) -> Channel {
    let config = tls::node_client_config(material).expect("client config");
    tls::connect_now(addr, ClientTls::Tls(Shared::new(config)), |e| {
        e.timeout(Duration::from_secs(5))
    })
    .await
    .expect("connect")
}

/// A channel to `addr` with no client certificate, checking nothing.
async fn stranger(addr: &str) -> Channel {
    let config = tls::unverified_client_config().expect("config");
    tls::connect_now(addr, ClientTls::Tls(Shared::new(config)), |e| {
        e.timeout(Duration::from_secs(5))
    })
    .await
    .expect("connect")
}

fn apply_request(name: &str) -> ApplyRequest {
    ApplyRequest {
        spec_document: format!("name: {name}\nimage: x\nreplicas: 0\n").into_bytes(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_valid_credential_is_refused_and_nothing_is_written() {
    let cluster = Cluster::start(3);
    cluster.wait_for_leader(T).await;
    let before = services(&cluster);
    let file = spec(&cluster, "intruder");

    // No config at all: told what is missing and where the CLI looks.
    let o = cli_with(&cluster, None, &["apply", "-f", &file]);
    refused(&o, "credential missing");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("FLOTILLA_CONFIG"),
        "{}",
        text(&o)
    );
    refused(&cli_with(&cluster, None, &["get", "services"]), "credential missing");

    // A revoked token: worked, then refused everywhere once revoked.
    let temp = token_config(&cluster, "admin", &["--name", "temp"]);
    ok(cli_with(&cluster, Some(&temp), &["get", "services"]));
    ok(cluster.cli(&["token", "revoke", "temp"]));
    wait_until("the revocation to reach every node", T, || {
        let o = cli_with(&cluster, Some(&temp), &["get", "services"]);
        (o.status.code() == Some(5)).then_some(o)
    });
    refused(&cli_with(&cluster, Some(&temp), &["apply", "-f", &file]), "revoked");

    // An expired token.
    let short = token_config(&cluster, "operator", &["--ttl", "1s", "--name", "short"]);
    wait_until("the short token to expire", T, || {
        let o = cli_with(&cluster, Some(&short), &["get", "services"]);
        (o.status.code() == Some(5)).then_some(o)
    });
    refused(&cli_with(&cluster, Some(&short), &["apply", "-f", &file]), "expired");

    // A token that was never issued (right shape, unknown id).
    let forged = cluster.root().join("forged.yaml");
    let mut f = flotilla_security::config::ClientConfigFile::load(&temp).expect("config");
    f.token = flotilla_security::cred::new_client_token().0;
    f.save(&forged).expect("save");
    refused(&cli_with(&cluster, Some(&forged), &["apply", "-f", &file]), "unknown");

    // A node's certificate used as a client credential.
    let mut c = ClusterServiceClient::new(channel_as(&cluster.addr(1), &stolen(&cluster, 2)).await);
    let s = c.apply(apply_request("intruder")).await.expect_err("refused");
    assert_eq!(s.code(), tonic::Code::Unauthenticated, "{s:?}");
    assert!(s.message().contains("not a client credential"), "{s:?}");

    // A certificate from another CA: the handshake itself fails.
    let other = Ca::generate("other", SystemTime::now()).expect("ca");
    let key = flotilla_security::ca::new_key().expect("key");
    let foreign = NodeTls {
        ca_pem: stolen(&cluster, 1).ca_pem,
        cert_pem: other
            .issue_for_key(1, &key, SystemTime::now(), Duration::from_secs(3600))
            .expect("cert"),
        key_pem: key.serialize_pem(),
    };
    let config = tls::node_client_config(&foreign).expect("config");
    let answer = match tls::connect_now(&cluster.addr(1), ClientTls::Tls(Shared::new(config)), |e| {
        e.timeout(Duration::from_secs(5))
    })
    .await
    {
        Err(e) => Err(e),
        Ok(ch) => ClusterServiceClient::new(ch)
            .list_services(ListServicesRequest::default())
            .await
            .map(drop)
            .map_err(|s| s.to_string()),
    };
    assert!(answer.is_err(), "a foreign CA's certificate was accepted");

    // A stranger speaking plain HTTP/2 gets nowhere either.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.addr(1)))
        .expect("uri")
        .timeout(Duration::from_secs(3))
        .connect()
        .await;
    if let Ok(ch) = plain {
        let r = ClusterServiceClient::new(ch).apply(apply_request("intruder")).await;
        assert!(r.is_err(), "plaintext apply accepted");
    }

    // Nothing was written.
    assert_eq!(services(&cluster), before);
    let tokens = ok(cluster.cli(&["token", "list", "-o", "json"]));
    assert!(!tokens.contains("intruder"), "{tokens}");
    cluster.cleanup_workloads();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_limit_what_a_token_can_do_and_a_forwarded_call_is_checked_for_its_caller() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(T).await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).expect("follower");
    ok(cluster.cli(&["apply", "-f", &spec(&cluster, "web")]));

    let viewer = token_config(&cluster, "viewer", &["--name", "reader"]);
    let v = |args: &[&str]| cli_with(&cluster, Some(&viewer), args);
    ok(v(&["get", "services"]));
    ok(v(&["get", "nodes"]));
    ok(v(&["cluster", "status"]));
    ok(v(&["events"]));
    let file = spec(&cluster, "more");
    for args in [
        vec!["apply", "-f", file.as_str()],
        vec!["delete", "service", "web"],
        vec!["scale", "web", "2"],
        vec!["node", "drain", "2"],
        vec!["logs", "web"],
        vec!["token", "list"],
    ] {
        let o = v(&args);
        refused(&o, "not allowed");
        assert!(String::from_utf8_lossy(&o.stderr).contains("viewer"), "{}", text(&o));
    }

    let operator = token_config(&cluster, "operator", &["--name", "ops"]);
    let op = |args: &[&str]| cli_with(&cluster, Some(&operator), args);
    ok(op(&["scale", "web", "1"]));
    refused(&op(&["node", "remove", "3"]), "not allowed");
    let snap = cluster.root().join("s.snap");
    refused(&op(&["snapshot", "save", snap.to_str().expect("utf-8")]), "not allowed");
    refused(&op(&["token", "create", "--role", "admin"]), "not allowed");

    // Through a follower: the leader checks the caller's token, not the follower's
    // certificate. The operator's write goes through; the viewer's is refused by role.
    let through = |config: &Path, args: &[&str]| {
        Command::new(flotilla_bin())
            .arg("--addr")
            .arg(cluster.addr(follower))
            .args(args)
            .env("FLOTILLA_CONFIG", config)
            .env_remove("FLOTILLA_ADDR")
            .output()
            .expect("run")
    };
    ok(through(&operator, &["scale", "web", "0"]));
    refused(&through(&viewer, &["scale", "web", "2"]), "viewer");

    // Every client write's event names the token that made it.
    let events = ok(cluster.cli(&["events", "-o", "json"]));
    assert!(events.contains("token.created"), "{events}");
    assert!(
        events.contains("viewer token created by token \\\"admin\\\""),
        "{events}"
    );
    assert!(
        events.contains("scaled to 1 (version 2) (by token \\\"ops\\\")"),
        "{events}"
    );
    assert!(
        events.contains("scaled to 0 (version 3) (by token \\\"ops\\\")"),
        "{events}"
    );
    assert!(
        events.contains("created at version 1 (by token \\\"admin\\\")"),
        "{events}"
    );
    cluster.cleanup_workloads();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_certificate_speaks_only_for_its_node_and_strangers_cannot_touch_raft() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(T).await;
    let other = cluster.ids().into_iter().find(|id| *id != leader).expect("follower");
    let third = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader && *id != other)
        .expect("third");
    let as_other = stolen(&cluster, other);

    // Heartbeat and report claiming the third node, with `other`'s certificate.
    let mut agent = AgentServiceClient::new(channel_as(&cluster.addr(leader), &as_other).await);
    let s = agent
        .heartbeat(HeartbeatRequest {
            node_id: third,
            address: "127.0.0.1:1".into(),
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(s.code(), tonic::Code::Unauthenticated, "{s:?}");
    assert!(s.message().contains(&format!("cannot speak for node {third}")), "{s:?}");
    let s = agent
        .report_status(ReportStatusRequest {
            node_id: third,
            reports: vec![],
        })
        .await
        .expect_err("refused");
    assert_eq!(s.code(), tonic::Code::Unauthenticated, "{s:?}");

    // A vote request in the third node's name.
    let vote = openraft::raft::VoteRequest::<u64> {
        vote: openraft::Vote::new(1_000, third),
        last_log_id: None,
    };
    let mut raft = RaftServiceClient::new(channel_as(&cluster.addr(leader), &as_other).await);
    let s = raft
        .vote(RaftMessage {
            data: flotilla_raft_types::wire::encode(&vote),
        })
        .await
        .expect_err("refused");
    assert_eq!(s.code(), tonic::Code::Unauthenticated, "{s:?}");

    // A stranger: a higher epoch, an append and a snapshot, none with a certificate.
    let ch = stranger(&cluster.addr(leader)).await;
    let mut raft = RaftServiceClient::new(ch.clone());
    let mut req = tonic::Request::new(RaftMessage { data: vec![] });
    req.metadata_mut()
        .insert("x-flotilla-epoch", "999".parse().expect("ascii"));
    req.metadata_mut()
        .insert("x-flotilla-node", "9".parse().expect("ascii"));
    let s = raft.append_entries(req).await.expect_err("refused");
    assert_eq!(s.code(), tonic::Code::Unauthenticated, "{s:?}");
    let chunks = vec![
        SnapshotChunk {
            kind: Some(snapshot_chunk::Kind::Header(SnapshotHeader {
                total_bytes: 3,
                ..Default::default()
            })),
        },
        SnapshotChunk {
            kind: Some(snapshot_chunk::Kind::Data(vec![1, 2, 3])),
        },
    ];
    let s = raft
        .install_snapshot(futures_stream(chunks))
        .await
        .expect_err("refused");
    assert_eq!(s.code(), tonic::Code::Unauthenticated, "{s:?}");

    // A member's vote request at a far higher epoch is refused by the node that knows its
    // epoch (one that learned it from the leader) and fences nobody.
    let vote = openraft::raft::VoteRequest::<u64> {
        vote: openraft::Vote::new(1, other),
        last_log_id: None,
    };
    wait_until_async("node {third} to learn the cluster's epoch", T, || async {
        (cluster.status(third).await?.epoch > 0).then_some(())
    })
    .await;
    let mut raft = RaftServiceClient::new(channel_as(&cluster.addr(third), &as_other).await);
    let mut req = tonic::Request::new(RaftMessage {
        data: flotilla_raft_types::wire::encode(&vote),
    });
    req.metadata_mut()
        .insert("x-flotilla-epoch", "999".parse().expect("ascii"));
    let s = raft.vote(req).await.expect_err("refused");
    assert!(s.message().contains("epoch 999"), "{s:?}");

    // Everyone is still up, and the cluster takes writes.
    ok(cluster.cli(&["apply", "-f", &spec(&cluster, "after")]));
    let status: serde_json::Value =
        serde_json::from_str(&ok(cluster.cli(&["cluster", "status", "-o", "json"]))).expect("json");
    let members = status["members"].as_array().expect("members");
    assert!(members.iter().all(|m| m["reachable"] == true), "{status}");
    assert!(
        members.iter().all(|m| m["cert_expires_at"].as_u64().unwrap_or(0) > 0),
        "{status}"
    );
    cluster.cleanup_workloads();
}

fn futures_stream(chunks: Vec<SnapshotChunk>) -> impl tokio_stream::Stream<Item = SnapshotChunk> {
    tokio_stream::iter(chunks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_with_the_join_token_and_a_wrong_token_is_refused_before_any_state() {
    let mut cluster = Cluster::start(3);
    cluster.wait_for_leader(T).await;
    let addrs = cluster.addrs();

    cluster.add_agent(4, &["--join", &addrs]);
    cluster.start_agent(4);
    wait_until_async("node 4 to join", T, || async {
        let o = cluster.cli(&["get", "nodes", "-o", "json"]);
        let nodes: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        nodes
            .as_array()?
            .iter()
            .any(|n| n["id"] == 4 && n["status"] == "ready")
            .then_some(())
    })
    .await;

    // The right CA digest with a wrong secret, and a token of another cluster's CA.
    let join = std::fs::read_to_string(cluster.join_token()).expect("join token");
    let digest = join.trim().split('-').nth(1).expect("digest").to_string();
    let wrong_secret = flotilla_security::NodeToken::join(&digest, &flotilla_security::cred::new_secret());
    let other = Ca::generate("elsewhere", SystemTime::now()).expect("ca");
    let wrong_ca = flotilla_security::NodeToken::join(&other.digest(), &flotilla_security::cred::new_secret());
    for (id, token, word) in [
        (5, wrong_secret.to_string(), "does not match"),
        (6, wrong_ca.to_string(), "join token names"),
    ] {
        let file = cluster.write_file(&format!("bad{id}.token"), &token);
        let data = cluster.root().join(format!("bad{id}"));
        let o = Command::new(flotilla_bin())
            .args([
                "agent",
                "--id",
                &id.to_string(),
                "--listen",
                &format!("127.0.0.1:{}", free_port()),
                "--data-dir",
                data.to_str().expect("utf-8"),
                "--join",
                &addrs,
                "--token-file",
                file.to_str().expect("utf-8"),
                "--driver",
                "process",
            ])
            .env("FLOTILLA_TEST_CLUSTER", cluster.name())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run agent");
        let mut child = o;
        if flotilla_testkit::wait_child(&mut child, T).is_none() {
            let _ = child.kill();
        }
        let o = child.wait_with_output().expect("agent output");
        assert!(!o.status.success(), "node {id} started with a bad token: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(word), "{}", text(&o));
        // It holds no certificate and no state of the cluster.
        assert!(!data.join("tls/node.pem").exists());
        assert!(!data.join("admin.yaml").exists());
    }
    let nodes = ok(cluster.cli(&["get", "nodes", "-o", "json"]));
    assert!(!nodes.contains("\"id\": 5") && !nodes.contains("\"id\": 6"), "{nodes}");

    // The bootstrap token does not give node 2's id to another key once node 2 has one.
    let data = cluster.root().join("second2");
    let mut child = Command::new(flotilla_bin())
        .args(["agent", "--id", "2", "--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(&data)
        .args(["--peers", &cluster.peers(), "--driver", "process"])
        .arg("--token-file")
        .arg(&cluster.creds.bootstrap)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run agent");
    if flotilla_testkit::wait_child(&mut child, T).is_none() {
        let _ = child.kill();
    }
    let o = child.wait_with_output().expect("agent output");
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("issued to another key"),
        "{}",
        text(&o)
    );
    cluster.cleanup_workloads();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_renew_while_writes_go_on_and_a_node_off_past_expiry_comes_back() {
    let mut cluster = Cluster::builder(3).agent_args(&["--cert-lifetime", "6s"]).start();
    cluster.wait_for_leader(T).await;
    let expiry = |cluster: &Cluster| -> Vec<u64> {
        let s: serde_json::Value =
            serde_json::from_str(&ok(cluster.cli(&["cluster", "status", "-o", "json"]))).expect("json");
        s["members"]
            .as_array()
            .expect("members")
            .iter()
            .map(|m| m["cert_expires_at"].as_u64().unwrap_or(0))
            .collect()
    };
    let first = expiry(&cluster);
    ok(cluster.cli(&["apply", "-f", &spec(&cluster, "web")]));
    // Writes go on for two lifetimes; every one succeeds.
    let start = std::time::Instant::now();
    let mut n = 0u32;
    while start.elapsed() < Duration::from_secs(12) {
        n += 1;
        ok(cluster.cli(&["scale", "web", &(n % 3).to_string()]));
    }
    let later = expiry(&cluster);
    assert!(
        later.iter().zip(&first).all(|(l, f)| *l > *f + 4000),
        "not renewed: {first:?} -> {later:?}"
    );

    // Node 3 kept off past its certificate's expiry signs a new one from its replica.
    cluster.kill(3);
    let off = std::time::Instant::now();
    wait_until("node 3's certificate to expire", T, || {
        (off.elapsed() > Duration::from_secs(7)).then_some(())
    });
    cluster.start_agent(3);
    wait_until_async("node 3 back", T, || async {
        let s = cluster.status(3).await?;
        (s.cert_expires_at > flotilla_security_now_ms()).then_some(())
    })
    .await;
    ok(cluster.cli(&["scale", "web", "1"]));
    assert!(
        cluster.log(3).contains("signed this node's certificate"),
        "{}",
        cluster.log(3)
    );
    cluster.cleanup_workloads();
}

fn flotilla_security_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_tls_material_or_on_a_public_address_with_insecure_refuses_to_start() {
    let root = tempfile::tempdir().expect("dir");
    let run = |args: &[&str]| {
        Command::new(flotilla_bin())
            .arg("agent")
            .args(args)
            .output()
            .expect("run agent")
    };
    let dir = |n: &str| root.path().join(n).to_str().expect("utf-8").to_string();
    // Node 2 of a new cluster with no token: nothing to get a certificate with.
    let o = run(&[
        "--id",
        "2",
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--data-dir",
        &dir("a"),
        "--peers",
        "1=127.0.0.1:1,2=127.0.0.1:2",
        "--driver",
        "process",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--token-file"),
        "{}",
        text(&o)
    );
    // --insecure on an address outside the loopback range.
    let o = run(&[
        "--id",
        "1",
        "--listen",
        "0.0.0.0:0",
        "--data-dir",
        &dir("b"),
        "--peers",
        "1=127.0.0.1:1",
        "--insecure",
        "--driver",
        "process",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("loopback"), "{}", text(&o));
    // A malformed token.
    let o = run(&[
        "--id",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &dir("c"),
        "--peers",
        "1=127.0.0.1:1",
        "--token",
        "SWMTKN-1-abc",
        "--driver",
        "process",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not a flotilla node token"),
        "{}",
        text(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_env_values_redacted() {
    let cluster = Cluster::start(1);
    cluster.wait_for_leader(T).await;
    let file = cluster.write_file(
        "secret.yaml",
        "name: web\nimage: x\ncommand: [\"sleep\", \"600\"]\nreplicas: 0\nenv: {PASSWORD: hunter2}\n",
    );
    ok(cluster.cli(&["apply", "-f", file.to_str().expect("utf-8")]));
    let admin = ok(cluster.cli(&["get", "service", "web", "-o", "json"]));
    assert!(admin.contains("hunter2"), "{admin}");
    let viewer = token_config(&cluster, "viewer", &[]);
    for args in [
        &["get", "service", "web", "-o", "json"][..],
        &["get", "services", "-o", "yaml"][..],
        &["rollout", "history", "web", "-o", "json"][..],
        &["describe", "service", "web"][..],
    ] {
        let shown = ok(cli_with(&cluster, Some(&viewer), args));
        assert!(!shown.contains("hunter2"), "{args:?}: {shown}");
    }
    let shown = ok(cli_with(
        &cluster,
        Some(&viewer),
        &["get", "service", "web", "-o", "json"],
    ));
    assert!(shown.contains("(redacted)"), "{shown}");
    cluster.cleanup_workloads();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_inputs_get_a_clear_error_and_the_node_stays_up() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(T).await;
    let other = cluster.ids().into_iter().find(|id| *id != leader).expect("follower");
    let mut api = cluster.client(leader).await.expect("client");

    // A spec document over the 1 MiB limit: refused before it is parsed.
    let big = format!(
        "name: big\nimage: x\nreplicas: 0\nenv: {{X: \"{}\"}}\n",
        "a".repeat(2 << 20)
    );
    let s = api
        .apply(ApplyRequest {
            spec_document: big.into_bytes(),
        })
        .await
        .expect_err("refused");
    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("the limit is 1048576"), "{s:?}");

    // A request over the client API's 4 MiB: refused before it is decoded.
    let huge = vec![b'x'; 5 << 20];
    let s = api
        .apply(ApplyRequest { spec_document: huge })
        .await
        .expect_err("refused");
    assert_eq!(s.code(), tonic::Code::OutOfRange, "{s:?}");
    assert!(s.message().contains("the limit is: 4194304 bytes"), "{s:?}");

    // A digest far beyond the log, and events after the last possible index.
    let s = api
        .state_digest(flotilla_proto::v1::StateDigestRequest { index: u64::MAX })
        .await
        .expect_err("refused");
    assert_eq!(s.code(), tonic::Code::OutOfRange, "{s:?}");
    let events = api
        .events(flotilla_proto::v1::EventsRequest {
            since: u64::MAX,
            follow: false,
        })
        .await;
    assert!(events.is_ok(), "{events:?}");

    // A snapshot stream longer than its header says, from a member's certificate.
    let vote = openraft::Vote::<u64>::new(1, other);
    let meta = flotilla_raft_types::SnapshotMeta {
        last_log_id: None,
        last_membership: Default::default(),
        snapshot_id: "forged".into(),
    };
    let chunks = vec![
        SnapshotChunk {
            kind: Some(snapshot_chunk::Kind::Header(SnapshotHeader {
                vote: flotilla_raft_types::wire::encode(&vote),
                meta: flotilla_raft_types::wire::encode(&meta),
                total_bytes: 10,
            })),
        },
        SnapshotChunk {
            kind: Some(snapshot_chunk::Kind::Data(vec![0; 1 << 20])),
        },
    ];
    let mut raft = RaftServiceClient::new(channel_as(&cluster.addr(leader), &stolen(&cluster, other)).await);
    let s = raft
        .install_snapshot(futures_stream(chunks))
        .await
        .expect_err("refused");
    assert!(s.message().contains("longer than its header"), "{s:?}");

    // Every node is still up and the cluster takes writes.
    ok(cluster.cli(&["apply", "-f", &spec(&cluster, "after")]));
    let status: serde_json::Value =
        serde_json::from_str(&ok(cluster.cli(&["cluster", "status", "-o", "json"]))).expect("json");
    assert!(
        status["members"]
            .as_array()
            .expect("members")
            .iter()
            .all(|m| m["reachable"] == true),
        "{status}"
    );
    cluster.cleanup_workloads();
}

/// `ca status -o json` through `config`.
fn ca_status(cluster: &Cluster, config: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(cli_with(cluster, Some(config), &["ca", "status", "-o", "json"]))).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_rotates_under_load_with_no_failed_write_and_the_previous_ca_is_trusted_no_more() {
    let mut cluster = Cluster::builder(3).start();
    cluster.wait_for_leader(T).await;
    ok(cluster.cli(&["apply", "-f", &spec(&cluster, "web")]));
    let admin = cluster.root().join("admin.yaml");
    let old_only = cluster.root().join("old-ca.yaml");
    std::fs::copy(&admin, &old_only).expect("copy the admin config");
    let before = ca_status(&cluster, &admin);
    let old_digest = before["digest"].as_str().expect("digest").to_string();
    assert_eq!(before["rotating"], false);
    let join_before = ok(cluster.cli(&["token", "join"]));
    assert!(join_before.contains(&old_digest), "{join_before}");

    // Writes go on, through the config `ca rotate` updates, for the whole rotation.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, admin, addrs) = (stop.clone(), admin.clone(), cluster.live_addrs());
        std::thread::spawn(move || {
            let mut results = Vec::new();
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) || n < 5 {
                n += 1;
                let o = Command::new(flotilla_bin())
                    .args(["--addr", &addrs, "scale", "web", &(n % 3).to_string()])
                    .env_remove("FLOTILLA_ADDR")
                    .env("FLOTILLA_CONFIG", &admin)
                    .output()
                    .expect("run flotilla");
                results.push(o);
            }
            results
        })
    };
    let rotated = ok(cluster.cli(&["ca", "rotate", "-o", "json"]));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let writes = writer.join().expect("writer");
    eprintln!("{} writes during the rotation", writes.len());
    for o in &writes {
        assert!(o.status.success(), "a write failed during the rotation: {}", text(o));
    }
    let after: serde_json::Value = serde_json::from_str(&rotated).expect("json");
    let new_digest = after["digest"].as_str().expect("digest").to_string();
    assert_ne!(new_digest, old_digest);
    assert_eq!(after["rotating"], false, "{after}");
    let members = after["members"].as_array().expect("members");
    assert_eq!(members.len(), 3, "{after}");
    assert!(members.iter().all(|m| m["cert"] == "current"), "{after}");
    // The config in use now trusts the new CA only, and the join token names it.
    let config = flotilla_security::config::ClientConfigFile::load(&admin).expect("config");
    assert_eq!(
        flotilla_security::identity::pem_certs(&config.ca).expect("pem").len(),
        1
    );
    assert_eq!(flotilla_security::identity::pem_digest(&config.ca), new_digest);
    let join_after = ok(cluster.cli(&["token", "join"]));
    assert!(join_after.contains(&new_digest), "{join_after}");

    // A client that trusts only the previous CA is refused at the handshake, once each
    // node has applied the end of the rotation (within a second of it).
    let old_client = |addr: &str| {
        Command::new(flotilla_bin())
            .args(["--addr", addr, "get", "services"])
            .env_remove("FLOTILLA_ADDR")
            .env("FLOTILLA_CONFIG", &old_only)
            .output()
            .expect("run flotilla")
    };
    let o = wait_until("every node to stop showing the cross-signed certificate", T, || {
        let answers: Vec<Output> = cluster.ids().iter().map(|id| old_client(&cluster.addr(*id))).collect();
        answers
            .iter()
            .all(|o| !o.status.success())
            .then(|| answers.into_iter().next().expect("one"))
    });
    assert!(text(&o).contains("certificate"), "{}", text(&o));

    // A node restarted after the rotation comes back with what it saved.
    cluster.kill(3);
    cluster.start_agent(3);
    wait_until_async("node 3 back on the new CA", T, || async {
        let s = cluster.status(3).await?;
        (s.cert_ca == new_digest && s.applied_index > 0).then_some(())
    })
    .await;
    ok(cluster.cli(&["scale", "web", "1"]));
    let events = ok(cluster.cli(&["events"]));
    assert!(
        events.contains("ca.rotation-started") && events.contains("ca.rotated"),
        "{events}"
    );
    // A second rotation works too (the rotated CA rotates like the first).
    let again: serde_json::Value =
        serde_json::from_str(&ok(cluster.cli(&["ca", "rotate", "-o", "json"]))).expect("json");
    assert_ne!(again["digest"], after["digest"]);
    cluster.cleanup_workloads();
}

/// The resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb / 1024
}

/// What a barrage may add to a node's resident memory. Were the inputs kept (or their
/// claimed sizes allocated), one round alone would add more than this.
const MEMORY_BOUND_MIB: u64 = 96;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barrage_of_bad_inputs_leaves_a_node_within_a_memory_bound() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(T).await;
    let other = cluster.ids().into_iter().find(|id| *id != leader).expect("follower");
    ok(cluster.cli(&["apply", "-f", &spec(&cluster, "warm")]));
    let pid = cluster.agent(leader).pid().expect("pid");
    let mut api = cluster.client(leader).await.expect("client");
    let mut raft = RaftServiceClient::new(channel_as(&cluster.addr(leader), &stolen(&cluster, other)).await)
        .max_encoding_message_size(64 << 20);
    let before = rss_mib(pid);
    let vote = flotilla_raft_types::wire::encode(&openraft::Vote::<u64>::new(1, other));
    let meta = flotilla_raft_types::wire::encode(&flotilla_raft_types::SnapshotMeta {
        last_log_id: None,
        last_membership: Default::default(),
        snapshot_id: "forged".into(),
    });
    let header = |total_bytes: u64| SnapshotChunk {
        kind: Some(snapshot_chunk::Kind::Header(SnapshotHeader {
            vote: vote.clone(),
            meta: meta.clone(),
            total_bytes,
        })),
    };
    for round in 0..25u32 {
        // Over the client API's request limit; a spec over 1 MiB; not YAML at all.
        let s = api
            .apply(ApplyRequest {
                spec_document: vec![b'x'; 5 << 20],
            })
            .await
            .expect_err("refused");
        assert_eq!(s.code(), tonic::Code::OutOfRange, "{s:?}");
        let s = api
            .apply(ApplyRequest {
                spec_document: format!("name: big\nimage: x\nenv: {{X: \"{}\"}}\n", "a".repeat(3 << 20)).into_bytes(),
            })
            .await
            .expect_err("refused");
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
        let s = api
            .apply(ApplyRequest {
                spec_document: vec![0xff; 512 << 10],
            })
            .await
            .expect_err("refused");
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
        // A Raft message that is not one, and one over the Raft limit.
        let s = raft
            .append_entries(RaftMessage {
                data: vec![b'{'; 8 << 20],
            })
            .await
            .expect_err("refused");
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
        // Snapshots: one claiming the maximum size (nothing allocated for it), one past
        // its header, one claiming more than a node accepts.
        let s = raft
            .install_snapshot(futures_stream(vec![
                header(4 << 30),
                SnapshotChunk {
                    kind: Some(snapshot_chunk::Kind::Data(vec![0; 2 << 20])),
                },
            ]))
            .await
            .expect_err("refused");
        assert!(!s.message().is_empty(), "{s:?}");
        let s = raft
            .install_snapshot(futures_stream(vec![
                header(10),
                SnapshotChunk {
                    kind: Some(snapshot_chunk::Kind::Data(vec![0; 2 << 20])),
                },
            ]))
            .await
            .expect_err("refused");
        assert!(s.message().contains("longer than its header"), "{s:?}");
        let s = raft
            .install_snapshot(futures_stream(vec![header(u64::MAX)]))
            .await
            .expect_err("refused");
        assert!(!s.message().is_empty(), "{s:?}");
        // A digest far past the log; a certificate request with junk in it.
        api.state_digest(flotilla_proto::v1::StateDigestRequest { index: u64::MAX })
            .await
            .expect_err("refused");
        let s = api
            .issue_certificate(flotilla_proto::v1::IssueCertificateRequest {
                id: u64::from(round) + 100,
                csr: vec![0x30; 64 << 10],
                proof: "00".repeat(32),
            })
            .await
            .expect_err("refused");
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
    }
    let after = rss_mib(pid);
    eprintln!("node {leader}: resident {before} MiB before the barrage, {after} MiB after");
    assert!(
        after <= before + MEMORY_BOUND_MIB,
        "node {leader} grew from {before} MiB to {after} MiB (bound: +{MEMORY_BOUND_MIB} MiB)"
    );
    // The node stays up and the cluster takes writes.
    assert!(cluster.agent(leader).is_running());
    ok(cluster.cli(&["apply", "-f", &spec(&cluster, "after")]));
    cluster.cleanup_workloads();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_runs_past_the_server_limit_is_answered_deadline_exceeded() {
    let cluster = Cluster::builder(1).agent_args(&["--request-timeout", "1s"]).start();
    let id = cluster.wait_for_leader(T).await;
    let mut api = cluster.client(id).await.expect("client");
    let last = cluster.status(id).await.expect("status").last_log_index;
    // A digest at an index the log has not reached waits for it (up to 3 s on its own):
    // the server's limit ends it first.
    let s = api
        .state_digest(flotilla_proto::v1::StateDigestRequest { index: last + 50 })
        .await
        .expect_err("timed out");
    assert_eq!(s.code(), tonic::Code::DeadlineExceeded, "{s:?}");
    assert!(s.message().contains("--request-timeout"), "{s:?}");
    // The node answers the next request.
    ok(cluster.cli(&["cluster", "status"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_far_behind_on_large_entries_catches_up_in_appends_under_the_limit() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(T).await;
    let behind = cluster.ids().into_iter().find(|id| *id != leader).expect("follower");
    cluster.kill(behind);
    // 45 specs of ~900 KiB: far more than one append may carry (1 MiB) once the follower
    // comes back and the leader sends it everything it missed.
    let mut api = cluster.client(leader).await.expect("client");
    let value = "a".repeat(900 << 10);
    for n in 0..45 {
        let doc = format!("name: big{n}\nimage: x\nreplicas: 0\nenv: {{X: \"{value}\"}}\n");
        api.apply(ApplyRequest {
            spec_document: doc.into_bytes(),
        })
        .await
        .expect("apply");
    }
    let last = cluster.status(leader).await.expect("status").last_log_index;
    cluster.start_agent(behind);
    let deadline = std::time::Instant::now() + T;
    loop {
        let applied = cluster.status(behind).await.map_or(0, |s| s.applied_index);
        if applied >= last {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node {behind} applied {applied} of {last}\nleader:\n{}\nfollower:\n{}",
            tail(&cluster.log(leader)),
            tail(&cluster.log(behind))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = cluster.log(leader);
    assert!(log.contains("append too large; sending fewer entries"), "{log}");
    ok(cluster.cli(&["delete", "service", "big0"]));
}

/// The last lines of a log, for a failure message.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..]
        .iter()
        .map(|l| l.chars().take(400).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}
