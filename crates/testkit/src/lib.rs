//! flotilla-testkit (dev only): real multi-process clusters of `flotilla agent` on
//! 127.0.0.1 (or one loopback address per agent) with free ports and private data dirs,
//! fault injection on them (kill, pause, restart, network partitions), the CLI runner,
//! and condition waits with deadlines; and in-process clusters (several nodes in the test's
//! own process over real loopback gRPC). Tests talk to nodes only over gRPC or the CLI.

mod cluster;
pub mod creds;
pub mod docker;
pub mod faulty;
mod http;
mod in_process;
pub mod partition;
pub mod proxy;
mod wait;

pub use cluster::{flotilla_bin, wait_child, Agent, Cluster, ClusterBuilder};
pub use creds::{api_client, api_client_now, Access, ApiClient, Credentials};
pub use flotilla_node::RaftTuning;
pub use flotilla_security::config::ClientConfigFile;
pub use http::http_get;
pub use in_process::InProcessCluster;
pub use proxy::Proxy;
pub use wait::{poll_until_async, wait_until, wait_until_async};
