//! Value checks on a parsed spec. Each error names the field as a dotted path.

use std::collections::BTreeSet;

use crate::error::SpecError;
use crate::spec::{HealthCheck, Placement, PortMode, ServiceSpec, MAX_REPLICAS};

/// Longest spec (as JSON) the cluster accepts; larger documents are refused before they
/// reach the Raft log.
pub const MAX_SPEC_BYTES: usize = 1 << 20;

/// The least CPU a task may ask for: Docker refuses to create a container with less than
/// 0.01 CPU (`NanoCpus` below 10^7: "Range of CPUs is from 0.01 to …").
pub const MIN_CPU_MILLIS: u32 = 10;

/// The least memory a task may ask for: Docker refuses a memory limit below 6 MB
/// ("Minimum memory limit allowed is 6MB").
pub const MIN_MEMORY_MB: u32 = 6;

impl ServiceSpec {
    /// Every check an apply runs: the rules of the replicated state, then the values the
    /// container engine is known to refuse, so such a spec fails at apply rather than as a
    /// task that never starts.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.validate_replicated()?;
        self.check_engine_bounds()
    }

    /// The rules `State::apply` enforces. Every replica replays the log with them, also a
    /// later binary replaying entries an earlier one accepted (after an upgrade), so they
    /// must never tighten: a new bound goes into `check_engine_bounds`, checked at apply.
    pub(crate) fn validate_replicated(&self) -> Result<(), SpecError> {
        validate_dns_label("name", &self.name)?;
        if self.image.trim().is_empty() {
            return Err(SpecError::invalid("image", "is required"));
        }
        if self.image.chars().any(char::is_whitespace) {
            return Err(SpecError::invalid("image", "must not contain whitespace"));
        }
        if self.replicas > MAX_REPLICAS {
            return Err(SpecError::invalid(
                "replicas",
                format!("must be between 0 and {MAX_REPLICAS}, got {}", self.replicas),
            ));
        }
        if self.resources.cpu_millis == 0 {
            return Err(SpecError::invalid("resources.cpu_millis", "must be positive"));
        }
        if self.resources.memory_mb == 0 {
            return Err(SpecError::invalid("resources.memory_mb", "must be positive"));
        }
        for key in self.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(SpecError::invalid(
                    format!("env.{key}"),
                    "variable names must be non-empty and contain neither '=' nor NUL",
                ));
            }
        }
        validate_labels(&self.labels)?;
        self.validate_ports()?;
        if let Some(hc) = &self.health_check {
            validate_health_check(hc)?;
        }
        if self.restart.max_delay < self.restart.delay {
            return Err(SpecError::invalid(
                "restart.max_delay",
                "must not be shorter than restart.delay",
            ));
        }
        validate_placement(&self.placement)?;
        self.update.validate()?;
        let size = self.to_json().len();
        if size > MAX_SPEC_BYTES {
            return Err(SpecError::invalid(
                "spec",
                format!("is {size} bytes; the limit is {MAX_SPEC_BYTES}"),
            ));
        }
        Ok(())
    }

    fn check_engine_bounds(&self) -> Result<(), SpecError> {
        check_image_case(&self.image)?;
        self.validate_fence()?;
        let r = &self.resources;
        engine_least("resources.cpu_millis", r.cpu_millis, MIN_CPU_MILLIS, "CPU", "0.01 CPU")?;
        engine_least("resources.memory_mb", r.memory_mb, MIN_MEMORY_MB, "memory", "6 MB")
    }

    fn validate_ports(&self) -> Result<(), SpecError> {
        let mut container = BTreeSet::new();
        let mut host = BTreeSet::new();
        for (i, port) in self.ports.iter().enumerate() {
            check_port(&format!("ports[{i}].container"), port.container)?;
            if !container.insert((port.container, port.protocol)) {
                return Err(SpecError::invalid(
                    format!("ports[{i}].container"),
                    format!("duplicate port {}", port.container),
                ));
            }
            if let Some(h) = port.host {
                check_port(&format!("ports[{i}].host"), h)?;
                if !host.insert((h, port.protocol)) {
                    return Err(SpecError::invalid(
                        format!("ports[{i}].host"),
                        format!("duplicate port {h}"),
                    ));
                }
            }
            if port.mode == Some(PortMode::Ingress) && port.host.is_none() {
                return Err(SpecError::invalid(
                    format!("ports[{i}].host"),
                    "mode ingress needs a host port: the one every node's routing mesh listens on",
                ));
            }
            if port.proxy_protocol && port.ingress().is_none() {
                return Err(SpecError::invalid(
                    format!("ports[{i}].proxy_protocol"),
                    "only an ingress port (mode ingress, with a host port) goes through the routing mesh that sends it",
                ));
            }
        }
        Ok(())
    }
}

/// `value` is at least `least`, the least `what` (`plainly` in the engine's own words) the
/// container engine accepts.
impl ServiceSpec {
    /// `on_disconnect` and `stop_after` (checked at apply only: they came after specs
    /// the log already holds).
    fn validate_fence(&self) -> Result<(), SpecError> {
        if let Some(after) = self.stop_after {
            if !self.fenced() {
                return Err(SpecError::invalid(
                    "stop_after",
                    "applies only with on_disconnect: fence (a replace service's tasks are not stopped)",
                ));
            }
            if after.0 < crate::spec::MIN_STOP_AFTER || after.0 > crate::spec::MAX_STOP_AFTER {
                return Err(SpecError::invalid(
                    "stop_after",
                    format!("must be between 2s and 1h, got {after}"),
                ));
            }
        }
        if self.fenced() && self.update.order == crate::UpdateOrder::StartFirst {
            return Err(SpecError::invalid(
                "update.order",
                "start-first runs two copies of a slot, which on_disconnect: fence forbids; use stop-first",
            ));
        }
        Ok(())
    }
}

fn engine_least(field: &str, value: u32, least: u32, what: &str, plainly: &str) -> Result<(), SpecError> {
    if value >= least {
        return Ok(());
    }
    Err(SpecError::invalid(
        field,
        format!("{value} is below {least}, the least {what} the container engine accepts ({plainly})"),
    ))
}

/// Docker refuses a reference whose repository holds a capital ("repository name must be
/// lowercase"). The registry host (a first component with `.` or `:`, or `localhost`) and
/// the tag may hold capitals.
fn check_image_case(image: &str) -> Result<(), SpecError> {
    let name = image.split('@').next().unwrap_or(image);
    let path = match name.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => rest,
        _ => name,
    };
    let repository = path.rsplit_once(':').map_or(path, |(repository, _tag)| repository);
    if repository.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(SpecError::invalid(
            "image",
            format!("{image:?}: the container engine accepts only a lowercase repository name"),
        ));
    }
    Ok(())
}

fn check_port(field: &str, port: u32) -> Result<(), SpecError> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(SpecError::invalid(
            field,
            format!("must be between 1 and 65535, got {port}"),
        ))
    }
}

fn validate_health_check(hc: &HealthCheck) -> Result<(), SpecError> {
    let kinds = [hc.exec.is_some(), hc.http.is_some(), hc.tcp.is_some()];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(SpecError::invalid(
            "health_check",
            "set exactly one of exec, http or tcp",
        ));
    }
    if let Some(cmd) = &hc.exec {
        if cmd.is_empty() {
            return Err(SpecError::invalid("health_check.exec", "must not be empty"));
        }
    }
    if let Some(http) = &hc.http {
        check_port("health_check.http.port", http.port)?;
        if !http.path.starts_with('/') {
            return Err(SpecError::invalid("health_check.http.path", "must start with '/'"));
        }
    }
    if let Some(tcp) = &hc.tcp {
        check_port("health_check.tcp.port", tcp.port)?;
    }
    if hc.interval.is_zero() {
        return Err(SpecError::invalid("health_check.interval", "must be positive"));
    }
    if hc.timeout.is_zero() {
        return Err(SpecError::invalid("health_check.timeout", "must be positive"));
    }
    if hc.retries == 0 {
        return Err(SpecError::invalid("health_check.retries", "must be positive"));
    }
    Ok(())
}

/// Labels go onto every container of the service, beside flotilla's own `flotilla.*`
/// labels, which find and adopt containers: those keys are reserved.
fn validate_labels(labels: &std::collections::BTreeMap<String, String>) -> Result<(), SpecError> {
    for (key, value) in labels {
        let field = format!("labels.{key}");
        if key.trim().is_empty() || key.contains('\0') || value.contains('\0') {
            return Err(SpecError::invalid(
                field,
                "label keys must be non-empty; keys and values contain no NUL",
            ));
        }
        if key.starts_with("flotilla.") {
            return Err(SpecError::invalid(
                field,
                "the flotilla.* label keys are flotilla's own (it finds its containers by them)",
            ));
        }
    }
    Ok(())
}

fn validate_placement(p: &Placement) -> Result<(), SpecError> {
    for (i, c) in p.constraints.iter().enumerate() {
        crate::spec::Constraint::parse(c)
            .map_err(|reason| SpecError::invalid(format!("placement.constraints[{i}]"), reason))?;
    }
    if p.max_per_node == Some(0) {
        return Err(SpecError::invalid("placement.max_per_node", "must be positive"));
    }
    Ok(())
}

/// RFC 1123 label: 1–63 of `a-z`, `0-9`, `-`, starting and ending alphanumeric.
pub fn validate_dns_label(field: &str, s: &str) -> Result<(), SpecError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(SpecError::invalid(
            field,
            format!(
                "{s:?} is not a valid name: use 1-63 lowercase letters, digits or '-', \
                 starting and ending with a letter or digit"
            ),
        ))
    }
}
