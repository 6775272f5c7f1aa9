//! TLS for every connection, with rustls on ring (the one crypto provider). Nodes serve
//! all three gRPC services on one port, so a client certificate is optional at the
//! handshake and required by the service that needs it (see the node's `auth` layer).
//!
//! The TLS is done here, below tonic: the server accepts through [`incoming`], clients
//! connect through [`channel`], so the configurations can change while a node runs (a
//! renewed certificate is used by the next handshake) and a joiner can learn which
//! certificate the server showed.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::server::TlsStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::ca::NODE_SERVER_NAME;
use crate::identity::{pem_certs, sha256_hex};
use crate::SecurityError;

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once on one server; more wait in the kernel's backlog.
pub const MAX_HANDSHAKES: usize = 256;

/// A node's TLS material: the CA certificate(s) it trusts, its certificate and key.
#[derive(Clone, Debug)]
pub struct NodeTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(what: &str) -> impl Fn(rustls::Error) -> SecurityError + '_ {
    move |e| SecurityError::Cert(format!("{what}: {e}"))
}

fn roots(ca_pem: &str) -> Result<RootCertStore, SecurityError> {
    let mut roots = RootCertStore::empty();
    for der in pem_certs(ca_pem)? {
        roots
            .add(CertificateDer::from(der))
            .map_err(tls_err("invalid CA certificate"))?;
    }
    Ok(roots)
}

fn chain(m: &NodeTls) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), SecurityError> {
    let mut chain: Vec<CertificateDer<'static>> = pem_certs(&m.cert_pem)?.into_iter().map(Into::into).collect();
    // The CA goes along so a joiner can pin it by its digest.
    chain.extend(pem_certs(&m.ca_pem)?.into_iter().map(CertificateDer::from));
    let key = PrivateKeyDer::from_pem_slice(m.key_pem.as_bytes())
        .map_err(|e| SecurityError::Cert(format!("invalid private key: {e}")))?;
    Ok((chain, key))
}

const H2: &[u8] = b"h2";

/// A node's server: its certificate, client certificates optional and, when shown,
/// verified against the CA.
pub fn server_config(m: &NodeTls) -> Result<ServerConfig, SecurityError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&m.ca_pem)?), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| SecurityError::Cert(format!("client verifier: {e}")))?;
    let (chain, key) = chain(m)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err("tls versions"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(tls_err("node certificate"))?;
    config.alpn_protocols = vec![H2.to_vec()];
    Ok(config)
}

fn client_builder() -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, SecurityError> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err("tls versions"))
}

fn with_h2(mut c: ClientConfig) -> ClientConfig {
    c.alpn_protocols = vec![H2.to_vec()];
    c
}

/// A node calling another: verifies the server against the CA, shows its certificate.
pub fn node_client_config(m: &NodeTls) -> Result<ClientConfig, SecurityError> {
    let (chain, key) = chain(m)?;
    Ok(with_h2(
        client_builder()?
            .with_root_certificates(roots(&m.ca_pem)?)
            .with_client_auth_cert(chain, key)
            .map_err(tls_err("node certificate"))?,
    ))
}

/// The CLI: verifies the server against the CA; its credential is a bearer token.
pub fn client_config(ca_pem: &str) -> Result<ClientConfig, SecurityError> {
    Ok(with_h2(
        client_builder()?
            .with_root_certificates(roots(ca_pem)?)
            .with_no_client_auth(),
    ))
}

/// A joiner: accepts the server only if it shows a chain whose CA has `ca_digest`.
pub fn pinned_client_config(ca_digest: &str) -> Result<ClientConfig, SecurityError> {
    Ok(with_h2(
        client_builder()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCa {
                digest: ca_digest.to_ascii_lowercase(),
                provider: provider(),
            }))
            .with_no_client_auth(),
    ))
}

/// A bootstrap peer: no CA exists to check against, so any certificate is taken here and
/// the server is authenticated by its proof of the shared secret over this certificate.
pub fn unverified_client_config() -> Result<ClientConfig, SecurityError> {
    Ok(with_h2(
        client_builder()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer { provider: provider() }))
            .with_no_client_auth(),
    ))
}

/// Why a joiner refuses a server whose chain lacks the CA its token pins.
pub const WRONG_CA: &str =
    "the server's CA is not the one the join token names (another cluster, or someone in between)";

#[derive(Debug)]
struct PinnedCa {
    digest: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| sha256_hex(c) == self.digest)
            .ok_or_else(|| rustls::Error::General(WRONG_CA.into()))?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        // The chain's other certificates may join the leaf to the pinned CA (a server
        // whose certificate is of a new CA cross-signed by the pinned one, mid-rotation).
        verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[derive(Debug)]
struct AnyServer {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A value that can be replaced while readers hold the old one (a renewed certificate's
/// configuration: handshakes in progress finish with the old one).
pub struct Shared<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T> Shared<T> {
    pub fn new(value: T) -> Self {
        Shared(Arc::new(RwLock::new(Arc::new(value))))
    }

    pub fn get(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, value: T) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(value);
    }
}

/// What a client connection does below gRPC.
#[derive(Clone)]
pub enum ClientTls {
    /// Plain TCP (`--insecure` clusters).
    Plain,
    /// TLS with this configuration.
    Tls(Shared<ClientConfig>),
    /// TLS, and the SHA-256 of the server's certificate goes into the slot (a bootstrap
    /// or join request binds its proof to it).
    Recording(Shared<ClientConfig>, Arc<Mutex<Option<String>>>),
}

/// The IO a connection gives tonic.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

async fn connect(uri: Uri, tls: ClientTls, local: Option<IpAddr>) -> io::Result<TokioIo<Pin<Box<dyn Io>>>> {
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let addr: SocketAddr = match tokio::net::lookup_host((host, port)).await?.next() {
        Some(a) => a,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} has no address"),
            ))
        }
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = local {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let tcp: TcpStream = socket
        .connect(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("tcp connect error: {e}")))?;
    tcp.set_nodelay(true)?;
    let (config, slot) = match tls {
        ClientTls::Plain => return Ok(TokioIo::new(Box::pin(tcp))),
        ClientTls::Tls(c) => (c.get(), None),
        ClientTls::Recording(c, slot) => (c.get(), Some(slot)),
    };
    let name = ServerName::try_from(NODE_SERVER_NAME).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let stream = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    if let Some(slot) = slot {
        let leaf = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| sha256_hex(c));
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = leaf;
    }
    Ok(TokioIo::new(Box::pin(stream)))
}

/// A gRPC channel to `addr` (`host:port`) that connects on first use and again after a
/// failure, through `tls`, from `local` when set. `tune` sets timeouts and keep-alives.
pub fn channel(
    addr: &str,
    tls: ClientTls,
    local: Option<IpAddr>,
    tune: impl FnOnce(Endpoint) -> Endpoint,
) -> Result<Channel, String> {
    let addr = addr
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let endpoint =
        Endpoint::from_shared(format!("http://{addr}")).map_err(|e| format!("invalid address {addr:?}: {e}"))?;
    let connector = tower::service_fn(move |uri: Uri| connect(uri, tls.clone(), local));
    Ok(tune(endpoint).connect_with_connector_lazy(connector))
}

/// Like [`channel`], connected now: a failure to connect is an error here, not on the
/// first call.
pub async fn connect_now(
    addr: &str,
    tls: ClientTls,
    tune: impl FnOnce(Endpoint) -> Endpoint,
) -> Result<Channel, String> {
    let addr = addr
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let endpoint =
        Endpoint::from_shared(format!("http://{addr}")).map_err(|e| format!("invalid address {addr:?}: {e}"))?;
    let connector = tower::service_fn(move |uri: Uri| connect(uri, tls.clone(), None));
    tune(endpoint).connect_with_connector(connector).await.map_err(|e| {
        // The error and its causes, each said once.
        let mut parts = vec![e.to_string()];
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            let text = s.to_string();
            if !parts.iter().any(|p| p.contains(&text)) {
                parts.push(text);
            }
            source = s.source();
        }
        parts.join(": ")
    })
}

/// The TLS connections accepted on `listener` with the current `config`; handshakes run
/// concurrently (at most [`MAX_HANDSHAKES`]) and a failed one is dropped.
pub fn incoming(
    listener: TcpListener,
    config: Shared<ServerConfig>,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = tokio_rustls::TlsAcceptor::from(config.get());
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
