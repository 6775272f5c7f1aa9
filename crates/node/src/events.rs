//! `Events` and `DryRun`: read-only views of what changed and what would change.

use std::sync::Arc;

use flotilla_proto::v1::{ApplyOutcome, DryRunResponse, EventInfo, EventsRequest, PlannedTask};
use flotilla_types::{Command, Event, PutOutcome, Response as CmdResponse, ServiceSpec};
use futures::{Stream, StreamExt};
use openraft::ServerState;
use tokio_stream::wrappers::BroadcastStream;
use tonic::Status;

use crate::error::ApiError;
use crate::node::{now_ms, Node};

pub type EventStream = std::pin::Pin<Box<dyn Stream<Item = Result<EventInfo, Status>> + Send>>;

fn info(e: Event) -> EventInfo {
    EventInfo {
        index: e.index,
        at_ms: e.at,
        kind: e.kind,
        object: e.object,
        message: e.message,
    }
}

/// `--since` older than the events a node keeps.
fn too_old(since: u64, node: u64, oldest: u64) -> ApiError {
    ApiError::OutOfRange(format!(
        "events after index {since} are no longer kept on node {node} (the oldest is at index {oldest}); \
         resume with --since {}",
        oldest - 1
    ))
}

pub fn stream(node: &Node, req: EventsRequest) -> Result<EventStream, ApiError> {
    let (past, rx) = node
        .state
        .events_since(req.since)
        .map_err(|oldest| too_old(req.since, node.id, oldest))?;
    let past = futures::stream::iter(past.into_iter().map(|e| Ok(info(e))));
    if !req.follow {
        return Ok(Box::pin(past));
    }
    let live = BroadcastStream::new(rx).filter_map(move |r| {
        let out = match r {
            Ok(e) if e.index > req.since || e.index == 0 || req.since == 0 => Some(Ok(info(e))),
            Ok(_) => None,
            Err(_) => Some(Err(ApiError::DataLoss(
                "this follower fell behind the event stream; resume with --since the last index seen".into(),
            )
            .into())),
        };
        async move { out }
    });
    Ok(Box::pin(past.chain(live)))
}

/// Records leader changes seen by this node as events.
pub async fn watch_leader(node: Arc<Node>) {
    let mut metrics = node.raft.metrics();
    let mut last: Option<u64> = None;
    loop {
        let (leader, term, applied, leading) = {
            let m = metrics.borrow_and_update();
            (
                m.current_leader,
                m.current_term,
                m.last_applied.map_or(0, |l| l.index),
                m.state == ServerState::Leader,
            )
        };
        node.metrics.note_leader(leader);
        if let Some(l) = leader.filter(|_| leader != last) {
            node.state.push_events(vec![Event {
                index: applied,
                at: now_ms(),
                kind: "leader.changed".into(),
                object: format!("node/{l}"),
                message: format!(
                    "node {l} leads term {term}{}",
                    if leading { " (this node)" } else { "" }
                ),
            }]);
            last = leader;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// What applying `spec` would do: the outcome, and the placement of the tasks it creates,
/// computed on a copy of this node's replica (the leader's, when asked through it).
pub fn dry_run(node: &Node, spec: &ServiceSpec) -> DryRunResponse {
    let sm = node.state.read();
    let mut state = sm.state.clone();
    drop(sm);
    let current = state
        .services
        .get(&spec.name)
        .map(|s| crate::auth::spec_document(&s.spec))
        .unwrap_or_default();
    let at = now_ms();
    let response = state.apply(&Command::PutService {
        spec: spec.clone(),
        at,
        exclusive_ingress: true,
    });
    let (outcome, previous_version) = match response {
        CmdResponse::Service { outcome, .. } => (
            ApplyOutcome::from(outcome),
            match outcome {
                PutOutcome::Updated { from } => from,
                _ => 0,
            },
        ),
        _ => (ApplyOutcome::Unspecified, 0),
    };
    let plan = flotilla_scheduler::plan(&flotilla_scheduler::ClusterView::of(&state), &[], at);
    let placements = plan
        .create
        .iter()
        .filter(|c| c.service == spec.name)
        .map(|c| PlannedTask {
            slot: c.slot,
            node_id: c.node.unwrap_or(0),
            reason: c.message.clone(),
        })
        .collect();
    let stops = plan
        .stop
        .iter()
        .filter(|(id, _)| state.tasks.get(id).is_some_and(|t| t.service == spec.name))
        .map(|(id, reason)| format!("{id} ({})", reason.as_str()))
        .collect();
    DryRunResponse {
        name: spec.name.clone(),
        outcome: outcome.into(),
        previous_version,
        current_spec_document: current,
        new_spec_document: flotilla_proto::convert::spec_document(spec),
        placements,
        stops,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_too_old_message_reads_as_one_sentence() {
        let msg = super::too_old(5, 2, 133).to_string();
        assert_eq!(
            msg,
            "events after index 5 are no longer kept on node 2 (the oldest is at index 133); resume with --since 132"
        );
    }
}
