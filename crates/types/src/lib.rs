//! flotilla-types owns the domain model: the service spec and its validation, the Raft
//! `Command` enum and the replicated `State` with its deterministic `apply`.
//! It must stay free of I/O, clocks and async runtimes: serde only.

pub mod command;
mod document;
pub mod duration;
pub mod error;
pub mod events;
pub mod ingress;
pub mod model;
pub mod requests;
pub mod rollout;
pub mod security;
pub mod spec;
pub mod state;
mod state_members;
mod state_tasks;
pub mod update;
mod validate;

pub use command::{Command, PutOutcome, Response};
pub use duration::Duration;
pub use error::{CommandError, SpecError};
pub use events::{events_of, Event};
pub use model::{
    Availability, Capacity, DesiredState, NewTask, Node, NodeRegistration, NodeStatus, PlanUpdate, StopReason, Task,
    TaskId, TaskReport, TaskState,
};
pub use rollout::{Batch, Revision, Rollout, RolloutChange, RolloutOp, RolloutPhase};
pub use security::{ClientRole, ClientToken, Security, SecurityOp};
pub use spec::{Constraint, ConstraintOp};
pub use spec::{
    HealthCheck, HealthCheckKind, OnDisconnect, Placement, Port, PortMode, Protocol, Resources, RestartCondition,
    RestartPolicy, ServiceSpec, FENCE_MARGIN,
};
pub use state::{Service, State};
pub use update::{FailureAction, Ratio, UpdateOrder, UpdatePolicy};
pub use validate::{validate_dns_label, MAX_SPEC_BYTES, MIN_CPU_MILLIS, MIN_MEMORY_MB};

/// Node ids are chosen by the operator (`--id N`) and never reused.
pub type NodeId = u64;

/// Milliseconds since the Unix epoch, always supplied by the proposer of a command.
pub type Millis = u64;
