//! One running node: its Raft handle, its replica of the state, and the routing of
//! requests to the leader.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flotilla_proto::v1::cluster_service_client::ClusterServiceClient;
use flotilla_proto::v1::{MemberRole, MemberStatus};
use flotilla_store::{NodeId, Raft, SharedState};
use flotilla_types::{Command, Response};
use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::ServerState;
use tonic::transport::Channel;

use crate::config::NodeConfig;
use crate::error::{remote_kind, ApiError, NoQuorum, RemoteKind};
use crate::fence::Fence;
use crate::network::{connect_lazy, Contacts};

/// How long a request waits for a leader to be known or reachable before giving up.
pub const LEADER_WAIT: Duration = Duration::from_secs(5);

/// How long the status fan-out waits for each member.
const STATUS_TIMEOUT: Duration = Duration::from_millis(1000);

/// A client write still uncommitted this long makes the leader check its quorum.
const QUORUM_CHECK_AFTER: Duration = Duration::from_secs(1);

pub struct Node {
    pub id: NodeId,
    pub raft: Raft,
    batcher: crate::batcher::Batcher,
    pub state: SharedState,
    pub config: NodeConfig,
    channels: Mutex<HashMap<String, Channel>>,
    /// The cluster incarnation this node belongs to (and the node's fence).
    pub epoch: std::sync::Arc<crate::epoch::Epoch>,
    /// When each peer last answered a Raft RPC of this node.
    pub contacts: Contacts,
    /// Serializes every membership change this node makes as leader (openraft leaves a
    /// joint config behind when two overlap).
    pub membership_changes: tokio::sync::Mutex<()>,
    /// What `/metrics` shows; fed by the RPC path and the Raft transport.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// This node's certificate and TLS configurations; `None` on an `--insecure` node.
    pub tls: Option<std::sync::Arc<crate::security::NodeSecurity>>,
    /// How long this node has been cut off from a leader with a quorum, and the tasks
    /// it stopped for that (`on_disconnect: fence`).
    pub cutoff: std::sync::Arc<crate::cutoff::Cutoff>,
}

/// Where a request that needs the leader goes.
pub enum Route {
    Local,
    Remote { id: NodeId, addr: String },
}

/// Whether a request that reached the leader may be sent again when its answer is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Running it twice has the effect of running it once (a read, an apply of the same
    /// spec, a scale to the same count): retried after any transport failure.
    Safe,
    /// Retried only when it certainly did not run (the leader refused it as not leading, or
    /// it never connected); otherwise the caller is told it may or may not have run.
    IfNotRun,
}

pub use flotilla_executor::now_ms;

impl Node {
    pub fn new(
        config: NodeConfig,
        raft: Raft,
        state: SharedState,
        epoch: std::sync::Arc<crate::epoch::Epoch>,
        contacts: Contacts,
        tls: Option<std::sync::Arc<crate::security::NodeSecurity>>,
    ) -> Self {
        let cutoff = std::sync::Arc::new(crate::cutoff::Cutoff::new(config.control.default_stop_after()));
        Node {
            tls,
            epoch,
            contacts,
            id: config.id,
            batcher: crate::batcher::Batcher::spawn(raft.clone()),
            raft,
            state,
            config,
            channels: Mutex::new(HashMap::new()),
            membership_changes: tokio::sync::Mutex::new(()),
            metrics: Default::default(),
            cutoff,
        }
    }

    /// This node's fence.
    pub fn fence(&self) -> &Fence {
        &self.epoch.fence
    }

    pub fn channel(&self, addr: &str) -> Result<Channel, ApiError> {
        let mut channels = self.channels.lock().expect("channel cache poisoned");
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let c = connect_lazy(addr, crate::network::source_ip(self.config.listen), self.client_tls())
            .map_err(ApiError::Invalid)?;
        channels.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// How this node connects to others: TLS with its certificate, or plain TCP.
    pub fn client_tls(&self) -> flotilla_security::ClientTls {
        self.tls
            .as_ref()
            .map_or(flotilla_security::ClientTls::Plain, |t| t.client_tls())
    }

    pub fn cluster_client(&self, addr: &str) -> Result<ClusterServiceClient<Channel>, ApiError> {
        Ok(flotilla_proto::cluster_client(self.channel(addr)?))
    }

    /// The members of the replicated membership, with their addresses.
    pub fn members(&self) -> Vec<(NodeId, String)> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        m.membership().nodes().map(|(id, n)| (*id, n.addr.clone())).collect()
    }

    /// A member's own view (`NodeStatus`), or why it gave none.
    pub async fn member_status(&self, id: NodeId, addr: String) -> MemberStatus {
        let unreachable = |error: String| MemberStatus {
            id,
            address: addr.clone(),
            reachable: false,
            error,
            ..Default::default()
        };
        let mut client = match self.cluster_client(&addr) {
            Ok(c) => c,
            Err(e) => return unreachable(e.to_string()),
        };
        let asked = client.node_status(flotilla_proto::v1::NodeStatusRequest {});
        match tokio::time::timeout(STATUS_TIMEOUT, asked).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(s)) => unreachable(s.message().to_string()),
            Err(_) => unreachable(format!("no answer within {STATUS_TIMEOUT:?}")),
        }
    }

    /// The views of `members`, asked at once (this node's own without a call).
    pub async fn statuses(&self, members: Vec<(NodeId, String)>) -> Vec<MemberStatus> {
        let me = self.local_status();
        let fetches = members.into_iter().map(|(id, addr)| {
            let me = me.clone();
            async move {
                if id == self.id {
                    me
                } else {
                    self.member_status(id, addr).await
                }
            }
        });
        futures::future::join_all(fetches).await
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// On a leader: how long ago a quorum of voters last accepted it as leader (see
    /// [`Contacts::quorum_age`]); `None` when this node does not lead or has no quorum
    /// that recent in this term. A heartbeat it acknowledges holds off fencing only by
    /// what is left of `stop_after` after this age.
    pub fn quorum_age(&self) -> Option<Duration> {
        let (term, configs) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            if m.state != ServerState::Leader {
                return None;
            }
            let configs: Vec<Vec<NodeId>> = m
                .membership_config
                .membership()
                .get_joint_config()
                .iter()
                .map(|c| c.iter().copied().collect())
                .collect();
            (m.current_term, configs)
        };
        self.contacts.quorum_age(self.id, term, &configs)
    }

    /// Address of a member, from the replicated membership.
    pub fn member_addr(&self, id: NodeId) -> Option<String> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        m.membership().get_node(&id).map(|n| n.addr.clone())
    }

    fn voter_ids(&self) -> Vec<NodeId> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    /// Waits (up to `deadline`) until some node is known to lead.
    pub async fn route(&self, deadline: Instant) -> Result<Route, ApiError> {
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
    async fn no_leader(&self) -> ApiError {
        let voters: Vec<(NodeId, String)> = self
            .voter_ids()
            .into_iter()
            .filter_map(|id| self.member_addr(id).map(|a| (id, a)))
            .collect();
        if voters.is_empty() {
            return ApiError::NoLeader(format!(
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
            ApiError::NoLeader(format!(
                "no leader: {reachable} of {} voters reachable; a majority ({majority}) is needed. \
                 Start or reconnect the missing nodes",
                voters.len()
            ))
        } else {
            ApiError::NoLeader(format!(
                "no leader: {reachable} of {} voters reachable but none elected within {LEADER_WAIT:?}; \
                 an election may be in progress, try again",
                voters.len()
            ))
        }
    }

    /// Runs a request on the leader: `local` here when this node leads, else `remote`
    /// against the leader's API. The one place that decides forwarding and retries:
    ///
    /// - a request that arrived forwarded is never forwarded again (it answers "not the
    ///   leader", and the forwarding node looks again);
    /// - "not the leader" and a failed connect are retried (after a short pause, until
    ///   [`LEADER_WAIT`]): the request did not run;
    /// - "no quorum" from the leader is final: no other node can do better;
    /// - a transport failure mid-request is retried only for [`Retry::Safe`] requests;
    ///   otherwise the caller is told the request may or may not have been applied.
    pub async fn on_leader<T, L, LF, R, RF>(
        &self,
        forwarded: bool,
        retry: Retry,
        local: L,
        remote: R,
    ) -> Result<T, ApiError>
    where
        L: Fn() -> LF,
        LF: Future<Output = Result<T, ApiError>>,
        R: Fn(ClusterServiceClient<Channel>) -> RF,
        RF: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let retryable = match self.route(deadline).await? {
                Route::Local => match local().await {
                    Err(e @ (ApiError::NotLeader { .. } | ApiError::LostLeadership { .. })) => e,
                    other => return other,
                },
                Route::Remote { id, .. } if forwarded => {
                    return Err(ApiError::NotLeader {
                        node: self.id,
                        leader: Some(id),
                    })
                }
                Route::Remote { id, addr } => match remote(self.cluster_client(&addr)?).await {
                    Ok(r) => return Ok(r.into_inner()),
                    Err(s) => match remote_kind(&s) {
                        RemoteKind::NotLeader | RemoteKind::NotConnected => ApiError::Remote(s),
                        RemoteKind::Interrupted if retry == Retry::Safe => ApiError::Remote(s),
                        RemoteKind::Interrupted => {
                            return Err(ApiError::LeaderLost {
                                leader: id,
                                addr,
                                message: s.message().to_string(),
                            })
                        }
                        RemoteKind::NoQuorum | RemoteKind::Answer => return Err(ApiError::Remote(s)),
                    },
                },
            };
            if Instant::now() >= deadline {
                // Never reached a leader: say why in the operator's terms.
                return Err(match retryable {
                    ApiError::Remote(s) if remote_kind(&s) == RemoteKind::Interrupted => ApiError::Remote(s),
                    _ => self.no_leader().await,
                });
            }
            tokio::time::sleep(Duration::from_millis(20 + rand::random::<u64>() % 30)).await;
        }
    }

    /// Proposes a client command (batched with concurrent ones); on this node only,
    /// which must be the leader.
    ///
    /// A write that has not committed after [`QUORUM_CHECK_AFTER`] makes the leader check
    /// that a majority still answers: without one it would wait for its deadline and say
    /// only "timeout", so it answers with the same "no quorum" explanation reads give (the
    /// entry stays in the leader's log and commits only if the missing voters come back
    /// while it leads).
    pub async fn write(&self, cmd: Command) -> Result<(Response, u64), ApiError> {
        use crate::batcher::WriteError;
        // A client's write says whose it is (a security command names its token itself).
        let by = crate::auth::current().token_name();
        let cmd = match cmd {
            Command::Security { .. } => cmd,
            cmd if !by.is_empty() => Command::By { by, cmd: Box::new(cmd) },
            cmd => cmd,
        };
        // A routed write is applied once per request id: a repeat gets the first answer.
        let cmd = match crate::routed::current_request_id() {
            Some(id) => Command::Request {
                id,
                cmd: Box::new(cmd),
                at: now_ms(),
            },
            None => cmd,
        };
        let proposed = Instant::now();
        let write = self.batcher.write(cmd);
        tokio::pin!(write);
        let result = tokio::select! {
            r = &mut write => r,
            () = tokio::time::sleep(QUORUM_CHECK_AFTER) => {
                match self.read_barrier().await {
                    Err(ApiError::NoQuorum(q)) => return Err(ApiError::NoQuorum(NoQuorum { write: true, ..q })),
                    _ => write.await,
                }
            }
        };
        match result {
            Ok((response, index)) => {
                self.metrics.observe_commit(proposed.elapsed());
                match response {
                    Response::Repeated(first) => {
                        tracing::info!(index, "a repeated request id: answered with its first answer");
                        Ok((*first, index))
                    }
                    response => Ok((response, index)),
                }
            }
            Err(WriteError::NotLeader) => Err(ApiError::LostLeadership { node: self.id }),
            Err(WriteError::Failed(e)) => Err(ApiError::Internal(format!("raft write failed: {e}"))),
        }
    }

    /// Proposes `cmd` and returns the state machine's answer; a refusal by the state
    /// machine becomes [`ApiError::Command`].
    pub async fn command(&self, cmd: Command) -> Result<(Response, u64), ApiError> {
        match self.write(cmd).await? {
            (Response::Error(e), _) => Err(ApiError::Command(e)),
            ok => Ok(ok),
        }
    }

    /// Makes the local replica linearizable: confirms leadership with a quorum and waits
    /// until everything committed before now is applied here.
    pub async fn read_barrier(&self) -> Result<(), ApiError> {
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
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => Err(ApiError::NotLeader {
                node: self.id,
                leader: f.leader_id,
            }),
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => Err(ApiError::NoQuorum(NoQuorum {
                leader: self.id,
                heard: e.got.iter().copied().collect(),
                voters: self.voter_ids().len(),
                write: false,
            })),
            Err(e) => Err(ApiError::Internal(format!("read barrier failed: {e}"))),
        }
    }

    /// This node's own view, for `NodeStatus` and the status fan-out.
    pub fn local_status(&self) -> MemberStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voter = membership.voter_ids().any(|v| v == self.id);
        let role = match m.state {
            ServerState::Leader => MemberRole::Leader,
            ServerState::Candidate => MemberRole::Candidate,
            ServerState::Follower if voter => MemberRole::Follower,
            ServerState::Follower | ServerState::Learner => MemberRole::Learner,
            ServerState::Shutdown => MemberRole::Shutdown,
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
            replication: crate::status::replication(&m, &self.contacts),
            version: env!("CARGO_PKG_VERSION").to_string(),
            cert_expires_at: self.tls.as_ref().map_or(0, |t| t.expires_at_ms()),
            cert_ca: self.tls.as_ref().map(|t| t.cert_ca()).unwrap_or_default(),
            ..Default::default()
        }
    }
}
