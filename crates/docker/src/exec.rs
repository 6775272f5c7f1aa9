//! `exec` through the engine: create an exec instance, attach to its output until it
//! closes, then read the exit code. The engine has no way to kill an exec, so on timeout
//! the command keeps running inside the container until it ends or the container does.

use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::ResizeExecOptions;
use bollard::Docker;
use flotilla_executor::{ContainerId, DriverError, ExecChunk, ExecInput, ExecOutput, ExecRequest, ExecSession};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

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

/// How many output chunks may wait for a slow reader.
const QUEUE: usize = 64;
/// How long the exit code may take to show once the output has closed.
const EXIT_WAIT: Duration = Duration::from_secs(10);

/// `req.cmd` in the container, attached both ways (see `Driver::exec_stream`).
pub(crate) async fn stream(docker: &Docker, id: &ContainerId, req: &ExecRequest) -> Result<ExecSession, DriverError> {
    if req.cmd.is_empty() {
        return Err(DriverError::InvalidSpec("exec: empty command".into()));
    }
    let config = ExecConfig {
        attach_stdin: Some(req.stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(req.tty),
        cmd: Some(req.cmd.clone()),
        ..ExecConfig::default()
    };
    let created = docker
        .create_exec(id.as_str(), config)
        .await
        .map_err(|e| match crate::error::status(&e) {
            Some(409) => DriverError::NotRunning { id: id.0.clone() },
            _ => crate::error::on_container(id, e),
        })?;
    let exec_id = created.id;
    let started = docker
        .start_exec(
            &exec_id,
            Some(StartExecOptions {
                detach: false,
                tty: req.tty,
                output_capacity: None,
            }),
        )
        .await
        .map_err(crate::error::generic)?;
    let StartExecResults::Attached { mut output, mut input } = started else {
        return Err(DriverError::Other("the engine started the exec detached".into()));
    };
    if req.tty && req.rows > 0 && req.cols > 0 {
        resize(docker, &exec_id, req.rows, req.cols).await;
    }
    let (in_tx, mut in_rx) = tokio::sync::mpsc::channel::<ExecInput>(QUEUE);
    let (out_tx, out_rx) = tokio::sync::mpsc::channel(QUEUE);
    let docker = docker.clone();
    let stdin = req.stdin;
    tokio::spawn(async move {
        let mut input_open = true;
        loop {
            tokio::select! {
                chunk = output.next() => match chunk {
                    Some(Ok(LogOutput::StdErr { message })) => {
                        if out_tx.send(Ok(ExecChunk::Stderr(message.to_vec()))).await.is_err() { return; }
                    }
                    Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                        if out_tx.send(Ok(ExecChunk::Stdout(message.to_vec()))).await.is_err() { return; }
                    }
                    Some(Ok(LogOutput::StdIn { .. })) => {}
                    Some(Err(e)) => {
                        let _ = out_tx.send(Err(crate::error::generic(e))).await;
                        return;
                    }
                    None => break,
                },
                msg = in_rx.recv(), if input_open => match msg {
                    Some(ExecInput::Stdin(bytes)) if stdin => {
                        if input.write_all(&bytes).await.is_err() || input.flush().await.is_err() {
                            input_open = false;
                        }
                    }
                    Some(ExecInput::Stdin(_)) => {}
                    Some(ExecInput::Resize { rows, cols }) => resize(&docker, &exec_id, rows, cols).await,
                    Some(ExecInput::CloseStdin) | None => {
                        let _ = input.shutdown().await;
                        input_open = false;
                    }
                },
                // The caller went away. The engine cannot kill an exec: closing its input
                // (end of file, a hang-up for a terminal) is all we can do.
                () = out_tx.closed() => return,
            }
        }
        let deadline = tokio::time::Instant::now() + EXIT_WAIT;
        let last = loop {
            match docker.inspect_exec(&exec_id).await {
                Ok(info) if info.running == Some(false) && info.exit_code.is_some() => {
                    break Ok(ExecChunk::Exit(info.exit_code.unwrap_or(-1)))
                }
                Ok(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(EXIT_POLL).await,
                Ok(_) => {
                    break Err(DriverError::Other(
                        "the exec's output closed but it did not exit".into(),
                    ))
                }
                Err(e) => break Err(crate::error::generic(e)),
            }
        };
        let _ = out_tx.send(last).await;
    });
    Ok(ExecSession {
        input: in_tx,
        output: out_rx,
    })
}

async fn resize(docker: &Docker, exec_id: &str, rows: u16, cols: u16) {
    let size = ResizeExecOptions {
        h: i32::from(rows),
        w: i32::from(cols),
    };
    if let Err(e) = docker.resize_exec(exec_id, size).await {
        tracing::debug!(exec = exec_id, error = %e, "resizing an exec failed");
    }
}
