//! `ClusterService`: the operator API. Writes and linearizable reads run on the leader
//! (forwarded there from followers); `stale` reads and `NodeStatus` answer locally.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use flotilla_proto::v1::cluster_service_client::ClusterServiceClient;
use flotilla_proto::v1::cluster_service_server::ClusterService;
use flotilla_proto::v1::{
    ApplyOutcome, ApplyRequest, ApplyResponse, ClusterStatusRequest, ClusterStatusResponse, DeleteServiceRequest,
    DeleteServiceResponse, GetServiceRequest, ListNodesRequest, ListNodesResponse, ListServicesRequest,
    ListServicesResponse, ListTasksRequest, ListTasksResponse, MemberStatus, NodeInfo, NodeStatusRequest,
    ScaleServiceRequest, ScaleServiceResponse, ServiceInfo, SetNodeAvailabilityRequest, TaskInfo,
};
use flotilla_proto::FORWARDED_HEADER;
use flotilla_types::{Availability, Command, CommandError, PutOutcome, Response as CmdResponse, ServiceSpec};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::node::{now_ms, LocalError, Node};

/// How long the status fan-out waits for each member.
const STATUS_TIMEOUT: Duration = Duration::from_millis(1000);

pub struct ClusterApi {
    pub(crate) node: Arc<Node>,
    driver: Arc<dyn flotilla_executor::Driver>,
}

impl ClusterApi {
    pub fn new(node: Arc<Node>, driver: Arc<dyn flotilla_executor::Driver>) -> Self {
        ClusterApi { node, driver }
    }
}

pub(crate) fn forwarded<T>(req: &Request<T>) -> bool {
    req.metadata().contains_key(FORWARDED_HEADER)
}

pub(crate) fn forward<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(FORWARDED_HEADER, "1".parse().expect("ascii"));
    r
}

pub(crate) fn command_error(e: CommandError) -> Status {
    match e {
        CommandError::ServiceNotFound { .. } | CommandError::NodeNotFound { .. } => Status::not_found(e.to_string()),
        CommandError::InvalidSpec(_) => Status::invalid_argument(e.to_string()),
        CommandError::Rollout { .. } => Status::failed_precondition(e.to_string()),
        CommandError::NodeRemoved { .. } => Status::failed_precondition(e.to_string()),
    }
}

pub(crate) fn unexpected(r: CmdResponse) -> Status {
    Status::internal(format!("unexpected state machine response {r:?}"))
}

impl ClusterApi {
    /// Wraps an answer with the leader's address (`x-flotilla-leader`), so the CLI can go
    /// to the leader first next time.
    pub(crate) fn with_leader<T>(&self, msg: T) -> Response<T> {
        let mut r = Response::new(msg);
        let leader = self.node.raft.metrics().borrow().current_leader;
        if let Some(addr) = leader.and_then(|l| self.node.member_addr(l)) {
            if let Ok(v) = addr.parse() {
                r.metadata_mut().insert(flotilla_proto::LEADER_HEADER, v);
            }
        }
        r
    }

    /// A read: this node's replica when `stale`, else on the leader after a read barrier
    /// (forwarded there from a follower).
    pub(crate) async fn read<T, L, R, RF>(
        &self,
        fwd: bool,
        stale: bool,
        local: L,
        remote: R,
    ) -> Result<Response<T>, Status>
    where
        L: Fn() -> Result<T, Status>,
        R: Fn(ClusterServiceClient<Channel>) -> RF,
        RF: Future<Output = Result<Response<T>, Status>>,
    {
        if stale {
            return local().map(Response::new);
        }
        let local = &local;
        self.node
            .on_leader(
                fwd,
                true,
                || async move {
                    self.node.read_barrier().await?;
                    local().map_err(LocalError::Status)
                },
                remote,
            )
            .await
            .map(|r| self.with_leader(r))
    }

    async fn apply_local(&self, spec: &ServiceSpec) -> Result<ApplyResponse, LocalError> {
        let node = &self.node;
        // An identical spec writes nothing. The local replica may be stale until the read
        // barrier, so "unchanged" is only trusted after it.
        let preview = node.state.read().state.preview_put(spec);
        if preview == Some(PutOutcome::Unchanged) {
            node.read_barrier().await?;
            let sm = node.state.read();
            if let Some(svc) = sm.state.services.get(&spec.name).filter(|s| s.spec == *spec) {
                return Ok(ApplyResponse {
                    name: svc.spec.name.clone(),
                    version: svc.version,
                    outcome: ApplyOutcome::Unchanged.into(),
                    previous_version: 0,
                    log_index: 0,
                    template_version: svc.template_version,
                });
            }
        }
        let cmd = Command::PutService {
            spec: spec.clone(),
            at: now_ms(),
        };
        match node.write(cmd).await? {
            (CmdResponse::Service { name, version, outcome }, index) => Ok(ApplyResponse {
                // Applied on this node (the leader) before the write returned.
                template_version: node
                    .state
                    .read()
                    .state
                    .services
                    .get(&name)
                    .and_then(|s| s.revision(version))
                    .map_or(0, |r| r.template_version),
                name,
                version,
                outcome: ApplyOutcome::from(outcome).into(),
                previous_version: match outcome {
                    PutOutcome::Updated { from } => from,
                    _ => 0,
                },
                log_index: index,
            }),
            (CmdResponse::Error(e), _) => Err(LocalError::Status(command_error(e))),
            (other, _) => Err(LocalError::Status(unexpected(other))),
        }
    }

    async fn delete_local(&self, name: &str) -> Result<DeleteServiceResponse, LocalError> {
        let cmd = Command::DeleteService {
            name: name.to_string(),
            at: now_ms(),
        };
        match self.node.write(cmd).await? {
            (CmdResponse::Deleted { name, version }, index) => Ok(DeleteServiceResponse {
                name,
                version,
                log_index: index,
            }),
            (CmdResponse::Error(e), _) => Err(LocalError::Status(command_error(e))),
            (other, _) => Err(LocalError::Status(unexpected(other))),
        }
    }

    async fn scale_local(&self, name: &str, replicas: u32) -> Result<ScaleServiceResponse, LocalError> {
        let cmd = Command::ScaleService {
            name: name.to_string(),
            replicas,
            at: now_ms(),
        };
        match self.node.write(cmd).await? {
            (
                CmdResponse::Scaled {
                    name,
                    version,
                    replicas,
                },
                _,
            ) => Ok(ScaleServiceResponse {
                name,
                version,
                replicas,
            }),
            (CmdResponse::Error(e), _) => Err(LocalError::Status(command_error(e))),
            (other, _) => Err(LocalError::Status(unexpected(other))),
        }
    }

    async fn availability_local(&self, id: u64, availability: Availability) -> Result<NodeInfo, LocalError> {
        let cmd = Command::SetAvailability {
            id,
            availability,
            at: now_ms(),
        };
        match self.node.write(cmd).await? {
            (CmdResponse::Node { id }, _) => {
                let sm = self.node.state.read();
                let node = sm
                    .state
                    .nodes
                    .get(&id)
                    .ok_or_else(|| LocalError::Status(Status::not_found(format!("node {id} not found"))))?;
                Ok(NodeInfo::from_state(node, &sm.state))
            }
            (CmdResponse::Error(e), _) => Err(LocalError::Status(command_error(e))),
            (other, _) => Err(LocalError::Status(unexpected(other))),
        }
    }

    fn tasks_local(&self, service: &str) -> Result<ListTasksResponse, Status> {
        let sm = self.node.state.read();
        if !service.is_empty()
            && !sm.state.services.contains_key(service)
            && !sm.state.tasks.values().any(|t| t.service == service)
        {
            return Err(Status::not_found(format!("service {service:?} not found")));
        }
        let tasks = sm
            .state
            .tasks
            .values()
            .filter(|t| service.is_empty() || t.service == service)
            .map(TaskInfo::from)
            .collect();
        Ok(ListTasksResponse { tasks })
    }

    fn nodes_local(&self) -> ListNodesResponse {
        let sm = self.node.state.read();
        ListNodesResponse {
            nodes: sm
                .state
                .nodes
                .values()
                .map(|n| NodeInfo::from_state(n, &sm.state))
                .collect(),
        }
    }

    fn get_local(&self, name: &str) -> Result<ServiceInfo, Status> {
        let sm = self.node.state.read();
        sm.state
            .services
            .get(name)
            .map(ServiceInfo::from)
            .ok_or_else(|| Status::not_found(format!("service {name:?} not found")))
    }

    fn list_local(&self) -> ListServicesResponse {
        let sm = self.node.state.read();
        ListServicesResponse {
            services: sm.state.services.values().map(ServiceInfo::from).collect(),
            node_id: self.node.id,
            applied_index: sm.last_applied.map_or(0, |l| l.index),
        }
    }

    async fn member_status(&self, id: u64, addr: String) -> MemberStatus {
        let unreachable = |error: String| MemberStatus {
            id,
            address: addr.clone(),
            reachable: false,
            error,
            ..Default::default()
        };
        let mut client = match self.node.cluster_client(&addr) {
            Ok(c) => c,
            Err(e) => return unreachable(e.message().to_string()),
        };
        match tokio::time::timeout(STATUS_TIMEOUT, client.node_status(NodeStatusRequest {})).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(s)) => unreachable(s.message().to_string()),
            Err(_) => unreachable(format!("no answer within {STATUS_TIMEOUT:?}")),
        }
    }
}

#[tonic::async_trait]
impl ClusterService for ClusterApi {
    type LogsStream = crate::logs::LogChunks;
    type EventsStream = crate::events::EventStream;

    async fn events(
        &self,
        req: Request<flotilla_proto::v1::EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        crate::events::stream(&self.node, req.into_inner()).map(Response::new)
    }

    async fn dry_run(
        &self,
        req: Request<ApplyRequest>,
    ) -> Result<Response<flotilla_proto::v1::DryRunResponse>, Status> {
        let fwd = forwarded(&req);
        let msg = req.into_inner();
        let spec = ServiceSpec::parse(&msg.spec).map_err(|e| Status::invalid_argument(format!("invalid spec: {e}")))?;
        let (spec, msg) = (&spec, &msg);
        // On the leader, after a read barrier: the preview starts from the current state.
        self.node
            .on_leader(
                fwd,
                true,
                || async move {
                    self.node.read_barrier().await?;
                    Ok(crate::events::dry_run(&self.node, spec))
                },
                |mut c| async move { c.dry_run(forward(msg.clone())).await },
            )
            .await
            .map(|r| self.with_leader(r))
    }

    async fn verify(
        &self,
        _req: Request<flotilla_proto::v1::VerifyRequest>,
    ) -> Result<Response<flotilla_proto::v1::VerifyResponse>, Status> {
        crate::verify::verify(&self.node).await.map(Response::new)
    }

    async fn state_digest(
        &self,
        req: Request<flotilla_proto::v1::StateDigestRequest>,
    ) -> Result<Response<flotilla_proto::v1::StateDigestResponse>, Status> {
        crate::verify::local(&self.node, req.into_inner().index)
            .await
            .map(|r| self.with_leader(r))
    }

    async fn logs(&self, req: Request<flotilla_proto::v1::LogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
        let req = req.into_inner();
        crate::logs::gather(
            self.node.clone(),
            self.driver.clone(),
            &req.target,
            req.follow,
            req.tail,
        )
        .await
        .map(Response::new)
    }

    #[tracing::instrument(skip_all, fields(node = self.node.id))]
    async fn apply(&self, req: Request<ApplyRequest>) -> Result<Response<ApplyResponse>, Status> {
        let fwd = forwarded(&req);
        let msg = req.into_inner();
        let spec = ServiceSpec::parse(&msg.spec).map_err(|e| Status::invalid_argument(format!("invalid spec: {e}")))?;
        tracing::debug!(service = %spec.name, "apply");
        let spec = &spec;
        let msg = &msg;
        self.node
            .on_leader(
                fwd,
                true,
                || self.apply_local(spec),
                |mut c| async move { c.apply(forward(msg.clone())).await },
            )
            .await
            .map(|r| self.with_leader(r))
    }

    #[tracing::instrument(skip_all, fields(node = self.node.id))]
    async fn delete_service(
        &self,
        req: Request<DeleteServiceRequest>,
    ) -> Result<Response<DeleteServiceResponse>, Status> {
        let fwd = forwarded(&req);
        let msg = req.into_inner();
        let msg = &msg;
        self.node
            .on_leader(
                fwd,
                false,
                || self.delete_local(&msg.name),
                |mut c| async move { c.delete_service(forward(msg.clone())).await },
            )
            .await
            .map(|r| self.with_leader(r))
    }

    async fn get_service(&self, req: Request<GetServiceRequest>) -> Result<Response<ServiceInfo>, Status> {
        let fwd = forwarded(&req);
        let msg = req.into_inner();
        let msg = &msg;
        self.read(
            fwd,
            msg.stale,
            || self.get_local(&msg.name),
            |mut c| async move { c.get_service(forward(msg.clone())).await },
        )
        .await
    }

    async fn list_services(&self, req: Request<ListServicesRequest>) -> Result<Response<ListServicesResponse>, Status> {
        let fwd = forwarded(&req);
        let msg = req.into_inner();
        self.read(
            fwd,
            msg.stale,
            || Ok(self.list_local()),
            |mut c| async move { c.list_services(forward(msg)).await },
        )
        .await
    }

    async fn cluster_status(
        &self,
        _req: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        let me = self.node.local_status();
        let membership = self.node.raft.metrics().borrow().membership_config.clone();
        let mut members: Vec<(u64, String)> = membership
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        // Before the cluster is initialised, show the configured peers.
        if members.is_empty() {
            members = self.node.config.peers.clone().into_iter().collect();
        }
        let voters: Vec<u64> = membership.membership().voter_ids().collect();
        let fetches = members.into_iter().map(|(id, addr)| {
            let me = me.clone();
            async move {
                if id == self.node.id {
                    me
                } else {
                    self.member_status(id, addr).await
                }
            }
        });
        let mut statuses = futures::future::join_all(fetches).await;
        for s in &mut statuses {
            // An unreachable member's voting right comes from the membership we hold.
            if !s.reachable {
                s.voter = voters.contains(&s.id);
            }
        }
        // The freshest view of leader and term among the members that answered.
        let best = statuses
            .iter()
            .filter(|s| s.reachable)
            .max_by_key(|s| (s.term, s.leader_id != 0))
            .cloned()
            .unwrap_or(me);
        let (voters, reachable_voters, can_lose) = crate::status::annotate(&mut statuses, best.leader_id);
        let epoch = self.node.epoch.get().max(self.node.state.read().state.cluster_epoch());
        Ok(Response::new(ClusterStatusResponse {
            leader_id: best.leader_id,
            term: best.term,
            members: statuses,
            answered_by: self.node.id,
            voters,
            reachable_voters,
            can_lose,
            epoch,
        }))
    }

    async fn node_status(&self, _req: Request<NodeStatusRequest>) -> Result<Response<MemberStatus>, Status> {
        Ok(Response::new(self.node.local_status()))
    }

    #[tracing::instrument(skip_all, fields(node = self.node.id))]
    async fn scale_service(&self, req: Request<ScaleServiceRequest>) -> Result<Response<ScaleServiceResponse>, Status> {
        let fwd = forwarded(&req);
        let msg = req.into_inner();
        let msg = &msg;
        self.node
            .on_leader(
                fwd,
                true,
                || self.scale_local(&msg.name, msg.replicas),
                |mut c| async move { c.scale_service(forward(msg.clone())).await },
            )
            .await
            .map(|r| self.with_leader(r))
    }

    async fn list_tasks(&self, req: Request<ListTasksRequest>) -> Result<Response<ListTasksResponse>, Status> {
        let fwd = forwarded(&req);
        let msg = req.into_inner();
        let msg = &msg;
        self.read(
            fwd,
            msg.stale,
            || self.tasks_local(&msg.service),
            |mut c| async move { c.list_tasks(forward(msg.clone())).await },
        )
        .await
    }

    async fn list_nodes(&self, req: Request<ListNodesRequest>) -> Result<Response<ListNodesResponse>, Status> {
        let fwd = forwarded(&req);
        let msg = req.into_inner();
        self.read(
            fwd,
            msg.stale,
            || Ok(self.nodes_local()),
            |mut c| async move { c.list_nodes(forward(msg)).await },
        )
        .await
    }

    async fn rollout_status(
        &self,
        req: Request<flotilla_proto::v1::RolloutRequest>,
    ) -> Result<Response<flotilla_proto::v1::RolloutInfo>, Status> {
        self.rollout_status_rpc(req).await
    }

    async fn rollout_history(
        &self,
        req: Request<flotilla_proto::v1::RolloutRequest>,
    ) -> Result<Response<flotilla_proto::v1::RolloutHistoryResponse>, Status> {
        self.rollout_history_rpc(req).await
    }

    async fn rollout_control(
        &self,
        req: Request<flotilla_proto::v1::RolloutControlRequest>,
    ) -> Result<Response<flotilla_proto::v1::RolloutInfo>, Status> {
        self.rollout_control_rpc(req).await
    }

    #[tracing::instrument(skip_all, fields(node = self.node.id))]
    async fn set_node_availability(
        &self,
        req: Request<SetNodeAvailabilityRequest>,
    ) -> Result<Response<NodeInfo>, Status> {
        let fwd = forwarded(&req);
        let msg = req.into_inner();
        let availability = match msg.availability.as_str() {
            "active" => Availability::Active,
            "pause" => Availability::Pause,
            "drain" => Availability::Drain,
            other => {
                return Err(Status::invalid_argument(format!(
                    "availability {other:?} is not one of active, pause, drain"
                )))
            }
        };
        let msg = &msg;
        self.node
            .on_leader(
                fwd,
                true,
                || self.availability_local(msg.id, availability),
                |mut c| async move { c.set_node_availability(forward(msg.clone())).await },
            )
            .await
            .map(|r| self.with_leader(r))
    }

    #[tracing::instrument(skip_all, fields(node = self.node.id))]
    async fn join(
        &self,
        req: Request<flotilla_proto::v1::JoinRequest>,
    ) -> Result<Response<flotilla_proto::v1::JoinResponse>, Status> {
        let fwd = forwarded(&req);
        let msg = req.into_inner();
        tracing::info!(id = msg.id, addr = %msg.address, fresh = msg.fresh, "join request");
        let msg = &msg;
        self.node
            .on_leader(
                fwd,
                true,
                || crate::membership::join(&self.node, msg),
                |mut c| async move { c.join(forward(msg.clone())).await },
            )
            .await
            .map(Response::new)
    }

    #[tracing::instrument(skip_all, fields(node = self.node.id))]
    async fn remove_node(
        &self,
        req: Request<flotilla_proto::v1::RemoveNodeRequest>,
    ) -> Result<Response<flotilla_proto::v1::RemoveNodeResponse>, Status> {
        let fwd = forwarded(&req);
        let msg = req.into_inner();
        let msg = &msg;
        self.node
            .on_leader(
                fwd,
                false,
                || crate::membership::remove(&self.node, msg.id),
                |mut c| async move { c.remove_node(forward(*msg)).await },
            )
            .await
            .map(|r| self.with_leader(r))
    }

    async fn save_snapshot(
        &self,
        req: Request<flotilla_proto::v1::SaveSnapshotRequest>,
    ) -> Result<Response<flotilla_proto::v1::SaveSnapshotResponse>, Status> {
        let fwd = forwarded(&req);
        let msg = req.into_inner();
        self.node
            .on_leader(
                fwd,
                true,
                || crate::backup::save(&self.node),
                |mut c| async move { c.save_snapshot(forward(msg)).await },
            )
            .await
            .map(|r| self.with_leader(r))
    }
}
