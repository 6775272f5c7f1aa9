//! Reading certificates: who a peer is (its node id and cluster, from its certificate and
//! never from a header), when a certificate expires, digests.

use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

use crate::SecurityError;

/// What a node certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub cluster: String,
    pub id: u64,
    /// Unix seconds.
    pub not_after: i64,
}

/// The URI a node certificate names its node by.
pub fn node_uri(cluster: &str, id: u64) -> String {
    format!("flotilla://{cluster}/node/{id}")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The DER certificates in a PEM text.
pub fn pem_certs(pem: &str) -> Result<Vec<Vec<u8>>, SecurityError> {
    let mut out = Vec::new();
    for item in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let item = item.map_err(|e| SecurityError::Cert(format!("invalid PEM: {e}")))?;
        if item.label == "CERTIFICATE" {
            out.push(item.contents);
        }
    }
    if out.is_empty() {
        return Err(SecurityError::Cert("no certificate in the PEM text".into()));
    }
    Ok(out)
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, SecurityError> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| SecurityError::Refused(format!("invalid certificate: {e}")))
}

/// The cluster id a CA certificate names (its common name `flotilla cluster CA <id>`).
pub fn ca_cluster_id(der: &[u8]) -> Result<String, SecurityError> {
    let cert = parse(der)?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default();
    cn.strip_prefix("flotilla cluster CA ")
        .map(str::to_string)
        .ok_or_else(|| SecurityError::Cert(format!("{cn:?} is not a flotilla cluster CA")))
}

/// The node a certificate names (its `flotilla://<cluster>/node/<id>` URI); dates and
/// signature are the TLS layer's to check.
pub fn node_identity(der: &[u8]) -> Result<NodeIdentity, SecurityError> {
    let cert = parse(der)?;
    let not_after = cert.validity().not_after.timestamp();
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for name in &san.general_names {
                if let GeneralName::URI(uri) = name {
                    if let Some((cluster, id)) = parse_node_uri(uri) {
                        return Ok(NodeIdentity { cluster, id, not_after });
                    }
                }
            }
        }
    }
    Err(SecurityError::Refused(
        "the certificate is not a flotilla node certificate".into(),
    ))
}

fn parse_node_uri(uri: &str) -> Option<(String, u64)> {
    let rest = uri.strip_prefix("flotilla://")?;
    let (cluster, id) = rest.split_once("/node/")?;
    let id = id.parse().ok().filter(|id| *id > 0)?;
    Some((cluster.to_string(), id))
}

/// Whether the certificate `cert` names `ca` as its issuer (by name: every CA of a
/// cluster has its own), so a node knows whether its certificate is of the current CA.
pub fn issued_by(cert: &[u8], ca: &[u8]) -> bool {
    match (parse(cert), parse(ca)) {
        (Ok(cert), Ok(ca)) => cert.issuer().as_raw() == ca.subject().as_raw(),
        _ => false,
    }
}

/// The SHA-256 (hex) of the first certificate of a PEM text, empty if it has none.
pub fn pem_digest(pem: &str) -> String {
    pem_certs(pem)
        .ok()
        .and_then(|c| c.into_iter().next())
        .map(|d| sha256_hex(&d))
        .unwrap_or_default()
}

/// When a PEM certificate expires (Unix seconds).
pub fn not_after(pem: &str) -> Result<i64, SecurityError> {
    let der = pem_certs(pem)?.into_iter().next().unwrap_or_default();
    Ok(parse(&der)?.validity().not_after.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_uris_round_trip_and_junk_is_refused() {
        assert_eq!(parse_node_uri(&node_uri("c1", 7)), Some(("c1".into(), 7)));
        assert_eq!(parse_node_uri("flotilla://c1/node/0"), None);
        assert_eq!(parse_node_uri("flotilla://c1/node/x"), None);
        assert_eq!(parse_node_uri("https://c1/node/1"), None);
        assert!(node_identity(b"junk").is_err());
        assert!(pem_certs("nothing here").is_err());
    }
}
