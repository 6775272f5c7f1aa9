//! Starting a process and keeping its exit code: the child is spawned into its own
//! process group with stdout/stderr appended to the container's log files, and a task
//! waits on it to write the exit code into the record.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;

use nix::sys::signal::Signal;

use super::record::{save, Layout, Record, Run};
use super::{proc_stat, signal, Inner};
use crate::{now_ms, ContainerId, DriverError, LogStream};

/// Spawns `record`'s command and stores the new run in it (and on disk).
pub(crate) async fn start(inner: &Arc<Inner>, dir: &Path, record: &mut Record) -> Result<(), DriverError> {
    let argv: Vec<&String> = record.spec.command.iter().chain(&record.spec.args).collect();
    let Some((program, args)) = argv.split_first() else {
        return Err(DriverError::InvalidSpec("command and args are both empty".into()));
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(&record.spec.env)
        .stdin(Stdio::null())
        .stdout(append(&Layout::log(dir, LogStream::Stdout))?)
        .stderr(append(&Layout::log(dir, LogStream::Stderr))?)
        // Its own group, so stop can signal everything the workload forks.
        .process_group(0);
    let mut child = command.spawn().map_err(|e| spawn_error(program, e))?;
    let pid = child
        .id()
        .ok_or_else(|| DriverError::Other("spawned child has no pid".into()))? as i32;
    // Not yet reaped (nobody waited), so its stat is readable even if it already exited.
    let Some(stat) = proc_stat::read(pid) else {
        let _ = child.kill().await;
        return Err(DriverError::Other(format!("no /proc entry for child {pid}")));
    };
    let run = Run {
        pid,
        start_ticks: stat.start_ticks,
        started_at_ms: now_ms(),
        exit_code: None,
        finished_at_ms: None,
    };
    record.run = Some(run);
    inner.watch(&record.id, pid);
    if let Err(e) = save(dir, record).await {
        let _ = signal::signal_group(pid, Signal::SIGKILL);
        let _ = child.wait().await;
        inner.unwatch(&record.id, pid);
        return Err(e);
    }
    tokio::spawn(wait_exit(
        inner.clone(),
        record.id.clone(),
        dir.to_path_buf(),
        child,
        run,
    ));
    Ok(())
}

/// Waits for the child and records its exit code. The container counts as running
/// until this has written the code (see `Inner::watched`).
async fn wait_exit(
    inner: Arc<Inner>,
    id: ContainerId,
    dir: std::path::PathBuf,
    mut child: tokio::process::Child,
    run: Run,
) {
    // Dropped last, after the record is written, even if this task is cancelled.
    let _unwatch = Unwatch {
        inner: inner.clone(),
        id: id.clone(),
        pid: run.pid,
    };
    // While it runs, its log files are rotated when they grow past the limit.
    let mut rotate = tokio::time::interval(ROTATE_CHECK);
    rotate.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let waited = loop {
        tokio::select! {
            waited = child.wait() => break waited,
            _ = rotate.tick() => rotate_logs(&inner.rotation, &id, &dir).await,
        }
    };
    let code = match waited {
        Ok(status) => exit_code(status),
        Err(e) => {
            tracing::warn!(container = %id, error = %e, "waiting on process failed");
            -1
        }
    };
    // Anything the leader forked dies with it, as in a container. Survivors keep the
    // group id from being reused; with none left this finds nothing, and a stranger's new
    // group taking the id in the microseconds since the reap is a risk we accept.
    let _ = signal::signal_group(run.pid, Signal::SIGKILL);
    let _lock = inner.write_lock.lock().await;
    let mut record = match super::record::load(&dir).await {
        Ok(Some(record)) => record,
        // Removed meanwhile: nothing to record.
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(container = %id, error = %e, "cannot record exit code");
            return;
        }
    };
    let Some(current) = record.run.as_mut() else {
        return;
    };
    if current.pid != run.pid || current.start_ticks != run.start_ticks {
        return;
    }
    current.exit_code = Some(code);
    current.finished_at_ms = Some(now_ms());
    if let Err(e) = save(&dir, &record).await {
        tracing::warn!(container = %id, error = %e, "cannot record exit code");
    }
}

/// How often a running process's log files are checked against the rotation limit.
const ROTATE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

async fn rotate_logs(rotation: &crate::LogRotation, id: &ContainerId, dir: &Path) {
    for stream in [LogStream::Stdout, LogStream::Stderr] {
        let path = Layout::log(dir, stream);
        let rotation = *rotation;
        let rotated = tokio::task::spawn_blocking(move || rotation.rotate(&path)).await;
        match rotated {
            Ok(Ok(true)) => tracing::debug!(container = %id, ?stream, "log rotated"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(container = %id, ?stream, error = %e, "cannot rotate log"),
            Err(e) => tracing::warn!(container = %id, error = %e, "log rotation task failed"),
        }
    }
}

struct Unwatch {
    inner: Arc<Inner>,
    id: ContainerId,
    pid: i32,
}

impl Drop for Unwatch {
    fn drop(&mut self) {
        self.inner.unwatch(&self.id, self.pid);
    }
}

fn append(path: &Path) -> Result<std::fs::File, DriverError> {
    Ok(std::fs::OpenOptions::new().create(true).append(true).open(path)?)
}

/// Docker's convention, so both drivers report the same codes: 128+signal when killed.
pub(crate) fn exit_code(status: ExitStatus) -> i64 {
    match (status.code(), status.signal()) {
        (Some(code), _) => i64::from(code),
        (None, Some(signal)) => 128 + i64::from(signal),
        (None, None) => -1,
    }
}

/// A command that cannot be executed is the spec's fault, not a passing failure.
pub(crate) fn spawn_error(program: &str, e: std::io::Error) -> DriverError {
    match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
            DriverError::InvalidSpec(format!("cannot execute {program:?}: {e}"))
        }
        _ => DriverError::Io(e),
    }
}
