//! `plan`: one scheduling pass. Everything the leader decides from one view — nodes to
//! mark down, what `reconcile` changes, and a node (or the reason there is none) for every
//! new task and every pending task still waiting — in the `PlanUpdate` it proposes as one
//! `ApplyPlan`.

use std::collections::{BTreeMap, HashSet};

use flotilla_types::{
    DesiredState, Millis, NewTask, Node, NodeId, NodeStatus, PlanUpdate, StopReason, Task, TaskState,
};

use crate::place::{place, PendingTask};
use crate::reconcile::reconcile;
use crate::view::ClusterView;

/// A task that needs a node in this pass; its placement is written back to it.
enum Seat<'a> {
    /// Pending since an earlier pass.
    Waiting(&'a Task),
    /// Created by this pass.
    New(&'a mut NewTask),
}

/// The pass for `view` at `now`, with the `down` nodes (silent too long, by the leader's
/// clock) taken as down: the ready ones among them are marked down, and their tasks lost
/// and replaced elsewhere in the same plan.
pub fn plan(view: &ClusterView<'_>, down: &[NodeId], now: Millis) -> PlanUpdate {
    let mut nodes: BTreeMap<NodeId, Node> = view.nodes.clone();
    let mut nodes_down = Vec::new();
    for id in down {
        if let Some(n) = nodes.get_mut(id).filter(|n| n.status == NodeStatus::Ready) {
            n.status = NodeStatus::Down;
            nodes_down.push(*id);
        }
    }
    let view = ClusterView { nodes: &nodes, ..*view };
    let mut plan = reconcile(&view, now);
    plan.nodes_down = nodes_down;

    // Waiting tasks go first, then the new ones, all in one call: they share the nodes.
    let stopped: HashSet<&str> = plan.stop.iter().map(|(id, _)| id.as_str()).collect();
    let waiting = view
        .tasks
        .values()
        .filter(|t| {
            t.state == TaskState::Pending && t.desired == DesiredState::Running && !stopped.contains(t.id.as_str())
        })
        .map(|t| {
            let need = PendingTask {
                service: t.service.clone(),
                cpu_millis: t.cpu_millis,
                memory_mb: t.memory_mb,
            };
            (Seat::Waiting(t), need)
        });
    let new = plan.create.iter_mut().map(|c| {
        let (cpu_millis, memory_mb) = view.services.get(&c.service).map_or((0, 0), |s| {
            let r = s.spec_at(c.spec_version).resources;
            (r.cpu_millis, r.memory_mb)
        });
        let need = PendingTask {
            service: c.service.clone(),
            cpu_millis,
            memory_mb,
        };
        (Seat::New(c), need)
    });
    let (seats, pending): (Vec<Seat>, Vec<PendingTask>) = waiting.chain(new).unzip();

    for (seat, placement) in seats.into_iter().zip(place(&view, &pending).placements) {
        match (seat, placement) {
            (Seat::Waiting(t), Ok(node)) => plan.assign.push((t.id.clone(), node)),
            (Seat::Waiting(t), Err(why)) => {
                let why = why.to_string();
                // Rewriting the same reason would be a Raft write every pass for nothing.
                if why != t.message {
                    plan.unplaced.push((t.id.clone(), why));
                }
            }
            (Seat::New(c), Ok(node)) => c.node = Some(node),
            (Seat::New(c), Err(why)) => c.message = why.to_string(),
        }
    }
    // A move whose copy found no better node is not made (see `rebalance`); a
    // stop-first move (a fenced service's) keeps its task then.
    let mut unmoved = HashSet::new();
    plan.create.retain(|c| {
        let keep = c.rebalanced_from.is_none() || crate::rebalance::improves(&view, c);
        if !keep {
            unmoved.insert((c.service.clone(), c.slot));
        }
        keep
    });
    plan.stop.retain(|(id, reason)| {
        *reason != StopReason::Rebalanced
            || view
                .tasks
                .get(id)
                .is_none_or(|t| !unmoved.contains(&(t.service.clone(), t.slot)))
    });
    crate::fence::hold_second_copies(&view, &mut plan);
    plan
}
