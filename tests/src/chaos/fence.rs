//! The `fence` check, sampled while the faults are on: a service with
//! `on_disconnect: fence` never has two running containers of one slot while their agents
//! are alive. A container that outlived its agent (killed, paused, or killed and started
//! again while the container ran) is excused: a killed agent leaves its containers running
//! by design and removes a replaced copy once it is back (the final convergence check sees
//! any that stays). Two copies of a slot that were both started by agents alive since are
//! a violation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use flotilla_testkit::docker::{self, Container};

/// The fenced service the runner applies at the start; clients never touch it.
pub const SERVICE: &str = "fenced";
pub const REPLICAS: u32 = 3;
const EVERY: Duration = Duration::from_millis(200);

pub fn spec() -> String {
    format!(
        "name: {SERVICE}\nimage: flotilla/busybox:latest\ncommand: [\"sleep\", \"3600\"]\n\
         replicas: {REPLICAS}\non_disconnect: fence\nstop_grace: 1s\n"
    )
}

/// When each node's agent stopped being alive (killed, paused, wiped), by the wall clock
/// the engine's `StartedAt` uses.
#[derive(Clone, Default)]
pub struct Downs(Arc<Mutex<Vec<(u64, SystemTime)>>>);

impl Downs {
    /// Called just before agent `id` is killed or paused.
    pub fn record(&self, id: u64) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, SystemTime::now()));
    }

    /// Whether agent `node` stopped being alive at or after `started`.
    fn since(&self, node: u64, started: SystemTime) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|(id, at)| *id == node && *at >= started)
    }
}

#[derive(Debug, Default)]
pub struct Sampled {
    pub samples: usize,
    /// Slots seen with two or more running containers of which one outlived its agent.
    pub excused: usize,
    pub violations: Vec<String>,
}

/// Whether container `c` outlived its agent: it started before its node's agent last
/// stopped being alive (or its start time or node cannot be read).
fn outlived_agent(c: &Container, downs: &Downs) -> bool {
    let node = c.label("flotilla.node").and_then(|n| n.parse().ok());
    let started = humantime::parse_rfc3339_weak(&c.started_at).ok();
    match (node, started) {
        (Some(node), Some(started)) => downs.since(node, started),
        _ => true,
    }
}

/// One sample's verdicts: the slots of `live` (the service's running containers) with two
/// or more copies that agents alive since their start run.
pub fn judge(live: &[Container], downs: &Downs) -> (Vec<(String, Vec<String>)>, usize) {
    let mut per_slot: BTreeMap<String, Vec<&Container>> = BTreeMap::new();
    for c in live {
        per_slot
            .entry(c.label("flotilla.slot").unwrap_or("?").to_string())
            .or_default()
            .push(c);
    }
    let (mut bad, mut excused) = (Vec::new(), 0);
    for (slot, copies) in per_slot.into_iter().filter(|(_, c)| c.len() > 1) {
        let alive: Vec<String> = copies
            .iter()
            .filter(|c| !outlived_agent(c, downs))
            .map(|c| format!("{} on node {}", c.name, c.label("flotilla.node").unwrap_or("?")))
            .collect();
        if alive.len() > 1 {
            bad.push((slot, alive));
        } else {
            excused += 1;
        }
    }
    (bad, excused)
}

/// Samples the engine every 200 ms until `stop`.
pub async fn sample(cluster: String, downs: Downs, stop: Arc<AtomicBool>) -> Sampled {
    let mut out = Sampled::default();
    let mut seen = BTreeSet::new();
    let start = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let c = cluster.clone();
        let live = tokio::task::spawn_blocking(move || {
            docker::running_containers(&[("flotilla.cluster", &c), ("flotilla.service", SERVICE)])
        })
        .await
        .unwrap_or_default();
        out.samples += 1;
        let (bad, excused) = judge(&live, &downs);
        out.excused += excused;
        for (slot, copies) in bad {
            if seen.insert((slot.clone(), copies.clone())) {
                out.violations.push(format!(
                    "fence: slot {SERVICE}.{slot} had {} running copies at t={:.1}s: {}",
                    copies.len(),
                    start.elapsed().as_secs_f64(),
                    copies.join(", ")
                ));
            }
        }
        tokio::time::sleep(EVERY).await;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, node: u64, slot: u32, started: &str) -> Container {
        Container {
            id: name.into(),
            name: name.into(),
            status: "running".into(),
            started_at: started.into(),
            labels: [
                ("flotilla.node".to_string(), node.to_string()),
                ("flotilla.slot".to_string(), slot.to_string()),
            ]
            .into(),
        }
    }

    #[test]
    fn two_copies_of_a_slot_are_a_violation_unless_one_outlived_its_agent() {
        let downs = Downs::default();
        let old = container("a", 1, 0, "2020-01-01T00:00:00.5Z");
        let new = container("b", 2, 0, "2030-01-01T00:00:00.5Z");
        let other = container("c", 3, 1, "2020-01-01T00:00:00.5Z");
        let (bad, excused) = judge(&[old.clone(), new.clone(), other.clone()], &downs);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].0, "0");
        assert_eq!(excused, 0);
        // Node 1's agent died after `a` started: `a` outlived it, one copy is left.
        downs.record(1);
        let (bad, excused) = judge(&[old, new, other], &downs);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(excused, 1);
        // A copy started after its node's agent died (the agent came back) is not excused.
        let later = container("d", 1, 1, "2030-01-01T00:00:00.5Z");
        let (bad, _) = judge(&[later, container("e", 2, 1, "2030-01-01T00:00:00.5Z")], &downs);
        assert_eq!(bad.len(), 1, "{bad:?}");
    }
}
