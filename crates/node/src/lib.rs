//! flotilla-node is the agent: it opens the store, runs Raft, serves the gRPC APIs (Raft
//! transport, cluster API) and bootstraps the cluster. It wires the lower crates together
//! and holds no domain logic of its own.

// openraft's StorageError and RaftError are large and fixed by its traits.
#![allow(clippy::result_large_err)]

mod agent_service;
mod auth;
mod backup;
mod batcher;
mod bootstrap;
mod cluster_service;
pub mod config;
mod cutoff;
mod dns;
mod epoch;
pub mod error;
mod events;
mod exec;
mod executor;
mod fence;
pub mod injected;
mod inspect;
mod join;
mod logs;
mod membership;
mod mesh;
pub mod metrics;
mod network;
mod node;
mod raft_service;
mod rollout_service;
mod routed;
mod rpcs;
pub mod security;
mod status;
mod tokens;
mod top;
mod verify;

use std::future::Future;
use std::sync::Arc;

use flotilla_proto::v1::agent_service_server::AgentServiceServer;
use flotilla_proto::v1::cluster_service_server::ClusterServiceServer;
use flotilla_proto::v1::raft_service_server::RaftServiceServer;
use flotilla_store::{DataDir, Raft};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

pub use config::{machine_capacity, parse_labels, parse_peers, NodeConfig, RaftTuning};
pub use flotilla_control::ControlConfig;
pub use network::connect_lazy;

/// How long a fenced node waits for its tasks to stop and its connections to close.
const FENCED_EXIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a fenced node waits for its executor to stop its tasks before it exits.
const FENCED_STOP: std::time::Duration = std::time::Duration::from_secs(10);

pub use flotilla_proto::{MAX_API_MESSAGE, MAX_API_REQUEST};

/// Requests one connection may have in progress at once; more wait (HTTP/2 flow control).
const MAX_CONCURRENT_PER_CONNECTION: usize = 256;
/// Largest agent-to-agent request (a node's task reports).
const MAX_AGENT_MESSAGE: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot open data dir {dir}: {source}")]
    Store {
        dir: String,
        #[source]
        source: flotilla_store::StoreError,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("raft failed: {0}")]
    Raft(String),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// This node must not take part (removed, refused on join, older epoch).
    #[error("{0}")]
    Fenced(String),
}

/// Runs an agent, starting tasks through `driver`, until `shutdown` completes.
pub async fn run(
    config: NodeConfig,
    driver: Arc<dyn flotilla_executor::Driver>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    if !config.peers.is_empty() && !config.peers.contains_key(&config.id) {
        return Err(NodeError::Config(format!(
            "--peers must include this node's own id {}",
            config.id
        )));
    }
    let raft_config = Arc::new(config.raft_config().map_err(NodeError::Config)?);
    let (log, sm, dir) = open_store(&config).await?;
    let state = sm.shared();
    let took_part = log.has_history().map_err(store_error(&config))?;
    // Node-scoped, never process-global: several nodes can run in one process.
    let fence = fence::Fence::default();
    let contacts = network::Contacts::default();
    let epoch =
        Arc::new(epoch::Epoch::load(dir, config.id, &state, took_part, fence.clone()).map_err(store_error(&config))?);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| NodeError::Listen {
            addr: config.listen.to_string(),
            source,
        })?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(|source| NodeError::Listen {
            addr: addr.to_string(),
            source,
        })?),
        None => None,
    };
    let tls = security::obtain(&config, &state).await?;
    let client_tls = tls
        .as_ref()
        .map_or(flotilla_security::ClientTls::Plain, |t| t.client_tls());
    let network = network::Network::new(
        config.listen,
        epoch.clone(),
        contacts.clone(),
        client_tls,
        state.clone(),
    );
    let raft = Raft::new(config.id, raft_config, network, log, sm)
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
    let node = Arc::new(node::Node::new(
        config.clone(),
        raft.clone(),
        state.clone(),
        epoch,
        contacts,
        tls,
    ));
    {
        let metrics = node.metrics.clone();
        node.state.observe(move |e| metrics.observe_store(e));
    }
    tracing::info!(id = config.id, listen = %config.listen, data_dir = %config.data_dir.display(), "agent started");
    let control = flotilla_control::Control::new(
        raft.clone(),
        state,
        config.control.clone(),
        node.metrics.control.clone(),
    );
    // Every driver call the node makes is timed for `/metrics`.
    let driver: Arc<dyn flotilla_executor::Driver> =
        Arc::new(metrics::driver::MeteredDriver::new(driver, &node.metrics));
    let gateway = config.dns.as_ref().and_then(|d| d.bridge).map(|b| b.gateway);
    let mesh = mesh::Mesh::new(node.clone(), driver.clone(), config.publish_addr, gateway);
    let mut loops = spawn_loops(&node, &control, &driver, &mesh);
    loops.push(tokio::spawn(mesh.clone().run()));
    if let Some(dns) = config.dns.clone() {
        loops.push(tokio::spawn(dns::Server::new(node.clone(), mesh.clone(), dns).run()));
    }
    if let Some(listener) = metrics_listener {
        loops.push(tokio::spawn(metrics::http::serve(listener, node.clone())));
    }
    // A fenced node stops like one asked to: the gRPC server drains, Raft shuts down.
    let fenced = stop_tasks_when_fenced(node.clone(), driver.clone());
    let shutdown = async move {
        tokio::select! {
            _ = shutdown => {}
            _ = fenced => {}
        }
    };
    let result = serve(listener, node, control, driver, mesh, shutdown).await;
    loops.iter().for_each(JoinHandle::abort);
    tracing::info!("shutting down raft");
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "raft shutdown");
    }
    result?;
    if fence.is_fenced() {
        return Err(NodeError::Fenced(fence.fenced().await));
    }
    Ok(())
}

fn store_error(config: &NodeConfig) -> impl Fn(flotilla_store::StoreError) -> NodeError + '_ {
    |source| NodeError::Store {
        dir: config.data_dir.display().to_string(),
        source,
    }
}

/// Opens the data dir (re-forming it first under `--force-new-cluster`).
async fn open_store(
    config: &NodeConfig,
) -> Result<(flotilla_store::LogStore, flotilla_store::StateMachineStore, DataDir), NodeError> {
    let dir = DataDir::new(&config.data_dir);
    if config.force_new_cluster {
        let r = flotilla_store::backup::force_new_cluster(&dir, config.id, &config.advertised(), node::now_ms())
            .await
            .map_err(store_error(config))?;
        tracing::warn!(
            epoch = r.epoch,
            index = r.index,
            replayed = r.replayed,
            dropped = ?r.dropped,
            restored = r.restored,
            "--force-new-cluster: re-formed a one-node cluster from this node's state; other nodes \
             join it with --join (old members are refused); start this node without the flag from now on"
        );
    }
    let (log, sm) = flotilla_store::open(&dir, config.id)
        .await
        .map_err(store_error(config))?;
    if !config.force_new_cluster {
        flotilla_store::backup::started_without_force(&dir).map_err(store_error(config))?;
    }
    Ok((log, sm, dir))
}

/// Everything a node runs beside its gRPC server: bootstrap or join, the membership watch,
/// leader events, the leader loops' supervisor, heartbeats and the executor.
fn spawn_loops(
    node: &Arc<node::Node>,
    control: &Arc<flotilla_control::Control>,
    driver: &Arc<dyn flotilla_executor::Driver>,
    mesh: &Arc<mesh::Mesh>,
) -> Vec<JoinHandle<()>> {
    let config = &node.config;
    tracing::info!(driver = driver.name(), cluster = %config.cluster, "executor started");
    let source = Arc::new(executor::ReplicaSource {
        state: node.state.clone(),
        node: config.id,
        fence: node.fence().clone(),
        cutoff: node.cutoff.clone(),
    });
    let (wake, wake_rx) = tokio::sync::watch::channel(0u64);
    let executor = flotilla_executor::task_loop::Executor::new(
        driver.clone(),
        source.clone(),
        Arc::new(executor::LeaderReporter {
            node: node.clone(),
            control: control.clone(),
        }),
        flotilla_executor::task_loop::ExecutorConfig {
            cluster: config.cluster.clone(),
            node: config.id,
            interval: std::time::Duration::from_secs(1),
            keep_completed: config.keep_completed,
        },
    );
    vec![
        tokio::spawn(security::init_loop(node.clone())),
        tokio::spawn(security::renew_loop(node.clone())),
        tokio::spawn(bootstrap::run(node.clone())),
        tokio::spawn(join::run(node.clone())),
        tokio::spawn(membership::watch(node.clone())),
        tokio::spawn(events::watch_leader(node.clone())),
        control.spawn(vec![membership::leader_loop(node.clone())]),
        tokio::spawn(agent_service::heartbeat_loop(
            node.clone(),
            control.clone(),
            mesh.clone(),
        )),
        tokio::spawn(source.wake_loop(wake)),
        tokio::spawn(executor.run(wake_rx)),
    ]
}

/// Completes once this node is fenced and its driver runs none of its tasks (the executor
/// sees no assignments on a fenced node — its replica is stale — and stops them), or
/// [`FENCED_STOP`] after it was fenced.
async fn stop_tasks_when_fenced(node: Arc<node::Node>, driver: Arc<dyn flotilla_executor::Driver>) {
    node.fence().fenced().await;
    let labels = std::collections::BTreeMap::from([
        (
            flotilla_executor::LABEL_CLUSTER.to_string(),
            node.config.cluster.clone(),
        ),
        (flotilla_executor::LABEL_NODE.to_string(), node.id.to_string()),
    ]);
    let deadline = tokio::time::Instant::now() + FENCED_STOP;
    loop {
        let running = match driver.list(&labels).await {
            Ok(list) => list.iter().any(|c| c.state.is_running()),
            Err(_) => false,
        };
        if !running || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Serves the Raft, agent and cluster APIs until `shutdown` completes: over TLS (every
/// request checked by [`auth::AuthLayer`]), or plain TCP on an `--insecure` node.
async fn serve(
    listener: TcpListener,
    node: Arc<node::Node>,
    control: Arc<flotilla_control::Control>,
    driver: Arc<dyn flotilla_executor::Driver>,
    mesh: Arc<mesh::Mesh>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let fence = node.fence().clone();
    let raft = raft_service::RaftServer::new(&node);
    // Bounds (docs/SECURITY.md): in-flight requests per connection, and each service's
    // largest request, checked by tonic before a message is decoded.
    let router = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(MAX_CONCURRENT_PER_CONNECTION)
        .max_concurrent_streams(Some(MAX_CONCURRENT_PER_CONNECTION as u32))
        // A peer that stops answering HTTP/2 pings is dropped with its requests.
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
        .layer(auth::AuthLayer { node: node.clone() })
        .add_service(
            RaftServiceServer::new(raft)
                .max_decoding_message_size(network::MAX_RAFT_MESSAGE)
                .max_encoding_message_size(network::MAX_RAFT_MESSAGE),
        )
        .add_service(
            AgentServiceServer::new(agent_service::AgentApi::new(
                node.clone(),
                control,
                driver.clone(),
                mesh,
            ))
            .max_decoding_message_size(MAX_AGENT_MESSAGE),
        )
        .add_service(
            ClusterServiceServer::new(cluster_service::ClusterApi::new(node.clone(), driver))
                .max_decoding_message_size(MAX_API_REQUEST)
                .max_encoding_message_size(MAX_API_MESSAGE),
        );
    let serve = async move {
        match node.tls.as_ref() {
            Some(tls) => {
                let incoming = flotilla_security::tls::incoming(listener, tls.server.clone());
                router.serve_with_incoming_shutdown(incoming, shutdown).await
            }
            None => {
                router
                    .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                    .await
            }
        }
    };
    // A graceful stop waits for every open connection (other nodes keep theirs); a fenced
    // node has nothing to finish, so it waits a bounded time.
    tokio::select! {
        r = serve => r.map_err(NodeError::from),
        _ = async {
            fence.fenced().await;
            tokio::time::sleep(FENCED_EXIT).await;
        } => Ok(()),
    }
}
