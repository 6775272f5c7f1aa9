//! `plan` is one leader pass; these tests assert on the `PlanUpdate` it returns.

mod common;

use common::{new_task, node, service, state, task};
use flotilla_scheduler::{plan, ClusterView};
use flotilla_types::{NewTask, NodeStatus, PlanUpdate, State, StopReason, TaskState};

fn pass(s: &State, down: &[u64]) -> PlanUpdate {
    plan(&ClusterView::of(s), down, 0)
}

/// `web`'s new task for `slot`, placed on `node`, or not with `message`.
fn placed(slot: u32, node: Option<u64>, message: &str) -> NewTask {
    NewTask {
        node,
        message: message.into(),
        ..new_task("web", slot, 0)
    }
}

#[test]
fn a_waiting_pending_task_is_assigned() {
    let s = state(
        vec![service("web", 1)],
        vec![node(1, 1000, 1000)],
        vec![task("web", 0, 1, None, TaskState::Pending)],
    );
    assert_eq!(
        pass(&s, &[]),
        PlanUpdate {
            assign: vec![("web.0.1".into(), 1)],
            ..Default::default()
        }
    );
}

#[test]
fn a_new_slot_is_created_with_its_node() {
    let s = state(
        vec![service("web", 2)],
        vec![node(1, 1000, 1000), node(2, 1000, 1000)],
        vec![task("web", 0, 1, Some(1), TaskState::Running)],
    );
    assert_eq!(
        pass(&s, &[]),
        PlanUpdate {
            create: vec![placed(1, Some(2), "")],
            ..Default::default()
        }
    );
}

#[test]
fn an_unplaceable_task_carries_the_reason() {
    let s = state(
        vec![service("web", 2)],
        vec![node(1, 1000, 10)],
        vec![task("web", 0, 1, None, TaskState::Pending)],
    );
    let why = "0/1 nodes: 1 insufficient memory";
    assert_eq!(
        pass(&s, &[]),
        PlanUpdate {
            create: vec![placed(1, None, why)],
            unplaced: vec![("web.0.1".into(), why.into())],
            ..Default::default()
        }
    );
}

#[test]
fn an_unchanged_pending_reason_is_not_rewritten() {
    let mut waiting = task("web", 0, 1, None, TaskState::Pending);
    waiting.message = "0/1 nodes: 1 insufficient memory".into();
    let s = state(vec![service("web", 1)], vec![node(1, 1000, 10)], vec![waiting]);
    assert!(pass(&s, &[]).is_empty());
}

#[test]
fn a_node_passed_as_down_is_marked_and_its_tasks_lost_and_replaced() {
    let mut already = node(3, 1000, 1000);
    already.status = NodeStatus::Down;
    let s = state(
        vec![service("web", 1)],
        vec![node(1, 1000, 1000), node(2, 1000, 1000), already],
        vec![task("web", 0, 1, Some(1), TaskState::Running)],
    );
    assert_eq!(
        pass(&s, &[1, 3]),
        PlanUpdate {
            nodes_down: vec![1],
            lost: vec!["web.0.1".into()],
            create: vec![placed(0, Some(2), "")],
            ..Default::default()
        },
        "node 3 is down already: not marked again"
    );
}

#[test]
fn a_pending_task_stopped_in_the_same_pass_is_not_placed() {
    let s = state(
        vec![service("web", 1)],
        vec![node(1, 1000, 1000)],
        vec![
            task("web", 0, 1, Some(1), TaskState::Running),
            task("web", 1, 2, None, TaskState::Pending),
        ],
    );
    assert_eq!(
        pass(&s, &[]),
        PlanUpdate {
            stop: vec![("web.1.2".into(), StopReason::ScaleDown)],
            ..Default::default()
        }
    );
}
