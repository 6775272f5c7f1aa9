//! Tasks and nodes: what the scheduler decides and the executors report on.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Millis, NodeId};

pub type TaskId = String;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    Running,
    Shutdown,
}

impl DesiredState {
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredState::Running => "running",
            DesiredState::Shutdown => "shutdown",
        }
    }
}

/// What is known of a task, from placement to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Not placed yet (no node fits, or not tried yet).
    Pending,
    /// Placed on a node; the executor has not acted yet.
    Assigned,
    Starting,
    Running,
    Healthy,
    Unhealthy,
    /// The workload ended on its own; `exit_code` says how.
    Exited,
    /// The executor could not run it (e.g. image not found).
    Failed,
    /// Its node went down: nobody knows what became of it.
    Lost,
    /// Stopped and removed because it was asked to stop.
    Stopped,
}

impl TaskState {
    /// The task will not run again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Exited | TaskState::Failed | TaskState::Lost | TaskState::Stopped
        )
    }

    /// Holds (or is about to hold) resources on its node.
    pub fn holds_resources(self) -> bool {
        matches!(
            self,
            TaskState::Assigned | TaskState::Starting | TaskState::Running | TaskState::Healthy | TaskState::Unhealthy
        )
    }

    pub fn parse(s: &str) -> Option<TaskState> {
        Some(match s {
            "pending" => TaskState::Pending,
            "assigned" => TaskState::Assigned,
            "starting" => TaskState::Starting,
            "running" => TaskState::Running,
            "healthy" => TaskState::Healthy,
            "unhealthy" => TaskState::Unhealthy,
            "exited" => TaskState::Exited,
            "failed" => TaskState::Failed,
            "lost" => TaskState::Lost,
            "stopped" => TaskState::Stopped,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Healthy => "healthy",
            TaskState::Unhealthy => "unhealthy",
            TaskState::Exited => "exited",
            TaskState::Failed => "failed",
            TaskState::Lost => "lost",
            TaskState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a task was asked to stop; decides whether and how its slot is refilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    ScaleDown,
    ServiceDeleted,
    /// Failed its health check: counts as a failure for the restart policy.
    Unhealthy,
    /// Its spec version is not the service's current one.
    Outdated,
    /// Its node is being drained.
    Drained,
    /// Its node went down; replaced elsewhere.
    NodeDown,
    /// Asked to stop by an operator or a removed node.
    Removed,
    /// Ran to completion: exited with code 0 under a restart policy that does not restart
    /// it (`never`, `on-failure`). The slot is done; its container goes after a while.
    Completed,
    /// A copy of it on a node with fewer of the service's tasks passed `monitor`: moved
    /// to even out the spread.
    Rebalanced,
    /// Its node stopped it itself (`on_disconnect: fence`): it went `stop_after` without
    /// a heartbeat acknowledged by a leader with a quorum. Replaced like a lost task.
    Fenced,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::ScaleDown => "scaled down",
            StopReason::ServiceDeleted => "service deleted",
            StopReason::Unhealthy => "unhealthy",
            StopReason::Outdated => "replaced by a newer version",
            StopReason::Drained => "node drained",
            StopReason::NodeDown => "node down",
            StopReason::Removed => "removed",
            StopReason::Completed => "completed",
            StopReason::Rebalanced => "moved to even out the spread",
            StopReason::Fenced => "fenced: its node was cut off from the leader",
        }
    }
}

/// CPU in thousandths of a core and memory in MiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    pub cpu_millis: u64,
    pub memory_mb: u64,
}

fn default_stop_grace_ms() -> u64 {
    10_000
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub service: String,
    pub slot: u32,
    /// Orders the tasks of one slot: the highest is the slot's current task.
    pub seq: u64,
    /// The service's template version this task runs.
    pub spec_version: u64,
    pub node: Option<NodeId>,
    pub desired: DesiredState,
    pub state: TaskState,
    pub cpu_millis: u32,
    pub memory_mb: u32,
    /// SIGTERM-to-SIGKILL time, kept on the task: the service may be gone when it stops.
    #[serde(default = "default_stop_grace_ms")]
    pub stop_grace_ms: u64,
    /// How many times this slot was restarted after failures before this task.
    pub attempt: u32,
    /// When `state` last changed (0 in states written before this field existed).
    #[serde(default)]
    pub state_since: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// The container's address on its node (the bridge IP), as last reported running:
    /// what `tasks.<service>` resolves to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// The last error, or for a pending task why no node fits.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// A rebalancing copy: made to move the slot off this node (its task there stops once
    /// this one passed `monitor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalanced_from: Option<NodeId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    Active,
    Pause,
    Drain,
}

impl Availability {
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Active => "active",
            Availability::Pause => "pause",
            Availability::Drain => "drain",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    Ready,
    Down,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Ready => "ready",
            NodeStatus::Down => "down",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: NodeId,
    pub address: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub capacity: Capacity,
    pub availability: Availability,
    pub status: NodeStatus,
    pub registered_at: Millis,
    pub updated_at: Millis,
    /// The instance id of the node's data dir, recorded when it first registered: a
    /// node answering with another one under this id had its data dir wiped or replaced.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance: String,
    /// An operator declared it dead (`flotilla node declare-dead`) and it has not
    /// registered since: its fenced tasks are replaced without waiting.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub declared_dead: bool,
    /// Where its published ports and routing mesh listen (`--publish-addr`; empty from
    /// an agent older than the mesh).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub publish_addr: String,
    /// The ingress ports its mesh cannot listen on (`8080/tcp`), and why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mesh_errors: BTreeMap<String, String>,
}

/// What an agent says about itself when it registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRegistration {
    pub id: NodeId,
    pub address: String,
    pub labels: BTreeMap<String, String>,
    pub capacity: Capacity,
    /// Its data dir's instance id (empty from an agent older than instance ids).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub publish_addr: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mesh_errors: BTreeMap<String, String>,
}

/// A task the leader creates in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTask {
    pub service: String,
    pub slot: u32,
    pub spec_version: u64,
    pub attempt: u32,
    /// `None` when no node fits; `message` then says why.
    pub node: Option<NodeId>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Start beside the slot's running task of another version (a start-first update)
    /// instead of into an empty slot.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub start_first: bool,
    /// A rebalancing move off this node: starts beside the slot's task of the same
    /// version, which stops once this one passed `monitor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalanced_from: Option<NodeId>,
}

/// One pass of the leader, applied as one Raft entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanUpdate {
    /// Nodes found silent for longer than the node timeout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes_down: Vec<NodeId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost: Vec<TaskId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<(TaskId, StopReason)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub create: Vec<NewTask>,
    /// Pending tasks that now have a node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assign: Vec<(TaskId, NodeId)>,
    /// Pending tasks that still have none, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unplaced: Vec<(TaskId, String)>,
    /// Finished tasks dropped from history.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<TaskId>,
    /// Rollout decisions: batches started, failures counted, pause, rollback, completion.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollouts: Vec<crate::rollout::RolloutChange>,
}

impl PlanUpdate {
    pub fn is_empty(&self) -> bool {
        self.nodes_down.is_empty()
            && self.lost.is_empty()
            && self.stop.is_empty()
            && self.create.is_empty()
            && self.assign.is_empty()
            && self.unplaced.is_empty()
            && self.remove.is_empty()
            && self.rollouts.is_empty()
    }
}

/// An executor's report on one of its tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReport {
    pub task: TaskId,
    pub state: TaskState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// The container's address, with a running state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Set with `Stopped` when the node stopped the task on its own: `Fenced`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
}
