//! Issue "Rolling updates": real agents with `--driver docker`. A sampler reads the
//! cluster's task list every 50 ms during each rollout and records the fewest healthy
//! tasks it saw.
//!
//! No Docker engine: a failure under CI=true, otherwise a skip notice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flotilla_proto::v1::{DesiredState, ListTasksRequest, TaskState};
use flotilla_testkit::docker::{self, WORKLOAD_IMAGE};
use flotilla_testkit::{wait_until, wait_until_async, Cluster};
use flotilla_tests::{json, node_status, ok, stderr, stdout};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

/// A busybox httpd answering the http health check with `body`. `serve: false` runs a
/// process that never listens, so the check fails. Not rebalanced: these tests count the
/// tasks a rollout leaves, and a move after it (a copy beside its task) would be one more.
fn web(body: &str, serve: bool, update: &str) -> String {
    let command = if serve {
        format!("mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 8080 -h /www")
    } else {
        format!("echo {body} && exec sleep 3600")
    };
    format!(
        r#"name: web
image: {WORKLOAD_IMAGE}
command: ["sh", "-c", "{command}"]
replicas: 6
health_check: {{http: {{port: 8080, path: /}}, interval: 1s, timeout: 2s, retries: 3}}
stop_grace: 1s
update: {update}
rebalance: false
"#
    )
}

fn docker_cluster(test: &str) -> Option<Cluster> {
    if !docker::docker_or_skip(test) {
        return None;
    }
    Some(
        Cluster::builder(3)
            .driver("docker")
            .agent_args(&["--node-timeout", "2s", "--cpu", "8", "--memory", "8192"])
            .start(),
    )
}

async fn ready(cluster: &Cluster) {
    cluster.wait_for_leader(T).await;
    wait_until_async("every node registered and ready", T, || async {
        node_status(cluster).filter(|m| m.len() == 3 && m.values().all(|s| s == "ready"))
    })
    .await;
}

/// `apply -f` of `spec`, with `--wait`; returns the command's output.
fn apply_wait(cluster: &Cluster, spec: &str) -> std::process::Output {
    let file = cluster.write_file("web.yaml", spec);
    cluster.cli(&[
        "apply",
        "--wait",
        "--timeout",
        "120s",
        "-f",
        file.to_str().expect("utf-8"),
    ])
}

/// The tasks meant to run, as `get tasks` prints them.
fn live_tasks(cluster: &Cluster) -> Vec<Value> {
    let all = json(cluster.cli(&["get", "tasks", "--service", "web", "-o", "json"]));
    all.as_array()
        .expect("array")
        .iter()
        .filter(|t| t["desired"] == "running")
        .cloned()
        .collect()
}

fn rollout_status(cluster: &Cluster) -> Value {
    json(cluster.cli(&["rollout", "status", "web", "-o", "json"]))
}

/// Counts healthy tasks meant to run, through any answering node, until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<(usize, usize)>,
}

impl Sampler {
    fn start(cluster: &Cluster) -> Sampler {
        let addrs: Vec<String> = cluster.ids().into_iter().map(|id| cluster.addr(id)).collect();
        let config = cluster.creds.config().expect("the admin config");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = tokio::spawn(async move {
            let (mut min, mut samples) = (usize::MAX, 0);
            // One sample per 50 ms period (the sampling rate, not a wait for anything).
            let mut period = tokio::time::interval(Duration::from_millis(50));
            period.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !flag.load(Ordering::Relaxed) {
                period.tick().await;
                for addr in &addrs {
                    let mut c = flotilla_testkit::api_client(addr, Some(&config));
                    let req = ListTasksRequest {
                        service: "web".into(),
                        stale: false,
                    };
                    if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), c.list_tasks(req)).await {
                        let healthy = r
                            .into_inner()
                            .tasks
                            .iter()
                            .filter(|t| t.desired() == DesiredState::Running && t.state() == TaskState::Healthy)
                            .count();
                        min = min.min(healthy);
                        samples += 1;
                        break;
                    }
                }
            }
            (min, samples)
        });
        Sampler { stop, handle }
    }

    /// The fewest healthy tasks seen and the number of samples.
    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.await.expect("sampler")
    }
}

/// Every one of the 6 tasks is healthy and runs the service's template `version`.
fn assert_all_on(cluster: &Cluster, version: u64) {
    let live = live_tasks(cluster);
    assert_eq!(live.len(), 6, "{live:#?}");
    for t in &live {
        assert_eq!(t["state"], "healthy", "{t}");
        assert_eq!(t["spec_version"].as_u64(), Some(version), "{t}");
    }
    // Replaced containers may still be in their stop grace.
    wait_until("one running container per task", T, || {
        let running = docker::running_containers(&[("flotilla.cluster", cluster.name()), ("flotilla.service", "web")]);
        (running.len() == 6).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_rolling_updates_keep_the_healthy_bound_and_undo_goes_back() {
    let Some(cluster) = docker_cluster("docker_rolling_updates") else {
        return;
    };
    ready(&cluster).await;
    let stop_first = "{parallelism: 2, monitor: 2s}";
    ok(apply_wait(&cluster, &web("v1", true, stop_first)));
    assert_all_on(&cluster, 1);

    // Stop-first, 2 at a time: never fewer than 6 - 2 healthy.
    let sampler = Sampler::start(&cluster);
    let out = ok(apply_wait(&cluster, &web("v2", true, stop_first)));
    let (min, samples) = sampler.finish().await;
    eprintln!("stop-first, parallelism 2: fewest healthy {min} of 6 in {samples} samples");
    assert!(out.contains("converged: 6/6 healthy (version 2)"), "{out}");
    assert!(samples > 20, "sampled {samples} times");
    assert!(min >= 4, "stop-first: {min} healthy at the lowest, the bound is 4");
    assert_all_on(&cluster, 2);
    let status = rollout_status(&cluster);
    assert_eq!(status["phase"], "completed", "{status}");
    assert_eq!(status["batches"].as_array().map(Vec::len), Some(3), "{status}");

    // Start-first: never fewer than 6.
    let start_first = "{parallelism: 2, monitor: 2s, order: start-first}";
    let sampler = Sampler::start(&cluster);
    ok(apply_wait(&cluster, &web("v3", true, start_first)));
    let (min, samples) = sampler.finish().await;
    eprintln!("start-first, parallelism 2: fewest healthy {min} of 6 in {samples} samples");
    assert!(samples > 20, "sampled {samples} times");
    assert!(min >= 6, "start-first: {min} healthy at the lowest, the bound is 6");
    assert_all_on(&cluster, 3);

    // Undo: back to the template of version 2, as a new version.
    let out = ok(cluster.cli(&["rollout", "undo", "web"]));
    assert!(out.contains("rolling back to the template of version 2"), "{out}");
    wait_until_async("the undo to complete", T, || async {
        let s = rollout_status(&cluster);
        (s["phase"] == "completed" && s["template_version"] == 2).then_some(())
    })
    .await;
    assert_all_on(&cluster, 2);
    let spec = json(cluster.cli(&["get", "service", "web", "-o", "json"]));
    assert!(
        spec["spec"]["command"][2]
            .as_str()
            .unwrap_or_default()
            .contains("echo v2"),
        "{spec}"
    );
    let history = ok(cluster.cli(&["rollout", "history", "web"]));
    for change in ["created", "updated", "undo to version 2"] {
        assert!(history.contains(change), "{history}");
    }
    // Nothing to undo to on a service that never changed; unknown names exit 4.
    let o = cluster.cli(&["rollout", "status", "nope"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_a_version_failing_its_health_check_is_rolled_back() {
    let Some(cluster) = docker_cluster("docker_rollback") else {
        return;
    };
    ready(&cluster).await;
    let policy = "{parallelism: 2, monitor: 2s, failure_action: rollback}";
    ok(apply_wait(&cluster, &web("v1", true, policy)));

    let sampler = Sampler::start(&cluster);
    let o = apply_wait(&cluster, &web("v2", false, policy));
    let (min, samples) = sampler.finish().await;
    eprintln!("failing version, rollback: fewest healthy {min} of 6 in {samples} samples");
    assert_eq!(o.status.code(), Some(1), "stdout {} stderr {}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("version 2 was rolled back to version 1"),
        "{}",
        stderr(&o)
    );
    assert!(min >= 4, "{min} healthy at the lowest during update and rollback");

    // Back on the first template (as version 3), all healthy, and status says why.
    let status = rollout_status(&cluster);
    assert_eq!(status["phase"], "rolled-back", "{status}");
    assert_eq!(status["template_version"], 1, "{status}");
    assert!(
        status["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("failed its health check"),
        "{status}"
    );
    assert_all_on(&cluster, 1);
    let text = ok(cluster.cli(&["rollout", "status", "web"]));
    assert!(
        text.contains("rolled-back") && text.contains("failed its health check"),
        "{text}"
    );
    let svc = json(cluster.cli(&["get", "service", "web", "-o", "json"]));
    assert_eq!(svc["version"], 3, "{svc}");
    assert!(
        svc["spec"]["command"][2].as_str().unwrap_or_default().contains("httpd"),
        "{svc}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_a_new_leader_finishes_a_rollout_started_by_the_old_one() {
    let Some(mut cluster) = docker_cluster("docker_rollout_failover") else {
        return;
    };
    ready(&cluster).await;
    let policy = "{parallelism: 1, monitor: 2s}";
    ok(apply_wait(&cluster, &web("v1", true, policy)));
    let file = cluster.write_file("web.yaml", &web("v2", true, policy));
    ok(cluster.cli(&["apply", "-f", file.to_str().expect("utf-8")]));

    // Kill the leader once the rollout is under way but far from done.
    wait_until_async("two batches of the rollout done", T, || async {
        let s = rollout_status(&cluster);
        (s["done"].as_u64() >= Some(2)).then_some(())
    })
    .await;
    let leader = cluster.wait_for_leader(T).await;
    let status = rollout_status(&cluster);
    assert_eq!(status["phase"], "updating", "{status}");
    cluster.kill(leader);
    // Its node's containers die with it, as on a real machine failure.
    let node = leader.to_string();
    docker::kill_containers(&[("flotilla.cluster", cluster.name()), ("flotilla.node", &node)]);

    let new_leader = cluster.wait_for_leader(T).await;
    assert_ne!(new_leader, leader);
    wait_until_async("the new leader to complete the rollout", T, || async {
        let o = cluster.cli(&["rollout", "status", "web", "-o", "json"]);
        if !o.status.success() {
            return None;
        }
        let s = json(o);
        (s["phase"] == "completed" && s["done"] == 6).then_some(())
    })
    .await;
    let live = live_tasks(&cluster);
    assert_eq!(live.len(), 6);
    for t in &live {
        assert_eq!(t["spec_version"], 2, "{t}");
        assert_eq!(t["state"], "healthy", "{t}");
        assert_ne!(t["node"].as_u64(), Some(leader), "{t}");
    }
}
