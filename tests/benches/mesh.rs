//! `cargo bench --profile dev -p flotilla-tests --bench mesh` (part of `make bench`): what
//! the routing mesh costs against a direct connection to the container, side by side in one
//! run. Two `flotilla agent --driver docker` processes, each on its own loopback address;
//! one task of a busybox httpd runs on one of them. Three paths to the same task:
//!
//! - `direct`: the container's bridge address, as a client on that machine could;
//! - `mesh-local`: the ingress port on the node that runs the task (the mesh dials the
//!   container);
//! - `mesh-remote`: the ingress port on the other node (the mesh there opens a tunnel
//!   through the task's node's agent, over the cluster's mutual TLS).
//!
//! Three workloads: a new connection and a GET of a 15-byte page (busybox httpd, which
//! forks per request), 64 bytes there and back on a connection kept open (busybox nc
//! running cat: what the mesh adds to each exchange), and a GET of an 8 MiB file
//! (throughput). The agents are built with the dev profile (our code at -O1,
//! dependencies at -O2), as for the other cluster benchmarks. Results: docs/BENCHMARKS.md.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flotilla_testkit::docker::{self, WORKLOAD_IMAGE};
use flotilla_testkit::{wait_until_async, Cluster};
use flotilla_tests::{free_port, json, node_status, ok};

const WAIT: Duration = Duration::from_secs(60);
const BIG: usize = 8 << 20;

fn spec(port: u16, echo: u16) -> String {
    format!(
        r#"name: bench
image: {WORKLOAD_IMAGE}
command: ["sh", "-c", "mkdir -p /www && echo hello flotilla > /www/index.html && dd if=/dev/zero of=/www/big bs=1048576 count=8 2>/dev/null && httpd -p 8080 -h /www && exec nc -ll -p 7000 -e cat"]
ports: [{{container: 8080, host: {port}}}, {{container: 7000, host: {echo}}}]
health_check: {{http: {{port: 8080, path: /}}, interval: 1s}}
stop_grace: 1s
"#
    )
}

/// One GET on a new connection: the body's length, when the answer is a 200.
fn try_get(addr: SocketAddr, path: &str) -> Option<usize> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").ok()?;
    let mut out = Vec::with_capacity(if path == "/" { 512 } else { BIG + 512 });
    s.read_to_end(&mut out).ok()?;
    let status_ok = out.starts_with(b"HTTP/1.") && out.get(..16)?.windows(3).any(|w| w == b"200");
    let header_end = out.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    status_ok.then(|| out.len() - header_end)
}

/// 64 bytes written and the same read back.
fn echo(s: &mut TcpStream) -> bool {
    let out = [0x5Au8; 64];
    let mut back = [0u8; 64];
    s.write_all(&out).is_ok() && s.read_exact(&mut back).is_ok() && back == out
}

fn get(addr: SocketAddr, path: &str) -> usize {
    try_get(addr, path).unwrap_or_else(|| panic!("no 200 answer for {path} at {addr}"))
}

fn mesh(c: &mut Criterion) {
    if !docker::docker_or_skip("the mesh benchmark") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let cluster = Cluster::builder(2)
        .driver("docker")
        .distinct_ips()
        .agent_args(&["--cpu", "4", "--memory", "4096"])
        .start();
    let port = free_port(&cluster);
    let echo_port = loop {
        let p = free_port(&cluster);
        if p != port {
            break p;
        }
    };
    let (node, container) = runtime.block_on(async {
        cluster.wait_for_leader(WAIT).await;
        wait_until_async("two ready nodes", WAIT, || async {
            node_status(&cluster).filter(|m| m.len() == 2 && m.values().all(|s| s == "ready"))
        })
        .await;
        let file = cluster.write_file("bench.yaml", &spec(port, echo_port));
        ok(cluster.cli(&["apply", "-f", file.to_str().expect("utf-8 path")]));
        wait_until_async("a healthy task", WAIT, || async {
            let tasks = json(cluster.cli(&["get", "tasks", "--service", "bench", "-o", "json"]));
            tasks.as_array()?.iter().find_map(|t| {
                (t["state"] == "healthy").then(|| (t["node"].as_u64(), t["address"].as_str().map(str::to_string)))
            })
        })
        .await
    });
    let node = node.expect("placed");
    let ip = container.expect("the task's address").parse().expect("an IP");
    let other = cluster.ids().into_iter().find(|id| *id != node).expect("a second node");
    let paths = [
        ("direct", SocketAddr::new(ip, 8080)),
        ("mesh-local", SocketAddr::new(cluster.ip(node), port)),
        ("mesh-remote", SocketAddr::new(cluster.ip(other), port)),
    ];
    let echoes = [
        ("direct", SocketAddr::new(ip, 7000)),
        ("mesh-local", SocketAddr::new(cluster.ip(node), echo_port)),
        ("mesh-remote", SocketAddr::new(cluster.ip(other), echo_port)),
    ];
    // Every path answers before anything is measured.
    runtime.block_on(async {
        for (name, addr) in paths {
            wait_until_async(&format!("the page through {name}"), WAIT, || async {
                try_get(addr, "/")
            })
            .await;
        }
    });
    eprintln!(
        "mesh benchmark: 2 agents (dev profile), task on node {node} at {ip}; engine {}",
        docker::engine_version().unwrap_or_else(|e| e)
    );

    let mut latency = c.benchmark_group("mesh/connect+GET 15 B");
    for (name, addr) in paths {
        latency.bench_function(name, |b| b.iter(|| get(addr, "/")));
    }
    latency.finish();

    // One connection per path, kept: 64 bytes there and back (busybox nc running cat).
    let mut round_trip = c.benchmark_group("mesh/echo 64 B on an open connection");
    for (name, addr) in echoes {
        let mut s = runtime.block_on(wait_until_async(&format!("the echo through {name}"), WAIT, || async {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
            s.set_nodelay(true).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            echo(&mut s).then_some(s)
        }));
        round_trip.bench_function(name, |b| b.iter(|| assert!(echo(&mut s))));
    }
    round_trip.finish();

    let mut throughput = c.benchmark_group("mesh/GET 8 MiB");
    throughput.throughput(Throughput::Bytes(BIG as u64)).sample_size(20);
    for (name, addr) in paths {
        throughput.bench_function(name, |b| b.iter(|| assert_eq!(get(addr, "/big"), BIG)));
    }
    throughput.finish();
    drop(cluster);
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(2));
    targets = mesh
}
criterion_main!(benches);
