use std::time::Duration;

/// What went wrong in a driver call. The executor turns these into a step outcome:
/// `is_retryable()` errors mean "try again later", the rest fail the task.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The image is not present and cannot be had: the registry has no such image, or
    /// there is no registry. `reason` is the engine's word for it (may be empty).
    #[error("image not found: {image}{}", if reason.is_empty() { String::new() } else { format!(" ({reason})") })]
    ImageNotFound { image: String, reason: String },
    #[error("container not found: {id}")]
    NotFound { id: String },
    #[error("container name already in use: {name}")]
    AlreadyExists { name: String },
    #[error("container is not running: {id}")]
    NotRunning { id: String },
    /// The engine cannot be reached right now; nothing was decided.
    #[error("container engine unavailable: {0}")]
    Unavailable(String),
    #[error("invalid container spec: {0}")]
    InvalidSpec(String),
    #[error("{what} timed out after {after:?}")]
    Timeout { what: String, after: Duration },
    /// The engine answered with an error we have no better variant for.
    #[error("engine error (status {status}): {message}")]
    Engine { status: u16, message: String },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

impl DriverError {
    /// True when the same call may succeed later without anyone changing the spec.
    pub fn is_retryable(&self) -> bool {
        match self {
            DriverError::Unavailable(_) | DriverError::Timeout { .. } | DriverError::Io(_) => true,
            DriverError::Engine { status, .. } => *status >= 500,
            DriverError::ImageNotFound { .. }
            | DriverError::NotFound { .. }
            | DriverError::AlreadyExists { .. }
            | DriverError::NotRunning { .. }
            | DriverError::InvalidSpec(_)
            | DriverError::Other(_) => false,
        }
    }

    /// True when the engine did not answer at all (as opposed to answering with a refusal).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            DriverError::Unavailable(_) | DriverError::Timeout { .. } | DriverError::Io(_)
        )
    }

    pub(crate) fn not_found(id: &crate::ContainerId) -> Self {
        DriverError::NotFound { id: id.0.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_not_found_message_is_stable() {
        let e = DriverError::ImageNotFound {
            image: "x/y:1".into(),
            reason: String::new(),
        };
        assert_eq!(e.to_string(), "image not found: x/y:1");
        let e = DriverError::ImageNotFound {
            image: "x/y:1".into(),
            reason: "no registry reachable".into(),
        };
        assert_eq!(e.to_string(), "image not found: x/y:1 (no registry reachable)");
        assert!(!e.is_retryable());
    }

    #[test]
    fn engine_errors_retry_only_on_server_side_failures() {
        let e = |status| DriverError::Engine {
            status,
            message: String::new(),
        };
        assert!(e(500).is_retryable());
        assert!(!e(400).is_retryable());
        assert!(DriverError::Unavailable("down".into()).is_retryable());
    }
}
