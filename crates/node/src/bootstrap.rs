//! First start of a cluster: the lowest id in `--peers` initializes the membership once a
//! majority of the peers answer and none of them already belongs to a cluster. Every other
//! node (and every restart) just waits to hear from the leader.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flotilla_proto::v1::NodeStatusRequest;
use openraft::error::{InitializeError, RaftError};
use openraft::BasicNode;

use crate::node::Node;

pub async fn run(node: Arc<Node>) {
    let peers = node.config.peers.clone();
    let Some(&lowest) = peers.keys().next() else {
        return;
    };
    if lowest != node.id {
        return;
    }
    let majority = peers.len() / 2 + 1;
    loop {
        match node.raft.is_initialized().await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "raft stopped before bootstrap");
                return;
            }
        }
        let others = peers.iter().filter(|(id, _)| **id != node.id);
        let answers = futures::future::join_all(others.map(|(id, addr)| {
            let node = node.clone();
            async move {
                let mut client = node.cluster_client(addr).ok()?;
                let r = tokio::time::timeout(Duration::from_secs(1), client.node_status(NodeStatusRequest {}))
                    .await
                    .ok()?
                    .ok()?;
                Some((*id, r.into_inner().initialized))
            }
        }))
        .await;
        let reachable: Vec<_> = answers.into_iter().flatten().collect();
        if let Some((id, _)) = reachable.iter().find(|(_, init)| *init) {
            tracing::info!(peer = id, "peer already belongs to a cluster; not initializing");
            return;
        }
        if reachable.len() + 1 >= majority {
            let members: BTreeMap<u64, BasicNode> = peers
                .iter()
                .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                .collect();
            match node.raft.initialize(members).await {
                Ok(()) => {
                    tracing::info!(members = ?peers.keys().collect::<Vec<_>>(), "initialized the cluster");
                    return;
                }
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => return,
                Err(e) => tracing::warn!(error = %e, "initialize failed; retrying"),
            }
        } else {
            tracing::info!(
                reachable = reachable.len() + 1,
                needed = majority,
                "waiting for a majority of peers before initializing"
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
