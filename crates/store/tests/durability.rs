//! The store across restarts and damage: what a killed or corrupted node finds on disk.

use flotilla_store::{open, DataDir, StoreError};
use flotilla_types::{Command, ServiceSpec};
use openraft::storage::{RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, Vote};

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn put(name: &str, index: u64) -> Entry<flotilla_store::TypeConfig> {
    let spec = ServiceSpec::parse(&format!("name: {name}\nimage: busybox\n")).unwrap();
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(Command::PutService {
            spec,
            at: index,
            exclusive_ingress: false,
        }),
    }
}

#[tokio::test]
async fn log_vote_and_snapshot_survive_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path());
    {
        let (mut log, mut sm) = open(&dir, 7).await.unwrap();
        log.save_vote(&Vote::new(3, 7)).await.unwrap();
        let entries: Vec<_> = (1..=3).map(|i| put(&format!("s{i}"), i)).collect();
        // Apply directly, as openraft would after commit.
        sm.apply(entries).await.unwrap();
        let mut builder = sm.get_snapshot_builder().await;
        builder.build_snapshot().await.unwrap();
    }
    let (mut log, mut sm) = open(&dir, 7).await.unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 7)));
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(3)));
    assert_eq!(sm.shared().read().state.services.len(), 3);
    let snap = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(snap.meta.last_log_id, Some(log_id(3)));
    assert!(log.try_get_log_entries(0..10).await.unwrap().is_empty());
}

#[tokio::test]
async fn refuses_a_dir_of_another_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path());
    drop(open(&dir, 1).await.unwrap());
    let err = open(&dir, 2).await.err().unwrap();
    assert!(
        matches!(
            err,
            StoreError::WrongNode {
                found: 1,
                expected: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn refuses_a_corrupt_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path());
    {
        let (_log, mut sm) = open(&dir, 1).await.unwrap();
        sm.apply(vec![put("a", 1)]).await.unwrap();
        sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    }
    let path = dir.snapshot_file();
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let err = open(&dir, 1).await.err().unwrap();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

#[tokio::test]
async fn refuses_a_missing_raft_db_and_a_purged_log_without_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path());
    {
        let (mut log, _sm) = open(&dir, 1).await.unwrap();
        log.purge(log_id(5)).await.unwrap();
    }
    let err = open(&dir, 1).await.err().unwrap();
    assert!(err.to_string().contains("compacted up to index 5"), "{err}");

    std::fs::remove_dir_all(dir.raft_db()).unwrap();
    let err = open(&dir, 1).await.err().unwrap();
    assert!(err.to_string().contains("missing or incomplete"), "{err}");
}
