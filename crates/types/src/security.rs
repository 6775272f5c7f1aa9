//! The cluster's security state, replicated like the rest: its CA (key included, so every
//! member can sign), the join secret and the client tokens (hashed). Every random value
//! is made by the node that proposes the command: applying stays deterministic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Millis;

/// What a client token may do; each role can do what the ones before it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientRole {
    /// Reads the state (env values redacted).
    Viewer,
    /// Changes services and nodes' availability, reads logs.
    Operator,
    /// Changes the membership, takes snapshots, manages tokens and the CA.
    Admin,
}

impl ClientRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientRole::Viewer => "viewer",
            ClientRole::Operator => "operator",
            ClientRole::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<ClientRole> {
        match s {
            "viewer" => Some(ClientRole::Viewer),
            "operator" => Some(ClientRole::Operator),
            "admin" => Some(ClientRole::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for ClientRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A client token as the cluster keeps it: found by `id`, checked against `hash` (the
/// SHA-256 of its secret; the secret itself is shown once, at creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientToken {
    pub id: String,
    pub hash: String,
    pub role: ClientRole,
    pub created_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Millis>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    /// Names the cluster in every certificate.
    pub cluster_id: String,
    pub ca_cert: String,
    pub ca_key: String,
    /// What a join token's secret must be (`flotilla token join`, `token rotate-join`).
    pub join_secret: String,
    /// Client tokens by name.
    #[serde(default)]
    pub tokens: BTreeMap<String, ClientToken>,
    /// The key (SHA-256 of the public key, hex) each node id's certificate was issued
    /// for: a token never gets an id's certificate for another key.
    #[serde(default)]
    pub issued: BTreeMap<u64, String>,
    /// While a CA rotation goes on: the CA it replaces, still trusted...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_ca: Option<String>,
    /// ...and the new CA's certificate signed by it, which every node shows with its
    /// own so peers and clients that trust only the previous CA accept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_cert: Option<String>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("cluster_id", &self.cluster_id)
            .field("tokens", &self.tokens.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Security {
    /// The CA certificates a node trusts: the current one first, then the one a rotation
    /// in progress replaces.
    pub fn trust_bundle(&self) -> String {
        match &self.previous_ca {
            Some(prev) => format!("{}\n{}", self.ca_cert.trim_end(), prev),
            None => self.ca_cert.clone(),
        }
    }

    /// The token with this id, with its name.
    pub fn token_by_id(&self, id: &str) -> Option<(&str, &ClientToken)> {
        self.tokens
            .iter()
            .find(|(_, t)| t.id == id)
            .map(|(n, t)| (n.as_str(), t))
    }
}

/// A change to the security state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecurityOp {
    /// The CA and the first admin token, once per cluster.
    Init(Security),
    CreateToken {
        name: String,
        token: ClientToken,
    },
    RevokeToken {
        name: String,
    },
    RotateJoin {
        secret: String,
    },
    /// A node certificate was issued for node `id`'s key; `replace`: for a new key of an
    /// id that is no member (a node of a cluster restored from a snapshot, joining again
    /// with a wiped data dir), which its proposer checked.
    Issued {
        id: u64,
        key: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        replace: bool,
    },
    /// `flotilla ca rotate`: the new CA signs from now on; the current one stays trusted
    /// until every member holds a certificate of the new one.
    RotateCa {
        ca_cert: String,
        ca_key: String,
        cross_cert: String,
    },
    /// Every member holds a certificate of `ca_cert`: the previous CA is trusted no more.
    FinishCaRotation {
        ca_cert: String,
    },
}
