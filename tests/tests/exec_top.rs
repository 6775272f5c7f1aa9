//! `flotilla exec` and `flotilla top` through a node that does not run the task, on the
//! process driver and on Docker; `exec -it` under a real pseudo-terminal (`script`).

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use flotilla_testkit::{docker, flotilla_bin, wait_until, wait_until_async, Cluster};
use flotilla_tests::{json, ok, stderr, stdout};

const T: Duration = Duration::from_secs(60);

fn spec(image: &str) -> String {
    format!(
        "name: shell\nimage: {image}\ncommand: [\"sh\", \"-c\", \"echo started; exec sleep 600\"]\n\
         env: {{GREETING: hi-from-env}}\nreplicas: 1\nstop_grace: 1s\n"
    )
}

/// Waits for three ready nodes, applies the spec and returns (task, its node, another node).
async fn one_running_task(cluster: &Cluster, image: &str) -> (String, u64, u64) {
    cluster.wait_for_leader(T).await;
    wait_until_async("three nodes registered", T, || async {
        let o = cluster.cli(&["get", "nodes", "-o", "json"]);
        (o.status.success() && json(o).as_array().map(Vec::len) == Some(3)).then_some(())
    })
    .await;
    let file = cluster.write_file("shell.yaml", &spec(image));
    ok(cluster.cli(&["apply", "-f", file.to_str().expect("path")]));
    let (task, owner) = wait_until("a running task", T, || {
        let tasks = json(cluster.cli(&["get", "tasks", "--service", "shell", "-o", "json"]));
        let t = tasks.as_array()?.iter().find(|t| t["state"] == "running")?.clone();
        Some((t["id"].as_str()?.to_string(), t["node"].as_u64()?))
    });
    let other = cluster.ids().into_iter().find(|i| *i != owner).expect("another node");
    (task, owner, other)
}

/// A client config for a new token of `role`.
fn token_config(cluster: &Cluster, role: &str) -> std::path::PathBuf {
    let path = cluster.root().join(format!("{role}-{}.yaml", rand::random::<u32>()));
    let p = path.to_str().expect("utf-8");
    ok(cluster.cli(&["token", "create", "--role", role, "--write-config", p]));
    path
}

fn cli_as(addr: &str, config: &std::path::Path, args: &[&str]) -> Output {
    Command::new(flotilla_bin())
        .arg("--addr")
        .arg(addr)
        .args(args)
        .env_remove("FLOTILLA_ADDR")
        .env("FLOTILLA_CONFIG", config)
        .output()
        .expect("run flotilla")
}

/// The non-interactive checks every driver passes, through `other` (not the task's node).
fn exec_passes_output_and_exit_code(cluster: &Cluster, task: &str, other: u64) {
    let addr = cluster.addr(other);
    let o = cluster.cli_at(
        &addr,
        &["exec", task, "--", "sh", "-c", "echo out; echo err >&2; exit 7"],
    );
    assert_eq!(
        o.status.code(),
        Some(7),
        "stdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(stderr(&o), "err\n");

    // The task's environment; stdin with -i.
    let o = cluster.cli_at(&addr, &["exec", task, "--", "sh", "-c", "echo $GREETING"]);
    assert_eq!(ok(o), "hi-from-env\n");
    let mut child = Command::new(flotilla_bin())
        .args([
            "--addr",
            &addr,
            "exec",
            "-i",
            task,
            "--",
            "sh",
            "-c",
            "read line; echo got $line",
        ])
        .env("FLOTILLA_CONFIG", cluster.creds.config_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn exec -i");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"ping\n")
        .expect("write stdin");
    let o = child.wait_with_output().expect("exec -i");
    assert_eq!(ok(o), "got ping\n");

    // Unknown task: not found (4). A command that cannot run: failed, not a hang.
    let o = cluster.cli_at(&addr, &["exec", "nope.0.1", "--", "true"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));

    // A viewer may not exec (5); it may use top.
    let viewer = token_config(cluster, "viewer");
    let o = cli_as(&addr, &viewer, &["exec", task, "--", "true"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("operator"), "{}", stderr(&o));

    // Every exec is an event, naming the token.
    let events = ok(cluster.cli_at(&addr, &["events"]));
    let exec_events: Vec<&str> = events.lines().filter(|l| l.contains("task.exec")).collect();
    assert!(exec_events.len() >= 3, "{events}");
    assert!(
        exec_events
            .iter()
            .any(|l| l.contains(task) && l.contains("sh -c echo out") && l.contains("by token")),
        "{exec_events:?}"
    );
}

/// `exec -it TASK -- sh` inside `script` (a real pseudo-terminal of a set size): the shell
/// sees a terminal of that size, runs what is typed, and its exit code comes back.
fn exec_it_under_a_pty(cluster: &Cluster, task: &str, other: u64) {
    let inner = format!(
        "stty rows 33 cols 101; exec {} --addr {} exec -it {task} -- sh",
        flotilla_bin().display(),
        cluster.addr(other)
    );
    let mut child = Command::new("script")
        .args(["-qfec", &inner, "/dev/null"])
        .env("FLOTILLA_CONFIG", cluster.creds.config_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn script");
    let mut stdin = child.stdin.take().expect("stdin");
    // Typed once the shell is up; `hel''lo` echoes back as typed, so only the command's
    // output has `hello`.
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        let _ = stdin.write_all(b"stty size; tty; echo hel''lo; exit 3\n");
        std::thread::sleep(Duration::from_secs(20));
    });
    let status = flotilla_testkit::wait_child(&mut child, T).expect("exec -it ends");
    let mut out = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out);
    assert_eq!(status.code(), Some(3), "{out}");
    assert!(out.contains("hello"), "{out}");
    assert!(out.contains("33 101"), "the remote terminal has the local size: {out}");
    assert!(out.contains("/dev/pts/"), "{out}");
}

/// A window resized during `exec -it` (SIGWINCH to the CLI) resizes the remote terminal.
fn exec_it_follows_the_window(cluster: &Cluster, task: &str, other: u64) {
    // The CLI runs in the background of `script`'s shell (its stdin kept on the terminal
    // through fd 3), which then resizes the terminal: the kernel signals the CLI.
    let inner = format!(
        "stty rows 33 cols 101; exec 3<&0; {} --addr {} exec -it {task} -- sh <&3 & sleep 3; stty rows 40 cols \
         120; wait $!",
        flotilla_bin().display(),
        cluster.addr(other)
    );
    let mut child = Command::new("script")
        .args(["-qfec", &inner, "/dev/null"])
        .env("FLOTILLA_CONFIG", cluster.creds.config_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn script");
    let mut stdin = child.stdin.take().expect("stdin");
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(5));
        let _ = stdin.write_all(b"stty size; exit 4\n");
        std::thread::sleep(Duration::from_secs(20));
    });
    let status = flotilla_testkit::wait_child(&mut child, T).expect("exec -it ends");
    let mut out = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out);
    assert_eq!(status.code(), Some(4), "{out}");
    assert!(out.contains("40 120"), "the remote terminal follows the window: {out}");
}

/// `top -o json` shows the running task, with memory.
fn top_lists_the_task(cluster: &Cluster, task: &str, owner: u64, other: u64, network: bool) {
    let top = json(cluster.cli_at(&cluster.addr(other), &["top", "-o", "json"]));
    let rows = top["tasks"].as_array().expect("tasks");
    // Each task once, from the node that runs it (the nodes share one engine here).
    let tasks: Vec<&str> = rows.iter().filter_map(|r| r["task"].as_str()).collect();
    let unique: std::collections::BTreeSet<&str> = tasks.iter().copied().collect();
    assert_eq!(tasks.len(), unique.len(), "a task listed twice: {top}");
    let row = rows
        .iter()
        .find(|r| r["task"] == task)
        .unwrap_or_else(|| panic!("{top}"));
    assert_eq!(row["service"], "shell", "{top}");
    assert_eq!(row["node"].as_u64(), Some(owner), "{top}");
    assert!(row["memory_bytes"].as_u64().unwrap_or(0) > 0, "{top}");
    assert!(row["cpu_percent"].as_f64().is_some(), "{top}");
    assert_eq!(row["rx_bytes"].is_u64(), network, "{top}");
    assert_eq!(top["unreachable"].as_array().map(Vec::len), Some(0), "{top}");
    // The table, as a viewer.
    let viewer = token_config(cluster, "viewer");
    let table = ok(cli_as(&cluster.addr(other), &viewer, &["top"]));
    assert!(table.starts_with("TASK"), "{table}");
    assert!(table.contains(task), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_top_on_the_process_driver_through_another_node() {
    let cluster = Cluster::builder(3).start();
    let (task, owner, other) = one_running_task(&cluster, "none").await;
    exec_passes_output_and_exit_code(&cluster, &task, other);
    exec_it_under_a_pty(&cluster, &task, other);
    exec_it_follows_the_window(&cluster, &task, other);
    top_lists_the_task(&cluster, &task, owner, other, false);
    // The task's working directory: that of its process.
    let o = cluster.cli_at(&cluster.addr(other), &["exec", &task, "--", "pwd"]);
    let cwd = std::fs::read_link(format!("/proc/{}/cwd", cluster.agent(owner).pid().expect("pid")));
    assert_eq!(ok(o).trim(), cwd.expect("agent cwd").to_str().expect("utf-8"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_top_on_docker_through_another_node() {
    if !docker::docker_or_skip("exec_and_top_on_docker_through_another_node") {
        return;
    }
    let cluster = Cluster::builder(3).driver("docker").start();
    let (task, owner, other) = one_running_task(&cluster, docker::WORKLOAD_IMAGE).await;
    exec_passes_output_and_exit_code(&cluster, &task, other);
    exec_it_under_a_pty(&cluster, &task, other);
    exec_it_follows_the_window(&cluster, &task, other);
    top_lists_the_task(&cluster, &task, owner, other, true);
    cluster.cleanup_workloads();
}
