//! Every method of `ClusterService`, named by its request type: one declaration that the
//! CLI (`Client::send`) and a follower forwarding to its leader both call through, so no
//! caller writes a per-method closure.

use std::future::Future;
use std::pin::Pin;

use tonic::codec::Streaming;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::v1::cluster_service_client::ClusterServiceClient;
use crate::v1::*;

/// Largest API message either side sends or accepts (a spec is at most 1 MiB; a list of
/// many services is larger).
pub const MAX_API_MESSAGE: usize = 64 << 20;

/// Largest request a node accepts on the client API: a request carries at most one spec
/// (1 MiB) and a few names; only answers (lists) are bigger.
pub const MAX_API_REQUEST: usize = 4 << 20;

/// A `ClusterService` client with the API's message limits.
pub fn cluster_client(channel: Channel) -> ClusterServiceClient<Channel> {
    ClusterServiceClient::new(channel)
        .max_decoding_message_size(MAX_API_MESSAGE)
        .max_encoding_message_size(MAX_API_MESSAGE)
}

/// What calling a method returns.
pub type RpcFuture<T> = Pin<Box<dyn Future<Output = Result<Response<T>, Status>> + Send>>;

/// One method of `ClusterService`; `Self` is its request.
pub trait ClusterRpc: Clone + Send + Sync + 'static {
    /// The answer (a `Streaming` for the streaming methods).
    type Reply: Send + 'static;
    /// The method's name as in the proto, for logs and errors.
    const METHOD: &'static str;
    /// Calls the method on `client`.
    fn invoke(client: ClusterServiceClient<Channel>, request: Request<Self>) -> RpcFuture<Self::Reply>;
}

macro_rules! cluster_rpcs {
    ($($req:ty => $method:ident -> $reply:ty;)*) => {$(
        impl ClusterRpc for $req {
            type Reply = $reply;
            const METHOD: &'static str = stringify!($method);
            fn invoke(mut client: ClusterServiceClient<Channel>, request: Request<Self>) -> RpcFuture<Self::Reply> {
                Box::pin(async move { client.$method(request).await })
            }
        }
    )*};
}

cluster_rpcs! {
    ApplyRequest => apply -> ApplyResponse;
    GetServiceRequest => get_service -> ServiceInfo;
    ListServicesRequest => list_services -> ListServicesResponse;
    DeleteServiceRequest => delete_service -> DeleteServiceResponse;
    ClusterStatusRequest => cluster_status -> ClusterStatusResponse;
    NodeStatusRequest => node_status -> MemberStatus;
    ScaleServiceRequest => scale_service -> ScaleServiceResponse;
    ListTasksRequest => list_tasks -> ListTasksResponse;
    ListNodesRequest => list_nodes -> ListNodesResponse;
    SetNodeAvailabilityRequest => set_node_availability -> NodeInfo;
    DeclareNodeDeadRequest => declare_node_dead -> NodeInfo;
    LogsRequest => logs -> Streaming<LogChunk>;
    InspectTaskRequest => inspect_task -> TaskContainer;
    VerifyRequest => verify -> VerifyResponse;
    StateDigestRequest => state_digest -> StateDigestResponse;
    EventsRequest => events -> Streaming<EventInfo>;
    DryRunRequest => dry_run -> DryRunResponse;
    RolloutRequest => rollout_status -> RolloutInfo;
    RolloutHistoryRequest => rollout_history -> RolloutHistoryResponse;
    RolloutControlRequest => rollout_control -> RolloutInfo;
    JoinRequest => join -> JoinResponse;
    RemoveNodeRequest => remove_node -> RemoveNodeResponse;
    SaveSnapshotRequest => save_snapshot -> SaveSnapshotResponse;
    IssueCertificateRequest => issue_certificate -> IssueCertificateResponse;
    CreateTokenRequest => create_token -> CreateTokenResponse;
    ListTokensRequest => list_tokens -> ListTokensResponse;
    RevokeTokenRequest => revoke_token -> RevokeTokenResponse;
    GetJoinTokenRequest => get_join_token -> JoinTokenResponse;
    RotateJoinTokenRequest => rotate_join_token -> JoinTokenResponse;
    CaStatusRequest => ca_status -> CaStatusResponse;
    RotateCaRequest => rotate_ca -> CaStatusResponse;
    RecordExecRequest => record_exec -> RecordExecResponse;
    TopRequest => top -> TopResponse;
}
