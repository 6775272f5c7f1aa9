//! Agent configuration, as given on the command line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use flotilla_control::ControlConfig;
use flotilla_store::NodeId;
use flotilla_types::Capacity;

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: NodeId,
    /// Where the gRPC server binds.
    pub listen: SocketAddr,
    /// The address other nodes and clients use for this node (`--advertise-addr`), when
    /// it is not the one in `peers` or the listen address.
    pub advertise: Option<String>,
    pub data_dir: PathBuf,
    /// Every initial member's id and address, this node included.
    pub peers: BTreeMap<NodeId, String>,
    pub raft: RaftTuning,
    /// Labels placement constraints match against (`--label k=v`).
    pub labels: BTreeMap<String, String>,
    /// What this node offers to tasks.
    pub capacity: Capacity,
    pub control: ControlConfig,
    /// How often this node heartbeats the leader.
    pub heartbeat: Duration,
    /// The `flotilla.cluster` label on every container this node starts.
    pub cluster: String,
    /// Members to ask to join through (`--join`), instead of `--peers`.
    pub join: Vec<String>,
    /// Voters the cluster aims for (`--voters`); `None`: 3 up to 4 nodes, 5 above.
    pub voters: Option<usize>,
    /// A voter down this long is replaced by a healthy learner (leader setting).
    pub dead_voter_timeout: Option<Duration>,
    /// Re-form a one-node cluster from this node's data dir before starting.
    pub force_new_cluster: bool,
    /// How long a completed task's container is kept for `logs` before it is removed.
    pub keep_completed: Duration,
    /// Where `/metrics`, `/healthz` and `/readyz` are served over plain HTTP; off when unset.
    pub metrics_listen: Option<SocketAddr>,
    /// Plain TCP and no authentication (`--insecure`; loopback listen addresses only).
    pub insecure: bool,
    /// The bootstrap or join token this node was started with (`--token-file`).
    pub token: Option<String>,
    /// How long the certificates this node signs are valid (`--cert-lifetime`).
    pub cert_lifetime: Duration,
    /// How long a request may run on this node's server (`--request-timeout`).
    pub request_timeout: Duration,
    /// Where the routing mesh listens for the services' ingress ports (`--publish-addr`);
    /// `None`: no mesh on this node.
    pub publish_addr: Option<std::net::IpAddr>,
    /// Discovery by name (`--dns-listen`); `None`: off.
    pub dns: Option<DnsConfig>,
}

/// The agent's DNS server, and where its tasks reach the mesh by name.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Where it listens (UDP and TCP).
    pub listen: SocketAddr,
    /// The names it answers for: `<cluster>.flotilla`.
    pub zone: String,
    /// The engine's bridge, for tasks in containers on it: the mesh listens on its gateway
    /// for names, and a query from its subnet is answered with the gateway.
    pub bridge: Option<flotilla_executor::Bridge>,
    /// Where names outside the zone are asked (the machine's resolvers); none: refused.
    pub upstreams: Vec<SocketAddr>,
}

/// The zone the DNS server answers for in the cluster `cluster`.
pub fn dns_zone(cluster: &str) -> String {
    format!("{}.flotilla", cluster.to_ascii_lowercase())
}

/// Default of `--request-timeout`: longer than the CLI's longest call (two minutes).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(180);

/// A snapshot install may take at least this long (up to 4 GiB streamed).
pub const SNAPSHOT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// How often an agent heartbeats the leader (not a flag).
pub const NODE_HEARTBEAT: Duration = Duration::from_secs(1);

// `flotilla agent`'s Raft defaults, the one place they are written: the agent's flags
// override them, and the benches print them.
pub const DEFAULT_RAFT_HEARTBEAT: Duration = Duration::from_millis(50);
pub const DEFAULT_ELECTION_MIN: Duration = Duration::from_millis(250);
pub const DEFAULT_ELECTION_MAX: Duration = Duration::from_millis(500);
pub const DEFAULT_SNAPSHOT_INTERVAL: u64 = 5000;
pub const DEFAULT_SNAPSHOT_KEEP: u64 = 1000;
/// Bounds an append RPC: entries are at most one spec (1 MiB) each.
pub const MAX_PAYLOAD_ENTRIES: u64 = 64;

#[derive(Debug, Clone)]
pub struct RaftTuning {
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
    /// Build a snapshot every this many applied entries.
    pub snapshot_interval: u64,
    /// Entries kept in the log behind a snapshot, for followers that lag a little.
    pub snapshot_keep: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            heartbeat: DEFAULT_RAFT_HEARTBEAT,
            election_min: DEFAULT_ELECTION_MIN,
            election_max: DEFAULT_ELECTION_MAX,
            snapshot_interval: DEFAULT_SNAPSHOT_INTERVAL,
            snapshot_keep: DEFAULT_SNAPSHOT_KEEP,
        }
    }
}

impl NodeConfig {
    /// The address other nodes and clients use for this node: `--advertise-addr`, else its
    /// entry in `--peers`, else the listen address.
    pub fn advertised(&self) -> String {
        self.advertise
            .clone()
            .or_else(|| self.peers.get(&self.id).cloned())
            .unwrap_or_else(|| self.listen.to_string())
    }

    pub fn raft_config(&self) -> Result<openraft::Config, String> {
        let t = &self.raft;
        let config = openraft::Config {
            cluster_name: "flotilla".into(),
            heartbeat_interval: t.heartbeat.as_millis() as u64,
            election_timeout_min: t.election_min.as_millis() as u64,
            election_timeout_max: t.election_max.as_millis() as u64,
            // Many-megabyte snapshots on a busy two-core machine need seconds, not 200 ms.
            install_snapshot_timeout: 30_000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(t.snapshot_interval),
            max_in_snapshot_log_to_keep: t.snapshot_keep,
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            ..Default::default()
        };
        config.validate().map_err(|e| e.to_string())
    }
}

/// This machine's cores (in millis) and memory (MiB), for a node started without
/// `--cpu`/`--memory`.
pub fn machine_capacity() -> Capacity {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let memory_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(1024, |kb| kb / 1024);
    Capacity {
        cpu_millis: cores * 1000,
        memory_mb,
    }
}

/// Parses `key=value` labels.
pub fn parse_labels(items: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for item in items {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("label {item:?} must look like KEY=VALUE"))?;
        let k = k.trim();
        if k.is_empty() || k.contains(char::is_whitespace) {
            return Err(format!("label key {k:?} must be non-empty without spaces"));
        }
        labels.insert(k.to_string(), v.trim().to_string());
    }
    Ok(labels)
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_peers(s: &str) -> Result<BTreeMap<NodeId, String>, String> {
    let mut peers = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("peer {part:?} must look like ID=HOST:PORT"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| format!("peer id {id:?} is not a number"))?;
        if id == 0 {
            return Err("peer ids start at 1".into());
        }
        let addr = addr.trim();
        if addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
            return Err(format!("peer {id} address {addr:?} must be HOST:PORT"));
        }
        if peers.insert(id, addr.to_string()).is_some() {
            return Err(format!("peer {id} is listed twice"));
        }
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_peer_lists() {
        let p = parse_peers("1=127.0.0.1:7001, 2=127.0.0.1:7002").unwrap();
        assert_eq!(p[&2], "127.0.0.1:7002");
        assert!(parse_peers("1=a:1,1=b:2").unwrap_err().contains("twice"));
        assert!(parse_peers("x=a:1").unwrap_err().contains("not a number"));
        assert!(parse_peers("1=nohost").unwrap_err().contains("HOST:PORT"));
        assert!(parse_peers("1").unwrap_err().contains("ID=HOST:PORT"));
    }
}
