//! Wires the executor to this node: it reads the node's own replica and reports to the
//! leader through the agent API.

use std::sync::Arc;

use async_trait::async_trait;
use flotilla_control::Control;
use flotilla_executor::task_loop::{DesiredSource, ReportError, Reporter};
use flotilla_store::SharedState;
use flotilla_types::{NodeId, ServiceSpec, Task, TaskReport};

use crate::fence::Fence;
use crate::node::Node;

pub struct ReplicaSource {
    pub state: SharedState,
    pub node: NodeId,
    pub fence: Fence,
}

impl DesiredSource for ReplicaSource {
    fn assignments(&self) -> Vec<(Task, Option<ServiceSpec>)> {
        // A fenced node (removed, or of an older epoch) runs nothing: its replica is stale.
        if self.fence.is_fenced() {
            return Vec::new();
        }
        let sm = self.state.read();
        sm.state
            .tasks
            .values()
            .filter(|t| t.node == Some(self.node))
            .map(|t| {
                let spec = sm
                    .state
                    .services
                    .get(&t.service)
                    .map(|s| s.spec_at(t.spec_version).clone());
                (t.clone(), spec)
            })
            .collect()
    }
}

pub struct LeaderReporter {
    pub node: Arc<Node>,
    pub control: Arc<Control>,
}

#[async_trait]
impl Reporter for LeaderReporter {
    async fn report(&self, reports: Vec<TaskReport>) -> Result<(), ReportError> {
        crate::agent_service::send_reports(&self.node, &self.control, reports).await
    }
}
