use flotilla_types::{Command, CommandError, PutOutcome, Response, ServiceSpec, SpecError, State};

const WEB: &str = r#"
name: web
image: flotilla/busybox:latest
command: ["httpd", "-f", "-p", "8080"]
replicas: 3
resources:
  cpu_millis: 250
  memory_mb: 128
ports:
  - container: 8080
    host: 18080
health_check:
  http:
    port: 8080
  interval: 2s
restart:
  condition: on-failure
  max_attempts: 5
  delay: 1s
"#;

fn field_of(text: &str) -> String {
    match ServiceSpec::parse(text).unwrap_err() {
        SpecError::Invalid { field, .. } => field,
        SpecError::Parse(msg) => msg,
    }
}

#[test]
fn parses_a_full_yaml_spec() {
    let spec = ServiceSpec::parse(WEB).unwrap();
    assert_eq!(spec.name, "web");
    assert_eq!(spec.replicas, 3);
    assert_eq!(spec.resources.memory_mb, 128);
    assert_eq!(spec.ports[0].host, Some(18080));
    assert_eq!(spec.restart.delay.as_millis(), 1000);
    assert_eq!(spec.stop_grace.as_millis(), 10_000);
}

#[test]
fn json_and_yaml_give_the_same_spec() {
    let yaml = ServiceSpec::parse(WEB).unwrap();
    let json = ServiceSpec::parse(&yaml.to_json()).unwrap();
    assert_eq!(yaml, json);
}

#[test]
fn several_documents_in_one_stream() {
    let text = format!("{WEB}\n---\nname: db\nimage: busybox\n---\n");
    let specs = ServiceSpec::parse_many(&text).unwrap();
    assert_eq!(specs.len(), 2);
    assert_eq!(specs[1].name, "db");
    assert_eq!(specs[1].replicas, 1);
}

fn message_of(text: &str) -> String {
    ServiceSpec::parse_many(text).unwrap_err().to_string()
}

#[test]
fn unknown_fields_are_named() {
    assert_eq!(
        message_of("name: web\nimage: x\nreplica: 3\n"),
        r#"replica: unknown field, did you mean "replicas"? (line 3, column 1)"#
    );
    let msg = field_of("name: web\nimage: x\nresources:\n  cpus: 1\n");
    assert_eq!(msg, "resources.cpus");
}

#[test]
fn every_unknown_field_is_reported_at_once_in_the_order_written() {
    let text = "name: web\nimage: x\nreplica: 3\nhealth_check:\n  tcp: {port: 80}\n  intervall: 1s\n\
                ports: [{container: 80, hots: 1}]\n";
    assert_eq!(
        message_of(text),
        "replica: unknown field, did you mean \"replicas\"? (line 3, column 1); \
         health_check.intervall: unknown field, did you mean \"interval\"? (line 6, column 3); \
         ports[0].hots: unknown field, did you mean \"host\"? (line 7, column 25)"
    );
}

#[test]
fn value_errors_name_their_field_and_line() {
    assert_eq!(
        message_of("name: web\nimage: x\nstop_grace: 10\n"),
        r#"stop_grace: invalid duration 10: write it like "500ms" or "10s" (line 3, column 13)"#
    );
    assert_eq!(
        message_of("{\n  \"name\": \"web\",\n  \"replicas\": 1.5,\n  \"image\": \"x\"\n}"),
        "replicas: expected an integer, found 1.5 (line 3, column 17)"
    );
    assert_eq!(
        message_of("name: web\nimage: x\nrestart: {condition: alway}\n"),
        r#"restart.condition: unknown value "alway", did you mean "always"? (line 3, column 22)"#
    );
    assert_eq!(
        message_of("name: web\nimage: x\nhealth_check: {http: {}}\n"),
        "health_check.http.port: is required (line 3, column 22)"
    );
    // Validation errors too are located.
    assert_eq!(
        message_of("name: web\nimage: x\nports: [{container: 80}, {container: 70000}]\n"),
        "ports[1].container: must be between 1 and 65535, got 70000 (line 3, column 27)"
    );
}

#[test]
fn errors_of_several_documents_name_the_document() {
    let stream = "name: a\nimage: x\n---\nname: web\nimage: x\nrestart:\n  delay: 1\n";
    assert_eq!(
        message_of(stream),
        r#"document 2: restart.delay: invalid duration 1: write it like "500ms" or "10s" (line 7, column 10)"#
    );
    let array = "[{\"name\": \"a\", \"image\": \"x\"},\n {\"name\": \"b\", \"image\": \"x\", \"replicas\": -1}]";
    assert_eq!(
        message_of(array),
        "document 2: replicas: expected an integer from 0 to 4294967295, found -1 (line 2, column 43)"
    );
    let invalid = "name: a\nimage: x\n---\nname: b\nimage: ' '\n";
    assert_eq!(message_of(invalid), "document 2: image: is required (line 5, column 1)");
    // One spec and a trailing `---` is one document: no number.
    assert_eq!(
        message_of("name: a\nimage: x\nreplicas: x\n---\n"),
        r#"replicas: expected an integer, found "x" (line 3, column 11)"#
    );
}

#[test]
fn two_documents_with_one_name_are_refused() {
    let stream = "name: web\nimage: x\n---\nname: db\nimage: x\n---\nname: web\nimage: y\n";
    assert_eq!(message_of(stream), r#"documents 1 and 3 both define service "web""#);
    let array = r#"[{"name": "web", "image": "x"}, {"name": "web", "image": "y"}]"#;
    assert_eq!(message_of(array), r#"documents 1 and 2 both define service "web""#);
}

#[test]
fn values_the_container_engine_refuses_are_refused() {
    assert_eq!(
        message_of("name: web\nimage: x\nresources: {cpu_millis: 1}\n"),
        "resources.cpu_millis: 1 is below 10, the least CPU the container engine accepts (0.01 CPU) (line 3, column 13)"
    );
    assert_eq!(
        message_of("name: web\nimage: x\nresources: {memory_mb: 5}\n"),
        "resources.memory_mb: 5 is below 6, the least memory the container engine accepts (6 MB) (line 3, column 13)"
    );
    assert!(ServiceSpec::parse("name: web\nimage: x\nresources: {cpu_millis: 10, memory_mb: 6}\n").is_ok());
    assert_eq!(
        message_of("name: web\nimage: Flotilla/busybox:latest\n"),
        r#"image: "Flotilla/busybox:latest": the container engine accepts only a lowercase repository name (line 2, column 1)"#
    );
    for image in [
        "busybox",
        "flotilla/busybox:Latest",
        "Registry.Example:5000/a/b:T",
        "x@sha256:AB",
    ] {
        assert!(
            ServiceSpec::parse(&format!("name: web\nimage: {image}\n")).is_ok(),
            "{image}"
        );
    }
}

#[test]
fn the_state_machine_replays_specs_accepted_before_the_engine_bounds() {
    // A log entry written by an earlier binary, which had no engine bounds, must apply the
    // same on replay: the bounds are checked at apply, not by the state machine.
    let mut spec = ServiceSpec::parse(WEB).unwrap();
    spec.resources.cpu_millis = 1;
    spec.resources.memory_mb = 1;
    let mut state = State::default();
    assert!(matches!(
        put(&mut state, &spec, 1),
        Response::Service {
            outcome: PutOutcome::Created,
            ..
        }
    ));
}

#[test]
fn invalid_values_name_their_field() {
    assert_eq!(field_of("name: Web_1\nimage: x\n"), "name");
    assert_eq!(field_of("name: web\n"), "image");
    assert_eq!(field_of("name: web\nimage: ' '\n"), "image");
    assert_eq!(field_of("name: web\nimage: x\nreplicas: 10001\n"), "replicas");
    assert!(field_of("name: web\nimage: x\nreplicas: -1\n").contains("replicas"));
    assert_eq!(
        field_of("name: web\nimage: x\nresources: {cpu_millis: 0}\n"),
        "resources.cpu_millis"
    );
    assert_eq!(
        field_of("name: web\nimage: x\nports: [{container: 70000}]\n"),
        "ports[0].container"
    );
    assert_eq!(
        field_of("name: web\nimage: x\nports: [{container: 80, host: 8080}, {container: 81, host: 8080}]\n"),
        "ports[1].host"
    );
    assert_eq!(field_of("name: web\nimage: x\nstop_grace: soon\n"), "stop_grace");
    assert_eq!(
        field_of("name: web\nimage: x\nhealth_check: {interval: 1s}\n"),
        "health_check"
    );
    assert_eq!(
        field_of("name: web\nimage: x\nplacement: {constraints: [\"zone ~ a\"]}\n"),
        "placement.constraints[0]"
    );
}

#[test]
fn replicas_bounds_are_inclusive() {
    assert!(ServiceSpec::parse("name: a\nimage: x\nreplicas: 0\n").is_ok());
    assert!(ServiceSpec::parse("name: a\nimage: x\nreplicas: 10000\n").is_ok());
}

fn put(state: &mut State, spec: &ServiceSpec, at: u64) -> Response {
    state.apply(&Command::PutService {
        spec: spec.clone(),
        at,
        exclusive_ingress: false,
    })
}

#[test]
fn apply_creates_updates_and_recognises_no_change() {
    let mut state = State::default();
    let mut spec = ServiceSpec::parse(WEB).unwrap();
    let r = put(&mut state, &spec, 10);
    assert!(matches!(
        r,
        Response::Service {
            version: 1,
            outcome: PutOutcome::Created,
            ..
        }
    ));
    let r = put(&mut state, &spec, 11);
    assert!(matches!(
        r,
        Response::Service {
            version: 1,
            outcome: PutOutcome::Unchanged,
            ..
        }
    ));
    spec.replicas = 5;
    let r = put(&mut state, &spec, 12);
    assert!(matches!(
        r,
        Response::Service {
            version: 2,
            outcome: PutOutcome::Updated { from: 1 },
            ..
        }
    ));
    let svc = &state.services["web"];
    assert_eq!((svc.created_at, svc.updated_at), (10, 12));
}

#[test]
fn apply_is_deterministic() {
    let spec = ServiceSpec::parse(WEB).unwrap();
    let cmds = [
        Command::PutService {
            spec: spec.clone(),
            at: 1,
            exclusive_ingress: false,
        },
        Command::DeleteService {
            name: "web".into(),
            at: 2,
        },
        Command::PutService {
            spec,
            at: 3,
            exclusive_ingress: false,
        },
    ];
    let run = || {
        let mut s = State::default();
        let rs: Vec<Response> = cmds.iter().map(|c| s.apply(c)).collect();
        (s, rs)
    };
    assert_eq!(run(), run());
    // Versions continue across delete and re-create.
    let (state, _) = run();
    assert_eq!(state.services["web"].version, 2);
}

#[test]
fn refused_commands_change_nothing() {
    let mut state = State::default();
    let r = state.apply(&Command::DeleteService {
        name: "ghost".into(),
        at: 1,
    });
    assert_eq!(
        r,
        Response::Error(CommandError::ServiceNotFound { name: "ghost".into() })
    );
    let mut bad = ServiceSpec::parse(WEB).unwrap();
    bad.replicas = 20_000;
    let r = put(&mut state, &bad, 1);
    assert!(matches!(r, Response::Error(CommandError::InvalidSpec(_))));
    assert_eq!(state, State::default());
}

#[test]
fn a_batch_applies_each_command_and_answers_each() {
    let mut state = State::default();
    let spec = ServiceSpec::parse(WEB).unwrap();
    let r = state.apply(&Command::Batch(vec![
        Command::PutService {
            spec: spec.clone(),
            at: 1,
            exclusive_ingress: false,
        },
        Command::DeleteService {
            name: "ghost".into(),
            at: 1,
        },
        Command::PutService {
            spec,
            at: 1,
            exclusive_ingress: false,
        },
    ]));
    let Response::Batch(rs) = r else { panic!("{r:?}") };
    assert!(matches!(
        rs[0],
        Response::Service {
            outcome: PutOutcome::Created,
            ..
        }
    ));
    assert!(matches!(rs[1], Response::Error(CommandError::ServiceNotFound { .. })));
    assert!(matches!(
        rs[2],
        Response::Service {
            outcome: PutOutcome::Unchanged,
            ..
        }
    ));
    assert_eq!(state.services.len(), 1);
}

#[test]
fn the_output_of_get_can_be_applied_again() {
    let spec = ServiceSpec::parse(WEB).unwrap();
    let view = serde_json::json!({
        "name": "web", "version": 3, "created_at": "2026-11-25T00:00:00Z",
        "updated_at": "2026-11-25T00:00:00Z", "spec": serde_json::to_value(&spec).unwrap(),
    });
    let one = ServiceSpec::parse(&view.to_string()).unwrap();
    assert_eq!(one, spec);
    let mut other = view.clone();
    other["spec"]["name"] = "db".into();
    let list = serde_json::Value::Array(vec![view.clone(), other]);
    assert_eq!(ServiceSpec::parse_many(&list.to_string()).unwrap().len(), 2);
    let yaml = serde_norway::to_string(&view).unwrap();
    assert_eq!(ServiceSpec::parse(&yaml).unwrap(), spec);
    let yaml_list = serde_norway::to_string(&list).unwrap();
    assert_eq!(ServiceSpec::parse_many(&yaml_list).unwrap().len(), 2);
    // A spec with an unknown key next to `spec` is not a view: the key is reported.
    let err = ServiceSpec::parse("name: web\nimage: x\nspec: {}\nextra: 1\n").unwrap_err();
    assert!(err.to_string().starts_with("spec: unknown field"), "{err}");
}

#[test]
fn on_disconnect_and_stop_after_are_checked_and_named() {
    let spec = ServiceSpec::parse("name: db\nimage: x\non_disconnect: fence\nstop_after: 5s\n").unwrap();
    assert!(spec.fenced());
    assert_eq!(spec.stop_after_or(std::time::Duration::from_secs(3)).as_secs(), 5);
    assert!(
        !ServiceSpec::parse("name: db\nimage: x\n").unwrap().fenced(),
        "replace is the default"
    );

    assert_eq!(
        field_of("name: db\nimage: x\nstop_after: 5s\n"),
        "stop_after",
        "needs fence"
    );
    assert_eq!(
        field_of("name: db\nimage: x\non_disconnect: fence\nstop_after: 1s\n"),
        "stop_after"
    );
    assert_eq!(
        field_of("name: db\nimage: x\non_disconnect: fence\nstop_after: 2h\n"),
        "stop_after"
    );
    assert_eq!(
        field_of("name: db\nimage: x\non_disconnect: fence\nupdate:\n  order: start-first\n"),
        "update.order",
        "start-first would run two copies"
    );
    assert!(message_of("name: db\nimage: x\non_disconnect: sometimes\n").contains("on_disconnect"));
}

#[test]
fn a_node_stopping_a_fenced_task_ends_it_for_good() {
    use flotilla_types::{DesiredState, StopReason, TaskReport, TaskState};
    let mut state = State::default();
    let spec = ServiceSpec::parse("name: db\nimage: x\non_disconnect: fence\n").unwrap();
    state.apply(&Command::PutService {
        spec,
        at: 1,
        exclusive_ingress: false,
    });
    state.apply(&Command::RegisterNode {
        node: flotilla_types::NodeRegistration {
            id: 1,
            address: "127.0.0.1:1".into(),
            labels: Default::default(),
            capacity: flotilla_types::Capacity {
                cpu_millis: 1000,
                memory_mb: 1000,
            },
            instance: String::new(),
            publish_addr: String::new(),
            mesh_errors: Default::default(),
        },
        at: 1,
    });
    let plan = flotilla_types::PlanUpdate {
        create: vec![flotilla_types::NewTask {
            service: "db".into(),
            slot: 0,
            spec_version: 1,
            attempt: 0,
            node: Some(1),
            message: String::new(),
            start_first: false,
            rebalanced_from: None,
        }],
        ..Default::default()
    };
    state.apply(&Command::ApplyPlan { plan, at: 2 });
    let id = state.tasks.keys().next().unwrap().clone();
    let report = TaskReport {
        task: id.clone(),
        state: TaskState::Stopped,
        container_id: None,
        address: None,
        exit_code: None,
        message: "fenced: node cut off".into(),
        stop_reason: Some(StopReason::Fenced),
    };
    state.apply(&Command::ReportStatus {
        node: 1,
        reports: vec![report],
        at: 3,
    });
    let t = &state.tasks[&id];
    assert_eq!(t.state, TaskState::Stopped);
    assert_eq!(t.desired, DesiredState::Shutdown);
    assert_eq!(t.stop_reason, Some(StopReason::Fenced));
}
