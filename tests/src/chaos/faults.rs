//! The seeded fault schedule: one fault at a time, each injected, held for a while, then
//! healed. The leader is picked more often. All but `QuorumLoss` leave a quorum.
//! Partitions are iptables cuts between the agents' own loopback addresses (see
//! `flotilla_testkit::partition`): the node keeps running and clients still reach it.
//! Packet loss is iptables `statistic` on the same addresses (this kernel has no netem).

use std::time::{Duration, Instant};

use flotilla_testkit::Cluster;
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
            0..25 => Kind::Kill,
            25..38 => Kind::Pause,
            38..50 => Kind::Restart,
            50..65 => Kind::Partition,
            65..74 => Kind::OneWay,
            74..83 => Kind::Bridge,
            83..92 => Kind::Loss,
            _ => Kind::QuorumLoss,
        };
        let hold = match kind {
            Kind::Partition | Kind::OneWay | Kind::Bridge | Kind::Loss => {
                Duration::from_millis(rng.random_range(1000..5000))
            }
            Kind::QuorumLoss => Duration::from_millis(rng.random_range(500..3000)),
            _ => Duration::from_millis(rng.random_range(500..4000)),
        };
        let loss = rng.random_range(0.2..0.4);
        let kind = match kind {
            Kind::Partition | Kind::OneWay | Kind::Bridge | Kind::Loss if !partitions => Kind::Pause,
            k => k,
        };
        let others: Vec<u64> = ids.iter().copied().filter(|id| *id != target).collect();
        let role = if leader == Some(target) { "leader" } else { "follower" };
        let held = match kind {
            Kind::Restart => String::new(),
            Kind::Loss => format!(" ({:.0} % loss) for {:.1}s", loss * 100.0, hold.as_secs_f64()),
            Kind::QuorumLoss => format!(" and node {} for {:.1}s", others[0], hold.as_secs_f64()),
            _ => format!(" for {:.1}s", hold.as_secs_f64()),
        };
        log.push(format!(
            "t={:.1}s {kind:?} node {target} ({role}){held}",
            start.elapsed().as_secs_f64(),
        ));
        match kind {
            Kind::Kill => {
                cluster.kill(target);
                tokio::time::sleep(hold).await;
                cluster.start_agent(target);
            }
            Kind::Pause => {
                cluster.pause(target);
                tokio::time::sleep(hold).await;
                cluster.resume(target);
            }
            Kind::Restart => cluster.restart(target),
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
