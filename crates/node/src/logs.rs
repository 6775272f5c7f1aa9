//! Log streaming: the node asked finds which node runs each task and merges their
//! streams; the node running a task reads it from its driver.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use flotilla_executor::{ContainerId, Driver, LogOptions, LogStream, LABEL_CLUSTER, LABEL_TASK};
use flotilla_proto::v1::agent_service_client::AgentServiceClient;
use flotilla_proto::v1::{LogChunk, TaskLogsRequest};
use flotilla_types::DesiredState;
use futures::{Stream, StreamExt};
use tonic::Status;

use crate::error::ApiError;
use crate::node::Node;

pub type LogChunks = Pin<Box<dyn Stream<Item = Result<LogChunk, Status>> + Send>>;

/// The logs of `task`, which runs on this node.
pub async fn local(node: &Node, driver: Arc<dyn Driver>, req: TaskLogsRequest) -> Result<LogChunks, ApiError> {
    let labels = BTreeMap::from([
        (LABEL_CLUSTER.to_string(), node.config.cluster.clone()),
        (LABEL_TASK.to_string(), req.task.clone()),
    ]);
    let found = driver
        .list(&labels)
        .await
        .map_err(|e| ApiError::Unavailable(format!("node {}: {e}", node.id)))?;
    let Some(container) = found.into_iter().next() else {
        return Err(ApiError::NotFound(format!(
            "task {} has no container on node {} (not started yet, or already removed)",
            req.task, node.id
        )));
    };
    let id: ContainerId = container.id;
    let task = req.task.clone();
    let lines = driver.logs(
        &id,
        LogOptions {
            follow: req.follow,
            tail: req.tail.map(|t| t as usize),
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
        })
        .map_err(|e| ApiError::Unavailable(e.to_string()).into())
    })))
}

/// Resolves `target` (a task id or a service name) on this node's replica and merges the
/// streams of every task it names.
pub async fn gather(
    node: Arc<Node>,
    driver: Arc<dyn Driver>,
    target: &str,
    follow: bool,
    tail: Option<u32>,
) -> Result<LogChunks, ApiError> {
    let tasks: Vec<(String, Option<u64>)> = {
        let sm = node.state.read();
        let state = &sm.state;
        if let Some(t) = state.tasks.get(target) {
            vec![(t.id.clone(), t.node)]
        } else if state.services.contains_key(target) || state.tasks.values().any(|t| t.service == target) {
            state
                .tasks
                .values()
                .filter(|t| t.service == target && t.desired == DesiredState::Running && t.node.is_some())
                .map(|t| (t.id.clone(), t.node))
                .collect()
        } else {
            return Err(ApiError::NotFound(format!("no task or service named {target:?}")));
        }
    };
    let mut streams: Vec<LogChunks> = Vec::new();
    for (task, owner) in tasks {
        let Some(owner) = owner else { continue };
        let req = TaskLogsRequest {
            task: task.clone(),
            follow,
            tail,
        };
        let stream = if owner == node.id {
            local(&node, driver.clone(), req).await
        } else {
            remote(&node, owner, req).await
        };
        match stream {
            Ok(s) => streams.push(s),
            // One unreachable node does not hide the other tasks' logs.
            Err(e) if streams.is_empty() && !matches!(e, ApiError::NotFound(_)) => return Err(e),
            Err(e) => tracing::debug!(task = %task, error = %e, "no logs"),
        }
    }
    if streams.is_empty() {
        return Err(ApiError::NotFound(format!("{target:?} has no running task with logs")));
    }
    Ok(Box::pin(futures::stream::select_all(streams)))
}

async fn remote(node: &Node, owner: u64, req: TaskLogsRequest) -> Result<LogChunks, ApiError> {
    let addr = node
        .member_addr(owner)
        .or_else(|| {
            let sm = node.state.read();
            sm.state.nodes.get(&owner).map(|n| n.address.clone())
        })
        .ok_or_else(|| ApiError::Unavailable(format!("no address for node {owner}")))?;
    let mut client = AgentServiceClient::new(node.channel(&addr)?);
    let stream = client
        .task_logs(req)
        .await
        .map_err(|s| match s.code() {
            // The node that ran it answered: the task's container is gone.
            tonic::Code::NotFound => ApiError::NotFound(s.message().to_string()),
            _ => ApiError::Unavailable(format!("node {owner} at {addr}: {}", s.message())),
        })?
        .into_inner();
    Ok(Box::pin(stream))
}
