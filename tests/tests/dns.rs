//! Issue "Reach the services": discovery by name, with real docker agents sharing this
//! machine's engine. One of them answers DNS on the engine's bridge gateway, port 53 (the
//! containers' resolver); the test asks it over UDP and TCP, and a frontend container
//! calls its backend by name. Traffic goes to the agents' loopback addresses, the bridge
//! gateway and the containers the test started.
//!
//! No Docker engine: a failure under CI=true, otherwise a skip notice.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use flotilla_dns::{ParsedResponse, RData, TYPE_A, TYPE_SRV};
use flotilla_testkit::docker;
use flotilla_testkit::{wait_until_async, Cluster};
use flotilla_tests::{json, node_status, ok};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);
/// The example this test runs: a frontend that calls its backend by name.
const EXAMPLE: &str = include_str!("../../examples/two-tier.yaml");
/// Its backend's probe interval and retries (the default), as the example has them.
const PROBE: Duration = Duration::from_secs(2);
const RETRIES: u32 = 3;
/// Its frontend's ingress port.
const FRONTEND_PORT: u16 = 8081;

/// The engine's default bridge gateway: as listed, else the subnet's first address (what
/// the engine takes when it chose it; the agents' driver reads it the same way).
fn gateway() -> IpAddr {
    let field = |f: &str| {
        let out = std::process::Command::new("docker")
            .args(["network", "inspect", "bridge", "--format", f])
            .output()
            .expect("docker network inspect");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    if let Ok(ip) = field("{{range .IPAM.Config}}{{.Gateway}}{{end}}").parse() {
        return ip;
    }
    let subnet = field("{{range .IPAM.Config}}{{.Subnet}} {{end}}");
    let network: std::net::Ipv4Addr = subnet
        .split_whitespace()
        .find_map(|s| s.split_once('/')?.0.parse().ok())
        .expect("the bridge network has an IPv4 subnet");
    IpAddr::V4(std::net::Ipv4Addr::from(u32::from(network) + 1))
}

fn inspect(container: &str, format: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["inspect", "--format", format, container])
        .output()
        .expect("docker inspect");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One query to `server`, over UDP or TCP; `None` when it does not answer in time.
fn query(server: SocketAddr, name: &str, qtype: u16, tcp: bool) -> Option<ParsedResponse> {
    use std::io::{Read, Write};
    let id = rand::random::<u16>();
    let msg = flotilla_dns::build_query(id, name, qtype, None);
    let answer = if tcp {
        let mut s = std::net::TcpStream::connect_timeout(&server, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&msg);
        s.write_all(&framed).ok()?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).ok()?;
        let mut out = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut out).ok()?;
        out
    } else {
        let s = UdpSocket::bind("0.0.0.0:0").ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.send_to(&msg, server).ok()?;
        let mut buf = [0u8; 4096];
        let n = s.recv(&mut buf).ok()?;
        buf[..n].to_vec()
    };
    let parsed = flotilla_dns::parse_response(&answer).expect("a well-formed answer");
    assert_eq!(parsed.id, id, "the answer's id is the query's");
    Some(parsed)
}

fn addresses(r: &ParsedResponse) -> BTreeSet<IpAddr> {
    r.answers
        .iter()
        .filter_map(|rec| match rec.data {
            RData::A(ip) => Some(IpAddr::V4(ip)),
            RData::Aaaa(ip) => Some(IpAddr::V6(ip)),
            _ => None,
        })
        .collect()
}

fn tasks(cluster: &Cluster, service: &str) -> Vec<Value> {
    json(cluster.cli(&["get", "tasks", "--service", service, "-o", "json"]))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn healthy(cluster: &Cluster, service: &str) -> Vec<Value> {
    tasks(cluster, service)
        .into_iter()
        .filter(|t| t["state"] == "healthy" && t["desired"] == "running")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_resolve_to_the_healthy_tasks_and_a_frontend_calls_its_backend_by_name() {
    if !docker::docker_or_skip("dns") {
        return;
    }
    let gw = gateway();
    let dns = SocketAddr::new(gw, 53);
    let cluster = Cluster::builder(3)
        .driver("docker")
        .distinct_ips()
        .agent_args(&[
            "--node-timeout",
            "2s",
            "--cpu",
            "4",
            "--memory",
            "4096",
            "--dns-listen",
            &gw.to_string(),
            "--dns-upstream",
            "none",
        ])
        .start();
    cluster.wait_for_leader(T).await;
    wait_until_async("three ready nodes", T, || async {
        node_status(&cluster).filter(|m| m.len() == 3 && m.values().all(|s| s == "ready"))
    })
    .await;
    let zone = format!("{}.flotilla", cluster.name());
    // One agent holds the gateway's port 53 and answers for the cluster.
    wait_until_async("an agent answering DNS on the bridge gateway", T, || async {
        query(dns, &zone, flotilla_dns::TYPE_SOA, false).filter(|r| r.rcode == 0 && r.answers.len() == 1)
    })
    .await;

    assert!(
        EXAMPLE.contains("interval: 2s") && EXAMPLE.contains("host: 8081"),
        "the example as this test knows it"
    );
    let port = FRONTEND_PORT;
    let file = cluster.write_file("two-tier.yaml", EXAMPLE);
    ok(cluster.cli(&["apply", "-f", file.to_str().expect("utf-8 path")]));
    let backends = wait_until_async("two healthy backends", T, || async {
        let h = healthy(&cluster, "backend");
        (h.len() == 2 && h.iter().all(|t| t["address"].is_string())).then_some(h)
    })
    .await;
    wait_until_async("two healthy frontends", T, || async {
        (healthy(&cluster, "frontend").len() == 2).then_some(())
    })
    .await;

    // tasks.backend: each healthy task's container address, as the engine has it.
    let mut containers = Vec::new();
    let mut want = BTreeSet::new();
    for t in &backends {
        let container = t["container_id"].as_str().expect("a container").to_string();
        let ip: IpAddr = inspect(&container, "{{.NetworkSettings.IPAddress}}")
            .parse()
            .expect("a container address");
        assert_eq!(
            t["address"].as_str(),
            Some(ip.to_string().as_str()),
            "the replica has the engine's address"
        );
        want.insert(ip);
        containers.push((t["id"].as_str().expect("id").to_string(), container, ip));
    }
    let tasks_name = format!("tasks.backend.{zone}");
    for tcp in [false, true] {
        let r = query(dns, &tasks_name, TYPE_A, tcp).expect("an answer");
        assert_eq!(r.rcode, 0);
        assert!(r.authoritative);
        assert_eq!(
            addresses(&r),
            want,
            "tasks.backend over {}",
            if tcp { "tcp" } else { "udp" }
        );
        assert!(r.answers.iter().all(|a| a.ttl <= 5), "a short TTL: {:?}", r.answers);
    }
    // SRV: one per healthy task, with the container port and the task's own name.
    let r = query(dns, &format!("_9090._tcp.backend.{zone}"), TYPE_SRV, false).expect("an answer");
    let targets: BTreeSet<(String, u16)> = r
        .answers
        .iter()
        .filter_map(|a| match &a.data {
            RData::Srv { port, target, .. } => Some((target.clone(), *port)),
            _ => None,
        })
        .collect();
    let expected: BTreeSet<(String, u16)> = containers
        .iter()
        .map(|(id, _, _)| (format!("{}.tasks.backend.{zone}", id.replace('.', "-")), 9090))
        .collect();
    assert_eq!(targets, expected);
    let glue: BTreeSet<IpAddr> = r
        .additional
        .iter()
        .filter_map(|a| match a.data {
            RData::A(ip) => Some(IpAddr::V4(ip)),
            _ => None,
        })
        .collect();
    assert_eq!(glue, want, "the SRV targets' addresses come with the answer");
    // From outside the bridge, a service resolves to the nodes' publish addresses, where
    // the mesh has its ingress port; the backend publishes none.
    let r = query(dns, &format!("frontend.{zone}"), TYPE_A, false).expect("an answer");
    let nodes: BTreeSet<IpAddr> = cluster.ids().into_iter().map(|id| cluster.ip(id)).collect();
    assert_eq!(addresses(&r), nodes);
    let r = query(dns, &format!("backend.{zone}"), TYPE_A, false).expect("an answer");
    assert_eq!(
        (r.rcode, r.answers.len()),
        (0, 0),
        "a name without an address for outside: NODATA"
    );
    let r = query(dns, &format!("nope.{zone}"), TYPE_A, true).expect("an answer");
    assert_eq!(r.rcode, 3, "an unknown service: NXDOMAIN");

    // The containers resolve at the agent's server, in the cluster's domain.
    let frontend = healthy(&cluster, "frontend")[0]["container_id"]
        .as_str()
        .expect("a container")
        .to_string();
    assert_eq!(inspect(&frontend, "{{json .HostConfig.Dns}}"), format!("[\"{gw}\"]"));
    assert_eq!(
        inspect(&frontend, "{{json .HostConfig.DnsSearch}}"),
        format!("[\"{zone}\"]")
    );

    // Through every node's mesh, the frontend's page calls http://backend:9090/ by name.
    let page = |id: u64| {
        let addr = SocketAddr::new(cluster.ip(id), port).to_string();
        match flotilla_testkit::http_get(&addr, "/cgi-bin/page") {
            Some((200, body)) if body.contains("backend task ") => Some(body),
            _ => None,
        }
    };
    let mut answered = BTreeSet::new();
    for id in cluster.ids() {
        for _ in 0..4 {
            let body = wait_until_async(&format!("the frontend through node {id}"), T, || async { page(id) }).await;
            let host = body
                .lines()
                .find_map(|l| l.strip_prefix("backend task "))
                .map(str::to_string);
            answered.extend(host);
        }
    }
    assert_eq!(
        answered.len(),
        2,
        "the backend's name reaches both tasks in turn: {answered:?}"
    );

    // A backend turns unhealthy: it leaves the answer as soon as its state says so.
    let (sick_id, sick_container, sick_ip) = containers[0].clone();
    let rm = std::process::Command::new("docker")
        .args(["exec", &sick_container, "rm", "/www/index.html"])
        .output()
        .expect("docker exec");
    assert!(rm.status.success(), "{}", String::from_utf8_lossy(&rm.stderr));
    // Both watched together until both changed: when the state stopped saying healthy
    // (as `get tasks` shows it) and when the answer dropped the task.
    let broken = Instant::now();
    let state_of = || {
        json(cluster.cli(&["get", "tasks", "--service", "backend", "--all", "-o", "json"]))
            .as_array()
            .and_then(|tasks| tasks.iter().find(|t| t["id"] == sick_id.as_str()).cloned())
            .map(|t| t["state"].as_str().unwrap_or_default().to_string())
            .expect("the task is still listed")
    };
    let (mut unhealthy_at, mut dropped_at) = (None, None);
    let (unhealthy_at, dropped_at, state) = wait_until_async("the unhealthy task out of tasks.backend", T, || {
        let dropped = query(dns, &tasks_name, TYPE_A, false).is_some_and(|r| !addresses(&r).contains(&sick_ip));
        let state = state_of();
        let now = broken.elapsed();
        if dropped && dropped_at.is_none() {
            dropped_at = Some(now);
        }
        if state != "healthy" && unhealthy_at.is_none() {
            unhealthy_at = Some(now);
        }
        let done = unhealthy_at.zip(dropped_at).map(|(u, d)| (u, d, state));
        async move { done }
    })
    .await;
    eprintln!(
        "a backend whose check began to fail: its state said {state} after {unhealthy_at:?}, the DNS answer \
         dropped it after {dropped_at:?} (probe interval {PROBE:?}, {RETRIES} failures to be unhealthy)"
    );
    assert!(
        dropped_at <= unhealthy_at + PROBE,
        "the task left the answer within one probe interval of turning unhealthy ({dropped_at:?} against \
         {unhealthy_at:?})"
    );
    assert!(
        dropped_at + Duration::from_millis(500) >= unhealthy_at,
        "not before its state changed: {dropped_at:?} against {unhealthy_at:?}"
    );
    let r = query(dns, &tasks_name, TYPE_A, true).expect("an answer");
    assert!(!addresses(&r).contains(&sick_ip) && !addresses(&r).is_empty(), "{r:?}");
    // The frontend still reaches a backend by name.
    for id in cluster.ids() {
        wait_until_async(&format!("the frontend through node {id}"), T, || async { page(id) }).await;
    }
}
