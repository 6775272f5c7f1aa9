//! One running node: its Raft handle, its replica of the state, and the routing of
//! requests to the leader.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flotilla_proto::v1::cluster_service_client::ClusterServiceClient;
use flotilla_proto::v1::MemberStatus;
use flotilla_store::{NodeId, Raft, SharedState};
use flotilla_types::{Command, Response};
use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::ServerState;
use tonic::transport::Channel;
use tonic::Status;

use crate::config::NodeConfig;
use crate::network::connect_lazy;

/// How long a request waits for a leader to be known or reachable before giving up.
pub const LEADER_WAIT: Duration = Duration::from_secs(5);

/// Marks a status as "this node is not the leader": the caller may retry elsewhere, the
/// request was not executed.
pub const NOT_LEADER: &str = "x-flotilla-not-leader";
/// How a leader without a majority begins its answer (reads and writes alike).
const NO_QUORUM: &str = "no quorum";
/// A client write still uncommitted this long makes the leader check its quorum.
const QUORUM_CHECK_AFTER: Duration = Duration::from_secs(1);

pub struct Node {
    pub id: NodeId,
    pub raft: Raft,
    batcher: crate::batcher::Batcher,
    pub state: SharedState,
    pub config: NodeConfig,
    channels: Mutex<HashMap<String, Channel>>,
    /// The cluster incarnation this node belongs to.
    pub epoch: std::sync::Arc<crate::epoch::Epoch>,
}

/// Where a request that needs the leader goes.
pub enum Route {
    Local,
    Remote { id: NodeId, addr: String },
}

/// Why a local leader-only operation did not run.
pub enum LocalError {
    NotLeader,
    Status(Status),
}

pub use flotilla_control::now_ms;

pub fn not_leader_status(msg: impl Into<String>) -> Status {
    let mut s = Status::unavailable(msg);
    s.metadata_mut().insert(NOT_LEADER, "1".parse().expect("ascii"));
    s
}

fn is_not_leader(s: &Status) -> bool {
    s.metadata().contains_key(NOT_LEADER)
}

/// A transport failure where the request cannot have reached the server.
fn is_connect_failure(s: &Status) -> bool {
    s.code() == tonic::Code::Unavailable && {
        let m = s.message().to_ascii_lowercase();
        m.contains("connect") || m.contains("refused")
    }
}

impl Node {
    pub fn new(config: NodeConfig, raft: Raft, state: SharedState, epoch: std::sync::Arc<crate::epoch::Epoch>) -> Self {
        Node {
            epoch,
            id: config.id,
            batcher: crate::batcher::Batcher::spawn(raft.clone()),
            raft,
            state,
            config,
            channels: Mutex::new(HashMap::new()),
        }
    }

    pub fn channel(&self, addr: &str) -> Result<Channel, Status> {
        let mut channels = self.channels.lock().expect("channel cache poisoned");
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let c = connect_lazy(addr, crate::network::source_ip(self.config.listen)).map_err(Status::internal)?;
        channels.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    pub fn cluster_client(&self, addr: &str) -> Result<ClusterServiceClient<Channel>, Status> {
        Ok(ClusterServiceClient::new(self.channel(addr)?)
            .max_decoding_message_size(crate::MAX_API_MESSAGE)
            .max_encoding_message_size(crate::MAX_API_MESSAGE))
    }

    /// Address of a member, from the replicated membership.
    pub fn member_addr(&self, id: NodeId) -> Option<String> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        m.membership().get_node(&id).map(|n| n.addr.clone())
    }

    /// Waits (up to `deadline`) until some node is known to lead.
    pub async fn route(&self, deadline: Instant) -> Result<Route, Status> {
        let mut metrics = self.raft.metrics();
        loop {
            let (leader, is_leader) = {
                let m = metrics.borrow_and_update();
                (m.current_leader, m.state == ServerState::Leader)
            };
            match leader {
                Some(l) if l == self.id && is_leader => return Ok(Route::Local),
                Some(l) if l != self.id => {
                    if let Some(addr) = self.member_addr(l) {
                        return Ok(Route::Remote { id: l, addr });
                    }
                }
                _ => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.no_leader().await);
            }
            // Wake on the next metrics change, or re-check shortly.
            let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), metrics.changed()).await;
        }
    }

    /// Why there is no leader, in the operator's terms: how many voters answer.
    async fn no_leader(&self) -> Status {
        let voters: Vec<(NodeId, String)> = {
            let m = self.raft.metrics().borrow().membership_config.clone();
            let membership = m.membership();
            membership
                .voter_ids()
                .filter_map(|id| membership.get_node(&id).map(|n| (id, n.addr.clone())))
                .collect()
        };
        if voters.is_empty() {
            return Status::unavailable(format!(
                "no leader: node {} is not part of an initialized cluster yet; start the other \
                 peers (the lowest id initializes the cluster once a majority answers)",
                self.id
            ));
        }
        let answers = futures::future::join_all(voters.iter().map(|(id, addr)| async move {
            if *id == self.id {
                return true;
            }
            let Ok(mut client) = self.cluster_client(addr) else {
                return false;
            };
            let status = client.node_status(flotilla_proto::v1::NodeStatusRequest {});
            matches!(
                tokio::time::timeout(Duration::from_millis(500), status).await,
                Ok(Ok(_))
            )
        }))
        .await;
        let reachable = answers.iter().filter(|ok| **ok).count();
        let majority = voters.len() / 2 + 1;
        if reachable < majority {
            Status::unavailable(format!(
                "no leader: {reachable} of {} voters reachable; a majority ({majority}) is needed. \
                 Start or reconnect the missing nodes",
                voters.len()
            ))
        } else {
            Status::unavailable(format!(
                "no leader: {reachable} of {} voters reachable but none elected within {LEADER_WAIT:?}; \
                 an election may be in progress, try again",
                voters.len()
            ))
        }
    }

    /// Runs `local` on the leader: here when this node leads, else through the leader's
    /// API (`remote`). Requests that arrived forwarded are never forwarded again.
    /// `idempotent` requests are retried after any transport failure; others only when
    /// they certainly did not run.
    pub async fn on_leader<T, L, LF, R, RF>(
        &self,
        forwarded: bool,
        idempotent: bool,
        local: L,
        remote: R,
    ) -> Result<T, Status>
    where
        L: Fn() -> LF,
        LF: Future<Output = Result<T, LocalError>>,
        R: Fn(ClusterServiceClient<Channel>) -> RF,
        RF: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let err = match self.route(deadline).await? {
                Route::Local => match local().await {
                    Ok(v) => return Ok(v),
                    Err(LocalError::Status(s)) => return Err(s),
                    Err(LocalError::NotLeader) => not_leader_status(format!("node {} lost leadership", self.id)),
                },
                Route::Remote { id, .. } if forwarded => {
                    return Err(not_leader_status(format!(
                        "node {} is not the leader (node {id} is)",
                        self.id
                    )))
                }
                Route::Remote { id, addr } => match remote(self.cluster_client(&addr)?).await {
                    Ok(r) => return Ok(r.into_inner()),
                    Err(s) if is_not_leader(&s) || is_connect_failure(&s) => s,
                    // The leader answered: it has no majority behind it.
                    Err(s) if s.message().starts_with(NO_QUORUM) => return Err(s),
                    Err(s) if idempotent && s.code() == tonic::Code::Unavailable => s,
                    Err(s) if s.code() == tonic::Code::Unavailable => {
                        return Err(Status::unavailable(format!(
                            "lost contact with the leader (node {id} at {addr}) while it handled \
                             the request; it may or may not have been applied: {}",
                            s.message()
                        )))
                    }
                    Err(s) => return Err(s),
                },
            };
            if Instant::now() >= deadline {
                // Never reached a leader: say why in the operator's terms.
                if is_not_leader(&err) || is_connect_failure(&err) {
                    return Err(self.no_leader().await);
                }
                return Err(err);
            }
            tokio::time::sleep(Duration::from_millis(20 + rand::random::<u64>() % 30)).await;
        }
    }

    /// Proposes a client command (batched with concurrent ones); on this node only,
    /// which must be the leader.
    ///
    /// A write that has not committed after [`QUORUM_CHECK_AFTER`] makes the leader check
    /// that a majority still answers: without one it would wait for its deadline and say
    /// only "timeout", so it answers `unavailable` with the same "no quorum" explanation
    /// reads give (the entry stays in the leader's log and commits only if the missing
    /// voters come back while it leads).
    pub async fn write(&self, cmd: Command) -> Result<(Response, u64), LocalError> {
        use crate::batcher::WriteError;
        let write = self.batcher.write(cmd);
        tokio::pin!(write);
        let result = tokio::select! {
            r = &mut write => r,
            () = tokio::time::sleep(QUORUM_CHECK_AFTER) => {
                match self.read_barrier().await {
                    Err(LocalError::Status(s)) if s.message().starts_with(NO_QUORUM) => {
                        return Err(LocalError::Status(Status::unavailable(format!(
                            "{} (this write was proposed but is not committed: it takes effect only if \
                             enough voters return while node {} still leads)",
                            s.message(),
                            self.id
                        ))));
                    }
                    _ => write.await,
                }
            }
        };
        match result {
            Ok(r) => Ok(r),
            Err(WriteError::NotLeader) => Err(LocalError::NotLeader),
            Err(WriteError::Failed(e)) => Err(LocalError::Status(Status::internal(format!("raft write failed: {e}")))),
        }
    }

    /// Makes the local replica linearizable: confirms leadership with a quorum and waits
    /// until everything committed before now is applied here.
    pub async fn read_barrier(&self) -> Result<(), LocalError> {
        // A busy machine can delay the heartbeat round that confirms leadership; a few
        // quick retries ride that out before the caller is told.
        let mut result = self.raft.ensure_linearizable().await;
        for _ in 0..4 {
            if !matches!(result, Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            result = self.raft.ensure_linearizable().await;
        }
        match result {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => Err(LocalError::NotLeader),
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                let voters: Vec<NodeId> = self
                    .raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .voter_ids()
                    .collect();
                let heard: Vec<String> = e.got.iter().map(u64::to_string).collect();
                Err(LocalError::Status(Status::unavailable(format!(
                    "{NO_QUORUM}: the leader (node {}) hears from {} of {} voters ({}); a majority ({}) \
                     is needed. Start or reconnect the missing nodes; if they are lost for good, \
                     recover with `flotilla agent --force-new-cluster` on a surviving node",
                    self.id,
                    e.got.len(),
                    voters.len(),
                    heard.join(", "),
                    voters.len() / 2 + 1
                ))))
            }
            Err(e) => Err(LocalError::Status(Status::internal(format!(
                "read barrier failed: {e}"
            )))),
        }
    }

    /// This node's own view, for `NodeStatus` and the status fan-out.
    pub fn local_status(&self) -> MemberStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voter = membership.voter_ids().any(|v| v == self.id);
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Candidate => "candidate",
            ServerState::Follower if voter => "follower",
            ServerState::Follower | ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let initialized = membership.nodes().next().is_some();
        MemberStatus {
            id: self.id,
            address: self.config.advertised(),
            role: role.into(),
            voter,
            reachable: true,
            error: String::new(),
            term: m.current_term,
            leader_id: m.current_leader.unwrap_or(0),
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
            snapshots_installed: self.state.snapshots_installed(),
            initialized,
            epoch: self.epoch.get(),
            replication: crate::status::replication(&m),
            ..Default::default()
        }
    }
}
