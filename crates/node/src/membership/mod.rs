//! Membership changes: join, remove, promote, replace a dead voter. All of them run on the
//! leader, one at a time (openraft leaves a joint config behind when two overlap), and the
//! replicated state records what must outlive a Raft config: removed ids, never reused.
//! What the leader changes on its own is decided in `plan.rs` and carried out by the
//! leader loop in `leader.rs`.

mod leader;
mod plan;

pub use leader::{leader_loop, watch};

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use flotilla_proto::v1::{JoinRequest, JoinResponse, RemoveNodeResponse};
use flotilla_store::NodeId;
use flotilla_types::{Availability, Command, CommandError, NodeStatus, Response};
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};

use crate::error::ApiError;
use crate::node::{now_ms, Node};

/// How long `node remove` waits for a live node's tasks to move before removing it anyway.
const DRAIN_DEADLINE: Duration = Duration::from_secs(60);

/// How long one membership change may take before the caller is told (the change itself
/// may still complete): a joiner that dies while catching up must not hold the lock forever.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// A learner is promoted only when its log is at most this far behind the leader's.
const CAUGHT_UP: u64 = 100;

/// Voters the cluster aims for: `--voters`, else 3 for clusters of up to 4 nodes and 5 above;
/// never more than there are members.
pub fn target_voters(configured: Option<usize>, members: usize) -> usize {
    let target = configured.unwrap_or(if members <= 4 { 3 } else { 5 });
    target.min(members)
}

/// The membership as this node knows it: (voters, learners, address of each).
struct View {
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
    addrs: std::collections::BTreeMap<NodeId, String>,
    joint: bool,
}

fn view(node: &Node) -> View {
    let m = node.raft.metrics().borrow().membership_config.clone();
    let membership = m.membership();
    View {
        voters: membership.voter_ids().collect(),
        learners: membership.learner_ids().collect(),
        addrs: membership.nodes().map(|(id, n)| (*id, n.addr.clone())).collect(),
        joint: membership.get_joint_config().len() > 1,
    }
}

fn raft_error(node: &Node, e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> ApiError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => ApiError::LostLeadership { node: node.id },
        // Another change still committing: worth retrying, not a refusal.
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e @ ChangeMembershipError::InProgress(_))) => {
            ApiError::Unavailable(format!("membership change refused: {e}; try again"))
        }
        // Raft's own refusal (e.g. a learner that left meanwhile): aborted, not a verdict on
        // the joining node, which retries.
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            ApiError::Aborted(format!("membership change refused: {e}"))
        }
        e => ApiError::Internal(format!("membership change failed: {e}")),
    }
}

fn not_leader(node: &Node) -> ApiError {
    ApiError::NotLeader {
        node: node.id,
        leader: node.raft.metrics().borrow().current_leader,
    }
}

/// Whether learner `id` may become a voter: registered and ready, and its log close to ours.
/// Whether a member is ready and replicated up to date by this leader (always true of the
/// leader itself).
fn caught_up(node: &Node, id: NodeId) -> bool {
    id == node.id || healthy_learner(node, id)
}

fn healthy_learner(node: &Node, id: NodeId) -> bool {
    let ready = node
        .state
        .read()
        .state
        .nodes
        .get(&id)
        .is_some_and(|n| n.status == NodeStatus::Ready);
    let m = node.raft.metrics().borrow().clone();
    let last = m.last_log_index.unwrap_or(0);
    let matched = m
        .replication
        .as_ref()
        .and_then(|r| r.get(&id).cloned().flatten())
        .map_or(0, |l| l.index);
    ready && matched + CAUGHT_UP >= last
}

async fn change(node: &Node, changes: ChangeMembers<NodeId, BasicNode>) -> Result<(), ApiError> {
    change_retaining(node, changes, false).await
}

/// `change_membership` with a deadline; `retain` keeps removed voters as learners.
async fn change_retaining(
    node: &Node,
    changes: ChangeMembers<NodeId, BasicNode>,
    retain: bool,
) -> Result<(), ApiError> {
    match tokio::time::timeout(CHANGE_TIMEOUT, node.raft.change_membership(changes, retain)).await {
        Ok(r) => r.map(drop).map_err(|e| raft_error(node, e)),
        Err(_) => Err(timed_out()),
    }
}

fn timed_out() -> ApiError {
    ApiError::Timeout(format!(
        "the membership change did not commit within {CHANGE_TIMEOUT:?}; see `flotilla cluster status`"
    ))
}

/// Leader side of `Join`.
pub async fn join(node: &Node, req: &JoinRequest) -> Result<JoinResponse, ApiError> {
    if req.id == 0 {
        return Err(ApiError::Invalid("node ids start at 1".into()));
    }
    if req.address.is_empty() {
        return Err(ApiError::Invalid("a joining node must give its address".into()));
    }
    let _guard = node.membership_changes.lock().await;
    if !node.is_leader() {
        return Err(not_leader(node));
    }
    // The leader's replica is current for what matters here once it leads: removals are
    // written by this same task, under this lock.
    node.read_barrier().await?;
    let epoch = node.epoch.get().max(node.state.read().state.cluster_epoch());
    if node.state.read().state.removed.contains(&req.id) {
        return Err(ApiError::Refused(CommandError::NodeRemoved { id: req.id }.to_string()));
    }
    let v = view(node);
    // A member at the same address asking again: a restart, or a retry after a join that
    // timed out. A fresh data dir is only accepted for a learner (it holds no vote).
    let already = match v.addrs.get(&req.id) {
        Some(addr) if *addr == req.address && (!req.fresh || !v.voters.contains(&req.id)) => true,
        Some(addr) => {
            return Err(ApiError::AlreadyExists(format!(
                "node id {} is already a member of this cluster (at {addr})",
                req.id
            )))
        }
        None => false,
    };
    if !req.fresh && req.epoch != 0 && req.epoch < epoch {
        return Err(ApiError::Refused(format!(
            "node {} belongs to epoch {} of this cluster; the cluster was re-formed (epoch {epoch}) by \
             --force-new-cluster; wipe its data dir and --join",
            req.id, req.epoch
        )));
    }
    if !req.fresh && !already {
        return Err(ApiError::Refused(format!(
            "node {}'s data dir already holds Raft state, but it is not a member of this cluster; \
             wipe its data dir to join",
            req.id
        )));
    }
    if let Some((other, _)) = v.addrs.iter().find(|(id, a)| **a == req.address && **id != req.id) {
        return Err(ApiError::AlreadyExists(format!(
            "address {} is already used by member {other}",
            req.address
        )));
    }
    if !already {
        tracing::info!(id = req.id, addr = %req.address, "adding a learner (waits until it caught up)");
        let add = node.raft.add_learner(
            req.id,
            BasicNode {
                addr: req.address.clone(),
            },
            true,
        );
        match tokio::time::timeout(CHANGE_TIMEOUT, add).await {
            Ok(r) => r.map_err(|e| raft_error(node, e))?,
            // It is a learner now; the leader loop promotes it once it caught up.
            Err(_) => {
                return Err(ApiError::Timeout(format!(
                    "node {} was added as a learner but did not catch up within {CHANGE_TIMEOUT:?}; \
                     it is promoted once it does",
                    req.id
                )))
            }
        };
    }
    let v = view(node);
    let mut voter = v.voters.contains(&req.id);
    let target = target_voters(node.config.voters, v.addrs.len());
    if !voter && v.voters.len() < target {
        tracing::info!(
            id = req.id,
            voters = v.voters.len(),
            target,
            "promoting the new node to voter"
        );
        change(node, ChangeMembers::AddVoterIds(BTreeSet::from([req.id]))).await?;
        voter = true;
    }
    Ok(JoinResponse {
        leader_id: node.id,
        voter,
        epoch,
        already_member: already,
    })
}

fn live_tasks_on(node: &Node, id: NodeId) -> usize {
    node.state
        .read()
        .state
        .tasks
        .values()
        .filter(|t| t.node == Some(id) && !t.state.is_terminal())
        .count()
}

/// Leader side of `node remove ID`.
pub async fn remove(node: &Node, id: NodeId) -> Result<RemoveNodeResponse, ApiError> {
    let _guard = node.membership_changes.lock().await;
    if !node.is_leader() {
        return Err(not_leader(node));
    }
    node.read_barrier().await?;
    let removal = removal(node, id)?;
    let drained = if removal.alive { drain(node, id).await? } else { 0 };
    // Recorded first: from here on the id is refused everywhere, whatever happens next.
    match node.write(Command::RemoveNode { id, at: now_ms() }).await? {
        (Response::Node { .. }, _) => {}
        (Response::Error(e), _) => return Err(ApiError::Refused(e.to_string())),
        (other, _) => return Err(ApiError::Internal(format!("unexpected response {other:?}"))),
    }
    match &removal.new_voters {
        Some(voters) => {
            tracing::info!(node = id, ?voters, promoted = ?removal.promoted, "removing a voter");
            change(node, ChangeMembers::ReplaceAllVoters(voters.clone())).await?;
        }
        None if removal.member => {
            tracing::info!(node = id, "removing a learner");
            change(node, ChangeMembers::RemoveNodes(BTreeSet::from([id]))).await?;
        }
        None => {}
    }
    Ok(RemoveNodeResponse {
        id,
        was_voter: removal.new_voters.is_some(),
        drained_tasks: drained,
        promoted: removal.promoted,
    })
}

/// What removing a node takes, once it is known to be allowed.
struct Removal {
    /// In the Raft config (a node may be known only from the state).
    member: bool,
    /// Registered and ready: its tasks are moved first.
    alive: bool,
    /// For a voter: the voters after the change.
    new_voters: Option<BTreeSet<NodeId>>,
    /// Learners promoted to keep the voters at the target.
    promoted: Vec<NodeId>,
}

/// Checks that `id` may be removed now and works out the voters after it.
fn removal(node: &Node, id: NodeId) -> Result<Removal, ApiError> {
    if node.state.read().state.removed.contains(&id) {
        return Err(ApiError::Refused(format!("node {id} was already removed")));
    }
    let v = view(node);
    let known = node.state.read().state.nodes.get(&id).cloned();
    if !v.addrs.contains_key(&id) && known.is_none() {
        return Err(ApiError::NotFound(format!(
            "node {id} is not a member of this cluster (see `flotilla cluster status`)"
        )));
    }
    if v.joint {
        return Err(ApiError::Unavailable(
            "a membership change is in progress; try again".into(),
        ));
    }
    let mut removal = Removal {
        member: v.addrs.contains_key(&id),
        alive: known.as_ref().is_some_and(|n| n.status == NodeStatus::Ready),
        new_voters: None,
        promoted: Vec::new(),
    };
    if !v.voters.contains(&id) {
        return Ok(removal);
    }
    let mut new_voters: BTreeSet<NodeId> = v.voters.iter().copied().filter(|v| *v != id).collect();
    if new_voters.is_empty() {
        return Err(ApiError::Refused(format!(
            "node {id} is the only voter; a cluster cannot remove its last voter"
        )));
    }
    // The voters after the change: the remaining ones plus learners promoted to reach the
    // target. The joint config needs a majority of the old and of the new voters, so both
    // must be up now, or the cluster would be left without a quorum.
    let target = target_voters(node.config.voters, v.addrs.len() - 1);
    for l in v.learners.iter().copied() {
        if new_voters.len() >= target {
            break;
        }
        if healthy_learner(node, l) {
            new_voters.insert(l);
            removal.promoted.push(l);
        }
    }
    for (set, what) in [(&v.voters, "current"), (&new_voters, "remaining")] {
        let up = set.iter().filter(|m| caught_up(node, **m)).count();
        let majority = set.len() / 2 + 1;
        if up < majority {
            return Err(ApiError::Refused(format!(
                "removing node {id} now would leave the cluster without a quorum: {up} of the {} {what} \
                 voters are up and caught up, a majority ({majority}) is needed. Bring the missing \
                 voters back or --join a new node first",
                set.len()
            )));
        }
    }
    removal.new_voters = Some(new_voters);
    Ok(removal)
}

/// Moves a live node's tasks away before it is removed, so nothing stops before its
/// replacement runs; waits up to [`DRAIN_DEADLINE`]. Returns how many it had.
async fn drain(node: &Node, id: NodeId) -> Result<u32, ApiError> {
    let drained = live_tasks_on(node, id) as u32;
    if drained == 0 {
        return Ok(0);
    }
    tracing::info!(node = id, tasks = drained, "draining before removal");
    let drain = Command::SetAvailability {
        id,
        availability: Availability::Drain,
        at: now_ms(),
    };
    match node.write(drain).await? {
        (Response::Node { .. }, _) => {}
        (other, _) => return Err(ApiError::Internal(format!("drain failed: {other:?}"))),
    }
    let deadline = Instant::now() + DRAIN_DEADLINE;
    let mut applied = node.state.subscribe();
    while live_tasks_on(node, id) > 0 && Instant::now() < deadline {
        let _ = tokio::time::timeout(Duration::from_millis(500), applied.changed()).await;
    }
    let left = live_tasks_on(node, id);
    if left > 0 {
        tracing::warn!(
            node = id,
            tasks = left,
            "drain deadline passed; removing anyway (they are replaced)"
        );
    }
    Ok(drained)
}

/// Refuses a heartbeat from a removed node or one of an older epoch: it must not register
/// again, or tasks would be placed on it.
/// Why node `id`, answering with data dir `instance`, may not take part: the cluster knows
/// it by `recorded`.
pub fn foreign_instance(id: NodeId, recorded: &str, instance: &str) -> String {
    format!(
        "node {id}'s data dir is not the one this cluster knows (instance {instance}, the cluster recorded \
         {recorded}): it was wiped or replaced, and its Raft log and vote are gone, so its votes are not \
         counted. Remove it (flotilla node remove {id}) and start it again with --join and a new id"
    )
}

pub fn admit_heartbeat(node: &Node, id: NodeId, epoch: u64, instance: &str) -> Result<(), ApiError> {
    let recorded = node
        .state
        .read()
        .state
        .nodes
        .get(&id)
        .map(|n| n.instance.clone())
        .unwrap_or_default();
    if !recorded.is_empty() && !instance.is_empty() && recorded != instance {
        return Err(ApiError::Fenced(foreign_instance(id, &recorded, instance)));
    }
    if node.state.read().state.removed.contains(&id) {
        return Err(ApiError::Fenced(format!(
            "node {id} was removed from this cluster and cannot take part again; wipe its data dir \
             and --join it with a new id"
        )));
    }
    let local = node.epoch.get();
    if epoch != 0 && local != 0 && epoch < local {
        return Err(ApiError::Fenced(format!(
            "node {id} belongs to epoch {epoch} of this cluster; the cluster was re-formed (epoch {local}) \
             by --force-new-cluster; wipe its data dir and --join"
        )));
    }
    Ok(())
}
