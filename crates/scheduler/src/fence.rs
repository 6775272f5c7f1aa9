//! `on_disconnect: fence`: never two running copies of a slot. A cut-off node stops such
//! a task itself after `stop_after` without an acknowledged heartbeat; the leader
//! replaces it only after `stop_after` + its stop grace + a margin since it last heard
//! from the node (`ServiceSpec::replace_after`), or at once when an operator declared
//! the node dead. Within the cluster the same rule holds: a fenced service's new task
//! for a slot is created only once no other task of that slot may still run.

use std::collections::HashSet;
use std::time::Duration;

use flotilla_types::{NodeId, NodeStatus, PlanUpdate, Task};

use crate::view::ClusterView;

/// How much longer the leader must wait before it may replace `t` because its node is
/// down; `None` when it may now (not fenced, declared dead, or waited long enough).
pub fn wait_left(view: &ClusterView<'_>, t: &Task) -> Option<Duration> {
    let svc = view.services.get(&t.service)?;
    let spec = svc.spec_at(t.spec_version);
    if !spec.fenced() {
        return None;
    }
    let node_id = t.node?;
    let node = view.nodes.get(&node_id)?;
    if node.declared_dead || node.status != NodeStatus::Down {
        return None;
    }
    let wait = spec.replace_after(view.silence.default_stop_after);
    let quiet = view.silence.quiet_for.get(&node_id).copied().unwrap_or_default();
    (quiet < wait).then(|| wait - quiet)
}

/// For the leader's wake-up: the fenced tasks on down nodes still waiting, as the node
/// and how long until the first of them may be replaced.
pub fn fence_waits(view: &ClusterView<'_>) -> Vec<(NodeId, Duration)> {
    view.tasks
        .values()
        .filter(|t| !t.state.is_terminal())
        .filter_map(|t| Some((t.node?, wait_left(view, t)?)))
        .collect()
}

/// Drops the new tasks of fenced services whose slot still has a task that may be
/// running (asked to stop but not stopped yet, or on a node not known to have stopped
/// it): they are created on a later pass, once it has stopped. A move that drops its
/// copy this way is made stop-first by `rebalance`.
pub(crate) fn hold_second_copies(view: &ClusterView<'_>, plan: &mut PlanUpdate) {
    let lost: HashSet<&str> = plan.lost.iter().map(String::as_str).collect();
    let live: HashSet<(&str, u32)> = view
        .tasks
        .values()
        .filter(|t| !t.state.is_terminal() && !lost.contains(t.id.as_str()) && t.node.is_some())
        .map(|t| (t.service.as_str(), t.slot))
        .collect();
    plan.create.retain(|c| {
        let fenced = view
            .services
            .get(&c.service)
            .is_some_and(|s| s.spec_at(c.spec_version).fenced());
        !(fenced && live.contains(&(c.service.as_str(), c.slot)))
    });
}
