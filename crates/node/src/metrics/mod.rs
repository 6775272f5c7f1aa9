//! What a node shows Prometheus: one explicit registry per node (no global recorder, so
//! several nodes in one test process keep their figures apart), typed families, and
//! gauges read from Raft and from the node's replica at scrape time. No task id is ever a
//! label: a cluster's task count must not become its series count.

pub mod driver;
pub mod http;
pub mod page;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flotilla_types::{NodeStatus, TaskState};
use openraft::ServerState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::node::Node;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodCode {
    pub service: String,
    pub method: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Method {
    pub service: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SnapshotKind {
    /// `built` here, or `installed` from the leader.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PendingReason {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Peer {
    pub peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabel {
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskStateLabel {
    pub state: String,
}

/// The families of one node. Counters and histograms are fed where things happen; the
/// gauges are set from Raft's metrics and the replica on every scrape.
pub struct Metrics {
    registry: Registry,
    raft_term: Gauge,
    raft_is_leader: Gauge,
    raft_leader_changes: Counter,
    raft_last_log_index: Gauge,
    raft_applied_index: Gauge,
    raft_commit_index: Gauge,
    raft_snapshot_index: Gauge,
    raft_replication_lag: Family<Peer, Gauge>,
    raft_members: Gauge,
    grpc_requests: Family<MethodCode, Counter>,
    grpc_duration: Family<Method, Histogram>,
    desired_replicas: Family<ServiceLabel, Gauge>,
    running_replicas: Family<ServiceLabel, Gauge>,
    healthy_replicas: Family<ServiceLabel, Gauge>,
    task_restarts: Family<ServiceLabel, Gauge>,
    tasks: Family<TaskStateLabel, Gauge>,
    node_up: Family<NodeLabel, Gauge>,
    node_heartbeat_age: Family<NodeLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    tasks_pending: Family<PendingReason, Gauge>,
    raft_commit_duration: Histogram,
    raft_apply_duration: Histogram,
    snapshot_duration: Family<SnapshotKind, Histogram>,
    snapshot_size: Family<SnapshotKind, Gauge>,
    cert_expiry: Gauge,
    /// When the leader last heard each node's heartbeat (this node, while it leads).
    heartbeats: Mutex<std::collections::HashMap<u64, Instant>>,
    /// Every call the executor makes to its task driver, by call and driver.
    pub driver_calls: Family<driver::DriverCall, Histogram>,
    pub driver_errors: Family<driver::DriverCall, Counter>,
    /// Handed to the leader's loops (`flotilla_control`), registered here.
    pub control: flotilla_control::ControlMetrics,
    /// The leader's commit index as the last AppendEntries said it, and when.
    leader_commit: Mutex<Option<(u64, Instant)>>,
    last_leader: AtomicU64,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    // 0.5 ms .. ~16 s.
    exponential_buckets(0.0005, 2.0, 16)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("flotilla"),
            raft_term: Gauge::default(),
            raft_is_leader: Gauge::default(),
            raft_leader_changes: Counter::default(),
            raft_last_log_index: Gauge::default(),
            raft_applied_index: Gauge::default(),
            raft_commit_index: Gauge::default(),
            raft_snapshot_index: Gauge::default(),
            raft_replication_lag: Family::default(),
            raft_members: Gauge::default(),
            grpc_requests: Family::default(),
            grpc_duration: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            desired_replicas: Family::default(),
            running_replicas: Family::default(),
            healthy_replicas: Family::default(),
            task_restarts: Family::default(),
            tasks: Family::default(),
            node_up: Family::default(),
            node_heartbeat_age: Family::default(),
            tasks_pending: Family::default(),
            raft_commit_duration: Histogram::new(latency_buckets()),
            raft_apply_duration: Histogram::new(exponential_buckets(0.00001, 2.0, 18)),
            snapshot_duration: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            snapshot_size: Family::default(),
            cert_expiry: Gauge::default(),
            heartbeats: Mutex::new(Default::default()),
            driver_calls: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            driver_errors: Family::default(),
            control: flotilla_control::ControlMetrics::default(),
            leader_commit: Mutex::new(None),
            last_leader: AtomicU64::new(0),
        };
        let r = &mut m.registry;
        r.register("raft_term", "The current Raft term", m.raft_term.clone());
        r.register(
            "raft_is_leader",
            "1 on the Raft leader, else 0",
            m.raft_is_leader.clone(),
        );
        r.register(
            "raft_leader_changes",
            "Times this node saw the leader change",
            m.raft_leader_changes.clone(),
        );
        r.register(
            "raft_last_log_index",
            "Index of the last entry in this node's Raft log",
            m.raft_last_log_index.clone(),
        );
        r.register(
            "raft_applied_index",
            "Index of the last entry applied to this node's replica",
            m.raft_applied_index.clone(),
        );
        r.register(
            "raft_commit_index",
            "The commit index: on the leader, the highest index a quorum holds; on a follower, what the leader's last AppendEntries said",
            m.raft_commit_index.clone(),
        );
        r.register(
            "raft_snapshot_index",
            "Last log index in this node's newest snapshot",
            m.raft_snapshot_index.clone(),
        );
        r.register(
            "raft_replication_lag_entries",
            "On the leader: entries each follower is behind the leader's log",
            m.raft_replication_lag.clone(),
        );
        r.register(
            "raft_members",
            "Voters and learners in the membership",
            m.raft_members.clone(),
        );
        r.register(
            "raft_commit_duration_seconds",
            "On the leader: a write from its proposal until a quorum holds it and it is applied here (group commit included)",
            m.raft_commit_duration.clone(),
        );
        r.register(
            "raft_apply_duration_seconds",
            "One call of the state machine applying committed entries",
            m.raft_apply_duration.clone(),
        );
        r.register(
            "raft_snapshot_duration_seconds",
            "Snapshots built here or installed from the leader (the count is the number of snapshots), and how long each took",
            m.snapshot_duration.clone(),
        );
        r.register(
            "raft_snapshot_size_bytes",
            "Size of the last snapshot built or installed",
            m.snapshot_size.clone(),
        );
        r.register(
            "grpc_requests",
            "Requests this node's server answered, by service, method and gRPC status code",
            m.grpc_requests.clone(),
        );
        r.register(
            "grpc_request_duration_seconds",
            "Time to answer a request, forwarding to the leader included",
            m.grpc_duration.clone(),
        );
        r.register(
            "tasks_pending",
            "Tasks that want to run and have no node, by why (the reason most nodes gave)",
            m.tasks_pending.clone(),
        );
        r.register(
            "node_heartbeat_age_seconds",
            "On the leader: time since each node's last heartbeat",
            m.node_heartbeat_age.clone(),
        );
        r.register(
            "tls_cert_expiry_timestamp_seconds",
            "When this node's certificate expires (Unix seconds; renewed when a third of its lifetime is left)",
            m.cert_expiry.clone(),
        );
        r.register(
            "service_desired_replicas",
            "Replicas each service asks for",
            m.desired_replicas.clone(),
        );
        r.register(
            "service_running_replicas",
            "Tasks of each service that run (healthy or not checked)",
            m.running_replicas.clone(),
        );
        r.register(
            "service_healthy_replicas",
            "Tasks of each service that passed their health check",
            m.healthy_replicas.clone(),
        );
        r.register(
            "service_task_restarts",
            "Restart attempt of each service's current tasks, summed",
            m.task_restarts.clone(),
        );
        r.register("tasks", "Tasks the state holds, by state", m.tasks.clone());
        r.register(
            "node_up",
            "1 for a node the leader hears from, 0 for a node marked down",
            m.node_up.clone(),
        );
        r.register(
            "driver_call_duration_seconds",
            "Calls of the executor to its task driver (create, start, inspect, stop, remove, list, exec), by driver",
            m.driver_calls.clone(),
        );
        r.register(
            "driver_call_errors",
            "Driver calls that failed, by call and driver",
            m.driver_errors.clone(),
        );
        r.register(
            "scheduler_pass_duration_seconds",
            "One scheduling pass on the leader: plan, and propose it when there is work",
            m.control.pass_duration.clone(),
        );
        r.register(
            "scheduler_placements",
            "Tasks the leader's passes gave a node",
            m.control.placements.clone(),
        );
        r.register(
            "scheduler_restarts",
            "Tasks the leader's passes created to restart a slot after a failure",
            m.control.restarts.clone(),
        );
        r.register(
            "scheduler_nodes_marked_down",
            "Nodes the leader's passes marked down",
            m.control.nodes_down.clone(),
        );
        r.register(
            "leader_loop_panics",
            "Leader loops (scheduler, membership) that panicked and were started again, by loop",
            m.control.loop_panics.clone(),
        );
        m
    }

    /// One request answered. `path` is the gRPC path (`/flotilla.v1.ClusterService/Apply`):
    /// the series are by service (`cluster`, `agent`, `raft`) and method (`apply`).
    pub fn observe_rpc(&self, path: &str, code: tonic::Code, took: Duration) {
        let (service, method) = rpc_labels(path);
        self.grpc_requests
            .get_or_create(&MethodCode {
                service: service.clone(),
                method: method.clone(),
                code: format!("{code:?}"),
            })
            .inc();
        self.grpc_duration
            .get_or_create(&Method { service, method })
            .observe(took.as_secs_f64());
    }

    /// A client write committed and applied, `took` after it was proposed.
    pub fn observe_commit(&self, took: Duration) {
        self.raft_commit_duration.observe(took.as_secs_f64());
    }

    /// What the state machine reports.
    pub fn observe_store(&self, event: flotilla_store::StoreEvent) {
        use flotilla_store::StoreEvent;
        let (kind, bytes, took) = match event {
            StoreEvent::Applied { took, .. } => {
                self.raft_apply_duration.observe(took.as_secs_f64());
                return;
            }
            StoreEvent::SnapshotBuilt { bytes, took } => ("built", bytes, took),
            StoreEvent::SnapshotInstalled { bytes, took } => ("installed", bytes, took),
        };
        let label = SnapshotKind { kind: kind.into() };
        self.snapshot_duration.get_or_create(&label).observe(took.as_secs_f64());
        self.snapshot_size.get_or_create(&label).set(bytes as i64);
    }

    /// The leader heard node `id`'s heartbeat.
    pub fn saw_heartbeat(&self, id: u64) {
        self.heartbeats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Instant::now());
    }

    /// What an AppendEntries from the leader says its commit index is.
    pub fn saw_leader_commit(&self, index: u64) {
        *self.leader_commit.lock().expect("not poisoned") = Some((index, Instant::now()));
    }

    /// The leader's commit index as last heard, if heard within `within`.
    pub fn leader_commit(&self, within: Duration) -> Option<u64> {
        let seen = *self.leader_commit.lock().expect("not poisoned");
        seen.filter(|(_, at)| at.elapsed() <= within).map(|(i, _)| i)
    }

    /// Counts a leader change once per change this node sees (the watcher that follows
    /// Raft's metrics calls it on every change of them).
    pub fn note_leader(&self, leader: Option<u64>) {
        let now = leader.unwrap_or(0);
        let before = self.last_leader.swap(now, Ordering::Relaxed);
        if now != 0 && before != now {
            self.raft_leader_changes.inc();
        }
    }

    /// The Prometheus text exposition of `node`, its gauges read now.
    pub fn render(&self, node: &Node) -> String {
        self.refresh(node);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    fn refresh(&self, node: &Node) {
        let m = node.raft.metrics().borrow().clone();
        let leader = m.state == ServerState::Leader;
        let last_log = m.last_log_index.unwrap_or(0);
        self.raft_term.set(m.current_term as i64);
        self.raft_is_leader.set(i64::from(leader));
        self.raft_last_log_index.set(last_log as i64);
        self.raft_applied_index
            .set(m.last_applied.map_or(0, |l| l.index) as i64);
        self.raft_snapshot_index.set(m.snapshot.map_or(0, |l| l.index) as i64);
        self.raft_members
            .set(m.membership_config.membership().nodes().count() as i64);
        self.raft_replication_lag.clear();
        let commit = match (&m.replication, leader) {
            (Some(replication), true) => {
                let mut matched: Vec<u64> = vec![last_log];
                for (peer, log_id) in replication.iter() {
                    let at = log_id.map_or(0, |l| l.index);
                    if *peer != node.id {
                        self.raft_replication_lag
                            .get_or_create(&Peer { peer: peer.to_string() })
                            .set(last_log.saturating_sub(at) as i64);
                        if m.membership_config.membership().voter_ids().any(|v| v == *peer) {
                            matched.push(at);
                        }
                    }
                }
                // The highest index a majority of voters holds.
                matched.sort_unstable_by(|a, b| b.cmp(a));
                matched.get(matched.len() / 2).copied().unwrap_or(0)
            }
            _ => self.leader_commit(Duration::MAX).unwrap_or(0),
        };
        self.raft_commit_index.set(commit as i64);
        self.cert_expiry
            .set(node.tls.as_ref().map_or(0, |t| t.expires_at_ms() / 1000) as i64);
        self.node_heartbeat_age.clear();
        let mut heartbeats = self.heartbeats.lock().unwrap_or_else(|e| e.into_inner());
        if leader {
            for (id, at) in heartbeats.iter() {
                self.node_heartbeat_age
                    .get_or_create(&NodeLabel { node: id.to_string() })
                    .set(at.elapsed().as_secs_f64());
            }
        } else {
            // A new term starts every node's clock again.
            heartbeats.clear();
        }
        drop(heartbeats);
        self.refresh_state(node);
    }

    /// The replica gauges. The replica is read once, under its read lock, into counts
    /// keyed by borrowed names (nothing allocated per task: the lock holds up applies);
    /// the families are written after it is released.
    fn refresh_state(&self, node: &Node) {
        #[derive(Default)]
        struct Counts {
            desired: i64,
            running: i64,
            healthy: i64,
            restarts: i64,
        }
        let (services, tasks, pending, nodes) = {
            let data = node.state.read();
            let state = &data.state;
            let mut services: HashMap<&str, Counts> = state
                .services
                .iter()
                .map(|(name, svc)| {
                    let counts = Counts {
                        desired: i64::from(svc.spec.replicas),
                        ..Counts::default()
                    };
                    (name.as_str(), counts)
                })
                .collect();
            let mut tasks: HashMap<&'static str, i64> = HashMap::new();
            let mut pending: HashMap<&'static str, i64> = HashMap::new();
            for t in state.tasks.values() {
                *tasks.entry(t.state.as_str()).or_default() += 1;
                if t.desired != flotilla_types::DesiredState::Running {
                    continue;
                }
                let Some(counts) = services.get_mut(t.service.as_str()) else {
                    continue;
                };
                if t.state == TaskState::Pending && t.node.is_none() {
                    *pending.entry(pending_reason(&t.message)).or_default() += 1;
                }
                counts.running += i64::from(matches!(t.state, TaskState::Running | TaskState::Healthy));
                counts.healthy += i64::from(t.state == TaskState::Healthy);
                counts.restarts += i64::from(t.attempt);
            }
            let services: Vec<(String, Counts)> = services.into_iter().map(|(n, c)| (n.to_string(), c)).collect();
            let nodes: Vec<(u64, bool)> = state
                .nodes
                .values()
                .map(|n| (n.id, n.status == NodeStatus::Ready))
                .collect();
            (services, tasks, pending, nodes)
        };
        for family in [
            &self.desired_replicas,
            &self.running_replicas,
            &self.healthy_replicas,
            &self.task_restarts,
        ] {
            family.clear();
        }
        self.tasks.clear();
        self.node_up.clear();
        self.tasks_pending.clear();
        for (service, counts) in services {
            let label = ServiceLabel { service };
            self.desired_replicas.get_or_create(&label).set(counts.desired);
            self.running_replicas.get_or_create(&label).set(counts.running);
            self.healthy_replicas.get_or_create(&label).set(counts.healthy);
            self.task_restarts.get_or_create(&label).set(counts.restarts);
        }
        for (state, n) in tasks {
            self.tasks.get_or_create(&TaskStateLabel { state: state.into() }).set(n);
        }
        for (reason, n) in pending {
            self.tasks_pending
                .get_or_create(&PendingReason { reason: reason.into() })
                .set(n);
        }
        for (id, up) in nodes {
            self.node_up
                .get_or_create(&NodeLabel { node: id.to_string() })
                .set(i64::from(up));
        }
    }
}

/// The `service` and `method` labels of a gRPC path: `/flotilla.v1.ClusterService/Apply`
/// gives `cluster` and `apply`.
fn rpc_labels(path: &str) -> (String, String) {
    let mut parts = path.trim_start_matches('/').rsplitn(2, '/');
    let method = parts.next().unwrap_or_default();
    let service = parts
        .next()
        .unwrap_or_default()
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .trim_end_matches("Service")
        .to_ascii_lowercase();
    let mut snake = String::with_capacity(method.len() + 4);
    for (i, c) in method.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    (service, snake)
}

/// A pending task's reason as a label from a fixed set (the reason the most nodes gave
/// in the scheduler's `0/3 nodes: 2 insufficient memory, 1 drained`).
fn pending_reason(message: &str) -> &'static str {
    let Some(first) = message
        .split_once("nodes: ")
        .map(|(_, r)| r.split(',').next().unwrap_or_default())
    else {
        return if message.is_empty() { "unscheduled" } else { "other" };
    };
    let first = first.trim().trim_start_matches(|c: char| c.is_ascii_digit()).trim();
    match first {
        "no nodes registered" => "no_nodes",
        "down" => "node_down",
        "paused" => "node_paused",
        "drained" => "node_drained",
        "at max_per_node" => "max_per_node",
        "host port in use" => "port_in_use",
        "insufficient cpu" => "insufficient_cpu",
        "insufficient memory" => "insufficient_memory",
        "service deleted" => "service_deleted",
        f if f.starts_with("not matching") => "constraint",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_paths_become_service_and_method_labels() {
        assert_eq!(
            rpc_labels("/flotilla.v1.ClusterService/Apply"),
            ("cluster".into(), "apply".into())
        );
        assert_eq!(
            rpc_labels("/flotilla.v1.RaftService/AppendEntries"),
            ("raft".into(), "append_entries".into())
        );
        assert_eq!(rpc_labels("junk"), (String::new(), "junk".into()));
    }

    #[test]
    fn pending_reasons_come_from_a_fixed_set() {
        assert_eq!(
            pending_reason("0/3 nodes: 2 insufficient memory, 1 drained"),
            "insufficient_memory"
        );
        assert_eq!(
            pending_reason("0/2 nodes: 2 not matching `node.labels.zone==b`"),
            "constraint"
        );
        assert_eq!(pending_reason("0/0 nodes: no nodes registered"), "no_nodes");
        assert_eq!(pending_reason(""), "unscheduled");
        assert_eq!(pending_reason("something else"), "other");
    }
}
