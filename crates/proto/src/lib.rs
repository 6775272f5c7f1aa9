//! flotilla-proto owns the wire: code generated from `proto/flotilla/v1` and the
//! conversions between it and flotilla-types (one file per type under `convert/`).
//! It must not depend on the store, the runtime or any server code.

pub mod convert;

pub mod v1 {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("flotilla.v1");
}

pub use v1::*;

/// gRPC metadata key set on requests a follower forwards to the leader, so a request is
/// forwarded at most once.
pub const FORWARDED_HEADER: &str = "x-flotilla-forwarded";

/// gRPC response metadata key carrying the leader's address, when known.
pub const LEADER_HEADER: &str = "x-flotilla-leader";
