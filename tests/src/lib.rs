//! Shared helpers for flotilla's cluster, chaos and end-to-end tests. The tests live in
//! `tests/`; they start real agents (through flotilla-testkit) and use only gRPC and the CLI.

use std::process::Output;

pub mod bench;
pub mod chaos;

/// A minimal valid spec whose tasks run until stopped (with any driver).
pub fn spec(name: &str, replicas: u32) -> String {
    format!(
        "name: {name}\nimage: flotilla/busybox:latest\ncommand: [\"sleep\", \"3600\"]\nreplicas: {replicas}\nstop_grace: 1s\n"
    )
}

/// The lines `child` writes to its piped stdout, as they come (read on a thread of their
/// own, so a test can wait for one with a deadline).
pub fn stdout_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let reader = std::io::BufReader::new(child.stdout.take().expect("a piped stdout"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the command succeeded and returns its stdout.
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "command failed ({:?})\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Parses the stdout of a `-o json` command.
pub fn json(o: Output) -> serde_json::Value {
    let out = ok(o);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Each node's status (`ready`, `down`) as `get nodes` reports it, or `None` when the call
/// fails.
pub fn node_status(cluster: &flotilla_testkit::Cluster) -> Option<std::collections::BTreeMap<u64, String>> {
    let o = cluster.cli(&["get", "nodes", "-o", "json"]);
    if !o.status.success() {
        return None;
    }
    Some(
        json(o)
            .as_array()?
            .iter()
            .map(|n| {
                (
                    n["id"].as_u64().unwrap_or(0),
                    n["status"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect(),
    )
}

/// A port free on every agent's address, for TCP and UDP.
pub fn free_port(cluster: &flotilla_testkit::Cluster) -> u16 {
    loop {
        let port = std::net::TcpListener::bind((cluster.ip(1), 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        if cluster.ids().iter().all(|id| {
            std::net::TcpListener::bind((cluster.ip(*id), port)).is_ok()
                && std::net::UdpSocket::bind((cluster.ip(*id), port)).is_ok()
        }) {
            return port;
        }
    }
}
