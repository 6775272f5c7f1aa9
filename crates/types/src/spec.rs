//! The service spec an operator writes, in YAML or JSON. Parsing rejects unknown fields by
//! name; `ServiceSpec::validate` checks values and names the offending field.

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
    /// Port published on the node; omitted means not published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<u32>,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
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
    /// JSON (one object or an array of objects). Every spec is validated.
    pub fn parse_many(text: &str) -> Result<Vec<ServiceSpec>, SpecError> {
        let trimmed = text.trim_start();
        let specs = if trimmed.starts_with('{') || trimmed.starts_with('[') {
            parse_json(trimmed)?
        } else {
            parse_yaml(text)?
        };
        if specs.is_empty() {
            return Err(SpecError::Parse("no service spec found in the input".into()));
        }
        for spec in &specs {
            spec.validate()?;
        }
        Ok(specs)
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
        a == *other
    }
}

/// Keys of a service as `flotilla get -o json|yaml` prints it; such a document is applied
/// by its `spec`, so the output of `get` can be fed back to `apply`.
const VIEW_KEYS: [&str; 5] = ["name", "version", "created_at", "updated_at", "spec"];

fn json_view_spec(v: &serde_json::Value) -> Option<&serde_json::Value> {
    let m = v.as_object()?;
    let spec = m.get("spec").filter(|s| s.is_object())?;
    m.keys().all(|k| VIEW_KEYS.contains(&k.as_str())).then_some(spec)
}

fn yaml_view_spec(v: &serde_yaml::Value) -> Option<&serde_yaml::Value> {
    let m = v.as_mapping()?;
    let spec = m.get("spec").filter(|s| s.is_mapping())?;
    m.keys()
        .all(|k| k.as_str().is_some_and(|k| VIEW_KEYS.contains(&k)))
        .then_some(spec)
}

fn parse_json(text: &str) -> Result<Vec<ServiceSpec>, SpecError> {
    let err = |e: serde_json::Error| SpecError::Parse(e.to_string());
    let value: serde_json::Value = serde_json::from_str(text).map_err(err)?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        one => vec![one],
    };
    items
        .iter()
        .map(|item| ServiceSpec::deserialize(json_view_spec(item).unwrap_or(item)).map_err(err))
        .collect()
}

fn parse_yaml(text: &str) -> Result<Vec<ServiceSpec>, SpecError> {
    let prefix = |index: usize, e: serde_yaml::Error| {
        if index == 0 {
            SpecError::Parse(e.to_string())
        } else {
            SpecError::Parse(format!("document {}: {e}", index + 1))
        }
    };
    let mut values = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        values.push(serde_yaml::Value::deserialize(doc).map_err(|e| prefix(index, e))?);
    }
    let mut specs = Vec::new();
    let docs = serde_yaml::Deserializer::from_str(text);
    for (index, (value, doc)) in values.iter().zip(docs).enumerate() {
        match value {
            // An empty document, e.g. a trailing `---`.
            serde_yaml::Value::Null => {}
            serde_yaml::Value::Sequence(items) => {
                for item in items {
                    let item = yaml_view_spec(item).unwrap_or(item);
                    specs.push(ServiceSpec::deserialize(item).map_err(|e| prefix(index, e))?);
                }
            }
            v if yaml_view_spec(v).is_some() => {
                let spec = yaml_view_spec(v).expect("checked");
                specs.push(ServiceSpec::deserialize(spec).map_err(|e| prefix(index, e))?);
            }
            // Typed from the document itself, so errors keep their line numbers.
            _ => specs.push(ServiceSpec::deserialize(doc).map_err(|e| prefix(index, e))?),
        }
    }
    Ok(specs)
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
