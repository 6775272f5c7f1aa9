//! One task, one step: look at what the replica wants and what the driver has, do the
//! single next thing, and say how it went.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use flotilla_types::{
    DesiredState, Millis, NodeId, Protocol as SpecProtocol, ServiceSpec, StopReason, Task, TaskReport, TaskState,
};

use super::probe::probe;
use super::Tracked;
use crate::{
    ContainerId, ContainerSpec, ContainerState, Driver, DriverError, PortMapping, Protocol, LABEL_CLUSTER, LABEL_NODE,
    LABEL_SERVICE, LABEL_SLOT, LABEL_TASK,
};

pub struct Ctx<'a> {
    pub driver: std::sync::Arc<dyn Driver>,
    pub cluster: &'a str,
    pub node: NodeId,
    /// The wall clock at the start of this pass (the replica's times are the leader's).
    pub now: Millis,
    /// How long the container of a completed task is kept, for `logs`.
    pub keep_completed: Duration,
}

pub enum Outcome {
    /// A step was taken; maybe with a status change to report.
    Done(Option<TaskReport>),
    /// Nothing to do now.
    Idle,
    /// The step could not be taken now (e.g. the engine is unreachable).
    RetryLater(String),
    /// The task cannot run; the report says why.
    Fatal(TaskReport),
}

fn report(task: &Task, tracked: &Tracked, state: TaskState, exit_code: Option<i64>, message: String) -> TaskReport {
    TaskReport {
        task: task.id.clone(),
        state,
        container_id: tracked.container.as_ref().map(|c| c.as_str().to_string()),
        address: tracked
            .ip
            .filter(|_| matches!(state, TaskState::Running | TaskState::Healthy | TaskState::Unhealthy))
            .map(|ip| ip.to_string()),
        exit_code,
        message,
        stop_reason: None,
    }
}

/// A report, unless the replica already shows that state or it was already sent.
fn change(task: &Task, tracked: &Tracked, state: TaskState, message: String) -> Option<TaskReport> {
    (task.state != state && tracked.last_report != Some(state)).then(|| report(task, tracked, state, None, message))
}

pub fn container_spec(cluster: &str, node: NodeId, task: &Task, spec: &ServiceSpec) -> ContainerSpec {
    // The operator's labels first: flotilla's own (validation refuses those keys in a
    // spec) always win.
    let mut labels = spec.labels.clone();
    labels.extend([
        (LABEL_CLUSTER.to_string(), cluster.to_string()),
        (LABEL_NODE.to_string(), node.to_string()),
        (LABEL_SERVICE.to_string(), task.service.clone()),
        (LABEL_TASK.to_string(), task.id.clone()),
        (LABEL_SLOT.to_string(), task.slot.to_string()),
    ]);
    ContainerSpec {
        name: format!("flotilla-{cluster}-{}", task.id),
        image: spec.image.clone(),
        command: spec.command.clone(),
        args: spec.args.clone(),
        env: spec.env.clone(),
        labels,
        cpu_millis: task.cpu_millis,
        memory_mb: task.memory_mb,
        // An ingress port is the routing mesh's to listen on, on every node: the
        // container is reached at its own address, so only `host` ports are bound here.
        ports: spec
            .ports
            .iter()
            .filter(|p| p.ingress().is_none())
            .map(|p| PortMapping {
                container: p.container as u16,
                host: p.host.map(|h| h as u16),
                protocol: match p.protocol {
                    SpecProtocol::Tcp => Protocol::Tcp,
                    SpecProtocol::Udp => Protocol::Udp,
                },
            })
            .collect(),
    }
}

/// A create or a start that failed. An engine that did not answer is waited for; one that
/// answered and refused (a host port taken, a value below its bounds) fails the task with
/// the engine's words, so the task's message, the events and the restart policy (with its
/// backoff) all see it, instead of a task left `starting` with nothing said.
fn not_started(task: &Task, tracked: &Tracked, step: &str, e: DriverError) -> Outcome {
    if e.is_unreachable() {
        tracing::warn!(error = %e, "{step} deferred: the engine did not answer");
        Outcome::RetryLater(e.to_string())
    } else {
        let message = format!("{step} failed: {e}");
        Outcome::Fatal(report(task, tracked, TaskState::Failed, None, message))
    }
}

fn retry_or_fatal(task: &Task, tracked: &Tracked, e: DriverError) -> Outcome {
    if e.is_retryable() {
        Outcome::RetryLater(e.to_string())
    } else {
        Outcome::Fatal(report(task, tracked, TaskState::Failed, None, e.to_string()))
    }
}

/// The single next step for `task` on this node.
pub async fn next(ctx: &Ctx<'_>, task: &Task, spec: Option<&ServiceSpec>, tracked: &mut Tracked) -> Outcome {
    let grace = Duration::from_millis(task.stop_grace_ms);
    if task.desired == DesiredState::Shutdown || spec.is_none() {
        return stop_step(ctx, task, tracked, grace).await;
    }
    let spec = spec.expect("checked above");
    if task.state.is_terminal() {
        return Outcome::Idle;
    }
    let Some(id) = tracked.container.clone() else {
        return create_step(ctx, task, spec, tracked).await;
    };
    let status = match ctx.driver.inspect(&id).await {
        Ok(s) => s,
        Err(DriverError::NotFound { .. }) => {
            tracked.container = None;
            return Outcome::Fatal(disappeared(task, tracked));
        }
        Err(e) => return retry_or_fatal(task, tracked, e),
    };
    match status.state {
        ContainerState::Created => match ctx.driver.start(&id).await {
            Ok(()) => {
                tracked.health = Default::default();
                Outcome::Done(change(task, tracked, TaskState::Running, String::new()))
            }
            Err(e) => not_started(task, tracked, "start", e),
        },
        ContainerState::Running => running_step(ctx, task, spec, tracked, &id, status.ip).await,
        ContainerState::Exited { .. } if tracked.last_report == Some(TaskState::Exited) => Outcome::Idle,
        ContainerState::Exited { code } => Outcome::Done(Some(report(
            task,
            tracked,
            TaskState::Exited,
            Some(code),
            format!("exited with code {code}"),
        ))),
        other => Outcome::RetryLater(format!("container in state {other:?}")),
    }
}

fn disappeared(task: &Task, tracked: &Tracked) -> TaskReport {
    report(task, tracked, TaskState::Failed, None, "container disappeared".into())
}

/// No container tracked for a task meant to run: create it, or adopt the one a crash
/// left behind.
async fn create_step(ctx: &Ctx<'_>, task: &Task, spec: &ServiceSpec, tracked: &mut Tracked) -> Outcome {
    if matches!(
        task.state,
        TaskState::Running | TaskState::Healthy | TaskState::Unhealthy
    ) {
        // It ran here and is gone (removed behind our back): the leader decides.
        return Outcome::Fatal(disappeared(task, tracked));
    }
    match ctx
        .driver
        .create(&container_spec(ctx.cluster, ctx.node, task, spec))
        .await
    {
        Ok(id) => {
            tracked.container = Some(id);
            Outcome::Done(change(task, tracked, TaskState::Starting, String::new()))
        }
        // Created before a crash and not adopted: find it by its task label.
        Err(DriverError::AlreadyExists { .. }) => {
            let labels = BTreeMap::from([
                (LABEL_CLUSTER.to_string(), ctx.cluster.to_string()),
                (LABEL_TASK.to_string(), task.id.clone()),
            ]);
            match ctx.driver.list(&labels).await {
                Ok(found) if !found.is_empty() => {
                    tracked.container = Some(found[0].id.clone());
                    Outcome::Done(None)
                }
                Ok(_) => Outcome::RetryLater("container name taken by a container of another task".into()),
                Err(e) => retry_or_fatal(task, tracked, e),
            }
        }
        Err(e) => not_started(task, tracked, "create", e),
    }
}

/// The container runs: report it running, then probe its health when a check is due.
async fn running_step(
    ctx: &Ctx<'_>,
    task: &Task,
    spec: &ServiceSpec,
    tracked: &mut Tracked,
    id: &ContainerId,
    ip: Option<IpAddr>,
) -> Outcome {
    tracked.ip = ip;
    if matches!(task.state, TaskState::Assigned | TaskState::Starting) {
        return Outcome::Done(change(task, tracked, TaskState::Running, String::new()));
    }
    // Running with no address known yet (it was reported before the engine gave one, or
    // by an older agent): report the address, in the state the task is in.
    let address = ip.map(|ip| ip.to_string());
    if address.is_some() && task.address != address && tracked.address_sent != address {
        tracked.address_sent = address;
        return Outcome::Done(Some(report(task, tracked, task.state, None, String::new())));
    }
    let Some(hc) = spec.health_check.as_ref() else {
        return Outcome::Idle;
    };
    if !tracked.health.due(hc) {
        return Outcome::Idle;
    }
    let result = probe(ctx.driver.as_ref(), id, ip, hc).await;
    match tracked.health.record(hc, result) {
        Some(true) => Outcome::Done(change(task, tracked, TaskState::Healthy, String::new())),
        Some(false) => {
            let why = format!("health check failed: {}", tracked.health.last_error);
            Outcome::Done(change(task, tracked, TaskState::Unhealthy, why))
        }
        None => Outcome::Idle,
    }
}

/// Whether the container of a completed task is still kept (for `logs`): it goes
/// `keep_completed` after the task ended.
fn kept_after_completion(ctx: &Ctx<'_>, task: &Task) -> bool {
    task.stop_reason == Some(StopReason::Completed)
        && ctx.now
            < task
                .state_since
                .saturating_add(ctx.keep_completed.as_millis() as Millis)
}

/// Stop, then remove, then report stopped. The report keeps the task's last message
/// (why a health check failed, say), which an empty one would clear.
async fn stop_step(ctx: &Ctx<'_>, task: &Task, tracked: &mut Tracked, grace: Duration) -> Outcome {
    let Some(id) = tracked.container.clone() else {
        if task.state == TaskState::Stopped || (task.state.is_terminal() && task.state != TaskState::Lost) {
            return Outcome::Idle;
        }
        return match change(task, tracked, TaskState::Stopped, task.message.clone()) {
            Some(mut r) => {
                // A task its node stopped on its own says so: the leader must not wait
                // for it nor start it again.
                if task.stop_reason == Some(StopReason::Fenced) {
                    r.stop_reason = task.stop_reason;
                }
                Outcome::Done(Some(r))
            }
            None => Outcome::Idle,
        };
    };
    if kept_after_completion(ctx, task) {
        return Outcome::Idle;
    }
    if let Some(handle) = &tracked.stopping {
        if !handle.is_finished() {
            return Outcome::RetryLater("stopping".into());
        }
        let handle = tracked.stopping.take().expect("checked above");
        if let Ok(Err(e)) = handle.await {
            tracing::warn!(error = %e, "stop failed; retrying");
        }
    }
    match ctx.driver.inspect(&id).await {
        Ok(s) if s.state.is_running() => {
            let (driver, cid) = (ctx.driver.clone(), id.clone());
            tracked.stopping = Some(tokio::spawn(async move { driver.stop(&cid, grace).await }));
            Outcome::RetryLater("stopping".into())
        }
        Ok(_) | Err(DriverError::NotFound { .. }) => match ctx.driver.remove(&id).await {
            Ok(()) => {
                tracked.container = None;
                Outcome::Done(None)
            }
            Err(e) => Outcome::RetryLater(e.to_string()),
        },
        Err(e) => Outcome::RetryLater(e.to_string()),
    }
}
