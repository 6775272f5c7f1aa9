//! `get tasks`, `describe service`, `scale`.

use flotilla_proto::v1::{
    DesiredState, GetServiceRequest, ListTasksRequest, ScaleServiceRequest, ServiceInfo, TaskInfo, TaskState,
};
use serde::Serialize;

use crate::args::Format;
use crate::client::Client;
use crate::error::CliError;
use crate::output::{age, ids, now_ms, print, render, table};

#[derive(Serialize)]
pub struct TaskView {
    id: String,
    service: String,
    slot: u32,
    node: Option<u64>,
    desired: String,
    state: String,
    spec_version: u64,
    attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    container_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    stop_reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
    created_at_ms: u64,
    updated_at_ms: u64,
}

impl From<&TaskInfo> for TaskView {
    fn from(t: &TaskInfo) -> Self {
        TaskView {
            id: t.id.clone(),
            service: t.service.clone(),
            slot: t.slot,
            node: (t.node_id != 0).then_some(t.node_id),
            desired: t.desired().word().into(),
            state: t.state().word().into(),
            spec_version: t.spec_version,
            attempt: t.attempt,
            exit_code: t.exit_code,
            container_id: t.container_id.clone(),
            stop_reason: t.stop_reason().word().into(),
            message: t.message.clone(),
            created_at_ms: t.created_at_ms,
            updated_at_ms: t.updated_at_ms,
        }
    }
}

/// Current tasks first (by slot), then finished ones, newest first.
fn ordered(mut tasks: Vec<TaskInfo>) -> Vec<TaskInfo> {
    tasks.sort_by(|a, b| {
        let live = |t: &TaskInfo| t.desired() != DesiredState::Running;
        (live(a), &a.service, a.slot, std::cmp::Reverse(a.created_at_ms)).cmp(&(
            live(b),
            &b.service,
            b.slot,
            std::cmp::Reverse(b.created_at_ms),
        ))
    });
    tasks
}

fn task_rows(tasks: &[TaskInfo], with_service: bool, wide: bool) -> String {
    let now = now_ms();
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let mut row = vec![t.id.clone()];
            if with_service {
                row.push(t.service.clone());
            }
            let state = match t.exit_code {
                Some(code) if matches!(t.state(), TaskState::Exited | TaskState::Failed) => {
                    format!("{} ({code})", t.state().word())
                }
                _ => t.state().word().into(),
            };
            let why = if !t.message.is_empty() {
                t.message.clone()
            } else {
                t.stop_reason().word().into()
            };
            row.extend([
                t.slot.to_string(),
                if t.node_id == 0 {
                    "-".into()
                } else {
                    t.node_id.to_string()
                },
                t.desired().word().into(),
                state,
                age(t.updated_at_ms, now),
                why,
            ]);
            if wide {
                row.push(t.attempt.to_string());
                row.push(t.spec_version.to_string());
                row.push(t.container_id.chars().take(12).collect());
            }
            row
        })
        .collect();
    let mut header = vec!["ID"];
    if with_service {
        header.push("SERVICE");
    }
    header.extend(["SLOT", "NODE", "DESIRED", "STATE", "SINCE", "MESSAGE"]);
    if wide {
        header.extend(["ATTEMPT", "VERSION", "CONTAINER"]);
    }
    table(&header, &rows)
}

pub async fn get_tasks(
    client: &Client,
    out: Format,
    quiet: bool,
    service: Option<String>,
    stale: bool,
) -> Result<String, CliError> {
    let r = client
        .send(ListTasksRequest {
            service: service.unwrap_or_default(),
            stale,
        })
        .await?;
    let tasks = ordered(r.tasks);
    if quiet {
        return Ok(ids(tasks.iter().map(|t| t.id.as_str())));
    }
    let views: Vec<TaskView> = tasks.iter().map(TaskView::from).collect();
    render(out, &views, || {
        if tasks.is_empty() {
            "No tasks.\n".into()
        } else {
            task_rows(&tasks, true, out == Format::Wide)
        }
    })
}

pub async fn describe_task(client: &Client, out: Format, id: &str, stale: bool) -> Result<(), CliError> {
    let tasks = client
        .send(ListTasksRequest {
            service: String::new(),
            stale,
        })
        .await?
        .tasks;
    let t = tasks
        .iter()
        .find(|t| t.id == id)
        .ok_or_else(|| CliError::NotFound(format!("task {id:?} not found (see `flotilla get tasks`)")))?;
    let v = TaskView::from(t);
    print(out, &v, || {
        let now = now_ms();
        let mut text = format!(
            "ID:          {}\nService:     {} (slot {}, version {})\nNode:        {}\nDesired:     {}\nState:       {} (since {} ago)\nAttempt:     {}\n",
            t.id,
            t.service,
            t.slot,
            t.spec_version,
            if t.node_id == 0 { "-".to_string() } else { t.node_id.to_string() },
            v.desired,
            v.state,
            age(t.updated_at_ms, now),
            t.attempt,
        );
        if !t.container_id.is_empty() {
            text.push_str(&format!("Container:   {}\n", t.container_id));
        }
        if let Some(code) = t.exit_code {
            text.push_str(&format!("Exit code:   {code}\n"));
        }
        if !v.stop_reason.is_empty() {
            text.push_str(&format!("Stopped:     {}\n", v.stop_reason));
        }
        if !t.message.is_empty() {
            let label = if t.state() == TaskState::Pending {
                "Waiting:"
            } else {
                "Message:"
            };
            text.push_str(&format!("{label:<13}{}\n", t.message));
        }
        text.push_str(&format!("Created:     {} ago\n", age(t.created_at_ms, now)));
        text
    })
}

#[derive(Serialize)]
struct Described {
    service: super::ServiceView,
    tasks: Vec<TaskView>,
}

/// A service and its tasks, as two reads.
pub async fn service_and_tasks(
    client: &Client,
    name: &str,
    stale: bool,
) -> Result<(ServiceInfo, Vec<TaskInfo>), CliError> {
    let svc = client
        .send(GetServiceRequest {
            name: name.to_string(),
            stale,
        })
        .await?;
    let tasks = client
        .send(ListTasksRequest {
            service: name.to_string(),
            stale,
        })
        .await?
        .tasks;
    Ok((svc, tasks))
}

pub async fn describe_service(client: &Client, out: Format, name: &str, stale: bool) -> Result<(), CliError> {
    let (svc, tasks) = service_and_tasks(client, name, stale).await?;
    let rollout = super::rollout::status(client, name, stale).await?;
    let tasks = ordered(tasks);
    let described = Described {
        service: super::view(&svc)?,
        tasks: tasks.iter().map(TaskView::from).collect(),
    };
    print(out, &described, || {
        let current: Vec<&TaskInfo> = tasks.iter().filter(|t| t.desired() == DesiredState::Running).collect();
        let up = current.iter().filter(|t| t.state().is_up()).count();
        let pending: Vec<&&TaskInfo> = current.iter().filter(|t| t.state() == TaskState::Pending).collect();
        let mut text = format!(
            "Name:      {}\nVersion:   {}\nImage:     {}\nReplicas:  {} desired, {} running, {} pending\n",
            svc.name,
            svc.version,
            svc.image,
            svc.replicas,
            up,
            pending.len()
        );
        for t in &pending {
            text.push_str(&format!("Pending:   {} (slot {}): {}\n", t.id, t.slot, t.message));
        }
        if rollout.phase == "updating" || rollout.phase == "rolling-back" {
            let paused = rollout
                .paused
                .as_ref()
                .map(|p| format!(", paused: {p}"))
                .unwrap_or_default();
            text.push_str(&format!(
                "Rollout:   {} to version {}, {}/{} done{paused} (`flotilla rollout status {}`)\n",
                rollout.phase, rollout.template_version, rollout.done, rollout.replicas, svc.name
            ));
        }
        text.push_str("\nTasks:\n");
        if tasks.is_empty() {
            text.push_str("  none yet\n");
        } else {
            for line in task_rows(&tasks, false, out == Format::Wide).lines() {
                text.push_str("  ");
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    })
}

#[derive(Serialize)]
struct Scaled {
    name: String,
    version: u64,
    replicas: u32,
}

pub async fn scale(client: &Client, out: Format, name: &str, replicas: u32) -> Result<(), CliError> {
    let r = client
        .send(ScaleServiceRequest {
            name: name.to_string(),
            replicas,
        })
        .await?;
    let v = Scaled {
        name: r.name,
        version: r.version,
        replicas: r.replicas,
    };
    print(out, &v, || {
        format!("service/{} scaled to {} (version {})\n", v.name, v.replicas, v.version)
    })
}
