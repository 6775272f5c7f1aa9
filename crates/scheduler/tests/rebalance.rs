//! Rebalancing: a settled service spread unevenly beyond one task per node is evened
//! out one start-first, health-gated move at a time (at most `MOVES_IN_FLIGHT` in the
//! cluster), never where the move would not help.

mod common;

use common::{node, service, state, task};
use flotilla_scheduler::{plan, ClusterView, FAILED_MOVE_PAUSE, MOVES_IN_FLIGHT};
use flotilla_types::{NewTask, Service, State, StopReason, Task, TaskState};

/// Long after every task started: each passed `monitor`.
const LATER: u64 = 600_000;

/// `per_node[i]` healthy tasks of `name` on node `i + 1`, slots numbered in node order.
fn spread(name: &str, per_node: &[u32], seq: &mut u64) -> Vec<Task> {
    let mut tasks = Vec::new();
    let mut slot = 0;
    for (i, n) in per_node.iter().enumerate() {
        for _ in 0..*n {
            *seq += 1;
            tasks.push(task(name, slot, *seq, Some(i as u64 + 1), TaskState::Healthy));
            slot += 1;
        }
    }
    tasks
}

fn three_nodes_with(services: Vec<Service>, tasks: Vec<Task>) -> State {
    state(
        services,
        vec![
            node(1, 100_000, 100_000),
            node(2, 100_000, 100_000),
            node(3, 100_000, 100_000),
        ],
        tasks,
    )
}

fn moves(p: &flotilla_types::PlanUpdate) -> Vec<&NewTask> {
    p.create.iter().filter(|c| c.rebalanced_from.is_some()).collect()
}

#[test]
fn a_settled_uneven_service_moves_one_task_from_the_fullest_node_to_the_emptiest() {
    let mut seq = 0;
    let s = three_nodes_with(vec![service("web", 6)], spread("web", &[3, 3, 0], &mut seq));
    let p = plan(&ClusterView::of(&s), &[], LATER);
    let m = moves(&p);
    assert_eq!(m.len(), 1, "{p:?}");
    // The fullest node: the highest id among equals; its highest slot.
    assert_eq!(m[0].rebalanced_from, Some(2));
    assert_eq!(m[0].slot, 5);
    assert_eq!(m[0].node, Some(3));
    assert!(m[0].start_first, "a move starts beside the task it replaces");
    assert_eq!(m[0].spec_version, 1);
    assert!(
        m[0].message.contains("rebalance: moving from node 2"),
        "{}",
        m[0].message
    );
    assert!(p.stop.is_empty(), "nothing stops before the copy proved itself: {p:?}");
}

#[test]
fn a_spread_within_one_task_per_node_stays() {
    let mut seq = 0;
    let s = three_nodes_with(vec![service("web", 5)], spread("web", &[2, 2, 1], &mut seq));
    assert!(moves(&plan(&ClusterView::of(&s), &[], LATER)).is_empty());
}

#[test]
fn rebalance_false_keeps_the_spread() {
    let mut seq = 0;
    let mut svc = service("web", 6);
    svc.spec.rebalance = false;
    let s = three_nodes_with(vec![svc], spread("web", &[3, 3, 0], &mut seq));
    assert!(moves(&plan(&ClusterView::of(&s), &[], LATER)).is_empty());
}

#[test]
fn an_unsettled_service_does_not_move() {
    let mut seq = 0;
    let s = three_nodes_with(vec![service("web", 6)], spread("web", &[3, 3, 0], &mut seq));
    // Just started: no task passed `monitor` (5 s) yet.
    assert!(moves(&plan(&ClusterView::of(&s), &[], 1_000)).is_empty());
}

#[test]
fn the_old_task_stops_only_once_its_copy_passed_monitor_and_then_as_rebalanced() {
    let mut seq = 0;
    let mut tasks = spread("web", &[3, 3, 0], &mut seq);
    let mut copy = task("web", 5, 100, Some(3), TaskState::Healthy);
    copy.rebalanced_from = Some(2);
    copy.state_since = LATER - 1_000;
    tasks.push(copy.clone());
    let s = three_nodes_with(vec![service("web", 6)], tasks.clone());
    let p = plan(&ClusterView::of(&s), &[], LATER);
    assert!(p.stop.is_empty() && p.create.is_empty(), "copy not proven yet: {p:?}");

    // Five seconds on (the default monitor), the copy has served long enough.
    let p = plan(&ClusterView::of(&s), &[], LATER + 5_000);
    assert_eq!(p.stop, vec![("web.5.6".to_string(), StopReason::Rebalanced)]);
    // That move is done; the next one (node 1 still holds three) may begin.
    let m = moves(&p);
    assert_eq!(m.len(), 1, "{p:?}");
    assert_eq!((m[0].rebalanced_from, m[0].node), (Some(1), Some(3)));
}

#[test]
fn at_most_two_moves_run_in_the_whole_cluster() {
    let mut seq = 0;
    let names = ["a", "b", "c"];
    let tasks = names.iter().flat_map(|n| spread(n, &[2, 2, 0], &mut seq)).collect();
    let s = three_nodes_with(names.iter().map(|n| service(n, 4)).collect(), tasks);
    let p = plan(&ClusterView::of(&s), &[], LATER);
    assert_eq!(moves(&p).len(), MOVES_IN_FLIGHT, "{p:?}");
}

#[test]
fn a_move_that_cannot_land_on_a_better_node_is_not_made() {
    let mut seq = 0;
    let mut svc = service("web", 6);
    svc.spec.placement.constraints = vec!["zone == a".into()];
    let mut s = three_nodes_with(vec![svc], spread("web", &[3, 3, 0], &mut seq));
    // Only nodes 1 and 2 are in zone a: the spread over them is even.
    for id in [1, 2] {
        s.nodes.get_mut(&id).unwrap().labels.insert("zone".into(), "a".into());
    }
    assert!(moves(&plan(&ClusterView::of(&s), &[], LATER)).is_empty());
    // Node 3 full: the copy could only go back to node 1 or 2, which does not help.
    let mut seq = 0;
    let mut s = three_nodes_with(vec![service("web", 6)], spread("web", &[3, 3, 0], &mut seq));
    s.nodes.get_mut(&3).unwrap().capacity.memory_mb = 10;
    assert!(moves(&plan(&ClusterView::of(&s), &[], LATER)).is_empty());
}

#[test]
fn a_copy_that_fails_is_given_up_the_old_task_stays_and_no_move_follows_for_a_while() {
    let mut seq = 0;
    let mut tasks = spread("web", &[3, 3, 0], &mut seq);
    let mut copy = task("web", 5, 100, Some(3), TaskState::Failed);
    copy.rebalanced_from = Some(2);
    copy.updated_at = LATER;
    tasks.push(copy);
    let s = three_nodes_with(vec![service("web", 6)], tasks);
    let p = plan(&ClusterView::of(&s), &[], LATER + 1_000);
    assert!(p.stop.is_empty(), "the old task stays: {p:?}");
    assert!(p.create.is_empty(), "no replacement, no new move: {p:?}");
    // After the pause, the next move.
    let p = plan(&ClusterView::of(&s), &[], LATER + FAILED_MOVE_PAUSE + 1);
    assert_eq!(moves(&p).len(), 1, "{p:?}");
}

#[test]
fn rollout_status_lists_a_move_until_its_copy_took_over() {
    let mut seq = 0;
    let mut tasks = spread("web", &[3, 3, 0], &mut seq);
    let mut copy = task("web", 5, seq + 1, Some(3), TaskState::Starting);
    copy.rebalanced_from = Some(2);
    copy.message = "rebalance: moving from node 2 (3 tasks of web there, 0 on node 3)".into();
    tasks.push(copy.clone());
    let s = three_nodes_with(vec![service("web", 6)], tasks);
    let svc = &s.services["web"];
    let r = flotilla_scheduler::rollout_report(svc, s.tasks.values(), LATER);
    assert_eq!(r.moves.len(), 1, "{r:?}");
    let m = &r.moves[0];
    assert_eq!((m.slot, m.from, m.to), (5, 2, Some(3)));
    assert_eq!((m.task.as_str(), m.state.as_str()), (copy.id.as_str(), "starting"));
    assert!(m.reason.contains("rebalance: moving from node 2"), "{}", m.reason);

    // The copy is healthy and the task it moved has stopped: the move is over.
    let mut s = s;
    for t in s.tasks.values_mut().filter(|t| t.slot == 5) {
        if t.id == copy.id {
            t.state = TaskState::Healthy;
        } else {
            t.desired = flotilla_types::DesiredState::Shutdown;
            t.state = TaskState::Stopped;
        }
    }
    let r = flotilla_scheduler::rollout_report(&s.services["web"], s.tasks.values(), LATER);
    assert!(r.moves.is_empty(), "{r:?}");
}
