//! Backups and `--force-new-cluster` on real data dirs: a restored or forced dir opens as
//! a one-node cluster holding the same state; a bad backup changes nothing.

use flotilla_store::{backup, open, DataDir};
use flotilla_types::{Command, ServiceSpec};
use openraft::storage::{RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

/// Member addresses written into the re-formed membership; nothing listens or connects
/// in these tests, so they are names, not ports.
const ADDR_1: &str = "node1.invalid:7001";
const ADDR_5: &str = "node5.invalid:7005";

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(4, 1), index)
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

/// A data dir of node 1 whose state holds three services, snapshotted at index 3.
async fn node_dir(root: &std::path::Path) -> DataDir {
    let dir = DataDir::new(root);
    let (_log, mut sm) = open(&dir, 1).await.unwrap();
    sm.apply((1..=3).map(|i| put(&format!("s{i}"), i))).await.unwrap();
    sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    dir
}

async fn assert_one_node_cluster(dir: &DataDir, id: u64, epoch: u64) {
    let (mut log, mut sm) = open(dir, id).await.unwrap();
    let (applied, membership) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(3));
    assert_eq!(membership.membership().voter_ids().collect::<Vec<_>>(), vec![id]);
    assert_eq!(sm.shared().read().state.services.len(), 3);
    assert_eq!(sm.shared().read().state.cluster_epoch(), epoch);
    assert_eq!(flotilla_store::read_epoch(dir).unwrap(), epoch);
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(3));
    let vote = log.read_vote().await.unwrap().unwrap();
    assert!(vote.leader_id.term >= 4, "{vote:?}");
}

#[tokio::test]
async fn force_new_cluster_keeps_the_state_and_makes_a_one_node_membership() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = node_dir(tmp.path()).await;
    let r = backup::force_new_cluster(&dir, 1, ADDR_1, 9).await.unwrap();
    assert_eq!((r.epoch, r.index, r.restored), (2, 3, false));
    assert_one_node_cluster(&dir, 1, 2).await;
    // The flag left on for the next start is refused and changes nothing...
    let before = std::fs::read(dir.snapshot_file()).unwrap();
    let err = backup::force_new_cluster(&dir, 1, ADDR_1, 9).await.unwrap_err();
    assert!(
        err.to_string().contains("already re-formed") && err.to_string().contains("epoch 2"),
        "{err}"
    );
    assert_eq!(std::fs::read(dir.snapshot_file()).unwrap(), before);
    assert_one_node_cluster(&dir, 1, 2).await;
    // ...until the node has started without it: then forcing again raises the epoch again.
    backup::started_without_force(&dir).unwrap();
    let r = backup::force_new_cluster(&dir, 1, ADDR_1, 9).await.unwrap();
    assert_eq!(r.epoch, 3);
}

#[tokio::test]
async fn force_new_cluster_refuses_an_empty_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let err = backup::force_new_cluster(&DataDir::new(tmp.path().join("none")), 1, "a:1", 0)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("holds no node's data"), "{err}");
}

#[tokio::test]
async fn restore_verifies_first_then_force_new_cluster_forms_the_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let src = node_dir(&tmp.path().join("src")).await;
    let (_, sm) = open(&src, 1).await.unwrap();
    let image = backup::image(&sm.shared().read(), 1).unwrap();
    let file = tmp.path().join("backup.snap");
    std::fs::write(&file, &image).unwrap();

    // Bad files and a dir that holds a node change nothing.
    let target = DataDir::new(tmp.path().join("target"));
    for (bytes, why) in [
        (image[..image.len() - 1].to_vec(), "truncated"),
        (
            {
                let mut b = image.clone();
                b[40] ^= 1;
                b
            },
            "checksum mismatch",
        ),
    ] {
        let bad = tmp.path().join("bad.snap");
        std::fs::write(&bad, bytes).unwrap();
        let err = backup::prepare_restore(&bad, &target).unwrap_err();
        assert!(err.to_string().contains(why), "{err}");
        assert!(!target.root().exists());
    }
    let err = backup::prepare_restore(&file, &src).unwrap_err();
    assert!(err.to_string().contains("holds a node's data"), "{err}");

    let summary = backup::prepare_restore(&file, &target).unwrap();
    assert_eq!((summary.index, summary.services, summary.epoch), (3, 3, 1));
    let err = open(&target, 5).await.err().unwrap();
    assert!(err.to_string().contains("--force-new-cluster"), "{err}");
    let r = backup::force_new_cluster(&target, 5, ADDR_5, 9).await.unwrap();
    assert!(r.restored);
    assert_eq!(r.dropped, Vec::<u64>::new());
    assert_one_node_cluster(&target, 5, 2).await;
}

#[tokio::test]
async fn an_interrupted_force_new_cluster_must_be_finished_before_the_dir_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = node_dir(tmp.path()).await;
    // As if the process died between writing the marker and removing it.
    std::fs::write(dir.reform_marker(), b"{}").unwrap();
    let err = open(&dir, 1).await.err().unwrap();
    assert!(err.to_string().contains("--force-new-cluster"), "{err}");
    backup::force_new_cluster(&dir, 1, ADDR_1, 9).await.unwrap();
    assert!(!dir.reform_marker().exists());
    open(&dir, 1).await.unwrap();
}

#[tokio::test]
async fn a_new_data_dir_and_its_snapshot_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let dir = node_dir(&root.path().join("var/data")).await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir.root()), 0o700);
    assert_eq!(mode(&root.path().join("var")), 0o700);
    assert_eq!(mode(&dir.snapshot_file()), 0o600);
}
