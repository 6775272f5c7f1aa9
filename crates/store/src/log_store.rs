//! The Raft log, vote and committed index in RocksDB.
//!
//! Column families: `logs` (key: big-endian index, value: JSON entry) and `meta` (vote,
//! committed, last purged). Every write that openraft relies on for safety (appends, vote,
//! truncation, purge) is a synced write: it is on disk before openraft is told so.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{OptionalSend, RaftLogId, StorageError, StorageIOError};
use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use crate::{Entry, LogId, NodeId, StoreError, TypeConfig, Vote};

const CF_LOGS: &str = "logs";
const CF_META: &str = "meta";
const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

type StorageResult<T> = Result<T, StorageError<NodeId>>;

#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    path: PathBuf,
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_index(key: &[u8]) -> u64 {
    u64::from_be_bytes(key.try_into().expect("log keys are 8 bytes"))
}

fn synced() -> WriteOptions {
    let mut o = WriteOptions::default();
    o.set_sync(true);
    o
}

impl LogStore {
    /// Opens the log at `path`. `fresh` allows creating it; an existing data dir whose
    /// RocksDB is missing is refused instead of silently starting empty (which would forget
    /// this node's vote and log).
    pub fn open(path: &Path, fresh: bool) -> Result<Self, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(fresh);
        opts.create_missing_column_families(fresh);
        opts.set_paranoid_checks(true);
        // Every write Raft relies on (entries, votes, truncations, purges) is synced before
        // it is acknowledged, so a torn record can only be the last one, written while the
        // machine lost power and never acknowledged: recovery drops that incomplete tail
        // and keeps everything before it. A record that fails its checksum anywhere else is
        // real damage and stops the node. (Not `PointInTimeRecovery`: it stops silently at
        // the first bad record, which can drop synced, acknowledged entries after it. The
        // committed-index hint is written unsynced; losing it costs nothing, the leader
        // tells it again.)
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
        opts.set_keep_log_file_num(2);
        let cfs = [CF_LOGS, CF_META].map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
        if !fresh && !path.join("CURRENT").exists() {
            return Err(StoreError::Inconsistent(format!(
                "{} is missing or incomplete (no CURRENT file)",
                path.display()
            )));
        }
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| StoreError::Rocks {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let store = LogStore {
            db: Arc::new(db),
            path: path.to_path_buf(),
        };
        // Read everything we will need once, so damage is found now and not mid-election.
        store
            .check_readable()
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))?;
        Ok(store)
    }

    fn check_readable(&self) -> Result<(), String> {
        self.read_meta::<Vote>(KEY_VOTE).map_err(|e| e.to_string())?;
        self.read_meta::<LogId>(KEY_COMMITTED).map_err(|e| e.to_string())?;
        self.read_meta::<LogId>(KEY_LAST_PURGED).map_err(|e| e.to_string())?;
        let mut expected = None;
        for item in self.db.iterator_cf(self.cf(CF_LOGS), IteratorMode::Start) {
            let (k, v) = item.map_err(|e| e.to_string())?;
            let index = key_index(&k);
            if expected.is_some_and(|e| e != index) {
                return Err(format!("log has a hole before index {index}"));
            }
            let entry: Entry =
                serde_json::from_slice(&v).map_err(|e| format!("log entry {index} does not decode: {e}"))?;
            if entry.get_log_id().index != index {
                return Err(format!(
                    "log entry stored at {index} claims index {}",
                    entry.get_log_id().index
                ));
            }
            expected = Some(index + 1);
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column family created at open")
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> StorageResult<Option<T>> {
        let bytes = self
            .db
            .get_cf(self.cf(CF_META), key)
            .map_err(|e| StorageIOError::read(&e))?;
        bytes
            .map(|b| serde_json::from_slice(&b).map_err(|e| StorageIOError::read(&e).into()))
            .transpose()
    }

    fn write_meta<T: serde::Serialize>(&self, key: &[u8], value: &T, sync: bool) -> Result<(), rocksdb::Error> {
        let bytes = serde_json::to_vec(value).expect("meta serializes");
        let opts = if sync { synced() } else { WriteOptions::default() };
        self.db.put_cf_opt(self.cf(CF_META), key, bytes, &opts)
    }

    /// Whether this log ever took part in a cluster: it holds a vote, an entry or a purge
    /// point. (A node killed before it recorded its epoch is still no fresh node.)
    pub fn has_history(&self) -> Result<bool, StoreError> {
        let corrupt = |e: String| StoreError::Corrupt(e);
        let vote: Option<Vote> = self.read_meta(KEY_VOTE).map_err(|e| corrupt(e.to_string()))?;
        let entry = self.last_entry_id().map_err(|e| corrupt(e.to_string()))?;
        Ok(vote.is_some() || entry.is_some() || self.last_purged()?.is_some())
    }

    pub fn last_purged(&self) -> Result<Option<LogId>, StoreError> {
        self.read_meta(KEY_LAST_PURGED)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    fn last_entry_id(&self) -> StorageResult<Option<LogId>> {
        let mut it = self.db.iterator_cf(self.cf(CF_LOGS), IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(item) => {
                let (_, v) = item.map_err(|e| StorageIOError::read_logs(&e))?;
                let entry: Entry = serde_json::from_slice(&v).map_err(|e| StorageIOError::read_logs(&e))?;
                Ok(Some(*entry.get_log_id()))
            }
        }
    }

    /// Runs a synced batch off the async runtime: fsync can take milliseconds.
    async fn write_synced(&self, batch: WriteBatch) -> Result<(), rocksdb::Error> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.write_opt(batch, &synced()))
            .await
            .expect("rocksdb write task panicked")
    }
}

impl LogStore {
    /// `--force-new-cluster`: forgets every entry, as if the log had been compacted up to
    /// `last` (which a snapshot file then covers), commits it, and votes for `me` in
    /// `term` so the next election starts past every old entry's term.
    pub(crate) async fn reset_to(&self, last: LogId, me: NodeId, term: u64) -> Result<(), rocksdb::Error> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf(CF_LOGS), index_key(0), index_key(u64::MAX));
        batch.delete_cf(self.cf(CF_LOGS), index_key(u64::MAX));
        let json = |v: serde_json::Result<Vec<u8>>| v.expect("meta serializes");
        batch.put_cf(self.cf(CF_META), KEY_LAST_PURGED, json(serde_json::to_vec(&last)));
        batch.put_cf(self.cf(CF_META), KEY_COMMITTED, json(serde_json::to_vec(&Some(last))));
        batch.put_cf(
            self.cf(CF_META),
            KEY_VOTE,
            json(serde_json::to_vec(&Vote::new(term, me))),
        );
        self.write_synced(batch).await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => *i + 1,
            Bound::Unbounded => 0,
        };
        let key = index_key(start);
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_LOGS), IteratorMode::From(&key, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            let index = key_index(&k);
            if !range.contains(&index) {
                break;
            }
            let entry: Entry = serde_json::from_slice(&v).map_err(|e| StorageIOError::read_logs(&e))?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id = self.read_meta::<LogId>(KEY_LAST_PURGED)?;
        let last_log_id = self.last_entry_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> StorageResult<()> {
        self.write_meta(KEY_VOTE, vote, true)
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote>> {
        self.read_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> StorageResult<()> {
        // Not synced: losing it only means re-applying fewer entries at start-up; the
        // leader re-establishes the commit index.
        self.write_meta(KEY_COMMITTED, &committed, false)
            .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId>> {
        Ok(self.read_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let cf = self.cf(CF_LOGS);
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(|e| StorageIOError::write_logs(&e))?;
            batch.put_cf(cf, index_key(entry.get_log_id().index), bytes);
        }
        // The entries are readable once the batch is written; openraft is told they are
        // flushed only after the synced write returns.
        let result = self.write_synced(batch).await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> StorageResult<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf(CF_LOGS), index_key(log_id.index), index_key(u64::MAX));
        batch.delete_cf(self.cf(CF_LOGS), index_key(u64::MAX));
        self.write_synced(batch)
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> StorageResult<()> {
        // Record the purge point first: a crash between the two leaves extra entries
        // below it, which are harmless, never a hole.
        let mut batch = WriteBatch::default();
        let bytes = serde_json::to_vec(&log_id).expect("log id serializes");
        batch.put_cf(self.cf(CF_META), KEY_LAST_PURGED, bytes);
        batch.delete_range_cf(self.cf(CF_LOGS), index_key(0), index_key(log_id.index + 1));
        self.write_synced(batch)
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
