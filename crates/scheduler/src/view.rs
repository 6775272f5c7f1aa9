use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_types::{Node, NodeId, Service, State, Task, TaskId};

/// One immutable view of the cluster, taken at the start of a pass.
#[derive(Clone, Copy)]
pub struct ClusterView<'a> {
    pub services: &'a BTreeMap<String, Service>,
    pub tasks: &'a BTreeMap<TaskId, Task>,
    pub nodes: &'a BTreeMap<NodeId, Node>,
    /// How long the leader has not heard from each node (for `on_disconnect: fence`).
    pub silence: &'a Silence,
}

/// What the leader's clock says of nodes it has not heard from. A task of an
/// `on_disconnect: fence` service on a down node is replaced only once its node must have
/// stopped it itself: `replace_after` of its spec since the leader last heard from it.
#[derive(Debug, Clone, Default)]
pub struct Silence {
    /// Since when (as a duration before now) the leader has not heard from each node; a
    /// node not heard from this term counts from the term's start. A node missing here
    /// counts as heard from just now: its fenced tasks wait.
    pub quiet_for: BTreeMap<NodeId, Duration>,
    /// The `stop_after` of a fence service whose spec sets none (the cluster's default).
    pub default_stop_after: Duration,
}

/// No silence known: every fenced task on a down node waits (until its node is declared
/// dead).
pub static NO_SILENCE: Silence = Silence {
    quiet_for: BTreeMap::new(),
    default_stop_after: Duration::ZERO,
};

impl<'a> ClusterView<'a> {
    pub fn of(state: &'a State) -> Self {
        ClusterView {
            services: &state.services,
            tasks: &state.tasks,
            nodes: &state.nodes,
            silence: &NO_SILENCE,
        }
    }

    /// The same view with `silence` as the leader's clock sees it.
    pub fn with_silence(self, silence: &'a Silence) -> Self {
        ClusterView { silence, ..self }
    }
}
