//! Issue "Cluster operations without etcd": grow and shrink with `--join` and `node remove`,
//! a learner, backup and restore, recovery from a lost quorum, refused corrupt snapshots.
//! Real agents (process driver) on 127.0.0.1, driven through the CLI.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_testkit::{flotilla_bin, wait_child, wait_until_async, Cluster};
use flotilla_tests::{json, ok, spec, stderr, stdout};

const T: Duration = Duration::from_secs(60);

/// `cluster status -o json` when it answers.
fn status(cluster: &Cluster, addrs: &str) -> Option<serde_json::Value> {
    let o = cluster.cli_at(addrs, &["cluster", "status", "-o", "json"]);
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).ok())
        .flatten()
}

/// Member id -> (voter, role) in a status, for the members that answered.
fn roles(s: &serde_json::Value) -> BTreeMap<u64, (bool, String)> {
    s["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["id"].as_u64().unwrap_or(0),
                (m["voter"] == true, m["role"].as_str().unwrap_or("").to_string()),
            )
        })
        .collect()
}

/// Waits until `cluster status` shows exactly `voters` and `learners`, all reachable, a
/// leader among the voters, and every member close behind it.
async fn wait_members(cluster: &Cluster, addrs: &str, voters: &[u64], learners: &[u64]) -> serde_json::Value {
    let what = format!("voters {voters:?} and learners {learners:?}");
    wait_until_async(&what, T, || async {
        let s = status(cluster, addrs)?;
        let r = roles(&s);
        let want: BTreeMap<u64, bool> = voters
            .iter()
            .map(|v| (*v, true))
            .chain(learners.iter().map(|l| (*l, false)))
            .collect();
        let have: BTreeMap<u64, bool> = r.iter().map(|(id, (voter, _))| (*id, *voter)).collect();
        let all_good = s["members"]
            .as_array()?
            .iter()
            .all(|m| m["reachable"] == true && m["lag"].as_u64().is_some_and(|l| l < 20));
        let learners_ok = learners
            .iter()
            .all(|l| r.get(l).is_some_and(|(_, role)| role == "learner"));
        let leader_is_voter = s["leader"].as_u64().is_some_and(|l| voters.contains(&l));
        (have == want && all_good && learners_ok && leader_is_voter).then_some(s)
    })
    .await
}

fn apply(cluster: &Cluster, addrs: &str, name: &str, replicas: u32) -> Output {
    let file = cluster.write_file(&format!("{name}-{replicas}.yaml"), &spec(name, replicas));
    cluster.cli_at(addrs, &["apply", "-f", file.to_str().expect("utf-8 path")])
}

/// `get services -o json` as name -> version.
fn versions(cluster: &Cluster, addrs: &str, stale: bool) -> Option<BTreeMap<String, u64>> {
    let mut args = vec!["get", "services", "-o", "json"];
    if stale {
        args.push("--stale");
    }
    let o = cluster.cli_at(addrs, &args);
    if !o.status.success() {
        return None;
    }
    Some(
        json(o)
            .as_array()?
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap_or("").to_string(),
                    s["version"].as_u64().unwrap_or(0),
                )
            })
            .collect(),
    )
}

/// A stream of creates (`w0`, `w1`, …) through `addrs` until stopped; returns the names
/// whose apply was acknowledged.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    handle: std::thread::JoinHandle<()>,
}

impl Writer {
    fn start(dir: &Path, addrs: String, config: std::path::PathBuf) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (s, a, dir) = (stop.clone(), acked.clone(), dir.to_path_buf());
        let handle = std::thread::spawn(move || {
            let mut i = 0;
            while !s.load(Ordering::Relaxed) {
                let name = format!("w{i}");
                let file = dir.join(format!("{name}.yaml"));
                std::fs::write(&file, spec(&name, 0)).expect("write spec");
                let o = std::process::Command::new(flotilla_bin())
                    .args(["--addr", &addrs, "--timeout", "20s", "apply", "-f"])
                    .arg(&file)
                    .env_remove("FLOTILLA_ADDR")
                    .env("FLOTILLA_CONFIG", &config)
                    .output()
                    .expect("run flotilla");
                if o.status.success() {
                    a.lock().expect("acked").push(name);
                    i += 1;
                }
            }
        });
        Writer { stop, acked, handle }
    }

    fn acked(&self) -> Vec<String> {
        self.acked.lock().expect("acked").clone()
    }

    fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("writer thread");
        self.acked.lock().expect("acked").clone()
    }
}

/// Waits until agent `id` exits on its own and returns its log.
fn wait_refused(cluster: &mut Cluster, id: u64) -> String {
    let exit = cluster.wait_exit(id, T);
    let log = cluster.log(id);
    let status = exit.unwrap_or_else(|| panic!("agent {id} did not stop; log:\n{log}"));
    assert!(!status.success(), "agent {id} exited with {status}; log:\n{log}");
    log
}

/// An agent outside the testkit's bookkeeping, for joins that must be refused.
fn lone_agent(dir: &Path, id: u64, join: &str, token: &Path) -> Output {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = std::process::Command::new(flotilla_bin())
        .args([
            "agent",
            "--id",
            &id.to_string(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--data-dir")
        .arg(dir)
        .args(["--join", join, "--driver", "process"])
        .arg("--token-file")
        .arg(token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn agent");
    if wait_child(&mut child, T).is_none() {
        let _ = child.kill();
    }
    child.wait_with_output().expect("agent output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_to_five_voters_and_shrink_back_under_writes_then_a_learner_joins() {
    let mut cluster = Cluster::start(3);
    cluster.wait_for_leader(T).await;
    let core = cluster.addrs();
    let s = wait_members(&cluster, &core, &[1, 2, 3], &[]).await;
    assert_eq!(s["fault_tolerance"], "can lose 1 node (3 voters, 3 reachable)", "{s}");
    let writer = Writer::start(cluster.root(), core.clone(), cluster.creds.config_path());

    // Node 4 makes four members: the target stays 3 voters, so it waits as a learner;
    // node 5 makes five, and the target of 5 promotes both.
    cluster.add_agent(4, &["--join", &core]);
    cluster.start_agent(4);
    wait_members(&cluster, &core, &[1, 2, 3], &[4]).await;
    cluster.add_agent(5, &["--join", &core]);
    cluster.start_agent(5);
    let s = wait_members(&cluster, &core, &[1, 2, 3, 4, 5], &[]).await;
    assert_eq!(s["fault_tolerance"], "can lose 2 nodes (5 voters, 5 reachable)", "{s}");
    let text = ok(cluster.cli_at(&core, &["cluster", "status"]));
    assert!(text.contains("fault tolerance: can lose 2 nodes"), "{text}");
    assert!(text.contains("LAST CONTACT") && text.contains("LAG"), "{text}");

    // A restart of a joined node with the same --join is harmless.
    cluster.restart(5);
    wait_members(&cluster, &core, &[1, 2, 3, 4, 5], &[]).await;
    // Its join call answers after its API is up: wait for the line, not just the status.
    wait_until_async("node 5 to log that it is already a member", T, || async {
        cluster.log(5).contains("already a member").then_some(())
    })
    .await;

    // An id in use by a live member is refused, and changes nothing.
    let dup = lone_agent(&cluster.root().join("dup2"), 2, &core, &cluster.join_token());
    assert!(!dup.status.success());
    let err = stderr(&dup);
    assert!(err.contains("node 2's certificate was issued to another key"), "{err}");

    // Shrink back to 3 voters, one at a time, the writes still flowing. First the leader
    // itself, with tasks on it: they move before it leaves, and it hands over leadership.
    wait_until_async("every node registered and ready", T, || async {
        flotilla_tests::node_status(&cluster).filter(|n| n.len() == 5 && n.values().all(|s| s == "ready"))
    })
    .await;
    ok(apply(&cluster, &core, "moved", 5));
    let leader = cluster.wait_for_leader(T).await;
    let running_on = |tasks: &serde_json::Value, node: u64| {
        tasks
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["node"] == node && t["state"] == "running" && t["desired"] == "running")
            .count()
    };
    wait_until_async("a task running on the leader", T, || async {
        let tasks = json(cluster.cli_at(&core, &["get", "tasks", "--service", "moved", "-o", "json"]));
        (running_on(&tasks, leader) > 0).then_some(())
    })
    .await;
    let removed = ok(cluster.cli_at(&core, &["node", "remove", &leader.to_string()]));
    assert!(
        removed.contains(&format!("node/{leader} removed (was a voter, 1 task(s) moved first")),
        "{removed}"
    );
    let mut voters: Vec<u64> = (1..=5).filter(|id| *id != leader).collect();
    let live = cluster.live_addrs();
    let s = wait_members(&cluster, &live, &voters, &[]).await;
    assert_eq!(s["fault_tolerance"], "can lose 1 node (4 voters, 4 reachable)", "{s}");
    assert_ne!(s["leader"], leader, "{s}");
    let log = wait_refused(&mut cluster, leader);
    assert!(log.contains(&format!("node {leader} was removed from th")), "{log}");
    let live = cluster.live_addrs();
    wait_until_async("the leader's task replaced elsewhere", T, || async {
        let tasks = json(cluster.cli_at(&live, &["get", "tasks", "--service", "moved", "-o", "json"]));
        let running: usize = voters.iter().map(|n| running_on(&tasks, *n)).sum();
        (running == 5).then_some(())
    })
    .await;
    ok(cluster.cli_at(&live, &["node", "remove", "4"]));
    voters.retain(|id| *id != 4);
    let s = wait_members(&cluster, &live, &voters, &[]).await;
    assert_eq!(s["fault_tolerance"], "can lose 1 node (3 voters, 3 reachable)", "{s}");
    let log = wait_refused(&mut cluster, 4);
    assert!(log.contains("node 4 was removed from th"), "{log}");
    let core = cluster.live_addrs();

    // Unknown and removed ids.
    let o = cluster.cli_at(&core, &["node", "remove", "42"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let o = cluster.cli_at(&core, &["node", "remove", &leader.to_string()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("already removed"), "{}", stderr(&o));

    // No acknowledged write was lost.
    let acked = writer.stop();
    assert!(acked.len() >= 5, "too few writes went through: {acked:?}");
    let have = versions(&cluster, &core, false).expect("services");
    for name in &acked {
        assert!(have.contains_key(name), "acknowledged {name} is missing");
    }

    // A removed id is never reused, even with a wiped data dir.
    cluster.wipe(4);
    cluster.start_agent(4);
    let log = wait_refused(&mut cluster, 4);
    assert!(
        log.contains("node id 4 was removed from this cluster and cannot be reused; pick a new id"),
        "{log}"
    );

    // A sixth node joins as a learner (4 members: the target stays 3 voters), serves
    // stale reads and runs tasks.
    cluster.add_agent(6, &["--join", &core]);
    cluster.start_agent(6);
    let s = wait_members(&cluster, &core, &voters, &[6]).await;
    assert_eq!(s["fault_tolerance"], "can lose 1 node (3 voters, 3 reachable)", "{s}");
    wait_until_async("the learner registered and ready", T, || async {
        flotilla_tests::node_status(&cluster).filter(|n| n.get(&6).is_some_and(|s| s == "ready") && n.len() == 4)
    })
    .await;
    ok(apply(&cluster, &core, "spread", 4));
    let six = cluster.addr(6);
    wait_until_async("the learner to serve the service from its replica", T, || async {
        versions(&cluster, &six, true).filter(|v| v.get("spread") == Some(&1))
    })
    .await;
    wait_until_async("a task running on the learner", T, || async {
        let o = cluster.cli_at(&six, &["get", "tasks", "--service", "spread", "--stale", "-o", "json"]);
        let tasks = json(o);
        tasks
            .as_array()?
            .iter()
            .any(|t| t["node"] == 6 && t["state"] == "running")
            .then_some(())
    })
    .await;
    let listed = stdout(&cluster.cli_at(&six, &["get", "services", "--stale", "-q"]));
    assert!(listed.lines().any(|l| l == "spread"), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_save_under_load_then_restore_every_wiped_node() {
    let mut cluster = Cluster::start(3);
    cluster.wait_for_leader(T).await;
    let addrs = cluster.addrs();
    for (name, replicas) in [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("c", 1), ("c", 2)] {
        ok(apply(&cluster, &addrs, name, replicas));
    }
    let writer = Writer::start(cluster.root(), addrs.clone(), cluster.creds.config_path());
    wait_until_async("some writes under way", T, || async {
        (writer.acked().len() >= 3).then_some(())
    })
    .await;
    let before = writer.acked();
    let file = cluster.root().join("backup.snap");
    let file_s = file.to_str().expect("utf-8").to_string();
    let saved = json(cluster.cli_at(&addrs, &["snapshot", "save", &file_s, "-o", "json"]));
    let acked = writer.stop();
    assert!(acked.len() > before.len(), "the writes did not go on during the save");
    let index = saved["index"].as_u64().expect("index");
    assert!(index > 0 && saved["checksum_ok"] == true, "{saved}");
    let inspected = json(cluster.cli_at(&addrs, &["snapshot", "inspect", &file_s, "-o", "json"]));
    assert_eq!(inspected["index"], index);
    assert_eq!(inspected["sha256"], saved["sha256"]);
    assert_eq!(inspected["epoch"], 1);
    let text = ok(cluster.cli_at(&addrs, &["snapshot", "inspect", &file_s]));
    assert!(text.contains("Checksum:  OK"), "{text}");

    // Corrupt copies are refused before anything is written.
    let bytes = std::fs::read(&file).expect("snapshot");
    let truncated = cluster.root().join("truncated.snap");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).expect("write");
    let mut flipped_bytes = bytes.clone();
    let mid = flipped_bytes.len() / 2;
    flipped_bytes[mid] ^= 0x04;
    let flipped = cluster.root().join("flipped.snap");
    std::fs::write(&flipped, &flipped_bytes).expect("write");
    for (bad, why) in [(&truncated, "truncated"), (&flipped, "checksum mismatch")] {
        let target = cluster.root().join("restore-target");
        std::fs::create_dir_all(&target).expect("dir");
        let o = cluster.cli_at(
            &addrs,
            &[
                "snapshot",
                "restore",
                bad.to_str().expect("utf-8"),
                "--data-dir",
                target.to_str().expect("utf-8"),
            ],
        );
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains(why), "{}", stderr(&o));
        assert_eq!(
            std::fs::read_dir(&target).expect("dir").count(),
            0,
            "the data dir was touched"
        );
        let o = cluster.cli_at(&addrs, &["snapshot", "inspect", bad.to_str().expect("utf-8")]);
        assert!(!o.status.success() && stderr(&o).contains(why), "{}", stderr(&o));
    }
    // A data dir that holds a node is refused too, and left as it was.
    let node1 = cluster.agent(1).data_dir.clone();
    let o = cluster.cli_at(
        &addrs,
        &[
            "snapshot",
            "restore",
            &file_s,
            "--data-dir",
            node1.to_str().expect("utf-8"),
        ],
    );
    assert!(
        stderr(&o).contains("is not empty (it holds a node's data)"),
        "{}",
        stderr(&o)
    );
    assert!(!node1.join("restore.json").exists());

    // Disaster: every node and every data dir gone.
    for id in cluster.ids() {
        cluster.kill(id);
        cluster.wipe(id);
    }
    let restored = ok(cluster.cli_at(
        &addrs,
        &[
            "snapshot",
            "restore",
            &file_s,
            "--data-dir",
            node1.to_str().expect("utf-8"),
        ],
    ));
    assert!(restored.contains("--force-new-cluster"), "{restored}");
    // Without --force-new-cluster the prepared dir is refused with a hint.
    cluster.start_agent(1);
    let log = wait_refused(&mut cluster, 1);
    assert!(log.contains("start this node once with --force-new-cluster"), "{log}");
    cluster.set_membership_args(1, &["--force-new-cluster"]);
    cluster.start_agent(1);
    let one = cluster.addr(1);
    wait_members(&cluster, &one, &[1], &[]).await;
    for id in [2, 3] {
        cluster.set_membership_args(id, &["--join", &one]);
        cluster.start_agent(id);
    }
    let s = wait_members(&cluster, &addrs, &[1, 2, 3], &[]).await;
    assert_eq!(s["epoch"], 2, "{s}");

    let after = versions(&cluster, &addrs, false).expect("services");
    assert_eq!(after.get("a"), Some(&3));
    assert_eq!(after.get("b"), Some(&1));
    assert_eq!(after.get("c"), Some(&2));
    assert_eq!(after.len() as u64, inspected["services"].as_u64().expect("count"));
    for name in &before {
        assert!(
            after.contains_key(name),
            "{name}, acknowledged before the save, is missing"
        );
    }
    // And the restored cluster takes writes.
    ok(apply(&cluster, &addrs, "d", 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_new_cluster_recovers_a_lost_quorum_and_refuses_the_old_members() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(T).await;
    let addrs = cluster.addrs();
    ok(apply(&cluster, &addrs, "a", 1));
    ok(apply(&cluster, &addrs, "a", 2));
    ok(apply(&cluster, &addrs, "b", 2));
    // The survivor is a follower: with the leader gone it appends nothing more.
    let survivor = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    let old: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != survivor).collect();
    let committed = cluster.status(leader).await.expect("leader").applied_index;
    cluster.wait_applied(survivor, committed, T).await;

    // Two of three voters gone for good: no quorum, no writes.
    for id in &old {
        cluster.kill(*id);
    }
    let one = cluster.addr(survivor);
    let o = cluster.cli_at(&one, &["--timeout", "3s", "scale", "a", "5"]);
    assert!(!o.status.success(), "{}", stdout(&o));

    cluster.kill(survivor);
    cluster.set_membership_args(survivor, &["--force-new-cluster"]);
    cluster.start_agent(survivor);
    wait_members(&cluster, &one, &[survivor], &[]).await;
    ok(apply(&cluster, &one, "c", 1));
    for id in [4, 5] {
        cluster.add_agent(id, &["--join", &one]);
        cluster.start_agent(id);
    }
    let new_addrs = format!("{one},{},{}", cluster.addr(4), cluster.addr(5));
    let mut voters = vec![survivor, 4, 5];
    voters.sort();
    let s = wait_members(&cluster, &new_addrs, &voters, &[]).await;
    assert_eq!(s["epoch"], 2, "{s}");
    let v = versions(&cluster, &new_addrs, false).expect("services");
    assert_eq!(v.get("a"), Some(&2));
    assert_eq!(v.get("b"), Some(&1));
    assert_eq!(v.get("c"), Some(&1));

    // The old members come back with their old data: refused, not merged.
    for id in &old {
        cluster.start_agent(*id);
    }
    for id in &old {
        let log = wait_refused(&mut cluster, *id);
        assert!(
            log.contains(&format!(
                "node {id} belongs to epoch 1 of this cluster; the cluster was re-formed (epoch 2) \
                 by --force-new-cluster; wipe its data dir and --join"
            )),
            "{log}"
        );
    }
    let log = cluster.log(survivor);
    assert!(log.contains("belongs to epoch 1 of this cluster"), "{log}");
    wait_members(&cluster, &new_addrs, &voters, &[]).await;

    // The survivor restarted with the flag still on is refused (re-forming again would
    // fence out 4 and 5); without it, it is back in epoch 2.
    cluster.restart(survivor);
    let log = wait_refused(&mut cluster, survivor);
    assert!(
        log.contains("--force-new-cluster already re-formed") && log.contains("into epoch 2"),
        "{log}"
    );
    cluster.set_membership_args(survivor, &["--join", &new_addrs]);
    cluster.start_agent(survivor);
    let s = wait_members(&cluster, &new_addrs, &voters, &[]).await;
    assert_eq!(s["epoch"], 2, "{s}");
    ok(apply(&cluster, &new_addrs, "d", 1));
    assert_eq!(versions(&cluster, &new_addrs, false).expect("services").len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_dead_past_the_timeout_is_replaced_by_a_learner() {
    let mut cluster = Cluster::builder(3)
        .agent_args(&["--dead-voter-timeout", "2s", "--node-timeout", "2s"])
        .start();
    let leader = cluster.wait_for_leader(T).await;
    let core = cluster.addrs();
    cluster.add_agent(4, &["--join", &core]);
    cluster.start_agent(4);
    wait_members(&cluster, &core, &[1, 2, 3], &[4]).await;
    wait_until_async("every node registered and ready", T, || async {
        flotilla_tests::node_status(&cluster).filter(|n| n.len() == 4 && n.values().all(|s| s == "ready"))
    })
    .await;

    let dead = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader && *id != 4)
        .expect("a follower");
    cluster.kill(dead);
    let live = cluster.live_addrs();
    let s = wait_until_async("the dead voter to be replaced by the learner", T, || async {
        let s = status(&cluster, &live)?;
        let r = roles(&s);
        let voters: Vec<u64> = r.iter().filter(|(_, (v, _))| *v).map(|(id, _)| *id).collect();
        let mut want: Vec<u64> = [1, 2, 3, 4].into_iter().filter(|id| *id != dead).collect();
        want.sort();
        (voters == want && r.contains_key(&dead)).then_some(s)
    })
    .await;
    assert_eq!(s["fault_tolerance"], "can lose 1 node (3 voters, 3 reachable)", "{s}");
    assert!(
        cluster.log(leader).contains("--dead-voter-timeout"),
        "{}",
        cluster.log(leader)
    );

    // The dead node, now a learner, can be removed while down (nothing to drain).
    let out = ok(cluster.cli_at(&live, &["node", "remove", &dead.to_string()]));
    assert!(out.contains("was a learner"), "{out}");
    let mut voters: Vec<u64> = [1, 2, 3, 4].into_iter().filter(|id| *id != dead).collect();
    voters.sort();
    wait_members(&cluster, &live, &voters, &[]).await;

    // With one voter down, removing another would leave no quorum: refused, nothing changes.
    let leader = cluster.wait_for_leader(T).await;
    let others: Vec<u64> = voters.iter().copied().filter(|id| *id != leader).collect();
    cluster.kill(others[0]);
    let live = cluster.live_addrs();
    wait_until_async("the killed voter marked down", T, || async {
        flotilla_tests::node_status(&cluster).filter(|n| n.get(&others[0]).map(String::as_str) == Some("down"))
    })
    .await;
    let o = cluster.cli_at(&live, &["node", "remove", &others[1].to_string()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("without a quorum"), "{}", stderr(&o));
    let s = status(&cluster, &live).expect("cluster status");
    let still: Vec<u64> = roles(&s).iter().filter(|(_, (v, _))| *v).map(|(id, _)| *id).collect();
    assert_eq!(still, voters, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_under_its_advertise_addr_and_is_reached_there() {
    let mut cluster = Cluster::start(3);
    cluster.wait_for_leader(T).await;
    let core = cluster.addrs();
    wait_members(&cluster, &core, &[1, 2, 3], &[]).await;
    // Node 4 listens on 127.0.0.1 but tells the cluster a name for itself.
    cluster.add_agent(4, &[]);
    let port = cluster
        .addr(4)
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .expect("a port");
    let advertised = format!("localhost:{port}");
    cluster.set_membership_args(4, &["--join", &core, "--advertise-addr", &advertised]);
    cluster.start_agent(4);
    let s = wait_members(&cluster, &core, &[1, 2, 3], &[4]).await;
    let four = s["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == 4))
        .cloned()
        .expect("member 4");
    assert_eq!(four["address"], advertised.as_str(), "{four}");
    // The others replicate to it at that address: it holds what is written after it joined.
    ok(apply(&cluster, &core, "after-join", 0));
    let leader = s["leader"].as_u64().expect("a leader");
    let index = cluster.status(leader).await.expect("leader status").applied_index;
    cluster.wait_applied(4, index, T).await;
}
