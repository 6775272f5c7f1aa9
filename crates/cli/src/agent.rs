//! `flotilla agent`: runs a node until SIGINT or SIGTERM.

use std::io::IsTerminal;

use flotilla_node::{parse_peers, NodeConfig, RaftTuning};

use crate::args::AgentArgs;
use crate::error::CliError;

pub async fn run(args: AgentArgs) -> Result<(), CliError> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if args.id == 0 {
        return Err(CliError::Usage("--id must be a positive integer".into()));
    }
    let peers = parse_peers(&args.peers).map_err(|e| CliError::Usage(format!("--peers: {e}")))?;
    let config = NodeConfig {
        id: args.id,
        listen: args.listen,
        data_dir: args.data_dir,
        peers,
        raft: RaftTuning {
            heartbeat: args.heartbeat_interval,
            election_min: args.election_timeout_min,
            election_max: args.election_timeout_max,
            snapshot_interval: args.snapshot_interval,
            snapshot_keep: args.snapshot_keep,
        },
    };
    flotilla_node::run(config, shutdown_signal())
        .await
        .map_err(|e| CliError::Failed(e.to_string()))
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops the agent");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("signal received, stopping");
}
