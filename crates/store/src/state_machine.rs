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
use tokio::sync::{oneshot, watch};

use flotilla_types::{events_of, Event, Response, State};

use crate::{snapshot_file, Entry, LogId, NodeId, SnapshotMeta, StoreError, StoredMembership, TypeConfig};

type StorageResult<T> = Result<T, StorageError<NodeId>>;

#[derive(Debug, Default, Clone)]
pub struct StateMachineData {
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
    pub state: State,
}

/// What the state machine tells whoever watches it (the node's metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreEvent {
    /// `entries` log entries applied in one call, taking `took`.
    Applied { entries: usize, took: std::time::Duration },
    /// A snapshot of `bytes` built from the state (and written), taking `took`.
    SnapshotBuilt { bytes: usize, took: std::time::Duration },
    /// A snapshot of `bytes` from the leader installed, taking `took`.
    SnapshotInstalled { bytes: usize, took: std::time::Duration },
}

type Observer = Arc<dyn Fn(StoreEvent) + Send + Sync>;

/// A read handle on the state machine, shared with the API and the control loops.
#[derive(Clone)]
pub struct SharedState {
    /// Told of applies and snapshots (set once, by the node).
    observer: Arc<std::sync::OnceLock<Observer>>,
    data: Arc<RwLock<StateMachineData>>,
    applied: watch::Sender<u64>,
    snapshots_installed: Arc<AtomicU64>,
    /// The newest events, oldest first, and a channel for followers.
    events: Arc<std::sync::Mutex<std::collections::VecDeque<Event>>>,
    event_tx: tokio::sync::broadcast::Sender<Event>,
    /// Digests asked for at an index not applied yet, answered when apply reaches it.
    digest_waiters: Arc<std::sync::Mutex<std::collections::BTreeMap<u64, Vec<oneshot::Sender<String>>>>>,
}

/// Events kept in memory per node for `flotilla events --since`.
pub const EVENTS_KEPT: usize = 10_000;

/// Why a digest at an index cannot be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("this replica has already applied index {applied}, past {requested}")]
    Passed { requested: u64, applied: u64 },
}

/// SHA-256 of the state's canonical JSON (maps are ordered, so equal states hash equal).
pub fn state_digest(state: &State) -> String {
    use sha2::{Digest, Sha256};
    let bytes = serde_json::to_vec(state).expect("state serializes");
    let hash = Sha256::digest(&bytes);
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

impl SharedState {
    pub fn read(&self) -> RwLockReadGuard<'_, StateMachineData> {
        self.data.read().expect("state machine lock poisoned")
    }

    /// Fires with the last applied index after every applied batch.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// The digest of the state exactly at `index`: now if that is the applied index,
    /// later (when apply reaches it) if it is ahead, an error if it is behind.
    pub async fn digest_at(&self, index: u64) -> Result<String, DigestError> {
        let rx = {
            let data = self.read();
            let applied = data.last_applied.map_or(0, |l| l.index);
            if applied == index {
                return Ok(state_digest(&data.state));
            }
            if applied > index {
                return Err(DigestError::Passed {
                    requested: index,
                    applied,
                });
            }
            let (tx, rx) = oneshot::channel();
            self.digest_waiters
                .lock()
                .expect("digest waiters poisoned")
                .entry(index)
                .or_default()
                .push(tx);
            rx
        };
        rx.await.map_err(|_| DigestError::Passed {
            requested: index,
            applied: self.read().last_applied.map_or(0, |l| l.index),
        })
    }

    /// Records events (from applied entries, or a leader change seen by this node).
    pub fn push_events(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let mut log = self.events.lock().expect("event log poisoned");
        for e in events {
            if log.len() == EVENTS_KEPT {
                log.pop_front();
            }
            log.push_back(e.clone());
            let _ = self.event_tx.send(e);
        }
    }

    /// Events after log index `since`, and a receiver for the ones to come; `since == 0`
    /// asks for everything kept. `Err(oldest)` when events after an explicit `since` are
    /// no longer kept.
    pub fn events_since(&self, since: u64) -> Result<(Vec<Event>, tokio::sync::broadcast::Receiver<Event>), u64> {
        // Subscribed under the lock `push_events` sends under: nothing falls between the
        // copy and the receiver, and nothing is in both.
        let log = self.events.lock().expect("event log poisoned");
        let rx = self.event_tx.subscribe();
        if let Some(oldest) = log.front() {
            if since > 0 && log.len() == EVENTS_KEPT && oldest.index > since.saturating_add(1) {
                return Err(oldest.index);
            }
        }
        // `since == 0` means everything kept, including leader changes seen before the
        // first entry was applied.
        Ok((
            log.iter().filter(|e| since == 0 || e.index > since).cloned().collect(),
            rx,
        ))
    }

    /// Answers digest requests for `index` (called right after applying it).
    fn answer_digests(&self, index: u64, state: &State) {
        let mut waiters = self.digest_waiters.lock().expect("digest waiters poisoned");
        if waiters.is_empty() {
            return;
        }
        if let Some(txs) = waiters.remove(&index) {
            let digest = state_digest(state);
            for tx in txs {
                let _ = tx.send(digest.clone());
            }
        }
        // Requests for indexes this replica skipped (a snapshot install) are dropped: the
        // caller sees `Passed` and asks again.
        waiters.retain(|i, _| *i > index);
    }

    /// Tells `observer` of every apply and snapshot from now on (the first one set stays).
    pub fn observe(&self, observer: impl Fn(StoreEvent) + Send + Sync + 'static) {
        let _ = self.observer.set(Arc::new(observer));
    }

    fn tell(&self, event: StoreEvent) {
        if let Some(o) = self.observer.get() {
            o(event);
        }
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
            data.state = serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("{}: state does not decode: {e}", snapshot_path.display())))?;
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
                observer: Default::default(),
                events: Default::default(),
                event_tx: tokio::sync::broadcast::channel(1024).0,
                digest_waiters: Default::default(),
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
        let started = std::time::Instant::now();
        let (meta, data) = {
            let sm = self.shared.read();
            let data = serde_json::to_vec(&sm.state).map_err(|e| StorageIOError::read_state_machine(&e))?;
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
        self.shared.tell(StoreEvent::SnapshotBuilt {
            bytes: data.len(),
            took: started.elapsed(),
        });
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
        let started = std::time::Instant::now();
        let mut responses = Vec::new();
        let mut events = Vec::new();
        let last = {
            let mut sm = self.shared.data.write().expect("state machine lock poisoned");
            for entry in entries {
                sm.last_applied = Some(entry.log_id);
                let response = match entry.payload {
                    EntryPayload::Blank => Response::None,
                    EntryPayload::Normal(cmd) => {
                        let response = sm.state.apply(&cmd);
                        events.extend(events_of(entry.log_id.index, &cmd, &response, &sm.state));
                        response
                    }
                    EntryPayload::Membership(m) => {
                        sm.last_membership = StoredMembership::new(Some(entry.log_id), m);
                        Response::None
                    }
                };
                responses.push(response);
                self.shared.answer_digests(entry.log_id.index, &sm.state);
            }
            sm.last_applied.map_or(0, |l| l.index)
        };
        self.shared.push_events(events);
        self.shared.applied.send_replace(last);
        self.shared.tell(StoreEvent::Applied {
            entries: responses.len(),
            took: started.elapsed(),
        });
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_builder()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Box<Cursor<Vec<u8>>>) -> StorageResult<()> {
        let started = std::time::Instant::now();
        let data = snapshot.into_inner();
        let state: State =
            serde_json::from_slice(&data).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        // Persist first: if we crash now, restart loads this snapshot, not an older one.
        self.persist(meta, &data).await?;
        {
            let mut sm = self.shared.data.write().expect("state machine lock poisoned");
            sm.state = state;
            sm.last_applied = meta.last_log_id;
            sm.last_membership = meta.last_membership.clone();
        }
        self.shared.snapshots_installed.fetch_add(1, Ordering::Relaxed);
        self.shared
            .applied
            .send_replace(meta.last_log_id.map_or(0, |l| l.index));
        tracing::info!(index = ?meta.last_log_id.map(|l| l.index), bytes = data.len(), "installed snapshot");
        self.shared.tell(StoreEvent::SnapshotInstalled {
            bytes: data.len(),
            took: started.elapsed(),
        });
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
