//! flotilla-raft-types owns openraft's type configuration for flotilla and the shape of the
//! Raft messages on the wire, apart from the storage that implements them: the transport
//! speaks Raft without linking RocksDB. It depends on openraft, flotilla-types and serde
//! (serde_json is the messages' codec) and nothing else.

use std::io::Cursor;

use flotilla_types::{Command, Response};

pub mod wire;

openraft::declare_raft_types!(
    /// openraft's type configuration for flotilla.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
