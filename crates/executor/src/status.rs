use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::ContainerId;

/// A driver's view of one container at the moment it was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub id: ContainerId,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub state: ContainerState,
    /// Unix milliseconds of the last start, if it was ever started.
    pub started_at_ms: Option<u64>,
    /// Unix milliseconds of the last exit, when known.
    pub finished_at_ms: Option<u64>,
    /// Where a health probe reaches the workload while it runs: the container's bridge
    /// IP for Docker, 127.0.0.1 for processes. `None` when not running.
    pub ip: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    /// `code` is 128+signal when a signal ended it (137 after SIGKILL), and -1 when the
    /// process died while no driver was watching and its code is lost.
    Exited {
        code: i64,
    },
    /// An engine state flotilla has no use for (paused, restarting, …), kept verbatim.
    Unknown(String),
}

impl ContainerState {
    pub fn is_running(&self) -> bool {
        matches!(self, ContainerState::Running)
    }
}
