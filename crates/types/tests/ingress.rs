//! Ingress ports: their meaning, their validation, one service per port at apply, and the
//! mesh's backends as the replica has them.

use flotilla_types::ingress::ingress_ports;
use flotilla_types::{
    Capacity, Command, CommandError, NewTask, NodeRegistration, PlanUpdate, PortMode, Response, ServiceSpec, SpecError,
    State, TaskReport, TaskState,
};

fn spec(text: &str) -> ServiceSpec {
    ServiceSpec::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn put(state: &mut State, text: &str, at: u64) -> Response {
    state.apply(&Command::PutService {
        spec: spec(text),
        at,
        exclusive_ingress: true,
    })
}

fn register(state: &mut State, id: u64, publish: &str) {
    state.apply(&Command::RegisterNode {
        node: NodeRegistration {
            id,
            address: format!("10.0.0.{id}:7000"),
            labels: Default::default(),
            capacity: Capacity {
                cpu_millis: 4000,
                memory_mb: 4096,
            },
            instance: String::new(),
            publish_addr: publish.into(),
            mesh_errors: Default::default(),
        },
        at: 1,
    });
}

#[test]
fn a_port_with_a_host_number_is_ingress_unless_it_says_host() {
    let s = spec(
        "name: web\nimage: x\nports:\n  - {container: 80, host: 8080}\n  - {container: 81, host: 8081, mode: host}\n  - {container: 82}\n",
    );
    let modes: Vec<PortMode> = s.ports.iter().map(|p| p.effective_mode()).collect();
    assert_eq!(modes, [PortMode::Ingress, PortMode::Host, PortMode::Host]);
    assert_eq!(s.ports[0].ingress(), Some(8080));
    assert_eq!(s.ports[1].ingress(), None);
    // What was written is what reads back: the default is not spelled out.
    assert!(!s.to_json().contains("mode\":\"ingress"), "{}", s.to_json());
}

#[test]
fn ingress_without_a_host_port_and_proxy_protocol_on_a_host_port_are_refused_by_field() {
    let field = |text: &str| match ServiceSpec::parse(text).unwrap_err() {
        SpecError::Invalid { field, .. } => field,
        SpecError::Parse(m) => m,
    };
    assert_eq!(
        field("name: web\nimage: x\nports: [{container: 80, mode: ingress}]\n"),
        "ports[0].host"
    );
    assert_eq!(
        field("name: web\nimage: x\nports: [{container: 80, host: 80, mode: host, proxy_protocol: true}]\n"),
        "ports[0].proxy_protocol"
    );
    assert!(
        ServiceSpec::parse("name: web\nimage: x\nports: [{container: 80, host: 80, proxy_protocol: true}]\n").is_ok()
    );
    assert!(ServiceSpec::parse("name: web\nimage: x\nports: [{container: 80, host: 80, mode: sideways}]\n").is_err());
}

#[test]
fn a_second_service_asking_for_an_ingress_port_is_refused_naming_the_first() {
    let mut state = State::default();
    assert!(matches!(
        put(
            &mut state,
            "name: web\nimage: x\nports: [{container: 80, host: 8080}]\n",
            1
        ),
        Response::Service { .. }
    ));
    let before = state.clone();
    for (text, why) in [
        (
            "name: api\nimage: x\nports: [{container: 81, host: 8080}]\n",
            "ingress on ingress",
        ),
        (
            "name: api\nimage: x\nports: [{container: 81, host: 8080, mode: host}]\n",
            "host on ingress",
        ),
    ] {
        match put(&mut state, text, 2) {
            Response::Error(CommandError::InvalidSpec(SpecError::Invalid { field, reason })) => {
                assert_eq!(field, "ports[0].host", "{why}");
                assert!(
                    reason.contains("\"web\"") && reason.contains("8080/tcp"),
                    "{why}: {reason}"
                );
            }
            other => panic!("{why}: {other:?}"),
        }
        assert_eq!(state, before, "{why}: a refused spec changes nothing");
    }
    // Another protocol, another port, or the same service again: all fine.
    assert!(matches!(
        put(
            &mut state,
            "name: dns\nimage: x\nports: [{container: 53, host: 8080, protocol: udp}]\n",
            3
        ),
        Response::Service { .. }
    ));
    assert!(matches!(
        put(
            &mut state,
            "name: web\nimage: x\nports: [{container: 80, host: 8080}]\nreplicas: 2\n",
            4
        ),
        Response::Service { .. }
    ));
    // A host port of the first makes an ingress port of the second collide too.
    put(
        &mut state,
        "name: side\nimage: x\nports: [{container: 80, host: 9090, mode: host}]\n",
        5,
    );
    assert!(matches!(
        put(
            &mut state,
            "name: api\nimage: x\nports: [{container: 80, host: 9090}]\n",
            6
        ),
        Response::Error(_)
    ));
}

#[test]
fn entries_from_before_the_mesh_replay_as_applied_and_the_oldest_service_keeps_the_port() {
    let mut state = State::default();
    for (name, at) in [("b", 1), ("a", 2)] {
        let r = state.apply(&Command::PutService {
            spec: spec(&format!(
                "name: {name}\nimage: x\nports: [{{container: 80, host: 8080}}]\n"
            )),
            at,
            exclusive_ingress: false,
        });
        assert!(matches!(r, Response::Service { .. }), "{r:?}");
    }
    let (owners, conflicts) = ingress_ports(&state);
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].service, "b", "created first");
    assert_eq!(conflicts.len(), 1);
    assert_eq!((conflicts[0].0.service.as_str(), conflicts[0].1.as_str()), ("a", "b"));
    // The flag is not written when false: an entry reads as an earlier binary wrote it.
    let json = serde_json::to_string(&Command::PutService {
        spec: spec("name: a\nimage: x\n"),
        at: 1,
        exclusive_ingress: false,
    })
    .unwrap();
    assert!(!json.contains("exclusive_ingress"), "{json}");
}

#[test]
fn backends_are_the_healthy_running_tasks_and_the_rest_say_why_not() {
    let mut state = State::default();
    register(&mut state, 1, "127.0.0.11");
    register(&mut state, 2, "0.0.0.0");
    put(
        &mut state,
        "name: web\nimage: x\nreplicas: 3\nports: [{container: 80, host: 8080}]\nhealth_check: {http: {port: 80}}\n",
        1,
    );
    let create = (0..3)
        .map(|slot| NewTask {
            service: "web".into(),
            slot,
            spec_version: 1,
            attempt: 0,
            node: Some(1 + u64::from(slot % 2)),
            message: String::new(),
            start_first: false,
            rebalanced_from: None,
        })
        .collect();
    state.apply(&Command::ApplyPlan {
        plan: PlanUpdate {
            create,
            ..Default::default()
        },
        at: 2,
    });
    let ids: Vec<String> = state.tasks.keys().cloned().collect();
    let report = |task: &str, s: TaskState| TaskReport {
        task: task.into(),
        state: s,
        container_id: Some("c".into()),
        address: None,
        exit_code: None,
        message: String::new(),
        stop_reason: None,
    };
    for (id, s) in ids
        .iter()
        .zip([TaskState::Healthy, TaskState::Unhealthy, TaskState::Running])
    {
        let node = state.tasks[id].node.unwrap();
        state.apply(&Command::ReportStatus {
            node,
            reports: vec![report(id, s)],
            at: 3,
        });
    }
    let (backends, left_out) = state.ingress_backends("web", 8080, flotilla_types::Protocol::Tcp);
    assert_eq!(backends.len(), 1, "{backends:?}");
    assert_eq!(backends[0].task, ids[0]);
    assert_eq!(backends[0].container, 80);
    let reasons: Vec<&str> = left_out.iter().map(|l| l.reason).collect();
    assert_eq!(reasons, ["unhealthy", "not healthy yet"]);

    let view = state.mesh_view("web");
    // Node 2 publishes on 0.0.0.0: clients reach it at its API address's host.
    assert_eq!(view.endpoints, ["127.0.0.11:8080/tcp", "10.0.0.2:8080/tcp"]);
    assert_eq!(view.backends.len(), 1);
    assert_eq!(view.left_out.len(), 2);
    assert!(view.errors.is_empty());
}
