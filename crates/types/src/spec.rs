//! The service spec an operator writes, in YAML or JSON. Parsing rejects unknown fields by
//! name (reading the text is `document`'s job); `ServiceSpec::validate` checks values and
//! names the offending field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::error::SpecError;
use crate::update::UpdatePolicy;

pub const MAX_REPLICAS: u32 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    pub image: String,
    /// Replaces the image's entrypoint when set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default, skip_serializing_if = "Placement::is_empty")]
    pub placement: Placement,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Time between SIGTERM and SIGKILL when a task is stopped.
    #[serde(default = "default_stop_grace")]
    pub stop_grace: Duration,
    /// How a change of the task template rolls out.
    #[serde(default, skip_serializing_if = "UpdatePolicy::is_default")]
    pub update: UpdatePolicy,
    /// Whether tasks move, one health-gated move at a time, to even out a spread that
    /// became uneven (a node came back or joined). Default true.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub rebalance: bool,
    /// What becomes of a task whose node is cut off from the leader: `replace` (it may
    /// keep running while its replacement runs elsewhere) or `fence` (it stops itself
    /// first: never two running copies of a slot).
    #[serde(default, skip_serializing_if = "OnDisconnect::is_default")]
    pub on_disconnect: OnDisconnect,
    /// With `on_disconnect: fence`: how long a node goes without an acknowledged
    /// heartbeat before it stops the task itself. Unset: the cluster's default, a little
    /// under the node timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_after: Option<Duration>,
}

/// `on_disconnect`: what a service's tasks do when their node is cut off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDisconnect {
    /// The leader replaces the task once the node is down (after `node_timeout`); the
    /// cut-off copy may keep running until the node comes back. Fastest recovery.
    #[default]
    Replace,
    /// The cut-off node stops the task after `stop_after` without an acknowledged
    /// heartbeat, and the leader replaces it only after that (plus the stop grace and a
    /// margin): never two running copies of a slot.
    Fence,
}

impl OnDisconnect {
    pub fn is_default(&self) -> bool {
        *self == OnDisconnect::Replace
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OnDisconnect::Replace => "replace",
            OnDisconnect::Fence => "fence",
        }
    }
}

/// How much longer than a fenced task's `stop_after` plus stop grace the leader waits
/// before it replaces the task: covers the node's check interval and the rate drift of
/// two monotonic clocks (see `docs/RELIABILITY.md`).
pub const FENCE_MARGIN: std::time::Duration = std::time::Duration::from_secs(1);

/// The shortest `stop_after` a spec may ask for: a node heartbeats the leader every
/// second, so a shorter one would stop tasks after a single late heartbeat.
pub const MIN_STOP_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// The longest `stop_after` a spec may ask for.
pub const MAX_STOP_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

impl ServiceSpec {
    /// Whether the service's tasks are fenced when their node is cut off.
    pub fn fenced(&self) -> bool {
        self.on_disconnect == OnDisconnect::Fence
    }

    /// A fenced task's `stop_after`, with `default` (the cluster's) when the spec has none.
    pub fn stop_after_or(&self, default: std::time::Duration) -> std::time::Duration {
        self.stop_after.map_or(default, |d| d.0)
    }

    /// How long after the leader last heard from a cut-off node it may replace this
    /// service's tasks there: at once for `replace`; for `fence`, once the node has
    /// stopped them itself (`stop_after` + `stop_grace` + [`FENCE_MARGIN`]).
    pub fn replace_after(&self, default_stop_after: std::time::Duration) -> std::time::Duration {
        if self.fenced() {
            self.stop_after_or(default_stop_after) + self.stop_grace.0 + FENCE_MARGIN
        } else {
            std::time::Duration::ZERO
        }
    }
}

fn default_true() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_replicas() -> u32 {
    1
}

fn default_stop_grace() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default = "default_cpu")]
    pub cpu_millis: u32,
    #[serde(default = "default_memory")]
    pub memory_mb: u32,
}

fn default_cpu() -> u32 {
    100
}

fn default_memory() -> u32 {
    64
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpu_millis: default_cpu(),
            memory_mb: default_memory(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// Port inside the container.
    pub container: u32,
    /// Port published for the service; omitted means not published (the container is
    /// reached at its own address only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<u32>,
    #[serde(default)]
    pub protocol: Protocol,
    /// `ingress` (the default with a `host` number): every node's routing mesh listens on
    /// `host` and forwards to a healthy task anywhere. `host`: bound on the node that runs
    /// the task only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<PortMode>,
    /// With `ingress`: each connection to a task starts with a PROXY protocol v2 header
    /// naming the client's address.
    #[serde(default, skip_serializing_if = "is_false")]
    pub proxy_protocol: bool,
}

impl Port {
    /// The port's mode as it acts: `mode`, else `ingress` with a `host` number.
    pub fn effective_mode(&self) -> PortMode {
        match (self.mode, self.host) {
            (Some(m), _) => m,
            (None, Some(_)) => PortMode::Ingress,
            (None, None) => PortMode::Host,
        }
    }

    /// The host port the routing mesh listens on for this port, if it is an ingress port.
    pub fn ingress(&self) -> Option<u16> {
        match self.effective_mode() {
            PortMode::Ingress => self.host.and_then(|h| u16::try_from(h).ok()),
            PortMode::Host => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortMode {
    Ingress,
    Host,
}

impl PortMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PortMode::Ingress => "ingress",
            PortMode::Host => "host",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Exactly one of `exec`, `http`, `tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpProbe>,
    #[serde(default = "default_probe_interval")]
    pub interval: Duration,
    #[serde(default = "default_probe_timeout")]
    pub timeout: Duration,
    #[serde(default = "default_probe_retries")]
    pub retries: u32,
    #[serde(default)]
    pub start_period: Duration,
}

fn default_probe_interval() -> Duration {
    Duration::from_secs(2)
}

fn default_probe_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_probe_retries() -> u32 {
    3
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    pub port: u32,
    #[serde(default = "default_http_path")]
    pub path: String,
}

fn default_http_path() -> String {
    "/".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpProbe {
    pub port: u32,
}

/// Which probe a health check runs, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckKind<'a> {
    Exec(&'a [String]),
    Http(&'a HttpProbe),
    Tcp(&'a TcpProbe),
}

impl HealthCheck {
    pub fn kind(&self) -> Option<HealthCheckKind<'_>> {
        match (&self.exec, &self.http, &self.tcp) {
            (Some(cmd), None, None) => Some(HealthCheckKind::Exec(cmd)),
            (None, Some(h), None) => Some(HealthCheckKind::Http(h)),
            (None, None, Some(t)) => Some(HealthCheckKind::Tcp(t)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    #[default]
    OnFailure,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    #[serde(default)]
    pub condition: RestartCondition,
    /// 0 means unlimited.
    #[serde(default)]
    pub max_attempts: u32,
    /// First backoff; doubles on each attempt up to `max_delay`.
    #[serde(default = "default_restart_delay")]
    pub delay: Duration,
    #[serde(default = "default_restart_max_delay")]
    pub max_delay: Duration,
}

fn default_restart_delay() -> Duration {
    Duration::from_millis(500)
}

fn default_restart_max_delay() -> Duration {
    Duration::from_secs(30)
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            condition: RestartCondition::default(),
            max_attempts: 0,
            delay: default_restart_delay(),
            max_delay: default_restart_max_delay(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// Node label constraints: `zone == a`, `disk != hdd`, `zone in (a, b)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_node: Option<u32>,
}

impl Placement {
    pub fn is_empty(&self) -> bool {
        self.constraints.is_empty() && self.max_per_node.is_none()
    }
}

impl ServiceSpec {
    /// Parses one or more specs from a YAML stream (documents separated by `---`) or from
    /// JSON (one object or an array of objects). Every spec is validated; two specs of
    /// one name are refused (see `document`).
    pub fn parse_many(text: &str) -> Result<Vec<ServiceSpec>, SpecError> {
        Ok(crate::document::read(text)?.into_iter().map(|d| d.spec).collect())
    }

    /// Parses exactly one validated spec.
    pub fn parse(text: &str) -> Result<ServiceSpec, SpecError> {
        let mut specs = Self::parse_many(text)?;
        if specs.len() != 1 {
            return Err(SpecError::Parse(format!(
                "expected one service spec, found {}",
                specs.len()
            )));
        }
        Ok(specs.remove(0))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a spec always serializes")
    }

    /// Whether tasks built from `self` and from `other` are the same: everything but the
    /// replica count and the update policy is part of the task template.
    pub fn same_template(&self, other: &ServiceSpec) -> bool {
        let mut a = self.clone();
        a.replicas = other.replicas;
        a.update = other.update;
        a.rebalance = other.rebalance;
        a == *other
    }
}

/// A parsed placement constraint on node labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub key: String,
    pub op: ConstraintOp,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConstraintOp {
    Eq,
    Ne,
    In,
}

impl Constraint {
    /// `key == value`, `key != value` or `key in (a, b, c)`.
    pub fn parse(s: &str) -> Result<Constraint, String> {
        let bad = || format!("{s:?} is not a constraint; write `key == value`, `key != value` or `key in (a, b)`");
        let (key, op, rest) = if let Some((k, v)) = s.split_once("==") {
            (k, ConstraintOp::Eq, v)
        } else if let Some((k, v)) = s.split_once("!=") {
            (k, ConstraintOp::Ne, v)
        } else if let Some((k, v)) = s.split_once(" in ") {
            (k, ConstraintOp::In, v)
        } else {
            return Err(bad());
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(bad());
        }
        let values: Vec<String> = match op {
            ConstraintOp::In => {
                let inner = rest
                    .trim()
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(bad)?;
                inner.split(',').map(|v| v.trim().to_string()).collect()
            }
            _ => vec![rest.trim().to_string()],
        };
        if values.iter().any(|v| v.is_empty()) {
            return Err(bad());
        }
        Ok(Constraint {
            key: key.to_string(),
            op,
            values,
        })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.op {
            ConstraintOp::Eq => value == Some(&self.values[0]),
            ConstraintOp::Ne => value != Some(&self.values[0]),
            ConstraintOp::In => value.is_some_and(|v| self.values.contains(v)),
        }
    }
}
