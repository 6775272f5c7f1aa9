//! flotilla-store owns durability: the Raft log, vote and committed index in RocksDB, and
//! the in-memory state machine persisted through checksummed snapshot files. openraft's
//! type configuration is flotilla-raft-types' (re-exported here). It must not know about
//! gRPC or containers.

// openraft's StorageError and RaftError are large and fixed by its traits.
#![allow(clippy::result_large_err)]

pub mod backup;
mod error;
mod log_store;
pub mod snapshot_file;
mod state_machine;

use std::path::{Path, PathBuf};

pub use error::StoreError;
pub use log_store::LogStore;
pub use state_machine::{
    state_digest, DigestError, SharedState, StateMachineData, StateMachineStore, StoreEvent, EVENTS_KEPT,
};

pub use flotilla_raft_types::{Entry, LogId, NodeId, Raft, SnapshotMeta, StoredMembership, TypeConfig, Vote};

/// The on-disk layout of one node's data dir.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// RocksDB: Raft log, vote, committed index.
    pub fn raft_db(&self) -> PathBuf {
        self.root.join("raft")
    }

    /// The latest state machine snapshot.
    pub fn snapshot_file(&self) -> PathBuf {
        self.root.join("snapshot").join("current.snap")
    }

    /// Which node owns this dir; written once when the dir is first used.
    pub fn identity_file(&self) -> PathBuf {
        self.root.join("flotilla-node.json")
    }

    /// Present while `--force-new-cluster` rewrites the dir: a crash in between leaves a
    /// dir that must be forced again, never one that opens at the old epoch.
    pub fn reform_marker(&self) -> PathBuf {
        self.root.join("reform-in-progress")
    }

    /// Left by a finished `--force-new-cluster` until the node starts without the flag: a
    /// flag left on the command line must not re-form the cluster again on every restart
    /// (that would fence out every node that joined since).
    pub fn reformed_marker(&self) -> PathBuf {
        self.root.join("reformed.json")
    }

    /// Left by `flotilla snapshot restore`: the dir holds a restored snapshot that
    /// `flotilla agent --force-new-cluster` turns into a one-node cluster.
    pub fn restore_marker(&self) -> PathBuf {
        self.root.join("restore.json")
    }
}

/// Opens (or creates) both halves of the store in `dir` for node `id`.
///
/// Refuses, rather than serving wrong data, when the dir belongs to another node, when
/// RocksDB or the snapshot is corrupt, or when the log was compacted past what the snapshot
/// holds (a deleted or truncated snapshot).
pub async fn open(dir: &DataDir, id: NodeId) -> Result<(LogStore, StateMachineStore), StoreError> {
    if dir.restore_marker().exists() {
        return Err(StoreError::Inconsistent(format!(
            "{} was prepared by `flotilla snapshot restore`; start this node once with \
             --force-new-cluster to form a one-node cluster from it",
            dir.root().display()
        )));
    }
    if dir.reform_marker().exists() {
        return Err(StoreError::Inconsistent(format!(
            "a --force-new-cluster on {} was interrupted; start this node with \
             --force-new-cluster again to finish it",
            dir.root().display()
        )));
    }
    open_unchecked(dir, id).await
}

/// [`open`] without the restore check: for `--force-new-cluster`, which consumes it.
pub(crate) async fn open_unchecked(dir: &DataDir, id: NodeId) -> Result<(LogStore, StateMachineStore), StoreError> {
    let fresh = check_identity(dir, id)?;
    let log = LogStore::open(&dir.raft_db(), fresh)?;
    let sm = StateMachineStore::open(dir.snapshot_file())?;
    let purged = log.last_purged()?;
    let covered = sm.snapshot_last_log_id();
    if let Some(purged) = purged {
        if covered.map(|c| c.index) < Some(purged.index) {
            return Err(StoreError::Inconsistent(format!(
                "the log was compacted up to index {} but the snapshot {} covers only up to {}; \
                 the snapshot file is missing or from another node",
                purged.index,
                dir.snapshot_file().display(),
                covered.map_or("nothing".to_string(), |c| c.index.to_string()),
            )));
        }
    }
    Ok((log, sm))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Identity {
    node_id: NodeId,
    /// The cluster incarnation this dir belongs to; 0 until known (see `read_epoch`).
    #[serde(default, skip_serializing_if = "is_zero")]
    epoch: u64,
    /// Random, made when the dir is created (or first opened by a binary that knows it):
    /// the cluster records it when the node first registers, and so tells this dir from a
    /// wiped or replaced one under the same node id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    instance: String,
}

fn new_instance() -> String {
    format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())
}

fn read_identity(dir: &DataDir) -> Result<Option<Identity>, StoreError> {
    let path = dir.identity_file();
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<Identity>(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("{} is not a node identity file: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Io { path, source: e }),
    }
}

fn write_identity(dir: &DataDir, ident: &Identity) -> Result<(), StoreError> {
    let path = dir.identity_file();
    let body = serde_json::to_vec(ident).expect("serializable");
    snapshot_file::write_atomically(&path, &body).map_err(|e| StoreError::Io { path, source: e })
}

/// This data dir's instance id; a dir written by an earlier binary gets one now.
pub fn instance(dir: &DataDir, id: NodeId) -> Result<String, StoreError> {
    match read_identity(dir)? {
        Some(ident) if !ident.instance.is_empty() => Ok(ident.instance),
        Some(ident) => {
            let ident = Identity {
                instance: new_instance(),
                ..ident
            };
            write_identity(dir, &ident)?;
            Ok(ident.instance)
        }
        None => {
            let ident = Identity {
                node_id: id,
                epoch: 0,
                instance: new_instance(),
            };
            write_identity(dir, &ident)?;
            Ok(ident.instance)
        }
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// The cluster epoch recorded in `dir`'s identity file (0 when none is recorded).
pub fn read_epoch(dir: &DataDir) -> Result<u64, StoreError> {
    Ok(read_identity(dir)?.map_or(0, |i| i.epoch))
}

/// Records the cluster epoch node `id` belongs to, atomically (the instance id stays).
pub fn write_epoch(dir: &DataDir, id: NodeId, epoch: u64) -> Result<(), StoreError> {
    let instance = read_identity(dir)?.map(|i| i.instance).unwrap_or_default();
    write_identity(
        dir,
        &Identity {
            node_id: id,
            epoch,
            instance,
        },
    )
}

/// Returns true when the dir is new (and claims it for `id`).
fn check_identity(dir: &DataDir, id: NodeId) -> Result<bool, StoreError> {
    let path = dir.identity_file();
    let io = |e: std::io::Error| StoreError::Io {
        path: path.clone(),
        source: e,
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let ident: Identity = serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("{} is not a node identity file: {e}", path.display())))?;
            if ident.node_id != id {
                return Err(StoreError::WrongNode {
                    dir: dir.root().to_path_buf(),
                    found: ident.node_id,
                    expected: id,
                });
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dir.raft_db().exists() {
                return Err(StoreError::Inconsistent(format!(
                    "{} holds a Raft log but no identity file {}",
                    dir.root().display(),
                    path.display()
                )));
            }
            snapshot_file::create_private_dir(dir.root()).map_err(io)?;
            write_identity(
                dir,
                &Identity {
                    node_id: id,
                    epoch: 0,
                    instance: new_instance(),
                },
            )?;
            Ok(true)
        }
        Err(e) => Err(io(e)),
    }
}
