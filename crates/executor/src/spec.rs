use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The driver's handle on one container (a Docker id, or the process driver's record id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContainerId(pub String);

impl ContainerId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for ContainerId {
    fn from(id: String) -> Self {
        ContainerId(id)
    }
}

impl From<&str> for ContainerId {
    fn from(id: &str) -> Self {
        ContainerId(id.to_string())
    }
}

/// What to run. Drivers that cannot honour a field (the process driver has no image, no
/// limits and no port publishing) record it and document that they ignore it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Unique per driver: creating a second container with the same non-empty name fails
    /// with `AlreadyExists`, which is what keeps one container per task.
    pub name: String,
    pub image: String,
    /// Entrypoint override; empty keeps the image's.
    pub command: Vec<String>,
    /// Arguments (Docker's `Cmd`); empty keeps the image's when `command` is empty too.
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// CPU limit in thousandths of a core; 0 = unlimited.
    pub cpu_millis: u32,
    /// Memory limit in MiB; 0 = unlimited.
    pub memory_mb: u32,
    pub ports: Vec<PortMapping>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub container: u16,
    /// `None` lets the engine pick a free host port.
    pub host: Option<u16>,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}
