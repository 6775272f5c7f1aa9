//! Cluster membership as the replicated state records it: removed ids (never reused) and
//! the cluster's epoch. Raft's own voter/learner configuration lives in openraft; this is
//! what must survive it (a removed id stays refused after the Raft config forgets it).

use crate::command::Response;
use crate::error::CommandError;
use crate::model::{DesiredState, StopReason, TaskState};
use crate::state::State;
use crate::{Millis, NodeId};

impl State {
    /// The cluster's incarnation; 1 until the first `--force-new-cluster`.
    pub fn cluster_epoch(&self) -> u64 {
        self.epoch.max(1)
    }

    pub(crate) fn remove_node(&mut self, id: NodeId, at: Millis) -> Response {
        if id == 0 {
            return Response::Error(CommandError::NodeNotFound { id });
        }
        if self.removed.contains(&id) {
            return Response::Error(CommandError::NodeRemoved { id });
        }
        self.forget_node(id, at);
        self.removed.insert(id);
        Response::Node { id }
    }

    /// Drops node `id`'s record; whatever still runs there is lost (the scheduler replaces
    /// it elsewhere).
    fn forget_node(&mut self, id: NodeId, at: Millis) {
        self.nodes.remove(&id);
        for t in self.tasks.values_mut() {
            if t.node == Some(id) && !t.state.is_terminal() {
                t.state = TaskState::Lost;
                t.desired = DesiredState::Shutdown;
                t.stop_reason = Some(StopReason::Removed);
                t.message = format!("node {id} was removed from the cluster");
                t.updated_at = at;
            }
        }
    }

    /// `--force-new-cluster` on node `keep`: every other known node belongs to the old
    /// incarnation and is dropped, and the epoch moves to `epoch`. Their ids are not
    /// recorded as removed: the epoch already refuses their old data dirs, and a wiped one
    /// may `--join` under its old id. Not a command: it runs on the one node that re-forms
    /// the cluster, before Raft starts.
    pub fn reform(&mut self, keep: NodeId, epoch: u64, at: Millis) {
        let others: Vec<NodeId> = self.nodes.keys().copied().filter(|id| *id != keep).collect();
        for id in others {
            self.forget_node(id, at);
        }
        self.epoch = epoch;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::model::{Capacity, NodeRegistration};

    fn reg(id: NodeId) -> Command {
        Command::RegisterNode {
            node: NodeRegistration {
                id,
                address: format!("127.0.0.1:{}", 7000 + id),
                labels: Default::default(),
                capacity: Capacity {
                    cpu_millis: 1000,
                    memory_mb: 1024,
                },
                instance: String::new(),
                publish_addr: String::new(),
                mesh_errors: Default::default(),
            },
            at: 1,
        }
    }

    #[test]
    fn a_removed_id_is_never_accepted_again() {
        let mut s = State::default();
        s.apply(&reg(2));
        assert_eq!(s.apply(&Command::RemoveNode { id: 2, at: 2 }), Response::Node { id: 2 });
        assert!(s.nodes.is_empty());
        assert!(s.removed.contains(&2));
        let before = s.clone();
        assert_eq!(s.apply(&reg(2)), Response::Error(CommandError::NodeRemoved { id: 2 }));
        assert_eq!(
            s.apply(&Command::RemoveNode { id: 2, at: 3 }),
            Response::Error(CommandError::NodeRemoved { id: 2 })
        );
        assert_eq!(s, before, "a refused command changes nothing");
    }

    #[test]
    fn reform_keeps_one_node_and_raises_the_epoch() {
        let mut s = State::default();
        for id in 1..=3 {
            s.apply(&reg(id));
        }
        assert_eq!(s.cluster_epoch(), 1);
        s.reform(1, 2, 9);
        assert_eq!(s.nodes.keys().copied().collect::<Vec<_>>(), vec![1]);
        assert!(s.removed.is_empty());
        assert_eq!(s.cluster_epoch(), 2);
    }
}
