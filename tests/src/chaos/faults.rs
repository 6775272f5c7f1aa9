//! The seeded fault schedule: one fault at a time, each injected, held for a while, then
//! healed. The leader is picked more often. All but `QuorumLoss` leave a quorum.
//! Partitions are iptables cuts between the agents' own loopback addresses (see
//! `flotilla_testkit::partition`): the node keeps running and clients still reach it.
//! Packet loss is iptables `statistic` on the same addresses (this kernel has no netem);
//! packet delay is injected in the agents' peer transport (`flotilla_node::injected`).
//! Every moment an agent stops being alive is recorded for the `fence` check.

use std::time::{Duration, Instant};

use flotilla_testkit::{docker, poll_until_async, Cluster};

use super::fence::Downs;
use rand::rngs::StdRng;
use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SIGKILL, held down, then started again.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// SIGKILL and an immediate start.
    Restart,
    /// Cut off from both other nodes (not from clients), then healed.
    Partition,
    /// What the node sends to the others is dropped; what they send it arrives.
    OneWay,
    /// The node sees both others, they do not see each other.
    Bridge,
    /// 20-40 % of the packets between every two nodes dropped, both ways.
    Loss,
    /// Every message the node (or every node) receives from a peer waits 20-400 ms.
    Delay,
    /// The node's machine loses its disk: killed, its containers and data dir gone, started
    /// again with the same flags. It must be refused (never vote or serve under its old
    /// id); then, as an operator would, `node remove` and a fresh agent under a new id
    /// with `--join`.
    Wipe,
    /// The node and one other killed for a bounded time: no quorum, so writes must fail
    /// or stay unknown, never be acknowledged and lost.
    QuorumLoss,
}

/// The leader as the running agents see it.
pub async fn leader(cluster: &Cluster) -> Option<u64> {
    for id in cluster.ids() {
        if let Some(s) = cluster.status(id).await {
            if s.leader_id != 0 {
                return Some(s.leader_id);
            }
        }
    }
    None
}

/// Injects faults until `until` (measured from `start`); returns one line per fault.
/// Without `partitions` (no iptables), a scheduled partition is a pause instead.
pub async fn run(
    cluster: &mut Cluster,
    rng: &mut StdRng,
    start: Instant,
    until: Duration,
    partitions: bool,
    downs: &Downs,
) -> Vec<String> {
    let mut log = Vec::new();
    while start.elapsed() < until {
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..2500))).await;
        let leader = leader(cluster).await;
        let ids = cluster.ids();
        let target = match leader {
            Some(l) if rng.random_bool(0.6) => l,
            _ => ids[rng.random_range(0..ids.len())],
        };
        let kind = match rng.random_range(0..100) {
            0..22 => Kind::Kill,
            22..33 => Kind::Pause,
            33..43 => Kind::Restart,
            43..56 => Kind::Partition,
            56..64 => Kind::OneWay,
            64..72 => Kind::Bridge,
            72..80 => Kind::Loss,
            80..88 => Kind::Delay,
            88..93 => Kind::Wipe,
            _ => Kind::QuorumLoss,
        };
        let hold = match kind {
            Kind::Partition | Kind::OneWay | Kind::Bridge | Kind::Loss | Kind::Delay => {
                Duration::from_millis(rng.random_range(1000..5000))
            }
            Kind::QuorumLoss => Duration::from_millis(rng.random_range(500..3000)),
            _ => Duration::from_millis(rng.random_range(500..4000)),
        };
        let loss = rng.random_range(0.2..0.4);
        let delay = Duration::from_millis(rng.random_range(20..400));
        let everyone = rng.random_bool(0.5);
        let kind = match kind {
            Kind::Partition | Kind::OneWay | Kind::Bridge | Kind::Loss if !partitions => Kind::Pause,
            k => k,
        };
        let others: Vec<u64> = ids.iter().copied().filter(|id| *id != target).collect();
        let role = if leader == Some(target) { "leader" } else { "follower" };
        let held = match kind {
            Kind::Restart | Kind::Wipe => String::new(),
            Kind::Delay if everyone => format!(
                " and every other node: {} ms for {:.1}s",
                delay.as_millis(),
                hold.as_secs_f64()
            ),
            Kind::Delay => format!(": {} ms for {:.1}s", delay.as_millis(), hold.as_secs_f64()),
            Kind::Loss => format!(" ({:.0} % loss) for {:.1}s", loss * 100.0, hold.as_secs_f64()),
            Kind::QuorumLoss => format!(" and node {} for {:.1}s", others[0], hold.as_secs_f64()),
            _ => format!(" for {:.1}s", hold.as_secs_f64()),
        };
        log.push(format!(
            "t={:.1}s {kind:?} node {target} ({role}){held}",
            start.elapsed().as_secs_f64(),
        ));
        // As it happens too (on stderr): a run that panics still tells what it injected.
        eprintln!("  injecting {}", log.last().map_or("", String::as_str));
        match kind {
            Kind::Kill => {
                downs.record(target);
                cluster.kill(target);
                tokio::time::sleep(hold).await;
                cluster.start_agent(target);
            }
            Kind::Pause => {
                downs.record(target);
                cluster.pause(target);
                tokio::time::sleep(hold).await;
                cluster.resume(target);
            }
            Kind::Restart => {
                downs.record(target);
                cluster.restart(target);
            }
            Kind::Delay => {
                let delayed = if everyone { ids.clone() } else { vec![target] };
                for id in &delayed {
                    if let Err(e) = cluster.delay(*id, Some(delay)) {
                        if let Some(last) = log.last_mut() {
                            last.push_str(&format!(" (delay failed: {e})"));
                        }
                    }
                }
                tokio::time::sleep(hold).await;
                for id in &delayed {
                    let _ = cluster.delay(*id, None);
                }
            }
            Kind::Wipe => {
                downs.record(target);
                let outcome = wipe(cluster, target).await;
                if let Some(last) = log.last_mut() {
                    last.push_str(&format!(": {outcome}"));
                }
            }
            Kind::OneWay | Kind::Bridge | Kind::Loss => {
                let cuts: Vec<(u64, u64, Option<f64>)> = match kind {
                    Kind::OneWay => others.iter().map(|o| (target, *o, None)).collect(),
                    Kind::Bridge => vec![(others[0], others[1], None), (others[1], others[0], None)],
                    _ => ids
                        .iter()
                        .flat_map(|a| ids.iter().filter(move |b| *b != a).map(move |b| (*a, *b, Some(loss))))
                        .collect(),
                };
                for (from, to, p) in cuts {
                    if let Err(e) = cluster.drop_between(from, to, p) {
                        if let Some(last) = log.last_mut() {
                            last.push_str(&format!(" (cut failed: {e})"));
                        }
                    }
                }
                tokio::time::sleep(hold).await;
                cluster.heal();
            }
            Kind::QuorumLoss => {
                downs.record(target);
                downs.record(others[0]);
                cluster.kill(target);
                cluster.kill(others[0]);
                tokio::time::sleep(hold).await;
                cluster.start_agent(target);
                cluster.start_agent(others[0]);
            }
            Kind::Partition => {
                if let Err(e) = cluster.isolate(target) {
                    if let Some(last) = log.last_mut() {
                        last.push_str(&format!(" (partition failed: {e})"));
                    }
                }
                tokio::time::sleep(hold).await;
                // Evidence that the cut is real: what the two sides believe before healing.
                let mut views = Vec::new();
                for id in cluster.ids() {
                    let v = match cluster.status(id).await {
                        Some(s) => format!("node {id}: leader {} term {}", s.leader_id, s.term),
                        None => format!("node {id}: no answer"),
                    };
                    views.push(v);
                }
                if let Some(last) = log.last_mut() {
                    last.push_str(&format!("; before heal: {}", views.join(", ")));
                }
                cluster.heal();
            }
        }
    }
    log
}

/// How long a wiped voter may take to be refused, and the cluster to take its successor.
const WIPE_BOUND: Duration = Duration::from_secs(30);

/// The [`Kind::Wipe`] fault on `target`; returns what happened, in words. A wiped voter
/// that keeps serving under its old id is a violation (the line starts with `VIOLATION`).
async fn wipe(cluster: &mut Cluster, target: u64) -> String {
    cluster.kill(target);
    if docker::engine_version().is_ok() {
        docker::remove_containers(&[
            ("flotilla.cluster", cluster.name()),
            ("flotilla.node", &target.to_string()),
        ]);
    }
    cluster.wipe(target);
    cluster.start_agent(target);
    let refused = tokio::task::block_in_place(|| cluster.wait_exit(target, WIPE_BOUND)).is_some();
    cluster.forget(target);
    if !refused {
        return format!("VIOLATION: wiped node {target} kept running under its old id for {WIPE_BOUND:?}");
    }
    let id = target.to_string();
    let removed = poll_until_async(WIPE_BOUND, async || {
        let out = tokio::task::block_in_place(|| cluster.cli(&["node", "remove", &id]));
        out.status.success().then_some(())
    })
    .await;
    if removed.is_none() {
        return format!("refused; `node remove {target}` did not succeed within {WIPE_BOUND:?}");
    }
    let new = cluster.ids().into_iter().max().unwrap_or(target).max(target) + 1;
    let core = cluster.addrs();
    cluster.add_agent(new, &["--join", &core]);
    cluster.start_agent(new);
    let cluster = &*cluster;
    let joined = poll_until_async(WIPE_BOUND, async || {
        let s = cluster.status(new).await?;
        (s.voter && s.leader_id != 0).then_some(())
    })
    .await;
    match joined {
        Some(()) => format!("refused, removed; node {new} joined in its place"),
        None => format!("refused, removed; node {new} not a voter within {WIPE_BOUND:?}"),
    }
}
