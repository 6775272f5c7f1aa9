//! Backups and recovery: the snapshot file image of a live state (`flotilla snapshot
//! save`), its inspection, preparing a data dir from one (`snapshot restore`), and
//! re-forming a one-node cluster from a data dir (`agent --force-new-cluster`).
//!
//! A backup is the same checksummed `FLTSNAP1` file the Raft snapshot builder writes, so
//! a restored data dir is simply one whose snapshot is the backup and whose log is empty.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use openraft::storage::{RaftLogReader, RaftLogStorage};
use openraft::{BasicNode, EntryPayload, Membership};
use sha2::{Digest, Sha256};

use flotilla_types::State;

use crate::{
    read_epoch, snapshot_file, write_epoch, DataDir, LogId, LogStore, NodeId, SnapshotMeta, StateMachineData,
    StoreError, StoredMembership,
};

/// What a snapshot file holds, for `snapshot inspect` and the other verbs' messages.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SnapshotSummary {
    pub index: u64,
    pub term: u64,
    pub epoch: u64,
    pub services: usize,
    pub tasks: usize,
    pub nodes: usize,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub size_bytes: u64,
    /// CRC-32 of the body, as stored in the file (verified).
    pub crc32: String,
    /// SHA-256 of the whole file, to compare copies.
    pub sha256: String,
}

/// Decodes and verifies a snapshot image (checksum, metadata, state).
pub fn inspect(bytes: &[u8], what: &str) -> Result<(SnapshotSummary, SnapshotMeta, State), StoreError> {
    let (meta, data) = snapshot_file::decode(bytes, what)?;
    let state: State = serde_json::from_slice(&data)
        .map_err(|e| StoreError::Corrupt(format!("{what}: the state does not decode: {e}")))?;
    let last = meta
        .last_log_id
        .ok_or_else(|| StoreError::Corrupt(format!("{what}: the snapshot holds no log position")))?;
    let membership = meta.last_membership.membership();
    let summary = SnapshotSummary {
        index: last.index,
        term: last.leader_id.term,
        epoch: state.cluster_epoch(),
        services: state.services.len(),
        tasks: state.tasks.len(),
        nodes: state.nodes.len(),
        voters: membership.voter_ids().collect(),
        learners: membership.learner_ids().collect(),
        size_bytes: bytes.len() as u64,
        crc32: format!("{:08x}", u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"))),
        sha256: Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect(),
    };
    Ok((summary, meta, state))
}

/// The snapshot file image of `data` as it is now (its applied index and membership).
pub fn image(data: &StateMachineData, node: NodeId) -> Result<Vec<u8>, StoreError> {
    let last = data
        .last_applied
        .ok_or_else(|| StoreError::Inconsistent("nothing has been applied yet".into()))?;
    let meta = SnapshotMeta {
        last_log_id: Some(last),
        last_membership: data.last_membership.clone(),
        snapshot_id: format!("backup-{}-{}-n{node}", last.leader_id.term, last.index),
    };
    let state = serde_json::to_vec(&data.state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(snapshot_file::encode(&meta, &state))
}

/// Whether `dir` holds anything at all (a file or a directory).
fn is_empty_dir(dir: &Path) -> Result<bool, StoreError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(StoreError::Io {
            path: dir.to_path_buf(),
            source: e,
        }),
    }
}

/// `flotilla snapshot restore FILE --data-dir DIR`: verifies the file, then (only then)
/// writes it into an empty `dir` as its snapshot and leaves the restore marker.
pub fn prepare_restore(file: &Path, dir: &DataDir) -> Result<SnapshotSummary, StoreError> {
    let bytes = std::fs::read(file).map_err(|e| StoreError::Io {
        path: file.to_path_buf(),
        source: e,
    })?;
    let (summary, _, _) = inspect(&bytes, &file.display().to_string())?;
    if !is_empty_dir(dir.root())? {
        return Err(StoreError::Inconsistent(format!(
            "{} is not empty{}; restore into a new, empty directory",
            dir.root().display(),
            if dir.identity_file().exists() {
                " (it holds a node's data)"
            } else {
                ""
            }
        )));
    }
    write_file(&dir.snapshot_file(), &bytes)?;
    let marker = serde_json::json!({ "index": summary.index, "term": summary.term, "epoch": summary.epoch, "sha256": summary.sha256 });
    write_file(&dir.restore_marker(), marker.to_string().as_bytes())?;
    Ok(summary)
}

/// What `--force-new-cluster` did.
#[derive(Debug, Clone)]
pub struct Reformed {
    pub epoch: u64,
    pub index: u64,
    /// Entries of the local log after the snapshot that were applied into the new state.
    pub replayed: u64,
    /// Nodes of the old incarnation dropped from the state.
    pub dropped: Vec<NodeId>,
    pub restored: bool,
}

/// `flotilla agent --force-new-cluster`: rewrites `dir` so that Raft starts as a one-node
/// cluster of `id` (at `addr`) holding this node's state: the snapshot plus every entry of
/// the local log, the other members dropped, the epoch raised. Runs before Raft starts.
///
/// Once: a finished run leaves `reformed.json`, and a second run is refused until the node
/// started without the flag ([`started_without_force`] removes it).
///
/// Crash-safe: a `reform-in-progress` marker is written first and removed last; while it
/// exists the dir refuses to open without the flag (so it never starts at the old epoch
/// with the new membership). In between: the new snapshot file (covering the last entry),
/// the log emptied behind it, the epoch recorded, the restore marker removed.
pub async fn force_new_cluster(dir: &DataDir, id: NodeId, addr: &str, at: u64) -> Result<Reformed, StoreError> {
    let restored = dir.restore_marker().exists();
    may_reform(dir, restored)?;
    let old_epoch = read_epoch(dir)?;
    let (mut log, sm) = crate::open_unchecked(dir, id).await?;
    let reform = dir.reform_marker();
    write_file(&reform, b"{}")?;
    let mut data = sm.shared().read().clone();
    let replayed = replay_log(&mut log, &mut data).await?;
    let last: LogId = data.last_applied.ok_or_else(|| {
        StoreError::Inconsistent(format!(
            "--force-new-cluster: {} holds no applied state to keep",
            dir.root().display()
        ))
    })?;
    let vote = log
        .read_vote()
        .await
        .map_err(|e| StoreError::Corrupt(format!("reading the vote: {e}")))?;
    let term = vote.map_or(0, |v| v.leader_id.term).max(last.leader_id.term);
    let epoch = old_epoch.max(data.state.cluster_epoch()) + 1;
    let dropped: Vec<NodeId> = data.state.nodes.keys().copied().filter(|n| *n != id).collect();
    data.state.reform(id, epoch, at);
    write_reformed_snapshot(dir, &data.state, last, epoch, id, addr)?;
    log.reset_to(last, id, term).await.map_err(|e| StoreError::Rocks {
        path: dir.raft_db(),
        message: e.to_string(),
    })?;
    drop(log);
    write_epoch(dir, id, epoch)?;
    if restored {
        remove_file(dir.restore_marker())?;
    }
    write_file(&dir.reformed_marker(), format!("{{\"epoch\":{epoch}}}").as_bytes())?;
    remove_file(reform)?;
    Ok(Reformed {
        epoch,
        index: last.index,
        replayed,
        dropped,
        restored,
    })
}

/// Refuses a dir with no node's data, and a second run once one finished.
fn may_reform(dir: &DataDir, restored: bool) -> Result<(), StoreError> {
    if !restored && !dir.identity_file().exists() {
        return Err(StoreError::Inconsistent(format!(
            "--force-new-cluster: {} holds no node's data; give it the data dir of a surviving \
             node, or one prepared by `flotilla snapshot restore`",
            dir.root().display()
        )));
    }
    // Unless an earlier run was interrupted (then it must finish), once is enough.
    if dir.reformed_marker().exists() && !dir.reform_marker().exists() {
        let epoch = read_epoch(dir)?;
        return Err(StoreError::Inconsistent(format!(
            "--force-new-cluster already re-formed {} into epoch {epoch}, and nodes may have \
             joined since: start this node without the flag. Only if this cluster lost its \
             quorum again: delete {} and start with the flag once more",
            dir.root().display(),
            dir.reformed_marker().display()
        )));
    }
    Ok(())
}

/// Applies every entry of the local log after `data`'s last applied one; returns how
/// many commands that was.
async fn replay_log(log: &mut LogStore, data: &mut StateMachineData) -> Result<u64, StoreError> {
    let from = data.last_applied.map_or(0, |l| l.index + 1);
    let entries = log
        .try_get_log_entries(from..)
        .await
        .map_err(|e| StoreError::Corrupt(format!("reading the log: {e}")))?;
    let mut replayed = 0;
    for entry in &entries {
        if let EntryPayload::Normal(cmd) = &entry.payload {
            data.state.apply(cmd);
            replayed += 1;
        }
        data.last_applied = Some(entry.log_id);
    }
    Ok(replayed)
}

/// The snapshot of the re-formed cluster: `state` at `last`, `id` its only member.
fn write_reformed_snapshot(
    dir: &DataDir,
    state: &State,
    last: LogId,
    epoch: u64,
    id: NodeId,
    addr: &str,
) -> Result<(), StoreError> {
    let membership = Membership::new(
        vec![BTreeSet::from([id])],
        BTreeMap::from([(id, BasicNode { addr: addr.to_string() })]),
    );
    let meta = SnapshotMeta {
        last_log_id: Some(last),
        last_membership: StoredMembership::new(Some(last), membership),
        snapshot_id: format!("reformed-e{epoch}-{}-{}", last.leader_id.term, last.index),
    };
    let state = serde_json::to_vec(state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    write_file(&dir.snapshot_file(), &snapshot_file::encode(&meta, &state))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    snapshot_file::write_atomically(path, bytes).map_err(|e| StoreError::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

fn remove_file(path: PathBuf) -> Result<(), StoreError> {
    std::fs::remove_file(&path).map_err(|e| StoreError::Io { path, source: e })
}

/// The agent started without `--force-new-cluster`: a later run of the flag may re-form
/// again (this cluster may lose its quorum some day too).
pub fn started_without_force(dir: &DataDir) -> Result<(), StoreError> {
    let marker = dir.reformed_marker();
    match std::fs::remove_file(&marker) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::Io {
            path: marker,
            source: e,
        }),
    }
}
