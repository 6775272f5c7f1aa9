//! `get tasks`, `describe service`, `scale`.

use flotilla_proto::v1::{
    DesiredState, GetServiceRequest, InspectTaskRequest, ListTasksRequest, ScaleServiceRequest, ServiceInfo,
    TaskContainer, TaskInfo, TaskState,
};
use serde::Serialize;

use crate::args::Format;
use crate::client::Client;
use crate::error::CliError;
use crate::output::{age, now_ms, print, table};
use crate::verbs::watch::Listing;

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
    /// Where the workload listens: as last reported running, and by `describe task` from
    /// its node's driver.
    #[serde(skip_serializing_if = "String::is_empty")]
    address: String,
    /// Filled in by `describe task`: why the slot's newest attempt that failed to start did.
    #[serde(skip_serializing_if = "String::is_empty")]
    last_start_error: String,
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
            address: t.address.clone(),
            last_start_error: String::new(),
        }
    }
}

/// Current tasks first (by slot), then finished ones, newest first.
fn ordered(mut tasks: Vec<TaskInfo>) -> Vec<TaskInfo> {
    superseded_are_shutdown(&mut tasks);
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

/// The task's sequence number, from its id (`service.slot.seq`): orders a slot's tasks.
pub(crate) fn seq(t: &TaskInfo) -> u64 {
    t.id.rsplit('.').next().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A task that ended and that a newer task of its slot replaced is history, even while
/// the state still says it was meant to run (a failed attempt the restart policy followed
/// up): shown as DESIRED `shutdown`, the leader will never run it again.
fn superseded_are_shutdown(tasks: &mut [TaskInfo]) {
    let mut newest: std::collections::HashMap<(String, u32), u64> = std::collections::HashMap::new();
    for t in tasks.iter() {
        let n = newest.entry((t.service.clone(), t.slot)).or_default();
        *n = (*n).max(seq(t));
    }
    for t in tasks.iter_mut() {
        let ended = matches!(
            t.state(),
            TaskState::Exited | TaskState::Failed | TaskState::Lost | TaskState::Stopped
        );
        if ended && t.desired() == DesiredState::Running && newest[&(t.service.clone(), t.slot)] > seq(t) {
            t.set_desired(DesiredState::Shutdown);
        }
    }
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

/// Which tasks `get tasks` lists.
pub struct Which {
    pub service: Option<String>,
    /// History too, not only the tasks meant to run.
    pub all: bool,
    pub stale: bool,
}

pub async fn get_tasks(client: &Client, out: Format, quiet: bool, which: &Which) -> Result<Listing, CliError> {
    let r = client
        .send(ListTasksRequest {
            service: which.service.clone().unwrap_or_default(),
            stale: which.stale,
        })
        .await?;
    let mut tasks = ordered(r.tasks);
    if !which.all {
        tasks.retain(|t| t.desired() == DesiredState::Running);
    }
    if quiet {
        return Ok(Listing::ids(tasks.iter().map(|t| t.id.as_str())));
    }
    let views: Vec<TaskView> = tasks.iter().map(TaskView::from).collect();
    Listing::of(
        out,
        &views,
        |v| v.id.clone(),
        || {
            if tasks.is_empty() {
                "No tasks.\n".into()
            } else {
                task_rows(&tasks, true, out == Format::Wide)
            }
        },
    )
}

/// `SERVICE.SLOT` (as in `web.1`): the service and slot it names, when it has that shape.
fn slot_of(name: &str) -> Option<(&str, u32)> {
    let (service, slot) = name.rsplit_once('.')?;
    if service.is_empty() || service.contains('.') {
        return None;
    }
    Some((service, slot.parse().ok()?))
}

/// The task `name` names among `tasks`: its id, or for `SERVICE.SLOT` the slot's current
/// task (the newest meant to run; else the newest at all).
pub fn pick<'a>(tasks: &'a [TaskInfo], name: &str) -> Option<&'a TaskInfo> {
    if let Some(t) = tasks.iter().find(|t| t.id == name) {
        return Some(t);
    }
    let (service, slot) = slot_of(name)?;
    let of_slot = || tasks.iter().filter(|t| t.service == service && t.slot == slot);
    of_slot()
        .filter(|t| t.desired() == DesiredState::Running)
        .max_by_key(|t| t.created_at_ms)
        .or_else(|| of_slot().max_by_key(|t| t.created_at_ms))
}

/// Every task of `name`'s service (all of them when `name` is no task of a service's shape)
/// and the one `name` names.
pub async fn resolve(client: &Client, name: &str, stale: bool) -> Result<(Vec<TaskInfo>, TaskInfo), CliError> {
    let service = name
        .split('.')
        .next()
        .filter(|_| name.contains('.'))
        .unwrap_or_default();
    let tasks = client
        .send(ListTasksRequest {
            service: service.to_string(),
            stale,
        })
        .await?
        .tasks;
    let task = pick(&tasks, name)
        .cloned()
        .ok_or_else(|| CliError::NotFound(format!("task {name:?} not found (see `flotilla get tasks --all`)")))?;
    Ok((tasks, task))
}

/// The newest start error of `t`'s slot: its own when it failed to start, else that of the
/// attempt before it that did.
fn last_start_error(tasks: &[TaskInfo], t: &TaskInfo) -> Option<String> {
    tasks
        .iter()
        .filter(|o| o.service == t.service && o.slot == t.slot && o.created_at_ms <= t.created_at_ms)
        .filter(|o| o.state() == TaskState::Failed && !o.message.is_empty())
        .max_by_key(|o| o.created_at_ms)
        .map(|o| {
            if o.id == t.id {
                o.message.clone()
            } else {
                format!("{} (task {})", o.message, o.id)
            }
        })
}

pub async fn describe_task(client: &Client, out: Format, id: &str, stale: bool) -> Result<(), CliError> {
    let (tasks, t) = resolve(client, id, stale).await?;
    let t = &t;
    let container = container(client, t).await;
    let mut v = TaskView::from(t);
    if let Some(ip) = container.as_ref().map(|c| c.ip.clone()).filter(|ip| !ip.is_empty()) {
        v.address = ip;
    }
    v.last_start_error = last_start_error(&tasks, t).unwrap_or_default();
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
        if !v.address.is_empty() {
            text.push_str(&format!("Address:     {}\n", v.address));
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
        if !v.last_start_error.is_empty() && v.last_start_error != t.message {
            text.push_str(&format!("Start error: {}\n", v.last_start_error));
        }
        text.push_str(&format!("Created:     {} ago\n", age(t.created_at_ms, now)));
        text
    })
}

#[derive(Serialize)]
struct Described {
    service: super::ServiceView,
    tasks: Vec<TaskView>,
    /// The service's and its tasks' newest events, oldest first.
    events: Vec<super::events::EventView>,
    /// The routing mesh's view of its ingress ports; absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    mesh: Option<MeshView>,
}

#[derive(Serialize)]
struct MeshView {
    endpoints: Vec<String>,
    backends: Vec<BackendView>,
    errors: Vec<String>,
}

#[derive(Serialize)]
struct BackendView {
    port: String,
    task: String,
    node: u64,
    used: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    reason: String,
}

fn mesh_view(svc: &ServiceInfo) -> Option<MeshView> {
    if svc.endpoints.is_empty() && svc.backends.is_empty() && svc.mesh_errors.is_empty() {
        return None;
    }
    Some(MeshView {
        endpoints: svc.endpoints.clone(),
        backends: svc
            .backends
            .iter()
            .map(|b| BackendView {
                port: b.port.clone(),
                task: b.task.clone(),
                node: b.node_id,
                used: b.used,
                reason: b.reason.clone(),
            })
            .collect(),
        errors: svc.mesh_errors.clone(),
    })
}

/// The `Mesh:` section of `describe service`.
fn mesh_text(mesh: &MeshView) -> String {
    let mut text = String::from("\nMesh:\n");
    let rows: Vec<Vec<String>> = mesh
        .backends
        .iter()
        .map(|b| {
            vec![
                b.port.clone(),
                b.task.clone(),
                if b.node == 0 { "-".into() } else { b.node.to_string() },
                if b.used {
                    "yes".into()
                } else {
                    format!("no: {}", b.reason)
                },
            ]
        })
        .collect();
    if rows.is_empty() {
        text.push_str("  no tasks yet\n");
    } else {
        for line in table(&["PORT", "TASK", "NODE", "TAKES CONNECTIONS"], &rows).lines() {
            text.push_str("  ");
            text.push_str(line);
            text.push('\n');
        }
    }
    for e in &mesh.errors {
        text.push_str(&format!("  not listening: {e}\n"));
    }
    text
}

/// How many of a service's events `describe service` shows.
const RECENT_EVENTS: usize = 10;

/// What the driver of `t`'s node knows of its container now; none when that node cannot
/// tell (not placed, down, container gone).
async fn container(client: &Client, t: &TaskInfo) -> Option<TaskContainer> {
    if t.node_id == 0 {
        return None;
    }
    client
        .send(InspectTaskRequest { task: t.id.clone() })
        .await
        .map_err(|e| tracing::debug!(task = %t.id, error = %e, "no container details"))
        .ok()
}

/// A health check as one line: `http :8080/health every 2s, timeout 1s, 3 retries`.
fn health_check(spec: &serde_json::Value) -> Option<String> {
    let h = spec["health_check"].as_object()?;
    let probe = if let Some(cmd) = h.get("exec").and_then(|c| c.as_array()) {
        let words: Vec<&str> = cmd.iter().filter_map(|w| w.as_str()).collect();
        format!("exec {}", words.join(" "))
    } else if let Some(http) = h.get("http") {
        format!("http :{}{}", http["port"], http["path"].as_str().unwrap_or("/"))
    } else if let Some(tcp) = h.get("tcp") {
        format!("tcp :{}", tcp["port"])
    } else {
        "none".into()
    };
    let word = |k: &str| h.get(k).map(|v| v.as_str().map_or(v.to_string(), String::from));
    let mut line = probe;
    if let Some(i) = word("interval") {
        line.push_str(&format!(" every {i}"));
    }
    if let Some(t) = word("timeout") {
        line.push_str(&format!(", timeout {t}"));
    }
    if let Some(r) = word("retries") {
        line.push_str(&format!(", {r} retries"));
    }
    if let Some(p) = word("start_period").filter(|p| p != "0s" && p != "0") {
        line.push_str(&format!(", start period {p}"));
    }
    Some(line)
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
    let mut events = super::events::of_service(client, name).await?;
    events.drain(..events.len().saturating_sub(RECENT_EVENTS));
    let described = Described {
        service: super::view(&svc)?,
        tasks: tasks.iter().map(TaskView::from).collect(),
        events,
        mesh: mesh_view(&svc),
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
        let spec = &described.service.spec;
        let ports = super::ports(spec);
        text.push_str(&format!(
            "Ports:     {}\n",
            if ports.is_empty() {
                "none".into()
            } else {
                ports.join(", ")
            }
        ));
        if !svc.endpoints.is_empty() {
            text.push_str(&format!("Endpoints: {}\n", svc.endpoints.join(", ")));
        }
        text.push_str(&format!(
            "Health:    {}\n",
            health_check(spec).unwrap_or_else(|| "no check".into())
        ));
        if let Some(labels) = spec["labels"].as_object().filter(|l| !l.is_empty()) {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            text.push_str(&format!("Labels:    {}\n", labels.join(", ")));
        }
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
        if let Some(mesh) = &described.mesh {
            text.push_str(&mesh_text(mesh));
        }
        text.push_str("\nEvents:\n");
        if described.events.is_empty() {
            text.push_str("  none\n");
        } else {
            for line in super::events::table_of(&described.events).lines() {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, desired: DesiredState, state: TaskState, created: u64, message: &str) -> TaskInfo {
        let mut parts = id.split('.');
        let mut t = TaskInfo {
            id: id.into(),
            service: parts.next().expect("service").into(),
            slot: parts.next().expect("slot").parse().expect("slot"),
            created_at_ms: created,
            message: message.into(),
            ..Default::default()
        };
        t.set_desired(desired);
        t.set_state(state);
        t
    }

    #[test]
    fn a_slot_names_its_current_task() {
        use DesiredState::{Running, Shutdown};
        let tasks = vec![
            task("web.1.2", Shutdown, TaskState::Failed, 10, "image not found"),
            task("web.1.5", Running, TaskState::Running, 20, ""),
            task("web.0.1", Shutdown, TaskState::Stopped, 5, ""),
            task("web.0.7", Shutdown, TaskState::Stopped, 30, ""),
        ];
        let id = |name: &str| pick(&tasks, name).map(|t| t.id.as_str());
        assert_eq!(id("web.1"), Some("web.1.5"));
        assert_eq!(id("web.1.2"), Some("web.1.2"));
        // No task meant to run: the newest.
        assert_eq!(id("web.0"), Some("web.0.7"));
        assert_eq!(id("web.2"), None);
        assert_eq!(id("web"), None);
        assert_eq!(id("web.x"), None);
        assert_eq!(
            last_start_error(&tasks, &tasks[1]).as_deref(),
            Some("image not found (task web.1.2)")
        );
        assert_eq!(last_start_error(&tasks, &tasks[0]).as_deref(), Some("image not found"));
        assert_eq!(last_start_error(&tasks, &tasks[3]), None);
    }

    #[test]
    fn a_replaced_attempt_is_history_shown_as_shutdown() {
        let tasks = vec![
            task(
                "job.0.3",
                DesiredState::Running,
                TaskState::Exited,
                1,
                "exited with code 3",
            ),
            task("job.0.5", DesiredState::Running, TaskState::Running, 2, ""),
            task(
                "job.1.4",
                DesiredState::Running,
                TaskState::Exited,
                1,
                "exited with code 3",
            ),
        ];
        let shown: Vec<(String, DesiredState)> = ordered(tasks).iter().map(|t| (t.id.clone(), t.desired())).collect();
        assert_eq!(
            shown,
            [
                ("job.0.5".to_string(), DesiredState::Running),
                // job.1.4 is its slot's newest: it stays current (its slot waits on it).
                ("job.1.4".to_string(), DesiredState::Running),
                ("job.0.3".to_string(), DesiredState::Shutdown),
            ]
        );
    }
}
