//! Rebalancing: a service spread unevenly beyond one task per node (a node came back,
//! joined, or was activated after the work was placed) is evened out, one move at a time
//! per service and at most [`MOVES_IN_FLIGHT`] in the whole cluster. A move is a
//! start-first copy of one slot's task (same version) on a node with fewer of the
//! service's tasks; the old task is stopped (reason `rebalanced`) only once the copy has
//! passed the service's `monitor`, so the service never has fewer serving tasks than
//! before the move began. A copy that fails is given up and the old task stays.
//!
//! Only a settled service moves: every slot done at the current version, no rollout
//! active, no move of its own failed within [`FAILED_MOVE_PAUSE`]. `rebalance: false` in
//! the spec turns it off for the service. `plan` drops a move whose copy would not land
//! on a node with at least two tasks fewer than the one it leaves (constraints, ports or
//! resources may forbid the better node), so a spread the nodes cannot improve never
//! churns.

use std::collections::{BTreeMap, HashMap};

use flotilla_types::{
    Availability, Constraint, DesiredState, Millis, NewTask, NodeId, NodeStatus, PlanUpdate, Service, StopReason, Task,
    TaskState,
};

use crate::reconcile::new_task;
use crate::rollout::{passed_monitor, SlotProgress};
use crate::view::ClusterView;

/// Moves under way at once in the whole cluster (a move ends when its copy passed
/// `monitor`).
pub const MOVES_IN_FLIGHT: usize = 2;

/// After a copy of this service failed, no new move of it for this long.
pub const FAILED_MOVE_PAUSE: Millis = 60_000;

/// Moves under way now: copies made by a rebalance that have not passed `monitor` yet.
pub(crate) fn moves_in_flight(view: &ClusterView<'_>, now: Millis) -> usize {
    view.tasks
        .values()
        .filter(|t| {
            t.rebalanced_from.is_some()
                && t.desired == DesiredState::Running
                && !t.state.is_terminal()
                && view
                    .services
                    .get(&t.service)
                    .is_some_and(|svc| passed_monitor(svc, t, now).is_none())
        })
        .count()
}

/// Starts one move of `svc` when it is settled and spread unevenly, if the cluster has
/// room for another move (`in_flight`, counted up here).
pub(crate) fn rebalance<'a>(
    view: &ClusterView<'_>,
    svc: &Service,
    slots: &[SlotProgress<'a>],
    tasks: impl Iterator<Item = &'a Task>,
    now: Millis,
    in_flight: &mut usize,
    plan: &mut PlanUpdate,
) {
    if !svc.spec.rebalance || *in_flight >= MOVES_IN_FLIGHT || slots.is_empty() {
        return;
    }
    if svc.rollout.as_ref().is_some_and(|r| r.phase.is_active()) {
        return;
    }
    let mut current: Vec<&Task> = Vec::with_capacity(slots.len());
    for slot in slots {
        match slot {
            SlotProgress::Done { task, .. } if task.spec_version == svc.template_version => current.push(task),
            _ => return,
        }
    }
    // A copy that failed lately: the node it went to may be unfit; wait before the next.
    let failed_lately = tasks.into_iter().any(|t| {
        t.rebalanced_from.is_some()
            && (matches!(t.state, TaskState::Failed | TaskState::Exited | TaskState::Unhealthy)
                || t.stop_reason == Some(StopReason::Unhealthy))
            && now.saturating_sub(t.updated_at) < FAILED_MOVE_PAUSE
    });
    if failed_lately {
        return;
    }
    let counts = eligible_counts(view, svc, &current);
    let (Some((&from, &most)), Some((&to, &fewest))) = (
        // The fullest node (the highest id among equals), the emptiest (the lowest id).
        counts.iter().max_by_key(|(id, n)| (**n, **id)),
        counts.iter().min_by_key(|(id, n)| (**n, std::cmp::Reverse(**id))),
    ) else {
        return;
    };
    if most < fewest + 2 {
        return;
    }
    // The highest slot on the fullest node moves.
    let Some(task) = current.iter().filter(|t| t.node == Some(from)).max_by_key(|t| t.slot) else {
        return;
    };
    // A fenced service moves stop-first: its copy starts once the task has stopped.
    let stop_first = svc.spec.fenced();
    if stop_first {
        plan.stop.push((task.id.clone(), StopReason::Rebalanced));
    }
    let mut copy: NewTask = new_task(&svc.spec.name, task.slot, task.spec_version, task.attempt, !stop_first);
    copy.rebalanced_from = Some(from);
    copy.message = format!(
        "rebalance: moving from node {from} ({most} tasks of {} there, {fewest} on node {to})",
        svc.spec.name
    );
    plan.create.push(copy);
    *in_flight += 1;
}

/// Tasks of the service on each node that may take them (ready, active, matching the
/// constraints), nodes with none included.
fn eligible_counts(view: &ClusterView<'_>, svc: &Service, current: &[&Task]) -> BTreeMap<NodeId, u32> {
    let constraints: Vec<Constraint> = svc
        .spec
        .placement
        .constraints
        .iter()
        .filter_map(|c| Constraint::parse(c).ok())
        .collect();
    let mut counts: BTreeMap<NodeId, u32> = view
        .nodes
        .values()
        .filter(|n| {
            n.status == NodeStatus::Ready
                && n.availability == Availability::Active
                && constraints.iter().all(|c| c.matches(&n.labels))
        })
        .map(|n| (n.id, 0))
        .collect();
    for t in current {
        if let Some(n) = t.node.and_then(|n| counts.get_mut(&n)) {
            *n += 1;
        }
    }
    counts
}

/// Whether a placed move improves the spread: its copy landed on a node holding at least
/// two tasks of the service fewer than the node it leaves. Counted over the tasks meant
/// to run before this plan.
pub(crate) fn improves(view: &ClusterView<'_>, copy: &NewTask) -> bool {
    let (Some(from), Some(to)) = (copy.rebalanced_from, copy.node) else {
        return false;
    };
    let mut counts: HashMap<NodeId, u32> = HashMap::new();
    for t in view.tasks.values() {
        if t.service == copy.service && t.desired == DesiredState::Running && !t.state.is_terminal() {
            if let Some(n) = t.node {
                *counts.entry(n).or_default() += 1;
            }
        }
    }
    let at = |n: NodeId| counts.get(&n).copied().unwrap_or(0);
    to != from && at(to) + 2 <= at(from)
}
