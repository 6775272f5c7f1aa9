//! The replicated store's election, failover, snapshot catch-up and partition behaviour
//! against an in-process cluster: three nodes in this test's process, over real loopback
//! gRPC (the multi-process versions are in `replicated_store.rs` and the chaos suite).

use std::time::Duration;

use flotilla_proto::v1::{ApplyRequest, ApplyResponse, GetServiceRequest, MemberRole, ServiceInfo};
use flotilla_testkit::{wait_until_async, InProcessCluster, RaftTuning};
use flotilla_tests::spec;

const T: Duration = Duration::from_secs(30);

/// Applies `text` through node `via` (forwarded to the leader when it follows).
async fn apply(cluster: &InProcessCluster, via: u64, text: String) -> ApplyResponse {
    let mut client = cluster.client(via).await.expect("node answers");
    client
        .apply(ApplyRequest {
            spec_document: text.into_bytes(),
        })
        .await
        .expect("apply")
        .into_inner()
}

/// Waits until node `id`'s own replica has `name` at `version`.
async fn replicated(cluster: &InProcessCluster, id: u64, name: &str, version: u64) -> ServiceInfo {
    wait_until_async(&format!("node {id} to have {name} v{version}"), T, || async {
        let mut c = cluster.client(id).await?;
        let req = GetServiceRequest {
            name: name.into(),
            stale: true,
        };
        let info = c.get_service(req).await.ok()?.into_inner();
        (info.version == version).then_some(info)
    })
    .await
}

fn follower_of(cluster: &InProcessCluster, leader: u64) -> u64 {
    cluster.ids().into_iter().find(|i| *i != leader).expect("a follower")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_three_nodes_elect_one_leader_and_a_follower_forwards_writes() {
    let cluster = InProcessCluster::start(3);
    let leader = cluster.wait_for_leader(T).await;
    let mut roles = Vec::new();
    for id in cluster.ids() {
        roles.push(cluster.status(id).await.expect("status").role());
    }
    assert_eq!(
        roles.iter().filter(|r| **r == MemberRole::Leader).count(),
        1,
        "{roles:?}"
    );

    let r = apply(&cluster, follower_of(&cluster, leader), spec("web", 0)).await;
    assert_eq!((r.name.as_str(), r.version), ("web", 1));
    for id in cluster.ids() {
        replicated(&cluster, id, "web", 1).await;
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_leader_stop_elects_a_new_leader_and_the_old_one_catches_up() {
    let mut cluster = InProcessCluster::start(3);
    let old = cluster.wait_for_leader(T).await;
    apply(&cluster, old, spec("a", 0)).await;

    cluster.stop(old).await;
    let new = cluster.wait_for_leader(T).await;
    assert_ne!(new, old);
    let r = apply(&cluster, new, spec("a", 1)).await;
    assert_eq!(r.version, 2);
    apply(&cluster, new, spec("b", 0)).await;

    cluster.start_node(old);
    let applied = cluster.status(new).await.expect("leader answers").applied_index;
    cluster.wait_applied(old, applied, T).await;
    assert_eq!(replicated(&cluster, old, "a", 2).await.replicas, 1);
    replicated(&cluster, old, "b", 1).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_a_node_that_missed_a_snapshot_interval_catches_up_through_a_snapshot() {
    let raft = RaftTuning {
        snapshot_interval: 20,
        snapshot_keep: 0,
        ..RaftTuning::default()
    };
    let mut cluster = InProcessCluster::with_raft(3, raft);
    let leader = cluster.wait_for_leader(T).await;
    let lagging = follower_of(&cluster, leader);
    cluster.stop(lagging).await;

    // 30 services of ~64 KiB each: the snapshot the lagging node installs holds MiBs.
    let filler = "x".repeat(64 * 1024);
    for i in 0..30 {
        let text = format!("{}env:\n  FILLER: {filler}\n", spec(&format!("big-{i}"), 0));
        apply(&cluster, leader, text).await;
    }
    let at = wait_until_async("the leader to snapshot and compact", T, || async {
        cluster.status(leader).await.filter(|s| s.snapshot_index >= 10)
    })
    .await;

    cluster.start_node(lagging);
    let caught_up = cluster.wait_applied(lagging, at.applied_index, T).await;
    assert!(
        caught_up.snapshots_installed >= 1,
        "caught up without a snapshot: {caught_up:?}"
    );
    replicated(&cluster, lagging, "big-29", 1).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_a_cut_off_leader_is_replaced_and_rejoins_after_the_heal() {
    let mut cluster = InProcessCluster::distinct_ips(3);
    let old = cluster.wait_for_leader(T).await;
    apply(&cluster, old, spec("a", 0)).await;

    cluster.isolate(old).expect("iptables (root)");
    let others: Vec<u64> = cluster.ids().into_iter().filter(|i| *i != old).collect();
    // The majority side elects a leader of its own and takes writes.
    let new = wait_until_async("a leader on the majority side", T, || async {
        let s = cluster.status(others[0]).await?;
        (s.leader_id != 0 && s.leader_id != old).then_some(s.leader_id)
    })
    .await;
    let r = apply(&cluster, new, spec("a", 2)).await;
    assert_eq!(r.version, 2);

    cluster.heal();
    cluster.wait_for_leader(T).await;
    assert_eq!(replicated(&cluster, old, "a", 2).await.replicas, 2);
    cluster.shutdown().await;
}
