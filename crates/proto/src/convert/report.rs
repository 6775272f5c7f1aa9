use flotilla_types::{TaskReport, TaskState};

use crate::v1::TaskStatusReport;

impl From<&TaskReport> for TaskStatusReport {
    fn from(r: &TaskReport) -> Self {
        TaskStatusReport {
            task: r.task.clone(),
            state: r.state.as_str().into(),
            container_id: r.container_id.clone().unwrap_or_default(),
            exit_code: r.exit_code,
            message: r.message.clone(),
        }
    }
}

impl TryFrom<&TaskStatusReport> for TaskReport {
    type Error = String;

    fn try_from(r: &TaskStatusReport) -> Result<Self, String> {
        Ok(TaskReport {
            task: r.task.clone(),
            state: TaskState::parse(&r.state).ok_or_else(|| format!("unknown task state {:?}", r.state))?,
            container_id: (!r.container_id.is_empty()).then(|| r.container_id.clone()),
            exit_code: r.exit_code,
            message: r.message.clone(),
        })
    }
}
