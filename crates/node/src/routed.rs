//! The one path of every leader-routed RPC. Each RPC is declared once ([`Routed`], the
//! declarations are in `rpcs.rs`): its handler, whether it reads or writes, whether a
//! retry is safe, and the role it needs. [`ClusterApi::route`] does the rest the same way
//! for all of them: parse and check on the node asked, answer a stale read locally, else
//! run on the leader (here, or forwarded once, with the retry rules of
//! [`Node::on_leader`](crate::node::Node::on_leader)), and convert the error to a status.

use std::future::Future;

use flotilla_proto::{ClusterRpc, FORWARDED_HEADER};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::cluster_service::ClusterApi;
use crate::error::ApiError;
use crate::node::Retry;

/// What a caller must be allowed to do to call an RPC (enforced here once clients carry
/// credentials; see DESIGN.md §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads the state.
    Viewer,
    /// Changes services and nodes' availability.
    Operator,
    /// Changes the membership, takes backups.
    Admin,
    /// Another node of the cluster (join).
    Node,
}

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
    const ROLE: Role;
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

pub fn forwarded<T>(req: &Request<T>) -> bool {
    req.metadata().contains_key(FORWARDED_HEADER)
}

fn forward<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(FORWARDED_HEADER, "1".parse().expect("ascii"));
    r
}

impl ClusterApi {
    /// Serves one leader-routed RPC.
    pub async fn route<R: Routed>(&self, req: Request<R>) -> Result<Response<R::Reply>, Status> {
        let fwd = forwarded(&req);
        let msg = req.into_inner();
        let started = std::time::Instant::now();
        let span =
            tracing::debug_span!("rpc", method = R::METHOD, node = self.node.id, forwarded = fwd, role = ?R::ROLE);
        let answer = async move {
            let input = msg.prepare()?;
            let read = R::KIND == Kind::Read;
            if read && msg.stale() {
                return Ok(Response::new(R::run(self, &input).await?));
            }
            let (input, msg) = (&input, &msg);
            let reply = self
                .node
                .on_leader(
                    fwd,
                    R::retry(input),
                    || async move {
                        if read {
                            self.node.read_barrier().await?;
                        }
                        R::run(self, input).await
                    },
                    |client| R::invoke(client, forward(msg.clone())),
                )
                .await
                .inspect_err(|e| tracing::debug!(error = %e, "rpc failed"))?;
            Ok(self.with_leader(reply))
        }
        .instrument(span)
        .await;
        let code = answer.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
        self.node.metrics.observe_rpc(R::METHOD, code, started.elapsed());
        answer
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
