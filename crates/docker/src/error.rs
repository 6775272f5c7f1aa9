//! bollard's errors in the driver's terms. The engine answers a missing container with
//! 404 and a conflict (name taken, container not running) with 409, so what a status
//! code means depends on the call: each call site says which variant a 404/409 becomes.

use bollard::errors::Error;
use flotilla_executor::{ContainerId, DriverError};

/// The engine's HTTP status, when the engine answered at all.
pub(crate) fn status(e: &Error) -> Option<u16> {
    match e {
        Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Errors with no call-specific meaning: transport failures mean the engine is
/// unavailable (retry later), 400 is the spec's fault, the rest is passed on.
pub(crate) fn generic(e: Error) -> DriverError {
    match e {
        Error::DockerResponseServerError {
            status_code: 400,
            message,
        } => DriverError::InvalidSpec(message),
        Error::DockerResponseServerError { status_code, message } => DriverError::Engine {
            status: status_code,
            message,
        },
        Error::RequestTimeoutError
        | Error::IOError { .. }
        | Error::HyperResponseError { .. }
        | Error::HttpClientError { .. } => DriverError::Unavailable(e.to_string()),
        other => DriverError::Other(other.to_string()),
    }
}

/// For calls on an existing container: 404 means it does not exist.
pub(crate) fn on_container(id: &ContainerId, e: Error) -> DriverError {
    match status(&e) {
        Some(404) => DriverError::NotFound { id: id.0.clone() },
        _ => generic(e),
    }
}
