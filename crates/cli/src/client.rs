//! The connection to the cluster: `--addr` entries tried in turn.

use std::error::Error as _;
use std::future::Future;
use std::time::Duration;

use flotilla_proto::v1::cluster_service_client::ClusterServiceClient;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

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

impl Client {
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

    /// Like `call`, for streams that may last longer than `--timeout` (`logs -f`).
    pub async fn open_stream<T, F, Fut>(&self, f: F) -> Result<T, CliError>
    where
        F: Fn(ClusterServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call_with(None, f).await
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
        Ok(ClusterServiceClient::new(channel)
            .max_decoding_message_size(flotilla_node::MAX_API_MESSAGE)
            .max_encoding_message_size(flotilla_node::MAX_API_MESSAGE))
    }

    /// Runs `f` against the first node that can be reached.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, CliError>
    where
        F: Fn(ClusterServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call_with(Some(self.timeout), f).await
    }

    async fn call_with<T, F, Fut>(&self, timeout: Option<Duration>, f: F) -> Result<T, CliError>
    where
        F: Fn(ClusterServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut failures = Vec::new();
        for addr in &self.addrs {
            let client = match self.connect_with(addr, timeout).await {
                Ok(c) => c,
                Err(e) => {
                    failures.push(format!("{addr}: {e}"));
                    continue;
                }
            };
            match f(client).await {
                Ok(r) => return Ok(r.into_inner()),
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
