//! In-process clusters: several flotilla nodes (`flotilla_node::run`) in the test's own
//! process and tokio runtime, over real loopback gRPC, each with its own data dir and
//! free port (and, with [`InProcessCluster::distinct_ips`], its own 127.x.y.z address, so
//! [`InProcessCluster::isolate`] can cut one off with iptables). No agent process starts,
//! so a test pays no process start-up; nodes are stopped gracefully (a crash needs a real
//! process: [`crate::Cluster`]). Tasks run through the process driver.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flotilla_executor::ProcessDriver;
use flotilla_node::{NodeConfig, NodeError, RaftTuning};
use flotilla_proto::v1::MemberStatus;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::cluster::{client_at, status_at, wait_applied, wait_for_leader};
use crate::creds::{ApiClient, Credentials};
use crate::partition::Partitions;

/// A running node: its shutdown signal and its task.
type Running = (oneshot::Sender<()>, JoinHandle<Result<(), NodeError>>);

struct InNode {
    ip: IpAddr,
    addr: SocketAddr,
    data_dir: PathBuf,
    running: Option<Running>,
}

pub struct InProcessCluster {
    /// Holds the nodes' data dirs (removed on drop).
    _root: tempfile::TempDir,
    nodes: BTreeMap<u64, InNode>,
    peers: BTreeMap<u64, String>,
    raft: RaftTuning,
    name: String,
    partitions: Partitions,
    pub creds: Credentials,
}

fn free_addr(ip: IpAddr) -> SocketAddr {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

impl InProcessCluster {
    /// `size` nodes on 127.0.0.1, started.
    pub fn start(size: u64) -> Self {
        Self::build(size, false, RaftTuning::default())
    }

    /// `size` nodes, each on its own loopback address (see [`InProcessCluster::isolate`]).
    pub fn distinct_ips(size: u64) -> Self {
        Self::build(size, true, RaftTuning::default())
    }

    /// `size` nodes on 127.0.0.1 with these Raft settings.
    pub fn with_raft(size: u64, raft: RaftTuning) -> Self {
        Self::build(size, false, raft)
    }

    fn build(size: u64, distinct_ips: bool, raft: RaftTuning) -> Self {
        let root = tempfile::Builder::new()
            .prefix("flotilla-inproc-")
            .tempdir()
            .expect("temp dir");
        let salt = u64::from(std::process::id()) ^ root.path().to_string_lossy().len() as u64;
        let block = (1 + (salt % 254) as u8, ((salt / 254) % 256) as u8);
        let nodes: BTreeMap<u64, InNode> = (1..=size)
            .map(|id| {
                let ip = if distinct_ips {
                    IpAddr::V4(Ipv4Addr::new(127, block.0, block.1, 10 + id as u8))
                } else {
                    IpAddr::V4(Ipv4Addr::LOCALHOST)
                };
                let node = InNode {
                    ip,
                    addr: free_addr(ip),
                    data_dir: root.path().join(format!("node{id}")),
                    running: None,
                };
                (id, node)
            })
            .collect();
        let peers = nodes.iter().map(|(id, n)| (*id, n.addr.to_string())).collect();
        let name = format!("inproc{}-{}", std::process::id(), salt % 100_000);
        let creds = Credentials::new(root.path(), &nodes[&1].data_dir);
        let mut cluster = InProcessCluster {
            creds,
            _root: root,
            nodes,
            peers,
            raft,
            name,
            partitions: Partitions::new(),
        };
        for id in 1..=size {
            cluster.start_node(id);
        }
        cluster
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    pub fn addr(&self, id: u64) -> String {
        self.nodes[&id].addr.to_string()
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.nodes[&id].running.is_some()
    }

    fn config(&self, id: u64) -> NodeConfig {
        let n = &self.nodes[&id];
        NodeConfig {
            id,
            listen: n.addr,
            advertise: None,
            data_dir: n.data_dir.clone(),
            peers: self.peers.clone(),
            raft: self.raft.clone(),
            labels: BTreeMap::new(),
            capacity: flotilla_types::Capacity {
                cpu_millis: 2000,
                memory_mb: 2048,
            },
            control: flotilla_node::ControlConfig::default(),
            heartbeat: Duration::from_secs(1),
            cluster: self.name.clone(),
            join: Vec::new(),
            voters: None,
            dead_voter_timeout: None,
            force_new_cluster: false,
            keep_completed: flotilla_executor::task_loop::KEEP_COMPLETED,
            metrics_listen: None,
            insecure: false,
            token: std::fs::read_to_string(&self.creds.bootstrap).ok(),
            cert_lifetime: flotilla_node::security::DEFAULT_CERT_LIFETIME,
            request_timeout: flotilla_node::config::DEFAULT_REQUEST_TIMEOUT,
            // The routing mesh is tested with real agents, each on its own address.
            publish_addr: None,
            dns: None,
        }
    }

    /// Starts (or restarts, on its data dir) node `id` in this process.
    pub fn start_node(&mut self, id: u64) {
        assert!(!self.is_running(id), "node {id} is already running");
        let config = self.config(id);
        let driver = Arc::new(ProcessDriver::new(config.data_dir.join("process")));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(flotilla_node::run(config, driver, async move {
            let _ = stopped.await;
        }));
        self.nodes.get_mut(&id).expect("node").running = Some((stop, task));
    }

    /// Stops node `id` as its agent stops on SIGTERM, and waits until it has.
    pub async fn stop(&mut self, id: u64) {
        let Some((stop, task)) = self.nodes.get_mut(&id).expect("node").running.take() else {
            return;
        };
        let _ = stop.send(());
        match tokio::time::timeout(Duration::from_secs(30), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("node {id} stopped with an error: {e}"),
            Ok(Err(e)) => panic!("node {id} panicked: {e}"),
            Err(_) => panic!("node {id} did not stop within 30 s"),
        }
    }

    /// A client of node `id` with the admin credentials.
    pub async fn client(&self, id: u64) -> Option<ApiClient> {
        Some(client_at(&self.addr(id), &self.creds))
    }

    /// Node `id`'s own view, or `None` when it does not answer.
    pub async fn status(&self, id: u64) -> Option<MemberStatus> {
        if !self.is_running(id) {
            return None;
        }
        status_at(&self.addr(id), &self.creds).await
    }

    /// Waits until every running node agrees on one leader in one term; returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> u64 {
        let running: Vec<u64> = self.ids().into_iter().filter(|id| self.is_running(*id)).collect();
        wait_for_leader(&running, timeout, |id| self.status(id)).await
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64, timeout: Duration) -> MemberStatus {
        wait_applied(id, index, timeout, || self.status(id)).await
    }

    /// Cuts node `id` off from every other node, both directions (iptables, root; built
    /// with [`InProcessCluster::distinct_ips`]). The test's own clients still reach it.
    pub fn isolate(&mut self, id: u64) -> Result<(), String> {
        let me = self.nodes[&id].ip;
        self.partitions.isolate_only(me, self.nodes.values().map(|n| n.ip))
    }

    pub fn heal(&mut self) {
        self.partitions.heal();
    }

    /// Stops every node (the process driver's tasks with them are the test's to clean).
    pub async fn shutdown(mut self) {
        self.partitions.heal();
        for id in self.ids() {
            self.stop(id).await;
        }
    }
}

impl Drop for InProcessCluster {
    fn drop(&mut self) {
        // Nodes still running stop with the runtime; their shutdown signal goes now.
        for node in self.nodes.values_mut() {
            if let Some((stop, task)) = node.running.take() {
                let _ = stop.send(());
                task.abort();
            }
        }
    }
}
