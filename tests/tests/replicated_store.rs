//! Issue "Replicated desired-state store": three real agents on 127.0.0.1, driven only
//! through the CLI and gRPC.

use std::time::Duration;

use flotilla_proto::v1::{ApplyRequest, MemberRole, MemberStatus};
use flotilla_testkit::{wait_until_async, Cluster};
use flotilla_tests::{json, ok, spec, stderr};

const T: Duration = Duration::from_secs(30);

/// `get service NAME --stale -o json` on one node, once it has the service.
async fn stale_get(cluster: &Cluster, id: u64, name: &str, version: u64) -> serde_json::Value {
    wait_until_async(&format!("node {id} to have {name} v{version}"), T, || async {
        let o = cluster.cli_at(&cluster.addr(id), &["get", "service", name, "--stale", "-o", "json"]);
        if !o.status.success() {
            return None;
        }
        let v = json(o);
        (v["version"] == version).then_some(v)
    })
    .await
}

async fn statuses(cluster: &Cluster) -> Vec<MemberStatus> {
    let mut out = Vec::new();
    for id in cluster.ids() {
        if let Some(s) = cluster.status(id).await {
            out.push(s);
        }
    }
    out
}

fn apply(cluster: &Cluster, addrs: &str, name: &str, text: &str) -> String {
    let file = cluster.write_file(&format!("{name}.yaml"), text);
    ok(cluster.cli_at(addrs, &["apply", "-f", file.to_str().expect("utf-8 path")]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_elect_one_leader_and_a_follower_accepts_writes() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(T).await;
    let all = statuses(&cluster).await;
    assert_eq!(all.len(), 3);
    assert_eq!(
        all.iter().filter(|s| s.role() == MemberRole::Leader).count(),
        1,
        "{all:?}"
    );
    assert!(all.iter().all(|s| s.voter), "{all:?}");

    let follower = cluster.ids().into_iter().find(|i| *i != leader).expect("a follower");
    let out = apply(&cluster, &cluster.addr(follower), "web", &spec("web", 3));
    assert!(out.contains("service/web created (version 1)"), "{out}");

    for id in cluster.ids() {
        let v = stale_get(&cluster, id, "web", 1).await;
        assert_eq!(v["spec"]["replicas"], 3, "node {id}: {v}");
    }

    // Every replica holds the same state at one index.
    let verify = json(cluster.cli(&["cluster", "verify", "-o", "json"]));
    assert_eq!(verify["agree"], true, "{verify}");
    assert_eq!(verify["members"].as_array().expect("members").len(), 3);
    let out = ok(cluster.cli(&["cluster", "verify"]));
    assert!(out.contains("all 3 replicas agree at index"), "{out}");

    // `cluster status` from a follower names the leader and every member.
    let status = json(cluster.cli_at(&cluster.addr(follower), &["cluster", "status", "-o", "json"]));
    assert_eq!(status["leader"], leader);
    assert_eq!(status["members"].as_array().expect("members").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_elects_a_new_leader_and_the_old_one_catches_up() {
    let mut cluster = Cluster::start(3);
    let old = cluster.wait_for_leader(T).await;
    apply(&cluster, &cluster.addrs(), "a", &spec("a", 1));

    cluster.kill(old);
    let new = cluster.wait_for_leader(T).await;
    assert_ne!(new, old);
    let out = apply(&cluster, &cluster.live_addrs(), "b", &spec("b", 2));
    assert!(out.contains("created"), "{out}");
    let out = apply(&cluster, &cluster.live_addrs(), "a", &spec("a", 5));
    assert!(out.contains("updated from version 1 (version 2)"), "{out}");

    cluster.start_agent(old);
    let leader_applied = cluster.status(new).await.expect("leader answers").applied_index;
    cluster.wait_applied(old, leader_applied, T).await;
    assert_eq!(stale_get(&cluster, old, "a", 2).await["spec"]["replicas"], 5);
    stale_get(&cluster, old, "b", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_every_node_loses_nothing() {
    let mut cluster = Cluster::start(3);
    cluster.wait_for_leader(T).await;
    apply(&cluster, &cluster.addrs(), "a", &spec("a", 1));
    apply(&cluster, &cluster.addrs(), "a", &spec("a", 2));
    apply(&cluster, &cluster.addrs(), "a", &spec("a", 3));
    apply(&cluster, &cluster.addrs(), "b", &spec("b", 1));
    apply(&cluster, &cluster.addrs(), "c", &spec("c", 1));
    ok(cluster.cli(&["delete", "service", "c"]));
    let before = json(cluster.cli(&["get", "services", "-o", "json"]));
    assert_eq!(before.as_array().expect("list").len(), 2);

    for id in cluster.ids() {
        cluster.kill(id);
    }
    for id in cluster.ids() {
        cluster.start_agent(id);
    }
    cluster.wait_for_leader(T).await;
    let after = json(cluster.cli(&["get", "services", "-o", "json"]));
    assert_eq!(before, after);
    assert_eq!(after[0]["name"], "a");
    assert_eq!(after[0]["version"], 3);
    // Every replica, not only the leader, has it back.
    for id in cluster.ids() {
        stale_get(&cluster, id, "a", 3).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_a_snapshot_interval_catches_up_through_a_multi_megabyte_snapshot() {
    let mut cluster = Cluster::builder(3)
        .agent_args(&["--snapshot-interval", "20", "--snapshot-keep", "0"])
        .start();
    let leader = cluster.wait_for_leader(T).await;
    let lagging = cluster.ids().into_iter().find(|i| *i != leader).expect("a follower");
    cluster.kill(lagging);

    // 30 services of ~256 KiB each (~7.5 MiB of state). The snapshot the lagging node
    // installs is built at the 20th entry and holds the services applied by then: MiBs.
    let filler = "x".repeat(256 * 1024);
    for i in 0..30 {
        let text = format!("{}env:\n  FILLER: {filler}\n", spec(&format!("big-{i}"), 0));
        apply(&cluster, &cluster.live_addrs(), &format!("big-{i}"), &text);
    }
    let leader_status = wait_until_async("the leader to snapshot and compact", T, || async {
        cluster.status(leader).await.filter(|s| s.snapshot_index >= 10)
    })
    .await;

    cluster.start_agent(lagging);
    let caught_up = cluster.wait_applied(lagging, leader_status.applied_index, T).await;
    assert!(
        caught_up.snapshots_installed >= 1,
        "node {lagging} caught up without a snapshot install: {caught_up:?}"
    );
    let list = json(cluster.cli_at(&cluster.addr(lagging), &["get", "services", "--stale", "-o", "json"]));
    assert_eq!(list.as_array().expect("list").len(), 30);
    let big = stale_get(&cluster, lagging, "big-29", 1).await;
    assert_eq!(big["spec"]["env"]["FILLER"].as_str().map(str::len), Some(256 * 1024));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_writes_nothing() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(T).await;
    // No replicas and every node registered first: no task or node activity writes to the
    // log while the refused writes are tried.
    apply(&cluster, &cluster.addrs(), "web", &spec("web", 0));
    let follower = cluster.ids().into_iter().find(|i| *i != leader).expect("a follower");
    wait_until_async("three nodes registered", T, || async {
        let o = cluster.cli(&["get", "nodes", "-o", "json"]);
        (o.status.success() && json(o).as_array().map(Vec::len) == Some(3)).then_some(())
    })
    .await;
    let index_before = cluster.wait_applied(leader, 1, T).await.last_log_index;

    // Through the CLI: the field is named, the exit code is 1; a dry run is refused alike.
    for (text, field) in [
        ("name: web\nimage: x\nreplicas: 20000\n", "replicas"),
        (
            "name: web\nimage: x\nreplicaz: 2\n",
            "replicaz: unknown field, did you mean \"replicas\"? (line 3, column 1)",
        ),
        ("name: Web!\nimage: x\n", "name"),
        ("name: web\nimage: x\nports: [{container: 0}]\n", "ports[0].container"),
        (
            "name: web\nimage: x\nresources: {cpu_millis: 1}\n",
            "resources.cpu_millis: 1 is below 10, the least CPU the container engine accepts",
        ),
        // Applied one after the other, the second would silently win.
        (
            "name: web\nimage: a\n---\nname: web\nimage: b\n",
            "documents 1 and 2 both define service \"web\"",
        ),
    ] {
        let file = cluster.write_file("bad.yaml", text);
        for dry_run in [false, true] {
            let mut args = vec!["apply", "-f", file.to_str().expect("path")];
            args.extend(dry_run.then_some("--dry-run"));
            let o = cluster.cli(&args);
            assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
            assert!(stderr(&o).contains(field), "expected {field:?} in: {}", stderr(&o));
        }
    }
    // One name in two files of a directory: both files named, nothing applied (the first
    // file's new service included).
    let dir = cluster.root().join("dup");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("a.yaml"), "name: extra\nimage: x\nreplicas: 0\n").expect("write");
    std::fs::write(dir.join("b.yaml"), "name: extra\nimage: y\nreplicas: 0\n").expect("write");
    let o = cluster.cli(&["apply", "-f", dir.to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let both = format!(
        "{} and {} both define service \"extra\"",
        dir.join("a.yaml").display(),
        dir.join("b.yaml").display()
    );
    assert!(stderr(&o).contains(&both), "expected {both:?} in: {}", stderr(&o));

    // Straight to a follower over gRPC, bypassing the CLI's own check (the engine bounds
    // too), and oversized.
    let mut client = cluster.client(follower).await.expect("follower answers");
    for (memory, why) in [("0", "resources.memory_mb"), ("5", "resources.memory_mb: 5 is below 6")] {
        let err = client
            .apply(ApplyRequest {
                spec_document: format!("name: web\nimage: x\nresources: {{memory_mb: {memory}}}\n").into(),
            })
            .await
            .expect_err("invalid spec accepted");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains(why), "{}", err.message());
    }
    let huge = format!("name: huge\nimage: x\nenv:\n  BLOB: {}\n", "y".repeat(2 << 20));
    let err = client
        .apply(ApplyRequest {
            spec_document: huge.into(),
        })
        .await
        .expect_err("oversized spec accepted");
    assert!(err.message().contains("the limit is 1048576"), "{}", err.message());

    let index_after = cluster.status(leader).await.expect("leader").last_log_index;
    assert_eq!(index_before, index_after, "a refused write reached the log");
    assert_eq!(
        stale_get(&cluster, leader, "web", 1).await["spec"]["image"],
        "flotilla/busybox:latest"
    );

    // Unknown names are "not found", exit code 4.
    let o = cluster.cli(&["get", "service", "ghost"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("service \"ghost\" not found"), "{}", stderr(&o));
    let o = cluster.cli(&["delete", "service", "ghost"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
}

#[test]
fn an_unreachable_addr_is_reported_with_exit_code_3() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let o = std::process::Command::new(flotilla_testkit::flotilla_bin())
        .args(["--addr", &addr, "get", "services"])
        .output()
        .expect("run flotilla");
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let msg = stderr(&o);
    assert!(msg.contains("cannot reach the cluster"), "{msg}");
    assert!(msg.contains(&addr), "{msg}");
    assert!(msg.to_lowercase().contains("connection refused"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_data_dir_stops_the_agent_before_it_serves() {
    let mut cluster = Cluster::builder(3).agent_args(&["--snapshot-interval", "5"]).start();
    cluster.wait_for_leader(T).await;
    for i in 0..8 {
        apply(&cluster, &cluster.addrs(), &format!("s{i}"), &spec(&format!("s{i}"), 1));
    }
    let victim = 3;
    wait_until_async("node 3 to write a snapshot", T, || async {
        cluster.status(victim).await.filter(|s| s.snapshot_index >= 5)
    })
    .await;
    cluster.kill(victim);
    let data = cluster.agent(victim).data_dir.clone();
    let snap = data.join("snapshot").join("current.snap");
    let original = std::fs::read(&snap).expect("snapshot file");

    let refuses = |cluster: &mut Cluster, what: &str, expect: &str| {
        cluster.start_agent(victim);
        let status = cluster
            .wait_exit(victim, T)
            .unwrap_or_else(|| panic!("agent served with {what}"));
        assert!(!status.success(), "{what}: exit {status:?}");
        let log = cluster.log(victim);
        assert!(log.contains("cannot open data dir"), "{what}: {log}");
        assert!(log.contains(expect), "{what}: expected {expect:?} in {log}");
    };

    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    std::fs::write(&snap, &flipped).expect("write");
    refuses(&mut cluster, "a bit-flipped snapshot", "checksum mismatch");

    std::fs::write(&snap, &original[..original.len() - 100]).expect("write");
    refuses(&mut cluster, "a truncated snapshot", "truncated");

    std::fs::write(&snap, &original).expect("write");
    let current = data.join("raft").join("CURRENT");
    let current_text = std::fs::read(&current).expect("CURRENT");
    std::fs::remove_file(&current).expect("remove CURRENT");
    refuses(&mut cluster, "a RocksDB without CURRENT", "missing or incomplete");

    // Repaired, it starts and catches up.
    std::fs::write(&current, current_text).expect("restore CURRENT");
    cluster.start_agent(victim);
    stale_get(&cluster, victim, "s7", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_a_majority_says_so_for_reads_and_writes() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(T).await;
    apply(&cluster, &cluster.addrs(), "a", &spec("a", 0));
    let followers: Vec<u64> = cluster.ids().into_iter().filter(|i| *i != leader).collect();
    for id in &followers {
        cluster.kill(*id);
    }
    let at_leader = cluster.addr(leader);

    // A write is answered before the client's deadline with why it cannot commit (not a
    // bare timeout), exit code 3; so is a read.
    let o = cluster.cli_at(&at_leader, &["--timeout", "20s", "scale", "a", "2"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "no quorum: the leader (node {leader}) hears from 1 of 3 voters"
        )),
        "{err}"
    );
    assert!(err.contains("this write was proposed but is not committed"), "{err}");
    let o = cluster.cli_at(&at_leader, &["get", "service", "a"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("no quorum"), "{}", stderr(&o));

    // One follower back: a majority again, and writes commit.
    cluster.restart(followers[0]);
    wait_until_async("a write to commit with a majority back", T, || async {
        cluster.cli(&["scale", "a", "3"]).status.success().then_some(())
    })
    .await;
    let v = json(cluster.cli(&["get", "service", "a", "-o", "json"]));
    assert_eq!(v["spec"]["replicas"], 3, "{v}");
}

/// The newest RocksDB write-ahead log of a data dir, and its bytes.
fn newest_wal(data: &std::path::Path) -> (std::path::PathBuf, Vec<u8>) {
    let raft = data.join("raft");
    let wal = std::fs::read_dir(&raft)
        .expect("the raft dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
        .max()
        .unwrap_or_else(|| panic!("no WAL in {}", raft.display()));
    let bytes = std::fs::read(&wal).expect("read the WAL");
    (wal, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_wal_tail_is_recovered_and_a_flipped_byte_inside_the_wal_is_refused() {
    let mut cluster = Cluster::start(3);
    cluster.wait_for_leader(T).await;
    for i in 0..10 {
        apply(&cluster, &cluster.addrs(), &format!("w{i}"), &spec(&format!("w{i}"), 0));
    }
    let victim = 3;
    stale_get(&cluster, victim, "w9", 1).await;
    cluster.kill(victim);
    let data = cluster.agent(victim).data_dir.clone();
    let (wal, original) = newest_wal(&data);
    assert!(original.len() > 4096, "a WAL of {} bytes", original.len());

    // A byte flipped in the middle of the WAL: real damage, refused before serving.
    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    std::fs::write(&wal, &flipped).expect("write");
    cluster.start_agent(victim);
    let status = cluster
        .wait_exit(victim, T)
        .expect("the agent must not serve with a damaged WAL");
    assert!(!status.success());
    let log = cluster.log(victim);
    assert!(log.contains("cannot open data dir"), "{log}");
    assert!(log.to_lowercase().contains("corruption"), "{log}");

    // The last record torn, as by a power loss mid-write: the tail is dropped, the node
    // starts, and the leader sends it what it lost.
    std::fs::write(&wal, &original[..original.len() - 7]).expect("write");
    cluster.start_agent(victim);
    stale_get(&cluster, victim, "w9", 1).await;
    apply(&cluster, &cluster.addrs(), "after", &spec("after", 0));
    stale_get(&cluster, victim, "after", 1).await;
    let verify = json(cluster.cli(&["cluster", "verify", "-o", "json"]));
    assert_eq!(verify["agree"], true, "{verify}");
}
