//! `exec` through the engine: create an exec instance, attach to its output until it
//! closes, then read the exit code. The engine has no way to kill an exec, so on timeout
//! the command keeps running inside the container until it ends or the container does.

use std::time::Duration;

use bollard::exec::StartExecResults;
use bollard::models::ExecConfig;
use bollard::Docker;
use flotilla_executor::{ContainerId, DriverError, ExecOutput};
use futures::StreamExt;

/// The exit code appears shortly after the output closes; poll for it this often.
const EXIT_POLL: Duration = Duration::from_millis(20);

pub(crate) async fn run(
    docker: &Docker,
    id: &ContainerId,
    cmd: &[String],
    timeout: Duration,
) -> Result<ExecOutput, DriverError> {
    if cmd.is_empty() {
        return Err(DriverError::InvalidSpec("exec: empty command".into()));
    }
    tokio::time::timeout(timeout, attach(docker, id, cmd))
        .await
        .map_err(|_| DriverError::Timeout {
            what: format!("exec {:?} in {id}", cmd[0]),
            after: timeout,
        })?
}

async fn attach(docker: &Docker, id: &ContainerId, cmd: &[String]) -> Result<ExecOutput, DriverError> {
    let config = ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(cmd.to_vec()),
        ..ExecConfig::default()
    };
    let created = docker
        .create_exec(id.as_str(), config)
        .await
        .map_err(|e| match crate::error::status(&e) {
            Some(409) => DriverError::NotRunning { id: id.0.clone() },
            _ => crate::error::on_container(id, e),
        })?;
    let mut text = String::new();
    if let StartExecResults::Attached { mut output, .. } = docker
        .start_exec(&created.id, None)
        .await
        .map_err(crate::error::generic)?
    {
        while let Some(chunk) = output.next().await {
            let chunk = chunk.map_err(crate::error::generic)?;
            text.push_str(&String::from_utf8_lossy(chunk.as_ref()));
        }
    }
    loop {
        let info = docker.inspect_exec(&created.id).await.map_err(crate::error::generic)?;
        match (info.running, info.exit_code) {
            (Some(false), Some(code)) => {
                return Ok(ExecOutput {
                    exit_code: code,
                    output: text,
                })
            }
            // Still winding down; the caller's timeout bounds this.
            _ => tokio::time::sleep(EXIT_POLL).await,
        }
    }
}
