//! Issue "Reach the services": the routing mesh, with real docker agents, each on its own
//! loopback address with its own `--publish-addr` (the testkit's default with distinct
//! IPs). Traffic goes only to those loopback addresses.
//!
//! No Docker engine: a failure under CI=true, otherwise a skip notice.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flotilla_testkit::docker::{self, WORKLOAD_IMAGE};
use flotilla_testkit::{wait_until_async, Cluster};
use flotilla_tests::{free_port, json, node_status, ok, stderr};
use serde_json::Value;

const T: Duration = Duration::from_secs(40);

/// A busybox httpd whose page names its version and its container; on SIGTERM it keeps
/// serving for a second before it stops, as an app that drains does.
fn web(port: u16, version: &str, replicas: u32) -> String {
    format!(
        r#"name: web
image: {WORKLOAD_IMAGE}
command: ["sh", "-c", "mkdir -p /www && echo $VERSION $(hostname) > /www/index.html && httpd -f -p 8080 -h /www & pid=$!; trap 'sleep 1; kill $pid; exit 0' TERM; wait"]
env: {{VERSION: {version}}}
replicas: {replicas}
ports: [{{container: 8080, host: {port}}}]
placement: {{max_per_node: 1}}
health_check: {{http: {{port: 8080, path: /}}, interval: 1s, timeout: 1s, retries: 3}}
update: {{order: start-first, parallelism: 1, monitor: 1s}}
stop_grace: 3s
"#
    )
}

/// The page at `addr`, or `None` when it does not answer 200.
fn page(addr: SocketAddr) -> Option<String> {
    match flotilla_testkit::http_get(&addr.to_string(), "/") {
        Some((200, body)) => Some(body.trim().to_string()),
        _ => None,
    }
}

fn tasks(cluster: &Cluster) -> Vec<Value> {
    json(cluster.cli(&["get", "tasks", "--service", "web", "-o", "json"]))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The ids of the nodes running a healthy `web` task, once there are `n` such tasks.
async fn healthy_on(cluster: &Cluster, n: usize) -> BTreeSet<u64> {
    wait_until_async(&format!("{n} healthy web tasks"), T, || async {
        let healthy: Vec<u64> = tasks(cluster)
            .iter()
            .filter(|t| t["state"] == "healthy" && t["desired"] == "running")
            .filter_map(|t| t["node"].as_u64())
            .collect();
        (healthy.len() == n).then(|| healthy.into_iter().collect())
    })
    .await
}

/// Requests in a loop through the given addresses until stopped: how many were made, how
/// many failed once, and how many failed again when tried once more.
struct Load {
    stop: Arc<AtomicBool>,
    made: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    failed_twice: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Load {
    fn start(addrs: Vec<SocketAddr>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let made = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let failed_twice = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, made, failed, failed_twice) = (stop.clone(), made.clone(), failed.clone(), failed_twice.clone());
            std::thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let addr = addrs[i % addrs.len()];
                    i += 1;
                    made.fetch_add(1, Ordering::Relaxed);
                    if page(addr).is_none() {
                        failed.fetch_add(1, Ordering::Relaxed);
                        if page(addr).is_none() {
                            failed_twice.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        };
        Load {
            stop,
            made,
            failed,
            failed_twice,
            thread,
        }
    }

    /// Stops the loop: (requests made, failed, failed again on one retry).
    fn finish(self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("load thread");
        (
            self.made.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.failed_twice.load(Ordering::Relaxed),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_answers_on_every_node_rolls_without_a_failed_request_and_outlives_a_node() {
    if !docker::docker_or_skip("mesh") {
        return;
    }
    let mut cluster = Cluster::builder(3)
        .driver("docker")
        .distinct_ips()
        .agent_args(&["--node-timeout", "2s", "--cpu", "4", "--memory", "4096"])
        .start();
    let leader = cluster.wait_for_leader(T).await;
    wait_until_async("three ready nodes", T, || async {
        node_status(&cluster).filter(|m| m.len() == 3 && m.values().all(|s| s == "ready"))
    })
    .await;
    let port = free_port(&cluster);
    let file = cluster.write_file("web.yaml", &web(port, "v1", 2));
    ok(cluster.cli(&["apply", "-f", file.to_str().expect("utf-8 path")]));
    healthy_on(&cluster, 2).await;
    let addr = |id: u64| SocketAddr::new(cluster.ip(id), port);

    // Every node answers on its publish address, and the answers rotate over the tasks.
    let containers: BTreeSet<String> = tasks(&cluster)
        .iter()
        .filter_map(|t| t["container_id"].as_str().map(|c| c[..12].to_string()))
        .collect();
    assert_eq!(containers.len(), 2, "{containers:?}");
    for id in cluster.ids() {
        let mut seen = BTreeSet::new();
        for _ in 0..6 {
            let body = wait_until_async(&format!("the page through node {id}"), T, || async { page(addr(id)) }).await;
            seen.insert(body);
        }
        let answered: BTreeSet<String> = seen
            .iter()
            .map(|b| b.split_whitespace().nth(1).unwrap_or_default().to_string())
            .collect();
        assert_eq!(answered, containers, "node {id} sends to every task in turn: {seen:?}");
    }
    // The containers publish nothing on the node: the mesh has the port.
    let published = std::process::Command::new("docker")
        .args(["ps", "--filter", &format!("label=flotilla.cluster={}", cluster.name())])
        .args(["--format", "{{.Ports}}"])
        .output()
        .expect("docker ps");
    let published = String::from_utf8_lossy(&published.stdout).to_string();
    assert!(!published.contains("->"), "no host binding: {published}");

    // A second service asking for the same ingress port is refused at apply, by name.
    let other = web(port, "v1", 1).replace("name: web", "name: other");
    let file = cluster.write_file("other.yaml", &other);
    let refused = cluster.cli(&["apply", "-f", file.to_str().expect("utf-8 path")]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let said = stderr(&refused);
    assert!(
        said.contains("ports[0].host") && said.contains("\"web\"") && said.contains(&port.to_string()),
        "{said}"
    );
    assert!(
        json(cluster.cli(&["get", "services", "-o", "json"]))
            .as_array()
            .is_some_and(|s| s.len() == 1),
        "nothing was applied"
    );

    // A start-first rolling update behind the mesh: a client loop sees no failed request.
    let everywhere: Vec<SocketAddr> = cluster.ids().into_iter().map(addr).collect();
    let load = Load::start(everywhere.clone());
    let file = cluster.write_file("web.yaml", &web(port, "v2", 2));
    ok(cluster.cli(&["apply", "--wait", "-f", file.to_str().expect("utf-8 path")]));
    wait_until_async("every answer from v2", T, || async {
        (0..6)
            .all(|i| page(everywhere[i % 3]).is_some_and(|b| b.starts_with("v2")))
            .then_some(())
    })
    .await;
    let (made, failed, _) = load.finish();
    eprintln!("rolling update behind the mesh: {made} requests, {failed} failed");
    assert!(made > 20, "the loop ran: {made}");
    assert_eq!(failed, 0, "no request failed during the rolling update ({made} made)");

    // Kill a node that runs a task (not the leader): requests through the others go on.
    let victim = *healthy_on(&cluster, 2)
        .await
        .iter()
        .find(|id| **id != leader)
        .expect("a follower runs a task");
    let survivors: Vec<SocketAddr> = cluster.ids().into_iter().filter(|id| *id != victim).map(addr).collect();
    let load = Load::start(survivors);
    cluster.kill(victim);
    // The failure window: until the slot runs again on a survivor.
    wait_until_async("the lost slot healthy on a survivor", T, || async {
        let nodes: BTreeSet<u64> = tasks(&cluster)
            .iter()
            .filter(|t| t["state"] == "healthy" && t["desired"] == "running")
            .filter_map(|t| t["node"].as_u64())
            .collect();
        (nodes.len() == 2 && !nodes.contains(&victim)).then_some(())
    })
    .await;
    let (made, failed, failed_twice) = load.finish();
    eprintln!("node {victim} killed: {made} requests through the survivors, {failed} failed, {failed_twice} failed on a retry");
    assert!(made > 20, "the loop ran: {made}");
    assert_eq!(
        failed_twice, 0,
        "a client retrying once sees no failure ({failed} failed once of {made})"
    );
}
