//! What the clients did: one entry per operation, with its invoke and return times.

use std::fmt;

/// An operation on one service, as a client invoked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Apply the full spec: env `CHAOS=value` and `replicas`.
    Put {
        value: String,
        replicas: u32,
    },
    Scale {
        replicas: u32,
    },
    Delete,
    /// A linearizable `GetService`.
    Get,
}

/// What a completed operation answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ret {
    Created(u64),
    Updated(u64),
    Unchanged(u64),
    Scaled(u64),
    Deleted(u64),
    Read { version: u64, value: String, replicas: u32 },
    NotFound,
}

impl Ret {
    /// The service version the answer names, if any.
    pub fn version(&self) -> Option<u64> {
        match self {
            Ret::Created(v) | Ret::Updated(v) | Ret::Unchanged(v) | Ret::Scaled(v) | Ret::Deleted(v) => Some(*v),
            Ret::Read { version, .. } => Some(*version),
            Ret::NotFound => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok(Ret),
    /// Certainly not executed (never sent, or refused before it was proposed).
    Fail(String),
    /// Sent, but no answer (timeout, connection lost): it may or may not have happened.
    Unknown(String),
}

/// One client operation. Times are nanoseconds since the run started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub client: usize,
    pub service: String,
    pub op: Op,
    pub invoke: u64,
    pub ret: u64,
    pub outcome: Outcome,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:>8.3}s..{:>8.3}s] c{} {} {:?} -> {:?}",
            self.invoke as f64 / 1e9,
            self.ret as f64 / 1e9,
            self.client,
            self.service,
            self.op,
            self.outcome
        )
    }
}
