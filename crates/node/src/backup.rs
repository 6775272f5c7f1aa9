//! `SaveSnapshot` on the leader: a read barrier, then the state exactly at the applied
//! index, as a snapshot file image (the same checksummed format Raft snapshots use).

use flotilla_proto::v1::SaveSnapshotResponse;
use tonic::Status;

use crate::node::{LocalError, Node};

pub async fn save(node: &Node) -> Result<SaveSnapshotResponse, LocalError> {
    // Everything acknowledged before this call is in the image.
    node.read_barrier().await?;
    // Copied under the read lock, encoded outside it: applies wait only for the copy.
    let data = node.state.read().clone();
    let image = flotilla_store::backup::image(&data, node.id)
        .map_err(|e| LocalError::Status(Status::failed_precondition(e.to_string())))?;
    let last = data.last_applied.expect("image() checked it");
    tracing::info!(index = last.index, bytes = image.len(), "snapshot saved for a backup");
    Ok(SaveSnapshotResponse {
        data: image,
        index: last.index,
        term: last.leader_id.term,
        node_id: node.id,
    })
}
