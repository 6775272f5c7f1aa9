//! CLI errors and their exit codes: 0 success, 1 operation failed, 2 usage error,
//! 3 cluster unreachable, 4 not found, 5 credential refused (missing, unknown, expired,
//! revoked or not allowed).

use std::fmt;

#[derive(Debug)]
pub enum CliError {
    /// The operation was refused or failed.
    Failed(String),
    /// The command line or an input file is unusable.
    Usage(String),
    /// No node could be reached, or the cluster has no leader.
    Unreachable(String),
    NotFound(String),
    /// The cluster refused the credential (or there was none).
    Credential(String),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Failed(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Unreachable(_) => 3,
            CliError::NotFound(_) => 4,
            CliError::Credential(_) => 5,
        }
    }

    /// Maps a status returned by a node that was reached.
    pub fn from_status(s: &tonic::Status) -> Self {
        let msg = s.message().to_string();
        match s.code() {
            tonic::Code::NotFound => CliError::NotFound(msg),
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => CliError::Credential(msg),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => CliError::Unreachable(msg),
            // The client's own deadline (`--timeout`) passed before any answer.
            tonic::Code::Cancelled if msg == "Timeout expired" => CliError::Unreachable(
                "no answer within --timeout; a change may or may not have been applied: look with \
                 `flotilla get`, and `flotilla cluster status` for the cluster's health"
                    .into(),
            ),
            tonic::Code::InvalidArgument => CliError::Failed(msg),
            tonic::Code::ResourceExhausted => CliError::Failed(format!("request too large: {msg}")),
            // tonic's answer to a message over the receiver's limit.
            tonic::Code::OutOfRange if msg.contains("message length too large") => {
                CliError::Failed(format!("request too large: {msg}"))
            }
            _ => CliError::Failed(msg),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Failed(m)
            | CliError::Usage(m)
            | CliError::Unreachable(m)
            | CliError::NotFound(m)
            | CliError::Credential(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CliError {}
