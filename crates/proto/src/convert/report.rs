use flotilla_types::{StopReason, TaskReport, TaskState};

use crate::v1::TaskStatusReport;

impl From<&TaskReport> for TaskStatusReport {
    fn from(r: &TaskReport) -> Self {
        TaskStatusReport {
            task: r.task.clone(),
            state: crate::v1::TaskState::from(r.state).into(),
            container_id: r.container_id.clone().unwrap_or_default(),
            address: r.address.clone().unwrap_or_default(),
            exit_code: r.exit_code,
            message: r.message.clone(),
            stop_reason: r.stop_reason.map(|s| crate::v1::StopReason::from(s).into()),
        }
    }
}

impl TryFrom<&TaskStatusReport> for TaskReport {
    type Error = String;

    fn try_from(r: &TaskStatusReport) -> Result<Self, String> {
        Ok(TaskReport {
            task: r.task.clone(),
            state: TaskState::try_from(r.state()).map_err(|e| e.to_string())?,
            container_id: (!r.container_id.is_empty()).then(|| r.container_id.clone()),
            address: (!r.address.is_empty()).then(|| r.address.clone()),
            exit_code: r.exit_code,
            message: r.message.clone(),
            stop_reason: match r.stop_reason {
                None => None,
                Some(s) => Some(
                    StopReason::try_from(crate::v1::StopReason::try_from(s).map_err(|e| e.to_string())?)
                        .map_err(|e| e.to_string())?,
                ),
            },
        })
    }
}
