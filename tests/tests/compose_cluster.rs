//! Issue 7, packaging: the 3-node cluster of `docker/compose.yaml`, started the way
//! `make cluster-up` starts it (`docker/cluster.sh up`), survives a `docker kill` of one
//! node container and cleans up after its `docker start`.
//!
//! It runs its own copy beside any operator cluster: compose project `flotilla-composetest`,
//! cluster label `compose-test`, API ports chosen free. It removes that copy (containers,
//! network, volumes, workloads) when it ends, passed or failed, and before it starts (the
//! leftovers of a run that was killed).
//!
//! No Docker engine or no compose: a failure under CI=true, otherwise a skip notice.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use flotilla_testkit::docker::{self, running_containers};
use flotilla_testkit::{flotilla_bin, wait_until};
use flotilla_tests::{ok, spec, stderr, stdout};
use serde_json::Value;

const PROJECT: &str = "flotilla-composetest";
const CLUSTER: &str = "compose-test";
const T: Duration = Duration::from_secs(60);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docker/cluster.sh")
}

/// Three ports the kernel just handed out, so free a moment ago.
fn free_ports() -> [u16; 3] {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect();
    [ports[0], ports[1], ports[2]]
}

fn compose_installed() -> bool {
    let plugin = Command::new("docker").args(["compose", "version"]).output();
    let v1 = Command::new("docker-compose").arg("version").output();
    plugin.map(|o| o.status.success()).unwrap_or(false) || v1.map(|o| o.status.success()).unwrap_or(false)
}

/// The compose cluster; dropping it runs `cluster.sh down --volumes`.
struct ComposeCluster {
    ports: [u16; 3],
    /// The bootstrap token and the admin config `cluster.sh` copies out of node1.
    state: tempfile::TempDir,
}

impl ComposeCluster {
    fn script(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(script())
            .args(args)
            .env("FLOTILLA_PROJECT", PROJECT)
            .env("FLOTILLA_CLUSTER", CLUSTER)
            .env("FLOTILLA_PORT1", self.ports[0].to_string())
            .env("FLOTILLA_PORT2", self.ports[1].to_string())
            .env("FLOTILLA_PORT3", self.ports[2].to_string())
            .env("FLOTILLA_BIN", flotilla_bin())
            .env("FLOTILLA_STATE", self.state.path())
            .output()
            .expect("run docker/cluster.sh")
    }

    fn up() -> ComposeCluster {
        let cluster = ComposeCluster {
            ports: free_ports(),
            state: tempfile::tempdir().expect("state dir"),
        };
        // A killed earlier run may have left its copy: start from nothing.
        ok(cluster.script(&["down", "--volumes"]));
        let started = Instant::now();
        let out = cluster.script(&["up"]);
        eprintln!("{}{}", stdout(&out), stderr(&out));
        assert!(out.status.success(), "docker/cluster.sh up failed");
        eprintln!("cluster up with a leader in {:?}", started.elapsed());
        cluster
    }

    fn addrs(&self, nodes: &[u64]) -> String {
        nodes
            .iter()
            .map(|&n| format!("127.0.0.1:{}", self.ports[n as usize - 1]))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn cli(&self, nodes: &[u64], args: &[&str]) -> Output {
        Command::new(flotilla_bin())
            .arg("--addr")
            .arg(self.addrs(nodes))
            .args(["--timeout", "3s"])
            .args(args)
            .env("FLOTILLA_CONFIG", self.state.path().join("admin.yaml"))
            .output()
            .expect("run flotilla")
    }

    /// The node container of `node` (1..=3), by compose's own labels.
    fn container(&self, node: u64) -> String {
        let out = ok(Command::new("docker")
            .args(["ps", "-aq", "--no-trunc"])
            .arg("--filter")
            .arg(format!("label=com.docker.compose.project={PROJECT}"))
            .arg("--filter")
            .arg(format!("label=com.docker.compose.service=node{node}"))
            .output()
            .expect("docker ps"));
        let ids: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(ids.len(), 1, "node{node} containers: {ids:?}");
        ids[0].to_string()
    }

    fn docker(&self, args: &[&str]) {
        ok(Command::new("docker").args(args).output().expect("docker"));
    }
}

impl Drop for ComposeCluster {
    fn drop(&mut self) {
        let out = self.script(&["down", "--volumes"]);
        if !out.status.success() {
            eprintln!("cleanup failed: {}{}", stdout(&out), stderr(&out));
        }
    }
}

/// `cluster status` through `nodes`: the leader and the reachable members' roles.
fn status(c: &ComposeCluster, nodes: &[u64]) -> Option<(u64, BTreeMap<u64, String>)> {
    let o = c.cli(nodes, &["cluster", "status", "-o", "json"]);
    if !o.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&o.stdout).ok()?;
    let leader = v["leader"].as_u64().filter(|&l| l > 0)?;
    let roles = v["members"]
        .as_array()?
        .iter()
        .filter(|m| m["reachable"].as_bool() == Some(true))
        .map(|m| {
            let id = m["id"].as_u64().unwrap_or(0);
            (id, m["role"].as_str().unwrap_or("").to_string())
        })
        .collect();
    Some((leader, roles))
}

/// The nodes of the service's running tasks (desired and observed), slot order.
/// The nodes running the service's tasks of at least template `version`, by slot.
fn running_on(c: &ComposeCluster, nodes: &[u64], service: &str, version: u64) -> Option<Vec<u64>> {
    let o = c.cli(nodes, &["get", "tasks", "--service", service, "-o", "json"]);
    if !o.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&o.stdout).ok()?;
    let mut running: Vec<(u64, u64)> = v
        .as_array()?
        .iter()
        .filter(|t| t["desired"] == "running" && t["state"] == "running")
        .filter(|t| t["spec_version"].as_u64().unwrap_or(0) >= version)
        .map(|t| (t["slot"].as_u64().unwrap_or(0), t["node"].as_u64().unwrap_or(0)))
        .collect();
    running.sort();
    Some(running.into_iter().map(|(_, n)| n).collect())
}

fn live_workloads(node: Option<u64>) -> usize {
    let node = node.map(|n| n.to_string());
    let mut labels = vec![("flotilla.cluster", CLUSTER), ("flotilla.service", "sleeper")];
    if let Some(n) = &node {
        labels.push(("flotilla.node", n));
    }
    running_containers(&labels).len()
}

#[test]
fn a_killed_node_container_fails_over_and_cleans_up_when_started() {
    let test = "a_killed_node_container_fails_over_and_cleans_up_when_started";
    if !docker::docker_or_skip(test) {
        return;
    }
    if !compose_installed() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI=true requires docker compose or docker-compose for {test}"
        );
        eprintln!("SKIPPED {test}: neither `docker compose` nor `docker-compose` (with CI=true this fails)");
        return;
    }
    let c = ComposeCluster::up();
    let all = [1, 2, 3];

    wait_until("three ready nodes", T, || {
        let o = c.cli(&all, &["get", "nodes", "-o", "json"]);
        let nodes = serde_json::from_slice::<Value>(&o.stdout).ok()?;
        let ready = nodes.as_array()?.iter().filter(|n| n["status"] == "ready").count();
        (ready == 3).then_some(())
    });
    let file = std::env::temp_dir().join(format!("{PROJECT}-{}-sleeper.yaml", std::process::id()));
    std::fs::write(&file, spec("sleeper", 3)).expect("write spec");
    ok(c.cli(&all, &["apply", "-f", file.to_str().expect("utf-8")]));
    let placed = wait_until("3 running tasks, one per node", T, || {
        let on = running_on(&c, &all, "sleeper", 1)?;
        let mut sorted = on.clone();
        sorted.sort();
        (sorted == vec![1, 2, 3] && live_workloads(None) == 3).then_some(on)
    });
    eprintln!("sleeper placed on {placed:?}");

    // Kill the leader's node container: the harder case (an election and a failover).
    let (victim, _) = wait_until("a leader", T, || status(&c, &all));
    let survivors: Vec<u64> = all.iter().copied().filter(|&n| n != victim).collect();
    let node_container = c.container(victim);
    let killed = Instant::now();
    c.docker(&["kill", &node_container]);
    eprintln!("docker kill of node{victim}");

    let (leader, _) = wait_until("a new leader among the survivors", T, || {
        status(&c, &survivors).filter(|(l, _)| survivors.contains(l))
    });
    eprintln!("node{leader} leads after {:?}", killed.elapsed());
    let on = wait_until("the 3 tasks running on the survivors", T, || {
        running_on(&c, &survivors, "sleeper", 1).filter(|on| on.len() == 3 && on.iter().all(|n| survivors.contains(n)))
    });
    eprintln!("tasks on {on:?} {:?} after the kill", killed.elapsed());
    // Writes still work.
    ok(c.cli(&survivors, &["scale", "sleeper", "3"]));
    std::fs::write(&file, spec("sleeper", 3).replace("3600", "3601")).expect("write spec");
    let applied = ok(c.cli(&survivors, &["apply", "-f", file.to_str().expect("utf-8")]));
    assert!(applied.contains("updated"), "apply without node{victim}: {applied}");
    // The new command is a rollout (one task at a time, each watched for `monitor`): wait
    // until all three run the new template, not just any three.
    wait_until("the updated tasks running on the survivors", T, || {
        running_on(&c, &survivors, "sleeper", 2)
            .filter(|on| on.len() == 3 && on.iter().all(|n| survivors.contains(n)))
            .filter(|_| live_workloads(None).saturating_sub(live_workloads(Some(victim))) == 3)
    });
    // The killed agent's workload was not killed with it: it still runs, unwanted.
    assert_eq!(
        live_workloads(Some(victim)),
        1,
        "node{victim}'s workload container should outlive its agent"
    );

    c.docker(&["start", &node_container]);
    let started = Instant::now();
    wait_until("the restarted node back as a member", T, || {
        status(&c, &all).filter(|(_, roles)| roles.len() == 3)
    });
    eprintln!("node{victim} rejoined in {:?}", started.elapsed());
    wait_until("its stale container removed: exactly 3 live workloads", T, || {
        (live_workloads(Some(victim)) == 0 && live_workloads(None) == 3).then_some(())
    });
    eprintln!("node{victim} cleaned up in {:?}", started.elapsed());
    wait_until("3 running tasks of the new template after the rejoin", T, || {
        running_on(&c, &all, "sleeper", 2).filter(|on| on.len() == 3)
    });
    let status = status(&c, &all).expect("status");
    assert_eq!(status.1.len(), 3, "members after the rejoin: {status:?}");
    let _ = std::fs::remove_file(&file);
}
