//! Log streaming: the node asked finds which node runs each task and merges their
//! streams; the node running a task reads it from its driver.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use flotilla_executor::{ContainerStatus, Driver, DriverError, LogOptions, LogStream, LABEL_CLUSTER, LABEL_TASK};
use flotilla_proto::v1::agent_service_client::AgentServiceClient;
use flotilla_proto::v1::{LogChunk, LogsRequest, TaskLogsRequest};
use flotilla_types::DesiredState;
use futures::{Stream, StreamExt};
use tonic::transport::Channel;
use tonic::Status;

use crate::error::ApiError;
use crate::node::Node;

pub type LogChunks = Pin<Box<dyn Stream<Item = Result<LogChunk, Status>> + Send>>;

/// The container of `task` on this node, as its driver sees it now.
pub(crate) async fn container_of(node: &Node, driver: &dyn Driver, task: &str) -> Result<ContainerStatus, ApiError> {
    let labels = BTreeMap::from([
        (LABEL_CLUSTER.to_string(), node.config.cluster.clone()),
        (LABEL_TASK.to_string(), task.to_string()),
    ]);
    let found = driver
        .list(&labels)
        .await
        .map_err(|e| ApiError::Unavailable(format!("node {}: {e}", node.id)))?;
    found.into_iter().next().ok_or_else(|| {
        ApiError::NotFound(format!(
            "task {task} has no container on node {} (not started yet, or already removed)",
            node.id
        ))
    })
}

/// The logs of `task`, which runs on this node.
pub async fn local(node: &Node, driver: Arc<dyn Driver>, req: TaskLogsRequest) -> Result<LogChunks, ApiError> {
    let container = container_of(node, driver.as_ref(), &req.task).await?;
    let task = req.task.clone();
    let lines = driver.logs(
        &container.id,
        LogOptions {
            follow: req.follow,
            tail: req.tail.map(|t| t as usize),
            since_ms: req.since_ms,
        },
    );
    Ok(Box::pin(lines.map(move |line| {
        line.map(|l| LogChunk {
            task: task.clone(),
            stream: match l.stream {
                LogStream::Stdout => "stdout".into(),
                LogStream::Stderr => "stderr".into(),
            },
            line: l.text,
            at_ms: l.at_ms.unwrap_or(0),
        })
        .map_err(|e| match e {
            // Removed between the list and the read: gone, not unreachable.
            DriverError::NotFound { .. } => ApiError::NotFound(format!("task {task}: {e}")).into(),
            e => ApiError::Unavailable(e.to_string()).into(),
        })
    })))
}

/// Resolves `req.target` (a task id or a service name) on this node's replica and merges
/// the streams of every task it names.
pub async fn gather(node: Arc<Node>, driver: Arc<dyn Driver>, req: LogsRequest) -> Result<LogChunks, ApiError> {
    let target = req.target.as_str();
    let (tasks, one_task): (Vec<(String, Option<u64>)>, bool) = {
        let sm = node.state.read();
        let state = &sm.state;
        if let Some(t) = state.tasks.get(target) {
            (vec![(t.id.clone(), t.node)], true)
        } else if state.services.contains_key(target) || state.tasks.values().any(|t| t.service == target) {
            let tasks = state
                .tasks
                .values()
                .filter(|t| t.service == target && t.desired == DesiredState::Running && t.node.is_some())
                .map(|t| (t.id.clone(), t.node))
                .collect();
            (tasks, false)
        } else {
            return Err(ApiError::NotFound(format!("no task or service named {target:?}")));
        }
    };
    let mut streams: Vec<LogChunks> = Vec::new();
    for (task, owner) in tasks {
        let Some(owner) = owner else { continue };
        let req = TaskLogsRequest {
            task: task.clone(),
            follow: req.follow,
            tail: req.tail,
            since_ms: req.since_ms,
        };
        let stream = if owner == node.id {
            local(&node, driver.clone(), req).await
        } else {
            remote(&node, owner, req).await
        };
        match stream {
            // A service's task whose container went away meanwhile just has no more lines.
            Ok(s) if !one_task => {
                streams.push(Box::pin(s.take_while(|r| {
                    std::future::ready(!matches!(r, Err(s) if s.code() == tonic::Code::NotFound))
                })))
            }
            Ok(s) => streams.push(s),
            // One unreachable node does not hide the other tasks' logs.
            Err(e) if streams.is_empty() && !matches!(e, ApiError::NotFound(_)) => return Err(e),
            Err(e) if one_task => return Err(e),
            Err(e) => tracing::debug!(task = %task, error = %e, "no logs"),
        }
    }
    if streams.is_empty() {
        return Err(ApiError::NotFound(format!("{target:?} has no running task with logs")));
    }
    Ok(Box::pin(futures::stream::select_all(streams)))
}

/// An `AgentService` client for node `owner`, and its address.
pub(crate) fn agent_client(node: &Node, owner: u64) -> Result<(AgentServiceClient<Channel>, String), ApiError> {
    let addr = node
        .member_addr(owner)
        .or_else(|| {
            let sm = node.state.read();
            sm.state.nodes.get(&owner).map(|n| n.address.clone())
        })
        .ok_or_else(|| ApiError::Unavailable(format!("no address for node {owner}")))?;
    Ok((AgentServiceClient::new(node.channel(&addr)?), addr))
}

/// A status from node `owner` at `addr`: not found stays not found (the node that ran the
/// task answered: its container is gone); anything else makes the node unavailable.
pub(crate) fn from_owner(owner: u64, addr: &str, s: Status) -> ApiError {
    match s.code() {
        tonic::Code::NotFound => ApiError::NotFound(s.message().to_string()),
        _ => ApiError::Unavailable(format!("node {owner} at {addr}: {}", s.message())),
    }
}

async fn remote(node: &Node, owner: u64, req: TaskLogsRequest) -> Result<LogChunks, ApiError> {
    let (mut client, addr) = agent_client(node, owner)?;
    let stream = client
        .task_logs(req)
        .await
        .map_err(|s| from_owner(owner, &addr, s))?
        .into_inner();
    Ok(Box::pin(stream))
}
