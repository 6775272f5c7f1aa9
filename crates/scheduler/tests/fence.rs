//! `on_disconnect: fence`: a task on a down node is replaced only once its node must have
//! stopped it (`stop_after` + stop grace + margin since the leader last heard from it),
//! at once when the node is declared dead, and a fenced slot never gets a second task
//! while another may still run.

mod common;

use std::time::Duration;

use common::{fenced_service, node, service, state, task};
use flotilla_scheduler::{fence_waits, plan, ClusterView, Silence};
use flotilla_types::{DesiredState, NodeStatus, State, StopReason, TaskState, FENCE_MARGIN};

/// Node 2 down, with one healthy task of `svc` on it and one on node 1.
fn one_task_on_a_down_node(svc: flotilla_types::Service) -> State {
    let mut down = node(2, 1000, 1000);
    down.status = NodeStatus::Down;
    let name = svc.spec.name.clone();
    state(
        vec![svc],
        vec![node(1, 1000, 1000), down, node(3, 1000, 1000)],
        vec![
            task(&name, 0, 1, Some(1), TaskState::Healthy),
            task(&name, 1, 2, Some(2), TaskState::Healthy),
        ],
    )
}

fn silent(node: u64, for_: Duration) -> Silence {
    Silence {
        quiet_for: [(node, for_)].into_iter().collect(),
        default_stop_after: Duration::from_secs(3),
    }
}

#[test]
fn a_fenced_task_on_a_down_node_waits_for_stop_after_plus_grace_plus_margin() {
    let s = one_task_on_a_down_node(fenced_service("db", 2, "stop_after: 5s\nstop_grace: 2s\n"));
    let wait = Duration::from_secs(5 + 2) + FENCE_MARGIN;
    let early = silent(2, wait - Duration::from_millis(1));
    let view = ClusterView::of(&s).with_silence(&early);
    let p = plan(&view, &[], 0);
    assert!(p.lost.is_empty() && p.create.is_empty(), "replaced too early: {p:?}");
    assert_eq!(fence_waits(&view), vec![(2, Duration::from_millis(1))]);

    let due = silent(2, wait);
    let p = plan(&ClusterView::of(&s).with_silence(&due), &[], 0);
    assert_eq!(p.lost, vec!["db.1.2".to_string()]);
    assert_eq!(p.create.len(), 1, "{p:?}");
    assert_ne!(p.create[0].node, Some(2), "not back on the down node");
}

#[test]
fn the_default_stop_after_is_the_clusters() {
    let s = one_task_on_a_down_node(fenced_service("db", 2, "stop_grace: 1s\n"));
    // 3 s default + 1 s grace + margin.
    let wait = Duration::from_secs(4) + FENCE_MARGIN;
    let p = plan(
        &ClusterView::of(&s).with_silence(&silent(2, wait - Duration::from_millis(10))),
        &[],
        0,
    );
    assert!(p.lost.is_empty(), "{p:?}");
    let p = plan(&ClusterView::of(&s).with_silence(&silent(2, wait)), &[], 0);
    assert_eq!(p.lost.len(), 1);
}

#[test]
fn a_replace_service_is_replaced_at_once_and_a_declared_dead_node_skips_the_wait() {
    let s = one_task_on_a_down_node(service("web", 2));
    let p = plan(&ClusterView::of(&s).with_silence(&silent(2, Duration::ZERO)), &[], 0);
    assert_eq!(p.lost, vec!["web.1.2".to_string()], "replace: no wait");

    let mut s = one_task_on_a_down_node(fenced_service("db", 2, "stop_after: 1h\n"));
    let view = ClusterView::of(&s);
    assert!(plan(&view, &[], 0).lost.is_empty(), "no silence known: it waits");
    s.nodes.get_mut(&2).unwrap().declared_dead = true;
    let p = plan(&ClusterView::of(&s), &[], 0);
    assert_eq!(p.lost, vec!["db.1.2".to_string()], "declared dead: no wait");
    assert_eq!(p.create.len(), 1);
}

#[test]
fn a_fenced_slot_gets_its_new_task_only_once_the_old_one_has_stopped() {
    // A task asked to stop (say, its node drains) that has not stopped yet.
    let mut s = state(
        vec![fenced_service("db", 1, "")],
        vec![node(1, 1000, 1000), node(2, 1000, 1000)],
        vec![task("db", 0, 1, Some(1), TaskState::Running)],
    );
    s.nodes.get_mut(&1).unwrap().availability = flotilla_types::Availability::Drain;
    let p = plan(&ClusterView::of(&s), &[], 0);
    assert_eq!(p.stop, vec![("db.0.1".to_string(), StopReason::Drained)]);
    assert!(p.create.is_empty(), "no second copy while the first runs: {p:?}");

    // Still stopping: nothing yet.
    let t = s.tasks.get_mut("db.0.1").unwrap();
    t.desired = DesiredState::Shutdown;
    t.stop_reason = Some(StopReason::Drained);
    let p = plan(&ClusterView::of(&s), &[], 0);
    assert!(p.create.is_empty(), "{p:?}");

    // Stopped: the replacement comes, on the other node.
    s.tasks.get_mut("db.0.1").unwrap().state = TaskState::Stopped;
    let p = plan(&ClusterView::of(&s), &[], 0);
    assert_eq!(p.create.len(), 1, "{p:?}");
    assert_eq!(p.create[0].node, Some(2));
}

#[test]
fn a_fenced_service_rebalances_stop_first() {
    let tasks = (0..6)
        .map(|slot| {
            task(
                "db",
                slot,
                slot as u64 + 1,
                Some(1 + (slot as u64 % 2)),
                TaskState::Healthy,
            )
        })
        .collect();
    let s = state(
        vec![fenced_service("db", 6, "")],
        vec![
            node(1, 100_000, 100_000),
            node(2, 100_000, 100_000),
            node(3, 100_000, 100_000),
        ],
        tasks,
    );
    let p = plan(&ClusterView::of(&s), &[], 600_000);
    assert_eq!(p.stop.len(), 1, "{p:?}");
    assert_eq!(p.stop[0].1, StopReason::Rebalanced);
    assert!(p.create.is_empty(), "the copy waits for the task to stop: {p:?}");
}

#[test]
fn a_task_its_node_fenced_is_replaced_like_a_lost_one() {
    let mut s = state(
        vec![fenced_service("db", 1, "restart:\n  condition: never\n")],
        vec![node(1, 1000, 1000), node(2, 1000, 1000)],
        vec![task("db", 0, 1, Some(1), TaskState::Stopped)],
    );
    let t = s.tasks.get_mut("db.0.1").unwrap();
    t.desired = DesiredState::Shutdown;
    t.stop_reason = Some(StopReason::Fenced);
    t.attempt = 2;
    let p = plan(&ClusterView::of(&s), &[], 0);
    assert_eq!(
        p.create.len(),
        1,
        "not the workload's failure, whatever the restart policy: {p:?}"
    );
    assert_eq!(p.create[0].attempt, 2);
}
