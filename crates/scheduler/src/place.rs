//! `place`: a node for each pending task, or the reasons none fits.
//!
//! Filters (in order, the first failing one is the node's reason): node ready, availability
//! active, label constraints, `max_per_node`, published host ports free, cpu, memory —
//! counting what this same plan already placed. Scoring spreads: fewest tasks of the service on the node, then least
//! allocated, then the lowest node id, so the same input always gives the same plan.
//!
//! Tasks are placed service by service; for one service the feasible nodes sit in a
//! min-heap keyed by score (built in O(nodes)), so each placement costs O(log nodes).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::fmt;

use flotilla_types::{Availability, Constraint, NodeId, NodeStatus, Protocol};

use crate::view::ClusterView;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTask {
    pub service: String,
    pub cpu_millis: u32,
    pub memory_mb: u32,
}

/// Why a node was not used for a task.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    Down,
    Paused,
    Drained,
    Constraint(String),
    MaxPerNode,
    /// A published host port of the task is taken on the node.
    PortInUse,
    InsufficientCpu,
    InsufficientMemory,
    ServiceDeleted,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Down => f.write_str("down"),
            Reason::Paused => f.write_str("paused"),
            Reason::Drained => f.write_str("drained"),
            Reason::Constraint(c) => write!(f, "not matching `{c}`"),
            Reason::MaxPerNode => f.write_str("at max_per_node"),
            Reason::PortInUse => f.write_str("host port in use"),
            Reason::InsufficientCpu => f.write_str("insufficient cpu"),
            Reason::InsufficientMemory => f.write_str("insufficient memory"),
            Reason::ServiceDeleted => f.write_str("service deleted"),
        }
    }
}

/// A task no node can take: how many nodes were considered and why each was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaced {
    pub nodes: usize,
    pub reasons: BTreeMap<Reason, usize>,
}

impl fmt::Display for Unplaced {
    /// `0/3 nodes: 2 insufficient memory, 1 drained` (largest count first).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nodes == 0 {
            return f.write_str("0/0 nodes: no nodes registered");
        }
        let mut reasons: Vec<(&Reason, &usize)> = self.reasons.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
        write!(f, "0/{} nodes: {}", self.nodes, parts.join(", "))
    }
}

/// For each pending task, in input order: its node, or why it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placements {
    pub placements: Vec<Result<NodeId, Unplaced>>,
}

impl Placements {
    pub fn placed(&self) -> usize {
        self.placements.iter().filter(|p| p.is_ok()).count()
    }
}

#[derive(Clone, Copy, Default)]
struct Alloc {
    cpu: u64,
    mem: u64,
}

pub fn place(view: &ClusterView<'_>, pending: &[PendingTask]) -> Placements {
    let mut placements: Vec<Option<Result<NodeId, Unplaced>>> = vec![None; pending.len()];

    // What every node already holds, and how many tasks of each service it runs.
    let mut alloc: HashMap<NodeId, Alloc> = HashMap::with_capacity(view.nodes.len());
    let mut per_service: HashMap<&str, HashMap<NodeId, u32>> = HashMap::new();
    for t in view.tasks.values() {
        let Some(node) = t.node else { continue };
        if t.state.holds_resources() {
            let a = alloc.entry(node).or_default();
            a.cpu += u64::from(t.cpu_millis);
            a.mem += u64::from(t.memory_mb);
            if t.desired == flotilla_types::DesiredState::Running {
                *per_service
                    .entry(t.service.as_str())
                    .or_default()
                    .entry(node)
                    .or_default() += 1;
            }
        }
    }

    // Published host ports taken on each node, by the tasks that hold resources there.
    let mut ports_used: HashMap<NodeId, BTreeSet<(u32, Protocol)>> = HashMap::new();
    for t in view.tasks.values().filter(|t| t.state.holds_resources()) {
        if let (Some(node), Some(svc)) = (t.node, view.services.get(&t.service)) {
            ports_used.entry(node).or_default().extend(host_ports(&svc.spec));
        }
    }

    let mut by_service: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, p) in pending.iter().enumerate() {
        by_service.entry(p.service.as_str()).or_default().push(i);
    }

    for (service, indices) in by_service {
        let Some(svc) = view.services.get(service) else {
            for i in indices {
                placements[i] = Some(Err(Unplaced {
                    nodes: view.nodes.len(),
                    reasons: BTreeMap::from([(Reason::ServiceDeleted, view.nodes.len())]),
                }));
            }
            continue;
        };
        let constraints: Vec<(Constraint, &str)> = svc
            .spec
            .placement
            .constraints
            .iter()
            .filter_map(|c| Constraint::parse(c).ok().map(|p| (p, c.as_str())))
            .collect();
        let max_per_node = svc.spec.placement.max_per_node;
        let wanted_ports = host_ports(&svc.spec);
        let counts = per_service.entry(service).or_default();

        // Static filters: the same answer for every task of this service.
        let mut refused: BTreeMap<Reason, usize> = BTreeMap::new();
        let mut candidates: Vec<Reverse<(u32, u64, NodeId)>> = Vec::with_capacity(view.nodes.len());
        for node in view.nodes.values() {
            let reason = if node.status != NodeStatus::Ready {
                Some(Reason::Down)
            } else if node.availability == Availability::Pause {
                Some(Reason::Paused)
            } else if node.availability == Availability::Drain {
                Some(Reason::Drained)
            } else {
                constraints
                    .iter()
                    .find(|(c, _)| !c.matches(&node.labels))
                    .map(|(_, text)| Reason::Constraint(text.trim().to_string()))
            };
            match reason {
                Some(r) => *refused.entry(r).or_default() += 1,
                None => {
                    let a = alloc.get(&node.id).copied().unwrap_or_default();
                    candidates.push(Reverse((
                        counts.get(&node.id).copied().unwrap_or(0),
                        score(node, a),
                        node.id,
                    )));
                }
            }
        }

        let mut candidates = BinaryHeap::from(candidates);
        for i in indices {
            let task = &pending[i];
            let mut placed = None;
            while let Some(Reverse((count, _, id))) = candidates.pop() {
                let node = &view.nodes[&id];
                let a = alloc.get(&id).copied().unwrap_or_default();
                let port_taken = !wanted_ports.is_empty()
                    && ports_used
                        .get(&id)
                        .is_some_and(|used| wanted_ports.iter().any(|p| used.contains(p)));
                let misfit = if max_per_node.is_some_and(|m| count >= m) {
                    Some(Reason::MaxPerNode)
                } else if port_taken {
                    Some(Reason::PortInUse)
                } else if a.cpu + u64::from(task.cpu_millis) > node.capacity.cpu_millis {
                    Some(Reason::InsufficientCpu)
                } else if a.mem + u64::from(task.memory_mb) > node.capacity.memory_mb {
                    Some(Reason::InsufficientMemory)
                } else {
                    None
                };
                if let Some(r) = misfit {
                    // Allocation only grows within a plan: this node stays unusable
                    // for the rest of this service's tasks.
                    *refused.entry(r).or_default() += 1;
                    continue;
                }
                let a = alloc.entry(id).or_default();
                a.cpu += u64::from(task.cpu_millis);
                a.mem += u64::from(task.memory_mb);
                ports_used.entry(id).or_default().extend(wanted_ports.iter().copied());
                let new_count = count + 1;
                counts.insert(id, new_count);
                candidates.push(Reverse((new_count, score(node, *a), id)));
                placed = Some(id);
                break;
            }
            placements[i] = Some(match placed {
                Some(id) => Ok(id),
                None => Err(Unplaced {
                    nodes: view.nodes.len(),
                    reasons: refused.clone(),
                }),
            });
        }
    }
    Placements {
        placements: placements
            .into_iter()
            .map(|p| p.expect("every pending task is decided"))
            .collect(),
    }
}

fn host_ports(spec: &flotilla_types::ServiceSpec) -> Vec<(u32, Protocol)> {
    spec.ports
        .iter()
        .filter_map(|p| p.host.map(|h| (h, p.protocol)))
        .collect()
}

/// How full a node is, cpu and memory weighted equally, in millionths of capacity.
fn score(node: &flotilla_types::Node, a: Alloc) -> u64 {
    // A node with no capacity sorts last (it also fails the fit check).
    let frac = |used: u64, cap: u64| used.saturating_mul(1_000_000).checked_div(cap).unwrap_or(u64::MAX / 4);
    frac(a.cpu, node.capacity.cpu_millis).saturating_add(frac(a.mem, node.capacity.memory_mb))
}
