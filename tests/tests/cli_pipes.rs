//! The CLI under a closed pipe (`… | head -1`): it exits 0 without a panic message, as Unix
//! tools do, for a one-shot output and for a watch.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use flotilla_testkit::{flotilla_bin, wait_child, Cluster};
use flotilla_tests::{ok, spec};

const T: Duration = Duration::from_secs(30);

/// Starts the CLI with `args`, reads one line of its output and closes the pipe, as
/// `head -1` does; then runs `after` (which should make the CLI write again).
fn first_line_then_close(
    addrs: Option<(&str, &std::path::Path)>,
    args: &[&str],
    after: impl FnOnce(),
) -> (std::process::ExitStatus, String) {
    let mut cmd = Command::new(flotilla_bin());
    if let Some((addrs, config)) = addrs {
        cmd.arg("--addr").arg(addrs).env("FLOTILLA_CONFIG", config);
    }
    let mut child = cmd
        .args(args)
        .env_remove("FLOTILLA_ADDR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run flotilla");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("one line");
    assert!(!line.is_empty(), "no output from flotilla {args:?}");
    drop(reader);
    after();
    let status = wait_child(&mut child, T).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("flotilla {args:?} still runs after its reader went away");
    });
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr).expect("stderr");
    (status, stderr)
}

#[test]
fn completion_into_a_closed_pipe_exits_0_quietly() {
    let (status, stderr) = first_line_then_close(None, &["completion", "bash"], || {});
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_tasks_watch_into_a_closed_pipe_exits_0_quietly() {
    let cluster = Cluster::builder(1).driver("process").start();
    cluster.wait_for_leader(T).await;
    let addrs = cluster.addrs();
    let (status, stderr) = first_line_then_close(
        Some((&addrs, &cluster.creds.config_path())),
        &["get", "tasks", "-w"],
        || {
            // A change makes the watch print again, into the closed pipe.
            let file = cluster.write_file("web.yaml", &spec("web", 1));
            ok(cluster.cli_at(&addrs, &["apply", "-f", file.to_str().expect("utf-8")]));
        },
    );
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    cluster.cleanup_workloads();
}
