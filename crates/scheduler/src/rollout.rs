//! The rollout part of reconcile: replaces tasks of an older template batch by batch,
//! each batch only after every new task passed `monitor`, and acts on failures of the
//! new version (pause, rollback or continue). Pure, like the rest of the scheduler.

use std::collections::BTreeMap;

use flotilla_types::{
    Batch, DesiredState, FailureAction, Millis, NodeId, PlanUpdate, Rollout, RolloutChange, RolloutPhase, Service,
    StopReason, Task, TaskState, UpdateOrder,
};
use serde::{Deserialize, Serialize};

use crate::reconcile::{completed, new_task};

/// Where one slot of a service stands, as `reconcile_slot` left it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SlotProgress<'a> {
    /// Being (re)filled this pass: a create or a replacement is under way.
    Filling,
    /// Runs an older template; `serving` when it is running (healthy, if checked).
    Outdated { task: &'a Task, serving: bool },
    /// Runs the target template, has not passed `monitor` yet.
    Updating,
    /// Runs the target template and passed `monitor` at `at`.
    Done { task: &'a Task, at: Millis },
    /// Its task of the target template failed; `retrying` while the restart policy will
    /// start another.
    Failed { retrying: bool },
}

/// Whether a task does its job: running, and healthy when its version has a check.
pub(crate) fn is_serving(svc: &Service, t: &Task) -> bool {
    let checked = svc.spec_at(t.spec_version).health_check.is_some();
    t.desired == DesiredState::Running
        && match t.state {
            TaskState::Healthy => true,
            TaskState::Running => !checked,
            _ => false,
        }
}

/// When a task entered its current state (tasks written before `state_since` existed
/// carry 0 there: their last update stands in).
pub(crate) fn in_state_since(t: &Task) -> Millis {
    if t.state_since == 0 {
        t.updated_at
    } else {
        t.state_since
    }
}

/// When a task passed the service's `monitor` (served that long without a break), if it
/// did by `now`.
pub(crate) fn passed_monitor(svc: &Service, t: &Task, now: Millis) -> Option<Millis> {
    if !is_serving(svc, t) {
        return None;
    }
    let at = in_state_since(t).saturating_add(svc.spec.update.monitor.as_millis());
    (now >= at).then_some(at)
}

/// Whether a task of the new version counts as a failure of it. A lost task (its node
/// died) does not: that is not the version's fault; nor does one that ran to completion.
fn is_failure(svc: &Service, t: &Task) -> bool {
    if completed(svc, t) {
        return false;
    }
    match t.state {
        TaskState::Failed | TaskState::Exited | TaskState::Unhealthy => true,
        _ => t.stop_reason == Some(StopReason::Unhealthy),
    }
}

fn describe_failure(t: &Task) -> String {
    let what = match (t.state, t.exit_code) {
        (TaskState::Exited, Some(code)) => format!("exited with code {code}"),
        (TaskState::Failed, _) => "failed to start".to_string(),
        _ => "failed its health check".to_string(),
    };
    if t.message.is_empty() || t.message == what {
        format!("task {} {what}", t.id)
    } else {
        format!("task {} {what}: {}", t.id, t.message)
    }
}

/// Moves the rollout of `svc` on by what this pass allows: records failures of the new
/// version (and halts on too many), completes it, or starts the next batch.
pub(crate) fn drive_rollout<'a>(
    svc: &Service,
    slots: &[SlotProgress<'a>],
    tasks: impl Iterator<Item = &'a Task>,
    now: Millis,
    plan: &mut PlanUpdate,
) {
    let target = svc.template_version;
    // The rollout record, when it is the one moving to the current template.
    let record = svc
        .rollout
        .as_ref()
        .filter(|r| r.phase.is_active() && r.target() == target);

    if let Some(r) = record {
        if record_failures(svc, r, tasks, plan) || r.paused.is_some() {
            return;
        }
    } else if svc
        .rollout
        .as_ref()
        .is_some_and(|r| r.phase.is_active() && r.paused.is_some())
    {
        return;
    }

    let progress = RolloutProgress::of(svc, slots, record.map_or(0, |r| r.started_at));
    if progress.outdated.is_empty() {
        if !progress.in_flight && record.is_some() {
            plan.rollouts.push(RolloutChange::Complete {
                service: svc.spec.name.clone(),
                target,
            });
        }
        return;
    }
    if progress.in_flight {
        return;
    }
    if let Some(done) = progress.last_done {
        if now < done.saturating_add(svc.spec.update.delay.as_millis()) {
            return;
        }
    }
    start_batch(svc, progress.outdated, record.is_some(), plan);
}

/// Records the new version's failures not yet counted, and pauses or rolls back once
/// there are too many. Returns whether it did (then this pass starts no batch).
fn record_failures<'a>(
    svc: &Service,
    r: &Rollout,
    tasks: impl Iterator<Item = &'a Task>,
    plan: &mut PlanUpdate,
) -> bool {
    let target = svc.template_version;
    let policy = &svc.spec.update;
    let mut failed: Vec<&Task> = tasks
        .filter(|t| t.spec_version == target && t.created_at >= r.phase_started_at)
        .filter(|t| is_failure(svc, t) && !r.failed.contains(&t.id))
        .collect();
    failed.sort_by_key(|t| t.seq);
    for t in &failed {
        plan.rollouts.push(RolloutChange::Failed {
            service: svc.spec.name.clone(),
            target,
            task: t.id.clone(),
        });
    }
    let total = r.failures as usize + failed.len();
    let Some(last) = failed.last() else {
        return false;
    };
    if r.paused.is_some()
        || policy.failure_action == FailureAction::Continue
        || !policy.too_many_failures(total, svc.spec.replicas)
    {
        return false;
    }
    let reason = format!(
        "{total} of {} new tasks failed (max_failure_ratio {}); last: {}",
        svc.spec.replicas,
        policy.max_failure_ratio.0,
        describe_failure(last)
    );
    plan.rollouts.push(halt(svc, r.phase, reason));
    true
}

/// What too many failures do: roll back an update when the policy says so, else pause
/// (a failing rollback always pauses).
fn halt(svc: &Service, phase: RolloutPhase, reason: String) -> RolloutChange {
    let service = svc.spec.name.clone();
    let target = svc.template_version;
    match (svc.spec.update.failure_action, phase) {
        (FailureAction::Rollback, RolloutPhase::Updating) => RolloutChange::Rollback {
            service,
            target,
            reason,
        },
        (_, RolloutPhase::RollingBack) => RolloutChange::Pause {
            service,
            target,
            reason: format!("rollback failed: {reason}"),
        },
        _ => RolloutChange::Pause {
            service,
            target,
            reason,
        },
    }
}

/// The slots of a service, summed up for the next batch.
struct RolloutProgress<'a> {
    /// (serving, slot, task) of each slot on an older template.
    outdated: Vec<(bool, u32, &'a Task)>,
    /// A slot is being filled or updated: the next batch waits.
    in_flight: bool,
    /// When the last slot updated by this rollout passed `monitor`.
    last_done: Option<Millis>,
}

impl<'a> RolloutProgress<'a> {
    fn of(svc: &Service, slots: &[SlotProgress<'a>], started: Millis) -> Self {
        let continue_on_failure = svc.spec.update.failure_action == FailureAction::Continue;
        let mut progress = RolloutProgress {
            outdated: Vec::new(),
            in_flight: false,
            last_done: None,
        };
        for (slot, p) in slots.iter().enumerate() {
            match p {
                SlotProgress::Outdated { task, serving } => progress.outdated.push((*serving, slot as u32, task)),
                SlotProgress::Filling | SlotProgress::Updating => progress.in_flight = true,
                SlotProgress::Failed { retrying, .. } => progress.in_flight |= *retrying && !continue_on_failure,
                SlotProgress::Done { task, at } => {
                    if task.created_at >= started {
                        progress.last_done = progress.last_done.max(Some(*at));
                    }
                }
            }
        }
        progress
    }
}

/// Replaces the next batch of outdated tasks with tasks of the current template.
fn start_batch(svc: &Service, mut outdated: Vec<(bool, u32, &Task)>, recorded: bool, plan: &mut PlanUpdate) {
    let policy = &svc.spec.update;
    let name = &svc.spec.name;
    let target = svc.template_version;
    // Tasks that serve nobody go first: replacing them costs no capacity.
    outdated.sort_by_key(|(serving, slot, _)| (*serving, *slot));
    let batch: Vec<&(bool, u32, &Task)> = outdated
        .iter()
        .take(policy.batch_size(svc.spec.replicas) as usize)
        .collect();
    for (_, slot, task) in &batch {
        let start_first = policy.order == UpdateOrder::StartFirst && task.state != TaskState::Pending;
        if !start_first {
            plan.stop.push((task.id.clone(), StopReason::Outdated));
        }
        plan.create.push(new_task(name, *slot, target, 0, start_first));
    }
    if recorded {
        plan.rollouts.push(RolloutChange::Batch {
            service: name.clone(),
            target,
            slots: batch.iter().map(|(_, slot, _)| *slot).collect(),
        });
    }
}

/// A rollout as `flotilla rollout status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutReport {
    pub service: String,
    pub version: u64,
    pub template_version: u64,
    /// `none` when the service never had a template change.
    pub phase: String,
    pub from_version: u64,
    pub to_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    pub cause: String,
    pub replicas: u32,
    /// Slots running the current template.
    pub updated: u32,
    /// Of those, serving (healthy, if checked).
    pub serving: u32,
    /// Slots that passed `monitor` on the current template.
    pub done: u32,
    pub failures: u32,
    pub parallelism: u32,
    pub order: String,
    pub monitor_ms: u64,
    pub delay_ms: u64,
    pub failure_action: String,
    /// What the rollout waits for right now, if anything.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub waiting: String,
    pub started_at: Millis,
    pub updated_at: Millis,
    pub batches: Vec<BatchReport>,
    /// Rebalancing moves under way: copies placed to even out the spread that have not
    /// yet taken over from the task they move.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moves: Vec<MoveReport>,
}

/// One rebalancing move under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveReport {
    pub slot: u32,
    /// The copy that takes the slot over.
    pub task: String,
    pub from: NodeId,
    /// Unset while the copy waits for a node.
    pub to: Option<NodeId>,
    /// The copy's state.
    pub state: String,
    /// Why it moves, as the scheduler wrote it when it placed the copy.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReport {
    pub number: u32,
    pub target: u64,
    pub slots: Vec<u32>,
    /// updating, monitoring, done, failed, rolled-back or replaced (its slots moved on
    /// since).
    pub state: String,
    pub tasks: Vec<String>,
    pub started_at: Millis,
}

/// Builds the report of `svc`'s rollout from the service and its tasks.
pub fn rollout_report<'a>(svc: &Service, tasks: impl Iterator<Item = &'a Task>, now: Millis) -> RolloutReport {
    let target = svc.template_version;
    let policy = &svc.spec.update;
    let tasks: Vec<&Task> = tasks.filter(|t| t.service == svc.spec.name).collect();
    let moves = moves_under_way(svc, &tasks);
    let current = current_tasks(svc, tasks.into_iter());
    let at_target: Vec<&&Task> = current.values().filter(|t| t.spec_version == target).collect();
    let updated = at_target.len() as u32;
    let serving = at_target.iter().filter(|t| is_serving(svc, t)).count() as u32;
    let done = at_target
        .iter()
        .filter(|t| passed_monitor(svc, t, now).is_some())
        .count() as u32;

    let r = svc.rollout.as_ref();
    let batches = r.map_or_else(Vec::new, |r| {
        r.batches
            .iter()
            .map(|b| batch_report(svc, r, b, &current, now))
            .collect()
    });
    RolloutReport {
        service: svc.spec.name.clone(),
        version: svc.version,
        template_version: target,
        phase: r.map_or("none", |r| r.phase.as_str()).into(),
        from_version: r.map_or(0, |r| r.from_version),
        to_version: r.map_or(target, |r| r.to_version),
        paused: r.and_then(|r| r.paused.clone()),
        reason: r.map_or_else(String::new, |r| r.reason.clone()),
        cause: r.map_or_else(String::new, |r| r.cause.clone()),
        replicas: svc.spec.replicas,
        updated,
        serving,
        done,
        failures: r.map_or(0, |r| r.failures),
        parallelism: policy.parallelism,
        order: policy.order.as_str().into(),
        monitor_ms: policy.monitor.as_millis(),
        delay_ms: policy.delay.as_millis(),
        failure_action: policy.failure_action.as_str().into(),
        waiting: waiting_for(svc, &at_target, updated, now),
        started_at: r.map_or(0, |r| r.started_at),
        updated_at: r.map_or(0, |r| r.updated_at),
        batches,
        moves,
    }
}

/// The copies of `svc`'s rebalancing moves (all of `tasks` are the service's) that have not
/// taken over yet: the task they move is still meant to run, or they are not serving.
fn moves_under_way(svc: &Service, tasks: &[&Task]) -> Vec<MoveReport> {
    let mut moves: Vec<MoveReport> = tasks
        .iter()
        .filter(|t| t.desired == DesiredState::Running)
        .filter_map(|t| {
            let from = t.rebalanced_from?;
            let old_runs = tasks
                .iter()
                .any(|o| o.slot == t.slot && o.id != t.id && o.seq < t.seq && o.desired == DesiredState::Running);
            (old_runs || !is_serving(svc, t)).then(|| MoveReport {
                slot: t.slot,
                task: t.id.clone(),
                from,
                to: t.node,
                state: t.state.as_str().to_string(),
                reason: if t.message.starts_with("rebalance") {
                    t.message.clone()
                } else {
                    format!("rebalance: moving from node {from}")
                },
            })
        })
        .collect();
    moves.sort_by_key(|m| m.slot);
    moves
}

/// The task filling each slot of `svc`: its newest task meant to run.
fn current_tasks<'a>(svc: &Service, tasks: impl Iterator<Item = &'a Task>) -> BTreeMap<u32, &'a Task> {
    let mut all: Vec<&Task> = tasks.filter(|t| t.service == svc.spec.name).collect();
    all.sort_by_key(|t| t.seq);
    let mut current = BTreeMap::new();
    for t in all {
        if t.desired == DesiredState::Running && t.slot < svc.spec.replicas {
            current.insert(t.slot, t);
        }
    }
    current
}

fn batch_report(svc: &Service, r: &Rollout, b: &Batch, current: &BTreeMap<u32, &Task>, now: Millis) -> BatchReport {
    let slot_tasks: Vec<&Task> = b
        .slots
        .iter()
        .filter_map(|s| current.get(s).copied())
        .filter(|t| t.spec_version == b.target)
        .collect();
    BatchReport {
        number: b.number,
        target: b.target,
        slots: b.slots.clone(),
        state: batch_state(svc, r, b, &slot_tasks, now).into(),
        tasks: slot_tasks.iter().map(|t| t.id.clone()).collect(),
        started_at: b.started_at,
    }
}

/// A batch's state, judged by the tasks of its version still in its slots.
fn batch_state(svc: &Service, r: &Rollout, b: &Batch, slot_tasks: &[&Task], now: Millis) -> &'static str {
    let rolled_back =
        matches!(r.phase, RolloutPhase::RollingBack | RolloutPhase::RolledBack) && b.target == r.to_version;
    if rolled_back {
        "rolled-back"
    } else if b.target != svc.template_version || slot_tasks.len() < b.slots.len() {
        if slot_tasks.iter().any(|t| is_failure(svc, t)) {
            "failed"
        } else {
            "replaced"
        }
    } else if slot_tasks.iter().any(|t| is_failure(svc, t)) {
        "failed"
    } else if slot_tasks.iter().all(|t| passed_monitor(svc, t, now).is_some()) {
        "done"
    } else if slot_tasks.iter().all(|t| is_serving(svc, t)) {
        "monitoring"
    } else {
        "updating"
    }
}

/// What an active rollout waits for right now; empty when nothing.
fn waiting_for(svc: &Service, at_target: &[&&Task], updated: u32, now: Millis) -> String {
    let r = svc.rollout.as_ref();
    let active = r.is_some_and(|r| r.phase.is_active());
    if !active {
        String::new()
    } else if let Some(p) = r.and_then(|r| r.paused.as_ref()) {
        format!("paused: {p}")
    } else if let Some(t) = at_target.iter().find(|t| passed_monitor(svc, t, now).is_none()) {
        match t.state {
            TaskState::Pending if !t.message.is_empty() => format!("task {} pending: {}", t.id, t.message),
            s if is_serving(svc, t) => {
                format!(
                    "task {} {s}; it counts once it has served for {}",
                    t.id, svc.spec.update.monitor
                )
            }
            s => format!("task {} {s}", t.id),
        }
    } else if updated < svc.spec.replicas {
        "next batch".into()
    } else {
        String::new()
    }
}
