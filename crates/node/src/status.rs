//! What `cluster status` adds from the leader's view: how far each member's log matches
//! the leader's, when the leader last heard from it, and whether the cluster can lose a
//! node right now.

use flotilla_proto::v1::{MemberStatus, Replication};
use flotilla_store::NodeId;

type Metrics = openraft::RaftMetrics<NodeId, openraft::BasicNode>;

/// The leader's replication progress per member (empty on other nodes).
pub fn replication(m: &Metrics, contacts: &crate::network::Contacts) -> Vec<Replication> {
    let Some(r) = m.replication.as_ref() else {
        return Vec::new();
    };
    r.iter()
        .map(|(id, matched)| Replication {
            id: *id,
            match_index: matched.map_or(0, |l| l.index),
            matched: matched.is_some(),
            last_contact_ms: if *id == m.id {
                0
            } else {
                contacts.last(*id).map_or(0, |d| d.as_millis().max(1) as u64)
            },
        })
        .collect()
}

/// Fills every member's match index, lag and last contact from the leader's status, and
/// returns (voters, reachable voters, voters the cluster can lose now).
pub fn annotate(members: &mut [MemberStatus], leader_id: NodeId) -> (u32, u32, u32) {
    let leader = members.iter().find(|m| m.id == leader_id && m.reachable).cloned();
    if let Some(leader) = &leader {
        for m in members.iter_mut() {
            if m.id == leader.id {
                m.match_index = leader.last_log_index;
                continue;
            }
            if let Some(r) = leader.replication.iter().find(|r| r.id == m.id) {
                m.match_index = r.match_index;
                m.lag = leader.last_log_index.saturating_sub(r.match_index);
                m.last_contact_ms = r.last_contact_ms;
            }
        }
    }
    let voters = members.iter().filter(|m| m.voter).count() as u32;
    let reachable = members.iter().filter(|m| m.voter && m.reachable).count() as u32;
    let majority = voters / 2 + 1;
    (voters, reachable, reachable.saturating_sub(majority))
}
