//! Every mutation of the replicated state is a `Command` in the Raft log. Commands carry
//! everything `State::apply` needs (times included) so every replica computes the same
//! result from the same bytes.

use serde::{Deserialize, Serialize};

use crate::error::CommandError;
use crate::spec::ServiceSpec;
use crate::Millis;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Create or update a service. An identical spec changes nothing.
    PutService { spec: ServiceSpec, at: Millis },
    DeleteService { name: String, at: Millis },
}

impl Command {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::PutService { .. } => "put_service",
            Command::DeleteService { .. } => "delete_service",
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
    Error(CommandError),
}
