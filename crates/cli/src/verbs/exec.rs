//! `exec [-i] [-t] TASK -- CMD…`: a command inside a running task, through any node.
//! With `-t` the local terminal is put in raw mode (restored on every way out) and its
//! size follows the window; with `-i` stdin is sent. The CLI exits with the command's code.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;

use flotilla_proto::v1::exec_input::Input;
use flotilla_proto::v1::exec_output::Output;
use flotilla_proto::v1::{ExecInput, ExecResize, ExecStart};
use nix::sys::termios::{self, SetArg, Termios};
use tokio::sync::mpsc;

use crate::client::Client;
use crate::error::CliError;

pub struct Options {
    pub interactive: bool,
    pub tty: bool,
}

/// The terminal as it was before raw mode; put back when dropped.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// (rows, cols) of the terminal on stdin, stdout or stderr; `None` without one.
fn terminal_size() -> Option<(u32, u32)> {
    for fd in [libc::STDIN_FILENO, libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        let mut size = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one `winsize` into the pointer, which is valid for the
        // call; a bad fd only makes it fail.
        let ok = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size as *mut libc::winsize) } == 0;
        if ok && size.ws_row > 0 && size.ws_col > 0 {
            return Some((u32::from(size.ws_row), u32::from(size.ws_col)));
        }
    }
    None
}

fn message(input: Input) -> ExecInput {
    ExecInput { input: Some(input) }
}

/// Runs the exec; its exit code on success.
pub async fn exec(client: &Client, task: &str, cmd: Vec<String>, options: Options) -> Result<i32, CliError> {
    if cmd.is_empty() {
        return Err(CliError::Usage(
            "exec: give a command after the task: `exec TASK -- CMD…`".into(),
        ));
    }
    // `web.1`: the slot's current task.
    let task = if task.matches('.').count() == 1 {
        super::tasks::resolve(client, task, false).await?.1.id
    } else {
        task.to_string()
    };
    let (rows, cols) = if options.tty {
        terminal_size().unwrap_or((0, 0))
    } else {
        (0, 0)
    };
    let (tx, rx) = mpsc::channel(16);
    let start = ExecStart {
        task,
        cmd,
        tty: options.tty,
        stdin: options.interactive,
        rows,
        cols,
    };
    let _ = tx.send(message(Input::Start(start))).await;
    let mut output = client.exec(rx).await?;
    // Raw only once the exec runs, so errors before it print as usual.
    let raw = (options.tty && std::io::stdin().is_terminal())
        .then(RawMode::enter)
        .flatten();
    let result = relay(&mut output, tx, options).await;
    drop(raw);
    result
}

async fn relay(
    output: &mut tonic::Streaming<flotilla_proto::v1::ExecOutput>,
    tx: mpsc::Sender<ExecInput>,
    options: Options,
) -> Result<i32, CliError> {
    if options.interactive {
        let tx = tx.clone();
        // Blocking reads on their own thread; it dies with the process.
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = tx.blocking_send(message(Input::StdinClosed(true)));
                        return;
                    }
                    Ok(n) => {
                        if tx.blocking_send(message(Input::Stdin(buf[..n].to_vec()))).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    if options.tty {
        let tx = tx.clone();
        if let Ok(mut winch) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()) {
            tokio::spawn(async move {
                while winch.recv().await.is_some() {
                    if let Some((rows, cols)) = terminal_size() {
                        if tx
                            .send(message(Input::Resize(ExecResize { rows, cols })))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    }
    // `tx` stays open until the command ends: closing it would end the input stream.
    let _keep = tx;
    loop {
        let msg = output.message().await.map_err(|s| CliError::from_status(&s))?;
        let Some(msg) = msg else {
            return Err(CliError::Failed(
                "the exec ended without an exit code (the node running it went away?)".into(),
            ));
        };
        match msg.output {
            Some(Output::Stdout(bytes)) => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&bytes);
                let _ = out.flush();
            }
            Some(Output::Stderr(bytes)) => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(&bytes);
                let _ = err.flush();
            }
            Some(Output::ExitCode(code)) => return Ok(code),
            Some(Output::Error(e)) => return Err(CliError::Failed(format!("exec: {e}"))),
            None => {}
        }
    }
}
