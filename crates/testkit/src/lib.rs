//! flotilla-testkit (dev only): real multi-process clusters of `flotilla agent` on
//! 127.0.0.1 (or one loopback address per agent) with free ports and private data dirs,
//! fault injection on them (kill, pause, restart, network partitions), the CLI runner,
//! and condition waits with deadlines. Tests talk to agents only over gRPC or the CLI.

mod cluster;
pub mod docker;
pub mod partition;
mod wait;

pub use cluster::{flotilla_bin, wait_child, Agent, Cluster, ClusterBuilder};
pub use wait::{wait_until, wait_until_async};
