//! The rollout RPCs of `ClusterService`: status and history are reads (through the
//! leader unless stale); pause, resume and undo are commands written on the leader.

use flotilla_proto::v1::{RevisionInfo, RolloutControlRequest, RolloutHistoryResponse, RolloutInfo, RolloutRequest};
use flotilla_types::{Command, Response as CmdResponse, RolloutOp};
use tonic::{Request, Response, Status};

use crate::cluster_service::{command_error, forward, forwarded, unexpected, ClusterApi};
use crate::node::{now_ms, LocalError};

fn not_found(name: &str) -> Status {
    Status::not_found(format!("service {name:?} not found"))
}

impl ClusterApi {
    fn rollout_info(&self, name: &str) -> Result<RolloutInfo, Status> {
        let sm = self.node.state.read();
        let svc = sm.state.services.get(name).ok_or_else(|| not_found(name))?;
        let report = flotilla_scheduler::rollout_report(svc, sm.state.tasks.values(), now_ms());
        Ok(RolloutInfo {
            name: name.into(),
            version: svc.version,
            report_json: serde_json::to_string(&report).map_err(|e| Status::internal(e.to_string()))?,
        })
    }

    fn history_local(&self, name: &str) -> Result<RolloutHistoryResponse, Status> {
        let sm = self.node.state.read();
        let svc = sm.state.services.get(name).ok_or_else(|| not_found(name))?;
        Ok(RolloutHistoryResponse {
            name: name.into(),
            version: svc.version,
            template_version: svc.template_version,
            revisions: svc
                .history
                .iter()
                .map(|r| RevisionInfo {
                    version: r.version,
                    template_version: r.template_version,
                    change: r.change.clone(),
                    at_ms: r.at,
                    spec_json: r.spec.to_json(),
                })
                .collect(),
        })
    }

    async fn control_local(&self, name: &str, op: &RolloutOp) -> Result<RolloutInfo, LocalError> {
        let cmd = Command::Rollout {
            name: name.into(),
            op: op.clone(),
            at: now_ms(),
        };
        match self.node.write(cmd).await? {
            (CmdResponse::Rollout { name, .. }, _) => self.rollout_info(&name).map_err(LocalError::Status),
            (CmdResponse::Error(e), _) => Err(LocalError::Status(command_error(e))),
            (other, _) => Err(LocalError::Status(unexpected(other))),
        }
    }

    pub(crate) async fn rollout_status_rpc(
        &self,
        req: Request<RolloutRequest>,
    ) -> Result<Response<RolloutInfo>, Status> {
        let fwd = forwarded(&req);
        let msg = req.into_inner();
        let msg = &msg;
        self.read(
            fwd,
            msg.stale,
            || self.rollout_info(&msg.name),
            |mut c| async move { c.rollout_status(forward(msg.clone())).await },
        )
        .await
    }

    pub(crate) async fn rollout_history_rpc(
        &self,
        req: Request<RolloutRequest>,
    ) -> Result<Response<RolloutHistoryResponse>, Status> {
        let fwd = forwarded(&req);
        let msg = req.into_inner();
        let msg = &msg;
        self.read(
            fwd,
            msg.stale,
            || self.history_local(&msg.name),
            |mut c| async move { c.rollout_history(forward(msg.clone())).await },
        )
        .await
    }

    pub(crate) async fn rollout_control_rpc(
        &self,
        req: Request<RolloutControlRequest>,
    ) -> Result<Response<RolloutInfo>, Status> {
        let fwd = forwarded(&req);
        let msg = req.into_inner();
        let op = match msg.action.as_str() {
            "pause" => RolloutOp::Pause,
            "resume" => RolloutOp::Resume,
            "undo" => RolloutOp::Undo {
                to_version: msg.to_version,
            },
            other => {
                return Err(Status::invalid_argument(format!(
                    "rollout action {other:?} is not one of pause, resume, undo"
                )))
            }
        };
        let (msg, op) = (&msg, &op);
        // Pause and resume are idempotent; an undo retried after a lost answer could undo twice.
        let idempotent = !matches!(op, RolloutOp::Undo { .. });
        self.node
            .on_leader(
                fwd,
                idempotent,
                || self.control_local(&msg.name, op),
                |mut c| async move { c.rollout_control(forward(msg.clone())).await },
            )
            .await
            .map(|r| self.with_leader(r))
    }
}
