//! A cluster of real agent processes.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flotilla_proto::v1::{MemberStatus, NodeStatusRequest};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::creds::{ApiClient, Credentials};
use crate::partition::Partitions;
use crate::wait::wait_until_async;

/// The `flotilla` binary under test: `FLOTILLA_BIN`, else next to the test executable's
/// `deps/` directory (`target/<profile>/flotilla`).
pub fn flotilla_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FLOTILLA_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    let dir = if dir.ends_with("deps") {
        dir.parent().expect("profile dir")
    } else {
        dir
    };
    let bin = dir.join("flotilla");
    assert!(
        bin.exists(),
        "{} not found: build it first (`cargo build -p flotilla`, as `make test` does) or set FLOTILLA_BIN",
        bin.display()
    );
    bin
}

/// A free TCP port on `ip` (bound, then released).
fn free_port(ip: IpAddr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub struct Agent {
    pub id: u64,
    /// The address it listens on (and, with distinct IPs, connects to peers from).
    pub ip: IpAddr,
    pub addr: String,
    /// Where it serves `/metrics`, `/healthz` and `/readyz` (every test agent does).
    pub metrics_addr: String,
    pub data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    paused: bool,
    /// How it finds the cluster when not `--peers <initial members>`, e.g.
    /// `["--join", &cluster.addrs()]` or `["--force-new-cluster"]`.
    membership_args: Option<Vec<String>>,
}

impl Agent {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

pub struct ClusterBuilder {
    size: u64,
    args: Vec<String>,
    driver: &'static str,
    distinct_ips: bool,
    insecure: bool,
    metrics: bool,
    env: Vec<(String, String)>,
}

impl ClusterBuilder {
    /// An environment variable for every agent, e.g. `FLOTILLA_FAILPOINTS`.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Extra flags for every agent, e.g. `["--snapshot-interval", "20"]`.
    pub fn agent_args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// The task driver: `process` (the default here: no engine needed) or `docker`.
    pub fn driver(mut self, driver: &'static str) -> Self {
        self.driver = driver;
        self
    }

    /// Each agent on its own loopback address, `127.<a>.<b>.<10 + id>` with `a.b` unique
    /// to this cluster among those of this process (and most likely of others), instead
    /// of all on 127.0.0.1. Agents then connect to each other from their own address, so
    /// [`Cluster::isolate`] can cut one off.
    /// Agents with `--insecure` (plain TCP, no credentials) and clients to match: only to
    /// measure what TLS costs (`BENCH_INSECURE=1`).
    pub fn insecure(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// Agents without `--metrics-listen` (every test agent has it otherwise): only to
    /// measure what serving and scraping metrics costs (`BENCH_METRICS=0`).
    pub fn without_metrics_listener(mut self) -> Self {
        self.metrics = false;
        self
    }

    pub fn distinct_ips(mut self) -> Self {
        self.distinct_ips = true;
        self
    }

    pub fn start(self) -> Cluster {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{}-{n}", std::process::id());
        assert!(
            !self.distinct_ips || self.size <= 200,
            "at most 200 agents with distinct IPs"
        );
        // 127.<a>.<b>: from the pid and the counter; never 127.0.0 (127.0.0.1's block).
        let block = {
            let k = (std::process::id() as u64)
                .wrapping_mul(31)
                .wrapping_add(n.wrapping_mul(7919));
            let a = 1 + (k % 254) as u8;
            let b = ((k / 254) % 256) as u8;
            (a, b)
        };
        let mut args = vec![
            "--driver".to_string(),
            self.driver.to_string(),
            "--cluster-name".to_string(),
            name.clone(),
        ];
        args.extend(self.args);
        let root = tempfile::Builder::new()
            .prefix("flotilla-cluster-")
            .tempdir()
            .expect("temp dir");
        let mut agents = BTreeMap::new();
        for id in 1..=self.size {
            let dir = root.path().join(format!("node{id}"));
            let ip = if self.distinct_ips {
                IpAddr::V4(Ipv4Addr::new(127, block.0, block.1, 10 + id as u8))
            } else {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            };
            agents.insert(
                id,
                Agent {
                    id,
                    ip,
                    addr: format!("{ip}:{}", free_port(ip)),
                    metrics_addr: format!("{ip}:{}", free_port(ip)),
                    data_dir: dir.join("data"),
                    log: dir.join("agent.log"),
                    child: None,
                    paused: false,
                    membership_args: None,
                },
            );
            std::fs::create_dir_all(&dir).expect("node dir");
        }
        let mut creds = Credentials::new(root.path(), &agents[&1].data_dir);
        creds.insecure = self.insecure;
        if self.insecure {
            args.push("--insecure".into());
        }
        let initial_peers = agents
            .values()
            .map(|a| format!("{}={}", a.id, a.addr))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            root: Some(root),
            agents,
            args,
            name,
            partitions: Partitions::new(),
            initial_peers,
            creds,
            metrics: self.metrics,
            env: self.env,
            block: self.distinct_ips.then_some(block),
        };
        for id in 1..=self.size {
            cluster.start_agent(id);
        }
        cluster
    }
}

pub struct Cluster {
    root: Option<tempfile::TempDir>,
    agents: BTreeMap<u64, Agent>,
    args: Vec<String>,
    /// The cluster's `flotilla.cluster` label, unique per test cluster.
    name: String,
    /// Cuts made by [`Cluster::isolate`]; healed on drop.
    partitions: Partitions,
    /// `--peers` of the agents the cluster started with.
    initial_peers: String,
    /// The bootstrap token and the admin config.
    pub creds: Credentials,
    /// Agents serve `/metrics` on their `metrics_addr`.
    metrics: bool,
    /// Extra environment of every agent.
    env: Vec<(String, String)>,
    /// With distinct IPs: agent `id` listens on 127.<a>.<b>.<10 + id>.
    block: Option<(u8, u8)>,
}

/// Set on every agent (and so inherited by the processes it starts) to find them again.
const MARKER: &str = "FLOTILLA_TEST_CLUSTER";

/// A client of the node at `addr` with the admin credentials (none before the first
/// node wrote them).
pub(crate) fn client_at(addr: &str, creds: &Credentials) -> ApiClient {
    creds.client(addr)
}

/// The node at `addr`'s own view, or `None` when it does not answer within a second.
pub(crate) async fn status_at(addr: &str, creds: &Credentials) -> Option<MemberStatus> {
    let mut c = client_at(addr, creds);
    let r = tokio::time::timeout(Duration::from_secs(1), c.node_status(NodeStatusRequest {}))
        .await
        .ok()?
        .ok()?;
    Some(r.into_inner())
}

/// Waits until every node of `running` (asked through `status`) agrees on one leader.
pub(crate) async fn wait_for_leader<F, Fut>(running: &[u64], timeout: Duration, status: F) -> u64
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Option<MemberStatus>>,
{
    wait_until_async("one leader agreed by every running node", timeout, || async {
        let mut seen = Vec::new();
        for id in running {
            seen.push(status(*id).await?);
        }
        agreed_leader(&seen, running)
    })
    .await
}

/// Waits until node `id` (asked through `status`) has applied at least `index`.
pub(crate) async fn wait_applied<F, Fut>(id: u64, index: u64, timeout: Duration, status: F) -> MemberStatus
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<MemberStatus>>,
{
    wait_until_async(&format!("node {id} to apply index {index}"), timeout, || async {
        status().await.filter(|s| s.applied_index >= index)
    })
    .await
}

/// The leader every member in `seen` (the statuses of the `running` ones) agrees on, in one
/// term, when it is running and says so itself.
pub(crate) fn agreed_leader(seen: &[MemberStatus], running: &[u64]) -> Option<u64> {
    let first = seen.first()?;
    let agreed = first.leader_id != 0
        && seen
            .iter()
            .all(|s| s.leader_id == first.leader_id && s.term == first.term);
    let leader_says_so = seen
        .iter()
        .any(|s| s.id == first.leader_id && s.role() == flotilla_proto::v1::MemberRole::Leader);
    (agreed && leader_says_so && running.contains(&first.leader_id)).then_some(first.leader_id)
}

/// Waits up to `timeout` for `child` to exit on its own; `None` if it still runs.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Cluster {
    pub fn builder(size: u64) -> ClusterBuilder {
        ClusterBuilder {
            size,
            args: Vec::new(),
            driver: "process",
            distinct_ips: false,
            insecure: false,
            metrics: true,
            env: Vec::new(),
        }
    }

    /// The `flotilla.cluster` label of this cluster's containers.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A cluster of `size` agents with default flags.
    pub fn start(size: u64) -> Cluster {
        Self::builder(size).start()
    }

    pub fn root(&self) -> &Path {
        self.root.as_ref().expect("root").path()
    }

    pub fn ids(&self) -> Vec<u64> {
        self.agents.keys().copied().collect()
    }

    pub fn agent(&self, id: u64) -> &Agent {
        &self.agents[&id]
    }

    pub fn ip(&self, id: u64) -> IpAddr {
        self.agents[&id].ip
    }

    /// Cuts agent `id` off from every other agent, both directions (iptables, root; the
    /// cluster must be built with [`ClusterBuilder::distinct_ips`]). Clients still reach
    /// every agent. One cut at a time: it replaces any earlier one.
    pub fn isolate(&mut self, id: u64) -> Result<(), String> {
        let me = self.agents[&id].ip;
        self.partitions.isolate_only(me, self.agents.values().map(|a| a.ip))
    }

    /// Drops what agent `from` sends to agent `to` (one direction; the other still
    /// flows), all of it or each packet with `probability`. Cuts add up until [`Cluster::heal`].
    /// Needs [`ClusterBuilder::distinct_ips`].
    pub fn drop_between(&mut self, from: u64, to: u64, probability: Option<f64>) -> Result<(), String> {
        let (src, dst) = (self.agents[&from].ip, self.agents[&to].ip);
        if src == dst {
            return Err(format!(
                "agents {from} and {to} share {src}: give each its own (distinct_ips)"
            ));
        }
        self.partitions.drop_packets(src, dst, probability)
    }

    /// Removes every cut.
    pub fn heal(&mut self) {
        self.partitions.heal();
    }

    pub fn addr(&self, id: u64) -> String {
        self.agents[&id].addr.clone()
    }

    /// All addresses, comma-separated, as `--addr` takes them.
    pub fn addrs(&self) -> String {
        self.agents
            .values()
            .map(|a| a.addr.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Addresses of running agents only.
    pub fn live_addrs(&self) -> String {
        self.agents
            .values()
            .filter(|a| a.is_running())
            .map(|a| a.addr.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn peers(&self) -> String {
        self.agents
            .values()
            .map(|a| format!("{}={}", a.id, a.addr))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The command line that starts agent `id`, for tests that run it themselves.
    pub fn agent_command(&self, id: u64) -> Command {
        let a = &self.agents[&id];
        let mut cmd = Command::new(flotilla_bin());
        cmd.arg("agent")
            .arg("--id")
            .arg(id.to_string())
            .arg("--listen")
            .arg(&a.addr)
            .arg("--data-dir")
            .arg(&a.data_dir);
        if self.metrics {
            cmd.arg("--metrics-listen").arg(&a.metrics_addr);
        }
        match &a.membership_args {
            Some(args) => {
                if args.iter().any(|a| a == "--join") {
                    cmd.arg("--token-file").arg(self.join_token());
                }
                cmd.args(args)
            }
            None if self.creds.insecure => cmd.arg("--peers").arg(&self.initial_peers),
            None => cmd
                .arg("--peers")
                .arg(&self.initial_peers)
                .arg("--token-file")
                .arg(&self.creds.bootstrap),
        };
        // Published ports and the mesh stay on this machine's loopback in tests, on the
        // agent's own address, unless a test says where.
        if !self.args.iter().any(|a| a.starts_with("--publish-addr")) {
            cmd.arg("--publish-addr").arg(a.ip.to_string());
        }
        // Tests run side by side on one engine, whose bridge gateway has one port 53 and
        // one of each container port: discovery by name is on only where a test asks.
        if !self.args.iter().any(|a| a.starts_with("--dns-listen")) {
            cmd.arg("--dns-listen").arg("off");
        }
        cmd.args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("FLOTILLA_TEST_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
            )
            .env(MARKER, &self.name)
            .env(flotilla_node::injected::DELAY_FILE_ENV, self.delay_file(id))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        cmd
    }

    /// A file with the cluster's join token (asked of the cluster with the admin config).
    pub fn join_token(&self) -> PathBuf {
        let path = self.root().join("join.token");
        if !path.exists() {
            let out = crate::wait::wait_until("the join token", Duration::from_secs(30), || {
                let o = self.cli(&["token", "join"]);
                o.status.success().then_some(o.stdout)
            });
            std::fs::write(&path, out).expect("write the join token");
        }
        path
    }

    /// Adds agent `id` (its own data dir and a free port on 127.0.0.1; not started) that
    /// finds the cluster with `membership_args` instead of `--peers`, e.g.
    /// `["--join", &cluster.addrs()]`.
    pub fn add_agent(&mut self, id: u64, membership_args: &[&str]) {
        assert!(!self.agents.contains_key(&id), "agent {id} exists already");
        let dir = self.root().join(format!("node{id}"));
        std::fs::create_dir_all(&dir).expect("node dir");
        let ip = match self.block {
            Some((a, b)) => {
                assert!(id <= 200, "at most 200 agents with distinct IPs");
                IpAddr::V4(Ipv4Addr::new(127, a, b, 10 + id as u8))
            }
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        self.agents.insert(
            id,
            Agent {
                id,
                ip,
                addr: format!("{ip}:{}", free_port(ip)),
                metrics_addr: format!("{ip}:{}", free_port(ip)),
                data_dir: dir.join("data"),
                log: dir.join("agent.log"),
                child: None,
                paused: false,
                membership_args: Some(membership_args.iter().map(|s| s.to_string()).collect()),
            },
        );
    }

    /// How agent `id` finds the cluster from its next start on (see [`Cluster::add_agent`]).
    pub fn set_membership_args(&mut self, id: u64, membership_args: &[&str]) {
        let a = self.agents.get_mut(&id).expect("agent");
        a.membership_args = Some(membership_args.iter().map(|s| s.to_string()).collect());
    }

    /// Stops agent `id` (SIGKILL) and drops it from the cluster's agents: for a node that
    /// was removed from the cluster. Its directory stays, with its log.
    pub fn forget(&mut self, id: u64) {
        self.kill(id);
        self.agents.remove(&id);
    }

    /// The file whose number of milliseconds agent `id` waits before it handles each
    /// message from a peer (see `flotilla_node::injected`).
    fn delay_file(&self, id: u64) -> PathBuf {
        self.agents[&id].data_dir.with_file_name("delay")
    }

    /// Delays every Raft and agent message agent `id` receives from a peer by `delay`
    /// (`None`: no more delay), from its next read of the file, within 100 ms.
    pub fn delay(&self, id: u64, delay: Option<Duration>) -> std::io::Result<()> {
        let path = self.delay_file(id);
        match delay {
            Some(d) => std::fs::write(path, d.as_millis().to_string()),
            None => match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }

    /// Deletes agent `id`'s data dir (the agent must be stopped).
    pub fn wipe(&mut self, id: u64) {
        let a = &self.agents[&id];
        assert!(!a.is_running(), "stop agent {id} before wiping its data");
        match std::fs::remove_dir_all(&a.data_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("wipe {}: {e}", a.data_dir.display()),
        }
    }

    /// Starts (or restarts) agent `id` with the same flags as before.
    pub fn start_agent(&mut self, id: u64) {
        assert!(!self.agents[&id].is_running(), "agent {id} is already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.agents[&id].log)
            .expect("agent log");
        let child = self
            .agent_command(id)
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn flotilla agent");
        let a = self.agents.get_mut(&id).expect("agent");
        a.child = Some(child);
        a.paused = false;
    }

    /// SIGKILL: no shutdown, no flush beyond what was already synced.
    pub fn kill(&mut self, id: u64) {
        let a = self.agents.get_mut(&id).expect("agent");
        if let Some(mut child) = a.child.take() {
            if a.paused {
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        a.paused = false;
    }

    pub fn restart(&mut self, id: u64) {
        self.kill(id);
        self.start_agent(id);
    }

    /// SIGSTOP / SIGCONT.
    pub fn pause(&mut self, id: u64) {
        let a = self.agents.get_mut(&id).expect("agent");
        if let Some(pid) = a.pid() {
            kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).expect("SIGSTOP");
            a.paused = true;
        }
    }

    pub fn resume(&mut self, id: u64) {
        let a = self.agents.get_mut(&id).expect("agent");
        if let Some(pid) = a.pid() {
            kill(Pid::from_raw(pid as i32), Signal::SIGCONT).expect("SIGCONT");
            a.paused = false;
        }
    }

    /// Waits for agent `id`'s process to exit on its own (e.g. refusing to start).
    pub fn wait_exit(&mut self, id: u64, timeout: Duration) -> Option<std::process::ExitStatus> {
        let a = self.agents.get_mut(&id).expect("agent");
        let status = wait_child(a.child.as_mut()?, timeout)?;
        a.child = None;
        Some(status)
    }

    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(&self.agents[&id].log).unwrap_or_default()
    }

    /// A client of agent `id` with the admin credentials.
    pub async fn client(&self, id: u64) -> Option<ApiClient> {
        Some(client_at(&self.addr(id), &self.creds))
    }

    /// Agent `id`'s own view, or `None` when it does not answer.
    pub async fn status(&self, id: u64) -> Option<MemberStatus> {
        if !self.agents[&id].is_running() || self.agents[&id].paused {
            return None;
        }
        status_at(&self.addr(id), &self.creds).await
    }

    /// Waits until every running agent agrees on one leader in one term; returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> u64 {
        let running: Vec<u64> = self
            .agents
            .values()
            .filter(|a| a.is_running() && !a.paused)
            .map(|a| a.id)
            .collect();
        wait_for_leader(&running, timeout, |id| self.status(id)).await
    }

    /// Waits until agent `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64, timeout: Duration) -> MemberStatus {
        wait_applied(id, index, timeout, || self.status(id)).await
    }

    /// Runs the CLI with `--addr` set to `addrs`, as the admin (the config the first node
    /// wrote).
    pub fn cli_at(&self, addrs: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(flotilla_bin());
        cmd.arg("--addr").arg(addrs).env_remove("FLOTILLA_ADDR");
        if self.creds.insecure {
            cmd.arg("--insecure");
        } else {
            cmd.env("FLOTILLA_CONFIG", self.creds.config_path());
        }
        cmd.args(args).output().expect("run flotilla")
    }

    /// Runs the CLI against every running agent.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_at(&self.live_addrs(), args)
    }

    /// Writes `text` to a file under the cluster's temp dir and returns its path.
    pub fn write_file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.root().join(name);
        std::fs::write(&p, text).expect("write file");
        p
    }
}

impl Cluster {
    /// Kills every process this cluster's agents started (they carry the marker in their
    /// environment) and removes its Docker containers, so no test leaves work behind.
    pub fn cleanup_workloads(&self) {
        let marker = format!("{MARKER}={}", self.name);
        if let Ok(procs) = std::fs::read_dir("/proc") {
            for p in procs.flatten() {
                let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let environ = std::fs::read(p.path().join("environ")).unwrap_or_default();
                if environ.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        let filter = format!("label=flotilla.cluster={}", self.name);
        if let Ok(out) = Command::new("docker").args(["ps", "-aq", "--filter", &filter]).output() {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(String::from)
                .collect();
            if !ids.is_empty() {
                let _ = Command::new("docker").arg("rm").arg("-f").args(&ids).output();
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.partitions.heal();
        let ids: Vec<u64> = self.agents.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
        self.cleanup_workloads();
        // Keep the data dirs and logs of a failed test for inspection.
        if std::thread::panicking() {
            if let Some(root) = self.root.take() {
                let path = root.keep();
                eprintln!("cluster data and agent logs kept in {}", path.display());
            }
        }
    }
}
