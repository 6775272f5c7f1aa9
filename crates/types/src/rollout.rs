//! Rollouts and spec history as stored in the replicated state.
//!
//! A change of a service's task template starts a rollout. The leader's reconcile drives
//! it batch by batch and proposes its decisions as `RolloutChange`s in a plan; operators
//! pause, resume and undo it with commands. Everything here is deterministic.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::command::Response;
use crate::error::CommandError;
use crate::model::{DesiredState, TaskId};
use crate::spec::ServiceSpec;
use crate::state::{Service, State};
use crate::Millis;

/// One stored version of a service's spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    pub version: u64,
    /// The version whose task template this spec has (equal to `version` unless the
    /// template is an older one's: a scale, a rollback or an undo).
    pub template_version: u64,
    pub spec: ServiceSpec,
    pub at: Millis,
    /// What made this version: `created`, `updated`, `scaled to 3`, `rolled back …`.
    pub change: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutPhase {
    /// Moving to the new template.
    Updating,
    /// The new template failed; moving back to the one before.
    RollingBack,
    Completed,
    RolledBack,
}

impl RolloutPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutPhase::Updating => "updating",
            RolloutPhase::RollingBack => "rolling-back",
            RolloutPhase::Completed => "completed",
            RolloutPhase::RolledBack => "rolled-back",
        }
    }

    pub fn is_active(self) -> bool {
        matches!(self, RolloutPhase::Updating | RolloutPhase::RollingBack)
    }
}

/// One batch the leader started: the slots it replaced, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub number: u32,
    /// The template version the batch moved its slots to.
    pub target: u64,
    pub slots: Vec<u32>,
    pub started_at: Millis,
}

/// Batches kept per rollout (the newest ones).
pub const MAX_BATCHES: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    /// The template version being replaced.
    pub from_version: u64,
    /// The template version rolled out (still the failed one after a rollback).
    pub to_version: u64,
    pub phase: RolloutPhase,
    /// Why it is paused; no new batch starts while set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    /// Why it rolled back, or what the last failure was.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// What started it: `apply` or `undo to version N`.
    pub cause: String,
    pub started_at: Millis,
    /// Start of the current phase (or of the last resume): only tasks created since count
    /// as its failures.
    pub phase_started_at: Millis,
    pub updated_at: Millis,
    /// New tasks of the current phase that failed, counted against `max_failure_ratio`.
    #[serde(default)]
    pub failures: u32,
    /// The failed tasks still in the state, so none is counted twice.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub failed: BTreeSet<TaskId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<Batch>,
}

impl Rollout {
    pub fn new(from_version: u64, to_version: u64, cause: impl Into<String>, at: Millis) -> Self {
        Rollout {
            from_version,
            to_version,
            phase: RolloutPhase::Updating,
            paused: None,
            reason: String::new(),
            cause: cause.into(),
            started_at: at,
            phase_started_at: at,
            updated_at: at,
            failures: 0,
            failed: BTreeSet::new(),
            batches: Vec::new(),
        }
    }

    /// Whether new batches may start.
    pub fn is_running(&self) -> bool {
        self.phase.is_active() && self.paused.is_none()
    }

    /// The template this rollout moves toward right now.
    pub fn target(&self) -> u64 {
        match self.phase {
            RolloutPhase::Updating | RolloutPhase::Completed => self.to_version,
            RolloutPhase::RollingBack | RolloutPhase::RolledBack => self.from_version,
        }
    }
}

/// A rollout decision of the leader, carried in a plan. Each names the template version
/// it was decided for (`target`) and is skipped when that is no longer current.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RolloutChange {
    /// A batch of slots started moving to `target`.
    Batch {
        service: String,
        target: u64,
        slots: Vec<u32>,
    },
    /// A new task failed (exited, failed to start, unhealthy).
    Failed { service: String, target: u64, task: TaskId },
    Pause {
        service: String,
        target: u64,
        reason: String,
    },
    /// Restore the previous template and roll back to it.
    Rollback {
        service: String,
        target: u64,
        reason: String,
    },
    /// Every slot runs `target` and passed `monitor`.
    Complete { service: String, target: u64 },
}

impl RolloutChange {
    pub fn service(&self) -> &str {
        match self {
            RolloutChange::Batch { service, .. }
            | RolloutChange::Failed { service, .. }
            | RolloutChange::Pause { service, .. }
            | RolloutChange::Rollback { service, .. }
            | RolloutChange::Complete { service, .. } => service,
        }
    }
}

/// What an operator asks of a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RolloutOp {
    Pause,
    Resume,
    /// Back to the template of `to_version`, or of the version before the current one.
    Undo {
        to_version: Option<u64>,
    },
}

fn rollout_error(name: &str, reason: impl Into<String>) -> Response {
    Response::Error(CommandError::Rollout {
        name: name.into(),
        reason: reason.into(),
    })
}

impl Service {
    /// The spec of a stored version (tasks name the version of their template).
    pub fn revision(&self, version: u64) -> Option<&Revision> {
        self.history.iter().find(|r| r.version == version)
    }

    /// The newest stored version with the task template of version `template` (after a
    /// scale, a rollback or an undo, that template lives on under later version numbers).
    pub fn template_revision(&self, template: u64) -> Option<&Revision> {
        self.history.iter().rev().find(|r| r.template_version == template)
    }

    /// The spec tasks of template version `template` run: the current spec when it is
    /// current or no longer kept.
    pub fn spec_at(&self, template: u64) -> &ServiceSpec {
        if template == self.template_version {
            return &self.spec;
        }
        self.template_revision(template).map_or(&self.spec, |r| &r.spec)
    }

    /// Records the current spec as a new version of the history.
    pub(crate) fn record(&mut self, change: impl Into<String>, at: Millis) {
        self.history.push(Revision {
            version: self.version,
            template_version: self.template_version,
            spec: self.spec.clone(),
            at,
            change: change.into(),
        });
    }

    /// Replaces the template with a stored version's (replicas and update policy stay).
    fn restore_template(&mut self, from: &Revision, change: String, at: Millis) {
        let mut spec = from.spec.clone();
        spec.replicas = self.spec.replicas;
        spec.update = self.spec.update;
        self.spec = spec;
        self.version += 1;
        self.template_version = from.template_version;
        self.updated_at = at;
        self.record(change, at);
    }

    /// The template version before the current one, from the history.
    fn previous_template(&self) -> Option<&Revision> {
        self.history
            .iter()
            .rev()
            .find(|r| r.template_version != self.template_version)
    }
}

impl State {
    /// Drops versions beyond the service's `update.history`, never one a task, the
    /// current template or an active rollout still needs.
    pub(crate) fn trim_history(&mut self, name: &str) {
        self.trim_histories(&BTreeSet::from([name.to_string()]));
    }

    /// `trim_history` for several services, in one pass over the tasks.
    pub(crate) fn trim_histories(&mut self, names: &BTreeSet<String>) {
        // Only services with something to drop cost a pass over the tasks.
        let names: BTreeSet<String> = names
            .iter()
            .filter(|n| {
                self.services.get(*n).is_some_and(|s| {
                    s.history.len() > s.spec.update.history as usize
                        || s.rollout.as_ref().is_some_and(|r| !r.failed.is_empty())
                })
            })
            .cloned()
            .collect();
        if names.is_empty() {
            return;
        }
        // Per service: versions that tasks meant to run use, and the ids of its tasks.
        let mut seen: std::collections::BTreeMap<&str, (BTreeSet<u64>, BTreeSet<&str>)> = Default::default();
        for t in self.tasks.values() {
            if let Some(name) = names.get(&t.service) {
                let (in_use, existing) = seen.entry(name.as_str()).or_default();
                if t.desired == DesiredState::Running {
                    in_use.insert(t.spec_version);
                }
                existing.insert(t.id.as_str());
            }
        }
        for name in &names {
            let Some(svc) = self.services.get_mut(name) else {
                continue;
            };
            let (mut needed, existing) = seen.remove(name.as_str()).unwrap_or_default();
            if let Some(r) = svc.rollout.as_mut() {
                r.failed.retain(|id| existing.contains(id.as_str()));
                if r.phase.is_active() {
                    needed.insert(r.from_version);
                    needed.insert(r.to_version);
                }
            }
            needed.insert(svc.template_version);
            // Templates are looked up by their newest revision: that one stays.
            let mut newest: std::collections::BTreeMap<u64, u64> = Default::default();
            for r in &svc.history {
                newest.insert(r.template_version, r.version);
            }
            let keep = svc.spec.update.history as usize;
            let len = svc.history.len();
            let mut index = 0;
            svc.history.retain(|r| {
                let recent = index + keep >= len;
                index += 1;
                recent || (needed.contains(&r.template_version) && newest.get(&r.template_version) == Some(&r.version))
            });
        }
    }

    pub(crate) fn rollout_op(&mut self, name: &str, op: &RolloutOp, at: Millis) -> Response {
        let Some(svc) = self.services.get_mut(name) else {
            return Response::Error(CommandError::ServiceNotFound { name: name.into() });
        };
        match op {
            RolloutOp::Pause => {
                let Some(r) = svc.rollout.as_mut().filter(|r| r.phase.is_active()) else {
                    return rollout_error(name, "no rollout in progress");
                };
                if r.paused.is_none() {
                    r.paused = Some("paused by operator".into());
                    r.updated_at = at;
                }
            }
            RolloutOp::Resume => {
                let Some(r) = svc.rollout.as_mut().filter(|r| r.phase.is_active()) else {
                    return rollout_error(name, "no rollout in progress");
                };
                // Resuming a running rollout is a no-op (a retried resume must not fail).
                if r.paused.take().is_none() {
                    let version = svc.version;
                    return Response::Rollout {
                        name: name.into(),
                        version,
                    };
                }
                // Failures seen so far were the reason to pause; the operator has looked.
                r.failed.clear();
                r.failures = 0;
                r.phase_started_at = at;
                r.updated_at = at;
            }
            RolloutOp::Undo { to_version } => {
                let from_template = svc.template_version;
                let target = match to_version {
                    Some(v) => match svc.revision(*v) {
                        Some(r) => r.clone(),
                        None => {
                            let kept: Vec<String> = svc.history.iter().map(|r| r.version.to_string()).collect();
                            return Response::Error(CommandError::VersionNotFound {
                                name: name.to_string(),
                                version: *v,
                                kept: if kept.is_empty() {
                                    "none".into()
                                } else {
                                    kept.join(", ")
                                },
                            });
                        }
                    },
                    None => match svc.previous_template() {
                        Some(r) => r.clone(),
                        None => return rollout_error(name, "there is no earlier version to go back to"),
                    },
                };
                if target.template_version == from_template {
                    return rollout_error(
                        name,
                        format!("version {} already has the current task template", target.version),
                    );
                }
                svc.restore_template(&target, format!("undo to version {}", target.version), at);
                svc.rollout = Some(Rollout::new(
                    from_template,
                    target.template_version,
                    format!("undo to version {}", target.version),
                    at,
                ));
            }
        }
        let version = svc.version;
        self.trim_history(name);
        Response::Rollout {
            name: name.into(),
            version,
        }
    }

    /// Applies one rollout decision of a plan; `false` when it was stale.
    pub(crate) fn apply_rollout_change(&mut self, change: &RolloutChange, at: Millis) -> bool {
        let name = change.service();
        let Some(svc) = self.services.get_mut(name) else {
            return false;
        };
        let current = svc.template_version;
        let Some(r) = svc.rollout.as_mut() else {
            return false;
        };
        let target = match change {
            RolloutChange::Batch { target, .. }
            | RolloutChange::Failed { target, .. }
            | RolloutChange::Pause { target, .. }
            | RolloutChange::Rollback { target, .. }
            | RolloutChange::Complete { target, .. } => *target,
        };
        if target != current || r.target() != current || !r.phase.is_active() {
            return false;
        }
        match change {
            RolloutChange::Batch { slots, .. } => {
                if r.paused.is_some() {
                    return false;
                }
                let number = r.batches.last().map_or(1, |b| b.number + 1);
                r.batches.push(Batch {
                    number,
                    target,
                    slots: slots.clone(),
                    started_at: at,
                });
                if r.batches.len() > MAX_BATCHES {
                    r.batches.remove(0);
                }
            }
            RolloutChange::Failed { task, .. } => {
                if !r.failed.insert(task.clone()) {
                    return false;
                }
                r.failures += 1;
            }
            RolloutChange::Pause { reason, .. } => {
                if r.paused.is_some() {
                    return false;
                }
                r.paused = Some(reason.clone());
                r.reason = reason.clone();
            }
            RolloutChange::Rollback { reason, .. } => {
                if r.phase != RolloutPhase::Updating {
                    return false;
                }
                let from = r.from_version;
                let Some(previous) = svc.template_revision(from).cloned() else {
                    // Nothing to go back to: stop where it is instead.
                    let r = svc.rollout.as_mut().expect("checked");
                    r.paused = Some(format!("{reason}; version {from} is no longer kept, cannot roll back"));
                    r.reason = reason.clone();
                    r.updated_at = at;
                    return true;
                };
                svc.restore_template(&previous, format!("rolled back to version {from}: {reason}"), at);
                let r = svc.rollout.as_mut().expect("checked");
                r.phase = RolloutPhase::RollingBack;
                r.reason = reason.clone();
                r.phase_started_at = at;
                r.failed.clear();
                r.failures = 0;
            }
            RolloutChange::Complete { .. } => {
                r.phase = match r.phase {
                    RolloutPhase::RollingBack => RolloutPhase::RolledBack,
                    _ => RolloutPhase::Completed,
                };
                r.paused = None;
            }
        }
        if let Some(r) = svc.rollout.as_mut() {
            r.updated_at = at;
        }
        true
    }
}
