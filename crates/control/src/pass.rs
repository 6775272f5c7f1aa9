//! One scheduling pass: one immutable view in, one `PlanUpdate` out.

use std::collections::BTreeMap;

use flotilla_scheduler::{place, reconcile, Action, ClusterView, PendingTask};
use flotilla_types::{DesiredState, Millis, NewTask, Node, NodeId, NodeStatus, PlanUpdate, State, TaskState};

/// Computes the pass for `state` at `now`, treating `down` as down. Pure.
pub fn plan_pass(state: &State, down: &[NodeId], now: Millis) -> PlanUpdate {
    let mut nodes: BTreeMap<NodeId, Node> = state.nodes.clone();
    let mut update = PlanUpdate::default();
    for id in down {
        if let Some(n) = nodes.get_mut(id) {
            if n.status == NodeStatus::Ready {
                n.status = NodeStatus::Down;
                update.nodes_down.push(*id);
            }
        }
    }
    let view = ClusterView {
        services: &state.services,
        tasks: &state.tasks,
        nodes: &nodes,
    };

    let mut creates = Vec::new();
    let mut stopped = std::collections::HashSet::new();
    for action in reconcile(&view, now) {
        match action {
            Action::Create {
                service,
                slot,
                spec_version,
                attempt,
                start_first,
            } => creates.push(NewTask {
                service,
                slot,
                spec_version,
                attempt,
                node: None,
                message: String::new(),
                start_first,
            }),
            Action::Rollout(change) => update.rollouts.push(change),
            Action::Stop { task, reason } => {
                stopped.insert(task.clone());
                update.stop.push((task, reason));
            }
            Action::MarkLost { task } => update.lost.push(task),
            Action::Remove { task } => update.remove.push(task),
        }
    }

    // Existing pending tasks are placed together with the new ones.
    let waiting: Vec<&flotilla_types::Task> = state
        .tasks
        .values()
        .filter(|t| t.state == TaskState::Pending && t.desired == DesiredState::Running && !stopped.contains(&t.id))
        .collect();
    let mut pending: Vec<PendingTask> = waiting
        .iter()
        .map(|t| PendingTask {
            service: t.service.clone(),
            cpu_millis: t.cpu_millis,
            memory_mb: t.memory_mb,
        })
        .collect();
    for c in &creates {
        let (cpu_millis, memory_mb) = state.services.get(&c.service).map_or((0, 0), |s| {
            let r = s.spec_at(c.spec_version).resources;
            (r.cpu_millis, r.memory_mb)
        });
        pending.push(PendingTask {
            service: c.service.clone(),
            cpu_millis,
            memory_mb,
        });
    }
    let plan = place(&view, &pending);
    let (old, new) = plan.placements.split_at(waiting.len());
    for (t, placement) in waiting.iter().zip(old) {
        match placement {
            Ok(node) => update.assign.push((t.id.clone(), *node)),
            Err(why) => {
                let why = why.to_string();
                if why != t.message {
                    update.unplaced.push((t.id.clone(), why));
                }
            }
        }
    }
    for (mut c, placement) in creates.into_iter().zip(new) {
        match placement {
            Ok(node) => c.node = Some(*node),
            Err(why) => c.message = why.to_string(),
        }
        update.create.push(c);
    }
    update
}
