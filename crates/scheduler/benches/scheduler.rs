//! `place` of 100,000 tasks onto 10,000 nodes, and one `reconcile` pass over 10,000
//! services of 10 replicas. Run with `make bench` (or `cargo bench -p flotilla-scheduler`).

use std::collections::BTreeMap;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use flotilla_scheduler::{place, reconcile, ClusterView, PendingTask};
use flotilla_types::{
    Availability, Capacity, DesiredState, Node, NodeStatus, Service, ServiceSpec, State, Task, TaskState,
};

fn node(id: u64) -> Node {
    let mut labels = BTreeMap::new();
    labels.insert("zone".to_string(), ["a", "b", "c"][(id % 3) as usize].to_string());
    Node {
        id,
        address: String::new(),
        labels,
        capacity: Capacity {
            cpu_millis: 64_000,
            memory_mb: 256_000,
        },
        availability: Availability::Active,
        status: NodeStatus::Ready,
        registered_at: 0,
        instance: String::new(),
        declared_dead: false,
        publish_addr: String::new(),
        mesh_errors: Default::default(),
        updated_at: 0,
    }
}

fn service(name: &str, replicas: u32) -> Service {
    Service {
        spec: ServiceSpec::parse(&format!("name: {name}\nimage: busybox\nreplicas: {replicas}\n")).unwrap(),
        version: 1,
        template_version: 1,
        created_at: 0,
        updated_at: 0,
        history: Vec::new(),
        rollout: None,
    }
}

fn bench_place(c: &mut Criterion) {
    // 1,000 services of 100 tasks onto 10,000 empty nodes.
    let mut state = State::default();
    for id in 1..=10_000 {
        state.nodes.insert(id, node(id));
    }
    let mut pending = Vec::with_capacity(100_000);
    for s in 0..1_000 {
        let name = format!("svc-{s}");
        state.services.insert(name.clone(), service(&name, 100));
        for _ in 0..100 {
            pending.push(PendingTask {
                service: name.clone(),
                cpu_millis: 100,
                memory_mb: 64,
            });
        }
    }
    let mut g = c.benchmark_group("place");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(pending.len() as u64));
    g.bench_function("100k_tasks_10k_nodes", |b| {
        b.iter(|| {
            let plan = place(&ClusterView::of(&state), &pending);
            assert_eq!(plan.placed(), 100_000);
            plan
        })
    });
    g.finish();
}

fn bench_reconcile(c: &mut Criterion) {
    // 10,000 services of 10 replicas, all converged but one slot in ten missing.
    let mut state = State::default();
    for id in 1..=1_000 {
        state.nodes.insert(id, node(id));
    }
    let mut seq = 0;
    for s in 0..10_000 {
        let name = format!("svc-{s}");
        state.services.insert(name.clone(), service(&name, 10));
        for slot in 0..9 {
            seq += 1;
            let id = format!("{name}.{slot}.{seq}");
            state.tasks.insert(
                id.clone(),
                Task {
                    id,
                    service: name.clone(),
                    slot,
                    seq,
                    spec_version: 1,
                    node: Some(seq % 1_000 + 1),
                    desired: DesiredState::Running,
                    state: TaskState::Healthy,
                    cpu_millis: 100,
                    memory_mb: 64,
                    stop_grace_ms: 10_000,
                    state_since: 0,
                    attempt: 0,
                    stop_reason: None,
                    container_id: None,
                    address: None,
                    exit_code: None,
                    message: String::new(),
                    created_at: 0,
                    updated_at: 0,
                    rebalanced_from: None,
                },
            );
        }
    }
    let mut g = c.benchmark_group("reconcile");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(state.services.len() as u64));
    g.bench_function("10k_services_x10", |b| {
        b.iter_batched(
            || (),
            |_| {
                let plan = reconcile(&ClusterView::of(&state), 0);
                assert_eq!(plan.create.len(), 10_000);
                plan
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_place, bench_reconcile);
criterion_main!(benches);
