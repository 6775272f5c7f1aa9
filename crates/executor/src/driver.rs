use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::{ContainerId, ContainerSpec, ContainerStatus, DriverError};

/// A container runtime as the executor sees it. Implementations are shared as
/// `Arc<dyn Driver>` and must pass `flotilla_executor::conformance`.
///
/// Every call is one idempotent-where-possible step: `stop` of a stopped container and
/// `remove` of a missing one succeed, so a retried step never turns into an error.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Short name for logs and metrics ("docker", "process").
    fn name(&self) -> &'static str;

    /// Creates without starting. Fails with `AlreadyExists` if the name is taken and
    /// `ImageNotFound` if the image is missing and cannot be pulled quickly.
    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId, DriverError>;

    /// Starts a created (or exited) container; Ok if it is already running.
    async fn start(&self, id: &ContainerId) -> Result<(), DriverError>;

    /// SIGTERM, then SIGKILL once `grace` has passed. Ok if already stopped.
    async fn stop(&self, id: &ContainerId, grace: Duration) -> Result<(), DriverError>;

    /// Removes the container, killing it if it still runs. Ok if it is already gone.
    async fn remove(&self, id: &ContainerId) -> Result<(), DriverError>;

    async fn inspect(&self, id: &ContainerId) -> Result<ContainerStatus, DriverError>;

    /// Every container carrying all of `labels`, running or not.
    async fn list(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ContainerStatus>, DriverError>;

    /// One item per line. A missing container is reported as the stream's first item.
    /// With `follow`, the stream ends once the container has stopped and its output is
    /// drained.
    fn logs(&self, id: &ContainerId, options: LogOptions) -> Logs;

    /// Runs `cmd` beside the workload (inside the container; on the host with the
    /// container's env for processes). Fails with `Timeout` after `timeout`.
    async fn exec(&self, id: &ContainerId, cmd: &[String], timeout: Duration) -> Result<ExecOutput, DriverError>;
}

pub type Logs = BoxStream<'static, Result<LogLine, DriverError>>;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    /// Only the last `n` lines that exist when the call is made. The process driver
    /// keeps stdout and stderr in separate files and applies `n` to each.
    pub tail: Option<usize>,
    /// Only lines written at or after this Unix millisecond. The process driver keeps no
    /// time per line: it skips a stream whose file was last written before then and keeps
    /// every line of one written since.
    pub since_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub stream: LogStream,
    /// The line without its trailing newline.
    pub text: String,
    /// When the workload wrote it (Unix milliseconds), if the driver knows.
    #[serde(default)]
    pub at_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogStream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    pub exit_code: i64,
    /// stdout and stderr together.
    pub output: String,
}
