//! Every leader-routed RPC, declared once: what it needs (role), how it runs (read or
//! write), whether a retry is safe, and its handler. `routed.rs` routes them all.

use flotilla_proto::v1::{
    ApplyOutcome, ApplyRequest, ApplyResponse, DeclareNodeDeadRequest, DeleteServiceRequest, DeleteServiceResponse,
    DryRunRequest, DryRunResponse, GetServiceRequest, JoinRequest, JoinResponse, ListNodesRequest, ListNodesResponse,
    ListServicesRequest, ListServicesResponse, ListTasksRequest, ListTasksResponse, MeshBackend, NodeInfo,
    RemoveNodeRequest, RemoveNodeResponse, RolloutControlRequest, RolloutHistoryRequest, RolloutHistoryResponse,
    RolloutInfo, RolloutRequest, SaveSnapshotRequest, SaveSnapshotResponse, ScaleServiceRequest, ScaleServiceResponse,
    ServiceInfo, SetNodeAvailabilityRequest, TaskInfo,
};
use flotilla_types::{Availability, Command, NodeId, PutOutcome, Response as CmdResponse, RolloutOp, ServiceSpec};

use crate::cluster_service::ClusterApi;
use crate::error::ApiError;
use crate::node::{now_ms, Retry};
use crate::routed::{Kind, Routed};

/// Parses a spec document, refusing one over the spec size limit before any parsing.
fn parse_spec(document: &[u8]) -> Result<ServiceSpec, ApiError> {
    let limit = flotilla_types::MAX_SPEC_BYTES;
    if document.len() > limit {
        return Err(ApiError::Invalid(format!(
            "invalid spec: the document is {} bytes; the limit is {limit}",
            document.len()
        )));
    }
    flotilla_proto::convert::parse_spec_document(document).map_err(|e| ApiError::Invalid(format!("invalid spec: {e}")))
}

pub fn unexpected(r: CmdResponse) -> ApiError {
    ApiError::Internal(format!("unexpected state machine response {r:?}"))
}

pub fn service_not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("service {name:?} not found"))
}

// --- services ---------------------------------------------------------------------------

impl Routed for ApplyRequest {
    type Input = ServiceSpec;
    const KIND: Kind = Kind::Write;
    fn prepare(&self) -> Result<ServiceSpec, ApiError> {
        parse_spec(&self.spec_document)
    }
    /// Applying the same spec twice leaves it as once.
    fn retry(_: &ServiceSpec) -> Retry {
        Retry::Safe
    }
    async fn run(api: &ClusterApi, spec: &ServiceSpec) -> Result<ApplyResponse, ApiError> {
        let node = &api.node;
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
            exclusive_ingress: true,
        };
        match node.command(cmd).await? {
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
            (other, _) => Err(unexpected(other)),
        }
    }
}

impl Routed for DryRunRequest {
    type Input = ServiceSpec;
    /// On the leader after a read barrier: the preview starts from the current state.
    const KIND: Kind = Kind::Read;
    fn prepare(&self) -> Result<ServiceSpec, ApiError> {
        parse_spec(&self.spec_document)
    }
    async fn run(api: &ClusterApi, spec: &ServiceSpec) -> Result<DryRunResponse, ApiError> {
        Ok(crate::events::dry_run(&api.node, spec))
    }
}

impl Routed for DeleteServiceRequest {
    type Input = String;
    const KIND: Kind = Kind::Write;
    fn prepare(&self) -> Result<String, ApiError> {
        Ok(self.name.clone())
    }
    /// A repeat after a lost answer carries the same request id, so the leader answers it
    /// with the first answer instead of deleting again (which would fail with "not
    /// found", or delete a service created again meanwhile).
    fn retry(_: &String) -> Retry {
        Retry::Safe
    }
    async fn run(api: &ClusterApi, name: &String) -> Result<DeleteServiceResponse, ApiError> {
        let cmd = Command::DeleteService {
            name: name.clone(),
            at: now_ms(),
        };
        match api.node.command(cmd).await? {
            (CmdResponse::Deleted { name, version }, index) => Ok(DeleteServiceResponse {
                name,
                version,
                log_index: index,
            }),
            (other, _) => Err(unexpected(other)),
        }
    }
}

impl Routed for ScaleServiceRequest {
    type Input = Self;
    const KIND: Kind = Kind::Write;
    fn prepare(&self) -> Result<Self, ApiError> {
        Ok(self.clone())
    }
    /// Scaling to the same count twice leaves it as once.
    fn retry(_: &Self) -> Retry {
        Retry::Safe
    }
    async fn run(api: &ClusterApi, req: &Self) -> Result<ScaleServiceResponse, ApiError> {
        let cmd = Command::ScaleService {
            name: req.name.clone(),
            replicas: req.replicas,
            at: now_ms(),
        };
        match api.node.command(cmd).await? {
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
            (other, _) => Err(unexpected(other)),
        }
    }
}

impl Routed for GetServiceRequest {
    type Input = String;
    const KIND: Kind = Kind::Read;
    fn prepare(&self) -> Result<String, ApiError> {
        Ok(self.name.clone())
    }
    fn stale(&self) -> bool {
        self.stale
    }
    async fn run(api: &ClusterApi, name: &String) -> Result<ServiceInfo, ApiError> {
        let sm = api.node.state.read();
        let mut info = sm
            .state
            .services
            .get(name)
            .map(|s| crate::auth::service_info(&sm.state, s))
            .ok_or_else(|| service_not_found(name))?;
        let view = sm.state.mesh_view(name);
        let backend = |port: String, task: String, node: Option<u64>, reason: &str| MeshBackend {
            port,
            task,
            node_id: node.unwrap_or(0),
            used: reason.is_empty(),
            reason: reason.to_string(),
        };
        info.backends = view
            .backends
            .into_iter()
            .map(|(port, b)| backend(port, b.task, Some(b.node), ""))
            .chain(
                view.left_out
                    .into_iter()
                    .map(|(port, l)| backend(port, l.task, l.node, l.reason)),
            )
            .collect();
        info.mesh_errors = view.errors;
        Ok(info)
    }
}

impl Routed for ListServicesRequest {
    type Input = ();
    const KIND: Kind = Kind::Read;
    fn prepare(&self) -> Result<(), ApiError> {
        Ok(())
    }
    fn stale(&self) -> bool {
        self.stale
    }
    async fn run(api: &ClusterApi, _: &()) -> Result<ListServicesResponse, ApiError> {
        let sm = api.node.state.read();
        Ok(ListServicesResponse {
            services: sm
                .state
                .services
                .values()
                .map(|s| crate::auth::service_info(&sm.state, s))
                .collect(),
            node_id: api.node.id,
            applied_index: sm.last_applied.map_or(0, |l| l.index),
        })
    }
}

impl Routed for ListTasksRequest {
    /// The service, or empty for all.
    type Input = String;
    const KIND: Kind = Kind::Read;
    fn prepare(&self) -> Result<String, ApiError> {
        Ok(self.service.clone())
    }
    fn stale(&self) -> bool {
        self.stale
    }
    async fn run(api: &ClusterApi, service: &String) -> Result<ListTasksResponse, ApiError> {
        let sm = api.node.state.read();
        if !service.is_empty()
            && !sm.state.services.contains_key(service)
            && !sm.state.tasks.values().any(|t| t.service == *service)
        {
            return Err(service_not_found(service));
        }
        let tasks = sm
            .state
            .tasks
            .values()
            .filter(|t| service.is_empty() || t.service == *service)
            .map(TaskInfo::from)
            .collect();
        Ok(ListTasksResponse { tasks })
    }
}

// --- nodes ------------------------------------------------------------------------------

impl Routed for ListNodesRequest {
    type Input = ();
    const KIND: Kind = Kind::Read;
    fn prepare(&self) -> Result<(), ApiError> {
        Ok(())
    }
    fn stale(&self) -> bool {
        self.stale
    }
    async fn run(api: &ClusterApi, _: &()) -> Result<ListNodesResponse, ApiError> {
        let sm = api.node.state.read();
        Ok(ListNodesResponse {
            nodes: sm
                .state
                .nodes
                .values()
                .map(|n| NodeInfo::from_state(n, &sm.state))
                .collect(),
        })
    }
}

impl Routed for SetNodeAvailabilityRequest {
    type Input = (NodeId, Availability);
    const KIND: Kind = Kind::Write;
    fn prepare(&self) -> Result<(NodeId, Availability), ApiError> {
        let availability = Availability::try_from(self.availability())
            .map_err(|_| ApiError::Invalid("availability is not one of active, pause, drain".into()))?;
        Ok((self.id, availability))
    }
    /// Setting the same availability twice leaves it as once.
    fn retry(_: &(NodeId, Availability)) -> Retry {
        Retry::Safe
    }
    async fn run(api: &ClusterApi, &(id, availability): &(NodeId, Availability)) -> Result<NodeInfo, ApiError> {
        let cmd = Command::SetAvailability {
            id,
            availability,
            at: now_ms(),
        };
        match api.node.command(cmd).await? {
            (CmdResponse::Node { id }, _) => node_info(api, id),
            (other, _) => Err(unexpected(other)),
        }
    }
}

/// Node `id` as the replica holds it now.
fn node_info(api: &ClusterApi, id: NodeId) -> Result<NodeInfo, ApiError> {
    let sm = api.node.state.read();
    let node = sm
        .state
        .nodes
        .get(&id)
        .ok_or_else(|| ApiError::NotFound(format!("node {id} not found")))?;
    Ok(NodeInfo::from_state(node, &sm.state))
}

impl Routed for DeclareNodeDeadRequest {
    type Input = NodeId;
    const KIND: Kind = Kind::Write;
    fn prepare(&self) -> Result<NodeId, ApiError> {
        if self.id == 0 {
            return Err(ApiError::Invalid("node id 0 does not exist: ids start at 1".into()));
        }
        Ok(self.id)
    }
    /// Declaring a node dead twice leaves it as once.
    fn retry(_: &NodeId) -> Retry {
        Retry::Safe
    }
    async fn run(api: &ClusterApi, &id: &NodeId) -> Result<NodeInfo, ApiError> {
        if id == api.node.id {
            return Err(ApiError::Invalid(format!(
                "node {id} leads the cluster and answers: it is not dead (to take it out: flotilla node remove {id})"
            )));
        }
        if !api.node.state.read().state.nodes.contains_key(&id) {
            return Err(ApiError::NotFound(format!("node {id} not found")));
        }
        tracing::warn!(node = id, "declared dead by an operator: its tasks are replaced now");
        let cmd = Command::DeclareNodeDead { id, at: now_ms() };
        match api.node.command(cmd).await? {
            (CmdResponse::Node { id }, _) => node_info(api, id),
            (other, _) => Err(unexpected(other)),
        }
    }
}

impl Routed for JoinRequest {
    type Input = Self;
    const KIND: Kind = Kind::Write;
    fn prepare(&self) -> Result<Self, ApiError> {
        tracing::info!(id = self.id, addr = %self.address, fresh = self.fresh, "join request");
        Ok(self.clone())
    }
    /// A joining node asking again is recognised as the same member.
    fn retry(_: &Self) -> Retry {
        Retry::Safe
    }
    async fn run(api: &ClusterApi, req: &Self) -> Result<JoinResponse, ApiError> {
        crate::membership::join(&api.node, req).await
    }
}

impl Routed for RemoveNodeRequest {
    type Input = NodeId;
    const KIND: Kind = Kind::Write;
    fn prepare(&self) -> Result<NodeId, ApiError> {
        Ok(self.id)
    }
    // Retried only when it did not run (the default for writes): a repeat after a lost
    // answer would be refused as "already removed".
    async fn run(api: &ClusterApi, id: &NodeId) -> Result<RemoveNodeResponse, ApiError> {
        crate::membership::remove(&api.node, *id).await
    }
}

impl Routed for SaveSnapshotRequest {
    type Input = ();
    /// After the read barrier, everything acknowledged before the call is in the image.
    const KIND: Kind = Kind::Read;
    fn prepare(&self) -> Result<(), ApiError> {
        Ok(())
    }
    async fn run(api: &ClusterApi, _: &()) -> Result<SaveSnapshotResponse, ApiError> {
        crate::backup::save(&api.node)
    }
}

// --- rollouts ---------------------------------------------------------------------------

impl Routed for RolloutRequest {
    type Input = String;
    const KIND: Kind = Kind::Read;
    fn prepare(&self) -> Result<String, ApiError> {
        Ok(self.name.clone())
    }
    fn stale(&self) -> bool {
        self.stale
    }
    async fn run(api: &ClusterApi, name: &String) -> Result<RolloutInfo, ApiError> {
        api.rollout_info(name)
    }
}

impl Routed for RolloutHistoryRequest {
    type Input = String;
    const KIND: Kind = Kind::Read;
    fn prepare(&self) -> Result<String, ApiError> {
        Ok(self.name.clone())
    }
    fn stale(&self) -> bool {
        self.stale
    }
    async fn run(api: &ClusterApi, name: &String) -> Result<RolloutHistoryResponse, ApiError> {
        api.rollout_history(name)
    }
}

impl Routed for RolloutControlRequest {
    type Input = (String, RolloutOp);
    const KIND: Kind = Kind::Write;
    fn prepare(&self) -> Result<(String, RolloutOp), ApiError> {
        let op = RolloutOp::try_from(self)
            .map_err(|_| ApiError::Invalid("rollout action is not one of pause, resume, undo".into()))?;
        Ok((self.name.clone(), op))
    }
    /// Pause and resume are idempotent; an undo retried after a lost answer carries the
    /// same request id and is answered, not applied, the second time.
    fn retry(_: &(String, RolloutOp)) -> Retry {
        Retry::Safe
    }
    async fn run(api: &ClusterApi, (name, op): &(String, RolloutOp)) -> Result<RolloutInfo, ApiError> {
        let cmd = Command::Rollout {
            name: name.clone(),
            op: op.clone(),
            at: now_ms(),
        };
        match api.node.command(cmd).await? {
            (CmdResponse::Rollout { name, .. }, _) => api.rollout_info(&name),
            (other, _) => Err(unexpected(other)),
        }
    }
}
