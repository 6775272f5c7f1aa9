//! flotilla-proto owns the wire: code generated from `proto/flotilla/v1` and the
//! conversions between it and flotilla-types (one file per type under `convert/`).
//! It must not depend on the store, the runtime or any server code.

pub mod convert;
mod rpc;

pub mod v1 {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("flotilla.v1");
}

pub use rpc::{cluster_client, ClusterRpc, RpcFuture, MAX_API_MESSAGE, MAX_API_REQUEST};
pub use v1::*;

/// gRPC metadata key set on requests a follower forwards to the leader, so a request is
/// forwarded at most once.
pub const FORWARDED_HEADER: &str = "x-flotilla-forwarded";

/// The id of a client write (`flotilla_types::requests`): the CLI sets one per write and
/// keeps it across its retries; the cluster applies a write of one id at most once.
pub const REQUEST_ID_HEADER: &str = "x-flotilla-request-id";

/// gRPC response metadata key carrying the leader's address, when known.
pub const LEADER_HEADER: &str = "x-flotilla-leader";

/// Marks an error answer as "this node is not the leader": the request did not run, the
/// caller may retry on another node.
pub const NOT_LEADER_HEADER: &str = "x-flotilla-not-leader";

/// Marks an error answer from a leader that does not hear from a majority of its voters.
pub const NO_QUORUM_HEADER: &str = "x-flotilla-no-quorum";

/// Marks a refusal that concerns the caller itself: it was removed or belongs to an older
/// epoch, and must stop.
pub const FENCED_HEADER: &str = "x-flotilla-fenced";
