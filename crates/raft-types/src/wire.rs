//! The Raft RPCs' messages as `RaftMessage.data` (and a snapshot header's `vote` and
//! `meta`) carry them: serde JSON of openraft's types for flotilla. Both halves of the
//! transport (the node's `network.rs` client and `raft_service.rs` server) encode and
//! decode here, so they cannot disagree on the codec.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{NodeId, TypeConfig};

pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<NodeId>;
pub type VoteRequest = openraft::raft::VoteRequest<NodeId>;
pub type VoteResponse = openraft::raft::VoteResponse<NodeId>;
pub type InstallSnapshotRequest = openraft::raft::InstallSnapshotRequest<TypeConfig>;
pub type InstallSnapshotResponse = openraft::raft::InstallSnapshotResponse<NodeId>;
pub type SnapshotResponse = openraft::raft::SnapshotResponse<NodeId>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;

/// The bytes of one message.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    serde_json::to_vec(message).expect("raft messages serialize")
}

/// One message from its bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Vote;

    #[test]
    fn a_message_round_trips() {
        let req = VoteRequest::new(
            Vote::new(3, 2),
            Some(openraft::LogId::new(openraft::CommittedLeaderId::new(3, 2), 7)),
        );
        let back: VoteRequest = decode(&encode(&req)).unwrap();
        assert_eq!(back, req);
        assert!(decode::<VoteRequest>(b"not json").is_err());
    }
}
