//! `flotilla agent`: runs a node until SIGINT or SIGTERM.

use std::io::IsTerminal;

use flotilla_node::{machine_capacity, parse_labels, parse_peers, ControlConfig, NodeConfig, RaftTuning};

use std::sync::Arc;

use flotilla_executor::{Driver, ProcessDriver};

use flotilla_node::config::DnsConfig;

use crate::args::{AgentArgs, DnsListen, DnsUpstreams, DriverKind, LogFormat};
use crate::error::CliError;

/// The agent's log filter: RUST_LOG when set, else `--log-level`. A bare level more verbose
/// than `warn` keeps openraft at `warn` (it logs every heartbeat at `debug`); directives are
/// taken as written.
fn log_filter(rust_log: Option<&str>, log_level: &str) -> String {
    if let Some(env) = rust_log.map(str::trim).filter(|e| !e.is_empty()) {
        return env.to_string();
    }
    let level = log_level.trim();
    match level.to_ascii_lowercase().as_str() {
        "info" | "debug" | "trace" => format!("{level},openraft=warn"),
        _ => level.to_string(),
    }
}

pub async fn run(args: AgentArgs) -> Result<(), CliError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter =
        tracing_subscriber::EnvFilter::try_new(log_filter(rust_log.as_deref(), &args.log_level)).map_err(|e| {
            match rust_log.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
                Some(env) => CliError::Usage(format!("RUST_LOG={env:?}: {e}")),
                None => CliError::Usage(format!("--log-level {:?}: {e}", args.log_level)),
            }
        })?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // One object per line, with the spans it happened in (rpc: node and method;
        // task_step: node, service and task), for a log shipper.
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(true).init(),
    }
    if args.id == 0 {
        return Err(CliError::Usage("--id must be a positive integer".into()));
    }
    let peers = match &args.peers {
        Some(p) => parse_peers(p).map_err(|e| CliError::Usage(format!("--peers: {e}")))?,
        None => Default::default(),
    };
    if args.join.iter().any(|a| a.trim().is_empty()) {
        return Err(CliError::Usage("--join: empty address".into()));
    }
    let labels = parse_labels(&args.labels).map_err(|e| CliError::Usage(format!("--label: {e}")))?;
    let mut capacity = machine_capacity();
    if let Some(cores) = args.cpu {
        if !(cores > 0.0 && cores.is_finite()) {
            return Err(CliError::Usage(format!(
                "--cpu must be a positive number of cores, got {cores}"
            )));
        }
        capacity.cpu_millis = (cores * 1000.0).round() as u64;
    }
    if let Some(mb) = args.memory {
        if mb == 0 {
            return Err(CliError::Usage("--memory must be a positive number of MiB".into()));
        }
        capacity.memory_mb = mb;
    }
    if args.node_timeout.is_zero() {
        return Err(CliError::Usage("--node-timeout must be positive".into()));
    }
    let placement_grace = match args.placement_grace {
        Some(grace) if grace >= args.node_timeout => {
            return Err(CliError::Usage(format!(
                "--placement-grace ({grace:?}) must be less than --node-timeout ({:?})",
                args.node_timeout
            )));
        }
        Some(grace) => grace,
        None => ControlConfig::default().placement_grace.min(args.node_timeout / 2),
    };
    if args.request_timeout < std::time::Duration::from_secs(1) {
        return Err(CliError::Usage("--request-timeout must be at least 1s".into()));
    }
    if args.cert_lifetime < std::time::Duration::from_secs(1) {
        return Err(CliError::Usage("--cert-lifetime must be at least 1s".into()));
    }
    let token = match (&args.token_file, &args.token) {
        (Some(path), _) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| CliError::Usage(format!("--token-file {}: {e}", path.display())))?
                .trim()
                .to_string(),
        ),
        (None, Some(t)) => Some(t.trim().to_string()),
        (None, None) => None,
    };
    let dns_flags = DnsFlags {
        listen: args.dns_listen,
        upstream: args.dns_upstream.clone(),
        cluster: args.cluster_name.clone(),
    };
    let config = NodeConfig {
        id: args.id,
        listen: args.listen,
        advertise: args.advertise_addr,
        data_dir: args.data_dir,
        peers,
        raft: RaftTuning {
            heartbeat: args.heartbeat_interval,
            election_min: args.election_timeout_min,
            election_max: args.election_timeout_max,
            snapshot_interval: args.snapshot_interval,
            snapshot_keep: args.snapshot_keep,
        },
        labels,
        capacity,
        control: ControlConfig {
            node_timeout: args.node_timeout,
            placement_grace,
            ..ControlConfig::default()
        },
        heartbeat: flotilla_node::config::NODE_HEARTBEAT,
        cluster: args.cluster_name.clone(),
        join: args.join.iter().map(|a| a.trim().to_string()).collect(),
        voters: args.voters,
        dead_voter_timeout: args.dead_voter_timeout.filter(|d| !d.is_zero()),
        force_new_cluster: args.force_new_cluster,
        keep_completed: args.keep_completed,
        metrics_listen: args.metrics_listen,
        insecure: args.insecure,
        token,
        cert_lifetime: args.cert_lifetime,
        request_timeout: args.request_timeout,
        publish_addr: Some(args.publish_addr),
        dns: None,
    };
    let logs = flotilla_executor::LogRotation {
        max_size: args.task_log_max_size,
        max_files: args.task_log_max_files,
    };
    let (driver, dns) = driver(
        args.driver,
        &config.data_dir,
        args.pull_deadline,
        logs,
        args.publish_addr,
        &dns_flags,
    )
    .await?;
    let config = NodeConfig { dns, ..config };
    flotilla_node::run(config, driver, shutdown_signal())
        .await
        .map_err(|e| CliError::Failed(e.to_string()))
}

type Chosen = (Arc<dyn Driver>, Option<DnsConfig>);

/// The task driver, and the DNS server's settings (which depend on the engine's bridge):
/// with `docker` and no engine the agent stops here, at once.
async fn driver(
    kind: DriverKind,
    data_dir: &std::path::Path,
    pull_deadline: std::time::Duration,
    logs: flotilla_executor::LogRotation,
    publish: std::net::IpAddr,
    args: &DnsFlags,
) -> Result<Chosen, CliError> {
    let process = || -> Result<Chosen, CliError> {
        let driver = Arc::new(ProcessDriver::new(data_dir.join("process")).with_log_rotation(logs));
        Ok((driver, dns_config(args, None)?))
    };
    let docker = |d: flotilla_docker::DockerDriver| async move {
        let bridge = match d.bridge().await {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::warn!(error = %e, "no bridge network: containers cannot reach services by name");
                None
            }
        };
        let dns = dns_config(args, bridge)?;
        let mut d = d
            .with_pull_deadline(pull_deadline)
            .with_log_rotation(logs)
            .with_publish_addr(publish);
        if let Some(server) = dns.as_ref().and_then(container_resolver) {
            d = d.with_dns(server, dns.as_ref().map(|c| c.zone.clone()).unwrap_or_default());
        }
        let driver: Arc<dyn Driver> = Arc::new(d);
        Ok::<Chosen, CliError>((driver, dns))
    };
    match kind {
        DriverKind::Process => process(),
        DriverKind::Docker => match flotilla_docker::DockerDriver::connect().await {
            Ok(d) => docker(d).await,
            Err(e) => Err(CliError::Failed(format!("--driver docker: {e}"))),
        },
        DriverKind::Auto => match flotilla_docker::DockerDriver::connect().await {
            Ok(d) => {
                tracing::info!("driver auto: the Docker engine answers; using docker");
                docker(d).await
            }
            Err(e) => {
                tracing::info!(reason = %e, "driver auto: no Docker engine; using plain processes");
                process()
            }
        },
    }
}

/// The agent's flags the DNS server's settings come from.
struct DnsFlags {
    listen: Option<DnsListen>,
    upstream: Option<DnsUpstreams>,
    cluster: String,
}

/// The DNS server's settings from `--dns-listen` and `--dns-upstream`; `None` when off, or
/// by default without a bridge (plain processes) to serve.
fn dns_config(args: &DnsFlags, bridge: Option<flotilla_executor::Bridge>) -> Result<Option<DnsConfig>, CliError> {
    let listen = match (args.listen, bridge) {
        (Some(DnsListen::Off), _) => return Ok(None),
        (Some(DnsListen::At(addr)), _) => addr,
        (None, Some(b)) => std::net::SocketAddr::new(b.gateway, 53),
        (None, None) => {
            tracing::info!("dns: no engine bridge to serve; give --dns-listen to serve names elsewhere");
            return Ok(None);
        }
    };
    // The zone is lowercase: a cluster name differing only in case is the same label.
    if let Err(e) = flotilla_types::validate_dns_label("--cluster-name", &args.cluster.to_ascii_lowercase()) {
        return Err(CliError::Usage(format!(
            "{e}; the names <service>.<cluster>.flotilla need it: give another, or --dns-listen off"
        )));
    }
    let upstreams = match &args.upstream {
        Some(DnsUpstreams(list)) => list.clone(),
        None => resolv_conf_nameservers(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()),
    };
    // Never forward to itself.
    let upstreams = upstreams.into_iter().filter(|u| *u != listen).collect();
    Ok(Some(DnsConfig {
        listen,
        zone: flotilla_node::config::dns_zone(&args.cluster),
        bridge,
        upstreams,
    }))
}

/// The address containers are given as their resolver: the server's, when containers can
/// reach it there on port 53 (the engine takes an address only).
fn container_resolver(dns: &DnsConfig) -> Option<std::net::IpAddr> {
    let ip = dns.listen.ip();
    if dns.listen.port() != 53 {
        tracing::warn!(listen = %dns.listen, "dns: not on port 53, so containers keep the engine's resolver");
        return None;
    }
    if ip.is_unspecified() {
        return dns.bridge.map(|b| b.gateway);
    }
    if ip.is_loopback() {
        tracing::warn!(listen = %dns.listen, "dns: on loopback, which containers cannot reach; they keep the engine's resolver");
        return None;
    }
    Some(ip)
}

/// The `nameserver` lines of a resolv.conf.
fn resolv_conf_nameservers(text: &str) -> Vec<std::net::SocketAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(listen: Option<DnsListen>, upstream: Option<Vec<&str>>, cluster: &str) -> DnsFlags {
        DnsFlags {
            listen,
            upstream: upstream.map(|u| DnsUpstreams(u.iter().map(|a| a.parse().unwrap()).collect())),
            cluster: cluster.into(),
        }
    }

    const BRIDGE: flotilla_executor::Bridge = flotilla_executor::Bridge {
        gateway: std::net::IpAddr::V4(std::net::Ipv4Addr::new(172, 17, 0, 1)),
        network: std::net::IpAddr::V4(std::net::Ipv4Addr::new(172, 17, 0, 0)),
        prefix: 16,
    };

    #[test]
    fn dns_serves_on_the_bridge_gateway_by_default_and_where_told_or_not_at_all() {
        let on = dns_config(&flags(None, Some(vec![]), "prod"), Some(BRIDGE))
            .unwrap()
            .unwrap();
        assert_eq!(on.listen.to_string(), "172.17.0.1:53");
        assert_eq!(on.zone, "prod.flotilla");
        assert_eq!(container_resolver(&on), Some(BRIDGE.gateway));
        // No bridge (plain processes) and nothing asked: off.
        assert!(dns_config(&flags(None, None, "prod"), None).unwrap().is_none());
        assert!(dns_config(&flags(Some(DnsListen::Off), None, "prod"), Some(BRIDGE))
            .unwrap()
            .is_none());
        // Elsewhere: served there; containers keep the engine's resolver unless they can
        // reach it on port 53.
        let at = |s: &str| Some(DnsListen::At(s.parse().unwrap()));
        let local = dns_config(&flags(at("127.0.0.1:5353"), Some(vec![]), "prod"), Some(BRIDGE))
            .unwrap()
            .unwrap();
        assert_eq!(container_resolver(&local), None);
        let loopback = dns_config(&flags(at("127.0.0.1:53"), Some(vec![]), "prod"), None)
            .unwrap()
            .unwrap();
        assert_eq!(container_resolver(&loopback), None);
        let every = dns_config(&flags(at("0.0.0.0:53"), Some(vec![]), "prod"), Some(BRIDGE))
            .unwrap()
            .unwrap();
        assert_eq!(container_resolver(&every), Some(BRIDGE.gateway));
        // Never its own upstream.
        let own = dns_config(
            &flags(None, Some(vec!["172.17.0.1:53", "10.0.0.53:53"]), "prod"),
            Some(BRIDGE),
        )
        .unwrap()
        .unwrap();
        assert_eq!(own.upstreams, vec!["10.0.0.53:53".parse().unwrap()]);
        // A cluster name that cannot be a DNS label is refused, naming the flags.
        let refused = dns_config(&flags(None, None, "my_cluster"), Some(BRIDGE)).unwrap_err();
        assert!(refused.to_string().contains("--cluster-name"), "{refused}");
        assert!(dns_config(&flags(Some(DnsListen::Off), None, "my_cluster"), Some(BRIDGE)).is_ok());
    }

    #[test]
    fn resolv_conf_gives_the_upstreams() {
        let text = "# generated\nsearch example.org\nnameserver 10.0.0.2\nnameserver  fd00::1 \nnameserver bogus\noptions ndots:2\n";
        let got: Vec<String> = resolv_conf_nameservers(text).iter().map(|a| a.to_string()).collect();
        assert_eq!(got, ["10.0.0.2:53", "[fd00::1]:53"]);
    }

    #[test]
    fn log_level_sets_the_filter_unless_rust_log_is_set() {
        assert_eq!(log_filter(None, "info"), "info,openraft=warn");
        assert_eq!(log_filter(None, "debug"), "debug,openraft=warn");
        assert_eq!(log_filter(None, "warn"), "warn");
        assert_eq!(log_filter(None, "info,flotilla_node=trace"), "info,flotilla_node=trace");
        assert_eq!(log_filter(Some("trace"), "warn"), "trace");
        assert_eq!(log_filter(Some(" "), "error"), "error");
    }
}
