//! The rollout part of `reconcile`, tested by the plans the leader's pass returns. States
//! are built through `State::apply` (the real commands), so history and rollout records
//! are the ones the cluster would hold.

use flotilla_scheduler::{plan, rollout_report, ClusterView};
use flotilla_types::{
    Capacity, Command, DesiredState, NewTask, NodeRegistration, NodeStatus, PlanUpdate, RolloutChange, RolloutOp,
    RolloutPhase, ServiceSpec, State, StopReason, TaskState,
};

const T0: u64 = 1_000_000;

fn spec(command: &str, replicas: u32, update: &str) -> ServiceSpec {
    ServiceSpec::parse(&format!(
        "name: web\nimage: busybox\ncommand: [{command}]\nreplicas: {replicas}\n{update}"
    ))
    .unwrap()
}

/// A cluster of three nodes running `web` v1 (all healthy since `T0`), then updated to a
/// new command with `update` as its policy, at `T0 + 1000`.
fn updated(replicas: u32, update: &str) -> State {
    let mut s = created(replicas, update);
    s.apply(&Command::PutService {
        spec: spec("new", replicas, update),
        at: T0 + 1000,
        exclusive_ingress: false,
    });
    s
}

/// A cluster of three nodes running `web` v1, all healthy since `T0 - 10 s`.
fn created(replicas: u32, update: &str) -> State {
    let mut s = State::default();
    for id in 1..=3 {
        s.apply(&Command::RegisterNode {
            node: NodeRegistration {
                id,
                address: format!("127.0.0.1:{}", 7000 + id),
                labels: Default::default(),
                capacity: Capacity {
                    cpu_millis: 100_000,
                    memory_mb: 100_000,
                },
                instance: String::new(),
                publish_addr: String::new(),
                mesh_errors: Default::default(),
            },
            at: 0,
        });
    }
    s.apply(&Command::PutService {
        spec: spec("old", replicas, update),
        at: 0,
        exclusive_ingress: false,
    });
    pass(&mut s, T0 - 10_000);
    for t in s.tasks.values_mut() {
        t.state = TaskState::Healthy;
        t.state_since = T0 - 10_000;
    }
    s
}

/// Applies the leader's pass at `now`.
fn pass(s: &mut State, now: u64) -> PlanUpdate {
    let plan = plan(&ClusterView::of(s), &[], now);
    s.apply(&Command::ApplyPlan {
        plan: plan.clone(),
        at: now,
    });
    plan
}

/// Executors: every live task of `version` becomes `state` at `at`; stopped ones stop.
fn executors(s: &mut State, version: u64, state: TaskState, at: u64) {
    for t in s.tasks.values_mut() {
        if t.desired == DesiredState::Shutdown && !t.state.is_terminal() {
            t.state = TaskState::Stopped;
            t.state_since = at;
        } else if t.spec_version == version && !t.state.is_terminal() && t.desired == DesiredState::Running {
            if t.state != state {
                t.state_since = at;
            }
            t.state = state;
            t.updated_at = at;
        }
    }
}

fn stops(plan: &PlanUpdate) -> Vec<(String, StopReason)> {
    let mut v = plan.stop.clone();
    v.sort();
    v
}

fn creates(plan: &PlanUpdate) -> Vec<(u32, u64, bool)> {
    let mut v: Vec<_> = plan
        .create
        .iter()
        .map(|c| (c.slot, c.spec_version, c.start_first))
        .collect();
    v.sort();
    v
}

fn changes(plan: &PlanUpdate) -> Vec<RolloutChange> {
    plan.rollouts.clone()
}

fn healthy(s: &State) -> usize {
    s.tasks
        .values()
        .filter(|t| t.desired == DesiredState::Running && t.state == TaskState::Healthy)
        .count()
}

fn live_at(s: &State, version: u64) -> usize {
    s.tasks
        .values()
        .filter(|t| t.desired == DesiredState::Running && !t.state.is_terminal() && t.spec_version == version)
        .count()
}

#[test]
fn parallelism_sets_the_batch_size_and_the_first_batch_starts_at_once() {
    let mut s = updated(6, "update: {parallelism: 2}\n");
    let a = pass(&mut s, T0 + 1000);
    assert_eq!(creates(&a), vec![(0, 2, false), (1, 2, false)]);
    assert_eq!(
        stops(&a),
        vec![
            ("web.0.0".into(), StopReason::Outdated),
            ("web.1.1".into(), StopReason::Outdated)
        ]
    );
    assert_eq!(
        changes(&a),
        vec![RolloutChange::Batch {
            service: "web".into(),
            target: 2,
            slots: vec![0, 1]
        }]
    );
    let r = s.services["web"].rollout.as_ref().unwrap();
    assert_eq!((r.from_version, r.to_version, r.batches.len()), (1, 2, 1));
}

#[test]
fn the_next_batch_waits_until_the_previous_one_passed_monitor() {
    let mut s = updated(4, "update: {parallelism: 1, monitor: 5s}\n");
    pass(&mut s, T0 + 1000);
    // Starting, then healthy: not yet for 5 s.
    executors(&mut s, 2, TaskState::Starting, T0 + 1500);
    assert!(creates(&pass(&mut s, T0 + 1600)).is_empty());
    executors(&mut s, 2, TaskState::Healthy, T0 + 2000);
    assert!(creates(&pass(&mut s, T0 + 6999)).is_empty());
    let a = pass(&mut s, T0 + 7000);
    assert_eq!(creates(&a), vec![(1, 2, false)]);
}

#[test]
fn delay_spaces_batches_after_monitor() {
    let mut s = updated(3, "update: {monitor: 1s, delay: 10s}\n");
    pass(&mut s, T0 + 1000);
    executors(&mut s, 2, TaskState::Healthy, T0 + 2000);
    // Passed monitor at T0+3000; the next batch may start at T0+13000.
    assert!(creates(&pass(&mut s, T0 + 12_999)).is_empty());
    assert_eq!(creates(&pass(&mut s, T0 + 13_000)), vec![(1, 2, false)]);
}

#[test]
fn stop_first_keeps_at_least_replicas_minus_parallelism_healthy() {
    let mut s = updated(6, "update: {parallelism: 2, monitor: 1s}\n");
    let mut now = T0 + 1000;
    let mut min_healthy = usize::MAX;
    for _ in 0..40 {
        pass(&mut s, now);
        min_healthy = min_healthy.min(healthy(&s));
        executors(&mut s, 2, TaskState::Healthy, now + 100);
        min_healthy = min_healthy.min(healthy(&s));
        now += 700;
    }
    assert_eq!(live_at(&s, 2), 6, "every slot on the new version");
    assert_eq!(min_healthy, 4);
    assert_eq!(
        s.services["web"].rollout.as_ref().unwrap().phase,
        RolloutPhase::Completed
    );
}

#[test]
fn start_first_starts_beside_the_old_task_and_stops_it_after_monitor() {
    let mut s = updated(3, "update: {order: start-first, monitor: 2s}\n");
    let a = pass(&mut s, T0 + 1000);
    assert_eq!(creates(&a), vec![(0, 2, true)]);
    assert!(stops(&a).is_empty(), "the old task keeps serving");
    assert_eq!(live_at(&s, 1) + live_at(&s, 2), 4, "old and new side by side");
    executors(&mut s, 2, TaskState::Healthy, T0 + 1500);
    assert!(stops(&pass(&mut s, T0 + 3000)).is_empty());
    let a = pass(&mut s, T0 + 3500);
    assert_eq!(stops(&a), vec![("web.0.0".into(), StopReason::Outdated)]);
    assert_eq!(creates(&a), vec![(1, 2, true)]);

    // Driven to the end, healthy never drops below the replica count.
    let mut now = T0 + 3600;
    let mut min_healthy = usize::MAX;
    for _ in 0..30 {
        executors(&mut s, 2, TaskState::Healthy, now);
        min_healthy = min_healthy.min(healthy(&s));
        pass(&mut s, now + 50);
        min_healthy = min_healthy.min(healthy(&s));
        now += 1000;
    }
    assert_eq!(min_healthy, 3);
    assert_eq!(live_at(&s, 2), 3);
    assert_eq!(live_at(&s, 1), 0);
}

#[test]
fn a_failing_version_with_pause_stops_where_it_is_and_says_why() {
    let mut s = updated(4, "update: {failure_action: pause}\n");
    pass(&mut s, T0 + 1000);
    let id = s.tasks.values().find(|t| t.spec_version == 2).unwrap().id.clone();
    let t = s.tasks.get_mut(&id).unwrap();
    t.state = TaskState::Exited;
    t.exit_code = Some(3);
    let a = pass(&mut s, T0 + 2000);
    let c = changes(&a);
    assert!(matches!(&c[0], RolloutChange::Failed { task, .. } if *task == id));
    assert!(
        matches!(&c[1], RolloutChange::Pause { reason, .. } if reason.contains(&id) && reason.contains("exited with code 3"))
    );
    let r = s.services["web"].rollout.as_ref().unwrap();
    assert!(r.paused.as_ref().unwrap().contains("1 of 4 new tasks failed"));
    // Paused: no further batch, even long after.
    let a = pass(&mut s, T0 + 100_000);
    assert!(
        creates(&a).iter().all(|(slot, _, _)| *slot == 0),
        "only the failed slot restarts"
    );
    assert_eq!(live_at(&s, 1), 3);
}

#[test]
fn a_failing_version_with_rollback_goes_back_to_the_previous_template() {
    let mut s = updated(4, "update: {parallelism: 2, monitor: 1s}\n");
    pass(&mut s, T0 + 1000);
    executors(&mut s, 2, TaskState::Unhealthy, T0 + 2000);
    let a = pass(&mut s, T0 + 2100);
    let c = changes(&a);
    assert_eq!(
        c.iter().filter(|c| matches!(c, RolloutChange::Failed { .. })).count(),
        2
    );
    assert!(
        matches!(c.last(), Some(RolloutChange::Rollback { reason, .. }) if reason.contains("failed its health check"))
    );
    let svc = &s.services["web"];
    assert_eq!((svc.version, svc.template_version), (3, 1));
    assert_eq!(svc.spec.command, vec!["old".to_string()]);
    assert_eq!(svc.rollout.as_ref().unwrap().phase, RolloutPhase::RollingBack);

    // The rollback replaces the new tasks batch by batch with the old template.
    let mut now = T0 + 2200;
    for _ in 0..20 {
        executors(&mut s, 1, TaskState::Healthy, now);
        pass(&mut s, now + 50);
        now += 1500;
    }
    assert_eq!(live_at(&s, 1), 4);
    assert_eq!(live_at(&s, 2), 0);
    let r = s.services["web"].rollout.as_ref().unwrap();
    assert_eq!(r.phase, RolloutPhase::RolledBack);
    assert!(r.reason.contains("2 of 4 new tasks failed"));
    let report = rollout_report(&s.services["web"], s.tasks.values(), now);
    assert_eq!(report.phase, "rolled-back");
    assert!(report.reason.contains("failed its health check"));
}

#[test]
fn continue_counts_failures_and_goes_on() {
    let mut s = updated(3, "update: {failure_action: continue, monitor: 1s}\n");
    pass(&mut s, T0 + 1000);
    let id = s.tasks.values().find(|t| t.spec_version == 2).unwrap().id.clone();
    s.tasks.get_mut(&id).unwrap().state = TaskState::Failed;
    let a = pass(&mut s, T0 + 2000);
    assert!(
        matches!(changes(&a).as_slice(), [RolloutChange::Failed { .. }, RolloutChange::Batch { slots, .. }] if *slots == vec![1])
    );
    assert_eq!(s.services["web"].rollout.as_ref().unwrap().failures, 1);
    assert!(s.services["web"].rollout.as_ref().unwrap().paused.is_none());
}

#[test]
fn max_failure_ratio_tolerates_that_many_failures() {
    let mut s = updated(
        6,
        "update: {parallelism: 3, failure_action: pause, max_failure_ratio: 0.34}\n",
    );
    pass(&mut s, T0 + 1000);
    let ids: Vec<String> = s
        .tasks
        .values()
        .filter(|t| t.spec_version == 2)
        .map(|t| t.id.clone())
        .collect();
    for id in &ids[..2] {
        s.tasks.get_mut(id).unwrap().state = TaskState::Failed;
    }
    let a = pass(&mut s, T0 + 2000);
    assert!(
        !changes(&a).iter().any(|c| matches!(c, RolloutChange::Pause { .. })),
        "2 of 6 ≤ 0.34"
    );
    s.tasks.get_mut(&ids[2]).unwrap().state = TaskState::Failed;
    let a = pass(&mut s, T0 + 3000);
    assert!(
        changes(&a).iter().any(|c| matches!(c, RolloutChange::Pause { .. })),
        "3 of 6 > 0.34"
    );
}

#[test]
fn a_node_lost_mid_rollout_is_replaced_and_the_rollout_continues() {
    let mut s = updated(3, "update: {monitor: 1s}\n");
    pass(&mut s, T0 + 1000);
    executors(&mut s, 2, TaskState::Healthy, T0 + 1100);
    // Node 1 holds the new task of slot 0; node 2 the old one of slot 1.
    let on = |s: &State, slot: u32, version: u64| {
        s.tasks
            .values()
            .find(|t| t.slot == slot && t.spec_version == version && t.desired == DesiredState::Running)
            .and_then(|t| t.node)
    };
    assert_eq!((on(&s, 0, 2), on(&s, 1, 1)), (Some(1), Some(2)));
    s.nodes.get_mut(&1).unwrap().status = NodeStatus::Down;
    let a = pass(&mut s, T0 + 1200);
    assert!(!a.lost.is_empty());
    assert!(!changes(&a)
        .iter()
        .any(|c| matches!(c, RolloutChange::Failed { .. } | RolloutChange::Pause { .. })));
    assert_eq!(creates(&a), vec![(0, 2, false)], "the lost slot is refilled at once");
    s.nodes.get_mut(&1).unwrap().status = NodeStatus::Ready;
    let mut now = T0 + 1300;
    for _ in 0..20 {
        executors(&mut s, 2, TaskState::Healthy, now);
        pass(&mut s, now + 50);
        now += 1200;
    }
    assert_eq!(live_at(&s, 2), 3);
    assert_eq!(
        s.services["web"].rollout.as_ref().unwrap().phase,
        RolloutPhase::Completed
    );
}

#[test]
fn a_paused_rollout_refills_a_lost_old_task_with_the_old_version() {
    let mut s = updated(3, "");
    s.apply(&Command::Rollout {
        name: "web".into(),
        op: RolloutOp::Pause,
        at: T0 + 1000,
    });
    let a = pass(&mut s, T0 + 1100);
    assert!(creates(&a).is_empty(), "paused before the first batch");
    s.nodes.get_mut(&2).unwrap().status = NodeStatus::Down;
    let a = pass(&mut s, T0 + 1200);
    assert_eq!(creates(&a), vec![(1, 1, false)]);
    s.apply(&Command::Rollout {
        name: "web".into(),
        op: RolloutOp::Resume,
        at: T0 + 1300,
    });
    assert!(!creates(&pass(&mut s, T0 + 1400)).is_empty());
}

#[test]
fn undo_goes_back_to_the_previous_template_and_history_is_bounded() {
    let mut s = updated(2, "update: {history: 3}\n");
    for i in 0..4 {
        s.apply(&Command::PutService {
            spec: spec(&format!("v{i}"), 2, "update: {history: 3}\n"),
            at: T0 + 2000 + i,
            exclusive_ingress: false,
        });
    }
    let svc = &s.services["web"];
    assert_eq!(svc.version, 6);
    // Tasks still run versions 1: it stays in the history beside the newest 3.
    let kept: Vec<u64> = svc.history.iter().map(|r| r.version).collect();
    assert_eq!(kept, vec![1, 4, 5, 6]);
    let r = s.apply(&Command::Rollout {
        name: "web".into(),
        op: RolloutOp::Undo { to_version: Some(2) },
        at: T0 + 3000,
    });
    match r {
        flotilla_types::Response::Error(e @ flotilla_types::CommandError::VersionNotFound { version: 2, .. }) => {
            assert_eq!(
                e.to_string(),
                "rollout of web: version 2 is not in the history (kept: 1, 4, 5, 6)"
            )
        }
        other => panic!("expected VersionNotFound, got {other:?}"),
    }
    s.apply(&Command::Rollout {
        name: "web".into(),
        op: RolloutOp::Undo { to_version: None },
        at: T0 + 3000,
    });
    let svc = &s.services["web"];
    assert_eq!((svc.version, svc.template_version), (7, 5));
    assert_eq!(svc.spec.command, vec!["v2".to_string()]);
    let r = svc.rollout.as_ref().unwrap();
    assert_eq!(
        (r.from_version, r.to_version, r.cause.as_str()),
        (6, 5, "undo to version 5")
    );
}

#[test]
fn replicas_or_policy_changes_start_no_rollout() {
    let mut s = updated(2, "");
    let before = s.services["web"].rollout.clone();
    s.apply(&Command::PutService {
        spec: spec("new", 5, "update: {parallelism: 3}\n"),
        at: T0 + 5000,
        exclusive_ingress: false,
    });
    let svc = &s.services["web"];
    assert_eq!(svc.template_version, 2);
    assert_eq!(svc.rollout, before);
}

#[test]
fn a_start_first_task_may_only_join_a_slot_of_another_version() {
    let mut s = updated(1, "");
    let new = |spec_version, start_first| NewTask {
        service: "web".into(),
        slot: 0,
        spec_version,
        attempt: 0,
        node: Some(1),
        message: String::new(),
        start_first,
        rebalanced_from: None,
    };
    let apply = |s: &mut State, t: NewTask| {
        s.apply(&Command::ApplyPlan {
            plan: PlanUpdate {
                create: vec![t],
                ..Default::default()
            },
            at: T0 + 2000,
        })
    };
    assert_eq!(
        format!("{:?}", apply(&mut s, new(1, true))),
        "Planned { applied: 0, skipped: 1 }"
    );
    assert_eq!(
        format!("{:?}", apply(&mut s, new(2, false))),
        "Planned { applied: 0, skipped: 1 }"
    );
    assert_eq!(
        format!("{:?}", apply(&mut s, new(2, true))),
        "Planned { applied: 1, skipped: 0 }"
    );
    assert_eq!(
        format!("{:?}", apply(&mut s, new(2, true))),
        "Planned { applied: 0, skipped: 1 }"
    );
}

#[test]
fn a_template_kept_only_under_a_later_version_number_is_still_found() {
    let policy = "update: {history: 2, monitor: 1s}\n";
    let mut s = created(3, policy);
    // v2: a scale (template 1); v3: a new template, rolled out.
    s.apply(&Command::ScaleService {
        name: "web".into(),
        replicas: 2,
        at: T0,
    });
    s.apply(&Command::PutService {
        spec: spec("v3", 2, policy),
        at: T0 + 1000,
        exclusive_ingress: false,
    });
    let mut now = T0 + 1000;
    let settle = |s: &mut State, template: u64, now: &mut u64| {
        for _ in 0..10 {
            pass(s, *now);
            executors(s, template, TaskState::Healthy, *now + 50);
            *now += 1500;
        }
    };
    settle(&mut s, 3, &mut now);
    // v4: undo to template 1 (stored as version 2); v5: another template.
    s.apply(&Command::Rollout {
        name: "web".into(),
        op: RolloutOp::Undo { to_version: None },
        at: now,
    });
    settle(&mut s, 1, &mut now);
    s.apply(&Command::PutService {
        spec: spec("v5", 2, policy),
        at: now,
        exclusive_ingress: false,
    });
    let svc = &s.services["web"];
    assert_eq!((svc.version, svc.template_version), (5, 5));
    assert!(
        svc.revision(1).is_none() && svc.revision(2).is_none(),
        "{:?}",
        svc.history
    );
    assert_eq!(
        svc.spec_at(1).command,
        vec!["old".to_string()],
        "template 1, kept as version 4"
    );
    // The new template fails: the rollback still finds template 1.
    pass(&mut s, now);
    executors(&mut s, 5, TaskState::Failed, now + 100);
    pass(&mut s, now + 200);
    let svc = &s.services["web"];
    assert_eq!(svc.rollout.as_ref().unwrap().phase, RolloutPhase::RollingBack);
    assert_eq!((svc.version, svc.template_version), (6, 1));
    assert_eq!(svc.spec.command, vec!["old".to_string()]);
}

#[test]
fn a_batch_planned_before_a_pause_committed_does_not_start() {
    let mut s = updated(4, "update: {parallelism: 2}\n");
    let batch = plan(&ClusterView::of(&s), &[], T0 + 1000);
    assert_eq!(creates(&batch).len(), 2);
    s.apply(&Command::Rollout {
        name: "web".into(),
        op: RolloutOp::Pause,
        at: T0 + 1001,
    });
    s.apply(&Command::ApplyPlan {
        plan: batch,
        at: T0 + 1002,
    });
    assert_eq!(live_at(&s, 1), 4, "no old task stopped");
    assert_eq!(live_at(&s, 2), 0, "no new task created");
    assert!(s.services["web"].rollout.as_ref().unwrap().batches.is_empty());
}
