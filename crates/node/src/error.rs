//! The node's request error, and its one conversion to a gRPC status at the edge. The
//! facts a caller acts on ("not the leader", "no quorum", "stop, you are fenced") travel
//! as metadata beside the message, never as message text a caller has to parse.

use flotilla_proto::{FENCED_HEADER, NOT_LEADER_HEADER, NO_QUORUM_HEADER};
use flotilla_store::NodeId;
use flotilla_types::CommandError;
use tonic::{Code, Status};

/// Why a request handled by this node failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// This node does not lead; the request did not run. A caller may retry elsewhere.
    #[error("node {node} is not the leader{}", leader.map(|l| format!(" (node {l} is)")).unwrap_or_default())]
    NotLeader { node: NodeId, leader: Option<NodeId> },
    /// This node stopped leading while it handled the request; the request did not commit.
    #[error("node {node} lost leadership")]
    LostLeadership { node: NodeId },
    /// No leader was found in time; the text says why in the operator's terms.
    #[error("{0}")]
    NoLeader(String),
    /// The leader does not hear from a majority of the voters.
    #[error("{0}")]
    NoQuorum(NoQuorum),
    /// The leader stopped answering while it handled a request that is not safe to repeat:
    /// it may or may not have been applied.
    #[error(
        "lost contact with the leader (node {leader} at {addr}) while it handled the request; it may \
         or may not have been applied: {message}"
    )]
    LeaderLost {
        leader: NodeId,
        addr: String,
        message: String,
    },
    /// The state machine refused a command.
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// Refused in the current state of the cluster (a precondition does not hold).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// Raft itself refused; the caller may try again.
    #[error("{0}")]
    Aborted(String),
    /// Temporarily not possible; the caller may try again.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    OutOfRange(String),
    #[error("{0}")]
    DataLoss(String),
    /// The caller must stop taking part (removed, or of an older epoch).
    #[error("{0}")]
    Fenced(String),
    /// A credential is missing, unknown, expired or revoked.
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Internal(String),
    /// Another node's answer, passed on as it came.
    #[error("{}", .0.message())]
    Remote(Status),
}

/// A leader that cannot reach a majority of its voters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoQuorum {
    pub leader: NodeId,
    /// The voters it hears from (itself included).
    pub heard: Vec<NodeId>,
    pub voters: usize,
    /// Set for a write: it was proposed and stays in the leader's log.
    pub write: bool,
}

impl std::fmt::Display for NoQuorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let heard: Vec<String> = self.heard.iter().map(u64::to_string).collect();
        write!(
            f,
            "no quorum: the leader (node {}) hears from {} of {} voters ({}); a majority ({}) is needed. \
             Start or reconnect the missing nodes; if they are lost for good, recover with \
             `flotilla agent --force-new-cluster` on a surviving node",
            self.leader,
            self.heard.len(),
            self.voters,
            heard.join(", "),
            self.voters / 2 + 1
        )?;
        if self.write {
            write!(
                f,
                " (this write was proposed but is not committed: it takes effect only if enough voters \
                 return while node {} still leads)",
                self.leader
            )?;
        }
        Ok(())
    }
}

fn mark(mut status: Status, header: &'static str) -> Status {
    status.metadata_mut().insert(header, "1".parse().expect("ascii"));
    status
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let msg = e.to_string();
        match e {
            ApiError::NotLeader { .. } | ApiError::LostLeadership { .. } => {
                mark(Status::unavailable(msg), NOT_LEADER_HEADER)
            }
            ApiError::NoQuorum(_) => mark(Status::unavailable(msg), NO_QUORUM_HEADER),
            ApiError::Fenced(_) => mark(Status::failed_precondition(msg), FENCED_HEADER),
            ApiError::NoLeader(_) | ApiError::LeaderLost { .. } | ApiError::Unavailable(_) => Status::unavailable(msg),
            ApiError::Command(c) => match c {
                CommandError::ServiceNotFound { .. }
                | CommandError::NodeNotFound { .. }
                | CommandError::VersionNotFound { .. }
                | CommandError::TokenNotFound { .. } => Status::not_found(msg),
                CommandError::InvalidSpec(_) => Status::invalid_argument(msg),
                CommandError::Rollout { .. }
                | CommandError::NodeRemoved { .. }
                | CommandError::Security { .. }
                | CommandError::RequestForgotten { .. } => Status::failed_precondition(msg),
            },
            ApiError::NotFound(_) => Status::not_found(msg),
            ApiError::Invalid(_) => Status::invalid_argument(msg),
            ApiError::Unauthenticated(_) => Status::unauthenticated(msg),
            ApiError::Refused(_) => Status::failed_precondition(msg),
            ApiError::AlreadyExists(_) => Status::already_exists(msg),
            ApiError::Aborted(_) => Status::aborted(msg),
            ApiError::Timeout(_) => Status::deadline_exceeded(msg),
            ApiError::OutOfRange(_) => Status::out_of_range(msg),
            ApiError::DataLoss(_) => Status::data_loss(msg),
            ApiError::Internal(_) => Status::internal(msg),
            ApiError::Remote(s) => s,
        }
    }
}

/// What an answer from another node means for the one that asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteKind {
    /// It did not lead: the request did not run there.
    NotLeader,
    /// It could not be reached at all: the request did not run there.
    NotConnected,
    /// It leads but hears from no majority.
    NoQuorum,
    /// It stopped answering mid-request: the request may have run.
    Interrupted,
    /// Any other answer: final.
    Answer,
}

/// Classifies a failed call to another node.
pub fn remote_kind(s: &Status) -> RemoteKind {
    if s.metadata().contains_key(NOT_LEADER_HEADER) {
        RemoteKind::NotLeader
    } else if s.metadata().contains_key(NO_QUORUM_HEADER) {
        RemoteKind::NoQuorum
    } else if s.code() == Code::Unavailable && is_connect_failure(s) {
        RemoteKind::NotConnected
    } else if s.code() == Code::Unavailable {
        RemoteKind::Interrupted
    } else {
        RemoteKind::Answer
    }
}

/// A transport failure where the request cannot have reached the server (tonic's own text
/// for a refused or failed connect).
fn is_connect_failure(s: &Status) -> bool {
    let m = s.message().to_ascii_lowercase();
    m.contains("connect") || m.contains("refused")
}

pub fn is_fenced(s: &Status) -> bool {
    s.metadata().contains_key(FENCED_HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leadership_and_quorum_travel_as_metadata() {
        let s = Status::from(ApiError::NotLeader {
            node: 2,
            leader: Some(1),
        });
        assert_eq!(s.message(), "node 2 is not the leader (node 1 is)");
        assert_eq!(remote_kind(&s), RemoteKind::NotLeader);

        let q = NoQuorum {
            leader: 1,
            heard: vec![1],
            voters: 3,
            write: true,
        };
        let s = Status::from(ApiError::NoQuorum(q));
        assert_eq!(s.code(), Code::Unavailable);
        assert!(s
            .message()
            .starts_with("no quorum: the leader (node 1) hears from 1 of 3 voters (1); a majority (2)"));
        assert!(s.message().ends_with("while node 1 still leads)"));
        assert_eq!(remote_kind(&s), RemoteKind::NoQuorum);

        // The text alone means nothing: only the metadata classifies.
        let plain = Status::unavailable("no quorum: imitation");
        assert_eq!(remote_kind(&plain), RemoteKind::Interrupted);
        assert_eq!(
            remote_kind(&Status::unavailable("tcp connect error")),
            RemoteKind::NotConnected
        );
        assert_eq!(remote_kind(&Status::not_found("x")), RemoteKind::Answer);
    }

    #[test]
    fn fenced_and_command_errors_keep_their_codes() {
        let s = Status::from(ApiError::Fenced("stop".into()));
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert!(is_fenced(&s));
        let s = Status::from(ApiError::Command(CommandError::ServiceNotFound { name: "web".into() }));
        assert_eq!(s.code(), Code::NotFound);
        let s = Status::from(ApiError::Remote(Status::already_exists("taken")));
        assert_eq!((s.code(), s.message()), (Code::AlreadyExists, "taken"));
    }
}
