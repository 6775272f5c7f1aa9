//! The cluster epoch on the wire. Every Raft RPC carries the sender's id and epoch
//! (`x-flotilla-node`, `x-flotilla-epoch`); a receiver refuses a sender of an older
//! incarnation (re-formed since by `--force-new-cluster`) or one removed from the cluster,
//! and the refused sender fences itself. Epoch 0 means "not known yet" (a fresh node, or
//! one bootstrapped moments ago) and is accepted; a node at 0 adopts the epoch of the first
//! leader that replicates to it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flotilla_store::{DataDir, NodeId, SharedState};
use tonic::metadata::MetadataMap;

use crate::error::ApiError;
use crate::fence::Fence;

pub const EPOCH_HEADER: &str = "x-flotilla-epoch";
pub const NODE_HEADER: &str = "x-flotilla-node";
/// On a vote answer: the instance id of the voter's data dir.
pub const INSTANCE_HEADER: &str = "x-flotilla-instance";

pub struct Epoch {
    value: AtomicU64,
    dir: DataDir,
    id: NodeId,
    /// When each refused sender was last logged, so a retrying peer does not flood the log.
    logged: Mutex<std::collections::HashMap<NodeId, Instant>>,
    /// This node's fence: a newer epoch seen on the wire fences it.
    pub fence: Fence,
    /// The instance id of this node's data dir (`flotilla_store::instance`): sent with
    /// every heartbeat and vote, so the cluster tells this dir from a wiped one.
    pub instance: String,
}

impl Epoch {
    /// This node's epoch: the one recorded in its data dir, else (a store written before
    /// epochs were recorded, or a node killed before it recorded one) the replicated
    /// state's once its log or snapshot shows it took part in a cluster (`took_part`): such
    /// a node is never "fresh", so it cannot slip into a re-formed cluster with old data.
    pub fn load(
        dir: DataDir,
        id: NodeId,
        state: &SharedState,
        took_part: bool,
        fence: Fence,
    ) -> Result<Epoch, flotilla_store::StoreError> {
        let mut epoch = flotilla_store::read_epoch(&dir)?;
        let initialized = took_part || state.read().last_membership.membership().nodes().next().is_some();
        if epoch == 0 && initialized {
            epoch = state.read().state.cluster_epoch();
            flotilla_store::write_epoch(&dir, id, epoch)?;
        }
        let instance = flotilla_store::instance(&dir, id)?;
        Ok(Epoch {
            instance,
            value: AtomicU64::new(epoch),
            dir,
            id,
            logged: Mutex::new(Default::default()),
            fence,
        })
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Acquire)
    }

    /// Records `epoch` (memory and data dir) when this node has none yet.
    pub fn adopt(&self, epoch: u64) {
        if epoch == 0
            || self
                .value
                .compare_exchange(0, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        tracing::info!(epoch, "joined cluster epoch");
        if let Err(e) = flotilla_store::write_epoch(&self.dir, self.id, epoch) {
            tracing::error!(error = %e, "cannot record the cluster epoch");
        }
    }

    /// Puts this node's id and epoch on an outgoing request.
    pub fn stamp(&self, meta: &mut MetadataMap) {
        meta.insert(NODE_HEADER, self.id.to_string().parse().expect("ascii"));
        meta.insert(EPOCH_HEADER, self.get().to_string().parse().expect("ascii"));
    }

    pub(crate) fn should_log(&self, sender: NodeId) -> bool {
        let mut logged = self.logged.lock().expect("epoch log lock poisoned");
        let now = Instant::now();
        match logged.get(&sender) {
            Some(t) if now.duration_since(*t) < Duration::from_secs(10) => false,
            _ => {
                logged.insert(sender, now);
                true
            }
        }
    }

    /// Admits or refuses an incoming Raft RPC. A removed node is refused only when it asks
    /// for votes: a leader that removes itself still replicates until the change commits.
    /// The sender is the node of its certificate (`caller`); only an `--insecure` node
    /// goes by the header. A newer epoch fences this node only when a leader of it
    /// replicates (a candidate's vote request is refused, never believed).
    pub fn check(
        &self,
        caller: Option<u64>,
        meta: &MetadataMap,
        state: &SharedState,
        vote: bool,
    ) -> Result<(), ApiError> {
        let header = |name: &str| {
            meta.get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let (sender, remote) = (caller.unwrap_or_else(|| header(NODE_HEADER)), header(EPOCH_HEADER));
        let local = self.get();
        if vote && sender != 0 && state.read().state.removed.contains(&sender) {
            let msg = format!(
                "node {sender} was removed from this cluster (flotilla node remove) and cannot \
                 take part again; wipe its data dir and --join it with a new id"
            );
            if self.should_log(sender) {
                tracing::warn!("refused: {msg}");
            }
            return Err(ApiError::Fenced(msg));
        }
        if remote == 0 || local == 0 {
            // Only a leader's message teaches a fresh node its epoch: any old member may
            // ask it for a vote.
            if !vote {
                self.adopt(remote);
            }
            return Ok(());
        }
        if remote < local {
            let msg = format!(
                "node {sender} belongs to epoch {remote} of this cluster; the cluster was re-formed \
                 (epoch {local}) by --force-new-cluster; wipe its data dir and --join"
            );
            if self.should_log(sender) {
                tracing::warn!("refused: {msg}");
            }
            return Err(ApiError::Fenced(msg));
        }
        if remote > local && vote {
            return Err(ApiError::Refused(format!(
                "node {sender} asks for a vote in epoch {remote}; this node is of epoch {local}"
            )));
        }
        if remote > local {
            let msg = format!(
                "node {} belongs to epoch {local} of this cluster; the cluster was re-formed \
                 (epoch {remote}, node {sender}) by --force-new-cluster; wipe its data dir and --join",
                self.id
            );
            self.fence.fence(msg.clone());
            return Err(ApiError::Refused(msg));
        }
        Ok(())
    }
}
