//! The cluster CA: created once by the node that initializes the cluster, its key kept in
//! the replicated state so every member can sign. It issues node certificates (ECDSA P-256:
//! headless browsers refuse ed25519 server certificates) naming the cluster and the node.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, PKCS_ECDSA_P256_SHA256,
};

use crate::identity;
use crate::SecurityError;

/// The name every node certificate carries and every client checks the server against:
/// nodes are reached by whatever address an operator gives, so the check is "a node of
/// this cluster's CA", not a host name.
pub const NODE_SERVER_NAME: &str = "node.flotilla.internal";

/// How long the CA itself is valid.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Backdating of every certificate, for clocks a little apart.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// A CA certificate with its key.
pub struct Ca {
    pub cert_pem: String,
    key: KeyPair,
    pub cluster_id: String,
}

fn err(what: &str) -> impl Fn(rcgen::Error) -> SecurityError + '_ {
    move |e| SecurityError::Cert(format!("{what}: {e}"))
}

/// A fresh ECDSA P-256 key.
pub fn new_key() -> Result<KeyPair, SecurityError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err("cannot generate a key"))
}

/// Parses a PEM private key.
pub fn key_from_pem(pem: &str) -> Result<KeyPair, SecurityError> {
    KeyPair::from_pem(pem).map_err(err("invalid private key"))
}

/// A certificate signing request for node `id`, signed by `key` (it proves the requester
/// holds the key; the names in it are ignored: the CA decides them).
pub fn csr(key: &KeyPair, id: u64) -> Result<Vec<u8>, SecurityError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err("csr"))?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, format!("node-{id}"));
    let req = params.serialize_request(key).map_err(err("csr"))?;
    Ok(req.der().to_vec())
}

fn not_before(now: SystemTime) -> time::OffsetDateTime {
    (now - CLOCK_SKEW).into()
}

/// A CA certificate's parameters. A rotated CA's name carries its generation: names
/// differ, so a chain through the cross-signed certificate is found by name.
fn ca_params(cluster_id: &str, generation: Option<u64>, now: SystemTime) -> Result<CertificateParams, SecurityError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err("ca"))?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("flotilla cluster CA {cluster_id}"));
    params.distinguished_name.push(DnType::OrganizationName, "flotilla");
    if let Some(g) = generation {
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, format!("generation {g}"));
    }
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = not_before(now);
    params.not_after = (now + CA_LIFETIME).into();
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

impl Ca {
    /// A new CA for a new cluster, named by `cluster_id`.
    pub fn generate(cluster_id: &str, now: SystemTime) -> Result<Ca, SecurityError> {
        let key = new_key()?;
        let cert = ca_params(cluster_id, None, now)?
            .self_signed(&key)
            .map_err(err("cannot create the CA"))?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key,
            cluster_id: cluster_id.to_string(),
        })
    }

    /// The CA that replaces this one (`flotilla ca rotate`): a new key, the same cluster,
    /// a name of its own, and a second certificate of it signed by this CA (the
    /// cross-signed one), so a peer or client that trusts only this CA still accepts
    /// certificates of the new one while the rotation goes on. Returns the new CA and
    /// the cross-signed certificate (PEM).
    pub fn successor(&self, now: SystemTime) -> Result<(Ca, String), SecurityError> {
        let key = new_key()?;
        let generation = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let params = ca_params(&self.cluster_id, Some(generation), now)?;
        let cert = params.self_signed(&key).map_err(err("cannot create the new CA"))?;
        let cross = params
            .signed_by(&key, &self.issuer()?)
            .map_err(err("cannot cross-sign the new CA"))?;
        Ok((
            Ca {
                cert_pem: cert.pem(),
                key,
                cluster_id: self.cluster_id.clone(),
            },
            cross.pem(),
        ))
    }

    /// The CA kept in the replicated state (or a data dir).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, SecurityError> {
        let der = identity::pem_certs(cert_pem)?
            .into_iter()
            .next()
            .ok_or_else(|| SecurityError::Cert("no CA certificate".into()))?;
        let cluster_id = identity::ca_cluster_id(&der)?;
        Ok(Ca {
            cert_pem: cert_pem.to_string(),
            key: key_from_pem(key_pem)?,
            cluster_id,
        })
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// SHA-256 of the CA certificate (hex): what a join token pins.
    pub fn digest(&self) -> String {
        identity::pem_digest(&self.cert_pem)
    }

    fn issuer(&self) -> Result<Issuer<'_, &KeyPair>, SecurityError> {
        Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).map_err(err("invalid CA certificate"))
    }

    /// A certificate for node `id` over `public_key`, valid `lifetime` from `now`.
    pub fn issue_node(
        &self,
        id: u64,
        public_key: &impl PublicKeyData,
        now: SystemTime,
        lifetime: Duration,
    ) -> Result<String, SecurityError> {
        let uri = identity::node_uri(&self.cluster_id, id);
        let mut params = CertificateParams::new(vec![NODE_SERVER_NAME.to_string()]).map_err(err("node cert"))?;
        params
            .subject_alt_names
            .push(SanType::URI(uri.as_str().try_into().map_err(err("node cert uri"))?));
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, format!("node-{id}"));
        params.distinguished_name.push(DnType::OrganizationName, "flotilla");
        params.distinguished_name.push(DnType::OrganizationalUnitName, "node");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = not_before(now);
        params.not_after = (now + lifetime).into();
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(public_key, &self.issuer()?)
            .map_err(err("cannot sign the node certificate"))?;
        Ok(cert.pem())
    }

    /// Signs a node's own key (the CA holder's own certificate, or a renewal).
    pub fn issue_for_key(
        &self,
        id: u64,
        key: &KeyPair,
        now: SystemTime,
        lifetime: Duration,
    ) -> Result<String, SecurityError> {
        self.issue_node(id, key, now, lifetime)
    }

    /// Signs the key of a certificate signing request (its signature checked).
    pub fn issue_for_csr(
        &self,
        id: u64,
        csr_der: &[u8],
        now: SystemTime,
        lifetime: Duration,
    ) -> Result<String, SecurityError> {
        let csr = CertificateSigningRequestParams::from_der(&csr_der.into())
            .map_err(|e| SecurityError::Refused(format!("invalid certificate signing request: {e}")))?;
        self.issue_node(id, &csr.public_key, now, lifetime)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    use super::*;

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from(identity::pem_certs(pem).unwrap().remove(0))
    }

    /// Whether a client trusting `roots` accepts a node showing `leaf` with `intermediates`.
    fn accepts(roots: &[&str], leaf: &str, intermediates: &[&str]) -> bool {
        let mut store = rustls::RootCertStore::empty();
        for r in roots {
            store.add(der(r)).unwrap();
        }
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(store), crate::tls::provider())
                .build()
                .unwrap();
        let inter: Vec<_> = intermediates.iter().map(|p| der(p)).collect();
        verifier
            .verify_server_cert(
                &der(leaf),
                &inter,
                &ServerName::try_from(NODE_SERVER_NAME).unwrap(),
                &[],
                UnixTime::now(),
            )
            .is_ok()
    }

    #[test]
    fn a_successor_is_trusted_through_its_cross_signed_certificate_and_has_its_own_name() {
        let now = SystemTime::now();
        let old = Ca::generate("c1", now).unwrap();
        let (new, cross) = old.successor(now).unwrap();
        assert_eq!(new.cluster_id, "c1");
        assert_ne!(new.digest(), old.digest());
        let key = new_key().unwrap();
        let leaf_new = new.issue_for_key(2, &key, now, Duration::from_secs(3600)).unwrap();
        let leaf_old = old.issue_for_key(2, &key, now, Duration::from_secs(3600)).unwrap();
        let (new_der, old_der) = (der(&new.cert_pem), der(&old.cert_pem));
        assert!(identity::issued_by(&der(&leaf_new), &new_der));
        assert!(!identity::issued_by(&der(&leaf_new), &old_der));
        assert!(identity::issued_by(&der(&leaf_old), &old_der));
        // Mid-rotation: a peer that trusts only the old CA accepts the new leaf with the
        // cross-signed certificate, and not without it.
        assert!(accepts(&[&old.cert_pem], &leaf_new, &[&cross]));
        assert!(!accepts(&[&old.cert_pem], &leaf_new, &[]));
        // One that trusts both accepts either; after the rotation only the new one counts.
        assert!(accepts(&[&new.cert_pem, &old.cert_pem], &leaf_old, &[]));
        assert!(accepts(&[&new.cert_pem], &leaf_new, &[]));
        assert!(!accepts(&[&new.cert_pem], &leaf_old, &[&cross]));
        // The cross-signed certificate signs nothing by itself: a leaf of the old CA does
        // not reach the new root through it.
        assert!(Ca::from_pem(&new.cert_pem, &new.key_pem()).is_ok());
    }
}
