//! Issue "The operator's CLI": every verb against a real 3-node cluster (process driver),
//! exit codes, the generated reference, and snapshots of tables and error messages.

use std::time::Duration;

use assert_cmd::Command;
use flotilla_testkit::{flotilla_bin, wait_until_async, Cluster};
use flotilla_tests::{json, ok, spec, stderr, stdout};

const T: Duration = Duration::from_secs(30);

fn cli(cluster: &Cluster) -> Command {
    let mut c = Command::new(flotilla_bin());
    c.arg("--addr")
        .arg(cluster.live_addrs())
        .env_remove("FLOTILLA_ADDR")
        .env("FLOTILLA_CONFIG", cluster.creds.config_path());
    c
}

/// Ports and ages vary between runs; the snapshots keep the tables' widths.
fn normalize(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut l = line.to_string();
        while let Some(i) = l.find("127.0.0.1:") {
            let rest = &l[i + 10..];
            let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
            l = format!("{}127_0_0_1:{}{}", &l[..i], "P".repeat(digits), &rest[digits..]);
        }
        let words: Vec<String> = l
            .split(' ')
            .map(|w| {
                let is_age = w.len() >= 2
                    && w[..w.len() - 1].chars().all(|c| c.is_ascii_digit())
                    && matches!(w.chars().last(), Some('s' | 'm' | 'h' | 'd'));
                // Any age ("3s", "12s", "2m") reads "??": a slow run must not change the
                // snapshot (ages sit in columns wider than they are).
                if is_age {
                    "??".to_string()
                } else {
                    w.to_string()
                }
            })
            .collect();
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
}

async fn ready_cluster() -> Cluster {
    let cluster = Cluster::builder(3)
        .agent_args(&[
            "--cpu",
            "2",
            "--memory",
            "1024",
            "--label",
            "zone=a",
            "--node-timeout",
            "2s",
        ])
        .start();
    cluster.wait_for_leader(T).await;
    wait_until_async("three nodes registered", T, || async {
        let o = cluster.cli(&["get", "nodes", "-o", "json"]);
        (o.status.success() && json(o).as_array().map(Vec::len) == Some(3)).then_some(())
    })
    .await;
    cluster
}

fn last_log_index(cluster: &Cluster) -> u64 {
    let status = json(cluster.cli(&["cluster", "status", "-o", "json"]));
    status["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["last_log_index"].as_u64())
        .max()
        .expect("an index")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_reports_changes_and_writes_nothing_when_unchanged_or_dry() {
    let cluster = ready_cluster().await;
    let dir = cluster.root().join("specs");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("a.yaml"), format!("{}---\n{}", spec("one", 0), spec("two", 0))).expect("write");
    std::fs::write(
        dir.join("b.json"),
        r#"{"name": "three", "image": "x", "command": ["sleep", "60"], "replicas": 0}"#,
    )
    .expect("write");

    let out = stdout(
        &cli(&cluster)
            .args(["apply", "-f"])
            .arg(&dir)
            .assert()
            .success()
            .get_output()
            .clone(),
    );
    assert!(out.contains("service/one created (version 1)"), "{out}");
    assert!(out.contains("service/two created (version 1)"), "{out}");
    assert!(out.contains("service/three created (version 1)"), "{out}");

    // The same input again: unchanged, and the log does not move (no replicas, so no
    // task activity writes meanwhile).
    let before = last_log_index(&cluster);
    let out = stdout(
        &cli(&cluster)
            .args(["apply", "-f"])
            .arg(&dir)
            .assert()
            .success()
            .get_output()
            .clone(),
    );
    assert_eq!(out.matches("unchanged").count(), 3, "{out}");
    assert_eq!(last_log_index(&cluster), before, "an unchanged apply wrote to the log");

    // --dry-run: a diff and placements, nothing written.
    let changed = spec("one", 3);
    let out = stdout(
        &cli(&cluster)
            .args(["apply", "--dry-run", "-f", "-"])
            .write_stdin(changed.clone())
            .assert()
            .success()
            .get_output()
            .clone(),
    );
    assert!(out.contains("would be updated from version 1"), "{out}");
    assert!(out.contains("- replicas: 0") && out.contains("+ replicas: 3"), "{out}");
    assert!(out.contains("new tasks:"), "{out}");
    assert_eq!(last_log_index(&cluster), before, "a dry run wrote to the log");
    let one = json(cluster.cli(&["get", "service", "one", "-o", "json"]));
    assert_eq!(one["version"], 1);

    // stdin, then the JSON and YAML output of `get` fed back: unchanged.
    let out = stdout(
        &cli(&cluster)
            .args(["apply", "-f", "-"])
            .write_stdin(changed)
            .assert()
            .success()
            .get_output()
            .clone(),
    );
    assert!(out.contains("service/one updated from version 1 (version 2)"), "{out}");
    for format in ["json", "yaml"] {
        let dumped = ok(cluster.cli(&["get", "services", "-o", format]));
        let out = stdout(
            &cli(&cluster)
                .args(["apply", "-f", "-"])
                .write_stdin(dumped)
                .assert()
                .success()
                .get_output()
                .clone(),
        );
        assert_eq!(out.matches("unchanged").count(), 3, "{format}: {out}");
    }

    // -q prints names only; delete removes.
    let names = ok(cluster.cli(&["get", "services", "-q"]));
    assert_eq!(names, "one\nthree\ntwo\n");
    cli(&cluster).args(["delete", "service", "three"]).assert().success();
    cli(&cluster).args(["get", "service", "three"]).assert().code(4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_succeeds_on_convergence_and_fails_with_the_reason() {
    let cluster = ready_cluster().await;
    let out = stdout(
        &cli(&cluster)
            .args(["apply", "--wait", "-f", "-"])
            .write_stdin(spec("web", 3))
            .assert()
            .success()
            .get_output()
            .clone(),
    );
    assert!(out.contains("service/web converged: 3/3 running (version 1)"), "{out}");
    let out = stdout(
        &cli(&cluster)
            .args(["scale", "web", "5", "--wait"])
            .assert()
            .success()
            .get_output()
            .clone(),
    );
    assert!(out.contains("converged: 5/5 running"), "{out}");

    // A task that fails and is never restarted: exit 1, the task and its code named.
    let crash = "name: crash\nimage: x\ncommand: [\"sh\", \"-c\", \"exit 3\"]\nrestart: {condition: never}\n";
    let o = cli(&cluster)
        .args(["apply", "--wait", "-f", "-"])
        .write_stdin(crash)
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(
        stderr(&o).contains("service/crash cannot converge: task crash.0."),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("exit code 3"), "{}", stderr(&o));

    // A health check on a port nothing listens on: the wait stops once every task has
    // failed its check, long before its 25 s, and gives the probe's words per task.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let bad = format!(
        "{}health_check: {{tcp: {{port: {closed}}}, interval: 200ms, timeout: 200ms, retries: 1}}\n",
        spec("badcheck", 2)
    );
    let o = cli(&cluster)
        .args(["--timeout", "25s", "apply", "--wait", "-f", "-"])
        .write_stdin(bad)
        .assert()
        .code(1)
        .get_output()
        .clone();
    let why = stderr(&o);
    assert!(
        why.contains("service/badcheck cannot converge: 2 task(s) failed to start or failed their health check: "),
        "{why}"
    );
    assert!(!why.contains("did not converge within"), "{why}");
    for slot in 0..2 {
        assert!(why.contains(&format!("badcheck.{slot}.")), "{why}");
    }
    assert!(why.contains("unhealthy: health check failed: tcp probe: "), "{why}");
    assert!(why.contains("onnection refused"), "{why}");

    // A task that runs to completion (exit 0, restart never) is done, not failed.
    let once = "name: once\nimage: x\ncommand: [\"sh\", \"-c\", \"echo done\"]\nrestart: {condition: never}\n";
    let out = stdout(
        &cli(&cluster)
            .args(["apply", "--wait", "-f", "-"])
            .write_stdin(once)
            .assert()
            .success()
            .get_output()
            .clone(),
    );
    assert!(
        out.contains("service/once converged: 0/1 running, 1 complete (version 1)"),
        "{out}"
    );

    // Tasks that cannot be placed: at the deadline, the placement reasons.
    let huge = format!("{}resources: {{cpu_millis: 100, memory_mb: 999999}}\n", spec("huge", 1));
    let o = cli(&cluster)
        .args(["--timeout", "3s", "apply", "--wait", "-f", "-"])
        .write_stdin(huge)
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(stderr(&o).contains("did not converge within 3s"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("0/3 nodes: 3 insufficient memory"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_verb_answers_and_tables_keep_their_shape() {
    let cluster = ready_cluster().await;
    cli(&cluster)
        .args(["apply", "--wait", "-f", "-"])
        .write_stdin(spec("web", 3))
        .assert()
        .success();

    insta::assert_snapshot!("get_nodes", normalize(&ok(cluster.cli(&["get", "nodes"]))));
    let tasks = ok(cluster.cli(&["get", "tasks"]));
    assert_eq!(tasks.lines().count(), 4, "{tasks}");
    insta::assert_snapshot!("get_tasks", normalize(&tasks));
    let services = ok(cluster.cli(&["get", "services"]));
    insta::assert_snapshot!("get_services", normalize(&services));
    let wide = ok(cluster.cli(&["get", "services", "-o", "wide"]));
    assert!(wide.contains("COMMAND") && wide.contains("sleep 3600"), "{wide}");

    let d = ok(cluster.cli(&["describe", "service", "web"]));
    assert!(d.contains("Replicas:  3 desired, 3 running, 0 pending"), "{d}");
    let d = ok(cluster.cli(&["describe", "task", "web.0.0"]));
    assert!(d.contains("Service:     web (slot 0, version 1)"), "{d}");
    let d = ok(cluster.cli(&["describe", "node", "1"]));
    assert!(d.contains("Labels:        zone=a"), "{d}");
    cli(&cluster).args(["describe", "task", "nope"]).assert().code(4);
    cli(&cluster).args(["describe", "node", "9"]).assert().code(4);

    let events = ok(cluster.cli(&["get", "events"]));
    for kind in [
        "leader.changed",
        "node.up",
        "service.created",
        "task.placed",
        "task.started",
    ] {
        assert!(events.contains(kind), "{kind} missing: {events}");
    }
    // Resumable: nothing before the index asked for.
    let all = json(cluster.cli(&["events", "-o", "json"]));
    let max = all
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["index"].as_u64())
        .max()
        .expect("an index");
    let later = json(cluster.cli(&["events", "--since", &max.to_string(), "-o", "json"]));
    assert!(
        later
            .as_array()
            .expect("events")
            .iter()
            .all(|e| e["index"].as_u64() > Some(max)),
        "{later}"
    );

    // The CLI remembers the leader it heard of, and tries it first next time.
    let cache = cluster.root().join("cache");
    let leader = cluster.wait_for_leader(T).await;
    Command::new(flotilla_bin())
        .env("XDG_CACHE_HOME", &cache)
        .env("FLOTILLA_CONFIG", cluster.creds.config_path())
        .args(["--addr", &cluster.addrs(), "get", "services"])
        .assert()
        .success();
    let remembered = std::fs::read_to_string(cache.join("flotilla").join("last-leader")).expect("remembered leader");
    assert_eq!(remembered, cluster.addr(leader));

    ok(cluster.cli(&["cluster", "status"]));
    ok(cluster.cli(&["cluster", "verify"]));
    let v = ok(cluster.cli(&["version"]));
    assert!(v.starts_with("flotilla "), "{v}");
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(cluster.cli(&["completion", shell]));
        assert!(script.contains("flotilla"), "{shell}");
    }
    let logs = cluster.cli(&["logs", "web", "--tail", "1"]);
    assert!(logs.status.success(), "{}", stderr(&logs));
    ok(cluster.cli(&["node", "pause", "3"]));
    ok(cluster.cli(&["node", "activate", "3"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_sees_a_node_go_down() {
    let mut cluster = ready_cluster().await;
    let leader = cluster.wait_for_leader(T).await;
    let victim = cluster.ids().into_iter().find(|i| *i != leader).expect("a follower");
    let mut follow = std::process::Command::new(flotilla_bin())
        .args(["--addr", &cluster.addr(leader), "events", "--follow", "-o", "json"])
        .env("FLOTILLA_CONFIG", cluster.creds.config_path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("events --follow");
    let reader = std::io::BufReader::new(follow.stdout.take().expect("stdout"));
    cluster.kill(victim);
    let wanted = format!("node/{victim}");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in reader.lines().map_while(Result::ok) {
            if line.contains("\"node.down\"") && line.contains(&wanted) {
                let _ = tx.send(line);
                return;
            }
        }
    });
    let line = rx.recv_timeout(T).expect("a node.down event within the deadline");
    assert!(line.contains("silent for longer than the node timeout"), "{line}");
    let _ = follow.kill();
    let _ = follow.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_happened_and_what_to_do() {
    let mut cluster = ready_cluster().await;
    // Usage errors: exit 2.
    cli(&cluster).args(["scale", "web"]).assert().code(2);
    cli(&cluster).args(["get", "widgets"]).assert().code(2);
    // Not found: exit 4.
    let o = cli(&cluster)
        .args(["delete", "service", "ghost"])
        .assert()
        .code(4)
        .get_output()
        .clone();
    insta::assert_snapshot!("error_not_found", stderr(&o));
    // Invalid spec: exit 1, the field named.
    let o = cli(&cluster)
        .args(["apply", "-f", "-"])
        .write_stdin("name: web\nimage: x\nreplicas: 20000\n")
        .assert()
        .code(1)
        .get_output()
        .clone();
    insta::assert_snapshot!("error_invalid_spec", stderr(&o));

    // Two of three voters gone: no leader, and how many are needed.
    let leader = cluster.wait_for_leader(T).await;
    let survivor = cluster.ids().into_iter().find(|i| *i != leader).expect("a follower");
    for id in cluster.ids() {
        if id != survivor {
            cluster.kill(id);
        }
    }
    let o = cli(&cluster)
        .args(["--timeout", "20s", "apply", "-f", "-"])
        .write_stdin(spec("web", 1))
        .assert()
        .code(3)
        .get_output()
        .clone();
    let msg = stderr(&o);
    assert!(
        msg.contains("no leader: 1 of 3 voters reachable; a majority (2) is needed"),
        "{msg}"
    );
    insta::assert_snapshot!("error_no_leader", msg);

    // Nothing reachable: exit 3.
    cluster.kill(survivor);
    let o = Command::new(flotilla_bin())
        .args(["--addr", &cluster.addrs(), "get", "services"])
        .assert()
        .code(3)
        .get_output()
        .clone();
    let msg = stderr(&o);
    assert!(msg.contains("cannot reach the cluster"), "{msg}");
    insta::assert_snapshot!("error_unreachable", normalize(&msg));
}

#[test]
fn the_cli_reference_is_current() {
    let generated = std::process::Command::new(flotilla_bin())
        .arg("docs")
        .output()
        .expect("flotilla docs");
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/CLI.md")).expect("docs/CLI.md");
    assert!(
        String::from_utf8_lossy(&generated.stdout) == committed,
        "docs/CLI.md is stale: run `make docs`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_prints_again_when_the_list_changes() {
    let cluster = ready_cluster().await;
    let mut watch = std::process::Command::new(flotilla_bin())
        .args(["--addr", &cluster.addrs(), "get", "services", "--watch"])
        .env("FLOTILLA_CONFIG", cluster.creds.config_path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("get --watch");
    let rx = flotilla_tests::stdout_lines(&mut watch);
    assert_eq!(rx.recv_timeout(T).expect("first output"), "No services.");
    cli(&cluster)
        .args(["apply", "-f", "-"])
        .write_stdin(spec("watched", 0))
        .assert()
        .success();
    let deadline = std::time::Instant::now() + T;
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .expect("a new list");
        if line.starts_with("watched ") {
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
}
