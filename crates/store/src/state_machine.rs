//! The state machine: `flotilla_types::State` in memory, persisted through snapshot files.
//!
//! Applying an entry does no I/O. On start-up the state is loaded from the last snapshot
//! and openraft re-applies the committed log after it.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageError, StorageIOError};
use tokio::sync::watch;

use flotilla_types::{Response, State};

use crate::{
    snapshot_file, Entry, LogId, NodeId, SnapshotMeta, StoreError, StoredMembership, TypeConfig,
};

type StorageResult<T> = Result<T, StorageError<NodeId>>;

#[derive(Debug, Default, Clone)]
pub struct StateMachineData {
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
    pub state: State,
}

/// A read handle on the state machine, shared with the API and the control loops.
#[derive(Clone)]
pub struct SharedState {
    data: Arc<RwLock<StateMachineData>>,
    applied: watch::Sender<u64>,
    snapshots_installed: Arc<AtomicU64>,
}

impl SharedState {
    pub fn read(&self) -> RwLockReadGuard<'_, StateMachineData> {
        self.data.read().expect("state machine lock poisoned")
    }

    /// Fires with the last applied index after every applied batch.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Snapshots received from a leader and installed since this process started.
    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed.load(Ordering::Relaxed)
    }
}

pub struct StateMachineStore {
    shared: SharedState,
    snapshot_path: PathBuf,
    /// Serialises snapshot file writes and remembers the newest one written, so a slow
    /// build never overwrites a newer installed snapshot.
    written: Arc<tokio::sync::Mutex<Option<LogId>>>,
    snapshot_seq: Arc<AtomicU64>,
}

impl StateMachineStore {
    pub fn open(snapshot_path: PathBuf) -> Result<Self, StoreError> {
        let mut data = StateMachineData::default();
        let mut written = None;
        if let Some((meta, bytes)) = snapshot_file::read(&snapshot_path)? {
            data.state = serde_json::from_slice(&bytes).map_err(|e| {
                StoreError::Corrupt(format!(
                    "{}: state does not decode: {e}",
                    snapshot_path.display()
                ))
            })?;
            data.last_applied = meta.last_log_id;
            data.last_membership = meta.last_membership.clone();
            written = meta.last_log_id;
        }
        let applied_index = data.last_applied.map_or(0, |l| l.index);
        let (applied, _) = watch::channel(applied_index);
        Ok(StateMachineStore {
            shared: SharedState {
                data: Arc::new(RwLock::new(data)),
                applied,
                snapshots_installed: Arc::new(AtomicU64::new(0)),
            },
            snapshot_path,
            written: Arc::new(tokio::sync::Mutex::new(written)),
            snapshot_seq: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn shared(&self) -> SharedState {
        self.shared.clone()
    }

    pub fn snapshot_last_log_id(&self) -> Option<LogId> {
        self.shared.read().last_applied
    }

    /// Persists a snapshot unless a newer one is already on disk.
    async fn persist(&self, meta: &SnapshotMeta, data: &[u8]) -> StorageResult<()> {
        let mut written = self.written.lock().await;
        if *written > meta.last_log_id {
            return Ok(());
        }
        let bytes = snapshot_file::encode(meta, data);
        let path = self.snapshot_path.clone();
        tokio::task::spawn_blocking(move || snapshot_file::write_atomically(&path, &bytes))
            .await
            .expect("snapshot write task panicked")
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        *written = meta.last_log_id;
        Ok(())
    }

    fn snapshot_builder(&self) -> Self {
        StateMachineStore {
            shared: self.shared.clone(),
            snapshot_path: self.snapshot_path.clone(),
            written: self.written.clone(),
            snapshot_seq: self.snapshot_seq.clone(),
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let (meta, data) = {
            let sm = self.shared.read();
            let data = serde_json::to_vec(&sm.state)
                .map_err(|e| StorageIOError::read_state_machine(&e))?;
            let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
            let snapshot_id = match sm.last_applied {
                Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
                None => format!("none-{seq}"),
            };
            let meta = SnapshotMeta {
                last_log_id: sm.last_applied,
                last_membership: sm.last_membership.clone(),
                snapshot_id,
            };
            (meta, data)
        };
        self.persist(&meta, &data).await?;
        tracing::info!(index = ?meta.last_log_id.map(|l| l.index), bytes = data.len(), "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId>, StoredMembership)> {
        let sm = self.shared.read();
        Ok((sm.last_applied, sm.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let last = {
            let mut sm = self
                .shared
                .data
                .write()
                .expect("state machine lock poisoned");
            for entry in entries {
                sm.last_applied = Some(entry.log_id);
                let response = match entry.payload {
                    EntryPayload::Blank => Response::None,
                    EntryPayload::Normal(cmd) => sm.state.apply(&cmd),
                    EntryPayload::Membership(m) => {
                        sm.last_membership = StoredMembership::new(Some(entry.log_id), m);
                        Response::None
                    }
                };
                responses.push(response);
            }
            sm.last_applied.map_or(0, |l| l.index)
        };
        self.shared.applied.send_replace(last);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_builder()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let state: State = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        // Persist first: if we crash now, restart loads this snapshot, not an older one.
        self.persist(meta, &data).await?;
        {
            let mut sm = self
                .shared
                .data
                .write()
                .expect("state machine lock poisoned");
            sm.state = state;
            sm.last_applied = meta.last_log_id;
            sm.last_membership = meta.last_membership.clone();
        }
        self.shared
            .snapshots_installed
            .fetch_add(1, Ordering::Relaxed);
        self.shared
            .applied
            .send_replace(meta.last_log_id.map_or(0, |l| l.index));
        tracing::info!(index = ?meta.last_log_id.map(|l| l.index), bytes = data.len(), "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let path = self.snapshot_path.clone();
        let _guard = self.written.lock().await;
        let read = tokio::task::spawn_blocking(move || snapshot_file::read(&path))
            .await
            .expect("snapshot read task panicked")
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(read.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
