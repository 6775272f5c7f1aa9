//! The checks once the faults have stopped and every node is back.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use flotilla_proto::v1::{DesiredState, ListTasksRequest, TaskState};
use flotilla_testkit::{docker, Cluster};

use super::client;
use super::history::{Entry, Op, Outcome, Ret};

/// The final state of one service, read linearizably through any node.
pub async fn final_read(cluster: &Cluster, service: &str, deadline: Duration) -> Option<Ret> {
    let start = Instant::now();
    let config = cluster.creds.config()?;
    while start.elapsed() < deadline {
        for id in cluster.ids() {
            if let Outcome::Ok(r) = client::call(&cluster.addr(id), &config, service, &Op::Get).await {
                return Some(r);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// (a) No acknowledged write lost, nothing that was never written: the final version is
/// at least the last one acknowledged, and the final value, replica count and version
/// could have come from the operations invoked.
pub fn durability(service: &str, history: &[&Entry], fin: &Ret) -> Vec<String> {
    let mut v = Vec::new();
    let tried = |e: &&&Entry| !matches!(e.outcome, Outcome::Fail(_));
    let acked = history
        .iter()
        .filter_map(|e| match &e.outcome {
            Outcome::Ok(r) if e.op != Op::Get => r.version(),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let changes = history
        .iter()
        .filter(tried)
        .filter(|e| matches!(e.op, Op::Put { .. } | Op::Scale { .. }))
        .count() as u64;
    match fin {
        Ret::Read {
            version,
            value,
            replicas,
        } => {
            if *version < acked {
                v.push(format!(
                    "{service}: lost write: final version {version} < acknowledged version {acked}"
                ));
            }
            if *version > changes {
                v.push(format!(
                    "{service}: final version {version} but only {changes} changes were attempted"
                ));
            }
            let written = history
                .iter()
                .filter(tried)
                .any(|e| matches!(&e.op, Op::Put { value: w, .. } if w == value));
            if !written {
                v.push(format!("{service}: final value {value:?} was never written"));
            }
            let counted = history
                .iter()
                .filter(tried)
                .any(|e| matches!(&e.op, Op::Put { replicas: r, .. } | Op::Scale { replicas: r } if r == replicas));
            if !counted {
                v.push(format!("{service}: final replicas {replicas} were never asked for"));
            }
        }
        Ret::NotFound => {
            let deleted = history.iter().filter(tried).any(|e| e.op == Op::Delete);
            let created = history
                .iter()
                .any(|e| matches!(e.outcome, Outcome::Ok(Ret::Created(_) | Ret::Updated(_))));
            if created && !deleted {
                v.push(format!("{service}: acknowledged but gone, and never deleted"));
            }
        }
        other => v.push(format!("{service}: unexpected final answer {other:?}")),
    }
    v
}

/// (c) `flotilla cluster verify`: every replica's digest equal at one index. Retried for a
/// while: a member still catching up answers later.
pub fn verify(cluster: &Cluster, deadline: Duration) -> Result<String, String> {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < deadline {
        let out = cluster.cli(&["cluster", "verify", "-o", "json"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Ok(j) = serde_json::from_str::<serde_json::Value>(&text) {
            if out.status.success() && j["agree"] == true {
                return Ok(format!("replicas agree at index {}", j["index"]));
            }
        }
        last = format!(
            "exit {:?}: {text}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(format!("cluster verify never agreed: {last}"))
}

/// (d) + (e): every live service has exactly its replica count of tasks, each running,
/// in distinct slots, spread over the nodes within one task per node; deleted services
/// have none; on the engine (Docker driver) one
/// running container per wanted task, no slot with two, none the state does not want.
/// Returns the time it took, or what was still wrong at the bound.
pub async fn converge(
    cluster: &Cluster,
    finals: &BTreeMap<String, Ret>,
    bound: Duration,
    with_docker: bool,
) -> Result<Duration, Vec<String>> {
    let start = Instant::now();
    loop {
        let problems = converged(cluster, finals, with_docker).await;
        if problems.is_empty() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > bound {
            return Err(problems
                .into_iter()
                .map(|p| format!("not converged within {bound:?}: {p}"))
                .collect());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn converged(cluster: &Cluster, finals: &BTreeMap<String, Ret>, with_docker: bool) -> Vec<String> {
    let mut tasks = None;
    let Some(config) = cluster.creds.config() else {
        return vec!["no admin config".into()];
    };
    for id in cluster.ids() {
        if let Ok(mut c) = client::connect(&cluster.addr(id), &config).await {
            let req = ListTasksRequest {
                service: String::new(),
                stale: false,
            };
            if let Ok(Ok(r)) = tokio::time::timeout(client::CALL_TIMEOUT, c.list_tasks(req)).await {
                tasks = Some(r.into_inner().tasks);
                break;
            }
        }
    }
    let Some(tasks) = tasks else {
        return vec!["no node lists tasks".into()];
    };
    let mut p = Vec::new();
    // Meant to run: desired running and not ended. A task that failed keeps `desired:
    // running` as history beside the attempt that replaced it.
    let ended = |t: &&flotilla_proto::v1::TaskInfo| {
        matches!(
            t.state(),
            TaskState::Exited | TaskState::Failed | TaskState::Lost | TaskState::Stopped
        )
    };
    let wanted: Vec<_> = tasks
        .iter()
        .filter(|t| t.desired() == DesiredState::Running && !ended(t))
        .collect();
    for (service, fin) in finals {
        let mine: Vec<_> = wanted.iter().filter(|t| &t.service == service).collect();
        let want = match fin {
            Ret::Read { replicas, .. } => *replicas as usize,
            _ => 0,
        };
        let slots: BTreeSet<u32> = mine.iter().map(|t| t.slot).collect();
        let running = mine.iter().filter(|t| t.state().is_up()).count();
        if mine.len() != want || slots.len() != want || running != want {
            p.push(format!(
                "{service}: want {want} running tasks, have {} wanted in slots {slots:?}, {running} running",
                mine.len()
            ));
        }
        // A balanced spread: every node up at the end, so no node may hold two more of the
        // service's tasks than another (rebalancing evens out what failures skewed).
        let mut per_node: BTreeMap<u64, usize> = cluster.ids().into_iter().map(|id| (id, 0)).collect();
        for t in &mine {
            if let Some(n) = per_node.get_mut(&t.node_id) {
                *n += 1;
            }
        }
        let (most, fewest) = (
            per_node.values().max().copied().unwrap_or(0),
            per_node.values().min().copied().unwrap_or(0),
        );
        if most > fewest + 1 {
            p.push(format!("{service}: spread not balanced, tasks per node {per_node:?}"));
        }
    }
    if with_docker {
        let live = docker::running_containers(&[("flotilla.cluster", cluster.name())]);
        let mut per_slot: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for c in &live {
            per_slot
                .entry((
                    c.label("flotilla.service").unwrap_or("?").to_string(),
                    c.label("flotilla.slot").unwrap_or("?").to_string(),
                ))
                .or_default()
                .push(c.name.clone());
            let task = c.label("flotilla.task").unwrap_or("?");
            if !wanted.iter().any(|t| t.id == task) {
                p.push(format!(
                    "orphan container {} (task {task}) is running but not wanted",
                    c.name
                ));
            }
        }
        for ((service, slot), names) in per_slot {
            if names.len() > 1 {
                p.push(format!(
                    "slot {service}.{slot} has {} live containers: {names:?}",
                    names.len()
                ));
            }
        }
        for t in &wanted {
            if !live.iter().any(|c| c.label("flotilla.task") == Some(t.id.as_str())) {
                p.push(format!("task {} has no running container", t.id));
            }
        }
    }
    p
}
