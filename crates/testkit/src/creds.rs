//! Test clusters run secured, as users run them: every agent gets a bootstrap token (or
//! the cluster's join token), and the tests' clients use the admin config the first node
//! wrote, through TLS checked against the cluster CA with the admin token.

use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_proto::v1::cluster_service_client::ClusterServiceClient;
use flotilla_security::config::{ClientConfigFile, ADMIN_CONFIG};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A client of the cluster API that shows a token on every call.
pub type ApiClient = ClusterServiceClient<InterceptedService<Channel, Bearer>>;

/// Puts `authorization: Bearer <token>` on every request.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(b) = &self.0 {
            req.metadata_mut().insert("authorization", b.clone());
        }
        Ok(req)
    }
}

/// A client of `addr` for `config` (TLS against its CA, its token), connecting on first
/// use; with `None`, TLS that checks nothing and no token (a stranger).
pub fn api_client(addr: &str, config: Option<&ClientConfigFile>) -> ApiClient {
    let channel = flotilla_security::tls::channel(addr, client_tls(config), None, |e| {
        e.connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(10))
    })
    .expect("valid address");
    with_bearer(channel, config)
}

/// The TLS side of a client for `config` (checking nothing without one).
pub fn client_tls(config: Option<&ClientConfigFile>) -> flotilla_security::ClientTls {
    let tls = match config {
        Some(c) => flotilla_security::tls::client_config(&c.ca),
        None => flotilla_security::tls::unverified_client_config(),
    }
    .expect("client TLS configuration");
    flotilla_security::ClientTls::Tls(flotilla_security::Shared::new(tls))
}

fn with_bearer(channel: Channel, config: Option<&ClientConfigFile>) -> ApiClient {
    let bearer = config.and_then(|c| format!("Bearer {}", c.token).parse().ok());
    ClusterServiceClient::with_interceptor(channel, Bearer(bearer))
        .max_decoding_message_size(flotilla_proto::MAX_API_MESSAGE)
        .max_encoding_message_size(flotilla_proto::MAX_API_MESSAGE)
}

/// A plain-TCP client with no credential (an `--insecure` cluster).
fn plain_client(addr: &str) -> ApiClient {
    let channel = flotilla_security::tls::channel(addr, flotilla_security::ClientTls::Plain, None, |e| {
        e.connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(10))
    })
    .expect("valid address");
    with_bearer(channel, None)
}

/// A client of `addr` for `config` on a connection made now.
pub async fn api_client_now(
    addr: &str,
    config: Option<&ClientConfigFile>,
    tune: impl FnOnce(tonic::transport::Endpoint) -> tonic::transport::Endpoint,
) -> Result<ApiClient, String> {
    let channel = flotilla_security::tls::connect_now(addr, client_tls(config), tune).await?;
    Ok(with_bearer(channel, config))
}

/// Where a test cluster's credentials live.
pub struct Credentials {
    /// The data dir of the node that creates the CA (it writes the admin config there).
    source: PathBuf,
    /// A copy that outlives a wipe of that node.
    copy: PathBuf,
    /// The bootstrap token file every `--peers` node gets.
    pub bootstrap: PathBuf,
    /// The cluster runs `--insecure`: plain TCP, no credentials.
    pub insecure: bool,
}

impl Credentials {
    /// For a cluster rooted at `root` whose CA is made by the node with data dir `first`.
    pub fn new(root: &Path, first: &Path) -> Credentials {
        let bootstrap = root.join("bootstrap.token");
        std::fs::write(&bootstrap, flotilla_security::NodeToken::new_bootstrap().to_string())
            .expect("write the bootstrap token");
        Credentials {
            source: first.join(ADMIN_CONFIG),
            copy: root.join(ADMIN_CONFIG),
            bootstrap,
            insecure: false,
        }
    }

    /// A client of `addr` with these credentials (connects on first use).
    pub fn client(&self, addr: &str) -> ApiClient {
        self.access().client(addr)
    }

    /// What a client needs, to move into tasks: the admin config (none before the first
    /// node wrote it), or plain TCP on an `--insecure` cluster.
    pub fn access(&self) -> Access {
        Access {
            insecure: self.insecure,
            config: if self.insecure { None } else { self.config() },
        }
    }
}

/// How a test's clients reach a cluster (see [`Credentials::access`]).
#[derive(Clone)]
pub struct Access {
    insecure: bool,
    config: Option<ClientConfigFile>,
}

impl Access {
    /// A client of `addr` (connects on first use).
    pub fn client(&self, addr: &str) -> ApiClient {
        if self.insecure {
            return plain_client(addr);
        }
        api_client(addr, self.config.as_ref())
    }

    /// A client of `addr` on a connection made now.
    pub async fn client_now(
        &self,
        addr: &str,
        tune: impl FnOnce(tonic::transport::Endpoint) -> tonic::transport::Endpoint,
    ) -> Result<ApiClient, String> {
        if self.insecure {
            let channel = flotilla_security::tls::connect_now(addr, flotilla_security::ClientTls::Plain, tune).await?;
            return Ok(with_bearer(channel, None));
        }
        api_client_now(addr, self.config.as_ref(), tune).await
    }
}

impl Credentials {
    /// Refreshes the copy from the source when the source exists (a node that re-created
    /// the CA wrote a new one).
    fn refresh(&self) {
        if let Ok(text) = std::fs::read(&self.source) {
            if std::fs::read(&self.copy).ok().as_deref() != Some(text.as_slice()) {
                let _ = std::fs::write(&self.copy, text);
            }
        }
    }

    /// The admin config, once the first node has written it (waits up to 30 s).
    pub fn config_path(&self) -> PathBuf {
        crate::wait::wait_until("the admin client config", Duration::from_secs(30), || {
            self.refresh();
            self.copy.exists().then_some(())
        });
        self.copy.clone()
    }

    /// The admin config if written yet.
    pub fn config(&self) -> Option<ClientConfigFile> {
        self.refresh();
        ClientConfigFile::load(&self.copy).ok()
    }
}
