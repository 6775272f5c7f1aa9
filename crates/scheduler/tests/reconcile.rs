//! `reconcile` decides by returning a plan (its new tasks not placed yet); these tests
//! assert on that plan.

mod common;

use common::{new_task, node, service, state, task};
use flotilla_scheduler::{backoff, reconcile, ClusterView};
use flotilla_types::{
    Availability, DesiredState, Duration, NewTask, NodeStatus, PlanUpdate, RestartCondition, StopReason, TaskState,
};

fn stop(id: &str, reason: StopReason) -> (String, StopReason) {
    (id.into(), reason)
}

fn creates(create: Vec<NewTask>) -> PlanUpdate {
    PlanUpdate {
        create,
        ..Default::default()
    }
}

fn stops(stop: Vec<(String, StopReason)>) -> PlanUpdate {
    PlanUpdate {
        stop,
        ..Default::default()
    }
}

#[test]
fn scale_up_creates_one_task_per_empty_slot() {
    let s = state(
        vec![service("web", 3)],
        vec![node(1, 1000, 1000)],
        vec![task("web", 0, 1, Some(1), TaskState::Running)],
    );
    let plan = reconcile(&ClusterView::of(&s), 0);
    assert_eq!(plan, creates(vec![new_task("web", 1, 0), new_task("web", 2, 0)]));
}

#[test]
fn a_converged_service_needs_nothing() {
    let s = state(
        vec![service("web", 2)],
        vec![node(1, 1000, 1000)],
        vec![
            task("web", 0, 1, Some(1), TaskState::Healthy),
            task("web", 1, 2, Some(1), TaskState::Assigned),
        ],
    );
    assert!(reconcile(&ClusterView::of(&s), 0).is_empty());
}

#[test]
fn scale_down_stops_the_highest_slots() {
    let tasks = (0..5)
        .map(|i| task("web", i, u64::from(i), Some(1), TaskState::Running))
        .collect();
    let s = state(vec![service("web", 2)], vec![node(1, 9000, 9000)], tasks);
    let plan = reconcile(&ClusterView::of(&s), 0);
    assert_eq!(
        plan,
        stops(vec![
            stop("web.2.2", StopReason::ScaleDown),
            stop("web.3.3", StopReason::ScaleDown),
            stop("web.4.4", StopReason::ScaleDown),
        ])
    );
}

#[test]
fn a_deleted_service_has_every_task_stopped_then_forgotten() {
    let mut stopping = task("web", 1, 2, Some(1), TaskState::Running);
    stopping.desired = DesiredState::Shutdown;
    let s = state(
        vec![],
        vec![node(1, 1000, 1000)],
        vec![
            task("web", 0, 1, Some(1), TaskState::Running),
            stopping,
            task("web", 2, 3, Some(1), TaskState::Stopped),
        ],
    );
    let plan = reconcile(&ClusterView::of(&s), 0);
    assert_eq!(
        plan,
        PlanUpdate {
            stop: vec![stop("web.0.1", StopReason::ServiceDeleted)],
            remove: vec!["web.2.3".into()],
            ..Default::default()
        }
    );
}

#[test]
fn tasks_on_a_down_node_are_lost_and_replaced_at_once() {
    let mut down = node(2, 1000, 1000);
    down.status = NodeStatus::Down;
    let mut t = task("web", 1, 2, Some(2), TaskState::Healthy);
    t.attempt = 3;
    let s = state(
        vec![service("web", 2)],
        vec![node(1, 1000, 1000), down],
        vec![task("web", 0, 1, Some(1), TaskState::Healthy), t],
    );
    let plan = reconcile(&ClusterView::of(&s), 0);
    // Losing a node is not the workload's failure: the attempt count is kept.
    assert_eq!(
        plan,
        PlanUpdate {
            create: vec![new_task("web", 1, 3)],
            lost: vec!["web.1.2".into()],
            ..Default::default()
        }
    );
}

#[test]
fn a_drained_node_has_its_tasks_moved() {
    let mut drained = node(2, 1000, 1000);
    drained.availability = Availability::Drain;
    let s = state(
        vec![service("web", 1)],
        vec![node(1, 1000, 1000), drained],
        vec![task("web", 0, 1, Some(2), TaskState::Running)],
    );
    let plan = reconcile(&ClusterView::of(&s), 0);
    assert_eq!(
        plan,
        PlanUpdate {
            create: vec![new_task("web", 0, 0)],
            stop: vec![stop("web.0.1", StopReason::Drained)],
            ..Default::default()
        }
    );
}

fn failed_at(code: i64, attempt: u32, at: u64) -> flotilla_types::Task {
    let mut t = task("job", 0, 1, Some(1), TaskState::Exited);
    t.exit_code = Some(code);
    t.attempt = attempt;
    t.updated_at = at;
    t
}

fn with_policy(cond: RestartCondition, max_attempts: u32) -> flotilla_types::Service {
    let mut svc = service("job", 1);
    svc.spec.restart.condition = cond;
    svc.spec.restart.max_attempts = max_attempts;
    svc.spec.restart.delay = Duration::from_millis(1000);
    svc.spec.restart.max_delay = Duration::from_millis(5000);
    svc
}

#[test]
fn restart_backoff_doubles_and_is_capped() {
    let p = with_policy(RestartCondition::OnFailure, 0).spec.restart;
    assert_eq!(
        (0..5).map(|a| backoff(&p, a)).collect::<Vec<_>>(),
        vec![1000, 2000, 4000, 5000, 5000]
    );
    assert_eq!(backoff(&p, 200), 5000);
}

#[test]
fn a_failed_task_is_restarted_only_after_its_backoff() {
    let s = state(
        vec![with_policy(RestartCondition::OnFailure, 0)],
        vec![node(1, 1000, 1000)],
        vec![failed_at(1, 2, 10_000)],
    );
    let v = ClusterView::of(&s);
    // attempt 2 -> backoff 4 s after it ended at t = 10 s.
    assert!(reconcile(&v, 13_999).is_empty());
    assert_eq!(reconcile(&v, 14_000), creates(vec![new_task("job", 0, 3)]));
}

#[test]
fn restart_policy_limits() {
    let run = |cond, max, code, attempt| {
        let s = state(
            vec![with_policy(cond, max)],
            vec![node(1, 1000, 1000)],
            vec![failed_at(code, attempt, 0)],
        );
        reconcile(&ClusterView::of(&s), 1_000_000)
    };
    // on-failure: a clean exit completes the slot (the task is marked so), a failure
    // restarts it.
    let completed = stops(vec![stop("job.0.1", StopReason::Completed)]);
    assert_eq!(run(RestartCondition::OnFailure, 0, 0, 0), completed);
    assert_eq!(
        run(RestartCondition::OnFailure, 0, 1, 0),
        creates(vec![new_task("job", 0, 1)])
    );
    // always: even a clean exit restarts.
    assert_eq!(
        run(RestartCondition::Always, 0, 0, 0),
        creates(vec![new_task("job", 0, 1)])
    );
    // never: no restart, whatever the code; a clean exit is a completion.
    assert!(run(RestartCondition::Never, 0, 1, 0).is_empty());
    assert_eq!(run(RestartCondition::Never, 0, 0, 0), completed);
    // max_attempts 3: attempts 0, 1, 2 may be followed by another; attempt 3 is the last.
    assert_eq!(
        run(RestartCondition::OnFailure, 3, 1, 2),
        creates(vec![new_task("job", 0, 3)])
    );
    assert!(run(RestartCondition::OnFailure, 3, 1, 3).is_empty());
}

#[test]
fn a_completed_task_stays_completed_and_a_new_template_runs_again() {
    let mut done = failed_at(0, 0, 1_000);
    done.desired = DesiredState::Shutdown;
    done.stop_reason = Some(StopReason::Completed);
    let s = state(
        vec![with_policy(RestartCondition::Never, 0)],
        vec![node(1, 1000, 1000)],
        vec![done.clone()],
    );
    assert!(reconcile(&ClusterView::of(&s), 1_000_000).is_empty());

    // A new template: the completed task is outdated, and the slot runs the new one.
    let mut svc = with_policy(RestartCondition::Never, 0);
    svc.spec.command = vec!["true".into()];
    svc.version = 2;
    svc.template_version = 2;
    let s = state(vec![svc], vec![node(1, 1000, 1000)], vec![done]);
    let plan = reconcile(&ClusterView::of(&s), 1_000_000);
    assert_eq!(plan.create.len(), 1, "{plan:?}");
    assert_eq!(plan.create[0].spec_version, 2);
}

#[test]
fn an_unhealthy_task_is_stopped_then_restarted_per_policy() {
    let s = state(
        vec![with_policy(RestartCondition::OnFailure, 0)],
        vec![node(1, 1000, 1000)],
        vec![task("job", 0, 1, Some(1), TaskState::Unhealthy)],
    );
    assert_eq!(
        reconcile(&ClusterView::of(&s), 0),
        stops(vec![stop("job.0.1", StopReason::Unhealthy)])
    );

    let mut t = task("job", 0, 1, Some(1), TaskState::Stopped);
    t.desired = DesiredState::Shutdown;
    t.stop_reason = Some(StopReason::Unhealthy);
    t.updated_at = 5_000;
    let s = state(
        vec![with_policy(RestartCondition::OnFailure, 0)],
        vec![node(1, 1000, 1000)],
        vec![t],
    );
    let v = ClusterView::of(&s);
    assert!(reconcile(&v, 5_999).is_empty());
    assert_eq!(reconcile(&v, 6_000), creates(vec![new_task("job", 0, 1)]));
}

#[test]
fn an_outdated_task_is_replaced_by_the_current_version() {
    let mut svc = service("web", 1);
    svc.version = 2;
    svc.template_version = 2;
    let s = state(
        vec![svc],
        vec![node(1, 1000, 1000)],
        vec![task("web", 0, 1, Some(1), TaskState::Running)],
    );
    let plan = reconcile(&ClusterView::of(&s), 0);
    assert_eq!(
        plan,
        PlanUpdate {
            create: vec![NewTask {
                spec_version: 2,
                ..new_task("web", 0, 0)
            }],
            stop: vec![stop("web.0.1", StopReason::Outdated)],
            ..Default::default()
        }
    );
}

#[test]
fn history_keeps_only_the_newest_finished_tasks_per_slot() {
    let mut tasks: Vec<_> = (1..=5)
        .map(|seq| task("web", 0, seq, Some(1), TaskState::Failed))
        .collect();
    for t in &mut tasks {
        t.desired = DesiredState::Shutdown;
    }
    tasks.push(task("web", 0, 6, Some(1), TaskState::Running));
    let s = state(vec![service("web", 1)], vec![node(1, 1000, 1000)], tasks);
    let plan = reconcile(&ClusterView::of(&s), 0);
    assert_eq!(
        plan,
        PlanUpdate {
            remove: vec!["web.0.1".into(), "web.0.2".into(), "web.0.3".into()],
            ..Default::default()
        }
    );
}
