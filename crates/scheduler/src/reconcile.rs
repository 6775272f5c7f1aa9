//! `reconcile`: compares desired state (services and their replica slots) with the tasks
//! that exist and returns what to change. Slot `s` of a service is filled by its newest
//! task (highest `seq`); older tasks of the slot are history.

use std::collections::{BTreeMap, HashSet};

use flotilla_types::{
    Availability, DesiredState, Millis, NewTask, NodeStatus, PlanUpdate, RestartCondition, RestartPolicy, Service,
    StopReason, Task, TaskState,
};

use crate::rollout::{drive_rollout, in_state_since, is_serving, passed_monitor, SlotProgress};
use crate::view::ClusterView;

/// Finished tasks kept per slot, besides the current one, for `describe`.
pub const HISTORY_PER_SLOT: usize = 2;

/// A new task for a slot, without a node yet (`plan` places it).
pub(crate) fn new_task(service: &str, slot: u32, spec_version: u64, attempt: u32, start_first: bool) -> NewTask {
    NewTask {
        service: service.to_string(),
        slot,
        spec_version,
        attempt,
        node: None,
        message: String::new(),
        start_first,
        rebalanced_from: None,
    }
}

/// Delay before restart number `attempt + 1`: `delay * 2^attempt`, capped at `max_delay`.
pub fn backoff(policy: &RestartPolicy, attempt: u32) -> Millis {
    let base = policy.delay.as_millis();
    base.saturating_mul(1u64 << attempt.min(32))
        .min(policy.max_delay.as_millis())
}

/// What to change, as a plan whose new tasks have no node yet: `plan` places them and
/// the pending tasks that wait for one.
pub fn reconcile(view: &ClusterView<'_>, now: Millis) -> PlanUpdate {
    let mut plan = PlanUpdate::default();
    let node_down = |t: &Task| {
        t.node
            .is_some_and(|n| view.nodes.get(&n).is_none_or(|node| node.status == NodeStatus::Down))
    };
    let mut lost: HashSet<&str> = HashSet::new();
    for t in view.tasks.values() {
        if !t.state.is_terminal() && node_down(t) && crate::fence::wait_left(view, t).is_none() {
            lost.insert(&t.id);
            plan.lost.push(t.id.clone());
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
                stop_or_forget(t, StopReason::ServiceDeleted, &finished, &mut plan);
            }
            continue;
        };
        for (slot, tasks) in slots {
            if *slot >= svc.spec.replicas {
                for t in tasks {
                    stop_or_forget(t, StopReason::ScaleDown, &finished, &mut plan);
                }
            }
        }
    }

    let mut moves = crate::rebalance::moves_in_flight(view, now);
    for (name, svc) in view.services {
        let slots = by_service.get(name.as_str());
        let mut progress = Vec::with_capacity(svc.spec.replicas as usize);
        for slot in 0..svc.spec.replicas {
            let tasks: &[&Task] = slots.and_then(|s| s.get(&slot)).map_or(&[], Vec::as_slice);
            progress.push(reconcile_slot(view, svc, slot, tasks, now, &finished, &mut plan));
        }
        let service_tasks = || slots.into_iter().flat_map(|s| s.values().flatten().copied());
        drive_rollout(svc, &progress, service_tasks(), now, &mut plan);
        crate::rebalance::rebalance(view, svc, &progress, service_tasks(), now, &mut moves, &mut plan);
    }
    plan
}

/// For a task whose slot should no longer run: stop it if it runs, forget it once done.
fn stop_or_forget(t: &Task, reason: StopReason, finished: &impl Fn(&Task) -> bool, plan: &mut PlanUpdate) {
    if finished(t) {
        plan.remove.push(t.id.clone());
    } else if t.desired == DesiredState::Running {
        plan.stop.push((t.id.clone(), reason));
    }
}

/// The version a replacement of `t` (after a failure, a lost node, a drain) runs: the
/// current template, but for a task of another version while its rollout is paused —
/// a halted rollout must not spread a version through the back door.
fn replacement_version(svc: &Service, t: &Task) -> u64 {
    let halted = svc.rollout.as_ref().is_some_and(|r| !r.is_running());
    if t.spec_version != svc.template_version && halted && svc.template_revision(t.spec_version).is_some() {
        t.spec_version
    } else {
        svc.template_version
    }
}

/// The tasks of a slot this pass acts on.
struct SlotTasks<'a> {
    /// The task that fills the slot.
    current: &'a Task,
    /// An older task of another version still serving while a start-first replacement
    /// at the target comes up.
    outgoing: Option<&'a Task>,
    /// A start-first replacement caught by a rollback, being stopped.
    reverted: Option<&'a str>,
}

/// Keeps one slot filled and says where it stands for the rollout. Outdated tasks are
/// left to `drive_rollout`, which replaces them batch by batch.
fn reconcile_slot<'a>(
    view: &ClusterView<'_>,
    svc: &Service,
    slot: u32,
    tasks: &[&'a Task],
    now: Millis,
    finished: &impl Fn(&Task) -> bool,
    plan: &mut PlanUpdate,
) -> SlotProgress<'a> {
    let target = svc.template_version;
    let create = |spec_version: u64, attempt: u32, start_first: bool| {
        new_task(&svc.spec.name, slot, spec_version, attempt, start_first)
    };
    let Some(slot_tasks) = slot_tasks(tasks, target, finished, plan) else {
        plan.create.push(create(target, 0, false));
        return SlotProgress::Filling;
    };
    stop_extra_tasks(tasks, &slot_tasks, finished, plan);
    forget_old_history(tasks, slot_tasks.current, finished, plan);

    let SlotTasks { current, outgoing, .. } = slot_tasks;
    if completed(svc, current) {
        return complete_slot(svc, current, outgoing, plan);
    }
    let drained = current
        .node
        .and_then(|n| view.nodes.get(&n))
        .is_some_and(|n| n.availability == Availability::Drain);
    let beside = outgoing.is_some();

    if current.desired != DesiredState::Running || finished(current) {
        return replace_current(svc, current, now, beside, plan, &create);
    }
    running_slot(svc, current, outgoing, drained, now, plan, &create)
}

/// Which of a slot's tasks is current, and which older one may still serve beside it;
/// `None` for an empty slot.
fn slot_tasks<'a>(
    tasks: &[&'a Task],
    target: u64,
    finished: &impl Fn(&Task) -> bool,
    plan: &mut PlanUpdate,
) -> Option<SlotTasks<'a>> {
    // The newest task meant to run, else the newest of all.
    let newest = tasks
        .iter()
        .rev()
        .find(|t| t.desired == DesiredState::Running)
        .or_else(|| tasks.last())
        .copied()?;
    // A rebalancing copy that ended or was stopped before it took over: the move is
    // given up, and the task it was to replace stays the slot's.
    if newest.rebalanced_from.is_some() && (finished(newest) || newest.desired != DesiredState::Running) {
        if let Some(kept) = tasks.iter().rev().find(|t| {
            t.seq < newest.seq
                && t.desired == DesiredState::Running
                && !finished(t)
                && t.spec_version == newest.spec_version
        }) {
            return Some(SlotTasks {
                current: kept,
                outgoing: None,
                reverted: None,
            });
        }
    }
    // A start-first pair caught by a rollback: the older task runs the target again,
    // so it stays and its replacement goes.
    let mut reverted = None;
    let current = match tasks.iter().rev().find(|t| {
        t.seq < newest.seq
            && t.desired == DesiredState::Running
            && !finished(t)
            && t.spec_version == target
            && newest.spec_version != target
            && newest.desired == DesiredState::Running
    }) {
        Some(older) => {
            if !finished(newest) {
                plan.stop.push((newest.id.clone(), StopReason::Outdated));
            }
            reverted = Some(newest.id.as_str());
            *older
        }
        None => newest,
    };
    let outgoing = tasks
        .iter()
        .rev()
        .find(|t| {
            t.seq < current.seq
                && t.desired == DesiredState::Running
                && !finished(t)
                && ((t.spec_version != current.spec_version && current.spec_version == target)
                    // The task a rebalancing copy is moving off its node.
                    || (current.rebalanced_from.is_some() && t.spec_version == current.spec_version))
        })
        .copied();
    Some(SlotTasks {
        current,
        outgoing,
        reverted,
    })
}

/// Defensive: a slot never keeps another live task; the current one wins.
fn stop_extra_tasks(tasks: &[&Task], kept: &SlotTasks<'_>, finished: &impl Fn(&Task) -> bool, plan: &mut PlanUpdate) {
    for t in tasks {
        let extra = t.id != kept.current.id
            && kept.outgoing.is_none_or(|o| o.id != t.id)
            && kept.reverted != Some(t.id.as_str());
        if extra && t.desired == DesiredState::Running && !finished(t) {
            plan.stop.push((t.id.clone(), StopReason::Removed));
        }
    }
}

/// History: keep the newest few finished tasks, forget the rest.
fn forget_old_history(tasks: &[&Task], current: &Task, finished: &impl Fn(&Task) -> bool, plan: &mut PlanUpdate) {
    let done: Vec<&&Task> = tasks.iter().filter(|t| t.id != current.id && finished(t)).collect();
    if done.len() > HISTORY_PER_SLOT {
        for t in &done[..done.len() - HISTORY_PER_SLOT] {
            plan.remove.push(t.id.clone());
        }
    }
}

/// Whether `t` ran to completion: it exited with code 0 under a restart policy that does
/// not restart it (`never`, `on-failure`). Until flotilla has jobs, this is what a
/// run-to-completion task is: its slot is done, neither failed nor restarted.
pub(crate) fn completed(svc: &Service, t: &Task) -> bool {
    t.stop_reason == Some(StopReason::Completed)
        || (t.desired == DesiredState::Running
            && t.state == TaskState::Exited
            && t.exit_code == Some(0)
            && svc.spec_at(t.spec_version).restart.condition != RestartCondition::Always)
}

/// A slot whose task completed: the task is marked so (its node then removes the container
/// after a while), and the slot counts as done for a rollout of its version; a completed
/// task of an older version is outdated, so a new template runs again.
fn complete_slot<'a>(
    svc: &Service,
    current: &'a Task,
    outgoing: Option<&Task>,
    plan: &mut PlanUpdate,
) -> SlotProgress<'a> {
    if current.desired == DesiredState::Running {
        plan.stop.push((current.id.clone(), StopReason::Completed));
    }
    if let Some(old) = outgoing {
        plan.stop.push((old.id.clone(), StopReason::Outdated));
    }
    if current.spec_version != svc.template_version {
        return SlotProgress::Outdated {
            task: current,
            serving: false,
        };
    }
    SlotProgress::Done {
        task: current,
        at: in_state_since(current),
    }
}

/// The current task was asked to stop, or ended, and nothing replaced it yet: a
/// replacement now, or as the restart policy says.
fn replace_current<'a>(
    svc: &Service,
    current: &Task,
    now: Millis,
    beside: bool,
    plan: &mut PlanUpdate,
    create: &impl Fn(u64, u32, bool) -> NewTask,
) -> SlotProgress<'a> {
    let version = replacement_version(svc, current);
    let failed = if current.desired != DesiredState::Running {
        match current.stop_reason {
            Some(StopReason::Unhealthy) => true,
            Some(StopReason::Drained)
            | Some(StopReason::NodeDown)
            | Some(StopReason::Removed)
            | Some(StopReason::Fenced) => {
                plan.create.push(create(version, current.attempt, beside));
                false
            }
            _ => {
                plan.create.push(create(svc.template_version, 0, beside));
                false
            }
        }
    } else if current.state == TaskState::Lost || !current.state.is_terminal() {
        // Lost with its node: not the workload's fault, replace at once.
        plan.create.push(create(version, current.attempt, beside));
        false
    } else {
        true
    };
    if !failed {
        return SlotProgress::Filling;
    }
    let retrying = restart_after_failure(svc, current, now, plan, |a| create(version, a, beside));
    SlotProgress::Failed { retrying }
}

/// The current task is meant to run and has not ended: moved off a draining node,
/// stopped when unhealthy, else outdated (left to the rollout), updating, or done once it
/// passed `monitor` (and then the task it replaced may go).
fn running_slot<'a>(
    svc: &Service,
    current: &'a Task,
    outgoing: Option<&Task>,
    drained: bool,
    now: Millis,
    plan: &mut PlanUpdate,
    create: &impl Fn(u64, u32, bool) -> NewTask,
) -> SlotProgress<'a> {
    let outdated = current.spec_version != svc.template_version;
    if drained && current.state != TaskState::Pending {
        plan.stop.push((current.id.clone(), StopReason::Drained));
        plan.create.push(create(
            replacement_version(svc, current),
            current.attempt,
            outgoing.is_some(),
        ));
        return SlotProgress::Filling;
    }
    if current.state == TaskState::Unhealthy {
        plan.stop.push((current.id.clone(), StopReason::Unhealthy));
        if outdated {
            return SlotProgress::Filling;
        }
        // Stopped now; its replacement follows the restart policy on a later pass.
        return SlotProgress::Failed { retrying: true };
    }
    if outdated {
        return SlotProgress::Outdated {
            task: current,
            serving: is_serving(svc, current),
        };
    }
    match passed_monitor(svc, current, now) {
        Some(at) => {
            if let Some(old) = outgoing {
                // The replacement proved itself: the old task may go.
                let reason = if current.rebalanced_from.is_some() && old.spec_version == current.spec_version {
                    StopReason::Rebalanced
                } else {
                    StopReason::Outdated
                };
                plan.stop.push((old.id.clone(), reason));
            }
            SlotProgress::Done { task: current, at }
        }
        None => SlotProgress::Updating,
    }
}

/// The restart policy for a slot whose task ended: maybe a new attempt, after backoff.
/// Returns whether a restart is still to come (now or later).
fn restart_after_failure(
    svc: &Service,
    latest: &Task,
    now: Millis,
    plan: &mut PlanUpdate,
    create: impl Fn(u32) -> NewTask,
) -> bool {
    let policy = &svc.spec.restart;
    let succeeded = latest.state == TaskState::Exited && latest.exit_code == Some(0);
    let wanted = match policy.condition {
        RestartCondition::Never => false,
        RestartCondition::OnFailure => !succeeded,
        RestartCondition::Always => true,
    };
    if !wanted {
        return false;
    }
    if policy.max_attempts > 0 && latest.attempt >= policy.max_attempts {
        return false;
    }
    let ready_at = latest.updated_at.saturating_add(backoff(policy, latest.attempt));
    if now >= ready_at {
        plan.create.push(create(latest.attempt + 1));
    }
    true
}
