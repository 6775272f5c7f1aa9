//! Builders for scheduler tests: services, nodes and tasks as plain data.

#![allow(dead_code)]

use std::collections::BTreeMap;

use flotilla_types::{
    Availability, Capacity, DesiredState, NewTask, Node, NodeStatus, Service, ServiceSpec, State, Task, TaskState,
};

pub fn service(name: &str, replicas: u32) -> Service {
    let spec = ServiceSpec::parse(&format!("name: {name}\nimage: busybox\nreplicas: {replicas}\n")).unwrap();
    Service {
        spec,
        version: 1,
        template_version: 1,
        created_at: 0,
        updated_at: 0,
        history: Vec::new(),
        rollout: None,
    }
}

/// `service` with `on_disconnect: fence` and `extra` spec lines.
pub fn fenced_service(name: &str, replicas: u32, extra: &str) -> Service {
    let mut svc = service(name, replicas);
    svc.spec = ServiceSpec::parse(&format!(
        "name: {name}\nimage: busybox\nreplicas: {replicas}\non_disconnect: fence\n{extra}"
    ))
    .unwrap();
    svc
}

pub fn node(id: u64, cpu: u64, mem: u64) -> Node {
    Node {
        id,
        address: format!("127.0.0.1:{}", 7000 + id),
        labels: BTreeMap::new(),
        capacity: Capacity {
            cpu_millis: cpu,
            memory_mb: mem,
        },
        availability: Availability::Active,
        status: NodeStatus::Ready,
        registered_at: 0,
        instance: String::new(),
        updated_at: 0,
        declared_dead: false,
        publish_addr: String::new(),
        mesh_errors: Default::default(),
    }
}

pub fn task(svc: &str, slot: u32, seq: u64, node: Option<u64>, state: TaskState) -> Task {
    Task {
        id: format!("{svc}.{slot}.{seq}"),
        service: svc.into(),
        slot,
        seq,
        spec_version: 1,
        node,
        desired: DesiredState::Running,
        state,
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
    }
}

/// A task a plan creates at version 1, not placed.
pub fn new_task(svc: &str, slot: u32, attempt: u32) -> NewTask {
    NewTask {
        service: svc.into(),
        slot,
        spec_version: 1,
        attempt,
        node: None,
        message: String::new(),
        start_first: false,
        rebalanced_from: None,
    }
}

pub fn state(services: Vec<Service>, nodes: Vec<Node>, tasks: Vec<Task>) -> State {
    State {
        services: services.into_iter().map(|s| (s.spec.name.clone(), s)).collect(),
        nodes: nodes.into_iter().map(|n| (n.id, n)).collect(),
        tasks: tasks.into_iter().map(|t| (t.id.clone(), t)).collect(),
        ..Default::default()
    }
}
