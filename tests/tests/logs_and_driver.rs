//! `flotilla logs` through any node, and the agent's `--driver` choice (process driver,
//! so these run without a container engine).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use flotilla_testkit::{flotilla_bin, wait_until, wait_until_async, Cluster};
use flotilla_tests::{json, ok, stderr, stdout};

const T: Duration = Duration::from_secs(30);

const TICKER: &str = r#"name: ticker
image: none
command: ["sh", "-c", "i=0; while true; do echo tick $i; echo warn $i >&2; i=$((i+1)); sleep 0.2; done"]
replicas: 2
stop_grace: 1s
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_stream_from_the_node_running_the_task_through_any_node() {
    let cluster = Cluster::builder(3).start();
    cluster.wait_for_leader(T).await;
    wait_until_async("three nodes registered", T, || async {
        let o = cluster.cli(&["get", "nodes", "-o", "json"]);
        (o.status.success() && json(o).as_array().map(Vec::len) == Some(3)).then_some(())
    })
    .await;
    let file = cluster.write_file("ticker.yaml", TICKER);
    ok(cluster.cli(&["apply", "-f", file.to_str().expect("path")]));
    let tasks = wait_until_async("two running tickers", T, || async {
        let o = cluster.cli(&["get", "tasks", "--service", "ticker", "-o", "json"]);
        let tasks = json(o);
        let running: Vec<(String, u64)> = tasks
            .as_array()?
            .iter()
            .filter(|t| t["state"] == "running")
            .map(|t| {
                (
                    t["id"].as_str().unwrap_or("").to_string(),
                    t["node"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        (running.len() == 2).then_some(running)
    })
    .await;

    // Ask a node that does not run the first task.
    let (task, owner) = tasks[0].clone();
    let other = cluster.ids().into_iter().find(|i| *i != owner).expect("another node");
    let lines = wait_until("two lines of the task's log", T, || {
        let out = stdout(&cluster.cli_at(&cluster.addr(other), &["logs", &task, "--tail", "2"]));
        let lines: Vec<String> = out.lines().map(String::from).collect();
        (lines.len() >= 2).then_some(lines)
    });
    // --tail counts per stream: two stdout and two stderr lines at most.
    assert!(lines.len() <= 4, "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("tick ")), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("warn ")), "{lines:?}");

    // A service: every current task's lines, prefixed with the task.
    let out = ok(cluster.cli_at(&cluster.addr(other), &["logs", "ticker", "--tail", "1"]));
    for (t, _) in &tasks {
        assert!(out.contains(&format!("{t} | ")), "{t} missing in {out}");
    }

    // Follow: lines written after the call arrive.
    let mut child = Command::new(flotilla_bin())
        .args(["--addr", &cluster.addr(other), "logs", &task, "-f", "--tail", "0"])
        .env("FLOTILLA_CONFIG", cluster.creds.config_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn logs -f");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    reader.read_line(&mut first).expect("a followed line");
    assert!(first.starts_with("tick ") || first.starts_with("warn "), "{first:?}");
    let _ = child.kill();
    let _ = child.wait();

    // Unknown names: not found, exit code 4.
    let o = cluster.cli(&["logs", "ghost"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
}

#[test]
fn driver_docker_without_an_engine_stops_the_agent_at_once() {
    let dir = tempfile_dir();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let peers = format!("1={listen}");
    let out = Command::new(flotilla_bin())
        .args(["agent", "--id", "1", "--listen", &listen, "--peers", &peers])
        .arg("--data-dir")
        .arg(&dir)
        .args(["--driver", "docker"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .expect("run agent");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("--driver docker"), "{err}");
    assert!(err.contains("/nonexistent/docker.sock"), "{err}");
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("flotilla-driver-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
