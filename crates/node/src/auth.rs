//! Who may call what: one table, gRPC method → what the caller must present, checked in
//! one place (a tower layer in front of all three services) before any handler runs.
//!
//! - Raft and agent RPCs need a node certificate of this cluster's CA naming a node that
//!   was not removed; the sender's id is taken from that certificate ([`Caller::node`]).
//! - Client RPCs need a bearer token (`authorization: Bearer flt_…`) whose role is at
//!   least the method's. A follower forwarding a call forwards the caller's token and the
//!   leader checks it again: a node certificate is never a client credential.
//! - On an `--insecure` node every call is let through (the node refuses to listen
//!   outside the loopback range then).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use flotilla_types::ClientRole;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;

use crate::node::Node;

/// What a method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A client token of at least this role.
    Client(ClientRole),
    /// A node certificate of a member (or a newcomer the CA issued one to).
    Node,
    /// A client token of at least this role, or a node certificate (calls nodes make to
    /// each other as well as operators: a member's status, a state digest).
    ClientOrNode(ClientRole),
    /// Nothing: the request carries its own proof (a certificate request).
    Proof,
}

use ClientRole::{Admin, Operator, Viewer};

/// Every RPC a node serves and what it needs. A method missing here is refused.
pub const TABLE: &[(&str, Need)] = &[
    // ClusterService: reads
    ("ClusterService/GetService", Need::Client(Viewer)),
    ("ClusterService/ListServices", Need::Client(Viewer)),
    ("ClusterService/ClusterStatus", Need::Client(Viewer)),
    ("ClusterService/NodeStatus", Need::ClientOrNode(Viewer)),
    ("ClusterService/ListTasks", Need::Client(Viewer)),
    ("ClusterService/ListNodes", Need::Client(Viewer)),
    ("ClusterService/InspectTask", Need::Client(Viewer)),
    ("ClusterService/Verify", Need::Client(Viewer)),
    ("ClusterService/StateDigest", Need::ClientOrNode(Viewer)),
    ("ClusterService/Events", Need::Client(Viewer)),
    ("ClusterService/DryRun", Need::Client(Viewer)),
    ("ClusterService/RolloutStatus", Need::Client(Viewer)),
    ("ClusterService/RolloutHistory", Need::Client(Viewer)),
    // ClusterService: operating services and nodes
    ("ClusterService/Apply", Need::Client(Operator)),
    ("ClusterService/DeleteService", Need::Client(Operator)),
    ("ClusterService/ScaleService", Need::Client(Operator)),
    ("ClusterService/SetNodeAvailability", Need::Client(Operator)),
    ("ClusterService/RolloutControl", Need::Client(Operator)),
    ("ClusterService/Logs", Need::Client(Operator)),
    ("ClusterService/Exec", Need::Client(Operator)),
    // Written by the node serving Exec with the caller's own token.
    ("ClusterService/RecordExec", Need::Client(Operator)),
    ("ClusterService/Top", Need::Client(Viewer)),
    // ClusterService: membership, snapshots, credentials
    ("ClusterService/RemoveNode", Need::Client(Admin)),
    ("ClusterService/DeclareNodeDead", Need::Client(Admin)),
    ("ClusterService/SaveSnapshot", Need::Client(Admin)),
    ("ClusterService/CreateToken", Need::Client(Admin)),
    ("ClusterService/ListTokens", Need::Client(Admin)),
    ("ClusterService/RevokeToken", Need::Client(Admin)),
    ("ClusterService/GetJoinToken", Need::Client(Admin)),
    ("ClusterService/RotateJoinToken", Need::Client(Admin)),
    ("ClusterService/CaStatus", Need::Client(Viewer)),
    ("ClusterService/RotateCa", Need::Client(Admin)),
    // Nodes
    ("ClusterService/Join", Need::Node),
    ("ClusterService/IssueCertificate", Need::Proof),
    ("AgentService/Heartbeat", Need::Node),
    ("AgentService/ReportStatus", Need::Node),
    ("AgentService/TaskLogs", Need::Node),
    ("AgentService/InspectTask", Need::Node),
    ("AgentService/Exec", Need::Node),
    ("AgentService/TaskStats", Need::Node),
    ("AgentService/Tunnel", Need::Node),
    ("AgentService/ProposeSecurity", Need::Node),
    ("RaftService/AppendEntries", Need::Node),
    ("RaftService/Vote", Need::Node),
    ("RaftService/InstallSnapshot", Need::Node),
];

const PACKAGE: &str = "/flotilla.v1.";

/// What the method at a gRPC `path` needs; `None` for a method not in the table.
pub fn need(path: &str) -> Option<Need> {
    let method = path.strip_prefix(PACKAGE)?;
    TABLE.iter().find(|(m, _)| *m == method).map(|(_, n)| *n)
}

/// Who called, as established by the layer; in every request's extensions.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The node id of the caller's certificate.
    pub node: Option<u64>,
    /// The name and role of the caller's token.
    pub token: Option<(String, ClientRole)>,
}

impl Caller {
    /// The token's name for events ("" for none).
    pub fn token_name(&self) -> String {
        self.token.as_ref().map(|(n, _)| n.clone()).unwrap_or_default()
    }
}

tokio::task_local! {
    /// The caller of the routed RPC being served (see `routed.rs`).
    pub static CALLER: Caller;
}

/// The caller of the routed RPC this task serves (empty outside one, or `--insecure`).
pub fn current() -> Caller {
    CALLER.try_with(Caller::clone).unwrap_or_default()
}

/// What `value` an env variable shows a viewer.
pub const REDACTED: &str = "(redacted)";

/// A spec as the caller of this routed RPC may see it: a viewer gets the env values
/// replaced by [`REDACTED`] (they often hold secrets); everyone else the spec as stored.
pub fn spec_document(spec: &flotilla_types::ServiceSpec) -> Vec<u8> {
    let viewer = current().token.is_some_and(|(_, role)| role == ClientRole::Viewer);
    if viewer && !spec.env.is_empty() {
        let mut shown = spec.clone();
        shown.env.values_mut().for_each(|v| *v = REDACTED.to_string());
        return flotilla_proto::convert::spec_document(&shown);
    }
    flotilla_proto::convert::spec_document(spec)
}

/// A service as the caller may see it (see [`spec_document`]).
pub fn service_info(state: &flotilla_types::State, s: &flotilla_types::Service) -> flotilla_proto::v1::ServiceInfo {
    flotilla_proto::v1::ServiceInfo {
        spec_document: spec_document(&s.spec),
        endpoints: state.mesh_view(&s.spec.name).endpoints,
        ..flotilla_proto::v1::ServiceInfo::from(s)
    }
}

/// The caller of a request (a default, empty one on an `--insecure` node).
pub fn caller<T>(req: &tonic::Request<T>) -> Caller {
    req.extensions().get::<Caller>().cloned().unwrap_or_default()
}

/// Checks a request against the table; the caller on success.
pub fn check(node: &Node, path: &str, headers: &http::HeaderMap, peer: Option<&[u8]>) -> Result<Caller, Status> {
    let Some(need) = need(path) else {
        return Err(Status::unimplemented(format!("unknown method {path}")));
    };
    let mut caller = Caller::default();
    if let Some(der) = peer {
        let raft = path
            .strip_prefix(PACKAGE)
            .is_some_and(|m| m.starts_with("RaftService/"));
        caller.node = Some(node_of(node, der, raft)?);
    }
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim().to_string());
    if let Some(token) = bearer.filter(|t| !t.is_empty()) {
        caller.token = Some(token_of(node, &token)?);
    }
    let method = path.rsplit('/').next().unwrap_or(path);
    let client = |min: ClientRole, caller: Caller| match &caller.token {
        Some((name, role)) if *role >= min => Ok(caller),
        Some((name, role)) => Err(Status::permission_denied(format!(
            "credential not allowed: token {name:?} is a {role} token; {method} needs {min}"
        ))),
        None if caller.node.is_some() => Err(Status::unauthenticated(format!(
            "credential missing: {method} is a client call and a node certificate is not a client \
             credential; present a client token"
        ))),
        None => Err(Status::unauthenticated(format!(
            "credential missing: {method} needs a client token (the CLI reads it from --config, \
             FLOTILLA_CONFIG or ~/.config/flotilla/config.yaml)"
        ))),
    };
    match need {
        Need::Proof => Ok(caller),
        Need::Node if caller.node.is_some() => Ok(caller),
        Need::Node => Err(Status::unauthenticated(format!(
            "credential missing: {method} is for cluster members and needs a node certificate"
        ))),
        Need::ClientOrNode(_) if caller.token.is_none() && caller.node.is_some() => Ok(caller),
        Need::ClientOrNode(min) | Need::Client(min) => client(min, caller),
    }
}

/// The node id of a peer certificate the TLS layer verified against the CA: of this
/// cluster, and not removed. Raft RPCs of a removed node are left to the epoch check: a
/// leader that removes itself replicates until the change commits.
fn node_of(node: &Node, der: &[u8], raft: bool) -> Result<u64, Status> {
    let id = flotilla_security::identity::node_identity(der)
        .map_err(|e| Status::unauthenticated(format!("credential unknown: {e}")))?;
    let cluster = node.tls.as_ref().map(|t| t.cluster_id()).unwrap_or_default();
    if id.cluster != cluster {
        return Err(Status::unauthenticated(format!(
            "credential unknown: the certificate is for cluster {}, not {cluster}",
            id.cluster
        )));
    }
    if !raft && node.state.read().state.removed.contains(&id.id) {
        // Marked fenced: the removed node stops, as one refused on Raft does.
        let status: Status = crate::error::ApiError::Fenced(format!(
            "credential revoked: node {} was removed from this cluster (flotilla node remove) and \
             cannot take part again; wipe its data dir and --join it with a new id",
            id.id
        ))
        .into();
        return Err(Status::with_metadata(
            tonic::Code::Unauthenticated,
            status.message(),
            status.metadata().clone(),
        ));
    }
    Ok(id.id)
}

/// The name and role of a client token, checked against the replicated token table.
pub(crate) fn token_of(node: &Node, token: &str) -> Result<(String, ClientRole), Status> {
    let Some((id, secret)) = flotilla_security::cred::parse_client_token(token) else {
        return Err(Status::unauthenticated(
            "credential unknown: not a flotilla client token (flt_<id>_<secret>)",
        ));
    };
    let sm = node.state.read();
    let found = sm.state.security.as_ref().and_then(|s| s.token_by_id(id));
    let Some((name, t)) = found.filter(|(_, t)| flotilla_security::cred::secret_matches(secret, &t.hash)) else {
        return Err(Status::unauthenticated(
            "credential unknown: no such token in this cluster",
        ));
    };
    if t.revoked_at.is_some() {
        return Err(Status::unauthenticated(format!(
            "credential revoked: token {name:?} was revoked"
        )));
    }
    if t.expires_at.is_some_and(|e| e <= crate::node::now_ms()) {
        return Err(Status::unauthenticated(format!(
            "credential expired: token {name:?} has expired"
        )));
    }
    Ok((name.to_string(), t.role))
}

/// How long a request to `path` may run on this node before it is answered
/// DEADLINE_EXCEEDED (`--request-timeout`; a snapshot install gets at least ten minutes).
/// A streamed answer (`logs -f`, `events -f`) is bounded until it starts, not after.
fn request_limit(node: &Node, path: &str) -> Duration {
    let limit = node.config.request_timeout;
    if path.ends_with("RaftService/InstallSnapshot") {
        limit.max(crate::config::SNAPSHOT_REQUEST_TIMEOUT)
    } else {
        limit
    }
}

fn req_path<B>(req: &http::Request<B>) -> String {
    req.uri().path().to_string()
}

/// `call`, answered DEADLINE_EXCEEDED once `limit` has passed (the handler is dropped:
/// what it waited on is released), and counted in `/metrics` by its status code (an
/// error answered at once carries it in its headers; a streamed answer counts as `Ok`
/// once it starts).
fn bounded<F, E>(
    call: F,
    limit: Duration,
    path: String,
    metrics: Arc<crate::metrics::Metrics>,
) -> BoxFuture<http::Response<tonic::body::Body>, E>
where
    F: Future<Output = Result<http::Response<tonic::body::Body>, E>> + Send + 'static,
{
    Box::pin(async move {
        let started = std::time::Instant::now();
        let answer = match tokio::time::timeout(limit, call).await {
            Ok(r) => r,
            Err(_) => {
                tracing::debug!(%path, ?limit, "request timed out");
                Ok(Status::deadline_exceeded(format!(
                    "{path}: no answer within this node's request limit of {limit:?} (--request-timeout)"
                ))
                .into_http())
            }
        };
        if let Ok(r) = &answer {
            let code = r
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map_or(tonic::Code::Ok, tonic::Code::from_i32);
            metrics.observe_rpc(&path, code, started.elapsed());
        }
        answer
    })
}

/// The tower layer that runs [`check`] on every request.
#[derive(Clone)]
pub struct AuthLayer {
    pub node: Arc<Node>,
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            node: self.node.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    node: Arc<Node>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let limit = request_limit(&self.node, req.uri().path());
        let metrics = self.node.metrics.clone();
        if self.node.tls.is_none() {
            let path = req_path(&req);
            return bounded(self.inner.call(req), limit, path, metrics);
        }
        let peer = req
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|i| i.peer_certs())
            .and_then(|c| c.first().map(|c| c.to_vec()));
        match check(&self.node, req.uri().path(), req.headers(), peer.as_deref()) {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
                let path = req_path(&req);
                bounded(self.inner.call(req), limit, path, metrics)
            }
            Err(status) => {
                tracing::debug!(path = req.uri().path(), error = status.message(), "refused");
                metrics.observe_rpc(req.uri().path(), status.code(), Duration::ZERO);
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `rpc` in the proto files has a row, and every row an `rpc`.
    #[test]
    fn every_rpc_has_a_row() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto/flotilla/v1");
        let mut methods = Vec::new();
        for entry in std::fs::read_dir(dir).expect("proto dir") {
            let text = std::fs::read_to_string(entry.expect("entry").path()).expect("proto");
            let mut service = "";
            for line in text.lines().map(str::trim) {
                if let Some(rest) = line.strip_prefix("service ") {
                    service = rest.split_whitespace().next().unwrap_or_default();
                } else if let Some(rest) = line.strip_prefix("rpc ") {
                    let name = rest.split('(').next().unwrap_or_default().trim();
                    methods.push(format!("{service}/{name}"));
                }
            }
        }
        assert!(methods.len() > 30, "{methods:?}");
        for m in &methods {
            assert!(
                need(&format!("{PACKAGE}{m}")).is_some(),
                "{m} has no row in auth::TABLE"
            );
        }
        for (m, _) in TABLE {
            assert!(methods.contains(&m.to_string()), "{m} in auth::TABLE is not an rpc");
        }
        assert_eq!(need("/flotilla.v1.ClusterService/Nope"), None);
        assert_eq!(need("ClusterService/Apply"), None);
    }
}
