//! Wires the executor to this node: it reads the node's own replica and reports to the
//! leader through the agent API.

use std::sync::Arc;

use async_trait::async_trait;
use flotilla_control::Control;
use flotilla_executor::task_loop::{DesiredSource, ReportError, Reporter};
use flotilla_store::SharedState;
use flotilla_types::{NodeId, ServiceSpec, Task, TaskReport};

use crate::cutoff::Cutoff;
use crate::fence::Fence;
use crate::node::Node;

pub struct ReplicaSource {
    pub state: SharedState,
    pub node: NodeId,
    pub fence: Fence,
    /// Turns a fence service's tasks into ones to stop once the node is cut off.
    pub cutoff: Arc<Cutoff>,
}

impl DesiredSource for ReplicaSource {
    fn assignments(&self) -> Vec<(Task, Option<ServiceSpec>)> {
        let mut assignments = self.replica();
        self.cutoff.apply(&mut assignments);
        assignments
    }

    fn act_by(&self) -> Option<std::time::Instant> {
        self.cutoff.deadline(&self.replica())
    }
}

impl ReplicaSource {
    /// The tasks the replica places on this node, each with the spec of its version.
    fn replica(&self) -> Vec<(Task, Option<ServiceSpec>)> {
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

    /// Wakes the executor (bumps `wake`) on every apply to the replica, and as soon as a
    /// fence service's task here is due to be stopped for the node being cut off (no
    /// apply arrives then). Checked every [`FENCE_CHECK`]; the replica is read only once
    /// the node has been cut off for the shortest `stop_after` there is.
    pub async fn wake_loop(self: Arc<Self>, wake: tokio::sync::watch::Sender<u64>) {
        let mut applied = self.state.subscribe();
        loop {
            tokio::select! {
                changed = applied.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep(FENCE_CHECK) => {
                    if self.cutoff.silent_for() < flotilla_types::spec::MIN_STOP_AFTER
                        || !self.cutoff.due(&self.replica())
                    {
                        continue;
                    }
                }
            }
            wake.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// How often a node looks whether a fence service's task is due to be stopped.
pub const FENCE_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

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
