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
    /// `ImageNotFound` if the image is missing and there is no such image to pull or
    /// no registry to pull it from.
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

    /// Starts `req.cmd` beside the workload (as `exec` does) and streams it: input (stdin,
    /// terminal resizes, end of stdin) goes into the session's `input`, output comes out of
    /// its `output` and ends with [`ExecChunk::Exit`]. Dropping the session's `output`
    /// ends the command where the driver can (the process driver kills it; the engine
    /// cannot kill an exec, so it gets end-of-file on stdin and a hang-up on its terminal).
    async fn exec_stream(&self, id: &ContainerId, req: &ExecRequest) -> Result<ExecSession, DriverError> {
        let _ = (id, req);
        Err(DriverError::Other(format!(
            "interactive exec is not supported by the {} driver",
            self.name()
        )))
    }

    /// What the running container uses now: CPU, memory, network.
    async fn stats(&self, id: &ContainerId) -> Result<TaskStats, DriverError> {
        let _ = id;
        Err(DriverError::Other(format!(
            "stats are not supported by the {} driver",
            self.name()
        )))
    }
}

/// What [`Driver::exec_stream`] runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecRequest {
    pub cmd: Vec<String>,
    /// Under a pseudo-terminal: stdout and stderr are one stream then.
    pub tty: bool,
    /// Whether input will be sent; without it the command's stdin is empty.
    pub stdin: bool,
    /// The terminal's size with `tty` (0: the driver's default).
    pub rows: u16,
    pub cols: u16,
}

/// Input to a running exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecInput {
    Stdin(Vec<u8>),
    Resize {
        rows: u16,
        cols: u16,
    },
    /// End of stdin.
    CloseStdin,
}

/// Output of a running exec; `Exit` comes last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecChunk {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(i64),
}

/// A running exec: send into `input`, read `output` until `Exit` (or an error).
pub struct ExecSession {
    pub input: tokio::sync::mpsc::Sender<ExecInput>,
    pub output: tokio::sync::mpsc::Receiver<Result<ExecChunk, DriverError>>,
}

/// A running container's usage, as its driver measures it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskStats {
    /// Percent of one core (200 = two busy cores).
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    /// Network bytes received and sent; `None` when the driver cannot tell (a process
    /// shares the host's network).
    pub rx_bytes: Option<u64>,
    pub tx_bytes: Option<u64>,
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
