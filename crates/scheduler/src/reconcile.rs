//! `reconcile`: compares desired state (services and their replica slots) with the tasks
//! that exist and returns what to change. Slot `s` of a service is filled by its newest
//! task (highest `seq`); older tasks of the slot are history.

use std::collections::{BTreeMap, HashSet};

use flotilla_types::{
    Availability, DesiredState, Millis, NodeStatus, RestartCondition, RestartPolicy, Service, StopReason, Task,
    TaskState,
};

use crate::view::ClusterView;

/// Finished tasks kept per slot, besides the current one, for `describe`.
pub const HISTORY_PER_SLOT: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// A new task for a slot; it still needs a node (`place`).
    Create {
        service: String,
        slot: u32,
        spec_version: u64,
        attempt: u32,
    },
    Stop {
        task: String,
        reason: StopReason,
    },
    /// The task's node is down: the task is gone as far as anyone knows.
    MarkLost {
        task: String,
    },
    /// Drop a finished task from the state.
    Remove {
        task: String,
    },
}

/// Delay before restart number `attempt + 1`: `delay * 2^attempt`, capped at `max_delay`.
pub fn backoff(policy: &RestartPolicy, attempt: u32) -> Millis {
    let base = policy.delay.as_millis();
    base.saturating_mul(1u64 << attempt.min(32))
        .min(policy.max_delay.as_millis())
}

pub fn reconcile(view: &ClusterView<'_>, now: Millis) -> Vec<Action> {
    let mut actions = Vec::new();
    let node_down = |t: &Task| {
        t.node
            .is_some_and(|n| view.nodes.get(&n).is_none_or(|node| node.status == NodeStatus::Down))
    };
    let mut lost: HashSet<&str> = HashSet::new();
    for t in view.tasks.values() {
        if !t.state.is_terminal() && node_down(t) {
            lost.insert(&t.id);
            actions.push(Action::MarkLost { task: t.id.clone() });
        }
    }
    let finished = |t: &Task| t.state.is_terminal() || lost.contains(t.id.as_str());

    // service -> slot -> tasks by seq.
    let mut by_service: BTreeMap<&str, BTreeMap<u32, Vec<&Task>>> = BTreeMap::new();
    for t in view.tasks.values() {
        by_service
            .entry(t.service.as_str())
            .or_default()
            .entry(t.slot)
            .or_default()
            .push(t);
    }
    for slots in by_service.values_mut() {
        for tasks in slots.values_mut() {
            tasks.sort_by_key(|t| t.seq);
        }
    }

    for (name, slots) in &by_service {
        let Some(svc) = view.services.get(*name) else {
            for t in slots.values().flatten() {
                stop_or_forget(t, StopReason::ServiceDeleted, &finished, &mut actions);
            }
            continue;
        };
        for (slot, tasks) in slots {
            if *slot >= svc.spec.replicas {
                for t in tasks {
                    stop_or_forget(t, StopReason::ScaleDown, &finished, &mut actions);
                }
            }
        }
    }

    for (name, svc) in view.services {
        let slots = by_service.get(name.as_str());
        for slot in 0..svc.spec.replicas {
            let tasks: &[&Task] = slots.and_then(|s| s.get(&slot)).map_or(&[], Vec::as_slice);
            reconcile_slot(view, svc, slot, tasks, now, &finished, &mut actions);
        }
    }
    actions
}

/// For a task whose slot should no longer run: stop it if it runs, forget it once done.
fn stop_or_forget(t: &Task, reason: StopReason, finished: &impl Fn(&Task) -> bool, actions: &mut Vec<Action>) {
    if finished(t) {
        actions.push(Action::Remove { task: t.id.clone() });
    } else if t.desired == DesiredState::Running {
        actions.push(Action::Stop {
            task: t.id.clone(),
            reason,
        });
    }
}

fn reconcile_slot(
    view: &ClusterView<'_>,
    svc: &Service,
    slot: u32,
    tasks: &[&Task],
    now: Millis,
    finished: &impl Fn(&Task) -> bool,
    actions: &mut Vec<Action>,
) {
    let create = |attempt: u32| Action::Create {
        service: svc.spec.name.clone(),
        slot,
        spec_version: svc.template_version,
        attempt,
    };
    let Some((latest, older)) = tasks.split_last() else {
        actions.push(create(0));
        return;
    };

    // Defensive: a slot never keeps two live tasks; the newest wins.
    for t in older {
        if t.desired == DesiredState::Running && !finished(t) {
            actions.push(Action::Stop {
                task: t.id.clone(),
                reason: StopReason::Removed,
            });
        }
    }
    // History: keep the newest few finished tasks, forget the rest.
    let done: Vec<&&Task> = older.iter().filter(|t| finished(t)).collect();
    if done.len() > HISTORY_PER_SLOT {
        for t in &done[..done.len() - HISTORY_PER_SLOT] {
            actions.push(Action::Remove { task: t.id.clone() });
        }
    }

    let drained = latest
        .node
        .and_then(|n| view.nodes.get(&n))
        .is_some_and(|n| n.availability == Availability::Drain);

    if latest.desired == DesiredState::Running {
        if finished(latest) {
            if latest.state == TaskState::Lost || !latest.state.is_terminal() {
                // Lost with its node: not the workload's fault, replace at once.
                actions.push(create(latest.attempt));
            } else {
                restart_after_failure(svc, latest, now, actions, create);
            }
            return;
        }
        if latest.spec_version < svc.template_version {
            actions.push(Action::Stop {
                task: latest.id.clone(),
                reason: StopReason::Outdated,
            });
            actions.push(create(0));
        } else if drained && latest.state != TaskState::Pending {
            actions.push(Action::Stop {
                task: latest.id.clone(),
                reason: StopReason::Drained,
            });
            actions.push(create(latest.attempt));
        } else if latest.state == TaskState::Unhealthy {
            // Stopped now; its replacement follows the restart policy on a later pass.
            actions.push(Action::Stop {
                task: latest.id.clone(),
                reason: StopReason::Unhealthy,
            });
        }
        return;
    }

    // The newest task was asked to stop and nothing replaced it yet.
    match latest.stop_reason {
        Some(StopReason::Unhealthy) => restart_after_failure(svc, latest, now, actions, create),
        Some(StopReason::Drained) | Some(StopReason::NodeDown) | Some(StopReason::Removed) => {
            actions.push(create(latest.attempt))
        }
        _ => actions.push(create(0)),
    }
}

/// The restart policy for a slot whose task ended: maybe a new attempt, after backoff.
fn restart_after_failure(
    svc: &Service,
    latest: &Task,
    now: Millis,
    actions: &mut Vec<Action>,
    create: impl Fn(u32) -> Action,
) {
    let policy = &svc.spec.restart;
    let succeeded = latest.state == TaskState::Exited && latest.exit_code == Some(0);
    let wanted = match policy.condition {
        RestartCondition::Never => false,
        RestartCondition::OnFailure => !succeeded,
        RestartCondition::Always => true,
    };
    if !wanted {
        return;
    }
    if policy.max_attempts > 0 && latest.attempt >= policy.max_attempts {
        return;
    }
    let ready_at = latest.updated_at.saturating_add(backoff(policy, latest.attempt));
    if now >= ready_at {
        actions.push(create(latest.attempt + 1));
    }
}
