//! A node's TLS identity: where its certificate comes from, its renewal, and the CA's
//! first write into the replicated state.
//!
//! At start a node uses, in order: the certificate in its data dir (`tls/`, re-signed
//! from its replica when it expired while the node was off); a new one it signs itself
//! when its replica holds the CA (every member's does); a new CA when it initializes a
//! cluster that has none (the lowest id of `--peers`, or `--force-new-cluster`: a new
//! cluster, or one written before TLS); else one it asks a member for with its token
//! (`IssueCertificate`, proving the token's secret over that server's certificate).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use flotilla_proto::v1::{IssueCertificateRequest, IssueCertificateResponse};
use flotilla_security::config::{write_private, ClientConfigFile, ADMIN_CONFIG};
use flotilla_security::cred::{self, NodeToken, PROOF_ISSUED, PROOF_REQUEST};
use flotilla_security::identity::{self, pem_certs, sha256_hex};
use flotilla_security::tls::{self, ClientTls, NodeTls, Shared};
use flotilla_security::Ca;
use flotilla_store::SharedState;
use flotilla_types::{ClientRole, ClientToken, Security, SecurityOp};
use rustls::{ClientConfig, ServerConfig};

use crate::config::NodeConfig;
use crate::error::ApiError;
use crate::node::{now_ms, Node};
use crate::NodeError;

/// Default lifetime of a node certificate.
pub const DEFAULT_CERT_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);

pub struct NodeSecurity {
    cluster_id: String,
    key_pem: String,
    dir: PathBuf,
    material: Mutex<NodeTls>,
    pub server: Shared<ServerConfig>,
    pub client: Shared<ClientConfig>,
    /// The token this node was started with.
    token: Option<NodeToken>,
    /// The CA this node created, until the replicated state holds it.
    local_ca: Option<(String, String)>,
    /// The state this node created and must write into the cluster once there is a leader.
    pending: Mutex<Option<Security>>,
    /// Bootstrap certificates this node issued: id → public key (one key per id).
    issued: Mutex<HashMap<u64, Vec<u8>>>,
    lifetime: Duration,
}

fn cert_err(e: flotilla_security::SecurityError) -> NodeError {
    NodeError::Config(format!("TLS: {e}"))
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn save(path: &Path, text: &str) -> Result<(), NodeError> {
    write_private(path, text.as_bytes()).map_err(cert_err)
}

impl NodeSecurity {
    pub fn cluster_id(&self) -> String {
        self.cluster_id.clone()
    }

    pub fn client_tls(&self) -> ClientTls {
        ClientTls::Tls(self.client.clone())
    }

    /// When this node's certificate expires (Unix ms).
    pub fn expires_at_ms(&self) -> u64 {
        let m = self.material.lock().unwrap_or_else(|e| e.into_inner());
        identity::not_after(&m.cert_pem).map_or(0, |s| (s.max(0) as u64) * 1000)
    }

    fn leaf_digest(&self) -> String {
        identity::pem_digest(&self.material.lock().unwrap_or_else(|e| e.into_inner()).cert_pem)
    }

    /// The digest of the CA this node's certificate is of (among those it trusts).
    pub fn cert_ca(&self) -> String {
        let m = self.material.lock().unwrap_or_else(|e| e.into_inner());
        issuer_in(&m.cert_pem, &m.ca_pem).map_or_else(String::new, |ca| sha256_hex(&ca))
    }

    /// The CA: the replicated one, else the one this node created.
    fn ca(&self, state: &SharedState) -> Option<Ca> {
        let from_state = state
            .read()
            .state
            .security
            .as_ref()
            .map(|s| (s.ca_cert.clone(), s.ca_key.clone()));
        let (cert, key) = from_state.or_else(|| self.local_ca.clone())?;
        Ca::from_pem(&cert, &key).ok()
    }

    fn install(&self, m: NodeTls) -> Result<(), NodeError> {
        self.server.set(tls::server_config(&m).map_err(cert_err)?);
        self.client.set(tls::node_client_config(&m).map_err(cert_err)?);
        save(&self.dir.join("node.pem"), &m.cert_pem)?;
        save(&self.dir.join("ca.pem"), &m.ca_pem)?;
        *self.material.lock().unwrap_or_else(|e| e.into_inner()) = m;
        Ok(())
    }
}

/// The parts of the material a node keeps in `tls/` of its data dir.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn key(&self) -> PathBuf {
        self.dir.join("node.key")
    }
    fn cert(&self) -> PathBuf {
        self.dir.join("node.pem")
    }
    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    fn pending(&self) -> PathBuf {
        self.dir.join("init.json")
    }
}

/// Sets this node up for TLS; `None` on an `--insecure` node.
pub async fn obtain(config: &NodeConfig, state: &SharedState) -> Result<Option<Arc<NodeSecurity>>, NodeError> {
    if config.insecure {
        if !config.listen.ip().is_loopback() {
            return Err(NodeError::Config(format!(
                "--insecure serves plaintext with no authentication and is refused for {}: listen on \
                 a loopback address, or drop --insecure",
                config.listen
            )));
        }
        tracing::warn!(
            listen = %config.listen,
            "--insecure: no TLS and no authentication; anyone who reaches this port controls the cluster"
        );
        return Ok(None);
    }
    let token = match &config.token {
        Some(t) => Some(NodeToken::parse(t).map_err(|e| NodeError::Config(e.to_string()))?),
        None => None,
    };
    let files = Files {
        dir: config.data_dir.join("tls"),
    };
    std::fs::create_dir_all(&files.dir)
        .map_err(|e| NodeError::Config(format!("cannot create {}: {e}", files.dir.display())))?;
    let replicated = state.read().state.security.clone();
    let mut local_ca = match (read(&files.ca()), read(&files.ca_key())) {
        (Some(c), Some(k)) => Some((c, k)),
        _ => None,
    };
    let mut pending = read(&files.pending()).and_then(|t| serde_json::from_str::<Security>(&t).ok());
    if replicated.is_some() {
        pending = None;
    }
    let key = match read(&files.key()) {
        Some(k) => flotilla_security::ca::key_from_pem(&k).map_err(cert_err)?,
        None => {
            let k = flotilla_security::ca::new_key().map_err(cert_err)?;
            save(&files.key(), &k.serialize_pem())?;
            k
        }
    };
    let now = SystemTime::now();
    let existing = match (read(&files.cert()), read(&files.ca())) {
        (Some(cert), Some(ca)) => Some((cert, ca)),
        _ => None,
    };
    let replicated_ca = replicated.as_ref().map(|s| (s.ca_cert.clone(), s.ca_key.clone()));
    let (cert_pem, ca_pem) = if let Some((cert, ca)) = existing.filter(|(c, _)| usable(c, config.id, now)) {
        (cert, ca)
    } else if let Some((cert, ca_key)) = replicated_ca.clone().or_else(|| local_ca.clone()) {
        // The CA is at hand (the replica, or this node made it): sign our own.
        let ca = Ca::from_pem(&cert, &ca_key).map_err(cert_err)?;
        let signed = ca
            .issue_for_key(config.id, &key, now, config.cert_lifetime)
            .map_err(cert_err)?;
        tracing::info!(id = config.id, "signed this node's certificate with the cluster CA");
        (signed, cert)
    } else if initializes(config) {
        if !config.force_new_cluster {
            refuse_if_a_peer_has_a_cluster(config).await?;
        }
        let cluster_id = cred::new_secret()[..16].to_string();
        let ca = Ca::generate(&cluster_id, now).map_err(cert_err)?;
        save(&files.ca_key(), &ca.key_pem())?;
        let (admin, admin_id, admin_hash) = cred::new_client_token();
        let security = Security {
            cluster_id: cluster_id.clone(),
            ca_cert: ca.cert_pem.clone(),
            ca_key: ca.key_pem(),
            join_secret: cred::new_secret(),
            tokens: [(
                "admin".to_string(),
                ClientToken {
                    id: admin_id,
                    hash: admin_hash,
                    role: ClientRole::Admin,
                    created_at: now_ms(),
                    expires_at: None,
                    revoked_at: None,
                },
            )]
            .into(),
            issued: Default::default(),
            previous_ca: None,
            cross_cert: None,
        };
        save(
            &files.pending(),
            &serde_json::to_string(&security).map_err(|e| NodeError::Config(e.to_string()))?,
        )?;
        let addresses = if config.peers.is_empty() {
            vec![config.advertised()]
        } else {
            config.peers.values().cloned().collect()
        };
        let admin_path = config.data_dir.join(ADMIN_CONFIG);
        ClientConfigFile {
            addresses,
            ca: ca.cert_pem.clone(),
            token: admin,
        }
        .save(&admin_path)
        .map_err(cert_err)?;
        tracing::info!(
            cluster = %cluster_id,
            admin_config = %admin_path.display(),
            "created the cluster CA; the admin client config is {}: export FLOTILLA_CONFIG={}",
            admin_path.display(),
            admin_path.display()
        );
        local_ca = Some((ca.cert_pem.clone(), ca.key_pem()));
        pending = Some(security);
        let signed = ca
            .issue_for_key(config.id, &key, now, config.cert_lifetime)
            .map_err(cert_err)?;
        (signed, ca.cert_pem)
    } else {
        let Some(token) = token.clone() else {
            return Err(NodeError::Config(
                "this node has no certificate: give it the cluster's token with --token-file FILE or \
                 FLOTILLA_TOKEN (a new cluster: `flotilla token generate`, the same for every --peers \
                 node; an existing one: `flotilla token join` on it), or run a loopback-only test \
                 cluster with --insecure"
                    .into(),
            ));
        };
        request_certificate(config, &token, &key).await?
    };
    let material = NodeTls {
        ca_pem,
        cert_pem,
        key_pem: key.serialize_pem(),
    };
    let sec = NodeSecurity {
        cluster_id: cluster_of(&material.ca_pem)?,
        key_pem: material.key_pem.clone(),
        dir: files.dir.clone(),
        server: Shared::new(tls::server_config(&material).map_err(cert_err)?),
        client: Shared::new(tls::node_client_config(&material).map_err(cert_err)?),
        material: Mutex::new(material.clone()),
        token,
        local_ca,
        pending: Mutex::new(pending),
        issued: Mutex::new(HashMap::new()),
        lifetime: config.cert_lifetime,
    };
    sec.install(material)?;
    Ok(Some(Arc::new(sec)))
}

/// The certificate of `bundle` that issued the first certificate of `cert_pem`.
fn issuer_in(cert_pem: &str, bundle: &str) -> Option<Vec<u8>> {
    let leaf = pem_certs(cert_pem).ok()?.into_iter().next()?;
    pem_certs(bundle)
        .ok()?
        .into_iter()
        .find(|ca| identity::issued_by(&leaf, ca))
}

/// What the replicated state says a node's TLS should be: the CA that signs, the CA
/// certificates to trust, and the cross-signed certificate to show during a rotation.
struct Trust {
    ca: Ca,
    bundle: String,
    cross: Option<String>,
}

fn trust(state: &SharedState) -> Option<Trust> {
    let sm = state.read();
    let s = sm.state.security.as_ref()?;
    Some(Trust {
        ca: Ca::from_pem(&s.ca_cert, &s.ca_key).ok()?,
        bundle: s.trust_bundle(),
        cross: s.cross_cert.clone(),
    })
}

/// A node's certificate as it shows it: its own, then the cross-signed one if any.
fn with_cross(cert_pem: &str, cross: Option<&str>) -> String {
    match cross {
        Some(c) => format!("{}\n{c}", cert_pem.trim_end()),
        None => cert_pem.to_string(),
    }
}

fn cluster_of(ca_pem: &str) -> Result<String, NodeError> {
    let der = pem_certs(ca_pem)
        .map_err(cert_err)?
        .into_iter()
        .next()
        .unwrap_or_default();
    identity::ca_cluster_id(&der).map_err(cert_err)
}

/// Whether a stored certificate names this node and is valid for a while yet.
fn usable(cert_pem: &str, id: u64, now: SystemTime) -> bool {
    let Ok(der) = pem_certs(cert_pem) else { return false };
    let Some(ident) = der.first().and_then(|d| identity::node_identity(d).ok()) else {
        return false;
    };
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    ident.id == id && ident.not_after > now + 60
}

/// The node that would create the CA holds none (a first start, or its data dir was
/// wiped): if a peer already serves TLS, a cluster exists that this node is not part of
/// any more, and a new CA would only leave it waiting for a majority that never answers.
/// Refused, with what to do. Peers that do not answer (a first start, when they wait for
/// this node) let it go on.
async fn refuse_if_a_peer_has_a_cluster(config: &NodeConfig) -> Result<(), NodeError> {
    for (id, addr) in config.peers.iter().filter(|(id, _)| **id != config.id) {
        let Ok(client_config) = tls::unverified_client_config() else {
            return Ok(());
        };
        let slot = Arc::new(Mutex::new(None));
        let transport = ClientTls::Recording(Shared::new(client_config), slot.clone());
        let _ = tls::connect_now(addr, transport, |e| {
            e.connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(2))
        })
        .await;
        if slot.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
            return Err(NodeError::Fenced(format!(
                "peer {id} at {addr} already serves a cluster, and this node's data dir holds none of \
                 its state: the data dir was wiped or is new. A member whose data is gone joins with \
                 a new id: `flotilla node remove {}` on the cluster, then start this node with \
                 --join and a new id",
                config.id
            )));
        }
    }
    Ok(())
}

/// Whether this node creates the CA when no one has one: the node that initializes (the
/// lowest id of `--peers`, or a `--force-new-cluster` one).
fn initializes(config: &NodeConfig) -> bool {
    config.force_new_cluster || (config.join.is_empty() && config.peers.keys().next() == Some(&config.id))
}

/// Asks the members (the lowest `--peers` id with a bootstrap token, the `--join`
/// addresses with a join token) for a certificate until one is given.
async fn request_certificate(
    config: &NodeConfig,
    token: &NodeToken,
    key: &rcgen::KeyPair,
) -> Result<(String, String), NodeError> {
    let addrs: Vec<String> = match token {
        NodeToken::Bootstrap { .. } => config.peers.iter().take(1).map(|(_, a)| a.clone()).collect(),
        NodeToken::Join { .. } => config.join.clone(),
    };
    if addrs.is_empty() {
        return Err(NodeError::Config(match token {
            NodeToken::Bootstrap { .. } => "a bootstrap token needs --peers".into(),
            NodeToken::Join { .. } => "a join token needs --join ADDR".into(),
        }));
    }
    let csr = flotilla_security::ca::csr(key, config.id).map_err(cert_err)?;
    let mut attempt = 0u32;
    loop {
        for addr in &addrs {
            match ask(config, token, &csr, addr).await {
                Ok(r) => {
                    tracing::info!(%addr, "received this node's certificate");
                    return Ok(r);
                }
                Err(Ask::Refused(msg)) => {
                    return Err(NodeError::Fenced(format!(
                        "cannot get a certificate from {addr}: {msg}"
                    )))
                }
                Err(Ask::Retry(msg)) => tracing::info!(%addr, error = %msg, "asking for a certificate; retrying"),
            }
        }
        attempt = attempt.saturating_add(1);
        tokio::time::sleep(Duration::from_millis(300 * u64::from(attempt.min(10)))).await;
    }
}

enum Ask {
    Refused(String),
    Retry(String),
}

async fn ask(config: &NodeConfig, token: &NodeToken, csr: &[u8], addr: &str) -> Result<(String, String), Ask> {
    let client_config = match token {
        NodeToken::Bootstrap { .. } => tls::unverified_client_config(),
        NodeToken::Join { ca_digest, .. } => tls::pinned_client_config(ca_digest),
    }
    .map_err(|e| Ask::Refused(e.to_string()))?;
    let slot = Arc::new(Mutex::new(None));
    let transport = ClientTls::Recording(Shared::new(client_config), slot.clone());
    // Connected now: the handshake tells which certificate the server showed, which the
    // proof is bound to. A server whose CA is not the token's is refused for good.
    let channel = match tls::connect_now(addr, transport, |e| {
        e.connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
    })
    .await
    {
        Ok(c) => c,
        Err(e) if e.contains(tls::WRONG_CA) => return Err(Ask::Refused(tls::WRONG_CA.to_string())),
        Err(e) => return Err(Ask::Retry(e)),
    };
    let mut client = flotilla_proto::cluster_client(channel);
    let Some(server) = slot.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
        return Err(Ask::Retry("no TLS connection yet".into()));
    };
    let proof = cred::proof(token.secret(), PROOF_REQUEST, &server, csr);
    let req = IssueCertificateRequest {
        id: config.id,
        csr: csr.to_vec(),
        proof,
    };
    let r = match client.issue_certificate(req).await {
        Ok(r) => r.into_inner(),
        Err(s) if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded) => {
            return Err(Ask::Retry(s.message().to_string()))
        }
        Err(s) => return Err(Ask::Refused(s.message().to_string())),
    };
    if slot.lock().unwrap_or_else(|e| e.into_inner()).as_deref() != Some(server.as_str()) {
        return Err(Ask::Retry("the connection changed during the request".into()));
    }
    if !cred::check_proof(token.secret(), PROOF_ISSUED, &server, csr, &r.proof) {
        return Err(Ask::Refused(
            "the server did not prove it knows the token's secret: it is not a node of this cluster".into(),
        ));
    }
    if let NodeToken::Join { ca_digest, .. } = token {
        // The CA the token pins, among those sent (mid-rotation: the previous one).
        let known = pem_certs(&r.ca_pem)
            .unwrap_or_default()
            .iter()
            .any(|d| sha256_hex(d) == *ca_digest);
        if !known {
            return Err(Ask::Refused("the CA sent is not the one the join token names".into()));
        }
    }
    Ok((r.cert_pem, r.ca_pem))
}

/// `IssueCertificate` on the node asked: checks the proof against the bootstrap token
/// this node was started with (for an id in its `--peers`) or the cluster's join secret
/// (for an id that is neither a member nor removed), then signs and records which key the
/// id's certificate is for: no token gets an id's certificate for another key.
pub async fn issue(node: &Node, req: &IssueCertificateRequest) -> Result<IssueCertificateResponse, ApiError> {
    let Some(sec) = node.tls.as_ref() else {
        return Err(ApiError::Refused(
            "this node runs --insecure and issues no certificates".into(),
        ));
    };
    if req.id == 0 || req.csr.len() > 16 << 10 || req.proof.len() > 128 {
        return Err(ApiError::Invalid("malformed certificate request".into()));
    }
    let csr = rcgen::CertificateSigningRequestParams::from_der(&req.csr.as_slice().into())
        .map_err(|e| ApiError::Invalid(format!("invalid certificate signing request: {e}")))?;
    let key = {
        use rcgen::PublicKeyData;
        csr.public_key.der_bytes().to_vec()
    };
    let key_hash = sha256_hex(&key);
    let server = sec.leaf_digest();
    let (join_secret, recorded, member, removed, secured) = {
        let sm = node.state.read();
        let member = sm.last_membership.membership().nodes().any(|(id, _)| *id == req.id);
        let security = sm.state.security.as_ref();
        (
            security.map(|s| s.join_secret.clone()),
            security.and_then(|s| s.issued.get(&req.id).cloned()),
            member,
            sm.state.removed.contains(&req.id),
            security.is_some(),
        )
    };
    let by_bootstrap = match &sec.token {
        Some(NodeToken::Bootstrap { secret }) => {
            cred::check_proof(secret, PROOF_REQUEST, &server, &req.csr, &req.proof).then(|| secret.clone())
        }
        _ => None,
    };
    let by_join = join_secret.filter(|s| cred::check_proof(s, PROOF_REQUEST, &server, &req.csr, &req.proof));
    let same_key = recorded.as_deref() == Some(key_hash.as_str());
    if removed {
        return Err(ApiError::Refused(format!(
            "node id {} was removed from this cluster and cannot be reused; pick a new id",
            req.id
        )));
    }
    // An id's certificate goes to one key while the id is a member: a token holder never
    // gets a member's id. An id that is no member (a node of a cluster restored from a
    // snapshot, joining again with a wiped data dir) may be issued to a new key.
    if member && recorded.is_some() && !same_key {
        return Err(ApiError::Refused(format!(
            "node {}'s certificate was issued to another key; a token does not re-issue it (a \
             member renews its own; a node that lost its key is removed and joins with a new id)",
            req.id
        )));
    }
    let secret = match (by_bootstrap, by_join) {
        (Some(s), _) => {
            if !node.config.peers.contains_key(&req.id) {
                return Err(ApiError::Refused(format!(
                    "node {} is not in --peers; a bootstrap token only admits the initial members",
                    req.id
                )));
            }
            s
        }
        (None, Some(s)) => {
            if member && !same_key {
                return Err(ApiError::Refused(format!(
                    "node {} is a member of this cluster already; a token does not re-issue a member's \
                     certificate (a member renews its own)",
                    req.id
                )));
            }
            s
        }
        (None, None) => {
            return Err(ApiError::Unauthenticated(
                "credential unknown: the token's secret does not match this cluster's (or the request \
                 went through someone in between)"
                    .into(),
            ))
        }
    };
    {
        let mut issued = sec.issued.lock().unwrap_or_else(|e| e.into_inner());
        match issued.get(&req.id) {
            Some(k) if *k != key => {
                return Err(ApiError::Refused(format!(
                    "a certificate for node {} was issued to another key",
                    req.id
                )))
            }
            _ => {
                issued.insert(req.id, key);
            }
        }
    }
    let ca = sec
        .ca(&node.state)
        .ok_or_else(|| ApiError::Unavailable("this node holds no CA yet; ask another member".into()))?;
    let (bundle, cross) = match trust(&node.state) {
        Some(t) => (t.bundle, t.cross),
        None => (ca.cert_pem.clone(), None),
    };
    // Recorded before the certificate is handed out (once the cluster has its CA; before,
    // the initializing node records what it issued when the CA goes in).
    if secured && !same_key {
        let op = SecurityOp::Issued {
            id: req.id,
            key: key_hash,
            replace: recorded.is_some(),
        };
        crate::agent_service::propose_security(node, &op).await?;
    }
    let cert_pem = ca
        .issue_node(req.id, &csr.public_key, SystemTime::now(), sec.lifetime)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    tracing::info!(id = req.id, "issued a node certificate");
    Ok(IssueCertificateResponse {
        cert_pem: with_cross(&cert_pem, cross.as_deref()),
        ca_pem: bundle,
        proof: cred::proof(&secret, PROOF_ISSUED, &server, &req.csr),
    })
}

/// Renews this node's certificate from its replica's CA once a third of its lifetime is
/// left (the same key: connections keep working, the next handshake uses the new one),
/// and follows a CA rotation: a certificate of the new CA at once, shown with the
/// cross-signed one while peers may trust only the previous CA, and the previous CA
/// trusted no more once the rotation finishes. On the leader, it finishes a rotation once
/// every member holds a certificate of the new CA.
pub async fn renew_loop(node: Arc<Node>) {
    let Some(sec) = node.tls.clone() else { return };
    let check = (sec.lifetime / 20).clamp(Duration::from_millis(200), Duration::from_secs(1));
    let mut own_recorded = false;
    loop {
        tokio::time::sleep(check).await;
        keep_ca(&node, &sec);
        if !own_recorded {
            own_recorded = record_own_key(&node, &sec).await;
        }
        follow(&node, &sec);
        if node.is_leader() {
            finish_rotation(&node).await;
        }
    }
}

/// Installs what this node's TLS should be, if it differs from what it is.
fn follow(node: &Node, sec: &NodeSecurity) {
    let (trust, current) = match trust(&node.state) {
        Some(t) => (t, true),
        // Before the CA is in the state: the one this node made, with no rotation.
        None => match sec.ca(&node.state) {
            Some(ca) => (
                Trust {
                    bundle: ca.cert_pem.clone(),
                    ca,
                    cross: None,
                },
                false,
            ),
            None => return,
        },
    };
    let m = sec.material.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let left = Duration::from_millis(sec.expires_at_ms().saturating_sub(now_ms()));
    let ca_der = pem_certs(&trust.ca.cert_pem).unwrap_or_default();
    let leaf = pem_certs(&m.cert_pem).ok().and_then(|c| c.into_iter().next());
    let of_current_ca = match (leaf, ca_der.first()) {
        (Some(leaf), Some(ca)) => identity::issued_by(&leaf, ca),
        _ => false,
    };
    let resign = left <= sec.lifetime / 3 || (current && !of_current_ca);
    let own = if resign {
        let renewed = flotilla_security::ca::key_from_pem(&sec.key_pem)
            .and_then(|key| trust.ca.issue_for_key(node.id, &key, SystemTime::now(), sec.lifetime));
        match renewed {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew this node's certificate");
                return;
            }
        }
    } else {
        // The leaf alone, without a cross-signed certificate it may carry.
        let Some(first) = m.cert_pem.split_inclusive("-----END CERTIFICATE-----").next() else {
            return;
        };
        first.trim().to_string()
    };
    let want = NodeTls {
        ca_pem: trust.bundle.clone(),
        cert_pem: with_cross(&own, trust.cross.as_deref()),
        key_pem: sec.key_pem.clone(),
    };
    if !resign && want.ca_pem == m.ca_pem && want.cert_pem.trim() == m.cert_pem.trim() {
        return;
    }
    match sec.install(want) {
        Ok(()) if resign => tracing::info!(
            expires_at_ms = sec.expires_at_ms(),
            ca = %trust.ca.digest(),
            "renewed this node's certificate"
        ),
        Ok(()) => tracing::info!(ca = %trust.ca.digest(), "now trusting the cluster's current CA certificates"),
        Err(e) => tracing::warn!(error = %e, "cannot install the renewed certificate"),
    }
}

/// On the leader during a CA rotation: once every member says its certificate is of the
/// new CA, the previous CA is dropped (the members then stop trusting it).
async fn finish_rotation(node: &Node) {
    let ca_cert = match node.state.read().state.security.as_ref() {
        Some(s) if s.previous_ca.is_some() => s.ca_cert.clone(),
        _ => return,
    };
    let digest = identity::pem_digest(&ca_cert);
    for status in node.statuses(node.members()).await {
        if status.cert_ca != digest {
            tracing::debug!(
                member = status.id,
                "CA rotation: waiting for this member's certificate of the new CA"
            );
            return;
        }
    }
    let op = SecurityOp::FinishCaRotation { ca_cert };
    match node.command(command(op)).await {
        Ok(_) => tracing::info!(ca = %digest, "CA rotation finished: every member holds a certificate of the new CA"),
        Err(e) => tracing::debug!(error = %e, "finishing the CA rotation; retrying"),
    }
}

/// Keeps the replicated CA in `tls/` too: a node restarting after its certificate
/// expired signs a new one before its log is replayed (its replica holds the same key, so
/// this copy exposes nothing more). The admin config the node wrote, if any, gets the CA
/// certificates to trust as they change.
fn keep_ca(node: &Node, sec: &NodeSecurity) {
    let Some((bundle, key)) = node
        .state
        .read()
        .state
        .security
        .as_ref()
        .map(|s| (s.trust_bundle(), s.ca_key.clone()))
    else {
        return;
    };
    let path = sec.dir.join("ca.key");
    if read(&path).as_deref() != Some(key.as_str()) {
        if let Err(e) = save(&sec.dir.join("ca.pem"), &bundle).and_then(|()| save(&path, &key)) {
            tracing::warn!(error = %e, "cannot keep the cluster CA in the data dir");
        }
    }
    let admin = node.config.data_dir.join(ADMIN_CONFIG);
    if let Ok(mut file) = ClientConfigFile::load(&admin) {
        if file.ca != bundle {
            file.ca = bundle;
            if let Err(e) = file.save(&admin) {
                tracing::warn!(error = %e, "cannot update the CA in the admin config");
            }
        }
    }
}

/// Writes the CA this node created into the replicated state, through the leader, once
/// the cluster has one; the admin config written at creation works from then on.
pub async fn init_loop(node: Arc<Node>) {
    let Some(sec) = node.tls.clone() else { return };
    loop {
        let pending = sec.pending.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(security) = pending else { return };
        let theirs = node.state.read().state.security.as_ref().map(|s| s.cluster_id.clone());
        if let Some(theirs) = theirs {
            if theirs != security.cluster_id {
                tracing::error!(
                    ours = %security.cluster_id,
                    %theirs,
                    "the cluster already has another CA"
                );
            }
            let _ = std::fs::remove_file(sec.dir.join("init.json"));
            *sec.pending.lock().unwrap_or_else(|e| e.into_inner()) = None;
            record_bootstrap_issues(&node, &sec).await;
            return;
        }
        match crate::agent_service::propose_security(&node, &SecurityOp::Init(security.clone())).await {
            Ok(()) => tracing::info!(cluster = %security.cluster_id, "the cluster CA is in the replicated state"),
            Err(e) => tracing::debug!(error = %e, "writing the cluster CA; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Records this node's own key as its id's (a node that signed its own certificate: the
/// CA's creator, a restored node), so no token gets a certificate for its id. True once
/// recorded (or found recorded).
async fn record_own_key(node: &Node, sec: &NodeSecurity) -> bool {
    let Ok(key) = flotilla_security::ca::key_from_pem(&sec.key_pem) else {
        return true;
    };
    let own = {
        use rcgen::PublicKeyData;
        sha256_hex(key.der_bytes())
    };
    let recorded = match node.state.read().state.security.as_ref() {
        None => return false,
        Some(s) => s.issued.get(&node.id).cloned(),
    };
    match recorded {
        Some(k) if k == own => true,
        Some(_) => {
            tracing::warn!("this node's id is recorded with another key in the cluster's security state");
            true
        }
        None => {
            let op = SecurityOp::Issued {
                id: node.id,
                key: own,
                replace: false,
            };
            crate::agent_service::propose_security(node, &op).await.is_ok()
        }
    }
}

/// Records in the state the certificates this node issued before the CA was in it.
async fn record_bootstrap_issues(node: &Node, sec: &NodeSecurity) {
    let issued: Vec<(u64, String)> = sec
        .issued
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(id, key)| (*id, sha256_hex(key)))
        .collect();
    for (id, key) in issued {
        for _ in 0..50 {
            let recorded = node
                .state
                .read()
                .state
                .security
                .as_ref()
                .is_some_and(|s| s.issued.contains_key(&id));
            if recorded {
                break;
            }
            let op = SecurityOp::Issued {
                id,
                key: key.clone(),
                replace: false,
            };
            match crate::agent_service::propose_security(node, &op).await {
                Ok(()) => break,
                Err(e) => tracing::debug!(id, error = %e, "recording an issued certificate; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The command of a node's own security change.
pub fn command(op: SecurityOp) -> flotilla_types::Command {
    flotilla_types::Command::Security {
        op,
        by: String::new(),
        at: now_ms(),
    }
}
