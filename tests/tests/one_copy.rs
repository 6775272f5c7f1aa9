//! Issue "At most one copy, a spread that heals itself, and writes applied exactly once":
//! item 3 (a write retried with its request id is applied once), item 4 (a wiped voter
//! does not vote) and item 5 (a leader loop that panics is restarted), with real agents
//! (over TLS but where a test says why not).

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_proto::v1::{ApplyOutcome, ApplyRequest, GetServiceRequest, ListServicesRequest, ScaleServiceRequest};
use flotilla_proto::REQUEST_ID_HEADER;
use flotilla_testkit::{api_client, wait_until_async, Cluster, Proxy};
use flotilla_tests::{json, ok, spec};

const T: Duration = Duration::from_secs(30);

fn with_id<M>(msg: M, id: &str) -> tonic::Request<M> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert(REQUEST_ID_HEADER, id.parse().expect("an ASCII request id"));
    r
}

fn spec_doc(name: &str, replicas: u32) -> Vec<u8> {
    spec(name, replicas).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_answer_was_dropped_and_retried_with_its_request_id_is_applied_once() {
    let cluster = Cluster::builder(3).start();
    let leader = cluster.wait_for_leader(T).await;
    let follower = cluster.ids().into_iter().find(|i| *i != leader).expect("a follower");
    let config = cluster.creds.config();
    let file = cluster.write_file("web.yaml", &spec("web", 0));
    ok(cluster.cli(&["apply", "-f", file.to_str().expect("utf-8")]));

    // A client whose connection to a follower goes through a proxy: connected and used
    // once, then every answer is dropped.
    let proxy = Proxy::start(&cluster.addr(follower)).await;
    let mut cut = api_client(proxy.addr(), config.as_ref());
    cut.list_services(ListServicesRequest::default())
        .await
        .expect("a read through the proxy");
    proxy.drop_answers(true);

    // The update to 2 replicas goes out; its answer never comes back.
    let id = "1800000000000-retried-update-1";
    let sent = tokio::time::timeout(
        Duration::from_secs(3),
        cut.apply(with_id(
            ApplyRequest {
                spec_document: spec_doc("web", 2),
            },
            id,
        )),
    )
    .await;
    assert!(!matches!(sent, Ok(Ok(_))), "the answer was dropped, yet came: {sent:?}");

    // It was applied: version 2.
    let mut direct = api_client(&cluster.addr(leader), config.as_ref());
    let reader = direct.clone();
    let version = || {
        let mut c = reader.clone();
        async move {
            c.get_service(GetServiceRequest {
                name: "web".into(),
                ..Default::default()
            })
            .await
            .ok()
            .map(|r| r.into_inner().version)
        }
    };
    wait_until_async("the dropped write to be applied (version 2)", T, || async {
        (version().await == Some(2)).then_some(())
    })
    .await;

    // Meanwhile another client scales to 3 (acknowledged: version 3).
    let scaled = direct
        .scale_service(ScaleServiceRequest {
            name: "web".into(),
            replicas: 3,
        })
        .await
        .expect("scale")
        .into_inner();
    assert_eq!(scaled.version, 3);

    // The first client retries with the same id, on another node: it gets the first answer,
    // and the acknowledged scale to 3 stays (no second copy overwrote it).
    let retried = direct
        .apply(with_id(
            ApplyRequest {
                spec_document: spec_doc("web", 2),
            },
            id,
        ))
        .await
        .expect("the retry is answered")
        .into_inner();
    assert_eq!(retried.version, 2, "{retried:?}");
    assert_eq!(retried.outcome(), ApplyOutcome::Updated, "{retried:?}");
    assert_eq!(retried.previous_version, 1, "{retried:?}");
    let got = json(cluster.cli(&["get", "service", "web", "-o", "json"]));
    assert_eq!(got["version"], 3, "{got}");
    assert_eq!(got["spec"]["replicas"], 3, "{got}");

    // The same again through the follower that took the first attempt: still the first
    // answer, still version 3.
    proxy.drop_answers(false);
    let mut via_follower = api_client(&cluster.addr(follower), config.as_ref());
    let again = via_follower
        .apply(with_id(
            ApplyRequest {
                spec_document: spec_doc("web", 2),
            },
            id,
        ))
        .await
        .expect("answered")
        .into_inner();
    assert_eq!((again.version, again.outcome()), (2, ApplyOutcome::Updated));
    assert_eq!(version().await, Some(3));

    // Without the id the same write is a new one: it overwrites the scale (what request
    // ids prevent).
    let fresh = direct
        .apply(with_id(
            ApplyRequest {
                spec_document: spec_doc("web", 2),
            },
            "1800000000001-another-write",
        ))
        .await
        .expect("a new write")
        .into_inner();
    assert_eq!((fresh.version, fresh.outcome()), (4, ApplyOutcome::Updated));

    // A malformed id is refused, naming the header, and changes nothing.
    let bad = direct
        .apply(with_id(
            ApplyRequest {
                spec_document: spec_doc("web", 5),
            },
            "not-an-id",
        ))
        .await
        .expect_err("a malformed id");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    assert!(bad.message().contains("request id"), "{bad:?}");
    assert_eq!(version().await, Some(4));

    // Every replica agrees, with the remembered answers in the state they compare.
    let verify = json(cluster.cli(&["cluster", "verify", "-o", "json"]));
    assert_eq!(verify["agree"], true, "{verify}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_loop_that_panics_is_logged_counted_and_restarted() {
    // Every agent's first scheduling pass as leader panics (a test-only failpoint).
    let cluster = Cluster::builder(3)
        .env("FLOTILLA_FAILPOINTS", "scheduler-panic")
        .start();
    let leader = cluster.wait_for_leader(T).await;
    let file = cluster.write_file("web.yaml", &spec("web", 3));
    ok(cluster.cli(&["apply", "-f", file.to_str().expect("utf-8")]));

    // Scheduling goes on: all three tasks run.
    wait_until_async("3 running tasks of web", T, || async {
        let tasks = json(cluster.cli(&["get", "tasks", "-o", "json"]));
        let running = tasks
            .as_array()?
            .iter()
            .filter(|t| t["service"] == "web" && (t["state"] == "running" || t["state"] == "healthy"))
            .count();
        (running == 3).then_some(())
    })
    .await;

    // The leader logged the panic and counts it.
    let log = cluster.log(leader);
    assert!(log.contains("failpoint scheduler-panic"), "{log}");
    assert!(log.contains("leader loop panicked; starting it again"), "{log}");
    let (_, metrics) =
        flotilla_testkit::http_get(&cluster.agent(leader).metrics_addr, "/metrics").expect("metrics answer");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("flotilla_leader_loop_panics_total{loop=\"scheduler\"}"))
        .unwrap_or_else(|| panic!("no panic counter in {metrics}"));
    assert!(line.ends_with(" 1"), "{line}");
}

/// Services of the cluster as `name` → version, read through `addrs`.
fn services(cluster: &Cluster, addrs: &str) -> Option<Vec<(String, u64)>> {
    let o = cluster.cli_at(addrs, &["get", "services", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    let mut out: Vec<(String, u64)> = list
        .as_array()?
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_string(),
                s["version"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    out.sort();
    o.status.success().then_some(out)
}

async fn all_registered(cluster: &Cluster) {
    wait_until_async("every node registered", T, || async {
        flotilla_tests::node_status(cluster).filter(|n| n.len() == 3 && n.values().all(|s| s == "ready"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_voter_restarted_with_its_peers_flags_does_not_vote_and_nothing_committed_is_lost() {
    // Without TLS (an --insecure cluster), so that nothing but the data dir's instance id
    // tells the wiped node apart: a secured cluster also refuses it a certificate (next test).
    let mut cluster = Cluster::builder(3).insecure().start();
    let leader = cluster.wait_for_leader(T).await;
    all_registered(&cluster).await;
    let others: Vec<u64> = cluster.ids().into_iter().filter(|i| *i != leader).collect();
    let (stale, wiped) = (others[0], others[1]);

    // `stale` misses five writes, committed by the leader and `wiped`.
    cluster.kill(stale);
    let leader_addr = cluster.addr(leader);
    for i in 0..5 {
        let file = cluster.write_file(&format!("x{i}.yaml"), &spec(&format!("x{i}"), 0));
        ok(cluster.cli_at(&leader_addr, &["apply", "-f", file.to_str().expect("utf-8")]));
    }
    let want = services(&cluster, &leader_addr).expect("services");
    assert_eq!(want.len(), 5);

    // `wiped` loses its data dir and comes back with the same --peers flags; the leader
    // dies. Only `stale` (missing the writes) and `wiped` (an empty log, which would vote
    // for anyone) are up: a majority, if the empty log's vote counted.
    cluster.kill(wiped);
    cluster.wipe(wiped);
    cluster.kill(leader);
    cluster.start_agent(wiped);
    cluster.start_agent(stale);
    wait_until_async("the stale node to discard the wiped node's vote", T, || async {
        cluster.log(stale).contains("not counting a granted vote").then_some(())
    })
    .await;
    let s = cluster.status(stale).await.expect("the stale node answers");
    assert_ne!(s.role(), flotilla_proto::v1::MemberRole::Leader, "{s:?}");

    // The leader comes back: it leads again, nothing committed is lost, and the wiped node
    // is told to rejoin as a new member and stops.
    cluster.start_agent(leader);
    let addrs = format!("{},{}", cluster.addr(leader), cluster.addr(stale));
    wait_until_async("the five services after the leader's return", T, || async {
        (services(&cluster, &addrs)? == want).then_some(())
    })
    .await;
    let status = cluster
        .wait_exit(wiped, T)
        .expect("the wiped node stops once a leader refuses it");
    assert!(!status.success());
    let log = cluster.log(wiped);
    assert!(log.contains("data dir is not the one this cluster knows"), "{log}");
    assert!(log.contains("--join and a new id"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_voter_of_a_secured_cluster_is_refused_its_certificate_and_told_to_join_anew() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(T).await;
    all_registered(&cluster).await;
    let wiped = cluster.ids().into_iter().find(|i| *i != leader).expect("a follower");
    cluster.kill(wiped);
    cluster.wipe(wiped);
    cluster.start_agent(wiped);
    let status = cluster
        .wait_exit(wiped, T)
        .expect("a wiped voter must not serve under its old id");
    assert!(!status.success());
    let log = cluster.log(wiped);
    assert!(log.contains("joins with a new id"), "{log}");
    // The two others go on taking writes.
    let file = cluster.write_file("after.yaml", &spec("after", 0));
    ok(cluster.cli(&["apply", "-f", file.to_str().expect("utf-8")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wiped_node_that_made_the_ca_stops_and_says_to_join_anew_instead_of_waiting_forever() {
    let mut cluster = Cluster::start(3);
    cluster.wait_for_leader(T).await;
    all_registered(&cluster).await;
    // Node 1, the lowest --peers id, made the cluster's CA at the first start.
    cluster.kill(1);
    cluster.wipe(1);
    cluster.start_agent(1);
    let status = cluster
        .wait_exit(1, T)
        .expect("a wiped node 1 must not wait for a majority that speaks another CA");
    assert!(!status.success());
    let log = cluster.log(1);
    assert!(log.contains("already serves a cluster"), "{log}");
    assert!(log.contains("flotilla node remove 1"), "{log}");
    // The two others go on taking writes.
    let file = cluster.write_file("after.yaml", &spec("after", 0));
    ok(cluster.cli(&["apply", "-f", file.to_str().expect("utf-8")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nine_replicas_applied_the_instant_a_leader_exists_end_three_per_node() {
    let cluster = Cluster::start(3);
    cluster.wait_for_leader(T).await;
    // At once: most nodes have not sent the new leader a heartbeat yet.
    let file = cluster.write_file("spread.yaml", &spec("spread", 9));
    ok(cluster.cli(&["apply", "-f", file.to_str().expect("utf-8")]));
    let per_node = wait_until_async("9 running tasks of spread", T, || async {
        let tasks = json(cluster.cli(&["get", "tasks", "--service", "spread", "-o", "json"]));
        let mut per_node = std::collections::BTreeMap::<u64, usize>::new();
        for t in tasks.as_array()? {
            if t["state"] == "running" && t["desired"] == "running" {
                *per_node.entry(t["node"].as_u64()?).or_default() += 1;
            }
        }
        (per_node.values().sum::<usize>() == 9).then_some(per_node)
    })
    .await;
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        vec![3, 3, 3],
        "{per_node:?}"
    );
}

/// The first move `rollout status` lists for `service`, if any.
fn rollout_move(cluster: &Cluster, service: &str) -> Option<serde_json::Value> {
    let o = cluster.cli(&["rollout", "status", service, "-o", "json"]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    r["moves"].as_array()?.first().cloned()
}

/// Running tasks of `service` per node, with how many of them are healthy and how many
/// tasks meant to run exist in all (copies of a move included).
fn spread(cluster: &Cluster, service: &str) -> Option<(BTreeMap<u64, usize>, usize, usize)> {
    let o = cluster.cli(&["get", "tasks", "--service", service, "-o", "json"]);
    if !o.status.success() {
        return None;
    }
    let tasks: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    let (mut per_node, mut healthy, mut live) = (BTreeMap::new(), 0, 0);
    for t in tasks.as_array()? {
        if t["desired"] != "running" {
            continue;
        }
        live += 1;
        if t["state"] == "healthy" {
            healthy += 1;
            *per_node.entry(t["node"].as_u64()?).or_default() += 1;
        }
    }
    Some((per_node, healthy, live))
}

fn balanced_spec(name: &str, replicas: u32, rebalance: bool) -> String {
    format!(
        "{}health_check: {{exec: [\"true\"], interval: 300ms}}\nupdate: {{monitor: 1s}}\nrebalance: {rebalance}\n",
        spec(name, replicas)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_and_restarted_gets_its_share_back_one_health_gated_move_at_a_time() {
    let mut cluster = Cluster::start(3);
    cluster.wait_for_leader(T).await;
    all_registered(&cluster).await;
    let file = cluster.write_file("even.yaml", &balanced_spec("even", 6, true));
    ok(cluster.cli(&["apply", "-f", file.to_str().expect("utf-8")]));
    let file = cluster.write_file("pinned.yaml", &balanced_spec("pinned", 3, false));
    ok(cluster.cli(&["apply", "-f", file.to_str().expect("utf-8")]));
    let three = [1u64, 2, 3];
    wait_until_async("even 2/2/2 and pinned 1/1/1, healthy", T, || async {
        let (even, _, _) = spread(&cluster, "even")?;
        let (pinned, _, _) = spread(&cluster, "pinned")?;
        (three.iter().all(|n| even.get(n) == Some(&2)) && three.iter().all(|n| pinned.get(n) == Some(&1))).then_some(())
    })
    .await;

    // Node 3 dies: its tasks are replaced on nodes 1 and 2.
    let victim = 3;
    cluster.kill(victim);
    wait_until_async(
        "every task healthy on nodes 1 and 2",
        Duration::from_secs(60),
        || async {
            let (even, healthy, _) = spread(&cluster, "even")?;
            let (pinned, pinned_healthy, _) = spread(&cluster, "pinned")?;
            (healthy == 6 && pinned_healthy == 3 && !even.contains_key(&victim) && !pinned.contains_key(&victim))
                .then_some(())
        },
    )
    .await;
    let (pinned_before, _, _) = spread(&cluster, "pinned").expect("pinned");

    // It comes back empty; "even" moves two tasks to it, one at a time, never below six
    // healthy; "pinned" (rebalance: false) stays where it is.
    cluster.start_agent(victim);
    let began = std::time::Instant::now();
    let bound = Duration::from_secs(60);
    let mut samples = 0;
    let mut most_live = 0;
    let mut seen_move = None;
    loop {
        if let Some((even, healthy, live)) = spread(&cluster, "even") {
            samples += 1;
            assert!(
                healthy >= 6,
                "fewer healthy tasks than before the moves: {healthy} ({even:?})"
            );
            assert!(
                live <= 7,
                "more than one move at a time: {live} tasks meant to run ({even:?})"
            );
            most_live = most_live.max(live);
            if live == 7 && seen_move.is_none() {
                seen_move = rollout_move(&cluster, "even");
            }
            if three.iter().all(|n| even.get(n) == Some(&2)) && live == 6 {
                break;
            }
        }
        assert!(began.elapsed() < bound, "not rebalanced within {bound:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = began.elapsed();
    eprintln!("rebalanced in {took:?} ({samples} samples, at most {most_live} tasks meant to run)");
    assert_eq!(
        most_live, 7,
        "the moves were start-first: a copy ran beside the task it moved"
    );
    // `rollout status` showed a move while a copy ran beside the task it moved.
    let m = seen_move.expect("rollout status listed no move while one was under way");
    assert_eq!(m["to"], victim, "{m}");
    assert!(
        m["reason"]
            .as_str()
            .is_some_and(|r| r.contains("rebalance: moving from node")),
        "{m}"
    );
    let (pinned_after, _, _) = spread(&cluster, "pinned").expect("pinned");
    assert_eq!(pinned_after, pinned_before, "rebalance: false keeps its spread");
    let events = ok(cluster.cli(&["events"]));
    assert!(events.contains("moved to even out the spread"), "{events}");
    assert!(events.contains("rebalance: moving from node"), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_declared_dead_has_its_tasks_replaced_without_waiting_for_the_node_timeout() {
    // A node timeout far beyond the test: only the declaration can mark the node down.
    let mut cluster = Cluster::builder(3).agent_args(&["--node-timeout", "300s"]).start();
    let leader = cluster.wait_for_leader(T).await;
    all_registered(&cluster).await;
    let file = cluster.write_file("dd.yaml", &spec("dd", 3));
    ok(cluster.cli(&["apply", "-f", file.to_str().expect("utf-8")]));
    let running = |cluster: &Cluster| -> Option<BTreeMap<u64, usize>> {
        let tasks = json(cluster.cli(&["get", "tasks", "--service", "dd", "-o", "json"]));
        let mut per_node = BTreeMap::new();
        for t in tasks.as_array()? {
            if t["state"] == "running" && t["desired"] == "running" {
                *per_node.entry(t["node"].as_u64()?).or_default() += 1;
            }
        }
        Some(per_node)
    };
    wait_until_async("3 running tasks of dd, one per node", T, || async {
        running(&cluster).filter(|n| n.len() == 3)
    })
    .await;
    let victim = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    cluster.kill(victim);

    // The leader answers: it is not dead. An unknown node is not found.
    let o = cluster.cli(&["node", "declare-dead", &leader.to_string()]);
    assert!(!o.status.success(), "declaring the leader dead was accepted");
    assert!(
        flotilla_tests::stderr(&o).contains("is not dead"),
        "{}",
        flotilla_tests::stderr(&o)
    );
    let o = cluster.cli(&["node", "declare-dead", "9"]);
    assert!(!o.status.success());
    assert!(
        flotilla_tests::stderr(&o).contains("node 9 not found"),
        "{}",
        flotilla_tests::stderr(&o)
    );

    let out = ok(cluster.cli(&["node", "declare-dead", &victim.to_string()]));
    assert!(out.contains(&format!("node/{victim} declared dead")), "{out}");
    let replaced = wait_until_async("dd running on the two live nodes", T, || async {
        running(&cluster).filter(|n| n.values().sum::<usize>() == 3 && !n.contains_key(&victim))
    })
    .await;
    assert_eq!(replaced.len(), 2, "{replaced:?}");
    let nodes = flotilla_tests::node_status(&cluster).expect("get nodes");
    assert_eq!(nodes.get(&victim).map(String::as_str), Some("down"), "{nodes:?}");
    let events = ok(cluster.cli(&["events"]));
    assert!(
        events
            .lines()
            .any(|l| l.contains("node.down") && l.contains(&format!("node/{victim}"))),
        "{events}"
    );
}

/// Running containers of `service` in cluster `name`, per slot, as `docker ps` shows
/// them: (node, task) of each.
fn running_per_slot(name: &str, service: &str) -> BTreeMap<String, Vec<(String, String)>> {
    use flotilla_testkit::docker;
    let mut slots: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for c in docker::running_containers(&[("flotilla.cluster", name), ("flotilla.service", service)]) {
        let slot = c.label("flotilla.slot").unwrap_or("?").to_string();
        let node = c.label("flotilla.node").unwrap_or("?").to_string();
        let task = c.label("flotilla.task").unwrap_or("?").to_string();
        slots.entry(slot).or_default().push((node, task));
    }
    slots
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fence_service_on_a_cut_off_node_never_runs_two_copies_of_a_slot() {
    use flotilla_testkit::docker;
    if !docker::docker_or_skip("a_fence_service_on_a_cut_off_node_never_runs_two_copies_of_a_slot") {
        return;
    }
    let mut cluster = Cluster::builder(3).distinct_ips().driver("docker").start();
    let leader = cluster.wait_for_leader(T).await;
    all_registered(&cluster).await;
    let doc = format!(
        "name: db\nimage: {}\ncommand: [\"sleep\", \"3600\"]\nreplicas: 3\nstop_grace: 1s\n\
         on_disconnect: fence\nstop_after: 3s\n",
        docker::WORKLOAD_IMAGE
    );
    let file = cluster.write_file("db.yaml", &doc);
    ok(cluster.cli(&["apply", "-f", file.to_str().expect("utf-8")]));
    let name = cluster.name().to_string();
    let before = wait_until_async("one running db container per node", T, || async {
        let slots = running_per_slot(&name, "db");
        let nodes: std::collections::BTreeSet<String> = slots.values().flatten().map(|(n, _)| n.clone()).collect();
        (slots.len() == 3 && slots.values().all(|c| c.len() == 1) && nodes.len() == 3).then_some(slots)
    })
    .await;
    let victim = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    let (slot, (_, old_task)) = before
        .iter()
        .map(|(s, c)| (s.clone(), c[0].clone()))
        .find(|(_, (n, _))| *n == victim.to_string())
        .expect("the victim runs a task");

    // `docker ps` every 200 ms while the node is cut off and after it returns.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = std::thread::spawn({
        let (stop, name) = (stop.clone(), name.clone());
        move || {
            let (mut samples, mut twice) = (0usize, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let slots = running_per_slot(&name, "db");
                samples += 1;
                twice.extend(slots.into_iter().filter(|(_, c)| c.len() > 1));
                std::thread::sleep(Duration::from_millis(200));
            }
            (samples, twice)
        }
    });

    let cut = std::time::Instant::now();
    cluster.isolate(victim).expect("iptables (root)");
    let (gone, replaced) = {
        let mut gone = None;
        loop {
            let slots = running_per_slot(&name, "db");
            let here = slots.get(&slot).cloned().unwrap_or_default();
            if gone.is_none() && !here.iter().any(|(_, t)| *t == old_task) {
                gone = Some(cut.elapsed());
            }
            if here.iter().any(|(n, _)| *n != victim.to_string()) {
                break (gone, cut.elapsed());
            }
            assert!(
                cut.elapsed() < Duration::from_secs(40),
                "slot {slot} not replaced: {slots:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let gone = gone.expect("the cut-off copy stopped before its replacement ran");
    eprintln!("cut-off copy stopped after {gone:?}, replacement running after {replaced:?}");
    // stop_after 3 s + stop_grace 1 s + margin 1 s after the leader last heard from it;
    // then one pass, a create and a start.
    assert!(gone >= Duration::from_secs(2), "stopped before stop_after: {gone:?}");
    assert!(
        replaced >= Duration::from_secs(4),
        "replaced before the node could stop it: {replaced:?}"
    );
    assert!(replaced < Duration::from_secs(15), "replacement too slow: {replaced:?}");

    // Back in touch: the old copy is not started again; the slot keeps one copy.
    cluster.heal();
    all_registered(&cluster).await;
    let tasks = wait_until_async("the fenced task reported stopped", T, || async {
        let tasks = json(cluster.cli(&["get", "tasks", "--all", "--service", "db", "-o", "json"]));
        let old = tasks.as_array()?.iter().find(|t| t["id"] == old_task.as_str())?.clone();
        (old["state"] == "stopped").then_some(old)
    })
    .await;
    assert_eq!(tasks["desired"], "shutdown", "{tasks}");
    // A few more samples after the return, then the verdict.
    let settle = std::time::Instant::now();
    while settle.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (samples, twice) = sampler.join().expect("sampler");
    assert!(samples >= 20, "only {samples} samples");
    assert!(twice.is_empty(), "a slot ran twice: {twice:?}");
    let after = running_per_slot(&name, "db");
    assert!(after.values().all(|c| c.len() == 1) && after.len() == 3, "{after:?}");
    assert!(
        !after.values().flatten().any(|(_, t)| *t == old_task),
        "the fenced copy started again: {after:?}"
    );
    cluster.cleanup_workloads();
}

/// `make bench-fence`: how long after a node is cut off its slot runs again elsewhere,
/// for a `fence` service (stop_after 3 s, stop_grace 1 s) and a `replace` one side by
/// side, over `FENCE_CUTS` cuts (default 10) of a follower running one task of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: make bench-fence"]
async fn bench_replacement_after_a_cut_fence_against_replace() {
    use flotilla_testkit::docker;
    assert!(docker::docker_or_skip(
        "bench_replacement_after_a_cut_fence_against_replace"
    ));
    let cuts: usize = std::env::var("FENCE_CUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut cluster = Cluster::builder(3).distinct_ips().driver("docker").start();
    let leader = cluster.wait_for_leader(T).await;
    all_registered(&cluster).await;
    let image = docker::WORKLOAD_IMAGE;
    let common = format!("image: {image}\ncommand: [\"sleep\", \"3600\"]\nreplicas: 3\nstop_grace: 1s\n");
    let fence = cluster.write_file(
        "f.yaml",
        &format!("name: f\n{common}on_disconnect: fence\nstop_after: 3s\n"),
    );
    let replace = cluster.write_file("r.yaml", &format!("name: r\n{common}"));
    ok(cluster.cli(&["apply", "-f", fence.to_str().expect("utf-8")]));
    ok(cluster.cli(&["apply", "-f", replace.to_str().expect("utf-8")]));
    let name = cluster.name().to_string();
    let one_per_node = |service: &str| {
        let slots = running_per_slot(&name, service);
        let nodes: std::collections::BTreeSet<String> = slots.values().flatten().map(|(n, _)| n.clone()).collect();
        slots.len() == 3 && slots.values().all(|c| c.len() == 1) && nodes.len() == 3
    };
    let followers: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != leader).collect();
    let (mut took_fence, mut took_replace) = (Vec::new(), Vec::new());
    for cut in 0..cuts {
        wait_until_async(
            "one running container of f and of r per node",
            Duration::from_secs(120),
            || async { (one_per_node("f") && one_per_node("r")).then_some(()) },
        )
        .await;
        let victim = followers[cut % followers.len()].to_string();
        let slot_of = |service: &str| {
            running_per_slot(&name, service)
                .into_iter()
                .find(|(_, c)| c[0].0 == victim)
                .map(|(s, _)| s)
                .expect("the victim runs one")
        };
        let (f_slot, r_slot) = (slot_of("f"), slot_of("r"));
        let began = std::time::Instant::now();
        cluster.isolate(victim.parse().expect("id")).expect("iptables (root)");
        let (mut f_at, mut r_at) = (None, None);
        while f_at.is_none() || r_at.is_none() {
            let elsewhere = |service: &str, slot: &str| {
                running_per_slot(&name, service)
                    .get(slot)
                    .is_some_and(|c| c.iter().any(|(n, _)| *n != victim))
            };
            if f_at.is_none() && elsewhere("f", &f_slot) {
                f_at = Some(began.elapsed());
            }
            if r_at.is_none() && elsewhere("r", &r_slot) {
                r_at = Some(began.elapsed());
            }
            assert!(began.elapsed() < Duration::from_secs(60), "cut {cut}: not replaced");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cluster.heal();
        all_registered(&cluster).await;
        eprintln!(
            "cut {cut} (node {victim}): fence {:?}, replace {:?}",
            f_at.unwrap(),
            r_at.unwrap()
        );
        took_fence.push(f_at.expect("measured"));
        took_replace.push(r_at.expect("measured"));
    }
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    };
    for (what, v) in [("fence", &mut took_fence), ("replace", &mut took_replace)] {
        let (p50, p99) = (pct(v, 0.5), pct(v, 0.99));
        println!(
            "replacement after a cut, {what}: {} cuts, p50 {:.2} s, p99 {:.2} s, min {:.2} s, max {:.2} s",
            v.len(),
            p50.as_secs_f64(),
            p99.as_secs_f64(),
            v[0].as_secs_f64(),
            v[v.len() - 1].as_secs_f64()
        );
    }
    cluster.cleanup_workloads();
}
