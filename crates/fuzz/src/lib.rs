//! Fuzz targets for what a flotilla node accepts: the service spec an operator writes, and
//! every message a node decodes from the network (Raft payloads, snapshot headers and
//! bodies, agent and client requests, credentials, the DNS queries an agent answers). Each target is a function of bytes
//! that must not panic on any input; where it decodes something, it also checks that the
//! value survives encoding and decoding again.
//!
//! The same functions run under cargo-fuzz (`fuzz/`, nightly, libFuzzer) and under this
//! crate's stable, proptest-driven harness ([`harness`], the `flotilla-fuzz` bin and the
//! tests). No RocksDB: the crates decoding network input build without the store.
//!
//! A target that decodes several messages takes the first byte as the choice of message
//! (modulo the number of messages of the target, see [`Target::messages`]) and the rest
//! as that message's bytes.

mod checks;
pub mod harness;
pub mod seeds;
mod targets;

pub use targets::{agent_request, client_request, credentials, dns, raft, snapshot_header, spec};

/// One message a target decodes: `name` is its proto message name (`HeartbeatRequest`)
/// or, for JSON carried inside one, `json:` and the type (`json:VoteRequest`).
pub struct Message {
    pub name: &'static str,
    pub decode: fn(&[u8]),
}

/// One fuzz target.
pub struct Target {
    pub name: &'static str,
    /// What it decodes: its first input byte chooses one when there are several. New
    /// messages go at the end, so the first bytes of a corpus keep their meaning.
    pub messages: &'static [Message],
    /// Tokens worth inserting (keys, punctuation, boundary numbers), besides the ones the
    /// harness takes from the seeds.
    pub tokens: &'static [&'static str],
    pub run: fn(&[u8]),
}

impl Target {
    /// Whether the first byte chooses the message.
    pub fn selects(&self) -> bool {
        self.messages.len() > 1
    }

    /// The index of message `name`, for seeds (the first byte choosing it).
    pub fn selector(&self, name: &str) -> Option<u8> {
        self.messages.iter().position(|m| m.name == name).map(|i| i as u8)
    }
}

/// Runs one message of `table` chosen by the first byte of `data`.
pub(crate) fn select(table: &[Message], data: &[u8]) {
    if let Some((&choice, rest)) = data.split_first() {
        (table[choice as usize % table.len()].decode)(rest);
    }
}

/// Every target, in the order the campaign runs them.
pub static TARGETS: &[Target] = &[
    targets::SPEC,
    targets::RAFT,
    targets::SNAPSHOT_HEADER,
    targets::AGENT_REQUEST,
    targets::CLIENT_REQUEST,
    targets::CREDENTIALS,
    targets::DNS,
];

pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// The targets that decode the requests of each gRPC service of `proto/` (checked against
/// the proto files by the `proto_coverage` test, so a new RPC cannot be forgotten).
pub static SERVICES: &[(&str, &[&str])] = &[
    ("ClusterService", &["client_request"]),
    ("AgentService", &["agent_request"]),
    ("RaftService", &["raft", "snapshot_header"]),
];
