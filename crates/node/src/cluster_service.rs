//! `ClusterService`: the operator API. The leader-routed RPCs (writes and linearizable
//! reads, declared in `rpcs.rs`) all go through [`ClusterApi::route`]; the others answer
//! from the node asked (its status, the status fan-out, logs, events, verify).

use std::sync::Arc;

use flotilla_proto::v1::cluster_service_server::ClusterService;
use flotilla_proto::v1::{
    ApplyRequest, ApplyResponse, ClusterStatusRequest, ClusterStatusResponse, DeclareNodeDeadRequest,
    DeleteServiceRequest, DeleteServiceResponse, GetServiceRequest, ListNodesRequest, ListNodesResponse,
    ListServicesRequest, ListServicesResponse, ListTasksRequest, ListTasksResponse, MemberStatus, NodeInfo,
    NodeStatusRequest, ScaleServiceRequest, ScaleServiceResponse, ServiceInfo, SetNodeAvailabilityRequest,
};
use tonic::{Request, Response, Status};

use crate::node::Node;

pub struct ClusterApi {
    pub(crate) node: Arc<Node>,
    driver: Arc<dyn flotilla_executor::Driver>,
}

impl ClusterApi {
    pub fn new(node: Arc<Node>, driver: Arc<dyn flotilla_executor::Driver>) -> Self {
        ClusterApi { node, driver }
    }
}

#[tonic::async_trait]
impl ClusterService for ClusterApi {
    type LogsStream = crate::logs::LogChunks;
    type EventsStream = crate::events::EventStream;
    type ExecStream = crate::exec::ExecStream;

    async fn exec(
        &self,
        req: Request<tonic::Streaming<flotilla_proto::v1::ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        Ok(Response::new(
            crate::exec::cluster(self, self.driver.clone(), req).await?,
        ))
    }

    async fn record_exec(
        &self,
        req: Request<flotilla_proto::v1::RecordExecRequest>,
    ) -> Result<Response<flotilla_proto::v1::RecordExecResponse>, Status> {
        self.route(req).await
    }

    async fn top(
        &self,
        _req: Request<flotilla_proto::v1::TopRequest>,
    ) -> Result<Response<flotilla_proto::v1::TopResponse>, Status> {
        Ok(Response::new(crate::top::top(&self.node, self.driver.as_ref()).await?))
    }

    async fn apply(&self, req: Request<ApplyRequest>) -> Result<Response<ApplyResponse>, Status> {
        self.route(req).await
    }

    async fn dry_run(
        &self,
        req: Request<flotilla_proto::v1::DryRunRequest>,
    ) -> Result<Response<flotilla_proto::v1::DryRunResponse>, Status> {
        self.route(req).await
    }

    async fn delete_service(
        &self,
        req: Request<DeleteServiceRequest>,
    ) -> Result<Response<DeleteServiceResponse>, Status> {
        self.route(req).await
    }

    async fn scale_service(&self, req: Request<ScaleServiceRequest>) -> Result<Response<ScaleServiceResponse>, Status> {
        self.route(req).await
    }

    async fn get_service(&self, req: Request<GetServiceRequest>) -> Result<Response<ServiceInfo>, Status> {
        self.route(req).await
    }

    async fn list_services(&self, req: Request<ListServicesRequest>) -> Result<Response<ListServicesResponse>, Status> {
        self.route(req).await
    }

    async fn list_tasks(&self, req: Request<ListTasksRequest>) -> Result<Response<ListTasksResponse>, Status> {
        self.route(req).await
    }

    async fn list_nodes(&self, req: Request<ListNodesRequest>) -> Result<Response<ListNodesResponse>, Status> {
        self.route(req).await
    }

    async fn set_node_availability(
        &self,
        req: Request<SetNodeAvailabilityRequest>,
    ) -> Result<Response<NodeInfo>, Status> {
        self.route(req).await
    }

    async fn declare_node_dead(&self, req: Request<DeclareNodeDeadRequest>) -> Result<Response<NodeInfo>, Status> {
        self.route(req).await
    }

    async fn rollout_status(
        &self,
        req: Request<flotilla_proto::v1::RolloutRequest>,
    ) -> Result<Response<flotilla_proto::v1::RolloutInfo>, Status> {
        self.route(req).await
    }

    async fn rollout_history(
        &self,
        req: Request<flotilla_proto::v1::RolloutHistoryRequest>,
    ) -> Result<Response<flotilla_proto::v1::RolloutHistoryResponse>, Status> {
        self.route(req).await
    }

    async fn rollout_control(
        &self,
        req: Request<flotilla_proto::v1::RolloutControlRequest>,
    ) -> Result<Response<flotilla_proto::v1::RolloutInfo>, Status> {
        self.route(req).await
    }

    async fn join(
        &self,
        req: Request<flotilla_proto::v1::JoinRequest>,
    ) -> Result<Response<flotilla_proto::v1::JoinResponse>, Status> {
        self.route(req).await
    }

    async fn remove_node(
        &self,
        req: Request<flotilla_proto::v1::RemoveNodeRequest>,
    ) -> Result<Response<flotilla_proto::v1::RemoveNodeResponse>, Status> {
        self.route(req).await
    }

    async fn save_snapshot(
        &self,
        req: Request<flotilla_proto::v1::SaveSnapshotRequest>,
    ) -> Result<Response<flotilla_proto::v1::SaveSnapshotResponse>, Status> {
        self.route(req).await
    }

    async fn issue_certificate(
        &self,
        req: Request<flotilla_proto::v1::IssueCertificateRequest>,
    ) -> Result<Response<flotilla_proto::v1::IssueCertificateResponse>, Status> {
        Ok(Response::new(crate::security::issue(&self.node, req.get_ref()).await?))
    }

    async fn create_token(
        &self,
        req: Request<flotilla_proto::v1::CreateTokenRequest>,
    ) -> Result<Response<flotilla_proto::v1::CreateTokenResponse>, Status> {
        self.route(req).await
    }

    async fn list_tokens(
        &self,
        req: Request<flotilla_proto::v1::ListTokensRequest>,
    ) -> Result<Response<flotilla_proto::v1::ListTokensResponse>, Status> {
        self.route(req).await
    }

    async fn revoke_token(
        &self,
        req: Request<flotilla_proto::v1::RevokeTokenRequest>,
    ) -> Result<Response<flotilla_proto::v1::RevokeTokenResponse>, Status> {
        self.route(req).await
    }

    async fn get_join_token(
        &self,
        req: Request<flotilla_proto::v1::GetJoinTokenRequest>,
    ) -> Result<Response<flotilla_proto::v1::JoinTokenResponse>, Status> {
        self.route(req).await
    }

    async fn rotate_join_token(
        &self,
        req: Request<flotilla_proto::v1::RotateJoinTokenRequest>,
    ) -> Result<Response<flotilla_proto::v1::JoinTokenResponse>, Status> {
        self.route(req).await
    }

    async fn ca_status(
        &self,
        req: Request<flotilla_proto::v1::CaStatusRequest>,
    ) -> Result<Response<flotilla_proto::v1::CaStatusResponse>, Status> {
        self.route(req).await
    }

    async fn rotate_ca(
        &self,
        req: Request<flotilla_proto::v1::RotateCaRequest>,
    ) -> Result<Response<flotilla_proto::v1::CaStatusResponse>, Status> {
        self.route(req).await
    }

    async fn events(
        &self,
        req: Request<flotilla_proto::v1::EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        Ok(Response::new(crate::events::stream(&self.node, req.into_inner())?))
    }

    async fn verify(
        &self,
        _req: Request<flotilla_proto::v1::VerifyRequest>,
    ) -> Result<Response<flotilla_proto::v1::VerifyResponse>, Status> {
        Ok(Response::new(crate::verify::verify(&self.node).await?))
    }

    async fn state_digest(
        &self,
        req: Request<flotilla_proto::v1::StateDigestRequest>,
    ) -> Result<Response<flotilla_proto::v1::StateDigestResponse>, Status> {
        Ok(self.with_leader(crate::verify::local(&self.node, req.into_inner().index).await?))
    }

    async fn logs(&self, req: Request<flotilla_proto::v1::LogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
        let chunks = crate::logs::gather(self.node.clone(), self.driver.clone(), req.into_inner()).await?;
        Ok(Response::new(chunks))
    }

    async fn inspect_task(
        &self,
        req: Request<flotilla_proto::v1::InspectTaskRequest>,
    ) -> Result<Response<flotilla_proto::v1::TaskContainer>, Status> {
        Ok(Response::new(
            crate::inspect::inspect(&self.node, self.driver.clone(), req.into_inner()).await?,
        ))
    }

    async fn node_status(&self, _req: Request<NodeStatusRequest>) -> Result<Response<MemberStatus>, Status> {
        Ok(Response::new(self.node.local_status()))
    }

    async fn cluster_status(
        &self,
        _req: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        let me = self.node.local_status();
        let membership = self.node.raft.metrics().borrow().membership_config.clone();
        let mut members = self.node.members();
        // Before the cluster is initialised, show the configured peers.
        if members.is_empty() {
            members = self.node.config.peers.clone().into_iter().collect();
        }
        let voters: Vec<u64> = membership.membership().voter_ids().collect();
        let mut statuses = self.node.statuses(members).await;
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
}
