//! flotilla's security: the cluster CA and node certificates ([`ca`]), who a peer is
//! ([`identity`]), tokens and proofs ([`cred`]), TLS below gRPC ([`tls`]) and the client
//! configuration file ([`config`]). No RocksDB: the fuzz targets build on it alone.

pub mod ca;
pub mod config;
pub mod cred;
pub mod identity;
pub mod tls;

pub use ca::Ca;
pub use cred::NodeToken;
pub use tls::{ClientTls, NodeTls, Shared};

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// Material that cannot be made or read (a local problem).
    #[error("{0}")]
    Cert(String),
    /// Something a peer sent that is refused.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Io(String),
}
