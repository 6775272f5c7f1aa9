//! What the rollout RPCs answer (declared in `rpcs.rs`): a service's rollout report and its
//! stored versions, from this node's replica.

use flotilla_proto::v1::{
    self, BatchState, FailureAction, RevisionInfo, RolloutBatch, RolloutHistoryResponse, RolloutInfo, RolloutPhase,
    UpdateOrder,
};
use flotilla_scheduler::RolloutReport;

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
            report: Some(report_message(report)),
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
                    spec_document: crate::auth::spec_document(&r.spec),
                })
                .collect(),
        })
    }
}

/// The report as the wire carries it. The conversion is here rather than in flotilla-proto
/// so that the wire crate does not depend on the scheduler; the report's words (phase,
/// order, failure action, batch state) map through the proto enums' `from_word`, the
/// inverse of the `word()` the CLI prints.
fn report_message(r: RolloutReport) -> v1::RolloutReport {
    v1::RolloutReport {
        service: r.service,
        version: r.version,
        template_version: r.template_version,
        phase: RolloutPhase::from_word(&r.phase).into(),
        from_version: r.from_version,
        to_version: r.to_version,
        paused: r.paused,
        reason: r.reason,
        cause: r.cause,
        replicas: r.replicas,
        updated: r.updated,
        serving: r.serving,
        done: r.done,
        failures: r.failures,
        parallelism: r.parallelism,
        order: UpdateOrder::from_word(&r.order).into(),
        monitor_ms: r.monitor_ms,
        delay_ms: r.delay_ms,
        failure_action: FailureAction::from_word(&r.failure_action).into(),
        waiting: r.waiting,
        started_at_ms: r.started_at,
        updated_at_ms: r.updated_at,
        batches: r
            .batches
            .into_iter()
            .map(|b| RolloutBatch {
                number: b.number,
                target: b.target,
                slots: b.slots,
                state: BatchState::from_word(&b.state).into(),
                tasks: b.tasks,
                started_at_ms: b.started_at,
            })
            .collect(),
        moves: r
            .moves
            .into_iter()
            .map(|m| v1::RolloutMove {
                slot: m.slot,
                task: m.task,
                from_node: m.from,
                to_node: m.to.unwrap_or(0),
                state: m.state,
                reason: m.reason,
            })
            .collect(),
    }
}
