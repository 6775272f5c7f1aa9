use std::collections::BTreeMap;

use flotilla_types::{Node, NodeId, Service, State, Task, TaskId};

/// One immutable view of the cluster, taken at the start of a pass.
#[derive(Clone, Copy)]
pub struct ClusterView<'a> {
    pub services: &'a BTreeMap<String, Service>,
    pub tasks: &'a BTreeMap<TaskId, Task>,
    pub nodes: &'a BTreeMap<NodeId, Node>,
}

impl<'a> ClusterView<'a> {
    pub fn of(state: &'a State) -> Self {
        ClusterView {
            services: &state.services,
            tasks: &state.tasks,
            nodes: &state.nodes,
        }
    }
}
