//! The membership leader loop (started and stopped with leadership by the control
//! supervisor, beside scheduling): every second it gathers a [`MembershipView`], asks
//! [`membership_plan`] what to change and carries the changes out, one at a time. And the
//! watch every node runs: it learns its first epoch and fences itself once removed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_types::NodeStatus;
use openraft::ChangeMembers;

use super::plan::{membership_plan, Change, MembershipView};
use super::{change_retaining, healthy_learner, target_voters, view};
use crate::error::ApiError;
use crate::node::{now_ms, Node};

const ROUND: Duration = Duration::from_secs(1);

/// The membership loop as the supervisor starts it on every new term.
pub fn leader_loop(node: Arc<Node>) -> flotilla_control::LeaderLoop {
    flotilla_control::LeaderLoop::new("membership", move || Box::pin(lead(node.clone())))
}

async fn lead(node: Arc<Node>) {
    let since = Instant::now();
    let mut tick = tokio::time::interval(ROUND);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match round(&node, since.elapsed()).await {
            Ok(()) | Err(ApiError::NotLeader { .. } | ApiError::LostLeadership { .. }) => {}
            Err(e) => tracing::warn!(error = %e, "membership reconciliation failed"),
        }
    }
}

/// One round: skipped while a join or remove holds the lock.
async fn round(node: &Node, leading_for: Duration) -> Result<(), ApiError> {
    let Ok(_guard) = node.membership_changes.try_lock() else {
        return Ok(());
    };
    for change in membership_plan(&gather(node, leading_for)) {
        carry_out(node, change).await?;
    }
    Ok(())
}

/// The view the plan decides on, read from Raft's metrics, the replicated state and this
/// leader's contacts.
fn gather(node: &Node, leading_for: Duration) -> MembershipView {
    let v = view(node);
    let (removed, nodes) = {
        let sm = node.state.read();
        (sm.state.removed.clone(), sm.state.nodes.clone())
    };
    let now = now_ms();
    // Down in the state (marked by liveness) for that long, or silent to this leader's Raft
    // RPCs (a voter that never registered has no record) — the latter counted only once
    // this node has led that long, so contacts from an earlier term do not count.
    let mut silent_for = BTreeMap::new();
    if let Some(timeout) = node.config.dead_voter_timeout {
        for id in v.voters.iter().copied().filter(|id| *id != node.id) {
            let down = nodes
                .get(&id)
                .filter(|n| n.status == NodeStatus::Down)
                .map(|n| Duration::from_millis(now.saturating_sub(n.updated_at)));
            let silent = (leading_for > timeout).then(|| node.contacts.last(id)).flatten();
            if let Some(d) = down.into_iter().chain(silent).max() {
                silent_for.insert(id, d);
            }
        }
    }
    MembershipView {
        leader: node.id,
        healthy_learners: v
            .learners
            .iter()
            .copied()
            .filter(|l| healthy_learner(node, *l))
            .collect(),
        target_voters: target_voters(node.config.voters, v.addrs.len()),
        voters: v.voters,
        learners: v.learners,
        joint: v.joint,
        removed,
        silent_for,
        dead_voter_timeout: node.config.dead_voter_timeout,
    }
}

async fn carry_out(node: &Node, change: Change) -> Result<(), ApiError> {
    match change {
        Change::ReplaceVoters { voters, retain } => {
            if retain {
                tracing::warn!(
                    ?voters,
                    "voter down longer than --dead-voter-timeout: promoting a learner in its place (it stays a learner)"
                );
            } else {
                tracing::info!(?voters, "removing ids recorded as removed from the Raft membership");
            }
            change_retaining(node, ChangeMembers::ReplaceAllVoters(voters), retain).await
        }
        Change::RemoveNodes(ids) => {
            tracing::info!(?ids, "removing learners recorded as removed from the Raft membership");
            change_retaining(node, ChangeMembers::RemoveNodes(ids), false).await
        }
        Change::AddVoters(ids) => {
            tracing::info!(promote = ?ids, "promoting learners");
            change_retaining(node, ChangeMembers::AddVoterIds(ids), false).await
        }
    }
}

/// On every node, every second: adopt the first epoch once a member, and fence this node
/// once the state says it was removed (after it handed over leadership).
pub async fn watch(node: Arc<Node>) {
    let mut tick = tokio::time::interval(ROUND);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut removed_since: Option<Instant> = None;
    loop {
        tick.tick().await;
        if node.epoch.get() == 0 && view(&node).addrs.contains_key(&node.id) {
            // Bootstrapped (or joined) without hearing an epoch: this is the first one.
            node.epoch.adopt(node.state.read().state.cluster_epoch());
        }
        if node.state.read().state.removed.contains(&node.id) && !node.is_leader() {
            let since = *removed_since.get_or_insert_with(Instant::now);
            if left_the_config(&node) || since.elapsed() > Duration::from_secs(10) {
                node.fence().fence(format!(
                    "node {} was removed from the cluster (flotilla node remove); it stops now. \
                     Its id cannot be reused: wipe its data dir and --join with a new id",
                    node.id
                ));
            }
        }
    }
}

/// Whether the config without this node is on its way: a voter waits for it (the joint
/// config still needs its vote).
fn left_the_config(node: &Node) -> bool {
    let newest = node
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .get_joint_config()
        .last()
        .cloned();
    newest.is_none_or(|c| !c.contains(&node.id)) || !view(node).voters.contains(&node.id)
}
