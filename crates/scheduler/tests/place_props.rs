//! Property tests of `place` over random clusters.

mod common;

use std::collections::BTreeMap;

use common::{node, service, state, task};
use flotilla_scheduler::{place, ClusterView, PendingTask};
use flotilla_types::{Availability, Constraint, NodeStatus, State, TaskState};
use proptest::prelude::*;

const ZONES: [&str; 3] = ["a", "b", "c"];
const CONSTRAINTS: [&str; 4] = ["zone == a", "zone != b", "zone in (a, c)", "disk == ssd"];

#[derive(Debug, Clone)]
struct NodeGen {
    cpu: u64,
    mem: u64,
    zone: Option<usize>,
    status: u8,
}

#[derive(Debug, Clone)]
struct ServiceGen {
    cpu: u32,
    mem: u32,
    tasks: usize,
    constraint: Option<usize>,
    max_per_node: Option<u32>,
    existing: usize,
}

fn node_gen() -> impl Strategy<Value = NodeGen> {
    (0u64..4000, 0u64..4096, proptest::option::of(0usize..3), 0u8..10).prop_map(|(cpu, mem, zone, status)| NodeGen {
        cpu,
        mem,
        zone,
        status,
    })
}

fn service_gen() -> impl Strategy<Value = ServiceGen> {
    (
        50u32..1000,
        16u32..1024,
        0usize..12,
        proptest::option::of(0usize..4),
        proptest::option::of(1u32..4),
        0usize..4,
    )
        .prop_map(|(cpu, mem, tasks, constraint, max_per_node, existing)| ServiceGen {
            cpu,
            mem,
            tasks,
            constraint,
            max_per_node,
            existing,
        })
}

/// A cluster whose existing tasks already fit, and the pending tasks to place.
fn build(nodes: &[NodeGen], services: &[ServiceGen]) -> (State, Vec<PendingTask>) {
    let mut ns = Vec::new();
    for (i, g) in nodes.iter().enumerate() {
        let mut n = node(i as u64 + 1, g.cpu, g.mem);
        if let Some(z) = g.zone {
            n.labels.insert("zone".into(), ZONES[z].into());
        }
        match g.status {
            0 => n.status = NodeStatus::Down,
            1 => n.availability = Availability::Pause,
            2 => n.availability = Availability::Drain,
            _ => {}
        }
        ns.push(n);
    }
    let mut svcs = Vec::new();
    let mut tasks = Vec::new();
    let mut pending = Vec::new();
    let mut used: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut seq = 0;
    for (i, g) in services.iter().enumerate() {
        let name = format!("s{i}");
        let mut svc = service(&name, (g.tasks + g.existing) as u32);
        svc.spec.resources.cpu_millis = g.cpu;
        svc.spec.resources.memory_mb = g.mem;
        if let Some(c) = g.constraint {
            svc.spec.placement.constraints.push(CONSTRAINTS[c].into());
        }
        svc.spec.placement.max_per_node = g.max_per_node;
        // Existing tasks on the first nodes they fit (ignoring filters: they predate them).
        for e in 0..g.existing {
            if let Some(n) = ns.iter().find(|n| {
                let (c, m) = used.get(&n.id).copied().unwrap_or_default();
                c + u64::from(g.cpu) <= n.capacity.cpu_millis && m + u64::from(g.mem) <= n.capacity.memory_mb
            }) {
                let u = used.entry(n.id).or_default();
                u.0 += u64::from(g.cpu);
                u.1 += u64::from(g.mem);
                seq += 1;
                let mut t = task(&name, e as u32, seq, Some(n.id), TaskState::Running);
                t.cpu_millis = g.cpu;
                t.memory_mb = g.mem;
                tasks.push(t);
            }
        }
        for _ in 0..g.tasks {
            pending.push(PendingTask {
                service: name.clone(),
                cpu_millis: g.cpu,
                memory_mb: g.mem,
            });
        }
        svcs.push(svc);
    }
    (state(svcs, ns, tasks), pending)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn placement_respects_capacity_availability_and_constraints(
        nodes in proptest::collection::vec(node_gen(), 0..8),
        services in proptest::collection::vec(service_gen(), 1..5),
    ) {
        let (state, pending) = build(&nodes, &services);
        let view = ClusterView::of(&state);
        let plan = place(&view, &pending);
        prop_assert_eq!(plan.placements.len(), pending.len());

        let mut cpu: BTreeMap<u64, u64> = BTreeMap::new();
        let mut mem: BTreeMap<u64, u64> = BTreeMap::new();
        let mut per: BTreeMap<(String, u64), u32> = BTreeMap::new();
        for t in state.tasks.values() {
            let n = t.node.unwrap();
            *cpu.entry(n).or_default() += u64::from(t.cpu_millis);
            *mem.entry(n).or_default() += u64::from(t.memory_mb);
            *per.entry((t.service.clone(), n)).or_default() += 1;
        }
        for (p, placement) in pending.iter().zip(&plan.placements) {
            match placement {
                Ok(id) => {
                    let n = &state.nodes[id];
                    prop_assert_eq!(n.status, NodeStatus::Ready, "placed on a down node");
                    prop_assert_eq!(n.availability, Availability::Active, "placed on a paused or drained node");
                    let svc = &state.services[&p.service];
                    for c in &svc.spec.placement.constraints {
                        prop_assert!(Constraint::parse(c).unwrap().matches(&n.labels), "broke {}", c);
                    }
                    *cpu.entry(*id).or_default() += u64::from(p.cpu_millis);
                    *mem.entry(*id).or_default() += u64::from(p.memory_mb);
                    let count = per.entry((p.service.clone(), *id)).or_default();
                    *count += 1;
                    if let Some(max) = svc.spec.placement.max_per_node {
                        prop_assert!(*count <= max, "max_per_node {} exceeded", max);
                    }
                }
                Err(unplaced) => {
                    // Every node is accounted for by exactly one reason.
                    prop_assert_eq!(unplaced.nodes, state.nodes.len());
                    prop_assert_eq!(unplaced.reasons.values().sum::<usize>(), state.nodes.len());
                    prop_assert!(unplaced.to_string().starts_with("0/"));
                }
            }
        }
        for (id, n) in &state.nodes {
            prop_assert!(cpu.get(id).copied().unwrap_or(0) <= n.capacity.cpu_millis, "cpu over-committed on {}", id);
            prop_assert!(mem.get(id).copied().unwrap_or(0) <= n.capacity.memory_mb, "memory over-committed on {}", id);
        }
    }

    #[test]
    fn the_same_input_gives_the_same_plan(
        nodes in proptest::collection::vec(node_gen(), 0..8),
        services in proptest::collection::vec(service_gen(), 1..5),
    ) {
        let (state, pending) = build(&nodes, &services);
        let view = ClusterView::of(&state);
        prop_assert_eq!(place(&view, &pending), place(&view, &pending));
    }

    #[test]
    fn with_every_node_feasible_services_spread_evenly(
        node_count in 1usize..10,
        tasks in proptest::collection::vec(1usize..40, 1..4),
    ) {
        let nodes: Vec<NodeGen> = (0..node_count)
            .map(|_| NodeGen { cpu: 1_000_000, mem: 1_000_000, zone: None, status: 9 })
            .collect();
        let services: Vec<ServiceGen> = tasks
            .iter()
            .map(|t| ServiceGen { cpu: 100, mem: 64, tasks: *t, constraint: None, max_per_node: None, existing: 0 })
            .collect();
        let (state, pending) = build(&nodes, &services);
        let plan = place(&ClusterView::of(&state), &pending);
        let mut per: BTreeMap<&str, BTreeMap<u64, usize>> = BTreeMap::new();
        for (p, placement) in pending.iter().zip(&plan.placements) {
            let id = placement.as_ref().expect("every node is feasible");
            *per.entry(p.service.as_str()).or_default().entry(*id).or_default() += 1;
        }
        for (svc, counts) in per {
            let max = counts.values().max().copied().unwrap_or(0);
            let min = if counts.len() < node_count { 0 } else { counts.values().min().copied().unwrap_or(0) };
            prop_assert!(max - min <= 1, "{} spread {:?}", svc, counts);
        }
    }
}

#[test]
fn reasons_read_like_an_operator_expects() {
    let (mut state, _) = build(&[], &[]);
    let mut small = node(1, 1000, 10);
    small.labels.insert("zone".into(), "a".into());
    let mut other = node(2, 1000, 10);
    other.labels.insert("zone".into(), "a".into());
    let mut drained = node(3, 1000, 1000);
    drained.availability = Availability::Drain;
    for n in [small, other, drained] {
        state.nodes.insert(n.id, n);
    }
    state.services.insert("web".into(), service("web", 1));
    let pending = vec![PendingTask {
        service: "web".into(),
        cpu_millis: 100,
        memory_mb: 64,
    }];
    let plan = place(&ClusterView::of(&state), &pending);
    let err = plan.placements[0].as_ref().unwrap_err();
    assert_eq!(err.to_string(), "0/3 nodes: 2 insufficient memory, 1 drained");

    state.services.get_mut("web").unwrap().spec.placement.constraints = vec!["zone == b".into()];
    let plan = place(&ClusterView::of(&state), &pending);
    let err = plan.placements[0].as_ref().unwrap_err();
    assert_eq!(err.to_string(), "0/3 nodes: 2 not matching `zone == b`, 1 drained");
}

#[test]
fn a_published_host_port_is_used_once_per_node() {
    let (mut state, _) = build(&[], &[]);
    for id in 1..=2 {
        state.nodes.insert(id, node(id, 10_000, 10_000));
    }
    let mut web = service("web", 3);
    web.spec.ports = vec![flotilla_types::Port {
        container: 80,
        host: Some(8080),
        protocol: flotilla_types::Protocol::Tcp,
        mode: Some(flotilla_types::PortMode::Host),
        proxy_protocol: false,
    }];
    state.services.insert("web".into(), web);
    let pending: Vec<PendingTask> = (0..3)
        .map(|_| PendingTask {
            service: "web".into(),
            cpu_millis: 100,
            memory_mb: 64,
        })
        .collect();
    let plan = place(&ClusterView::of(&state), &pending);
    let placed: Vec<u64> = plan
        .placements
        .iter()
        .filter_map(|p| p.as_ref().ok().copied())
        .collect();
    assert_eq!(placed.len(), 2, "{plan:?}");
    assert_ne!(placed[0], placed[1]);
    let err = plan.placements[2].as_ref().unwrap_err();
    assert_eq!(err.to_string(), "0/2 nodes: 2 host port in use");
}
