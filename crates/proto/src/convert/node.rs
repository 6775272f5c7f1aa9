use flotilla_types::{Node, State};

use crate::v1::NodeInfo;

impl NodeInfo {
    /// A node as the API shows it, with what its tasks hold.
    pub fn from_state(n: &Node, state: &State) -> Self {
        let (mut cpu, mut mem, mut tasks) = (0u64, 0u64, 0u32);
        for t in state.tasks.values() {
            if t.node == Some(n.id) && t.state.holds_resources() {
                cpu += u64::from(t.cpu_millis);
                mem += u64::from(t.memory_mb);
                tasks += 1;
            }
        }
        NodeInfo {
            id: n.id,
            address: n.address.clone(),
            labels: n.labels.clone().into_iter().collect(),
            cpu_millis: n.capacity.cpu_millis,
            memory_mb: n.capacity.memory_mb,
            availability: crate::v1::NodeAvailability::from(n.availability).into(),
            status: crate::v1::NodeStatus::from(n.status).into(),
            allocated_cpu_millis: cpu,
            allocated_memory_mb: mem,
            tasks,
            registered_at_ms: n.registered_at,
            updated_at_ms: n.updated_at,
            publish_addr: n.publish_addr.clone(),
            mesh_errors: n.mesh_errors.clone().into_iter().collect(),
        }
    }
}
