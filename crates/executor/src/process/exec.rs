//! `exec` for processes: the command runs on the host, in its own process group, with the
//! container's environment on top of the driver's (and, streamed, in its working
//! directory).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::signal::signal_group;
use super::spawn::{exit_code, spawn_error};
use crate::{DriverError, ExecChunk, ExecInput, ExecOutput, ExecRequest, ExecSession};

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

/// How many output chunks may wait for a slow reader before the command is slowed down.
const OUTPUT_QUEUE: usize = 64;
/// Largest output chunk sent at once.
const READ_CHUNK: usize = 32 * 1024;
/// The terminal size when the caller gives none.
const DEFAULT_SIZE: (u16, u16) = (24, 80);

/// `req.cmd` beside the process of `leader` (in its working directory when it can be read),
/// streamed: pipes, or a pseudo-terminal with `req.tty`.
pub(crate) async fn stream(
    env: &BTreeMap<String, String>,
    leader: Option<i32>,
    req: &ExecRequest,
) -> Result<ExecSession, DriverError> {
    let Some((program, args)) = req.cmd.split_first() else {
        return Err(DriverError::InvalidSpec("exec: empty command".into()));
    };
    let mut command = tokio::process::Command::new(program);
    command.args(args).envs(env).kill_on_drop(true);
    // The task's working directory, as the kernel knows it now.
    if let Some(cwd) = leader.and_then(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).ok()) {
        command.current_dir(cwd);
    }
    if req.tty {
        tty::spawn(command, program, req)
    } else {
        piped(command, program, req)
    }
}

fn piped(mut command: tokio::process::Command, program: &str, req: &ExecRequest) -> Result<ExecSession, DriverError> {
    let mut child = command
        .stdin(if req.stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| spawn_error(program, e))?;
    let (in_tx, mut in_rx) = tokio::sync::mpsc::channel::<ExecInput>(OUTPUT_QUEUE);
    let (out_tx, out_rx) = tokio::sync::mpsc::channel(OUTPUT_QUEUE);
    let mut stdin = child.stdin.take();
    let readers = [
        child.stdout.take().map(|r| pump(r, out_tx.clone(), ExecChunk::Stdout)),
        child.stderr.take().map(|r| pump(r, out_tx.clone(), ExecChunk::Stderr)),
    ];
    let pid = child.id();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                input = in_rx.recv(), if stdin.is_some() => match input {
                    Some(ExecInput::Stdin(bytes)) => {
                        let w = stdin.as_mut().expect("checked");
                        if w.write_all(&bytes).await.is_err() || w.flush().await.is_err() {
                            stdin = None;
                        }
                    }
                    Some(ExecInput::CloseStdin) | None => stdin = None,
                    Some(ExecInput::Resize { .. }) => {}
                },
                // The caller went away: end the command and all it started.
                () = out_tx.closed() => {
                    if let Some(pid) = pid {
                        let _ = signal_group(pid as i32, Signal::SIGKILL);
                    }
                    return;
                }
            }
        };
        drop(stdin);
        for reader in readers.into_iter().flatten() {
            // Output still buffered in the pipes arrives before the exit code; a child it
            // left behind holding them open is not waited for long.
            let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
        }
        if let Some(pid) = pid {
            let _ = signal_group(pid as i32, Signal::SIGKILL);
        }
        let last = match status {
            Ok(status) => Ok(ExecChunk::Exit(exit_code(status))),
            Err(e) => Err(DriverError::Io(e)),
        };
        let _ = out_tx.send(last).await;
    });
    Ok(ExecSession {
        input: in_tx,
        output: out_rx,
    })
}

/// Copies `reader` into `out` as chunks made by `wrap`, until end of file.
fn pump<R>(
    mut reader: R,
    out: tokio::sync::mpsc::Sender<Result<ExecChunk, DriverError>>,
    wrap: fn(Vec<u8>) -> ExecChunk,
) -> tokio::task::JoinHandle<()>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if out.send(Ok(wrap(buf[..n].to_vec()))).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
}

/// A command under a pseudo-terminal: the slave side is its stdin, stdout, stderr and
/// controlling terminal (in a new session); the master side is read and written here.
mod tty {
    use std::io::{Read, Write};
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::time::Duration;

    use nix::pty::{openpty, Winsize};
    use nix::sys::signal::Signal;

    use super::{exit_code, signal_group, spawn_error, OUTPUT_QUEUE, READ_CHUNK};
    use crate::{DriverError, ExecChunk, ExecInput, ExecRequest, ExecSession};

    fn winsize(rows: u16, cols: u16) -> Winsize {
        let (r, c) = super::DEFAULT_SIZE;
        Winsize {
            ws_row: if rows == 0 { r } else { rows },
            ws_col: if cols == 0 { c } else { cols },
            ws_xpixel: 0,
            ws_ypixel: 0,
        }
    }

    fn resize(master: &OwnedFd, rows: u16, cols: u16) {
        let size = winsize(rows, cols);
        // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which outlives the call;
        // the fd is open (borrowed from an OwnedFd).
        unsafe {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size as *const Winsize);
        }
    }

    pub(super) fn spawn(
        mut command: tokio::process::Command,
        program: &str,
        req: &ExecRequest,
    ) -> Result<ExecSession, DriverError> {
        let size = winsize(req.rows, req.cols);
        let pty = openpty(Some(&size), None).map_err(|e| DriverError::Other(format!("openpty: {e}")))?;
        let slave = pty.slave;
        let io = |fd: &OwnedFd| -> Result<std::process::Stdio, DriverError> { Ok(fd.try_clone()?.into()) };
        command.stdin(io(&slave)?).stdout(io(&slave)?).stderr(io(&slave)?);
        // SAFETY: between fork and exec the child calls only async-signal-safe functions
        // (setsid, ioctl) and allocates nothing.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid()?;
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| spawn_error(program, e))?;
        // Only the child holds the slave now: the master reads end of file (EIO) once it
        // and everything it started have closed it.
        drop(command);
        drop(slave);
        let pid = child.id();
        let master = pty.master;
        let mut reader = std::fs::File::from(master.try_clone()?);
        let mut writer = std::fs::File::from(master.try_clone()?);
        let (in_tx, mut in_rx) = tokio::sync::mpsc::channel::<ExecInput>(OUTPUT_QUEUE);
        let (out_tx, out_rx) = tokio::sync::mpsc::channel(OUTPUT_QUEUE);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let out = out_tx.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; READ_CHUNK];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if out.blocking_send(Ok(ExecChunk::Stdout(buf[..n].to_vec()))).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = done_tx.send(());
        });
        // Writes to the terminal may block (a full input queue): on their own thread.
        let (write_tx, write_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            for bytes in write_rx {
                if writer.write_all(&bytes).is_err() {
                    break;
                }
            }
        });
        let stdin = req.stdin;
        tokio::spawn(async move {
            let mut input_open = true;
            let status = loop {
                tokio::select! {
                    status = child.wait() => break status,
                    input = in_rx.recv(), if input_open => match input {
                        Some(ExecInput::Stdin(bytes)) if stdin => { let _ = write_tx.send(bytes); }
                        Some(ExecInput::Stdin(_)) => {}
                        Some(ExecInput::Resize { rows, cols }) => resize(&master, rows, cols),
                        // End of input on a terminal: its end-of-file character.
                        Some(ExecInput::CloseStdin) => { let _ = write_tx.send(vec![4]); }
                        None => input_open = false,
                    },
                    () = out_tx.closed() => {
                        if let Some(pid) = pid {
                            let _ = signal_group(pid as i32, Signal::SIGHUP);
                            let _ = signal_group(pid as i32, Signal::SIGKILL);
                        }
                        let _ = child.wait().await;
                        return;
                    }
                }
            };
            if let Some(pid) = pid {
                let _ = signal_group(pid as i32, Signal::SIGKILL);
            }
            // What the command wrote before it exited, then the code.
            let _ = tokio::time::timeout(Duration::from_secs(2), done_rx).await;
            drop(master);
            let last = match status {
                Ok(status) => Ok(ExecChunk::Exit(exit_code(status))),
                Err(e) => Err(DriverError::Io(e)),
            };
            let _ = out_tx.send(last).await;
        });
        Ok(ExecSession {
            input: in_tx,
            output: out_rx,
        })
    }
}
