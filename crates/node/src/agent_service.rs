//! `AgentService` on the leader, and the heartbeat loop every agent runs.

use std::sync::Arc;
use std::time::Duration;

use flotilla_control::Control;
use flotilla_proto::v1::agent_service_client::AgentServiceClient;
use flotilla_proto::v1::agent_service_server::AgentService;
use flotilla_proto::v1::{
    HeartbeatRequest, HeartbeatResponse, ReportStatusRequest, ReportStatusResponse, TaskStatusReport,
};
use flotilla_types::{Capacity, NodeRegistration, TaskId, TaskReport};
use openraft::ServerState;
use tonic::{Request, Response, Status};

use crate::node::{not_leader_status, Node};

pub struct AgentApi {
    node: Arc<Node>,
    control: Arc<Control>,
    driver: Arc<dyn flotilla_executor::Driver>,
}

impl AgentApi {
    pub fn new(node: Arc<Node>, control: Arc<Control>, driver: Arc<dyn flotilla_executor::Driver>) -> Self {
        AgentApi { node, control, driver }
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
    type TaskLogsStream = crate::logs::LogChunks;

    async fn task_logs(
        &self,
        req: Request<flotilla_proto::v1::TaskLogsRequest>,
    ) -> Result<Response<Self::TaskLogsStream>, Status> {
        crate::logs::local(&self.node, self.driver.clone(), req.into_inner())
            .await
            .map(Response::new)
    }

    async fn heartbeat(&self, req: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        if !is_leader(&self.node) {
            return Err(not_leader_status(format!("node {} is not the leader", self.node.id)));
        }
        crate::membership::admit_heartbeat(&self.node, req.get_ref().node_id, req.get_ref().epoch)?;
        self.control
            .heartbeat(registration(req.get_ref()))
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(HeartbeatResponse {
            leader_id: self.node.id,
        }))
    }

    async fn report_status(&self, req: Request<ReportStatusRequest>) -> Result<Response<ReportStatusResponse>, Status> {
        if !is_leader(&self.node) {
            return Err(not_leader_status(format!("node {} is not the leader", self.node.id)));
        }
        let req = req.into_inner();
        let reports = req
            .reports
            .iter()
            .map(TaskReport::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(Status::invalid_argument)?;
        let unknown = self
            .control
            .report(req.node_id, reports)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(ReportStatusResponse { unknown }))
    }
}

/// The leader's agent API, or `None` when this node leads.
fn leader_client(node: &Node) -> Result<Option<AgentServiceClient<tonic::transport::Channel>>, String> {
    let leader = node.raft.metrics().borrow().current_leader;
    match leader {
        None => Err("no leader known".into()),
        Some(l) if l == node.id && is_leader(node) => Ok(None),
        Some(l) => {
            let addr = node
                .member_addr(l)
                .ok_or_else(|| format!("no address for leader {l}"))?;
            let channel = node.channel(&addr).map_err(|s| s.message().to_string())?;
            Ok(Some(AgentServiceClient::new(channel)))
        }
    }
}

/// Sends an executor's reports to the leader (or records them, on the leader).
pub async fn send_reports(node: &Node, control: &Control, reports: Vec<TaskReport>) -> Result<Vec<TaskId>, String> {
    match leader_client(node)? {
        None => control.report(node.id, reports).await.map_err(|e| e.to_string()),
        Some(mut client) => {
            let req = ReportStatusRequest {
                node_id: node.id,
                reports: reports.iter().map(TaskStatusReport::from).collect(),
            };
            match tokio::time::timeout(Duration::from_secs(5), client.report_status(req)).await {
                Ok(Ok(r)) => Ok(r.into_inner().unknown),
                Ok(Err(s)) => Err(s.message().to_string()),
                Err(_) => Err("timed out".into()),
            }
        }
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
        epoch: 0,
    };
    let mut tick = tokio::time::interval(cfg.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let result = match leader_client(&node) {
            Err(e) => Err(e),
            Ok(None) => control.heartbeat(registration(&req)).await.map_err(|e| e.to_string()),
            Ok(Some(mut client)) => {
                let req = HeartbeatRequest {
                    epoch: node.epoch.get(),
                    ..req.clone()
                };
                match tokio::time::timeout(Duration::from_secs(1), client.heartbeat(req)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(s)) if crate::fence::is_fenced_status(&s) => {
                        crate::fence::fence(format!("refused by the leader: {}", s.message()));
                        Err(s.message().to_string())
                    }
                    Ok(Err(s)) => Err(s.message().to_string()),
                    Err(_) => Err("timed out".into()),
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "heartbeat failed");
        }
    }
}
