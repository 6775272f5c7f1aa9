//! The `update` policy of a spec: how a change of the task template rolls out.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::duration::Duration;
use crate::error::SpecError;

/// Most versions of one service the history may keep.
pub const MAX_HISTORY: u32 = 100;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    /// Stop an old task, then start its replacement: needs no spare capacity.
    #[default]
    StopFirst,
    /// Start the replacement, stop the old task once the new one passed `monitor`.
    StartFirst,
}

impl UpdateOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateOrder::StopFirst => "stop-first",
            UpdateOrder::StartFirst => "start-first",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureAction {
    /// Stop where it is; `rollout resume` goes on.
    Pause,
    /// Go back to the previous version, batch by batch.
    #[default]
    Rollback,
    /// Count the failure and go on.
    Continue,
}

impl FailureAction {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureAction::Pause => "pause",
            FailureAction::Rollback => "rollback",
            FailureAction::Continue => "continue",
        }
    }
}

/// A fraction between 0 and 1. Compared by value; NaN never passes validation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ratio(pub f64);

impl Eq for Ratio {}

impl Serialize for Ratio {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for Ratio {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        f64::deserialize(d).map(Ratio)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatePolicy {
    /// Tasks replaced at once; 0 replaces all at once.
    #[serde(default = "default_parallelism")]
    pub parallelism: u32,
    /// Pause between one batch passing `monitor` and the next batch starting.
    #[serde(default)]
    pub delay: Duration,
    #[serde(default)]
    pub order: UpdateOrder,
    /// How long a new task must stay healthy (running, without a health check) to count.
    #[serde(default = "default_monitor")]
    pub monitor: Duration,
    #[serde(default)]
    pub failure_action: FailureAction,
    /// Fraction of the replicas whose new task may fail before `failure_action` applies.
    #[serde(default)]
    pub max_failure_ratio: Ratio,
    /// Versions of the service kept for `rollout history` and `rollout undo`.
    #[serde(default = "default_history")]
    pub history: u32,
}

fn default_parallelism() -> u32 {
    1
}

fn default_monitor() -> Duration {
    Duration::from_secs(5)
}

fn default_history() -> u32 {
    10
}

impl Default for UpdatePolicy {
    fn default() -> Self {
        UpdatePolicy {
            parallelism: default_parallelism(),
            delay: Duration::default(),
            order: UpdateOrder::default(),
            monitor: default_monitor(),
            failure_action: FailureAction::default(),
            max_failure_ratio: Ratio::default(),
            history: default_history(),
        }
    }
}

impl UpdatePolicy {
    pub fn is_default(&self) -> bool {
        *self == UpdatePolicy::default()
    }

    /// How many slots one batch replaces, for a service of `replicas`.
    pub fn batch_size(&self, replicas: u32) -> u32 {
        match self.parallelism {
            0 => replicas.max(1),
            p => p,
        }
    }

    /// Whether `failed` failed new tasks out of `replicas` exceed the tolerated ratio.
    pub fn too_many_failures(&self, failed: usize, replicas: u32) -> bool {
        failed > 0 && failed as f64 > self.max_failure_ratio.0 * f64::from(replicas.max(1))
    }

    pub(crate) fn validate(&self) -> Result<(), SpecError> {
        let ratio = self.max_failure_ratio.0;
        if !(0.0..=1.0).contains(&ratio) {
            return Err(SpecError::invalid(
                "update.max_failure_ratio",
                format!("must be between 0 and 1, got {ratio}"),
            ));
        }
        if self.history == 0 || self.history > MAX_HISTORY {
            return Err(SpecError::invalid(
                "update.history",
                format!("must be between 1 and {MAX_HISTORY}, got {}", self.history),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_ratio_counts_against_replicas() {
        let mut p = UpdatePolicy::default();
        assert!(!p.too_many_failures(0, 6));
        assert!(p.too_many_failures(1, 6));
        p.max_failure_ratio = Ratio(0.34);
        assert!(!p.too_many_failures(2, 6));
        assert!(p.too_many_failures(3, 6));
    }

    #[test]
    fn parallelism_zero_means_everything() {
        let p = UpdatePolicy {
            parallelism: 0,
            ..Default::default()
        };
        assert_eq!(p.batch_size(7), 7);
        assert_eq!(UpdatePolicy::default().batch_size(7), 1);
    }
}
