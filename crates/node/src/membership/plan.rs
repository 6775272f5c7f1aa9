//! What the leader changes in the Raft membership on its own, decided from plain data:
//! removed ids leave the config, a voter dead longer than `--dead-voter-timeout` is
//! replaced by a healthy learner, and healthy learners are promoted while the voters are
//! fewer than the target. Pure: the caller gathers the view (time included) and carries
//! out the changes in order (`leader.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use flotilla_store::NodeId;

/// The membership as the leader sees it.
#[derive(Debug, Clone, Default)]
pub struct MembershipView {
    pub leader: NodeId,
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// A joint config is in progress: change nothing now.
    pub joint: bool,
    /// Ids recorded as removed in the replicated state (never members again).
    pub removed: BTreeSet<NodeId>,
    /// Learners that are ready and caught up, in id order: the ones that may vote.
    pub healthy_learners: Vec<NodeId>,
    /// How long each voter has been down or silent, where the leader knows (a voter
    /// missing from the map is up).
    pub silent_for: BTreeMap<NodeId, Duration>,
    /// `--dead-voter-timeout`, when set.
    pub dead_voter_timeout: Option<Duration>,
    /// Voters the cluster aims for (see [`super::target_voters`]).
    pub target_voters: usize,
}

/// One membership change, carried out as one `change_membership`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The voters become exactly these; `retain` keeps the dropped voters as learners.
    ReplaceVoters { voters: BTreeSet<NodeId>, retain: bool },
    /// These learners leave the config.
    RemoveNodes(BTreeSet<NodeId>),
    /// These learners become voters.
    AddVoters(BTreeSet<NodeId>),
}

/// The changes to make now, in order (at most one kind of repair per round: the next
/// round sees the result of this one).
pub fn membership_plan(v: &MembershipView) -> Vec<Change> {
    if v.joint {
        return Vec::new();
    }
    let members: BTreeSet<NodeId> = v.voters.union(&v.learners).copied().collect();
    let stale: BTreeSet<NodeId> = members.intersection(&v.removed).copied().collect();
    if !stale.is_empty() {
        return remove_stale(v, &stale);
    }
    if let Some(change) = replace_dead_voter(v) {
        return vec![change];
    }
    let missing = v.target_voters.saturating_sub(v.voters.len());
    if missing > 0 && !v.healthy_learners.is_empty() {
        let promote = v.healthy_learners.iter().copied().take(missing).collect();
        return vec![Change::AddVoters(promote)];
    }
    Vec::new()
}

/// Removed ids still in the config: voters are dropped by replacing the voter set (never
/// to an empty one), learners by removal.
fn remove_stale(v: &MembershipView, stale: &BTreeSet<NodeId>) -> Vec<Change> {
    let voters: BTreeSet<NodeId> = v.voters.difference(stale).copied().collect();
    if voters.is_empty() {
        return Vec::new();
    }
    let mut changes = Vec::new();
    if voters != v.voters {
        changes.push(Change::ReplaceVoters { voters, retain: false });
    }
    let learners: BTreeSet<NodeId> = v.learners.intersection(stale).copied().collect();
    if !learners.is_empty() {
        changes.push(Change::RemoveNodes(learners));
    }
    changes
}

/// A voter (not the leader) silent longer than the timeout, swapped for the first healthy
/// learner; the dead voter stays a learner, so it can vote again once promoted back.
fn replace_dead_voter(v: &MembershipView) -> Option<Change> {
    let timeout = v.dead_voter_timeout?;
    let learner = *v.healthy_learners.first()?;
    let dead = v
        .voters
        .iter()
        .copied()
        .find(|id| *id != v.leader && v.silent_for.get(id).is_some_and(|d| *d > timeout))?;
    let mut voters = v.voters.clone();
    voters.remove(&dead);
    voters.insert(learner);
    Some(Change::ReplaceVoters { voters, retain: true })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    fn view(voters: &[NodeId], learners: &[NodeId]) -> MembershipView {
        MembershipView {
            leader: 1,
            voters: set(voters),
            learners: set(learners),
            target_voters: 3,
            ..Default::default()
        }
    }

    #[test]
    fn a_settled_cluster_needs_nothing() {
        assert!(membership_plan(&view(&[1, 2, 3], &[4])).is_empty());
    }

    #[test]
    fn healthy_learners_are_promoted_up_to_the_target() {
        let mut v = view(&[1], &[2, 3, 4]);
        v.healthy_learners = vec![2, 3, 4];
        assert_eq!(membership_plan(&v), vec![Change::AddVoters(set(&[2, 3]))]);
        // An unhealthy learner is not.
        v.healthy_learners = vec![4];
        assert_eq!(membership_plan(&v), vec![Change::AddVoters(set(&[4]))]);
        v.healthy_learners.clear();
        assert!(membership_plan(&v).is_empty());
    }

    #[test]
    fn removed_ids_leave_the_config_voters_first() {
        let mut v = view(&[1, 2, 3], &[4, 5]);
        v.removed = set(&[3, 5, 9]);
        assert_eq!(
            membership_plan(&v),
            vec![
                Change::ReplaceVoters {
                    voters: set(&[1, 2]),
                    retain: false
                },
                Change::RemoveNodes(set(&[5])),
            ]
        );
        // Never down to no voter at all.
        let mut lone = view(&[3], &[]);
        lone.removed = set(&[3]);
        assert!(membership_plan(&lone).is_empty());
    }

    #[test]
    fn a_dead_voter_is_replaced_only_after_the_timeout_and_never_the_leader() {
        let mut v = view(&[1, 2, 3], &[4]);
        v.healthy_learners = vec![4];
        v.silent_for = BTreeMap::from([(3, Duration::from_secs(30))]);
        assert!(membership_plan(&v).is_empty(), "no --dead-voter-timeout: nothing");
        v.dead_voter_timeout = Some(Duration::from_secs(60));
        assert!(membership_plan(&v).is_empty(), "not dead long enough");
        v.dead_voter_timeout = Some(Duration::from_secs(10));
        assert_eq!(
            membership_plan(&v),
            vec![Change::ReplaceVoters {
                voters: set(&[1, 2, 4]),
                retain: true
            }]
        );
        v.silent_for = BTreeMap::from([(1, Duration::from_secs(30))]);
        assert!(membership_plan(&v).is_empty(), "the leader is never replaced");
        v.silent_for = BTreeMap::from([(3, Duration::from_secs(30))]);
        v.healthy_learners.clear();
        assert!(membership_plan(&v).is_empty(), "no healthy learner to take its place");
    }

    #[test]
    fn nothing_changes_during_a_joint_config() {
        let mut v = view(&[1], &[2, 3]);
        v.healthy_learners = vec![2, 3];
        v.joint = true;
        assert!(membership_plan(&v).is_empty());
    }
}
