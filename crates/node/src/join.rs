//! The joining side of `flotilla agent --join ADDR[,ADDR…]`: once this node serves its
//! gRPC, ask the members in turn to add it; the leader adds it as a learner, waits until it
//! caught up and promotes it when the cluster wants more voters. A refusal (id in use,
//! removed id, older epoch) stops the agent with the leader's message.

use std::sync::Arc;
use std::time::Duration;

use flotilla_proto::v1::JoinRequest;

use crate::node::Node;

/// How long one `Join` may take: the leader answers once the new node caught up.
const JOIN_TIMEOUT: Duration = Duration::from_secs(120);

pub async fn run(node: Arc<Node>) {
    let addrs = node.config.join.clone();
    if addrs.is_empty() {
        return;
    }
    let mut attempt: u32 = 0;
    loop {
        // Asked again on every attempt: a timed-out join may have made it a learner.
        let fresh = match node.raft.is_initialized().await {
            Ok(init) => !init,
            Err(e) => {
                tracing::error!(error = %e, "raft stopped before joining");
                return;
            }
        };
        let req = JoinRequest {
            id: node.id,
            address: node.config.advertised(),
            fresh,
            epoch: node.epoch.get(),
        };
        for addr in &addrs {
            let Ok(mut client) = node.cluster_client(addr) else {
                tracing::warn!(%addr, "invalid --join address");
                continue;
            };
            match tokio::time::timeout(JOIN_TIMEOUT, client.join(req.clone())).await {
                Ok(Ok(r)) => {
                    let r = r.into_inner();
                    node.epoch.adopt(r.epoch);
                    let role = if r.voter { "voter" } else { "learner" };
                    if r.already_member {
                        tracing::info!(leader = r.leader_id, role, "already a member of the cluster");
                    } else {
                        tracing::info!(leader = r.leader_id, role, epoch = r.epoch, "joined the cluster");
                    }
                    return;
                }
                Ok(Err(s))
                    if matches!(
                        s.code(),
                        tonic::Code::AlreadyExists | tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument
                    ) =>
                {
                    node.fence()
                        .fence(format!("cannot join the cluster through {addr}: {}", s.message()));
                    return;
                }
                Ok(Err(s)) => tracing::warn!(%addr, error = %s.message(), "join attempt failed; retrying"),
                Err(_) => tracing::warn!(%addr, "join attempt timed out; retrying"),
            }
        }
        attempt = attempt.saturating_add(1);
        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt.min(6)))).await;
    }
}
