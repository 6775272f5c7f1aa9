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

/// What the nodes already hold, updated as the plan places tasks.
#[derive(Default)]
struct Occupancy<'v> {
    alloc: HashMap<NodeId, Alloc>,
    /// Running tasks of each service on each node, for spreading and `max_per_node`.
    per_service: HashMap<&'v str, HashMap<NodeId, u32>>,
    /// Published host ports taken on each node.
    ports_used: HashMap<NodeId, BTreeSet<(u32, Protocol)>>,
}

/// A node that passed the static filters, keyed so the min-heap yields the best first:
/// fewest tasks of the service, then least allocated, then lowest id.
type Candidate = Reverse<(u32, u64, NodeId)>;

/// The nodes still open to a service's tasks, and why the others were refused.
struct Feasible {
    candidates: BinaryHeap<Candidate>,
    refused: BTreeMap<Reason, usize>,
}

pub fn place(view: &ClusterView<'_>, pending: &[PendingTask]) -> Placements {
    let mut placements: Vec<Option<Result<NodeId, Unplaced>>> = vec![None; pending.len()];
    let mut occupancy = occupancy(view);

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
        let wanted_ports = host_ports(&svc.spec);
        let mut feasible = static_filter(view, service, &svc.spec, &occupancy);
        for i in indices {
            let placed = place_one(
                view,
                service,
                &svc.spec,
                &wanted_ports,
                &pending[i],
                &mut feasible,
                &mut occupancy,
            );
            placements[i] = Some(placed.ok_or_else(|| Unplaced {
                nodes: view.nodes.len(),
                reasons: feasible.refused.clone(),
            }));
        }
    }
    Placements {
        placements: placements
            .into_iter()
            .map(|p| p.expect("every pending task is decided"))
            .collect(),
    }
}

/// What every node already holds, and how many tasks of each service it runs.
fn occupancy<'v>(view: &ClusterView<'v>) -> Occupancy<'v> {
    let mut occupancy = Occupancy {
        alloc: HashMap::with_capacity(view.nodes.len()),
        ..Occupancy::default()
    };
    for t in view.tasks.values() {
        let Some(node) = t.node else { continue };
        if t.state.holds_resources() {
            let a = occupancy.alloc.entry(node).or_default();
            a.cpu += u64::from(t.cpu_millis);
            a.mem += u64::from(t.memory_mb);
            if t.desired == flotilla_types::DesiredState::Running {
                *occupancy
                    .per_service
                    .entry(t.service.as_str())
                    .or_default()
                    .entry(node)
                    .or_default() += 1;
            }
        }
    }
    // A node's taken host ports are those of the tasks holding resources there.
    for t in view.tasks.values().filter(|t| t.state.holds_resources()) {
        if let (Some(node), Some(svc)) = (t.node, view.services.get(&t.service)) {
            occupancy
                .ports_used
                .entry(node)
                .or_default()
                .extend(host_ports(&svc.spec));
        }
    }
    occupancy
}

/// Static filters: the same answer for every task of this service.
fn static_filter(
    view: &ClusterView<'_>,
    service: &str,
    spec: &flotilla_types::ServiceSpec,
    occupancy: &Occupancy<'_>,
) -> Feasible {
    let constraints: Vec<(Constraint, &str)> = spec
        .placement
        .constraints
        .iter()
        .filter_map(|c| Constraint::parse(c).ok().map(|p| (p, c.as_str())))
        .collect();
    let counts = occupancy.per_service.get(service);
    let mut refused: BTreeMap<Reason, usize> = BTreeMap::new();
    let mut candidates: Vec<Candidate> = Vec::with_capacity(view.nodes.len());
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
                let a = occupancy.alloc.get(&node.id).copied().unwrap_or_default();
                candidates.push(Reverse((
                    counts.and_then(|c| c.get(&node.id)).copied().unwrap_or(0),
                    score(node, a),
                    node.id,
                )));
            }
        }
    }
    Feasible {
        candidates: BinaryHeap::from(candidates),
        refused,
    }
}

/// Places one task on the best candidate that fits and books it there; `None` when no
/// candidate does (the refusals are counted in `feasible`).
fn place_one<'k>(
    view: &ClusterView<'_>,
    service: &'k str,
    spec: &flotilla_types::ServiceSpec,
    wanted_ports: &[(u32, Protocol)],
    task: &PendingTask,
    feasible: &mut Feasible,
    occupancy: &mut Occupancy<'k>,
) -> Option<NodeId> {
    while let Some(Reverse((count, _, id))) = feasible.candidates.pop() {
        let node = &view.nodes[&id];
        if let Some(r) = misfit(node, count, spec.placement.max_per_node, wanted_ports, task, occupancy) {
            // Allocation only grows within a plan: this node stays unusable
            // for the rest of this service's tasks.
            *feasible.refused.entry(r).or_default() += 1;
            continue;
        }
        let a = occupancy.alloc.entry(id).or_default();
        a.cpu += u64::from(task.cpu_millis);
        a.mem += u64::from(task.memory_mb);
        let a = *a;
        occupancy
            .ports_used
            .entry(id)
            .or_default()
            .extend(wanted_ports.iter().copied());
        let new_count = count + 1;
        occupancy.per_service.entry(service).or_default().insert(id, new_count);
        feasible.candidates.push(Reverse((new_count, score(node, a), id)));
        return Some(id);
    }
    None
}

/// Why `node`, holding `count` tasks of the service, cannot take `task` now, if it cannot.
fn misfit(
    node: &flotilla_types::Node,
    count: u32,
    max_per_node: Option<u32>,
    wanted_ports: &[(u32, Protocol)],
    task: &PendingTask,
    occupancy: &Occupancy<'_>,
) -> Option<Reason> {
    let a = occupancy.alloc.get(&node.id).copied().unwrap_or_default();
    let port_taken = !wanted_ports.is_empty()
        && occupancy
            .ports_used
            .get(&node.id)
            .is_some_and(|used| wanted_ports.iter().any(|p| used.contains(p)));
    if max_per_node.is_some_and(|m| count >= m) {
        Some(Reason::MaxPerNode)
    } else if port_taken {
        Some(Reason::PortInUse)
    } else if a.cpu + u64::from(task.cpu_millis) > node.capacity.cpu_millis {
        Some(Reason::InsufficientCpu)
    } else if a.mem + u64::from(task.memory_mb) > node.capacity.memory_mb {
        Some(Reason::InsufficientMemory)
    } else {
        None
    }
}

fn host_ports(spec: &flotilla_types::ServiceSpec) -> Vec<(u32, Protocol)> {
    spec.ports
        .iter()
        // An ingress port binds on no node in particular: the mesh has it on all.
        .filter(|p| p.ingress().is_none())
        .filter_map(|p| p.host.map(|h| (h, p.protocol)))
        .collect()
}

/// How full a node is, cpu and memory weighted equally, in millionths of capacity.
fn score(node: &flotilla_types::Node, a: Alloc) -> u64 {
    // A node with no capacity sorts last (it also fails the fit check).
    let frac = |used: u64, cap: u64| used.saturating_mul(1_000_000).checked_div(cap).unwrap_or(u64::MAX / 4);
    frac(a.cpu, node.capacity.cpu_millis).saturating_add(frac(a.mem, node.capacity.memory_mb))
}
