//! The node's plain-HTTP listener (`--metrics-listen`): `/metrics` for Prometheus,
//! `/healthz` (the process is up), `/readyz` (this node has a leader and its replica
//! has caught up with the leader's commit) and `/`, the status page (see `page.rs`).
//! `/metrics`, `/healthz` and `/readyz` carry no credentials, as Prometheus expects: bind
//! the listener to a loopback or private address. The status page is served on a loopback
//! listener only, and asks for a viewer token on a secured node.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use openraft::ServerState;
use tokio::net::TcpListener;

use crate::node::Node;

/// A follower whose replica is more than this many entries behind the leader's commit is
/// not ready.
pub const READY_LAG: u64 = 100;

/// A follower that has not heard an AppendEntries for this long does not know the leader's
/// commit: not ready.
pub const READY_SILENCE: Duration = Duration::from_secs(3);

const TEXT_FORMAT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `/metrics`, `/healthz`, `/readyz` and the status page `/` on `listener` (bound
/// at start-up, so a taken port stops the agent before it joins anything) until the task
/// is dropped.
pub async fn serve(listener: TcpListener, node: Arc<Node>) {
    let local = listener.local_addr().ok();
    if let Some(addr) = local {
        let page = if super::page::is_loopback(addr) {
            "status page at /"
        } else {
            "no status page (not a loopback address)"
        };
        tracing::info!(%addr, "metrics, healthz and readyz listening; {page}");
    }
    let app = Router::new()
        .route(
            "/",
            get(move |State(node): State<Arc<Node>>, uri: Uri, headers: HeaderMap| {
                super::page::serve(node, local, uri, headers)
            }),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(node);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!(error = %e, "the metrics listener stopped");
    }
}

async fn metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, TEXT_FORMAT)], node.metrics.render(&node))
}

async fn readyz(State(node): State<Arc<Node>>) -> impl IntoResponse {
    match readiness(&node) {
        Ok(why) => (StatusCode::OK, format!("ready: {why}\n")),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
    }
}

/// Ready: fenced nodes never; the leader when it leads; a follower that knows a leader,
/// heard from it within `READY_SILENCE` and applied up to `READY_LAG` of its commit.
pub fn readiness(node: &Node) -> Result<String, String> {
    if node.fence().is_fenced() {
        return Err("fenced: this node belongs to an older cluster incarnation".into());
    }
    let m = node.raft.metrics().borrow().clone();
    let applied = m.last_applied.map_or(0, |l| l.index);
    let Some(leader) = m.current_leader else {
        return Err("no leader known".into());
    };
    if m.state == ServerState::Leader {
        return Ok(format!("leader, applied {applied}"));
    }
    let Some(commit) = node.metrics.leader_commit(READY_SILENCE) else {
        return Err(format!("no word from leader {leader} for {}s", READY_SILENCE.as_secs()));
    };
    if applied + READY_LAG < commit {
        return Err(format!("applied {applied}, leader {leader} committed {commit}"));
    }
    Ok(format!("leader {leader}, applied {applied} of {commit}"))
}
