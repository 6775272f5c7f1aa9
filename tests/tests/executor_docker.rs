//! Issue "Executor": real agents with `--driver docker`, checked twice, through flotilla
//! (`get tasks`) and on the engine itself (`docker ps` by the `flotilla.*` labels).
//!
//! No Docker engine: a failure under CI=true, otherwise a skip notice.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use flotilla_testkit::docker::{self, Container, WORKLOAD_IMAGE};
use flotilla_testkit::{wait_until_async, Cluster};
use flotilla_tests::{json, node_status, ok};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// A busybox httpd that answers the http health check, six times.
fn web_spec() -> String {
    format!(
        r#"name: web
image: {WORKLOAD_IMAGE}
command: ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
replicas: 6
health_check: {{http: {{port: 8080, path: /}}, interval: 1s, timeout: 2s}}
labels: {{team: payments}}
stop_grace: 2s
"#
    )
}

/// Three docker agents, or `None` (after a notice) where Docker tests are skipped.
fn docker_cluster(test: &str, node_timeout: &str) -> Option<Cluster> {
    if !docker::docker_or_skip(test) {
        return None;
    }
    Some(
        Cluster::builder(3)
            .driver("docker")
            .agent_args(&["--node-timeout", node_timeout, "--cpu", "4", "--memory", "4096"])
            .start(),
    )
}

/// Waits for a leader and three ready nodes.
async fn wait_ready(cluster: &Cluster) {
    cluster.wait_for_leader(T).await;
    wait_until_async("every node registered and ready", T, || async {
        node_status(cluster).filter(|m| m.len() == 3 && m.values().all(|s| s == "ready"))
    })
    .await;
}

/// Waits for a leader and three ready nodes, then applies `spec` under `name`.
async fn apply(cluster: &Cluster, name: &str, spec: &str) {
    wait_ready(cluster).await;
    let file = cluster.write_file(&format!("{name}.yaml"), spec);
    ok(cluster.cli(&["apply", "-f", file.to_str().expect("utf-8 path")]));
}

/// Every task of `service` (history included), or `None` when no node answers.
fn tasks(cluster: &Cluster, service: &str) -> Option<Vec<Value>> {
    let o = cluster.cli(&["get", "tasks", "-a", "--service", service, "-o", "json"]);
    if !o.status.success() {
        return None;
    }
    json(o).as_array().cloned()
}

fn current(tasks: &[Value]) -> Vec<Value> {
    tasks.iter().filter(|t| t["desired"] == "running").cloned().collect()
}

/// Waits until `service` has exactly `n` tasks meant to run, all healthy, none on
/// `except`; returns them.
async fn wait_healthy(cluster: &Cluster, service: &str, n: usize, except: Option<u64>) -> Vec<Value> {
    let what = format!("{n} healthy {service} tasks (none on node {except:?})");
    wait_until_async(&what, T, || async {
        let live = current(&tasks(cluster, service)?);
        let done = live.len() == n
            && live.iter().all(|t| t["state"] == "healthy")
            && live.iter().all(|t| t["node"].as_u64() != except);
        done.then_some(live)
    })
    .await
}

/// `flotilla.cluster=<name>` and `more`, as a container filter.
fn labels<'a>(cluster_name: &'a str, more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut labels = vec![("flotilla.cluster", cluster_name)];
    labels.extend_from_slice(more);
    labels
}

/// The running containers of `service` in this cluster.
fn live_containers(cluster: &Cluster, service: &str) -> Vec<Container> {
    docker::running_containers(&labels(cluster.name(), &[("flotilla.service", service)]))
}

/// Asserts the engine runs exactly one container per task and nothing else for
/// `service`, each labelled with its task, node and slot.
fn assert_containers_match(cluster: &Cluster, service: &str, tasks: &[Value]) {
    let live = live_containers(cluster, service);
    let by_id: BTreeMap<&str, &Container> = live.iter().map(|c| (c.id.as_str(), c)).collect();
    assert_eq!(
        live.len(),
        tasks.len(),
        "running containers {live:#?}\ntasks {tasks:#?}"
    );
    for t in tasks {
        let cid = t["container_id"].as_str().unwrap_or_default();
        let c = by_id
            .get(cid)
            .unwrap_or_else(|| panic!("task {t} has no running container among {live:#?}"));
        let want = [
            ("flotilla.cluster", cluster.name().to_string()),
            ("flotilla.service", service.to_string()),
            ("flotilla.task", t["id"].as_str().expect("id").to_string()),
            ("flotilla.node", t["node"].as_u64().expect("node").to_string()),
            ("flotilla.slot", t["slot"].as_u64().expect("slot").to_string()),
            // The spec's own labels, beside flotilla's.
            ("team", "payments".to_string()),
        ];
        for (k, v) in want {
            assert_eq!(c.label(k), Some(v.as_str()), "label {k} of {c:#?} for {t}");
        }
    }
}

/// A follower that runs at least one task of `tasks`.
async fn busy_follower(cluster: &Cluster, tasks: &[Value]) -> u64 {
    let leader = cluster.wait_for_leader(T).await;
    cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader && tasks.iter().any(|t| t["node"].as_u64() == Some(*id)))
        .expect("a follower with tasks")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_six_replicas_are_healthy_in_flotilla_and_on_the_engine() {
    let Some(cluster) = docker_cluster("docker_six_replicas", "2s") else {
        return;
    };
    apply(&cluster, "web", &web_spec()).await;
    let tasks = wait_healthy(&cluster, "web", 6, None).await;
    let slots: BTreeSet<u64> = tasks.iter().filter_map(|t| t["slot"].as_u64()).collect();
    assert_eq!(slots, (0..6).collect());
    assert_containers_match(&cluster, "web", &tasks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_node_loss_replaces_tasks_and_the_node_cleans_up_on_return() {
    let Some(mut cluster) = docker_cluster("docker_node_loss", "2s") else {
        return;
    };
    apply(&cluster, "web", &web_spec()).await;
    let before = wait_healthy(&cluster, "web", 6, None).await;
    let victim = busy_follower(&cluster, &before).await;
    let on_victim = before.iter().filter(|t| t["node"].as_u64() == Some(victim)).count();

    // The whole node dies: its agent and its workloads.
    cluster.kill(victim);
    let victim_label = victim.to_string();
    let name = cluster.name().to_string();
    let victim_labels = labels(&name, &[("flotilla.node", &victim_label)]);
    let killed = docker::kill_containers(&victim_labels);
    assert_eq!(killed.len(), on_victim, "killed {killed:?}");

    wait_until_async(&format!("node {victim} marked down"), T, || async {
        node_status(&cluster).filter(|m| m.get(&victim).map(String::as_str) == Some("down"))
    })
    .await;
    let replaced = wait_healthy(&cluster, "web", 6, Some(victim)).await;
    assert_containers_match(&cluster, "web", &replaced);

    // Back again: the node removes what it left behind and runs nothing it should not.
    cluster.start_agent(victim);
    wait_until_async(&format!("node {victim} ready again"), T, || async {
        node_status(&cluster).filter(|m| m.get(&victim).map(String::as_str) == Some("ready"))
    })
    .await;
    wait_until_async("the stale containers removed", T, || async {
        let left = docker::containers(&victim_labels);
        left.iter().all(|c| !killed.contains(&c.id)).then_some(())
    })
    .await;
    let after = wait_healthy(&cluster, "web", 6, None).await;
    assert_containers_match(&cluster, "web", &after);
    let all = docker::containers(&labels(&name, &[]));
    assert_eq!(all.len(), 6, "no container but the six live ones: {all:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_a_restarted_agent_adopts_its_running_containers() {
    // A node timeout far longer than a restart: the node is never marked down, so its
    // tasks stay where they are and the agent must find their containers again.
    let Some(mut cluster) = docker_cluster("docker_adoption", "30s") else {
        return;
    };
    apply(&cluster, "web", &web_spec()).await;
    let before = wait_healthy(&cluster, "web", 6, None).await;
    assert_containers_match(&cluster, "web", &before);
    let victim = busy_follower(&cluster, &before).await;
    let victim_label = victim.to_string();
    let name = cluster.name().to_string();
    let victim_labels = labels(&name, &[("flotilla.node", &victim_label)]);
    let started: BTreeMap<String, String> = docker::running_containers(&victim_labels)
        .into_iter()
        .map(|c| (c.id, c.started_at))
        .collect();
    assert!(!started.is_empty());

    cluster.kill(victim);
    let log_before = cluster.log(victim).len();
    cluster.start_agent(victim);
    // The new agent says it adopted each of them (its log is appended to the old one).
    wait_until_async("the restarted agent to adopt its containers", T, || async {
        let log = cluster.log(victim);
        let fresh = log.get(log_before..)?;
        let adopted = fresh
            .lines()
            .filter(|l| l.contains("adopted container"))
            .collect::<Vec<_>>();
        started
            .keys()
            .all(|id| adopted.iter().any(|l| l.contains(id.as_str())))
            .then_some(())
    })
    .await;

    // The same workloads, never restarted, and no second container for any task.
    let now: BTreeMap<String, String> = docker::running_containers(&victim_labels)
        .into_iter()
        .map(|c| (c.id, c.started_at))
        .collect();
    assert_eq!(now, started, "the victim's containers (id -> StartedAt)");
    let after = wait_healthy(&cluster, "web", 6, None).await;
    let ids = |tasks: &[Value]| -> BTreeMap<String, String> {
        tasks
            .iter()
            .map(|t| {
                let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
                (s("id"), s("container_id"))
            })
            .collect()
    };
    assert_eq!(ids(&after), ids(&before), "task -> container");
    // And they stay so while the new agent probes them: longer than the check's
    // retries x interval (3 x 1 s) that would turn a failing probe into `unhealthy`.
    let watched = Instant::now() + Duration::from_secs(4);
    while Instant::now() < watched {
        if let Some(all) = tasks(&cluster, "web") {
            let live = current(&all);
            assert!(live.iter().all(|t| t["state"] == "healthy"), "{live:#?}");
            assert_eq!(ids(&live), ids(&before), "task -> container");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_containers_match(&cluster, "web", &after);
    let all = docker::containers(&labels(&name, &[]));
    assert_eq!(all.len(), 6, "no container but the six live ones: {all:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_exit_codes_follow_the_restart_policy_up_to_max_attempts() {
    let Some(cluster) = docker_cluster("docker_restart_policy", "2s") else {
        return;
    };
    let spec = format!(
        r#"name: crash
image: {WORKLOAD_IMAGE}
command: ["sh", "-c", "exit 3"]
replicas: 1
restart: {{condition: on-failure, max_attempts: 2, delay: 100ms}}
stop_grace: 1s
"#
    );
    apply(&cluster, "crash", &spec).await;

    let attempts = |tasks: &[Value]| -> Vec<u64> {
        let mut a: Vec<u64> = tasks.iter().filter_map(|t| t["attempt"].as_u64()).collect();
        a.sort();
        a
    };
    let history = wait_until_async("attempt 2 to exit", T, || async {
        let all = tasks(&cluster, "crash")?;
        all.iter()
            .any(|t| t["attempt"] == 2 && t["state"] == "exited")
            .then_some(all)
    })
    .await;
    assert_eq!(attempts(&history), [0, 1, 2], "{history:#?}");
    for t in &history {
        assert_eq!(t["slot"], 0, "{t}");
        assert_eq!(t["state"], "exited", "{t}");
        assert_eq!(t["exit_code"], 3, "{t}");
        assert!(t["message"].as_str().unwrap_or_default().contains("code 3"), "{t}");
    }

    // Attempts are used up: for several backoffs' worth of time (the next would come
    // after 400 ms), no task is created and attempt 2 stays the slot's last word.
    let ids = |tasks: &[Value]| -> BTreeSet<String> {
        tasks
            .iter()
            .filter_map(|t| t["id"].as_str().map(String::from))
            .collect()
    };
    let settled = Instant::now() + Duration::from_secs(3);
    while Instant::now() < settled {
        if let Some(all) = tasks(&cluster, "crash") {
            assert_eq!(ids(&all), ids(&history), "no new task after max attempts");
            let last = all.iter().find(|t| t["attempt"] == 2).expect("attempt 2");
            assert_eq!(last["state"], "exited", "{last}");
            assert_eq!(last["exit_code"], 3, "{last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let running = live_containers(&cluster, "crash");
    assert!(running.is_empty(), "{running:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_an_unknown_image_fails_the_task_quickly() {
    let Some(cluster) = docker_cluster("docker_unknown_image", "2s") else {
        return;
    };
    let spec = "name: ghost\nimage: flotilla/does-not-exist:1\ncommand: [\"sleep\", \"3600\"]\nreplicas: 1\n";
    apply(&cluster, "ghost", spec).await;
    // The pull has a 5 s deadline; with no registry the create fails well within this.
    let failed = wait_until_async("the task to fail on its image", Duration::from_secs(15), || async {
        tasks(&cluster, "ghost")?.into_iter().find(|t| t["state"] == "failed")
    })
    .await;
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("image not found: flotilla/does-not-exist:1"),
        "{failed}"
    );
    let created = docker::containers(&labels(cluster.name(), &[("flotilla.service", "ghost")]));
    assert!(created.is_empty(), "{created:#?}");
}

/// An HTTP/1.0 GET of `/` at `addr`: the body, or why not.
fn http_get(addr: std::net::SocketAddr) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    Ok(answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_published_ports_bind_on_the_agents_publish_addr() {
    if !docker::docker_or_skip("docker_publish_addr") {
        return;
    }
    let publish: std::net::IpAddr = "127.0.0.77".parse().expect("ip");
    let cluster = Cluster::builder(1)
        .driver("docker")
        .agent_args(&["--publish-addr", "127.0.0.77"])
        .start();
    cluster.wait_for_leader(T).await;
    let port = std::net::TcpListener::bind((publish, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let spec = format!(
        r#"name: pub
image: {WORKLOAD_IMAGE}
command: ["sh", "-c", "mkdir -p /www && echo published > /www/index.html && exec httpd -f -p 8080 -h /www"]
replicas: 1
ports: [{{container: 8080, host: {port}, mode: host}}]
stop_grace: 1s
"#
    );
    let file = cluster.write_file("pub.yaml", &spec);
    ok(cluster.cli(&["apply", "-f", file.to_str().expect("utf-8 path")]));
    let answer = wait_until_async("the page on the publish address", T, || async {
        http_get((publish, port).into())
            .ok()
            .filter(|a| a.contains("published"))
    })
    .await;
    assert!(answer.starts_with("HTTP/1."), "{answer}");
    // Nowhere else: not on 127.0.0.1.
    let elsewhere = http_get(([127, 0, 0, 1], port).into());
    assert!(elsewhere.is_err(), "the port answered on 127.0.0.1 too: {elsewhere:?}");
    let c = docker::running_containers(&labels(cluster.name(), &[("flotilla.service", "pub")]));
    assert_eq!(c.len(), 1, "{c:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_a_container_that_cannot_start_fails_with_the_engine_s_reason() {
    let Some(cluster) = docker_cluster("docker_start_refused", "2s") else {
        return;
    };
    // Something outside flotilla holds the host port the service publishes.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = holder.local_addr().expect("bound").port();
    let spec = format!(
        r#"name: pub
image: {WORKLOAD_IMAGE}
command: ["httpd", "-f", "-p", "8080"]
replicas: 1
ports: [{{container: 8080, host: {port}, mode: host}}]
restart: {{condition: on-failure, max_attempts: 2, delay: 100ms}}
stop_grace: 1s
"#
    );
    wait_ready(&cluster).await;
    let file = cluster.write_file("pub.yaml", &spec);
    let o = cluster.cli(&["apply", "--wait", "-f", file.to_str().expect("utf-8 path")]);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("service/pub cannot converge"), "{stderr}");
    assert!(stderr.contains("start failed: "), "{stderr}");
    assert!(
        stderr.contains(&port.to_string()),
        "the engine's words name the port: {stderr}"
    );

    // The task says it, each attempt counts against the policy, and so do the events.
    let history = wait_until_async("attempt 2 to fail", T, || async {
        let all = tasks(&cluster, "pub")?;
        all.iter()
            .any(|t| t["attempt"] == 2 && t["state"] == "failed")
            .then_some(all)
    })
    .await;
    for t in &history {
        assert_eq!(t["state"], "failed", "{t}");
        let message = t["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("start failed: "), "{t}");
    }
    let events = json(cluster.cli(&["events", "-o", "json"]));
    let failures: Vec<&Value> = events
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "task.failed" && e["object"].as_str().is_some_and(|o| o.starts_with("pub.")))
        .collect();
    assert!(failures.len() >= 3, "one event per failed attempt: {events:#}");
    assert!(failures
        .iter()
        .all(|e| e["message"].as_str().unwrap_or_default().starts_with("start failed: ")));
    drop(holder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_a_task_that_runs_to_completion_is_complete_and_its_container_goes() {
    if !docker::docker_or_skip("docker_completion") {
        return;
    }
    let cluster = Cluster::builder(3)
        .driver("docker")
        .agent_args(&["--node-timeout", "2s", "--keep-completed", "3s"])
        .start();
    let spec = format!(
        r#"name: once
image: {WORKLOAD_IMAGE}
command: ["sh", "-c", "echo all done"]
replicas: 1
restart: {{condition: never}}
stop_grace: 1s
"#
    );
    cluster.wait_for_leader(T).await;
    let file = cluster.write_file("once.yaml", &spec);
    let out = ok(cluster.cli(&["apply", "--wait", "-f", file.to_str().expect("utf-8 path")]));
    assert!(out.contains("service/once converged: 0/1 running, 1 complete"), "{out}");

    let done = wait_until_async("the task to be marked completed", T, || async {
        tasks(&cluster, "once")?
            .into_iter()
            .find(|t| t["stop_reason"] == "completed")
    })
    .await;
    assert_eq!(done["state"], "exited", "{done}");
    assert_eq!(done["exit_code"], 0, "{done}");
    assert_eq!(done["desired"], "shutdown", "{done}");
    let service = labels(cluster.name(), &[("flotilla.service", "once")]);
    // Within --keep-completed (3s) of its end, the container goes; no task replaces it.
    wait_until_async("the completed container to be removed", T, || async {
        docker::containers(&service).is_empty().then_some(())
    })
    .await;
    let all = tasks(&cluster, "once").expect("tasks");
    assert_eq!(all.len(), 1, "never restarted: {all:#?}");
}
