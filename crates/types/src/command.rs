//! Every mutation of the replicated state is a `Command` in the Raft log. Commands carry
//! everything `State::apply` needs (times included) so every replica computes the same
//! result from the same bytes.

use serde::{Deserialize, Serialize};

use crate::error::CommandError;
use crate::model::{Availability, NodeRegistration, NodeStatus, PlanUpdate, TaskId, TaskReport};
use crate::rollout::RolloutOp;
use crate::spec::ServiceSpec;
use crate::{Millis, NodeId};

// Commands are built once per write and moved, never stored in bulk: their size is moot.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Create or update a service. An identical spec changes nothing.
    PutService {
        spec: ServiceSpec,
        at: Millis,
        /// Refuse the spec when a published port of it is an ingress port of another
        /// service, or an ingress port of it is published by another (the routing mesh
        /// listens on every node). Set by this version's API; absent from entries written
        /// before the mesh, which replay as they were applied.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        exclusive_ingress: bool,
    },
    DeleteService {
        name: String,
        at: Millis,
    },
    /// Change only the replica count (no new template version: running tasks stay).
    ScaleService {
        name: String,
        replicas: u32,
        at: Millis,
    },
    /// An agent (re)registers: ready again, labels and capacity refreshed.
    RegisterNode {
        node: NodeRegistration,
        at: Millis,
    },
    SetNodeStatus {
        id: NodeId,
        status: NodeStatus,
        at: Millis,
    },
    SetAvailability {
        id: NodeId,
        availability: Availability,
        at: Millis,
    },
    /// An operator says the node is gone (`flotilla node declare-dead`): it is down now,
    /// and its `on_disconnect: fence` tasks are replaced without waiting for them to
    /// have stopped themselves. Undone when the node registers again.
    DeclareNodeDead {
        id: NodeId,
        at: Millis,
    },
    /// One scheduling pass of the leader.
    ApplyPlan {
        plan: PlanUpdate,
        at: Millis,
    },
    /// Status changes from one node's executor.
    ReportStatus {
        node: NodeId,
        reports: Vec<TaskReport>,
        at: Millis,
    },
    /// An operator's pause, resume or undo of a service's rollout.
    Rollout {
        name: String,
        op: RolloutOp,
        at: Millis,
    },
    /// Several independent client commands in one log entry (group commit): each is
    /// applied in order and answered on its own.
    Batch(Vec<Command>),
    /// A node leaves the cluster for good (`flotilla node remove`): its id is recorded as
    /// removed (never reused), its record dropped and its remaining tasks marked lost.
    RemoveNode {
        id: NodeId,
        at: Millis,
    },
    /// A client's command, with the name of the token that made it: applied as `cmd`, and
    /// its events say who (`by token "ci"`).
    By {
        by: String,
        cmd: Box<Command>,
    },
    /// The cluster's CA, join secret and client tokens (`flotilla token …`).
    Security {
        op: crate::security::SecurityOp,
        /// The token (by name) that asked for it; empty for a node's own.
        by: String,
        at: Millis,
    },
    /// A client's write with its request id (`requests.rs`): applied once; a repeat of
    /// the id is answered with the first answer ([`Response::Repeated`]) and changes
    /// nothing.
    Request {
        id: String,
        cmd: Box<Command>,
        at: Millis,
    },
    /// Someone ran a command inside a task (`flotilla exec`): changes nothing, leaves a
    /// `task.exec` event (wrapped in `By`, which names the token). `cmd` is capped.
    Exec {
        task: TaskId,
        node: NodeId,
        cmd: String,
        at: Millis,
    },
}

impl Command {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::PutService { .. } => "put_service",
            Command::DeleteService { .. } => "delete_service",
            Command::ScaleService { .. } => "scale_service",
            Command::RegisterNode { .. } => "register_node",
            Command::SetNodeStatus { .. } => "set_node_status",
            Command::SetAvailability { .. } => "set_availability",
            Command::DeclareNodeDead { .. } => "declare_node_dead",
            Command::ApplyPlan { .. } => "apply_plan",
            Command::ReportStatus { .. } => "report_status",
            Command::Rollout { .. } => "rollout",
            Command::Batch(_) => "batch",
            Command::RemoveNode { .. } => "remove_node",
            Command::Security { .. } => "security",
            Command::Exec { .. } => "exec",
            Command::By { cmd, .. } | Command::Request { cmd, .. } => cmd.kind(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PutOutcome {
    Created,
    Updated { from: u64 },
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Response {
    /// Entries that carry no command (blank entries, membership changes).
    #[default]
    None,
    Service {
        name: String,
        version: u64,
        outcome: PutOutcome,
    },
    Deleted {
        name: String,
        version: u64,
    },
    Scaled {
        name: String,
        version: u64,
        replicas: u32,
    },
    Node {
        id: NodeId,
    },
    /// How many plan items took effect; the rest were stale and skipped.
    Planned {
        applied: usize,
        skipped: usize,
    },
    /// Reports about tasks the state no longer has, or that are not on the reporting node:
    /// the executor should stop those.
    Reported {
        unknown: Vec<TaskId>,
    },
    /// A rollout was paused, resumed or undone; `version` is the service's version after.
    Rollout {
        name: String,
        version: u64,
    },
    /// A change to the security state took effect.
    Security,
    /// An exec was recorded.
    Exec,
    /// The answer to a request id applied before (`Command::Request`): nothing changed.
    Repeated(Box<Response>),
    /// One response per command of a `Command::Batch`, in order.
    Batch(Vec<Response>),
    Error(CommandError),
}
