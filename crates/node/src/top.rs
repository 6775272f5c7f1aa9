//! `Top`: the usage of every running task, asked of every member at once; each measures
//! its own tasks with its driver (`TaskStats`).

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_executor::{Driver, LABEL_CLUSTER, LABEL_NODE, LABEL_SERVICE, LABEL_TASK};
use flotilla_proto::v1::{TaskStat, TaskStatsRequest, TopResponse, TopUnreachable};

use crate::error::ApiError;
use crate::logs::agent_client;
use crate::node::Node;

/// How long the node asked waits for each member's answer.
const MEMBER_TIMEOUT: Duration = Duration::from_secs(5);

/// The running tasks of this node, measured by its driver (all at once).
pub async fn local(node: &Node, driver: &dyn Driver) -> Result<Vec<TaskStat>, ApiError> {
    // This node's own: several nodes may share one engine (`make demo`, the tests).
    let labels = BTreeMap::from([
        (LABEL_CLUSTER.to_string(), node.config.cluster.clone()),
        (LABEL_NODE.to_string(), node.id.to_string()),
    ]);
    let containers = driver
        .list(&labels)
        .await
        .map_err(|e| ApiError::Unavailable(format!("node {}: {e}", node.id)))?;
    let running = containers.into_iter().filter(|c| c.state.is_running());
    let measured = futures::future::join_all(running.map(|c| async move {
        let stats = driver.stats(&c.id).await;
        (c, stats)
    }))
    .await;
    let mut rows = Vec::new();
    for (c, stats) in measured {
        match stats {
            Ok(s) => rows.push(TaskStat {
                task: c.labels.get(LABEL_TASK).cloned().unwrap_or_default(),
                service: c.labels.get(LABEL_SERVICE).cloned().unwrap_or_default(),
                node_id: node.id,
                cpu_percent: s.cpu_percent,
                memory_bytes: s.memory_bytes,
                rx_bytes: s.rx_bytes,
                tx_bytes: s.tx_bytes,
            }),
            // Stopped between the list and the measure.
            Err(e) => tracing::debug!(container = %c.id, error = %e, "no stats"),
        }
    }
    rows.sort_by(|a, b| a.task.cmp(&b.task));
    Ok(rows)
}

/// Every member's running tasks; members that do not answer in time are listed apart.
pub async fn top(node: &Node, driver: &dyn Driver) -> Result<TopResponse, ApiError> {
    let mut members = node.members();
    members.sort();
    let answers = futures::future::join_all(members.into_iter().map(|(id, _)| async move {
        if id == node.id {
            return (id, local(node, driver).await.map_err(|e| e.to_string()));
        }
        let asked = async {
            let (mut client, addr) = agent_client(node, id).map_err(|e| e.to_string())?;
            client
                .task_stats(TaskStatsRequest {})
                .await
                .map(|r| r.into_inner().stats)
                .map_err(|s| format!("node {id} at {addr}: {}", s.message()))
        };
        let answer = tokio::time::timeout(MEMBER_TIMEOUT, asked)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {MEMBER_TIMEOUT:?}")));
        (id, answer)
    }))
    .await;
    let mut response = TopResponse::default();
    for (id, answer) in answers {
        match answer {
            Ok(stats) => response.stats.extend(stats),
            Err(error) => response.unreachable.push(TopUnreachable { node_id: id, error }),
        }
    }
    Ok(response)
}
