use flotilla_types::{DesiredState, Task};

use crate::v1::TaskInfo;

impl From<&Task> for TaskInfo {
    fn from(t: &Task) -> Self {
        TaskInfo {
            id: t.id.clone(),
            service: t.service.clone(),
            slot: t.slot,
            spec_version: t.spec_version,
            node_id: t.node.unwrap_or(0),
            desired: match t.desired {
                DesiredState::Running => "running",
                DesiredState::Shutdown => "shutdown",
            }
            .into(),
            state: t.state.as_str().into(),
            container_id: t.container_id.clone().unwrap_or_default(),
            exit_code: t.exit_code,
            message: t.message.clone(),
            attempt: t.attempt,
            stop_reason: t.stop_reason.map(|r| r.as_str().to_string()).unwrap_or_default(),
            created_at_ms: t.created_at,
            updated_at_ms: t.updated_at,
        }
    }
}
