//! Events: what changed, derived from each applied command and its result. Every replica
//! derives the same events from the same log, so an event's position is its log index.

use serde::{Deserialize, Serialize};

use crate::command::{Command, PutOutcome, Response};
use crate::model::{NodeStatus, PlanUpdate, StopReason, TaskId, TaskReport, TaskState};
use crate::rollout::{RolloutChange, RolloutOp, RolloutPhase};
use crate::state::State;
use crate::Millis;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The log index of the entry that caused it (0 for events not in the log, such as a
    /// leader change, which carry the applied index at the time).
    pub index: u64,
    pub at: Millis,
    /// `service.created`, `task.placed`, `node.down`, `leader.changed`, …
    pub kind: String,
    /// What it is about: a service name, a task id, `node/3`.
    pub object: String,
    pub message: String,
}

fn ev(index: u64, at: Millis, kind: &str, object: impl Into<String>, message: impl Into<String>) -> Event {
    Event {
        index,
        at,
        kind: kind.into(),
        object: object.into(),
        message: message.into(),
    }
}

/// The events of one applied command, given its response and the state after it.
pub fn events_of(index: u64, cmd: &Command, resp: &Response, after: &State) -> Vec<Event> {
    let mut out = Vec::new();
    collect(index, cmd, resp, after, &mut out);
    out
}

fn collect(index: u64, cmd: &Command, resp: &Response, after: &State, out: &mut Vec<Event>) {
    match (cmd, resp) {
        (Command::Batch(cmds), Response::Batch(resps)) => {
            for (c, r) in cmds.iter().zip(resps) {
                collect(index, c, r, after, out);
            }
        }
        (Command::By { by, cmd }, resp) => {
            let first = out.len();
            collect(index, cmd, resp, after, out);
            for e in &mut out[first..] {
                e.message = format!("{} (by token {by:?})", e.message);
            }
        }
        // A repeat changed nothing and says nothing new.
        (Command::Request { .. }, Response::Repeated(_)) => {}
        (Command::Request { cmd, .. }, resp) => collect(index, cmd, resp, after, out),
        (Command::ApplyPlan { plan, at }, Response::Planned { .. }) => plan_events(index, *at, plan, after, out),
        (Command::ReportStatus { reports, at, .. }, Response::Reported { unknown }) => {
            report_events(index, *at, reports, unknown, after, out)
        }
        _ => out.extend(single_event(index, cmd, resp, after)),
    }
}

/// The one event (or none) of a command about a single object.
fn single_event(index: u64, cmd: &Command, resp: &Response, after: &State) -> Option<Event> {
    match (cmd, resp) {
        (Command::PutService { at, .. }, Response::Service { name, version, outcome }) => match outcome {
            PutOutcome::Created => Some(ev(
                index,
                *at,
                "service.created",
                name,
                format!("created at version {version}"),
            )),
            PutOutcome::Updated { from } => Some(ev(
                index,
                *at,
                "service.updated",
                name,
                format!("updated from version {from} to {version}"),
            )),
            PutOutcome::Unchanged => None,
        },
        (Command::DeleteService { at, .. }, Response::Deleted { name, version }) => Some(ev(
            index,
            *at,
            "service.deleted",
            name,
            format!("deleted at version {version}"),
        )),
        (
            Command::ScaleService { at, .. },
            Response::Scaled {
                name,
                replicas,
                version,
            },
        ) => Some(ev(
            index,
            *at,
            "service.scaled",
            name,
            format!("scaled to {replicas} (version {version})"),
        )),
        // A node registers again when what it says of itself changed, its mesh's ports too.
        (Command::RegisterNode { node, at }, Response::Node { .. }) if !node.mesh_errors.is_empty() => Some(ev(
            index,
            *at,
            "mesh.port_failed",
            format!("node/{}", node.id),
            node.mesh_errors
                .iter()
                .map(|(port, why)| format!("{port}: {why}"))
                .collect::<Vec<_>>()
                .join("; "),
        )),
        (Command::RegisterNode { node, at }, Response::Node { .. }) => Some(ev(
            index,
            *at,
            "node.up",
            format!("node/{}", node.id),
            format!("ready at {}", node.address),
        )),
        (Command::SetNodeStatus { id, status, at }, Response::Node { .. }) => {
            let kind = if *status == NodeStatus::Ready {
                "node.up"
            } else {
                "node.down"
            };
            Some(ev(index, *at, kind, format!("node/{id}"), status.as_str()))
        }
        (Command::DeclareNodeDead { id, at }, Response::Node { .. }) => Some(ev(
            index,
            *at,
            "node.down",
            format!("node/{id}"),
            "declared dead by an operator: its tasks are replaced now",
        )),
        (Command::SetAvailability { id, availability, at }, Response::Node { .. }) => Some(ev(
            index,
            *at,
            "node.availability",
            format!("node/{id}"),
            availability.as_str(),
        )),
        (Command::RemoveNode { id, at }, Response::Node { .. }) => Some(ev(
            index,
            *at,
            "node.removed",
            format!("node/{id}"),
            "removed from the cluster; its id is never reused",
        )),
        (Command::Rollout { name, op, at }, Response::Rollout { version, .. }) => {
            let (kind, message) = match op {
                RolloutOp::Pause => ("rollout.paused", "paused by operator".to_string()),
                RolloutOp::Resume => ("rollout.resumed", "resumed by operator".to_string()),
                RolloutOp::Undo { .. } => {
                    let to = after.services.get(name).map_or(0, |s| s.template_version);
                    (
                        "rollout.undo",
                        format!("version {version}: back to the template of version {to}"),
                    )
                }
            };
            Some(ev(index, *at, kind, name.clone(), message))
        }
        (Command::Security { op, by, at }, Response::Security) => {
            use crate::security::SecurityOp;
            let by = if by.is_empty() {
                String::new()
            } else {
                format!(" by token {by:?}")
            };
            let (kind, object, message) = match op {
                SecurityOp::Init(s) => (
                    "ca.created",
                    "ca".to_string(),
                    format!("cluster {} CA created", s.cluster_id),
                ),
                SecurityOp::CreateToken { name, token } => (
                    "token.created",
                    format!("token/{name}"),
                    format!("{} token created{by}", token.role),
                ),
                SecurityOp::RevokeToken { name } => ("token.revoked", format!("token/{name}"), format!("revoked{by}")),
                SecurityOp::RotateJoin { .. } => {
                    ("token.join-rotated", "join-token".to_string(), format!("rotated{by}"))
                }
                SecurityOp::RotateCa { .. } => (
                    "ca.rotation-started",
                    "ca".to_string(),
                    format!("a new CA signs from now on; the previous one is trusted until every member has moved{by}"),
                ),
                SecurityOp::FinishCaRotation { .. } => (
                    "ca.rotated",
                    "ca".to_string(),
                    "every member holds a certificate of the new CA; the previous CA is trusted no more".to_string(),
                ),
                SecurityOp::Issued { id, .. } => (
                    "cert.issued",
                    format!("node/{id}"),
                    "node certificate issued".to_string(),
                ),
            };
            Some(ev(index, *at, kind, object, message))
        }
        (Command::Exec { task, node, cmd, at }, Response::Exec) => Some(ev(
            index,
            *at,
            "task.exec",
            task,
            format!("exec {cmd:?} on node {node}"),
        )),
        _ => None,
    }
}

/// Nodes found down, tasks lost, stopped and placed, and rollout decisions of a plan.
fn plan_events(index: u64, at: Millis, plan: &PlanUpdate, after: &State, out: &mut Vec<Event>) {
    for id in &plan.nodes_down {
        out.push(ev(
            index,
            at,
            "node.down",
            format!("node/{id}"),
            "silent for longer than the node timeout",
        ));
    }
    for id in &plan.lost {
        if after
            .tasks
            .get(id)
            .is_some_and(|t| t.state == TaskState::Lost && t.updated_at == at)
        {
            out.push(ev(index, at, "task.lost", id, "its node went down"));
        }
    }
    for (id, reason) in &plan.stop {
        match reason {
            StopReason::Completed => out.push(ev(index, at, "task.completed", id, "ran to completion (exit code 0)")),
            _ => out.push(ev(index, at, "task.stopping", id, reason.as_str())),
        }
    }
    for t in after.tasks.values().filter(|t| t.created_at == at) {
        match t.node {
            Some(n) if t.rebalanced_from.is_some() => out.push(ev(
                index,
                at,
                "task.placed",
                &t.id,
                format!("placed on node {n} ({})", t.message),
            )),
            Some(n) => out.push(ev(index, at, "task.placed", &t.id, format!("placed on node {n}"))),
            None => out.push(ev(index, at, "task.pending", &t.id, t.message.clone())),
        }
    }
    for (id, node) in &plan.assign {
        if after.tasks.get(id).is_some_and(|t| t.node == Some(*node)) {
            out.push(ev(index, at, "task.placed", id, format!("placed on node {node}")));
        }
    }
    for change in &plan.rollouts {
        rollout_event(index, at, change, after, out);
    }
}

/// The state changes the nodes reported that took effect.
fn report_events(
    index: u64,
    at: Millis,
    reports: &[TaskReport],
    unknown: &[TaskId],
    after: &State,
    out: &mut Vec<Event>,
) {
    for r in reports.iter().filter(|r| !unknown.contains(&r.task)) {
        let Some(t) = after
            .tasks
            .get(&r.task)
            .filter(|t| t.state == r.state && t.updated_at == at)
        else {
            continue;
        };
        let (kind, message) = match t.state {
            TaskState::Starting => ("task.starting", String::new()),
            TaskState::Running => ("task.started", String::new()),
            TaskState::Healthy => ("task.healthy", String::new()),
            TaskState::Unhealthy => ("task.unhealthy", t.message.clone()),
            TaskState::Exited if t.exit_code == Some(0) => ("task.exited", "exited with code 0".into()),
            TaskState::Exited | TaskState::Failed => ("task.failed", t.message.clone()),
            TaskState::Stopped => ("task.stopped", String::new()),
            _ => continue,
        };
        out.push(ev(index, at, kind, &t.id, message));
    }
}

/// Events of the rollout decisions that took effect (the rollout's `updated_at` is the
/// plan's time only when something changed).
fn rollout_event(index: u64, at: Millis, change: &RolloutChange, after: &State, out: &mut Vec<Event>) {
    let name = change.service();
    let Some(r) = after
        .services
        .get(name)
        .and_then(|s| s.rollout.as_ref())
        .filter(|r| r.updated_at == at)
    else {
        return;
    };
    let object = name.to_string();
    let (kind, message) = match change {
        RolloutChange::Batch { slots, target, .. } => (
            "rollout.batch",
            format!(
                "batch {}: slots {} to version {target}",
                r.batches.last().map_or(0, |b| b.number),
                slots.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            ),
        ),
        RolloutChange::Failed { task, .. } => ("rollout.task-failed", format!("new task {task} failed")),
        RolloutChange::Pause { reason, .. } => ("rollout.paused", reason.clone()),
        RolloutChange::Rollback { reason, .. } => (
            "rollout.rolling-back",
            format!("back to version {}: {reason}", r.from_version),
        ),
        RolloutChange::Complete { target, .. } => match r.phase {
            RolloutPhase::RolledBack => ("rollout.rolled-back", format!("every task back on version {target}")),
            _ => ("rollout.completed", format!("every task on version {target}")),
        },
    };
    out.push(ev(index, at, kind, object, message));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exec_is_a_task_event_naming_the_token_and_changes_nothing() {
        let mut state = State::default();
        let before = state.clone();
        let cmd = Command::By {
            by: "ops".into(),
            cmd: Box::new(Command::Exec {
                task: "web.0.1".into(),
                node: 2,
                cmd: "sh -c ls".into(),
                at: 5,
            }),
        };
        let resp = state.apply(&cmd);
        assert_eq!(resp, Response::Exec);
        assert_eq!(state, before);
        assert_eq!(cmd.kind(), "exec");
        let events = events_of(9, &cmd, &resp, &state);
        assert_eq!(
            events,
            vec![ev(
                9,
                5,
                "task.exec",
                "web.0.1",
                "exec \"sh -c ls\" on node 2 (by token \"ops\")"
            )]
        );
        // Encoded like every command, and read back.
        let bytes = serde_json::to_vec(&cmd).expect("encode");
        assert_eq!(serde_json::from_slice::<Command>(&bytes).expect("decode"), cmd);
    }
}
