//! `AgentService` on the leader, and the heartbeat loop every agent runs.

use std::sync::Arc;
use std::time::Duration;

use flotilla_control::Control;
use flotilla_proto::v1::agent_service_client::AgentServiceClient;
use flotilla_proto::v1::agent_service_server::AgentService;
use flotilla_proto::v1::{HeartbeatRequest, HeartbeatResponse};
use flotilla_types::{Capacity, NodeRegistration};
use openraft::ServerState;
use tonic::{Request, Response, Status};

use crate::node::{not_leader_status, Node};

pub struct AgentApi {
    node: Arc<Node>,
    control: Arc<Control>,
}

impl AgentApi {
    pub fn new(node: Arc<Node>, control: Arc<Control>) -> Self {
        AgentApi { node, control }
    }
}

fn registration(req: &HeartbeatRequest) -> NodeRegistration {
    NodeRegistration {
        id: req.node_id,
        address: req.address.clone(),
        labels: req.labels.clone().into_iter().collect(),
        capacity: Capacity {
            cpu_millis: req.cpu_millis,
            memory_mb: req.memory_mb,
        },
    }
}

fn is_leader(node: &Node) -> bool {
    node.raft.metrics().borrow().state == ServerState::Leader
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        if !is_leader(&self.node) {
            return Err(not_leader_status(format!(
                "node {} is not the leader",
                self.node.id
            )));
        }
        self.control
            .heartbeat(registration(req.get_ref()))
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(HeartbeatResponse {
            leader_id: self.node.id,
        }))
    }
}

/// Every `interval`, tells the leader this node is alive (registering it on first contact).
pub async fn heartbeat_loop(node: Arc<Node>, control: Arc<Control>) {
    let cfg = &node.config;
    let req = HeartbeatRequest {
        node_id: node.id,
        address: cfg.advertised(),
        labels: cfg.labels.clone().into_iter().collect(),
        cpu_millis: cfg.capacity.cpu_millis,
        memory_mb: cfg.capacity.memory_mb,
    };
    let mut tick = tokio::time::interval(cfg.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let leader = node.raft.metrics().borrow().current_leader;
        let result = match leader {
            None => continue,
            Some(l) if l == node.id && is_leader(&node) => control
                .heartbeat(registration(&req))
                .await
                .map_err(|e| e.to_string()),
            Some(l) => match node.member_addr(l).map(|a| node.channel(&a)) {
                Some(Ok(ch)) => {
                    let mut client = AgentServiceClient::new(ch);
                    match tokio::time::timeout(
                        Duration::from_secs(1),
                        client.heartbeat(req.clone()),
                    )
                    .await
                    {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(s)) => Err(s.message().to_string()),
                        Err(_) => Err("timed out".into()),
                    }
                }
                _ => Err(format!("no address for leader {l}")),
            },
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "heartbeat failed");
        }
    }
}
