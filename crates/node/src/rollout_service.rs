//! What the rollout RPCs answer (declared in `rpcs.rs`): a service's rollout report and its
//! stored versions, from this node's replica.

use flotilla_proto::v1::{RevisionInfo, RolloutHistoryResponse, RolloutInfo};

use crate::cluster_service::ClusterApi;
use crate::error::ApiError;
use crate::node::now_ms;
use crate::rpcs::service_not_found as not_found;

impl ClusterApi {
    pub(crate) fn rollout_info(&self, name: &str) -> Result<RolloutInfo, ApiError> {
        let sm = self.node.state.read();
        let svc = sm.state.services.get(name).ok_or_else(|| not_found(name))?;
        let report = flotilla_scheduler::rollout_report(svc, sm.state.tasks.values(), now_ms());
        Ok(RolloutInfo {
            name: name.into(),
            version: svc.version,
            report_json: serde_json::to_string(&report).map_err(|e| ApiError::Internal(e.to_string()))?,
        })
    }

    pub(crate) fn rollout_history(&self, name: &str) -> Result<RolloutHistoryResponse, ApiError> {
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
}
