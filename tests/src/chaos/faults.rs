//! The seeded fault schedule: one fault at a time (the cluster keeps a quorum), each
//! injected, held for a while, then healed. The leader is picked more often.
//! Partitions are iptables cuts between the agents' own loopback addresses (see
//! `flotilla_testkit::partition`): the node keeps running and clients still reach it.

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
            0..35 => Kind::Kill,
            35..55 => Kind::Pause,
            55..70 => Kind::Restart,
            _ => Kind::Partition,
        };
        let hold = match kind {
            Kind::Partition => Duration::from_millis(rng.random_range(1000..5000)),
            _ => Duration::from_millis(rng.random_range(500..4000)),
        };
        let kind = match kind {
            Kind::Partition if !partitions => Kind::Pause,
            k => k,
        };
        let role = if leader == Some(target) { "leader" } else { "follower" };
        let held = match kind {
            Kind::Restart => String::new(),
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
