use serde::{Deserialize, Serialize};

/// A spec that cannot be accepted. The shape is part of the wire and log formats: the
/// detail lives in the strings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum SpecError {
    /// `field` is a dotted path into the document (`resources.memory_mb`, `ports[1].host`)
    /// so the operator knows what to fix; `reason` ends with where the field is written,
    /// `(line 3, column 15)`, when the text is at hand.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// What names no one field, or more than one: syntax, a document that is not a map,
    /// several unknown fields, an error in an input of several documents (prefixed
    /// `document 2: `), two documents of one name.
    #[error("{0}")]
    Parse(String),
}

impl SpecError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        SpecError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The offending field, when one is known.
    pub fn field(&self) -> Option<&str> {
        match self {
            SpecError::Invalid { field, .. } => Some(field),
            SpecError::Parse(_) => None,
        }
    }
}

/// Why the state machine refused a command. Refusal changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CommandError {
    #[error("service {name:?} not found")]
    ServiceNotFound { name: String },
    #[error("invalid spec: {0}")]
    InvalidSpec(SpecError),
    #[error("node {id} not found")]
    NodeNotFound { id: u64 },
    #[error("rollout of {name}: {reason}")]
    Rollout { name: String, reason: String },
    /// `rollout undo --to-version V` of a version the history does not hold.
    #[error("rollout of {name}: version {version} is not in the history (kept: {kept})")]
    VersionNotFound { name: String, version: u64, kept: String },
    #[error("node id {id} was removed from this cluster and cannot be reused; pick a new id")]
    NodeRemoved { id: u64 },
    #[error("token {name:?} not found")]
    TokenNotFound { name: String },
    /// A write whose request id may be one the cluster applied and has since forgotten:
    /// refused rather than risk applying it twice.
    #[error(
        "request {id}: the cluster no longer remembers requests this old (its id's time is not after {upto} ms, \
         the newest it forgot); if this is not a retry, this client's clock may be behind: check it and try again"
    )]
    RequestForgotten { id: String, upto: u64 },
    /// A security change that does not fit the state (a second CA, a name in use).
    #[error("{reason}")]
    Security { reason: String },
}
