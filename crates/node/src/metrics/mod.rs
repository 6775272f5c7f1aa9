//! What a node shows Prometheus: one explicit registry per node (no global recorder, so
//! several nodes in one test process keep their figures apart), typed families, and
//! gauges read from Raft and from the node's replica at scrape time. No task id is ever a
//! label: a cluster's task count must not become its series count.

pub mod driver;
pub mod http;

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
    pub method: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Method {
    pub method: String,
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
            "grpc_requests",
            "Cluster API requests served by this node, by method and gRPC status code",
            m.grpc_requests.clone(),
        );
        r.register(
            "grpc_request_duration_seconds",
            "Time to answer a cluster API request, forwarding to the leader included",
            m.grpc_duration.clone(),
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
        m
    }

    /// One cluster API request answered: `code` is the gRPC status code's name.
    pub fn observe_rpc(&self, method: &str, code: tonic::Code, took: Duration) {
        self.grpc_requests
            .get_or_create(&MethodCode {
                method: method.to_string(),
                code: format!("{code:?}"),
            })
            .inc();
        self.grpc_duration
            .get_or_create(&Method {
                method: method.to_string(),
            })
            .observe(took.as_secs_f64());
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
        self.refresh_state(node);
    }

    fn refresh_state(&self, node: &Node) {
        let data = node.state.read();
        let state = &data.state;
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
        for (name, svc) in &state.services {
            let label = ServiceLabel { service: name.clone() };
            self.desired_replicas
                .get_or_create(&label)
                .set(i64::from(svc.spec.replicas));
            self.running_replicas.get_or_create(&label).set(0);
            self.healthy_replicas.get_or_create(&label).set(0);
            self.task_restarts.get_or_create(&label).set(0);
        }
        for t in state.tasks.values() {
            self.tasks
                .get_or_create(&TaskStateLabel {
                    state: t.state.as_str().to_string(),
                })
                .inc();
            if t.desired != flotilla_types::DesiredState::Running || !state.services.contains_key(&t.service) {
                continue;
            }
            let label = ServiceLabel {
                service: t.service.clone(),
            };
            if matches!(t.state, TaskState::Running | TaskState::Healthy) {
                self.running_replicas.get_or_create(&label).inc();
            }
            if t.state == TaskState::Healthy {
                self.healthy_replicas.get_or_create(&label).inc();
            }
            self.task_restarts.get_or_create(&label).inc_by(i64::from(t.attempt));
        }
        for n in state.nodes.values() {
            self.node_up
                .get_or_create(&NodeLabel { node: n.id.to_string() })
                .set(i64::from(n.status == NodeStatus::Ready));
        }
    }
}
