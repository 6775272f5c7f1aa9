//! Issue 13, "An operator's afternoon": the CLI items, against real clusters (process
//! driver) where the behaviour crosses the wire.

use std::time::Duration;

use flotilla_testkit::{flotilla_bin, wait_until, Cluster};
use flotilla_tests::{json, ok, spec, stderr, stdout, stdout_lines};

const T: Duration = Duration::from_secs(30);

/// A one-node cluster with the process driver, its leader elected.
async fn one_node() -> Cluster {
    let cluster = Cluster::builder(1).driver("process").start();
    cluster.wait_for_leader(T).await;
    cluster
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A port nothing listens on.
fn closed_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    addr.to_string()
}

/// Item 15: `agent --help` lists agent flags only, and the client's flags are refused
/// there; `--log-level` is an agent flag.
#[test]
fn agent_help_shows_only_agent_flags() {
    let o = std::process::Command::new(flotilla_bin())
        .args(["agent", "--help"])
        .output()
        .expect("flotilla agent --help");
    assert!(o.status.success(), "{}", stderr(&o));
    let help = stdout(&o);
    for flag in ["--listen", "--data-dir", "--log-level"] {
        assert!(help.contains(flag), "{flag} missing:\n{help}");
    }
    for flag in ["--addr", "--timeout", "--quiet", "--output"] {
        assert!(!help.contains(flag), "{flag} shown:\n{help}");
    }
    let top = stdout(
        &std::process::Command::new(flotilla_bin())
            .arg("--help")
            .output()
            .expect("flotilla --help"),
    );
    assert!(top.contains("agent") && top.contains("--addr"), "{top}");
    for args in [
        &["agent", "--addr", "127.0.0.1:1", "--id", "1"][..],
        &["--addr", "127.0.0.1:1", "agent", "--id", "1"][..],
    ] {
        let o = std::process::Command::new(flotilla_bin())
            .args(args)
            .output()
            .expect("flotilla");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}

/// Item 15: `version` prints the client's version and each member's; with the cluster
/// unreachable, the client's and why, exit code 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_prints_the_client_and_the_cluster() {
    let client = env!("CARGO_PKG_VERSION");
    let o = std::process::Command::new(flotilla_bin())
        .args(["--addr", &closed_addr(), "version"])
        .output()
        .expect("flotilla version");
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with(&format!("flotilla {client} (client)")),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("the cluster could not be reached"),
        "{}",
        stderr(&o)
    );

    let cluster = one_node().await;
    let text = ok(cluster.cli(&["version"]));
    assert!(text.starts_with(&format!("flotilla {client} (client)")), "{text}");
    assert!(text.contains("NODE") && text.contains("VERSION"), "{text}");
    let v = json(cluster.cli(&["version", "-o", "json"]));
    assert_eq!(v["version"], client);
    assert_eq!(v["cluster"][0]["id"], 1);
    assert_eq!(v["cluster"][0]["version"], client, "{v}");
}

/// Item 11: REPLICAS as running/desired, `get svc`, `get services NAME…`, `delete -f` and
/// `delete service A B`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_show_running_of_desired_and_delete_by_file_or_names() {
    let cluster = one_node().await;
    let file = cluster.write_file("two.yaml", &format!("{}---\n{}", spec("web", 2), spec("api", 1)));
    ok(cluster.cli(&["apply", "--wait", "-f", path(&file)]));
    ok(cluster.cli(&["apply", "-f", path(&cluster.write_file("db.yaml", &spec("db", 0)))]));
    ok(cluster.cli(&[
        "apply",
        "-f",
        path(&cluster.write_file("cache.yaml", &spec("cache", 0))),
    ]));

    let table = ok(cluster.cli(&["get", "svc"]));
    let web = table.lines().find(|l| l.starts_with("web ")).expect("web row");
    assert!(web.contains(" 2/2 "), "{table}");
    let db = table.lines().find(|l| l.starts_with("db ")).expect("db row");
    assert!(db.contains(" 0/0 "), "{table}");

    let some = ok(cluster.cli(&["get", "services", "web", "api", "-q"]));
    assert_eq!(some, "api\nweb\n");
    let one = json(cluster.cli(&["get", "service", "web", "-o", "json"]));
    assert_eq!(one["name"], "web");
    let o = cluster.cli(&["get", "services", "web", "ghost"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("ghost"), "{}", stderr(&o));

    let out = ok(cluster.cli(&["delete", "-f", path(&file)]));
    assert!(
        out.contains("service/web deleted") && out.contains("service/api deleted"),
        "{out}"
    );
    let out = ok(cluster.cli(&["delete", "service", "db", "cache"]));
    assert!(
        out.contains("service/db deleted") && out.contains("service/cache deleted"),
        "{out}"
    );
    assert_eq!(ok(cluster.cli(&["get", "services", "-q"])), "");
    let o = cluster.cli(&["delete", "-f", path(&file)]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
}

/// Item 12: current tasks by default, history with `-a` (DESIRED shutdown), and
/// SERVICE.SLOT for the slot's current task. Item 14: `describe task` shows the address.
/// And `logs` of a task that does not exist, or whose container is gone, exits 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_current_and_history_and_slot_names() {
    let cluster = one_node().await;
    ok(cluster.cli(&[
        "apply",
        "--wait",
        "-f",
        path(&cluster.write_file("web.yaml", &spec("web", 2))),
    ]));
    // A new template replaces both tasks; the old ones stay as history.
    let v2 = format!("{}env: {{V: \"2\"}}\n", spec("web", 2));
    ok(cluster.cli(&["apply", "--wait", "-f", path(&cluster.write_file("web2.yaml", &v2))]));
    let gone = wait_until("a replaced task in the history", T, || {
        let tasks = json(cluster.cli(&["get", "tasks", "-a", "-o", "json"]));
        tasks.as_array().expect("tasks").iter().find_map(|t| {
            (t["slot"] == 0 && t["desired"] == "shutdown").then(|| t["id"].as_str().expect("id").to_string())
        })
    });

    let current = ok(cluster.cli(&["get", "tasks"]));
    assert_eq!(current.lines().count(), 3, "{current}");
    assert!(!current.contains("shutdown"), "{current}");
    let all = ok(cluster.cli(&["get", "tasks", "--all"]));
    let row = all.lines().find(|l| l.starts_with(&gone)).expect("history row");
    assert!(row.contains("shutdown"), "{all}");
    assert_eq!(
        ok(cluster.cli(&["get", "tasks", "-a", "-q"])).lines().count(),
        4,
        "{all}"
    );

    let d = ok(cluster.cli(&["describe", "task", "web.0"]));
    assert!(d.contains("ID:          web.0."), "{d}");
    assert!(d.contains("Address:     127.0.0.1"), "{d}");
    let o = cluster.cli(&["describe", "task", "web.7"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    ok(cluster.cli(&["logs", "web.0"]));

    for missing in ["web.0.99", "nope.0.0", "web.9"] {
        let o = cluster.cli(&["logs", missing]);
        assert_eq!(o.status.code(), Some(4), "logs {missing}: {}", stderr(&o));
    }
    // The stopped task's container is removed a moment later: never "unreachable".
    wait_until("logs of a removed container exit 4", T, || {
        let o = cluster.cli(&["logs", &gone]);
        assert!(matches!(o.status.code(), Some(0 | 4)), "logs {gone}: {}", stderr(&o));
        (o.status.code() == Some(4)).then_some(())
    });
}

/// Item 13: `get nodes -o wide`, `logs -o json`, `-w -o json` as one object per change.
/// Item 14: `logs --since` and `--timestamps`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide_nodes_json_lines_and_logs_since() {
    let cluster = one_node().await;
    let talker =
        "name: talker\nimage: x\ncommand: [\"sh\", \"-c\", \"echo hello; sleep 3600\"]\nreplicas: 1\nstop_grace: 1s\n";
    ok(cluster.cli(&[
        "apply",
        "--wait",
        "-f",
        path(&cluster.write_file("talker.yaml", talker)),
    ]));

    let wide = ok(cluster.cli(&["get", "nodes", "-o", "wide"]));
    let header = wide.lines().next().expect("header");
    for column in ["ADDRESS", "VOTER", "LABELS", "VERSION"] {
        assert!(header.contains(column), "{wide}");
    }
    let row = wide.lines().nth(1).expect("a node");
    assert!(
        row.contains(" yes ") && row.ends_with(env!("CARGO_PKG_VERSION")),
        "{wide}"
    );
    let narrow = ok(cluster.cli(&["get", "nodes"]));
    assert!(!narrow.contains("VERSION"), "{narrow}");

    let lines = wait_until("the greeting logged", T, || {
        let out = ok(cluster.cli(&["logs", "talker", "-o", "json"]));
        (!out.is_empty()).then_some(out)
    });
    let line: serde_json::Value = serde_json::from_str(lines.lines().next().expect("a line")).expect("one JSON object");
    assert_eq!(line["line"], "hello");
    assert_eq!(line["stream"], "stdout");
    assert!(line["task"].as_str().expect("task").starts_with("talker.0."), "{line}");

    assert_eq!(ok(cluster.cli(&["logs", "talker.0", "--since", "10m"])), "hello\n");
    // The process driver keeps no time per line: `-` stands for it.
    assert_eq!(ok(cluster.cli(&["logs", "talker.0", "--timestamps"])), "- hello\n");
    wait_until("nothing written in the last second", T, || {
        ok(cluster.cli(&["logs", "talker.0", "--since", "1s"]))
            .is_empty()
            .then_some(())
    });

    let mut watch = std::process::Command::new(flotilla_bin())
        .args(["--addr", &cluster.addrs(), "get", "services", "-w", "-o", "json"])
        .env("FLOTILLA_CONFIG", cluster.creds.config_path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("get services -w -o json");
    let rx = stdout_lines(&mut watch);
    let first: serde_json::Value = serde_json::from_str(&rx.recv_timeout(T).expect("first object")).expect("an object");
    assert_eq!(first["name"], "talker", "{first}");
    ok(cluster.cli(&[
        "apply",
        "-f",
        path(&cluster.write_file("quiet.yaml", &spec("quiet", 0))),
    ]));
    let next: serde_json::Value = serde_json::from_str(&rx.recv_timeout(T).expect("a change")).expect("an object");
    assert_eq!(
        next["name"], "quiet",
        "only the new service, not the list again: {next}"
    );
    let _ = watch.kill();
    let _ = watch.wait();
}

/// Item 14: `describe service` shows ports, the health check, the service's events (and,
/// item 5, its labels).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_service_shows_ports_health_and_events() {
    let cluster = one_node().await;
    let checked = format!(
        "{}ports: [{{container: 8080}}]\nhealth_check: {{exec: [\"true\"], interval: 1s}}\nlabels: {{team: payments}}\n",
        spec("checked", 1)
    );
    ok(cluster.cli(&["apply", "-f", path(&cluster.write_file("checked.yaml", &checked))]));
    ok(cluster.cli(&[
        "apply",
        "-f",
        path(&cluster.write_file("other.yaml", &spec("other", 0))),
    ]));
    let d = wait_until("the task healthy", T, || {
        let d = ok(cluster.cli(&["describe", "service", "checked"]));
        d.contains("task.healthy").then_some(d)
    });
    assert!(d.contains("Ports:     8080"), "{d}");
    assert!(d.contains("Health:    exec true every 1s"), "{d}");
    assert!(d.contains("Labels:    team=payments"), "{d}");
    assert!(d.contains("service.created"), "{d}");
    assert!(!d.contains("other"), "another service's events: {d}");
    let table = ok(cluster.cli(&["get", "services", "checked"]));
    assert!(table.contains("1/1 (1 healthy)"), "{table}");
}
