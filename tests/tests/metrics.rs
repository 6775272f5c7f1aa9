//! Issue "See inside a running cluster", item 1: every agent serves `/metrics`, `/healthz`
//! and `/readyz` on `--metrics-listen` (the testkit turns it on for every agent). Scraped
//! over plain HTTP as Prometheus does, and parsed with a Prometheus text-format parser.

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_testkit::{http_get, wait_until_async, Cluster};
use flotilla_tests::{json, ok, spec};

const T: Duration = Duration::from_secs(30);

/// One scrape of agent `id`, parsed: `name{labels}` → value. `None` when it does not answer.
fn scrape(cluster: &Cluster, id: u64) -> Option<BTreeMap<String, f64>> {
    let (code, body) = http_get(&cluster.agent(id).metrics_addr, "/metrics")?;
    assert_eq!(code, 200, "{body}");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("the Prometheus text format");
    let mut out = BTreeMap::new();
    for s in parsed.samples {
        let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        let key = if labels.is_empty() {
            s.metric.clone()
        } else {
            let mut labels = labels;
            labels.sort();
            format!("{}{{{}}}", s.metric, labels.join(","))
        };
        match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => {
                out.insert(key, v);
            }
            // A histogram's count is its +Inf bucket.
            prometheus_parse::Value::Histogram(buckets) => {
                let count = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
                out.insert(key.replacen(&s.metric, &format!("{}_count", s.metric), 1), count);
            }
            _ => {}
        }
    }
    Some(out)
}

fn value(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    *m.get(key).unwrap_or_else(|| panic!("{key} missing from {m:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_one_leader_the_applied_index_the_replicas_and_a_dead_node() {
    let mut cluster = Cluster::builder(3).agent_args(&["--node-timeout", "2s"]).start();
    let leader = cluster.wait_for_leader(T).await;
    for id in cluster.ids() {
        let (code, body) = http_get(&cluster.agent(id).metrics_addr, "/healthz").expect("healthz answers");
        assert_eq!((code, body.as_str()), (200, "ok\n"));
    }
    // Exactly one node says it leads, and it is the leader the cluster agrees on.
    let leaders = wait_until_async("one node to report is_leader 1", T, || async {
        let leading: Vec<u64> = cluster
            .ids()
            .into_iter()
            .filter(|id| scrape(&cluster, *id).is_some_and(|m| m.get("flotilla_raft_is_leader") == Some(&1.0)))
            .collect();
        (leading.len() == 1).then_some(leading)
    })
    .await;
    assert_eq!(leaders, [leader]);
    let before = value(
        &scrape(&cluster, leader).expect("scrape"),
        "flotilla_raft_applied_index",
    );

    // An apply moves the applied index on every node, and the replica gauges follow.
    let file = cluster.write_file("web.yaml", &spec("web", 3));
    ok(cluster.cli(&["apply", "--wait", "-f", file.to_str().expect("utf-8")]));
    let services = json(cluster.cli(&["get", "services", "-o", "json"]));
    let desired = services[0]["spec"]["replicas"].as_f64().expect("replicas");
    for id in cluster.ids() {
        let m = wait_until_async("the apply to be applied and the tasks running", T, || async {
            let m = scrape(&cluster, id)?;
            let moved = value(&m, "flotilla_raft_applied_index") > before;
            let running = m.get("flotilla_service_running_replicas{service=\"web\"}") == Some(&desired);
            (moved && running).then_some(m)
        })
        .await;
        assert_eq!(value(&m, "flotilla_service_desired_replicas{service=\"web\"}"), desired);
        assert_eq!(value(&m, "flotilla_raft_members"), 3.0);
        assert!(value(&m, "flotilla_raft_term") >= 1.0);
        assert!(value(&m, "flotilla_raft_last_log_index") >= value(&m, "flotilla_raft_applied_index"));
        // No task id in any label.
        assert!(m.keys().all(|k| !k.contains("web.0.")), "{m:#?}");
    }
    let m = scrape(&cluster, leader).expect("scrape");
    assert!(
        value(
            &m,
            "flotilla_grpc_requests_total{code=\"Ok\",method=\"apply\",service=\"cluster\"}"
        ) >= 1.0,
        "{m:#?}"
    );
    assert!(value(&m, "flotilla_raft_leader_changes_total") >= 1.0);
    // Tasks were created and started through a timed driver; no call failed.
    let driver_calls = |m: &BTreeMap<String, f64>, call: &str| {
        m.iter()
            .filter(|(k, _)| {
                k.starts_with("flotilla_driver_call_duration_seconds_count")
                    && k.contains(&format!("call=\"{call}\""))
                    && k.contains("driver=\"process\"")
            })
            .map(|(_, v)| *v)
            .sum::<f64>()
    };
    let all: Vec<BTreeMap<String, f64>> = cluster
        .ids()
        .into_iter()
        .filter_map(|id| scrape(&cluster, id))
        .collect();
    assert_eq!(
        all.iter().map(|m| driver_calls(m, "create")).sum::<f64>(),
        3.0,
        "{all:#?}"
    );
    assert!(all.iter().map(|m| driver_calls(m, "start")).sum::<f64>() >= 3.0);
    // The leader's passes placed the three tasks.
    assert!(value(&m, "flotilla_scheduler_placements_total") >= 3.0, "{m:#?}");

    // A killed follower shows as down on the others.
    let victim = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    cluster.kill(victim);
    for id in cluster.ids().into_iter().filter(|id| *id != victim) {
        let key = format!("flotilla_node_up{{node=\"{victim}\"}}");
        wait_until_async("the killed node to show as down", T, || async {
            (scrape(&cluster, id)?.get(&key) == Some(&0.0)).then_some(())
        })
        .await;
    }
    let m = scrape(&cluster, leader).expect("scrape");
    assert_eq!(value(&m, "flotilla_scheduler_nodes_marked_down_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_unready_on_a_cut_off_node_and_ready_after_the_heal() {
    let mut cluster = Cluster::builder(3).distinct_ips().start();
    let leader = cluster.wait_for_leader(T).await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    let readyz = |cluster: &Cluster, id: u64| http_get(&cluster.agent(id).metrics_addr, "/readyz");
    for id in cluster.ids() {
        wait_until_async("every node ready", T, || async {
            readyz(&cluster, id).filter(|(code, _)| *code == 200)
        })
        .await;
    }
    cluster.isolate(follower).expect("iptables (root)");
    let (_, why) = wait_until_async("the cut-off node to be unready", T, || async {
        readyz(&cluster, follower).filter(|(code, _)| *code == 503)
    })
    .await;
    assert!(why.starts_with("not ready: "), "{why}");
    cluster.heal();
    wait_until_async("the healed node to be ready again", T, || async {
        readyz(&cluster, follower).filter(|(code, _)| *code == 200)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_parse_line_by_line_and_carry_node_service_and_task_ids() {
    // nextest runs each test in its own process, so this reaches only this test's agents.
    unsafe { std::env::set_var("FLOTILLA_TEST_LOG", "info,openraft=warn,flotilla_executor=debug") };
    let cluster = Cluster::builder(1).agent_args(&["--log-format", "json"]).start();
    cluster.wait_for_leader(T).await;
    let file = cluster.write_file("web.yaml", &spec("web", 1));
    ok(cluster.cli(&["apply", "--wait", "-f", file.to_str().expect("utf-8")]));
    let step = wait_until_async("a task step in the log", T, || async {
        let log = cluster.log(1);
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        lines.into_iter().find(|l| l["span"]["name"] == "task_step")
    })
    .await;
    assert_eq!(step["span"]["node"], 1, "{step}");
    assert_eq!(step["span"]["service"], "web", "{step}");
    assert!(
        step["span"]["task"].as_str().is_some_and(|t| t.starts_with("web.0.")),
        "{step}"
    );
    assert!(step["timestamp"].is_string() && step["level"].is_string(), "{step}");
}

/// The sum of every sample whose key starts with `prefix`.
fn sum(m: &BTreeMap<String, f64>, prefix: &str) -> f64 {
    m.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| *v).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_latencies_snapshots_heartbeats_pending_reasons_every_service_and_cert_expiry() {
    let cluster = Cluster::builder(3).agent_args(&["--snapshot-interval", "20"]).start();
    let leader = cluster.wait_for_leader(T).await;
    // A service no node can take: its tasks wait, with a reason.
    let pinned = format!(
        "{}placement:\n  constraints: [\"zone == nowhere\"]\n",
        spec("pinned", 2)
    );
    let file = cluster.write_file("pinned.yaml", &pinned);
    ok(cluster.cli(&["apply", "-f", file.to_str().expect("utf-8")]));
    // Enough writes for a snapshot on every node.
    for n in 0..25 {
        ok(cluster.cli(&["scale", "pinned", &(2 + n % 2).to_string()]));
    }
    ok(cluster.cli(&["scale", "pinned", "2"]));
    let m = wait_until_async(
        "the pending reason, a snapshot and heartbeats on the leader",
        T,
        || async {
            let m = scrape(&cluster, leader)?;
            let pending = m.get("flotilla_tasks_pending{reason=\"constraint\"}") == Some(&2.0);
            let snapshots = sum(&m, "flotilla_raft_snapshot_duration_seconds_count") >= 1.0;
            let beats = cluster
                .ids()
                .iter()
                .all(|id| m.contains_key(&format!("flotilla_node_heartbeat_age_seconds{{node=\"{id}\"}}")));
            (pending && snapshots && beats).then_some(m)
        },
    )
    .await;
    assert!(
        value(&m, "flotilla_raft_commit_duration_seconds_count") >= 26.0,
        "{m:#?}"
    );
    assert!(value(&m, "flotilla_raft_apply_duration_seconds_count") >= 1.0, "{m:#?}");
    assert!(sum(&m, "flotilla_raft_snapshot_size_bytes") > 0.0, "{m:#?}");
    for id in cluster.ids() {
        let age = value(&m, &format!("flotilla_node_heartbeat_age_seconds{{node=\"{id}\"}}"));
        assert!((0.0..10.0).contains(&age), "node {id}: {age}");
    }
    // The Raft and agent services are counted too, on a follower as on the leader.
    let follower = cluster.ids().into_iter().find(|id| *id != leader).expect("follower");
    let f = scrape(&cluster, follower).expect("scrape");
    assert!(
        value(
            &f,
            "flotilla_grpc_requests_total{code=\"Ok\",method=\"append_entries\",service=\"raft\"}"
        ) >= 1.0,
        "{f:#?}"
    );
    assert!(
        value(
            &m,
            "flotilla_grpc_requests_total{code=\"Ok\",method=\"heartbeat\",service=\"agent\"}"
        ) >= 1.0,
        "{m:#?}"
    );
    // Certificates exist: each node says when its own expires (90 days by default).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    for id in cluster.ids() {
        let expiry = value(
            &scrape(&cluster, id).expect("scrape"),
            "flotilla_tls_cert_expiry_timestamp_seconds",
        );
        assert!(expiry > now + 80.0 * 86400.0, "node {id}: {expiry}");
    }
    cluster.cleanup_workloads();
}
