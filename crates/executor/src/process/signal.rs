//! Stopping a process "container": every process runs as the leader of its own process
//! group, so signalling the group reaches whatever the workload forked, the way a
//! container's processes all die with it.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;

use super::proc_stat::is_alive;
use crate::DriverError;

const POLL: Duration = Duration::from_millis(50);
/// SIGKILL cannot be ignored; a process still there after this is stuck in the kernel.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// SIGTERM to the group, SIGKILL once `grace` has passed; returns once the leader is dead.
/// Ok at once if the process is already gone.
pub(crate) async fn terminate(pid: i32, start_ticks: u64, grace: Duration) -> Result<(), DriverError> {
    // Dead already: its pid, and so its group id, may be anyone's by now.
    if !is_alive(pid, start_ticks) {
        return Ok(());
    }
    signal_live(pid, start_ticks, Signal::SIGTERM)?;
    if !wait_dead(pid, start_ticks, grace).await {
        signal_live(pid, start_ticks, Signal::SIGKILL)?;
        if !wait_dead(pid, start_ticks, KILL_WAIT).await {
            return Err(DriverError::Other(format!(
                "process {pid} survived SIGKILL for {KILL_WAIT:?}"
            )));
        }
    }
    // The leader is gone; like a container, nothing it started may outlive it.
    signal_group(pid, Signal::SIGKILL)?;
    Ok(())
}

/// Signals our process's group, or the process alone if it left its group. The start
/// time is checked first: the pid may belong to someone else by now.
fn signal_live(pid: i32, start_ticks: u64, signal: Signal) -> Result<(), DriverError> {
    if !is_alive(pid, start_ticks) || signal_group(pid, signal)? {
        return Ok(());
    }
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(DriverError::Other(format!("sending {signal} to {pid}: {e}"))),
    }
}

/// Signals the group led by `pid`; Ok(false) if the group is gone. A group id is not
/// reused while any member lives, so this never reaches a stranger's processes.
pub(crate) fn signal_group(pid: i32, signal: Signal) -> Result<bool, DriverError> {
    // killpg(0) is our own group and kill(-1) is every process: a damaged record must
    // never turn into either.
    if pid <= 1 {
        return Err(DriverError::Other(format!("refusing to signal pid {pid}")));
    }
    match killpg(Pid::from_raw(pid), signal) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(e) => Err(DriverError::Other(format!(
            "sending {signal} to process group {pid}: {e}"
        ))),
    }
}

async fn wait_dead(pid: i32, start_ticks: u64, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if !is_alive(pid, start_ticks) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}
