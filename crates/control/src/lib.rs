//! flotilla-control owns the leader-only loops: the reconcile/placement pass and node
//! liveness. They run only while this node leads and are cancelled when it steps down;
//! every decision is a Raft write, so a deposed leader's late write simply fails.
//! It must not depend on gRPC or on the node crate.

// openraft's StorageError and RaftError are large and fixed by its traits.
#![allow(clippy::result_large_err)]

mod liveness;
mod metrics;
mod supervisor;

use std::time::Duration;

pub use liveness::Liveness;
pub use metrics::{ControlMetrics, LoopLabel};
pub use supervisor::{failpoint, Control, ControlError, LeaderLoop};

#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// A node silent this long is marked down and its tasks replaced.
    pub node_timeout: Duration,
    /// A pass runs at least this often, besides after every apply.
    pub tick: Duration,
    /// A new leader's first pass waits until every Raft member has sent it a heartbeat,
    /// or this long.
    pub placement_grace: Duration,
}

impl ControlConfig {
    /// The `stop_after` of an `on_disconnect: fence` service whose spec sets none: a
    /// little under the node timeout (three quarters of it), and at least
    /// [`flotilla_types::spec::MIN_STOP_AFTER`].
    pub fn default_stop_after(&self) -> Duration {
        (self.node_timeout * 3 / 4).max(flotilla_types::spec::MIN_STOP_AFTER)
    }
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            node_timeout: Duration::from_secs(4),
            tick: Duration::from_secs(1),
            placement_grace: Duration::from_secs(2),
        }
    }
}
