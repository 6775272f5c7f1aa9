use flotilla_types::Task;

use crate::v1::{self, TaskInfo};

impl From<&Task> for TaskInfo {
    fn from(t: &Task) -> Self {
        TaskInfo {
            id: t.id.clone(),
            service: t.service.clone(),
            slot: t.slot,
            spec_version: t.spec_version,
            node_id: t.node.unwrap_or(0),
            desired: v1::DesiredState::from(t.desired).into(),
            state: v1::TaskState::from(t.state).into(),
            container_id: t.container_id.clone().unwrap_or_default(),
            address: t.address.clone().unwrap_or_default(),
            exit_code: t.exit_code,
            message: t.message.clone(),
            attempt: t.attempt,
            stop_reason: t
                .stop_reason
                .map_or(v1::StopReason::Unspecified, v1::StopReason::from)
                .into(),
            created_at_ms: t.created_at,
            updated_at_ms: t.updated_at,
            rebalanced_from: t.rebalanced_from.unwrap_or(0),
        }
    }
}
