//! The one path of every leader-routed RPC. Each RPC is declared once ([`Routed`], the
//! declarations are in `rpcs.rs`): its handler, whether it reads or writes and whether a
//! retry is safe (who may call it is in `auth::TABLE`, checked before it gets here). [`ClusterApi::route`] does the rest the same way
//! for all of them: parse and check on the node asked, answer a stale read locally, else
//! run on the leader (here, or forwarded once, with the retry rules of
//! [`Node::on_leader`](crate::node::Node::on_leader)), and convert the error to a status.

use std::future::Future;

use flotilla_proto::{ClusterRpc, FORWARDED_HEADER, REQUEST_ID_HEADER};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::cluster_service::ClusterApi;
use crate::error::ApiError;
use crate::node::Retry;

/// How an RPC runs on the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A read: after a read barrier on the leader, or on the node asked when `stale`.
    Read,
    /// A write (or a change that orders itself, like a membership change).
    Write,
}

/// One leader-routed RPC of `ClusterService`; `Self` is its request.
pub trait Routed: ClusterRpc {
    /// The request checked and parsed: a bad request fails on the node asked.
    type Input: Send + Sync;
    const KIND: Kind;

    fn prepare(&self) -> Result<Self::Input, ApiError>;

    /// Whether the request may be sent to the leader again after its answer was lost:
    /// reads may; a write only when it certainly did not run, unless it says otherwise.
    fn retry(_input: &Self::Input) -> Retry {
        match Self::KIND {
            Kind::Read => Retry::Safe,
            Kind::Write => Retry::IfNotRun,
        }
    }

    /// A read the caller accepts from this node's replica.
    fn stale(&self) -> bool {
        false
    }

    /// The handler, on the leader (or on the node asked, for a stale read).
    fn run(api: &ClusterApi, input: &Self::Input) -> impl Future<Output = Result<Self::Reply, ApiError>> + Send;
}

/// The request id of the routed write being served (see [`request_id`]), and how many
/// writes its handler has made so far.
pub struct RequestScope {
    id: String,
    writes: std::sync::atomic::AtomicU32,
}

tokio::task_local! {
    static REQUEST_ID: Option<std::sync::Arc<RequestScope>>;
}

/// The id of the next write of the client request this task serves, if any:
/// [`Node::write`](crate::node::Node::write) records the write under it. A handler may
/// write more than once (`node remove` drains, then removes): its first write takes the
/// request's id, the n-th `requests::nth_write_id(id, n)`. A handler runs its writes in
/// the same order every time it runs, so a retried request repeats each of them by id.
pub fn current_request_id() -> Option<String> {
    use std::sync::atomic::Ordering;
    REQUEST_ID
        .try_with(|scope| {
            scope.as_ref().map(|s| {
                let n = s.writes.fetch_add(1, Ordering::Relaxed) + 1;
                flotilla_types::requests::nth_write_id(&s.id, n)
            })
        })
        .ok()
        .flatten()
}

/// A handler starts (again) from its first write.
fn restart_writes() {
    let _ = REQUEST_ID.try_with(|scope| {
        if let Some(s) = scope {
            s.writes.store(0, std::sync::atomic::Ordering::Relaxed);
        }
    });
}

/// The id of a write: the caller's `x-flotilla-request-id`, checked, else a new one made
/// here, so that this node's own retries (and the leader's memory) share it.
fn request_id<T>(req: &Request<T>) -> Result<String, ApiError> {
    match req.metadata().get(REQUEST_ID_HEADER) {
        Some(v) => {
            let id = v
                .to_str()
                .map_err(|_| ApiError::Invalid(format!("{REQUEST_ID_HEADER} is not printable ASCII")))?;
            flotilla_types::requests::parse_request_id(id).map_err(ApiError::Invalid)?;
            Ok(id.to_string())
        }
        None => Ok(flotilla_types::requests::new_request_id(
            crate::node::now_ms(),
            rand::random(),
        )),
    }
}

pub fn forwarded<T>(req: &Request<T>) -> bool {
    req.metadata().contains_key(FORWARDED_HEADER)
}

/// The request a follower sends its leader: marked forwarded, with the caller's own
/// credential (the leader checks the caller, not the follower) and the write's request id
/// (the same on every retry).
fn forward<T>(
    msg: T,
    credential: Option<&tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    request_id: Option<&str>,
) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert(FORWARDED_HEADER, tonic::metadata::MetadataValue::from_static("1"));
    if let Some(c) = credential {
        r.metadata_mut().insert("authorization", c.clone());
    }
    if let Some(v) = request_id.and_then(|id| id.parse().ok()) {
        r.metadata_mut().insert(REQUEST_ID_HEADER, v);
    }
    r
}

impl ClusterApi {
    /// Serves one leader-routed RPC.
    pub async fn route<R: Routed>(&self, req: Request<R>) -> Result<Response<R::Reply>, Status> {
        let fwd = forwarded(&req);
        let caller = crate::auth::caller(&req);
        let credential = req.metadata().get("authorization").cloned();
        let id = match R::KIND {
            Kind::Write => Some(request_id(&req)?),
            Kind::Read => None,
        };
        let scoped_id = id.clone().map(|id| {
            std::sync::Arc::new(RequestScope {
                id,
                writes: std::sync::atomic::AtomicU32::new(0),
            })
        });
        let msg = req.into_inner();
        let span = tracing::debug_span!("rpc", method = R::METHOD, node = self.node.id, forwarded = fwd);
        let answer = async move {
            let input = msg.prepare()?;
            let read = R::KIND == Kind::Read;
            if read && msg.stale() {
                return Ok(Response::new(R::run(self, &input).await?));
            }
            let (input, msg, credential, id) = (&input, &msg, credential.as_ref(), id.as_deref());
            let reply = self
                .node
                .on_leader(
                    fwd,
                    R::retry(input),
                    || async move {
                        restart_writes();
                        if read {
                            self.node.read_barrier().await?;
                        }
                        R::run(self, input).await
                    },
                    |client| R::invoke(client, forward(msg.clone(), credential, id)),
                )
                .await
                .inspect_err(|e| tracing::debug!(error = %e, "rpc failed"))?;
            Ok(self.with_leader(reply))
        }
        .instrument(span);
        REQUEST_ID
            .scope(scoped_id, crate::auth::CALLER.scope(caller, answer))
            .await
    }

    /// Wraps an answer with the leader's address (`x-flotilla-leader`), so the CLI can go
    /// to the leader first next time.
    pub fn with_leader<T>(&self, msg: T) -> Response<T> {
        let mut r = Response::new(msg);
        let leader = self.node.raft.metrics().borrow().current_leader;
        if let Some(addr) = leader.and_then(|l| self.node.member_addr(l)) {
            if let Ok(v) = addr.parse() {
                r.metadata_mut().insert(flotilla_proto::LEADER_HEADER, v);
            }
        }
        r
    }
}
