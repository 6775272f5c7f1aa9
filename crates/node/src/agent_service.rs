//! `AgentService` on the leader, and the heartbeat loop every agent runs.

use std::sync::Arc;
use std::time::Duration;

use flotilla_control::Control;
use flotilla_executor::task_loop::ReportError;
use flotilla_proto::v1::agent_service_client::AgentServiceClient;
use flotilla_proto::v1::agent_service_server::AgentService;
use flotilla_proto::v1::{
    HeartbeatRequest, HeartbeatResponse, ProposeSecurityRequest, ProposeSecurityResponse, ReportStatusRequest,
    ReportStatusResponse, TaskStatusReport,
};
use flotilla_types::{Capacity, NodeRegistration, SecurityOp, TaskReport};
use tonic::{Request, Response, Status};

use crate::error::ApiError;
use crate::node::Node;

pub struct AgentApi {
    node: Arc<Node>,
    control: Arc<Control>,
    driver: Arc<dyn flotilla_executor::Driver>,
    mesh: Arc<crate::mesh::Mesh>,
}

impl AgentApi {
    pub fn new(
        node: Arc<Node>,
        control: Arc<Control>,
        driver: Arc<dyn flotilla_executor::Driver>,
        mesh: Arc<crate::mesh::Mesh>,
    ) -> Self {
        AgentApi {
            node,
            control,
            driver,
            mesh,
        }
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
        instance: req.instance.clone(),
        publish_addr: req.publish_addr.clone(),
        mesh_errors: req.mesh_errors.clone().into_iter().collect(),
    }
}

/// Heartbeats and reports go to the leader itself: a follower refuses them (the sender
/// looks up the leader again).
fn leader_only(node: &Node) -> Result<(), ApiError> {
    if node.is_leader() {
        Ok(())
    } else {
        Err(ApiError::NotLeader {
            node: node.id,
            leader: node.raft.metrics().borrow().current_leader,
        })
    }
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    type TaskLogsStream = crate::logs::LogChunks;
    type ExecStream = crate::exec::ExecStream;
    type TunnelStream = crate::mesh::tunnel::TunnelStream;

    async fn tunnel(
        &self,
        req: Request<tonic::Streaming<flotilla_proto::v1::TunnelInput>>,
    ) -> Result<Response<Self::TunnelStream>, Status> {
        Ok(Response::new(crate::mesh::tunnel::serve(&self.mesh, req).await?))
    }

    async fn exec(
        &self,
        req: Request<tonic::Streaming<flotilla_proto::v1::ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        Ok(Response::new(
            crate::exec::agent(&self.node, self.driver.as_ref(), req).await?,
        ))
    }

    async fn task_stats(
        &self,
        _req: Request<flotilla_proto::v1::TaskStatsRequest>,
    ) -> Result<Response<flotilla_proto::v1::TaskStatsResponse>, Status> {
        let stats = crate::top::local(&self.node, self.driver.as_ref()).await?;
        Ok(Response::new(flotilla_proto::v1::TaskStatsResponse { stats }))
    }

    async fn task_logs(
        &self,
        req: Request<flotilla_proto::v1::TaskLogsRequest>,
    ) -> Result<Response<Self::TaskLogsStream>, Status> {
        Ok(Response::new(
            crate::logs::local(&self.node, self.driver.clone(), req.into_inner()).await?,
        ))
    }

    async fn inspect_task(
        &self,
        req: Request<flotilla_proto::v1::InspectTaskRequest>,
    ) -> Result<Response<flotilla_proto::v1::TaskContainer>, Status> {
        Ok(Response::new(
            crate::inspect::local(&self.node, self.driver.as_ref(), &req.get_ref().task).await?,
        ))
    }

    async fn heartbeat(&self, req: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        crate::injected::peer_delay().await;
        leader_only(&self.node)?;
        sender_is(&req, req.get_ref().node_id)?;
        crate::membership::admit_heartbeat(
            &self.node,
            req.get_ref().node_id,
            req.get_ref().epoch,
            &req.get_ref().instance,
        )?;
        self.node.metrics.saw_heartbeat(req.get_ref().node_id);
        self.control
            .heartbeat(registration(req.get_ref()))
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        Ok(Response::new(HeartbeatResponse {
            leader_id: self.node.id,
            quorum_age_ms: self.node.quorum_age().map(|d| d.as_millis() as u64),
        }))
    }

    async fn report_status(&self, req: Request<ReportStatusRequest>) -> Result<Response<ReportStatusResponse>, Status> {
        crate::injected::peer_delay().await;
        leader_only(&self.node)?;
        sender_is(&req, req.get_ref().node_id)?;
        let req = req.into_inner();
        let reports = req
            .reports
            .iter()
            .map(TaskReport::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(ApiError::Invalid)?;
        self.control
            .report(req.node_id, reports)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        Ok(Response::new(ReportStatusResponse {}))
    }

    async fn propose_security(
        &self,
        req: Request<ProposeSecurityRequest>,
    ) -> Result<Response<ProposeSecurityResponse>, Status> {
        leader_only(&self.node)?;
        let op: SecurityOp = serde_json::from_slice(&req.get_ref().op)
            .map_err(|e| ApiError::Invalid(format!("bad security change: {e}")))?;
        if !matches!(op, SecurityOp::Init(_) | SecurityOp::Issued { .. }) {
            return Err(ApiError::Invalid("a node proposes only its CA or a certificate it issued".into()).into());
        }
        propose_security(&self.node, &op).await?;
        Ok(Response::new(ProposeSecurityResponse {}))
    }
}

/// Refuses a request whose body names another node than the caller's certificate (on a
/// secured node; an `--insecure` one has no certificates to go by).
pub fn sender_is<T>(req: &Request<T>, claimed: u64) -> Result<(), ApiError> {
    match crate::auth::caller(req).node {
        Some(id) if id != claimed => Err(ApiError::Unauthenticated(format!(
            "credential not allowed: the certificate of node {id} cannot speak for node {claimed}"
        ))),
        _ => Ok(()),
    }
}

/// Writes a change a node makes to the security state (its CA, a certificate it issued):
/// here when this node leads, else on the leader. The CA is written once: a cluster that
/// has one refuses another.
pub async fn propose_security(node: &Node, op: &SecurityOp) -> Result<(), ApiError> {
    if matches!(op, SecurityOp::Init(_)) && node.state.read().state.security.is_some() {
        return Ok(());
    }
    match leader_client(node).map_err(|e| ApiError::Unavailable(e.to_string()))? {
        None => node.command(crate::security::command(op.clone())).await.map(drop),
        Some(mut client) => {
            let body = serde_json::to_vec(op).map_err(|e| ApiError::Internal(e.to_string()))?;
            client
                .propose_security(ProposeSecurityRequest { op: body })
                .await
                .map(drop)
                .map_err(ApiError::Remote)
        }
    }
}

/// The leader's agent API, or `None` when this node leads.
fn leader_client(node: &Node) -> Result<Option<AgentServiceClient<tonic::transport::Channel>>, ReportError> {
    let leader = node.raft.metrics().borrow().current_leader;
    match leader {
        None => Err(ReportError::NoLeader),
        Some(l) if l == node.id && node.is_leader() => Ok(None),
        Some(l) => {
            let addr = node
                .member_addr(l)
                .ok_or_else(|| ReportError::Unreachable(format!("no address for leader {l}")))?;
            let channel = node
                .channel(&addr)
                .map_err(|e| ReportError::Unreachable(e.to_string()))?;
            Ok(Some(AgentServiceClient::new(channel)))
        }
    }
}

/// Sends an executor's reports to the leader (or records them, on the leader).
pub async fn send_reports(node: &Node, control: &Control, reports: Vec<TaskReport>) -> Result<(), ReportError> {
    match leader_client(node)? {
        None => control
            .report(node.id, reports)
            .await
            .map(drop)
            .map_err(|e| ReportError::Refused(e.to_string())),
        Some(mut client) => {
            let req = ReportStatusRequest {
                node_id: node.id,
                reports: reports.iter().map(TaskStatusReport::from).collect(),
            };
            match tokio::time::timeout(Duration::from_secs(5), client.report_status(req)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(s)) => Err(ReportError::Refused(s.message().to_string())),
                Err(_) => Err(ReportError::Unreachable("timed out".into())),
            }
        }
    }
}

/// Every `interval`, tells the leader this node is alive (registering it on first contact).
pub async fn heartbeat_loop(node: Arc<Node>, control: Arc<Control>, mesh: Arc<crate::mesh::Mesh>) {
    let cfg = &node.config;
    let mut req = HeartbeatRequest {
        node_id: node.id,
        address: cfg.advertised(),
        labels: cfg.labels.clone().into_iter().collect(),
        cpu_millis: cfg.capacity.cpu_millis,
        memory_mb: cfg.capacity.memory_mb,
        epoch: 0,
        instance: node.epoch.instance.clone(),
        publish_addr: cfg.publish_addr.map(|a| a.to_string()).unwrap_or_default(),
        mesh_errors: Default::default(),
    };
    let mut tick = tokio::time::interval(cfg.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        req.mesh_errors = mesh.errors();
        let sent = std::time::Instant::now();
        let result = match leader_client(&node) {
            Err(e) => Err(e.to_string()),
            Ok(None) => {
                node.metrics.saw_heartbeat(node.id);
                let acked = control.heartbeat(registration(&req)).await.map_err(|e| e.to_string());
                if acked.is_ok() {
                    if let Some(age) = node.quorum_age() {
                        node.cutoff.acknowledged(sent, age);
                    }
                }
                acked
            }
            Ok(Some(mut client)) => {
                let req = HeartbeatRequest {
                    epoch: node.epoch.get(),
                    ..req.clone()
                };
                match tokio::time::timeout(Duration::from_secs(1), client.heartbeat(req)).await {
                    Ok(Ok(answer)) => {
                        if let Some(age) = answer.get_ref().quorum_age_ms {
                            node.cutoff.acknowledged(sent, Duration::from_millis(age));
                        }
                        Ok(())
                    }
                    Ok(Err(s)) if crate::error::is_fenced(&s) => {
                        node.fence().fence(format!("refused by the leader: {}", s.message()));
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
