//! The replicated desired state and its deterministic transition function.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::command::{Command, PutOutcome, Response};
use crate::error::{CommandError, SpecError};
use crate::model::{Node, Task, TaskId};
use crate::rollout::{Revision, Rollout};
use crate::spec::{ServiceSpec, MAX_REPLICAS};
use crate::{Millis, NodeId};

/// A service as stored: the operator's spec plus what the cluster assigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub spec: ServiceSpec,
    /// Starts at 1 and grows by one on every change, also across delete and re-create,
    /// so a (name, version) pair names exactly one spec for the life of the cluster.
    pub version: u64,
    /// The version at which the task template (everything but `replicas`) last changed;
    /// tasks built from an older template are replaced.
    pub template_version: u64,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// The last versions of the spec, oldest first (`update.history` of them, plus any a
    /// task or an active rollout still needs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Revision>,
    /// The last rollout of a template change, finished or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub services: BTreeMap<String, Service>,
    /// Last version of each deleted service, so a re-created one continues from it.
    #[serde(default)]
    pub tombstones: BTreeMap<String, u64>,
    #[serde(default)]
    pub tasks: BTreeMap<TaskId, Task>,
    #[serde(default)]
    pub nodes: BTreeMap<NodeId, Node>,
    /// Source of task sequence numbers (and so of unique task ids).
    #[serde(default)]
    pub next_task_seq: u64,
    /// Node ids removed from the cluster (`node remove`, or the old members dropped by
    /// `--force-new-cluster`): never reused.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub removed: BTreeSet<NodeId>,
    /// The cluster's incarnation (0 reads as 1): raised by every `--force-new-cluster`, so
    /// members of an older incarnation are refused instead of merged.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u64,
    /// The CA, join secret and client tokens; `None` in a cluster made before TLS (or
    /// an `--insecure` one) until a node creates them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<crate::security::Security>,
    /// Recent client writes' request ids and first answers (exactly-once writes).
    #[serde(default, skip_serializing_if = "crate::requests::RequestLog::is_empty")]
    pub requests: crate::requests::RequestLog,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl State {
    /// Applies one command. Pure: the same state and command always give the same result;
    /// a refused command returns `Response::Error` and leaves the state untouched.
    pub fn apply(&mut self, cmd: &Command) -> Response {
        match cmd {
            Command::PutService {
                spec,
                at,
                exclusive_ingress,
            } => self.put_service(spec, *at, *exclusive_ingress),
            Command::DeleteService { name, .. } => self.delete_service(name),
            Command::ScaleService { name, replicas, at } => self.scale_service(name, *replicas, *at),
            Command::RegisterNode { node, at } => self.register_node(node, *at),
            Command::SetNodeStatus { id, status, at } => self.set_node_status(*id, *status, *at),
            Command::SetAvailability { id, availability, at } => self.set_availability(*id, *availability, *at),
            Command::DeclareNodeDead { id, at } => self.declare_node_dead(*id, *at),
            Command::ApplyPlan { plan, at } => self.apply_plan(plan, *at),
            Command::ReportStatus { node, reports, at } => self.report_status(*node, reports, *at),
            Command::Rollout { name, op, at } => self.rollout_op(name, op, *at),
            Command::Batch(cmds) => Response::Batch(cmds.iter().map(|c| self.apply(c)).collect()),
            Command::RemoveNode { id, at } => self.remove_node(*id, *at),
            Command::Security { op, at, .. } => self.security_op(op, *at),
            Command::By { cmd, .. } => self.apply(cmd),
            Command::Request { id, cmd, at } => self.apply_request(id, cmd, *at),
            Command::Exec { .. } => Response::Exec,
        }
    }

    fn apply_request(&mut self, id: &str, cmd: &Command, at: Millis) -> Response {
        use crate::requests::{parse_request_id, Seen};
        // Checked by the node that took the request; a bad one in the log is applied
        // without memory rather than refused, so replicas agree whatever wrote it.
        let Ok(client) = parse_request_id(id) else {
            return self.apply(cmd);
        };
        match self.requests.seen(id, client) {
            Seen::Answered(first) => return Response::Repeated(Box::new(first.clone())),
            Seen::Forgotten { upto } => {
                return Response::Error(CommandError::RequestForgotten { id: id.into(), upto });
            }
            Seen::New => {}
        }
        let response = self.apply(cmd);
        self.requests.remember(id, client, at, response.clone());
        response
    }

    fn security_op(&mut self, op: &crate::security::SecurityOp, at: Millis) -> Response {
        use crate::security::SecurityOp;
        let refuse = |reason: &str| Response::Error(CommandError::Security { reason: reason.into() });
        match (op, self.security.as_mut()) {
            (SecurityOp::Init(s), None) => self.security = Some(s.clone()),
            (SecurityOp::Init(_), Some(_)) => return refuse("the cluster already has a CA"),
            (_, None) => return refuse("the cluster has no CA yet (an --insecure cluster has no tokens)"),
            (SecurityOp::CreateToken { name, token }, Some(sec)) => {
                if sec.tokens.get(name).is_some_and(|t| t.revoked_at.is_none()) {
                    return refuse(&format!(
                        "a token named {name:?} exists; revoke it first or pick another name"
                    ));
                }
                sec.tokens.insert(name.clone(), token.clone());
            }
            (SecurityOp::RevokeToken { name }, Some(sec)) => match sec.tokens.get_mut(name) {
                Some(t) => {
                    t.revoked_at.get_or_insert(at);
                }
                None => return Response::Error(CommandError::TokenNotFound { name: name.clone() }),
            },
            (SecurityOp::RotateJoin { secret }, Some(sec)) => sec.join_secret = secret.clone(),
            (SecurityOp::RotateCa { .. }, Some(sec)) if sec.previous_ca.is_some() => {
                return refuse("a CA rotation is in progress; it must finish first (flotilla ca status)")
            }
            (
                SecurityOp::RotateCa {
                    ca_cert,
                    ca_key,
                    cross_cert,
                },
                Some(sec),
            ) => {
                let previous = std::mem::replace(&mut sec.ca_cert, ca_cert.clone());
                sec.ca_key = ca_key.clone();
                sec.previous_ca = Some(previous);
                sec.cross_cert = Some(cross_cert.clone());
            }
            (SecurityOp::FinishCaRotation { ca_cert }, Some(sec)) => {
                if sec.previous_ca.is_none() || sec.ca_cert != *ca_cert {
                    return refuse("no rotation to this CA is in progress");
                }
                sec.previous_ca = None;
                sec.cross_cert = None;
            }
            (SecurityOp::Issued { id, key, replace }, Some(sec)) => match sec.issued.get(id) {
                Some(k) if k != key && !replace => {
                    return refuse(&format!("node {id}'s certificate was issued to another key"))
                }
                _ => {
                    sec.issued.insert(*id, key.clone());
                }
            },
        }
        Response::Security
    }

    fn put_service(&mut self, spec: &ServiceSpec, at: Millis, exclusive_ingress: bool) -> Response {
        // Not `validate`: the engine bounds are checked at apply only, so a log entry an
        // earlier binary accepted replays the same (see `validate_replicated`).
        if let Err(e) = spec.validate_replicated() {
            return Response::Error(CommandError::InvalidSpec(e));
        }
        if exclusive_ingress {
            if let Some(e) = self.ingress_conflict(spec) {
                return Response::Error(CommandError::InvalidSpec(e));
            }
        }
        let name = spec.name.clone();
        if let Some(existing) = self.services.get_mut(&name) {
            if existing.spec == *spec {
                return Response::Service {
                    name,
                    version: existing.version,
                    outcome: PutOutcome::Unchanged,
                };
            }
            let from = existing.version;
            existing.version += 1;
            if !existing.spec.same_template(spec) {
                let previous = existing.template_version;
                existing.template_version = existing.version;
                existing.rollout = Some(Rollout::new(previous, existing.version, "apply", at));
            }
            existing.spec = spec.clone();
            existing.updated_at = at;
            existing.record("updated", at);
            let version = existing.version;
            self.trim_history(&name);
            return Response::Service {
                name,
                version,
                outcome: PutOutcome::Updated { from },
            };
        }
        let version = self.tombstones.remove(&name).unwrap_or(0) + 1;
        let mut svc = Service {
            spec: spec.clone(),
            version,
            template_version: version,
            created_at: at,
            updated_at: at,
            history: Vec::new(),
            rollout: None,
        };
        svc.record("created", at);
        self.services.insert(name.clone(), svc);
        Response::Service {
            name,
            version,
            outcome: PutOutcome::Created,
        }
    }

    fn delete_service(&mut self, name: &str) -> Response {
        match self.services.remove(name) {
            Some(svc) => {
                self.tombstones.insert(name.to_string(), svc.version);
                Response::Deleted {
                    name: name.to_string(),
                    version: svc.version,
                }
            }
            None => Response::Error(CommandError::ServiceNotFound { name: name.into() }),
        }
    }

    fn scale_service(&mut self, name: &str, replicas: u32, at: Millis) -> Response {
        if replicas > MAX_REPLICAS {
            return Response::Error(CommandError::InvalidSpec(SpecError::invalid(
                "replicas",
                format!("must be between 0 and {MAX_REPLICAS}, got {replicas}"),
            )));
        }
        let Some(svc) = self.services.get_mut(name) else {
            return Response::Error(CommandError::ServiceNotFound { name: name.into() });
        };
        if svc.spec.replicas != replicas {
            svc.spec.replicas = replicas;
            svc.version += 1;
            svc.updated_at = at;
            svc.record(format!("scaled to {replicas}"), at);
        }
        let version = svc.version;
        self.trim_history(name);
        Response::Scaled {
            name: name.into(),
            version,
            replicas,
        }
    }

    /// What a `PutService` of `spec` would do, without doing it: lets the API answer
    /// `unchanged` without writing to the log.
    pub fn preview_put(&self, spec: &ServiceSpec) -> Option<PutOutcome> {
        self.services.get(&spec.name).map(|s| {
            if s.spec == *spec {
                PutOutcome::Unchanged
            } else {
                PutOutcome::Updated { from: s.version }
            }
        })
    }
}
