//! Credentials as strings: the node tokens an agent starts with (bootstrap and join), the
//! proofs that bind a token to one TLS session, and client tokens.
//!
//! - Bootstrap token `FLTB1-<secret>`: given to every `--peers` node of a new cluster.
//!   No CA exists yet, so it is a shared secret only.
//! - Join token `FLTJ1-<ca digest>-<secret>`: the joiner checks the server against the
//!   CA digest before it sends anything; the cluster checks the joiner's secret.
//! - Client token `flt_<id>_<secret>`: a bearer credential; the cluster keeps only the
//!   SHA-256 of its secret, found by its id.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::SecurityError;

const BOOTSTRAP_PREFIX: &str = "FLTB1-";
const JOIN_PREFIX: &str = "FLTJ1-";
const CLIENT_PREFIX: &str = "flt_";

/// What the requester of a certificate proves (it knows the secret, on this TLS session:
/// the server's certificate, for this key: the signing request).
pub const PROOF_REQUEST: &str = "flotilla certificate request v1";
/// What the issuing node proves back (a bootstrap joiner cannot check the server's
/// certificate, so the server shows it knows the secret too).
pub const PROOF_ISSUED: &str = "flotilla certificate issued v1";

/// A token an agent is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeToken {
    Bootstrap { secret: String },
    Join { ca_digest: String, secret: String },
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// A new random secret (256 bits, hex).
pub fn new_secret() -> String {
    random_hex(32)
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl NodeToken {
    pub fn new_bootstrap() -> NodeToken {
        NodeToken::Bootstrap { secret: new_secret() }
    }

    pub fn join(ca_digest: &str, secret: &str) -> NodeToken {
        NodeToken::Join {
            ca_digest: ca_digest.to_string(),
            secret: secret.to_string(),
        }
    }

    pub fn secret(&self) -> &str {
        match self {
            NodeToken::Bootstrap { secret } | NodeToken::Join { secret, .. } => secret,
        }
    }

    /// Parses a token as written by [`NodeToken::to_string`] (surrounding space ignored).
    pub fn parse(s: &str) -> Result<NodeToken, SecurityError> {
        let s = s.trim();
        if let Some(secret) = s.strip_prefix(BOOTSTRAP_PREFIX) {
            if is_hex(secret, 64) {
                return Ok(NodeToken::Bootstrap { secret: secret.into() });
            }
        } else if let Some(rest) = s.strip_prefix(JOIN_PREFIX) {
            if let Some((digest, secret)) = rest.split_once('-') {
                if is_hex(digest, 64) && is_hex(secret, 64) {
                    return Ok(NodeToken::join(&digest.to_ascii_lowercase(), secret));
                }
            }
        }
        Err(SecurityError::Refused(format!(
            "not a flotilla node token: expected {BOOTSTRAP_PREFIX}<secret> (flotilla token generate) \
             or {JOIN_PREFIX}<ca digest>-<secret> (flotilla token join)"
        )))
    }
}

impl std::fmt::Display for NodeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeToken::Bootstrap { secret } => write!(f, "{BOOTSTRAP_PREFIX}{secret}"),
            NodeToken::Join { ca_digest, secret } => write!(f, "{JOIN_PREFIX}{ca_digest}-{secret}"),
        }
    }
}

fn mac(secret: &str, label: &str, server_cert_digest: &str, csr: &[u8]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    for part in [label.as_bytes(), server_cert_digest.as_bytes(), csr] {
        m.update(&(part.len() as u64).to_be_bytes());
        m.update(part);
    }
    m
}

/// HMAC-SHA256 of `label`, the server certificate's digest and the request, keyed by the
/// token's secret (hex).
pub fn proof(secret: &str, label: &str, server_cert_digest: &str, csr: &[u8]) -> String {
    hex::encode(mac(secret, label, server_cert_digest, csr).finalize().into_bytes())
}

/// Checks a [`proof`] in constant time.
pub fn check_proof(secret: &str, label: &str, server_cert_digest: &str, csr: &[u8], proof: &str) -> bool {
    let Ok(bytes) = hex::decode(proof) else {
        return false;
    };
    mac(secret, label, server_cert_digest, csr).verify_slice(&bytes).is_ok()
}

/// A new client token: (the token to hand out, its id, the hash the cluster keeps).
pub fn new_client_token() -> (String, String, String) {
    let id = random_hex(6);
    let secret = random_hex(32);
    let hash = hash_secret(&secret);
    (format!("{CLIENT_PREFIX}{id}_{secret}"), id, hash)
}

/// SHA-256 (hex) of a client token's secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A client token's id and secret.
pub fn parse_client_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.trim().strip_prefix(CLIENT_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (is_hex(id, 12) && is_hex(secret, 64)).then_some((id, secret))
}

/// Whether `secret` hashes to `hash` (constant time).
pub fn secret_matches(secret: &str, hash: &str) -> bool {
    let got = Sha256::digest(secret.as_bytes());
    let Ok(want) = hex::decode(hash) else {
        return false;
    };
    want.len() == got.len() && want.iter().zip(got.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_tokens_round_trip() {
        let b = NodeToken::new_bootstrap();
        assert_eq!(NodeToken::parse(&format!(" {b}\n")).unwrap(), b);
        let j = NodeToken::join(&"ab".repeat(32), &new_secret());
        assert_eq!(NodeToken::parse(&j.to_string()).unwrap(), j);
        for bad in [
            "",
            "FLTB1-xyz",
            "FLTJ1-abc-def",
            "SWMTKN-1-aa-bb",
            &format!("FLTB1-{}", "g".repeat(64)),
        ] {
            assert!(NodeToken::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn proofs_bind_the_secret_the_session_and_the_request() {
        let s = new_secret();
        let p = proof(&s, PROOF_REQUEST, "fp", b"csr");
        assert!(check_proof(&s, PROOF_REQUEST, "fp", b"csr", &p));
        assert!(!check_proof(&new_secret(), PROOF_REQUEST, "fp", b"csr", &p));
        assert!(!check_proof(&s, PROOF_REQUEST, "other", b"csr", &p));
        assert!(!check_proof(&s, PROOF_REQUEST, "fp", b"other", &p));
        assert!(!check_proof(&s, PROOF_ISSUED, "fp", b"csr", &p));
        assert!(!check_proof(&s, PROOF_REQUEST, "fp", b"csr", "zz"));
    }

    #[test]
    fn client_tokens_are_checked_by_their_hash() {
        let (token, id, hash) = new_client_token();
        let (pid, secret) = parse_client_token(&token).unwrap();
        assert_eq!(pid, id);
        assert!(secret_matches(secret, &hash));
        assert!(!secret_matches(&new_secret(), &hash));
        assert!(parse_client_token("flt_short_x").is_none());
        assert!(parse_client_token("Bearer abc").is_none());
    }
}
