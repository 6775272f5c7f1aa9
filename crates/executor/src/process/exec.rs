//! `exec` for processes: the command runs on the host, in its own process group, with the
//! container's environment on top of the driver's.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::signal::signal_group;
use super::spawn::{exit_code, spawn_error};
use crate::{DriverError, ExecOutput};

pub(crate) async fn run(
    env: &BTreeMap<String, String>,
    cmd: &[String],
    timeout: Duration,
) -> Result<ExecOutput, DriverError> {
    let Some((program, args)) = cmd.split_first() else {
        return Err(DriverError::InvalidSpec("exec: empty command".into()));
    };
    let child = tokio::process::Command::new(program)
        .args(args)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| spawn_error(program, e))?;
    let pid = child.id();
    // The timed-out future, and with it the child, lives until the end of this match: the
    // unreaped leader, or a member still holding the output pipes, keeps the group id from
    // being reused before we kill the group.
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(output) => {
            let output = output?;
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            Ok(ExecOutput {
                exit_code: exit_code(output.status),
                output: text,
            })
        }
        Err(_) => {
            if let Some(pid) = pid {
                let _ = signal_group(pid as i32, Signal::SIGKILL);
            }
            Err(DriverError::Timeout {
                what: format!("exec {program:?}"),
                after: timeout,
            })
        }
    }
}
