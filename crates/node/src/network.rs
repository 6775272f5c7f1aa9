//! The client half of the Raft transport: openraft's `RaftNetwork` over tonic.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_proto::v1::raft_service_client::RaftServiceClient;
use flotilla_proto::v1::{snapshot_chunk, RaftMessage, SnapshotChunk, SnapshotHeader};
use flotilla_raft_types::wire::{
    self, AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, Snapshot,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use flotilla_raft_types::{NodeId, TypeConfig, Vote};
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;

/// Snapshot data is streamed in chunks of this size.
pub const SNAPSHOT_CHUNK: usize = 1 << 20;

/// Largest message the Raft service accepts.
pub const MAX_RAFT_MESSAGE: usize = 256 << 20;

/// Largest append a leader sends: one over it goes as fewer entries (openraft's
/// `PayloadTooLarge`; an entry alone always goes). openraft 0.9 cancels an
/// AppendEntries after one heartbeat interval (50 ms by default), so an append must be
/// sent, decoded and stored in that time: a follower far behind on large entries gets
/// them a few at a time instead of timing out on the same range forever. One entry is
/// at most a group-commit batch ([`crate::batcher::MAX_BATCH_BYTES`]) or one command.
pub const MAX_APPEND_BYTES: usize = 1 << 20;

/// How many of `entries` entries to send when their append encodes to `bytes`: `None`
/// when it fits, else a share that should (at least one).
pub fn fewer_entries(entries: usize, bytes: usize, limit: usize) -> Option<u64> {
    if bytes <= limit || entries <= 1 {
        return None;
    }
    let share = (entries as u128 * limit as u128 / bytes as u128) as u64;
    Some(share.clamp(1, entries as u64 - 1))
}

type RpcResult<T, E = RaftError<NodeId>> = Result<T, RPCError<NodeId, BasicNode, E>>;

/// Opens Raft channels to peers, from `local` (see [`source_ip`]) when set.
pub struct Network {
    pub local: Option<IpAddr>,
    /// TLS with this node's certificate (plain TCP on an `--insecure` node).
    tls: flotilla_security::ClientTls,
    /// Stamped on every request: the receiver refuses an older incarnation.
    epoch: Arc<crate::epoch::Epoch>,
    contacts: Contacts,
    /// The replica: which data dir (instance) the cluster recorded for each member.
    state: flotilla_store::SharedState,
}

impl Network {
    /// For a node listening on `listen`; answers are recorded in `contacts`.
    pub fn new(
        listen: SocketAddr,
        epoch: Arc<crate::epoch::Epoch>,
        contacts: Contacts,
        tls: flotilla_security::ClientTls,
        state: flotilla_store::SharedState,
    ) -> Network {
        Network {
            local: source_ip(listen),
            tls,
            epoch,
            contacts,
            state,
        }
    }
}

/// When a Raft RPC to each member last got an answer (on a leader: its last heartbeat
/// round trip), and when the last append each member accepted as from this leader was
/// sent. One per node; clones share it.
#[derive(Clone, Default)]
pub struct Contacts(Arc<Mutex<ContactsInner>>);

#[derive(Default)]
struct ContactsInner {
    answered: HashMap<NodeId, Instant>,
    /// Per member: the term and send time of the last append it accepted (answered
    /// with anything but a higher vote).
    accepted: HashMap<NodeId, (u64, Instant)>,
}

impl Contacts {
    /// How long ago member `id` last answered; `None` when never.
    pub fn last(&self, id: NodeId) -> Option<Duration> {
        self.lock().answered.get(&id).map(|t| t.elapsed())
    }

    fn record(&self, id: NodeId) {
        self.lock().answered.insert(id, Instant::now());
    }

    fn accepted(&self, id: NodeId, term: u64, sent: Instant) {
        let mut c = self.lock();
        let newer = c.accepted.get(&id).is_none_or(|&(t, s)| (t, s) < (term, sent));
        if newer {
            c.accepted.insert(id, (term, sent));
        }
    }

    /// How long ago a quorum of each of `configs` (a joint membership has two) last
    /// accepted this node as the leader of `term`, measured from when this node sent the
    /// appends they accepted: no member can have voted for another leader before then.
    /// `me` counts as just now. `None` when some config has no such quorum.
    pub fn quorum_age(&self, me: NodeId, term: u64, configs: &[Vec<NodeId>]) -> Option<Duration> {
        let c = self.lock();
        let now = Instant::now();
        let age = |id: &NodeId| -> Option<Duration> {
            if *id == me {
                return Some(Duration::ZERO);
            }
            c.accepted
                .get(id)
                .filter(|(t, _)| *t == term)
                .map(|(_, sent)| now.saturating_duration_since(*sent))
        };
        let mut oldest = Duration::ZERO;
        for voters in configs {
            if voters.is_empty() {
                continue;
            }
            let mut ages: Vec<Duration> = voters.iter().filter_map(age).collect();
            let majority = voters.len() / 2 + 1;
            if ages.len() < majority {
                return None;
            }
            ages.sort();
            oldest = oldest.max(ages[majority - 1]);
        }
        Some(oldest)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ContactsInner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            client: connect_lazy(&node.addr, self.local, self.tls.clone()).map(|c| {
                RaftServiceClient::new(c)
                    .max_decoding_message_size(MAX_RAFT_MESSAGE)
                    .max_encoding_message_size(MAX_RAFT_MESSAGE)
            }),
            addr: node.addr.clone(),
            epoch: self.epoch.clone(),
            contacts: self.contacts.clone(),
            state: self.state.clone(),
            answered_instance: None,
        }
    }
}

/// The source address for a node's outbound connections to other nodes: its own listen
/// IP when it listens on a specific one, so that packet filters (the chaos suite's
/// partitions) can tell nodes apart. `None` (the kernel's choice, as before) for the
/// unspecified address and for 127.0.0.1 / ::1.
pub fn source_ip(listen: SocketAddr) -> Option<IpAddr> {
    let ip = listen.ip();
    let default = ip.is_unspecified() || ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || ip.is_loopback() && ip.is_ipv6();
    (!default).then_some(ip)
}

/// A channel that connects on first use and reconnects after failures, through `tls`;
/// its connections are made from `local` when set.
pub fn connect_lazy(addr: &str, local: Option<IpAddr>, tls: flotilla_security::ClientTls) -> Result<Channel, String> {
    flotilla_security::tls::channel(addr, tls, local, |e| {
        e.connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
    })
    .map_err(|e| format!("invalid peer address {addr:?}: {e}"))
}

pub struct PeerClient {
    target: NodeId,
    addr: String,
    client: Result<RaftServiceClient<Channel>, String>,
    epoch: Arc<crate::epoch::Epoch>,
    contacts: Contacts,
    state: flotilla_store::SharedState,
    /// The data dir instance the target named in its last answer, if it named one.
    answered_instance: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, NetworkError> {
    wire::decode(bytes).map_err(|e| NetworkError::new(&e))
}

impl PeerClient {
    /// Keeps the data-dir instance the target named in its answer (see `foreign_voter`).
    fn note_instance<T>(&mut self, r: &tonic::Response<T>) {
        self.answered_instance = r
            .metadata()
            .get(crate::epoch::INSTANCE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
    }

    /// Why the target's last answer does not count as a vote: it named a data dir other
    /// than the one the cluster recorded for it (wiped or replaced). An answer that names
    /// none (an agent older than instance ids) counts.
    fn foreign_voter(&self) -> Option<String> {
        let answered = self.answered_instance.as_deref()?;
        let recorded = self
            .state
            .read()
            .state
            .nodes
            .get(&self.target)
            .map(|n| n.instance.clone())
            .filter(|i| !i.is_empty())?;
        (recorded != answered).then(|| crate::membership::foreign_instance(self.target, &recorded, answered))
    }

    fn client(&self) -> Result<RaftServiceClient<Channel>, Unreachable> {
        self.client.clone().map_err(|e| Unreachable::new(&TransportError(e)))
    }

    /// Maps a failed call: connection trouble makes openraft back off, anything else is
    /// retried at once.
    fn status_error(&self, status: tonic::Status) -> StatusKind {
        if crate::error::is_fenced(&status) {
            self.epoch
                .fence
                .fence(format!("refused by node {}: {}", self.target, status.message()));
        }
        let err = TransportError(format!("node {} at {}: {}", self.target, self.addr, status.message()));
        match status.code() {
            // A refusal (older epoch, removed node) is not retried at once either.
            tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::FailedPrecondition => StatusKind::Unreachable(Unreachable::new(&err)),
            _ => StatusKind::Network(NetworkError::new(&err)),
        }
    }

    async fn call<Req, Resp, E, F, Fut>(&mut self, req: &Req, ttl: Duration, f: F) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
        F: FnOnce(RaftServiceClient<Channel>, tonic::Request<RaftMessage>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftMessage>, tonic::Status>>,
    {
        self.send(wire::encode(req), ttl, f).await
    }

    /// Like [`PeerClient::call`], with the request already encoded.
    async fn send<Resp, E, F, Fut>(&mut self, data: Vec<u8>, ttl: Duration, f: F) -> RpcResult<Resp, E>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
        F: FnOnce(RaftServiceClient<Channel>, tonic::Request<RaftMessage>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftMessage>, tonic::Status>>,
    {
        let client = self.client().map_err(RPCError::Unreachable)?;
        let mut msg = tonic::Request::new(RaftMessage { data });
        self.epoch.stamp(msg.metadata_mut());
        let reply = match tokio::time::timeout(ttl, f(client, msg)).await {
            Err(_) => {
                let err = TransportError(format!(
                    "node {} at {}: timed out after {ttl:?}",
                    self.target, self.addr
                ));
                return Err(RPCError::Unreachable(Unreachable::new(&err)));
            }
            Ok(Err(status)) => {
                return Err(match self.status_error(status) {
                    StatusKind::Unreachable(u) => RPCError::Unreachable(u),
                    StatusKind::Network(n) => RPCError::Network(n),
                })
            }
            Ok(Ok(r)) => {
                self.note_instance(&r);
                r.into_inner()
            }
        };
        self.contacts.record(self.target);
        let result: Result<Resp, E> = decode(&reply.data).map_err(RPCError::Network)?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

enum StatusKind {
    Unreachable(Unreachable),
    Network(NetworkError),
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse> {
        let data = wire::encode(&rpc);
        if let Some(hint) = fewer_entries(rpc.entries.len(), data.len(), MAX_APPEND_BYTES) {
            tracing::info!(
                target_node = self.target,
                entries = rpc.entries.len(),
                bytes = data.len(),
                hint,
                "append too large; sending fewer entries"
            );
            return Err(RPCError::PayloadTooLarge(
                openraft::error::PayloadTooLarge::new_entries_hint(hint),
            ));
        }
        let (term, sent) = (rpc.vote.leader_id().term, Instant::now());
        let answer: AppendEntriesResponse = self
            .send(
                data,
                option.hard_ttl(),
                |mut c, m| async move { c.append_entries(m).await },
            )
            .await?;
        if !matches!(answer, AppendEntriesResponse::HigherVote(_)) {
            self.contacts.accepted(self.target, term, sent);
        }
        Ok(answer)
    }

    async fn vote(&mut self, rpc: VoteRequest, option: RPCOption) -> RpcResult<VoteResponse> {
        self.answered_instance = None;
        let mut answer: VoteResponse = self
            .call(&rpc, option.hard_ttl(), |mut c, m| async move { c.vote(m).await })
            .await?;
        if answer.vote_granted {
            if let Some(why) = self.foreign_voter() {
                if self.epoch.should_log(self.target) {
                    tracing::warn!(node = self.target, "not counting a granted vote: {why}");
                }
                answer.vote_granted = false;
            }
        }
        Ok(answer)
    }

    /// Chunked snapshots are not used: `full_snapshot` streams the whole snapshot.
    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse, RaftError<NodeId, InstallSnapshotError>> {
        let err = TransportError("flotilla sends snapshots with full_snapshot only".into());
        Err(RPCError::Network(NetworkError::new(&err)))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let mut client = self.client()?;
        let data = snapshot.snapshot.into_inner();
        let mut chunks = Vec::with_capacity(1 + data.len() / SNAPSHOT_CHUNK);
        chunks.push(SnapshotChunk {
            kind: Some(snapshot_chunk::Kind::Header(SnapshotHeader {
                vote: wire::encode(&vote),
                meta: wire::encode(&snapshot.meta),
                total_bytes: data.len() as u64,
            })),
        });
        chunks.extend(data.chunks(SNAPSHOT_CHUNK).map(|c| SnapshotChunk {
            kind: Some(snapshot_chunk::Kind::Data(c.to_vec())),
        }));
        tracing::info!(
            target_node = self.target,
            bytes = data.len(),
            chunks = chunks.len(),
            "sending snapshot"
        );
        // The request stream is complete before the call is awaited: awaiting the call
        // before feeding a channel-backed stream hangs with tonic 0.14.
        let mut request = tonic::Request::new(tokio_stream::iter(chunks));
        self.epoch.stamp(request.metadata_mut());
        let call = client.install_snapshot(request);
        let ttl = option.hard_ttl().max(Duration::from_secs(30));
        let reply = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = tokio::time::timeout(ttl, call) => r,
        };
        let reply = match reply {
            Err(_) => {
                let err = TransportError(format!("snapshot to node {} timed out after {ttl:?}", self.target));
                return Err(StreamingError::Unreachable(Unreachable::new(&err)));
            }
            Ok(Err(status)) => {
                return Err(match self.status_error(status) {
                    StatusKind::Unreachable(u) => StreamingError::Unreachable(u),
                    StatusKind::Network(n) => StreamingError::Network(n),
                })
            }
            Ok(Ok(r)) => {
                self.note_instance(&r);
                r.into_inner()
            }
        };
        self.contacts.record(self.target);
        let result: Result<SnapshotResponse, Fatal<NodeId>> = decode(&reply.data)?;
        result.map_err(|e| StreamingError::RemoteError(RemoteError::new(self.target, e)))
    }

    fn backoff(&self) -> Backoff {
        // A restarted peer is retried quickly; a dead one costs little to poll.
        Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}

#[cfg(test)]
mod tests {
    use super::{fewer_entries, Contacts};
    use std::time::{Duration, Instant};

    #[test]
    fn the_quorum_age_is_the_majoritys_oldest_acceptance_in_this_term() {
        let c = Contacts::default();
        let now = Instant::now();
        let voters = vec![vec![1, 2, 3]];
        assert_eq!(c.quorum_age(1, 5, &voters), None, "only itself");
        c.accepted(2, 5, now - Duration::from_secs(2));
        c.accepted(3, 4, now - Duration::from_millis(10));
        let age = c.quorum_age(1, 5, &voters).unwrap();
        assert!(age >= Duration::from_secs(2) && age < Duration::from_secs(3), "{age:?}");
        // An acceptance from an earlier term does not count; a newer one does.
        c.accepted(3, 5, now - Duration::from_millis(10));
        assert!(c.quorum_age(1, 5, &voters).unwrap() < Duration::from_secs(1));
        // An older report never replaces a newer one.
        c.accepted(3, 5, now - Duration::from_secs(9));
        assert!(c.quorum_age(1, 5, &voters).unwrap() < Duration::from_secs(1));
        // A joint config needs a quorum of each.
        assert_eq!(c.quorum_age(1, 5, &[vec![1, 2, 3], vec![4, 5, 6]]), None);
        assert_eq!(c.quorum_age(1, 5, &[vec![1]]), Some(Duration::ZERO), "a single voter");
    }

    #[test]
    fn an_append_over_the_limit_asks_for_a_share_that_fits_and_one_entry_always_goes() {
        assert_eq!(fewer_entries(64, 10, 100), None);
        assert_eq!(fewer_entries(64, 100, 100), None);
        assert_eq!(fewer_entries(64, 200, 100), Some(32));
        assert_eq!(fewer_entries(2, 1_000_000, 100), Some(1));
        assert_eq!(fewer_entries(1, 1_000_000, 100), None);
        assert_eq!(fewer_entries(64, 101, 100), Some(63));
        assert_eq!(fewer_entries(usize::MAX, usize::MAX, 1), Some(1));
    }
}
