//! The connection to the cluster: `--addr` entries tried in turn.

use std::error::Error as _;
use std::time::Duration;

use flotilla_proto::v1::cluster_service_client::ClusterServiceClient;
use flotilla_proto::ClusterRpc;
use tonic::transport::{Channel, Endpoint};
use tracing::Instrument;

use crate::error::CliError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Client {
    addrs: Vec<String>,
    timeout: Duration,
}

/// A transport error with its causes, e.g. "transport error: tcp connect error: Connection refused".
fn describe(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
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

    pub fn new(addrs: &[String], timeout: Duration) -> Result<Self, CliError> {
        let addrs: Vec<String> = addrs
            .iter()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect();
        if addrs.is_empty() {
            return Err(CliError::Usage("--addr is empty; give at least one HOST:PORT".into()));
        }
        Ok(Client { addrs, timeout })
    }

    async fn connect_with(
        &self,
        addr: &str,
        timeout: Option<Duration>,
    ) -> Result<ClusterServiceClient<Channel>, String> {
        let uri = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let endpoint = Endpoint::from_shared(uri).map_err(|e| format!("invalid address: {e}"))?;
        let endpoint = endpoint.connect_timeout(CONNECT_TIMEOUT);
        let endpoint = match timeout {
            Some(t) => endpoint.timeout(t),
            None => endpoint,
        };
        let channel = endpoint.connect().await.map_err(|e| describe(&e))?;
        Ok(flotilla_proto::cluster_client(channel))
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
        for addr in &self.ordered() {
            let client = match self.connect_with(addr, timeout).await {
                Ok(c) => c,
                Err(e) => {
                    failures.push(format!("{addr}: {e}"));
                    continue;
                }
            };
            let span = tracing::debug_span!("rpc", method = R::METHOD, addr = %addr);
            match R::invoke(client, tonic::Request::new(req.clone()))
                .instrument(span)
                .await
            {
                Ok(r) => {
                    self.remember_leader(&r);
                    return Ok(r.into_inner());
                }
                // The connection broke before an answer: another node may do.
                Err(s) if s.code() == tonic::Code::Unavailable && s.source().is_some() => {
                    failures.push(format!("{addr}: {}", s.message()));
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
