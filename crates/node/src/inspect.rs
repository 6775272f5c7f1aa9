//! `InspectTask`: what the driver of the node running a task knows of its container now
//! (its id and address), asked of that node through the node asked.

use std::sync::Arc;

use flotilla_executor::Driver;
use flotilla_proto::v1::{InspectTaskRequest, TaskContainer};

use crate::error::ApiError;
use crate::logs::{agent_client, container_of, from_owner};
use crate::node::Node;

/// `task`'s container on this node.
pub async fn local(node: &Node, driver: &dyn Driver, task: &str) -> Result<TaskContainer, ApiError> {
    let c = container_of(node, driver, task).await?;
    Ok(TaskContainer {
        task: task.to_string(),
        node_id: node.id,
        container_id: c.id.as_str().to_string(),
        ip: c.ip.map(|ip| ip.to_string()).unwrap_or_default(),
    })
}

/// `req.task`'s container, from the node this node's replica places it on.
pub async fn inspect(node: &Node, driver: Arc<dyn Driver>, req: InspectTaskRequest) -> Result<TaskContainer, ApiError> {
    let owner = {
        let sm = node.state.read();
        let task = sm
            .state
            .tasks
            .get(&req.task)
            .ok_or_else(|| ApiError::NotFound(format!("no task named {:?}", req.task)))?;
        task.node
            .ok_or_else(|| ApiError::NotFound(format!("task {} is not placed on a node", req.task)))?
    };
    if owner == node.id {
        return local(node, driver.as_ref(), &req.task).await;
    }
    let (mut client, addr) = agent_client(node, owner)?;
    Ok(client
        .inspect_task(req)
        .await
        .map_err(|s| from_owner(owner, &addr, s))?
        .into_inner())
}
