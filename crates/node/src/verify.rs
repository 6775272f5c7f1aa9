//! `cluster verify`: every member's state digest at one applied index.

use std::time::Duration;

use flotilla_proto::v1::{MemberDigest, NodeStatusRequest, StateDigestRequest, StateDigestResponse, VerifyResponse};
use tonic::Status;

use crate::error::ApiError;
use crate::node::Node;

/// How long a member may take to reach the index.
const DIGEST_WAIT: Duration = Duration::from_secs(3);
/// Tries when writes keep moving the applied index.
const ATTEMPTS: usize = 10;

/// How far past this node's last log entry a digest may be asked for: a waiter is kept
/// until the index is applied, so an index far in the future is refused instead.
const DIGEST_AHEAD: u64 = 10_000;

/// This node's digest exactly at `index`.
pub async fn local(node: &Node, index: u64) -> Result<StateDigestResponse, ApiError> {
    let last = node.raft.metrics().borrow().last_log_index.unwrap_or(0);
    if index > last.saturating_add(DIGEST_AHEAD) {
        return Err(ApiError::OutOfRange(format!(
            "index {index} is far past node {}'s last log entry {last}",
            node.id
        )));
    }
    match tokio::time::timeout(DIGEST_WAIT, node.state.digest_at(index)).await {
        Ok(Ok(digest)) => Ok(StateDigestResponse {
            node_id: node.id,
            index,
            digest,
        }),
        Ok(Err(e)) => Err(ApiError::Refused(e.to_string())),
        Err(_) => Err(ApiError::Timeout(format!(
            "node {} did not reach index {index} within {DIGEST_WAIT:?}",
            node.id
        ))),
    }
}

async fn member_digest(node: &Node, id: u64, addr: &str, index: u64) -> Result<String, Status> {
    if id == node.id {
        return local(node, index).await.map(|r| r.digest).map_err(Status::from);
    }
    let mut client = node.cluster_client(addr)?;
    let r = tokio::time::timeout(
        DIGEST_WAIT + Duration::from_secs(1),
        client.state_digest(StateDigestRequest { index }),
    )
    .await
    .map_err(|_| Status::deadline_exceeded(format!("node {id} did not answer")))??;
    Ok(r.into_inner().digest)
}

async fn applied(node: &Node, id: u64, addr: &str) -> Option<u64> {
    if id == node.id {
        return Some(node.local_status().applied_index);
    }
    let mut client = node.cluster_client(addr).ok()?;
    let r = tokio::time::timeout(Duration::from_secs(1), client.node_status(NodeStatusRequest {}))
        .await
        .ok()?
        .ok()?;
    Some(r.into_inner().applied_index)
}

pub async fn verify(node: &Node) -> Result<VerifyResponse, ApiError> {
    let members: Vec<(u64, String)> = {
        let m = node.raft.metrics().borrow().membership_config.clone();
        m.membership().nodes().map(|(id, n)| (*id, n.addr.clone())).collect()
    };
    let mut last = None;
    for _ in 0..ATTEMPTS {
        // The newest applied index among the members that answer: the others catch up to it.
        let mut target = 0;
        for (id, addr) in &members {
            target = target.max(applied(node, *id, addr).await.unwrap_or(0));
        }
        let answers = futures::future::join_all(
            members
                .iter()
                .map(|(id, addr)| async move { (*id, addr.clone(), member_digest(node, *id, addr, target).await) }),
        )
        .await;
        let passed = answers
            .iter()
            .any(|(_, _, r)| matches!(r, Err(s) if s.code() == tonic::Code::FailedPrecondition));
        let members: Vec<MemberDigest> = answers
            .into_iter()
            .map(|(id, address, r)| match r {
                Ok(digest) => MemberDigest {
                    id,
                    address,
                    reachable: true,
                    digest,
                    error: String::new(),
                },
                Err(s) => MemberDigest {
                    id,
                    address,
                    reachable: false,
                    digest: String::new(),
                    error: s.message().to_string(),
                },
            })
            .collect();
        let first = members.first().map(|m| m.digest.clone()).unwrap_or_default();
        let agree = !members.is_empty() && members.iter().all(|m| m.reachable && m.digest == first);
        let response = VerifyResponse {
            index: target,
            agree,
            members,
        };
        if agree || !passed {
            return Ok(response);
        }
        // A member moved past the index while we asked: writes are flowing; try again.
        last = Some(response);
    }
    Ok(last.expect("at least one attempt"))
}
