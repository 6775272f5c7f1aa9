//! `SaveSnapshot` on the leader: a read barrier, then the state exactly at the applied
//! index, as a snapshot file image (the same checksummed format Raft snapshots use).

use crate::error::ApiError;
use crate::node::Node;
use flotilla_proto::v1::SaveSnapshotResponse;

/// The image of this node's replica; the caller ran the read barrier (`rpcs.rs`).
pub fn save(node: &Node) -> Result<SaveSnapshotResponse, ApiError> {
    // Copied under the read lock, encoded outside it: applies wait only for the copy.
    let data = node.state.read().clone();
    let image = flotilla_store::backup::image(&data, node.id).map_err(|e| ApiError::Refused(e.to_string()))?;
    let last = data.last_applied.expect("image() checked it");
    tracing::info!(index = last.index, bytes = image.len(), "snapshot saved for a backup");
    Ok(SaveSnapshotResponse {
        data: image,
        index: last.index,
        term: last.leader_id.term,
        node_id: node.id,
    })
}
