//! Issue "Reach the services": the routing mesh's other paths, with real agents running
//! plain processes (the mesh is the same whatever the driver; a process task listens on
//! 127.0.0.1, and one task serves every node, so the other nodes reach it through their
//! agents' tunnels): UDP flows, the PROXY protocol v2 header as a backend receives it over
//! a real connection, and a port the mesh cannot bind, reported until it can.
//! Traffic goes to loopback addresses only. The backends are small Python programs.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use flotilla_testkit::{wait_until_async, Cluster};
use flotilla_tests::{free_port, json, node_status, ok, stdout};
use serde_json::Value;

const T: Duration = Duration::from_secs(40);

/// A port free on 127.0.0.1 for TCP and UDP, where a process task listens.
fn free_local_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A spec running `python3 -c program` (quoted as a JSON string, which YAML reads).
fn python(name: &str, program: &str, port: &str) -> String {
    let program = serde_json::to_string(program).expect("a string");
    format!("name: {name}\nimage: python3\ncommand: [\"python3\", \"-u\", \"-c\", {program}]\nports: [{port}]\nstop_grace: 1s\n")
}

/// A UDP echo on 127.0.0.1:`inside` ("echo:" and the datagram), published as UDP port
/// `host` through the mesh.
fn udp_echo(host: u16, inside: u16) -> String {
    let program = format!(
        r#"import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('127.0.0.1', {inside}))
while True:
    d, a = s.recvfrom(65535)
    s.sendto(b'echo:' + d, a)
"#
    );
    python(
        "echo",
        &program,
        &format!("{{container: {inside}, host: {host}, protocol: udp}}"),
    )
}

/// A TCP backend on 127.0.0.1:`inside` that reads the PROXY v2 header each connection
/// starts with and answers it in hex; published on `host` with `proxy_protocol: true`.
fn proxy_reader(host: u16, inside: u16) -> String {
    let program = format!(
        r#"import socket
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(('127.0.0.1', {inside}))
l.listen(16)
def need(c, d, n):
    while len(d) < n:
        b = c.recv(n - len(d))
        if not b:
            return None
        d += b
    return d
while True:
    c, _ = l.accept()
    d = need(c, b'', 16)
    if d:
        d = need(c, d, 16 + int.from_bytes(d[14:16], 'big'))
    if d:
        c.sendall(d.hex().encode())
    c.close()
"#
    );
    python(
        "whoami",
        &program,
        &format!("{{container: {inside}, host: {host}, proxy_protocol: true}}"),
    )
}

/// A service publishing TCP port `host` through the mesh (its task need not listen).
fn plain(name: &str, host: u16) -> String {
    format!(
        "name: {name}\nimage: busybox\ncommand: [\"sleep\", \"3600\"]\n\
         ports: [{{container: {}, host: {host}}}]\nstop_grace: 1s\n",
        free_local_port()
    )
}

fn running(cluster: &Cluster, service: &str) -> bool {
    let tasks = json(cluster.cli(&["get", "tasks", "--service", service, "-o", "json"]));
    tasks
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["state"] == "running" && t["desired"] == "running"))
}

/// What a UDP exchange through `addr` answers, or `None`.
fn udp_ask(socket: &UdpSocket, addr: SocketAddr, what: &str) -> Option<String> {
    socket.send_to(what.as_bytes(), addr).ok()?;
    let mut buf = [0u8; 2048];
    let (n, from) = socket.recv_from(&mut buf).ok()?;
    assert_eq!(from, addr, "the answer comes from the address asked");
    Some(String::from_utf8_lossy(&buf[..n]).to_string())
}

/// The PROXY v2 header a backend received for one connection through `addr`, and the
/// connection's own addresses.
fn proxied(addr: SocketAddr) -> Option<(Vec<u8>, SocketAddr)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let me = s.local_addr().ok()?;
    let mut hex = String::new();
    s.read_to_string(&mut hex).ok()?;
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    bytes.filter(|b| b.len() >= 16).map(|b| (b, me))
}

fn describe(cluster: &Cluster, service: &str) -> Value {
    json(cluster.cli(&["describe", "service", service, "-o", "json"]))
}

fn mesh_errors(cluster: &Cluster, service: &str) -> Vec<String> {
    describe(cluster, service)["mesh"]["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flows_proxy_headers_and_a_held_port_through_the_mesh() {
    let cluster = Cluster::builder(3)
        .driver("process")
        .distinct_ips()
        .agent_args(&["--node-timeout", "2s"])
        .start();
    cluster.wait_for_leader(T).await;
    wait_until_async("three ready nodes", T, || async {
        node_status(&cluster).filter(|m| m.len() == 3 && m.values().all(|s| s == "ready"))
    })
    .await;
    let at = |id: u64, port: u16| SocketAddr::new(cluster.ip(id), port);

    // UDP: every node's mesh relays datagrams both ways, for several flows at once, to the
    // one task (through the tunnel from the nodes that do not run it).
    let udp_port = free_port(&cluster);
    let file = cluster.write_file("echo.yaml", &udp_echo(udp_port, free_local_port()));
    ok(cluster.cli(&["apply", "-f", file.to_str().expect("utf-8 path")]));
    wait_until_async("the echo running", T, || async {
        running(&cluster, "echo").then_some(())
    })
    .await;
    for id in cluster.ids() {
        let flows: Vec<UdpSocket> = (0..2)
            .map(|_| {
                let s = UdpSocket::bind((cluster.ip(id), 0)).expect("a client socket");
                s.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
                s
            })
            .collect();
        // The first datagram may beat the listener or the task: ask until answered.
        wait_until_async(&format!("an echo through node {id}"), T, || async {
            udp_ask(&flows[0], at(id, udp_port), "hello").filter(|a| a == "echo:hello")
        })
        .await;
        for i in 0..20 {
            for (f, flow) in flows.iter().enumerate() {
                let what = format!("node {id} flow {f} datagram {i}");
                let answer = udp_ask(flow, at(id, udp_port), &what);
                assert_eq!(answer.as_deref(), Some(format!("echo:{what}").as_str()));
            }
        }
    }

    // PROXY v2: the backend gets the client's own address, through every node.
    let proxy_port = free_port(&cluster);
    let file = cluster.write_file("whoami.yaml", &proxy_reader(proxy_port, free_local_port()));
    ok(cluster.cli(&["apply", "-f", file.to_str().expect("utf-8 path")]));
    wait_until_async("the header reader running", T, || async {
        running(&cluster, "whoami").then_some(())
    })
    .await;
    const SIGNATURE: [u8; 12] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];
    for id in cluster.ids() {
        let to = at(id, proxy_port);
        let (header, me) = wait_until_async(&format!("a PROXY header through node {id}"), T, || async {
            proxied(to)
        })
        .await;
        assert_eq!(header[..12], SIGNATURE, "{header:02x?}");
        assert_eq!(header[12], 0x21, "version 2, PROXY");
        assert_eq!(header[13], 0x11, "TCP over IPv4");
        assert_eq!(u16::from_be_bytes([header[14], header[15]]), 12);
        let ip = |b: &[u8]| IpAddr::from([b[0], b[1], b[2], b[3]]);
        let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
        let source = SocketAddr::new(ip(&header[16..20]), port(&header[24..26]));
        let destination = SocketAddr::new(ip(&header[20..24]), port(&header[26..28]));
        assert_eq!(source, me, "the backend sees the client's address and port");
        assert_eq!(destination, to, "and the address the client connected to");
    }

    // A port held on node 2's address: its mesh says so (describe, events) until it binds.
    let held_port = free_port(&cluster);
    let holder = TcpListener::bind(at(2, held_port)).expect("hold the port on node 2");
    let file = cluster.write_file("held.yaml", &plain("held", held_port));
    ok(cluster.cli(&["apply", "-f", file.to_str().expect("utf-8 path")]));
    let wanted = format!("node 2: {held_port}/tcp");
    let errors = wait_until_async("the held port reported", T, || async {
        let errors = mesh_errors(&cluster, "held");
        errors.iter().any(|e| e.starts_with(&wanted)).then_some(errors)
    })
    .await;
    assert_eq!(errors.len(), 1, "only node 2 cannot listen: {errors:?}");
    assert!(errors[0].contains("in use"), "{errors:?}");
    let text = ok(cluster.cli(&["describe", "service", "held"]));
    assert!(text.contains(&format!("not listening: {wanted}")), "{text}");
    let events = stdout(&cluster.cli(&["events"]));
    assert!(
        events
            .lines()
            .any(|l| l.contains("mesh.port_failed") && l.contains(&held_port.to_string())),
        "{events}"
    );
    drop(holder);
    wait_until_async("the port bound once free", T, || async {
        mesh_errors(&cluster, "held").is_empty().then_some(())
    })
    .await;
    let status: BTreeMap<u64, bool> = cluster
        .ids()
        .into_iter()
        .map(|id| {
            (
                id,
                TcpStream::connect_timeout(&at(id, held_port), Duration::from_secs(2)).is_ok(),
            )
        })
        .collect();
    assert!(status.values().all(|up| *up), "every node listens now: {status:?}");
}
