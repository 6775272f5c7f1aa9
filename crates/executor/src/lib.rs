//! flotilla-executor owns the node side of running workloads: the `Driver` trait and its
//! data types, the process driver, the driver conformance suite every driver runs, and
//! the wall clock (`now_ms`) the control loop and the node read too.
//! It must never depend on bollard or any engine client: those live in driver crates.

mod bridge;
mod clock;
mod driver;
mod error;
pub mod labels;
mod log_rotation;
pub mod process;
mod spec;
mod status;
pub mod task_loop;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use bridge::Bridge;
pub use clock::now_ms;
pub use driver::{
    Driver, ExecChunk, ExecInput, ExecOutput, ExecRequest, ExecSession, LogLine, LogOptions, LogStream, Logs, TaskStats,
};
pub use error::DriverError;
pub use labels::{LABEL_CLUSTER, LABEL_NODE, LABEL_SERVICE, LABEL_SLOT, LABEL_TASK};
pub use log_rotation::LogRotation;
pub use process::ProcessDriver;
pub use spec::{ContainerId, ContainerSpec, PortMapping, Protocol};
pub use status::{ContainerState, ContainerStatus};
