//! The connection to the cluster: `--addr` entries tried in turn.

use std::time::Duration;

use flotilla_proto::v1::cluster_service_client::ClusterServiceClient;
use flotilla_proto::ClusterRpc;
use tonic::transport::Channel;
use tracing::Instrument;

use crate::error::CliError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the CLI goes with no --addr and no config.
const DEFAULT_ADDR: &str = "127.0.0.1:7001";

pub struct Client {
    addrs: Vec<String>,
    timeout: Duration,
    /// TLS against the cluster CA, plain TCP with `--insecure`, or TLS that checks nothing
    /// when no config is at hand (no credential is sent then; the node says what is missing).
    tls: flotilla_security::ClientTls,
    /// `authorization` for every call: the config's token.
    bearer: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    /// Where the credential came from, for messages.
    config: Option<std::path::PathBuf>,
    /// The cluster CA of the config.
    ca: Option<String>,
}

/// The client config to use: `--config`, `FLOTILLA_CONFIG` (both must exist), else
/// `~/.config/flotilla/config.yaml` when it exists.
fn config_path(global: &crate::args::Global) -> Result<Option<std::path::PathBuf>, CliError> {
    if let Some(p) = &global.config {
        if !p.exists() {
            return Err(CliError::Usage(format!(
                "--config / FLOTILLA_CONFIG {}: no such file",
                p.display()
            )));
        }
        return Ok(Some(p.clone()));
    }
    Ok(flotilla_security::config::default_path().filter(|p| p.exists()))
}

/// Where the CLI remembers the last leader it heard of.
fn leader_cache() -> Option<std::path::PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))?;
    Some(base.join("flotilla").join("last-leader"))
}

impl Client {
    /// `--addr` in order, except that the last leader heard of (when it is one of them)
    /// comes first: writes then skip the forwarding hop.
    fn ordered(&self) -> Vec<String> {
        let mut addrs = self.addrs.clone();
        let remembered = leader_cache().and_then(|p| std::fs::read_to_string(p).ok());
        if let Some(leader) = remembered.map(|s| s.trim().to_string()) {
            if let Some(i) = addrs.iter().position(|a| *a == leader) {
                let a = addrs.remove(i);
                addrs.insert(0, a);
            }
        }
        addrs
    }

    fn remember_leader<T>(&self, r: &tonic::Response<T>) {
        let Some(leader) = r
            .metadata()
            .get(flotilla_proto::LEADER_HEADER)
            .and_then(|v| v.to_str().ok())
        else {
            return;
        };
        if !self.addrs.iter().any(|a| a == leader) {
            return;
        }
        if let Some(path) = leader_cache() {
            // Best effort: a read-only home only loses the shortcut.
            if std::fs::read_to_string(&path).ok().as_deref() != Some(leader) {
                let _ = std::fs::create_dir_all(path.parent().unwrap_or(std::path::Path::new(".")));
                let _ = std::fs::write(&path, leader);
            }
        }
    }

    /// A client of the cluster named by `--addr` (else the config's addresses, else
    /// 127.0.0.1:7001), with the config's CA and token.
    pub fn new(global: &crate::args::Global, timeout: Duration) -> Result<Self, CliError> {
        let path = if global.insecure { None } else { config_path(global)? };
        let file = match &path {
            Some(p) => {
                Some(flotilla_security::config::ClientConfigFile::load(p).map_err(|e| CliError::Usage(e.to_string()))?)
            }
            None => None,
        };
        let given: Vec<String> = global
            .addr
            .iter()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect();
        if !global.addr.is_empty() && given.is_empty() {
            return Err(CliError::Usage("--addr is empty; give at least one HOST:PORT".into()));
        }
        let addrs = match (&file, given.is_empty()) {
            (_, false) => given,
            (Some(f), true) if !f.addresses.is_empty() => f.addresses.clone(),
            _ => vec![DEFAULT_ADDR.to_string()],
        };
        let usage = |e: flotilla_security::SecurityError| CliError::Usage(e.to_string());
        let (tls, bearer) = match &file {
            _ if global.insecure => (flotilla_security::ClientTls::Plain, None),
            Some(f) => {
                let config = flotilla_security::tls::client_config(&f.ca).map_err(usage)?;
                let bearer = format!("Bearer {}", f.token.trim())
                    .parse()
                    .map_err(|_| CliError::Usage("the config's token is not printable ASCII".into()))?;
                (
                    flotilla_security::ClientTls::Tls(flotilla_security::Shared::new(config)),
                    Some(bearer),
                )
            }
            None => (
                flotilla_security::ClientTls::Tls(flotilla_security::Shared::new(
                    flotilla_security::tls::unverified_client_config().map_err(usage)?,
                )),
                None,
            ),
        };
        Ok(Client {
            addrs,
            timeout,
            tls,
            bearer,
            config: path,
            ca: file.map(|f| f.ca),
        })
    }

    /// Trusts the CA certificates `ca` from the next connection on (a CA rotation).
    pub fn trust(&self, ca: &str) -> Result<(), CliError> {
        if let flotilla_security::ClientTls::Tls(shared) = &self.tls {
            if self.ca.is_some() {
                shared.set(flotilla_security::tls::client_config(ca).map_err(|e| CliError::Failed(e.to_string()))?);
            }
        }
        Ok(())
    }

    /// Puts `ca` into the client config this client was made from (a CA rotation); the
    /// path written, or `None` without a config.
    pub fn update_config_ca(&self, ca: &str) -> Result<Option<std::path::PathBuf>, CliError> {
        let Some(path) = &self.config else { return Ok(None) };
        let mut file =
            flotilla_security::config::ClientConfigFile::load(path).map_err(|e| CliError::Failed(e.to_string()))?;
        if file.ca != ca {
            file.ca = ca.to_string();
            file.save(path).map_err(|e| CliError::Failed(e.to_string()))?;
        }
        Ok(Some(path.clone()))
    }

    /// Writes a client config for `token` with this client's CA and addresses.
    pub fn write_config(&self, path: &std::path::Path, token: &str) -> Result<(), CliError> {
        let ca = self
            .ca
            .clone()
            .ok_or_else(|| CliError::Usage("--write-config needs a client config to take the CA from".into()))?;
        flotilla_security::config::ClientConfigFile {
            addresses: self.addrs.clone(),
            ca,
            token: token.to_string(),
        }
        .save(path)
        .map_err(|e| CliError::Failed(e.to_string()))
    }

    async fn connect_with(
        &self,
        addr: &str,
        timeout: Option<Duration>,
    ) -> Result<ClusterServiceClient<Channel>, String> {
        let channel = flotilla_security::tls::connect_now(addr, self.tls.clone(), |e| {
            let e = e.connect_timeout(CONNECT_TIMEOUT);
            match timeout {
                Some(t) => e.timeout(t),
                None => e,
            }
        })
        .await?;
        Ok(flotilla_proto::cluster_client(channel))
    }

    /// Opens `Exec` on the first node that can be reached: `input` is what the CLI sends
    /// (its first message the `ExecStart`), the answer the command's output. Not bounded
    /// by `--timeout` once it has started.
    pub async fn exec(
        &self,
        input: tokio::sync::mpsc::Receiver<flotilla_proto::v1::ExecInput>,
    ) -> Result<tonic::Streaming<flotilla_proto::v1::ExecOutput>, CliError> {
        let mut failures = Vec::new();
        for addr in &self.addrs {
            let mut client = match self.connect_with(addr, None).await {
                Ok(c) => c,
                Err(e) => {
                    failures.push(format!("{addr}: {e}"));
                    continue;
                }
            };
            let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(input));
            if let Some(b) = &self.bearer {
                request.metadata_mut().insert("authorization", b.clone());
            }
            let answer = tokio::time::timeout(self.timeout, client.exec(request))
                .await
                .map_err(|_| CliError::Unreachable(format!("{addr}: no answer within --timeout")))?;
            return match answer {
                Ok(r) => Ok(r.into_inner()),
                Err(s) if s.code() == tonic::Code::Unauthenticated && self.config.is_none() => {
                    Err(CliError::Credential(format!(
                        "{}; no client config was found: the node that created the cluster wrote one, \
                         admin.yaml, into its data dir",
                        s.message()
                    )))
                }
                Err(s) => Err(CliError::from_status(&s)),
            };
        }
        Err(CliError::Unreachable(format!(
            "cannot reach the cluster ({}); check that the agents run and that --addr or FLOTILLA_ADDR \
             names them",
            failures.join("; ")
        )))
    }

    /// Sends `req` to the first node that can be reached, waiting at most `--timeout`.
    pub async fn send<R: ClusterRpc>(&self, req: R) -> Result<R::Reply, CliError> {
        self.send_with(Some(self.timeout), req).await
    }

    /// Like `send`, for streams that may last longer than `--timeout` (`logs -f`).
    pub async fn stream<R: ClusterRpc>(&self, req: R) -> Result<R::Reply, CliError> {
        self.send_with(None, req).await
    }

    async fn send_with<R: ClusterRpc>(&self, timeout: Option<Duration>, req: R) -> Result<R::Reply, CliError> {
        let mut failures = Vec::new();
        // One id per request, the same on every address it is tried on: a write whose
        // answer was lost and that is sent again is applied once (the node ignores it on
        // reads).
        let request_id: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
            flotilla_types::requests::new_request_id(flotilla_executor::now_ms(), rand::random())
                .parse()
                .expect("a request id is ASCII");
        for addr in &self.ordered() {
            let client = match self.connect_with(addr, timeout).await {
                Ok(c) => c,
                Err(e) => {
                    failures.push(format!("{addr}: {e}"));
                    continue;
                }
            };
            let span = tracing::debug_span!("rpc", method = R::METHOD, addr = %addr);
            let mut request = tonic::Request::new(req.clone());
            if let Some(b) = &self.bearer {
                request.metadata_mut().insert("authorization", b.clone());
            }
            request
                .metadata_mut()
                .insert(flotilla_proto::REQUEST_ID_HEADER, request_id.clone());
            match R::invoke(client, request).instrument(span).await {
                Ok(r) => {
                    self.remember_leader(&r);
                    return Ok(r.into_inner());
                }
                // The connection broke before an answer: another node may do.
                Err(s) if s.code() == tonic::Code::Unavailable && std::error::Error::source(&s).is_some() => {
                    failures.push(format!("{addr}: {}", s.message()));
                }
                Err(s) if s.code() == tonic::Code::Unauthenticated && self.config.is_none() => {
                    return Err(CliError::Credential(format!(
                        "{}; no client config was found: the node that created the cluster wrote \
                         one, admin.yaml, into its data dir",
                        s.message()
                    )))
                }
                Err(s)
                    if matches!(self.tls, flotilla_security::ClientTls::Plain)
                        && s.message().contains("h2 protocol") =>
                {
                    return Err(CliError::Unreachable(format!(
                        "{addr}: {}: the node does not speak plain TCP (it is not --insecure); drop \
                         --insecure and give the CLI a client config",
                        s.message()
                    )))
                }
                Err(s) => return Err(CliError::from_status(&s)),
            }
        }
        Err(CliError::Unreachable(format!(
            "cannot reach the cluster ({}); check that the agents run and that --addr or \
             FLOTILLA_ADDR names them",
            failures.join("; ")
        )))
    }
}
