//! The server half of the Raft transport.

use std::io::Cursor;

use flotilla_proto::v1::raft_service_server::RaftService;
use flotilla_proto::v1::{snapshot_chunk, RaftMessage, SnapshotChunk};
use std::sync::Arc;

use flotilla_raft_types::wire::{self, Snapshot};
use flotilla_raft_types::{NodeId, Raft, SnapshotMeta, Vote};
use flotilla_store::SharedState;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status, Streaming};

use crate::error::ApiError;

/// Largest snapshot a node accepts (the whole state, in memory while it installs).
pub const MAX_SNAPSHOT: u64 = 4 << 30;

pub struct RaftServer {
    raft: Raft,
    epoch: Arc<crate::epoch::Epoch>,
    state: SharedState,
    metrics: Arc<crate::metrics::Metrics>,
}

impl RaftServer {
    pub fn new(node: &crate::node::Node) -> Self {
        RaftServer {
            raft: node.raft.clone(),
            epoch: node.epoch.clone(),
            state: node.state.clone(),
            metrics: node.metrics.clone(),
        }
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Status> {
    wire::decode(bytes).map_err(|e| ApiError::Invalid(format!("bad {what}: {e}")).into())
}

/// Refuses a Raft message whose sender (the leader or candidate it names) is not the node
/// of the caller's certificate: a member cannot speak for another.
fn sent_by(caller: Option<u64>, vote: &Vote, what: &str) -> Result<(), Status> {
    match (caller, vote.leader_id().voted_for()) {
        (Some(c), Some(v)) if c != v => Err(ApiError::Unauthenticated(format!(
            "credential not allowed: a {what} from node {v} sent with node {c}'s certificate"
        ))
        .into()),
        _ => Ok(()),
    }
}

fn reply<T: serde::Serialize>(v: &T) -> Result<Response<RaftMessage>, Status> {
    Ok(Response::new(RaftMessage { data: wire::encode(v) }))
}

#[tonic::async_trait]
impl RaftService for RaftServer {
    async fn append_entries(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        crate::injected::peer_delay().await;
        let caller = crate::auth::caller(&req).node;
        self.epoch.check(caller, req.metadata(), &self.state, false)?;
        let rpc: openraft::raft::AppendEntriesRequest<flotilla_raft_types::TypeConfig> =
            decode(&req.into_inner().data, "append entries request")?;
        sent_by(caller, &rpc.vote, "append entries")?;
        // openraft 0.9 does not tell a follower the leader's commit index; `/readyz` needs it.
        let commit = rpc.leader_commit.map_or(0, |l| l.index);
        let answer = self.raft.append_entries(rpc).await;
        if answer.is_ok() {
            self.metrics.saw_leader_commit(commit);
        }
        reply(&answer)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        crate::injected::peer_delay().await;
        let caller = crate::auth::caller(&req).node;
        self.epoch.check(caller, req.metadata(), &self.state, true)?;
        let rpc: openraft::raft::VoteRequest<NodeId> = decode(&req.into_inner().data, "vote request")?;
        sent_by(caller, &rpc.vote, "vote request")?;
        // Which data dir votes: a candidate does not count the vote of one the cluster
        // does not know under this id (a wiped voter would vote for any log).
        let mut answer = reply(&self.raft.vote(rpc).await)?;
        if let Ok(v) = self.epoch.instance.parse() {
            answer.metadata_mut().insert(crate::epoch::INSTANCE_HEADER, v);
        }
        Ok(answer)
    }

    async fn install_snapshot(&self, req: Request<Streaming<SnapshotChunk>>) -> Result<Response<RaftMessage>, Status> {
        crate::injected::peer_delay().await;
        let caller = crate::auth::caller(&req).node;
        self.epoch.check(caller, req.metadata(), &self.state, false)?;
        let mut stream = req.into_inner();
        let header = match stream.message().await? {
            Some(SnapshotChunk {
                kind: Some(snapshot_chunk::Kind::Header(h)),
            }) => h,
            _ => return Err(ApiError::Invalid("snapshot stream must start with a header".into()).into()),
        };
        let vote: Vote = decode(&header.vote, "snapshot vote")?;
        sent_by(caller, &vote, "snapshot")?;
        let meta: SnapshotMeta = decode(&header.meta, "snapshot meta")?;
        if header.total_bytes > MAX_SNAPSHOT {
            return Err(ApiError::Invalid(format!(
                "snapshot of {} bytes is over the {MAX_SNAPSHOT}-byte limit",
                header.total_bytes
            ))
            .into());
        }
        // Grown as data comes, never from the sender's word alone.
        let mut data = Vec::with_capacity(header.total_bytes.min(crate::network::SNAPSHOT_CHUNK as u64) as usize);
        while let Some(chunk) = stream.message().await? {
            match chunk.kind {
                Some(snapshot_chunk::Kind::Data(d)) if (data.len() + d.len()) as u64 <= header.total_bytes => {
                    data.extend_from_slice(&d)
                }
                Some(snapshot_chunk::Kind::Data(_)) => {
                    return Err(ApiError::Invalid(format!(
                        "snapshot stream is longer than its header's {} bytes",
                        header.total_bytes
                    ))
                    .into())
                }
                _ => return Err(ApiError::Invalid("a snapshot has exactly one header".into()).into()),
            }
        }
        if data.len() as u64 != header.total_bytes {
            return Err(ApiError::DataLoss(format!(
                "snapshot stream ended after {} of {} bytes",
                data.len(),
                header.total_bytes
            ))
            .into());
        }
        tracing::info!(bytes = data.len(), snapshot = %meta.snapshot_id, "received snapshot");
        let snapshot = Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        };
        reply(&self.raft.install_full_snapshot(vote, snapshot).await)
    }
}
