//! The command line, as clap sees it. Flag names here are the public interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "flotilla",
    version,
    about = "A container orchestrator: Raft-replicated desired state, leader scheduling, an executor on every node"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Nodes to talk to, comma-separated, tried in turn (default: the config's addresses,
    /// else 127.0.0.1:7001).
    #[arg(long, global = true, env = "FLOTILLA_ADDR", value_delimiter = ',')]
    pub addr: Vec<String>,
    /// The client config: the cluster's addresses, its CA and a token (default
    /// ~/.config/flotilla/config.yaml; a new cluster's first node writes admin.yaml into its
    /// data dir).
    #[arg(long, global = true, env = "FLOTILLA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Talk plain TCP with no credential, to an `--insecure` cluster.
    #[arg(long, global = true)]
    pub insecure: bool,
    /// Output format: a table for people, `wide` with more columns, JSON or YAML for scripts.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Print only ids (names of services, ids of tasks and nodes).
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,
    /// Deadline for each call to the cluster (default 10s); with `--wait`, for the whole
    /// wait (default 5m).
    #[arg(long, global = true, value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
}

impl Global {
    pub fn call_timeout(&self) -> std::time::Duration {
        self.timeout.unwrap_or(std::time::Duration::from_secs(10))
    }

    pub fn wait_timeout(&self) -> std::time::Duration {
        self.timeout.unwrap_or(std::time::Duration::from_secs(300))
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Wide,
    Json,
    Yaml,
}

fn parse_voters(s: &str) -> Result<usize, String> {
    match s {
        "3" => Ok(3),
        "5" => Ok(5),
        _ => Err(format!("{s:?}: the voter target is 3 or 5")),
    }
}

/// A size in bytes: a whole number with an optional unit (B, KiB, MiB, GiB; KB, MB, GB
/// are taken as the binary units too).
/// `HOST:PORT` (a name, an IPv4 address or a bracketed IPv6 address, and a port 1-65535).
pub fn parse_host_port(s: &str) -> Result<String, String> {
    let t = s.trim();
    let (host, port) = t
        .rsplit_once(':')
        .ok_or_else(|| format!("{t:?} is not HOST:PORT (no port)"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{t:?}: the port {port:?} is not a number from 1 to 65535"))?;
    if port == 0 {
        return Err(format!("{t:?}: port 0 cannot be reached"));
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.is_empty() {
        return Err(format!("{t:?} has no host"));
    }
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        if ip.is_unspecified() {
            return Err(format!("{t:?}: {ip} is not an address others can reach"));
        }
    }
    Ok(t.to_string())
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{s:?}: write a size like 10MiB, 512KiB or 1048576"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("{s:?}: unknown unit {other:?}; use B, KiB, MiB or GiB")),
    };
    let bytes = number.checked_mul(scale).ok_or_else(|| format!("{s:?}: too large"))?;
    if bytes == 0 {
        return Err(format!("{s:?}: must be more than zero"));
    }
    Ok(bytes)
}

pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e}; write it like 5s or 250ms"))
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Run a node of the cluster.
    Agent(Box<AgentArgs>),
    /// Create or update services from spec files: a FILE (several documents allowed), a
    /// DIR (its *.yaml, *.yml and *.json files), or `-` for stdin.
    Apply {
        #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-")]
        file: PathBuf,
        /// Print what would change and where new tasks would go; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Wait, with a progress bar, until every applied service runs (and is healthy)
        /// at its new version, following a rollout to its end; fail with the reason when it
        /// cannot converge. A task without a health check counts once seen running for 1s.
        #[arg(long)]
        wait: bool,
    },
    /// Show what changed: services, tasks, nodes, leaders (from the node asked).
    Events {
        /// Keep streaming new events.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only events after this log index (the first column), to resume.
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
    /// Print the client's version and that of every cluster member.
    Version,
    /// Print a shell completion script: `source <(flotilla completion bash)`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print this CLI's reference in Markdown (docs/CLI.md is generated from it).
    #[command(hide = true)]
    Docs,
    /// Show objects.
    Get {
        #[command(subcommand)]
        what: GetWhat,
    },
    /// Delete objects: `delete service A B`, or the services spec files define
    /// (`delete -f FILE|DIR|-`).
    #[command(args_conflicts_with_subcommands = true)]
    Delete {
        /// Delete the services this spec file (a DIR of them, or `-` for stdin) defines.
        #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-")]
        file: Option<PathBuf>,
        #[command(subcommand)]
        what: Option<DeleteWhat>,
    },
    /// Cluster-wide operations.
    Cluster {
        #[command(subcommand)]
        what: ClusterWhat,
    },
    /// Show one object in detail, with its tasks.
    Describe {
        #[command(subcommand)]
        what: DescribeWhat,
    },
    /// Set a service's replica count.
    Scale {
        name: String,
        replicas: u32,
        /// Wait, with a progress bar, until the service runs that many tasks.
        #[arg(long)]
        wait: bool,
    },
    /// Print a task's logs, or those of every current task of a service. `-o json` prints
    /// one JSON object per line.
    Logs {
        /// A task id (see `get tasks`), SERVICE.SLOT for the slot's current task, or a
        /// service name.
        target: String,
        /// Keep streaming new lines.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N lines of each task.
        #[arg(long)]
        tail: Option<u32>,
        /// Prefix each line with the time it was written (RFC 3339; `-` where the driver
        /// does not know it).
        #[arg(short = 't', long)]
        timestamps: bool,
        /// Only lines written in the last DURATION, e.g. `10m`.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        since: Option<std::time::Duration>,
    },
    /// Run a command inside a running task, through any node (operator): its output comes
    /// back and the CLI exits with its exit code. Every exec is recorded as a `task.exec`
    /// event naming the token. The process driver runs it on the task's host, in its
    /// working directory and environment.
    Exec {
        /// Send stdin to the command.
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Run it under a pseudo-terminal (the local terminal goes raw meanwhile and its
        /// size follows the window); stdout and stderr then arrive as one stream.
        #[arg(short = 't', long)]
        tty: bool,
        /// A task id (see `get tasks`), or SERVICE.SLOT for the slot's current task.
        task: String,
        /// The command and its arguments, after `--`.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        cmd: Vec<String>,
    },
    /// CPU, memory and network of every running task, from the drivers of the nodes that
    /// run them, gathered through any node (viewer). A process-driver task shares its
    /// host's network: `-` there.
    Top {
        /// Refresh every 2s.
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// Node availability: drain moves its tasks away, pause stops new placements.
    Node {
        #[command(subcommand)]
        what: NodeWhat,
    },
    /// Rolling updates: progress, history, undo, pause and resume.
    Rollout {
        #[command(subcommand)]
        what: RolloutWhat,
    },
    /// Backups: save the cluster's state to a file, inspect one, restore a data dir from one.
    Snapshot {
        #[command(subcommand)]
        what: SnapshotWhat,
    },
    /// Credentials: node tokens (bootstrap, join) and client tokens with roles.
    Token {
        #[command(subcommand)]
        what: TokenWhat,
    },
    /// The cluster CA: the certificates to trust, each member's certificate, rotation.
    Ca {
        #[command(subcommand)]
        what: CaWhat,
    },
}

#[derive(Subcommand, Debug)]
pub enum CaWhat {
    /// The CA's digest, a rotation in progress, and which CA each member's certificate is
    /// of (viewer).
    Status,
    /// The CA certificates to trust (PEM), for the `ca:` of a client config (viewer).
    Cert,
    /// Replace the cluster CA with a new one, cross-signed by the current one so nodes and
    /// clients keep talking during the change. Every node moves to a certificate of the
    /// new CA; once all members have, the previous CA is trusted no more. Waits for that,
    /// then writes the new CA into the client config in use (admin).
    Rotate {
        /// Start the rotation and return; `ca status` shows its progress.
        #[arg(long)]
        detach: bool,
        /// How long to wait for every member to move.
        #[arg(long, value_parser = parse_duration, default_value = "5m")]
        wait_timeout: std::time::Duration,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenWhat {
    /// A new bootstrap token for the `--peers` nodes of a new cluster (printed, not sent
    /// anywhere): give the same one to every initial node with --token-file.
    Generate,
    /// A client token with a role, shown once (admin).
    Create {
        /// viewer (reads, `top`; env values redacted), operator (also changes services
        /// and nodes' availability, reads logs, `exec`) or admin (also membership,
        /// snapshots, tokens).
        #[arg(long, value_parser = ["admin", "operator", "viewer"])]
        role: String,
        /// How long it is valid, e.g. 24h (default: until revoked).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<std::time::Duration>,
        /// Its name, for `token list`, `token revoke` and events (default <role>-<id>).
        #[arg(long)]
        name: Option<String>,
        /// Also write a client config with it (this cluster's CA and addresses) to FILE.
        #[arg(long, value_name = "FILE")]
        write_config: Option<PathBuf>,
    },
    /// The client tokens: name, role, created, expires, state (admin).
    List,
    /// Revoke a client token by name; every node refuses it once it applies this (admin).
    Revoke { name: String },
    /// The cluster's join token, for `flotilla agent --join ADDR --token-file FILE` (admin).
    Join,
    /// Replace the join token; the old one stops working (admin).
    RotateJoin,
}

#[derive(Subcommand, Debug)]
pub enum RolloutWhat {
    /// Progress of a service's rollout, its batches, what it waits for, why it paused.
    Status {
        name: String,
        #[arg(long)]
        stale: bool,
    },
    /// The kept versions of a service's spec (`update.history`, default 10).
    History {
        name: String,
        #[arg(long)]
        stale: bool,
    },
    /// Roll back to the previous template, or to that of `--to-version`.
    Undo {
        name: String,
        /// A version from `rollout history`.
        #[arg(long)]
        to_version: Option<u64>,
    },
    /// Start no new batch; tasks already replaced keep running.
    Pause { name: String },
    /// Go on with a paused rollout (its failures so far are forgiven).
    Resume { name: String },
}

#[derive(Subcommand, Debug)]
pub enum SnapshotWhat {
    /// Save a consistent point-in-time copy of the cluster's state (taken on the leader,
    /// while it serves traffic) to FILE, with its log index and a checksum.
    Save { file: PathBuf },
    /// Verify a snapshot file and print its index, term, epoch, contents and checksum.
    Inspect { file: PathBuf },
    /// Verify FILE, then prepare the empty DIR from it; `flotilla agent --data-dir DIR
    /// --force-new-cluster` then starts a one-node cluster with that state, which other
    /// nodes join with `--join`. A corrupt file or a non-empty DIR changes nothing.
    Restore {
        file: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum DescribeWhat {
    /// A service: its ports, health check, tasks (their nodes and states, why pending
    /// tasks wait) and recent events.
    Service {
        name: String,
        #[arg(long)]
        stale: bool,
    },
    /// One task (an id, or SERVICE.SLOT for the slot's current task): its service, slot,
    /// node, states, container and its address, exit code, and last start error.
    Task {
        id: String,
        #[arg(long)]
        stale: bool,
    },
    /// One node: address, status, availability, capacity, labels and its tasks.
    Node {
        id: u64,
        #[arg(long)]
        stale: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum NodeWhat {
    /// Move every task off the node and place nothing new on it.
    Drain { id: u64 },
    /// Place nothing new on the node; its tasks keep running.
    Pause { id: u64 },
    /// Make the node eligible for placement again.
    Activate { id: u64 },
    /// Remove the node from the cluster for good: its tasks move first when it is alive,
    /// then it leaves the Raft membership (a learner is promoted if voters fall short).
    /// Its id is never reused.
    Remove { id: u64 },
    /// Mark the node down now, without waiting for --node-timeout: its tasks are
    /// replaced on the others at once. For a machine known to be gone (admin); a node
    /// that was alive after all comes back empty at its next heartbeat.
    DeclareDead { id: u64 },
}

#[derive(Subcommand, Debug)]
pub enum GetWhat {
    /// List services (all, or those named) with their replicas as running/desired, and
    /// how many are healthy when the service has a health check. Alias: `get svc`.
    #[command(visible_alias = "svc")]
    Services {
        /// Only these services (exit code 4 when one does not exist).
        names: Vec<String>,
        /// Read the replica of the node asked instead of going through the leader.
        #[arg(long)]
        stale: bool,
        /// Print again whenever the list changes (not when only an age does); with
        /// `-o json`, one object per line for each new or changed one.
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// Show one service.
    Service {
        name: String,
        #[arg(long)]
        stale: bool,
    },
    /// List current tasks (those meant to run); `--all` adds their history.
    Tasks {
        /// Only this service's tasks.
        #[arg(long)]
        service: Option<String>,
        /// Also the tasks meant to stop or stopped (DESIRED `shutdown`): the newest earlier
        /// attempts and replaced versions of each slot, and tasks still stopping.
        #[arg(short = 'a', long)]
        all: bool,
        #[arg(long)]
        stale: bool,
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// List nodes with their capacity, allocation, availability and status.
    Nodes {
        #[arg(long)]
        stale: bool,
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// List recent events (`flotilla events -f` follows them).
    Events {
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum DeleteWhat {
    /// Delete services. Aliases: `delete services`, `delete svc`.
    #[command(visible_aliases = ["services", "svc"])]
    Service {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterWhat {
    /// Members, roles, leader, term, log and applied index per node.
    Status,
    /// Whether every member's state machine is identical at one applied index
    /// (exit code 1 when they differ or a member does not answer).
    Verify,
}

/// `flotilla agent …` parsed on its own, so that its help and its parser know only agent
/// flags: clap copies `global = true` arguments into every subcommand, and the client's
/// `--addr`, `-o`, `-q` and `--timeout` mean nothing to a node. [`Cli`] keeps an `agent`
/// verb for the top-level help, the completions and docs/CLI.md.
#[derive(Parser, Debug)]
#[command(
    name = "agent",
    bin_name = "flotilla agent",
    version,
    about = "Run a node of the cluster."
)]
pub struct AgentCli {
    #[command(flatten)]
    pub args: AgentArgs,
}

/// `--dns-listen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsListen {
    Off,
    At(SocketAddr),
}

fn parse_dns_listen(s: &str) -> Result<DnsListen, String> {
    let s = s.trim();
    if s == "off" {
        return Ok(DnsListen::Off);
    }
    parse_ip_port(s, 53)
        .map(DnsListen::At)
        .map_err(|e| format!("{e}, or `off`"))
}

/// `--dns-upstream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsUpstreams(pub Vec<SocketAddr>);

fn parse_dns_upstreams(s: &str) -> Result<DnsUpstreams, String> {
    if s.trim() == "none" {
        return Ok(DnsUpstreams(Vec::new()));
    }
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| parse_ip_port(p, 53))
        .collect::<Result<Vec<_>, _>>()
        .map(DnsUpstreams)
}

/// `IP`, `IP:PORT`, `[IPv6]:PORT`: the port is `default` when not given.
pub fn parse_ip_port(s: &str, default: u16) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    s.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, default))
        .map_err(|_| format!("{s:?} is not IP or IP:PORT"))
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// This node's id (a positive integer, never reused).
    #[arg(long)]
    pub id: u64,
    /// Address the gRPC server binds.
    #[arg(long)]
    pub listen: SocketAddr,
    /// The address other nodes and clients use for this node, HOST:PORT (default: its
    /// entry in --peers, else --listen; give it when --listen is 0.0.0.0 or behind NAT).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub advertise_addr: Option<String>,
    /// Where published ports bind on this node: the routing mesh's listeners for ingress
    /// ports, and the `mode: host` ports of its containers. 0.0.0.0: every interface.
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    pub publish_addr: std::net::IpAddr,
    /// Where this node serves DNS for the cluster's names (`<service>.<cluster>.flotilla`),
    /// over UDP and TCP: IP or IP:PORT (port 53 by default), or `off`. Default: the Docker
    /// engine's bridge gateway, port 53, which the containers use as their resolver; where
    /// agents share an engine, one of them answers for the cluster.
    #[arg(long, value_name = "IP[:PORT]|off", value_parser = parse_dns_listen)]
    pub dns_listen: Option<DnsListen>,
    /// Where the DNS server asks for names outside the cluster: IP[:PORT],… or `none`
    /// (refused). Default: the nameservers in /etc/resolv.conf.
    #[arg(long, value_name = "IP[:PORT],…|none", value_parser = parse_dns_upstreams)]
    pub dns_upstream: Option<DnsUpstreams>,
    /// Where the Raft log, snapshots and node state live.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Initial members: `1=HOST:PORT,2=HOST:PORT,3=HOST:PORT` (this node included).
    #[arg(long, required_unless_present_any = ["join", "force_new_cluster"], conflicts_with = "join")]
    pub peers: Option<String>,
    /// Join a running cluster through any of its members: the leader adds this node as a
    /// learner, waits until it caught up, and promotes it while voters are below target.
    #[arg(long, value_name = "ADDR[,ADDR…]", value_delimiter = ',')]
    pub join: Vec<String>,
    /// Voters the cluster aims for (leader setting): 3 or 5. Default: 3 for clusters of up
    /// to 4 nodes, 5 above; further nodes stay learners.
    #[arg(long, value_parser = parse_voters)]
    pub voters: Option<usize>,
    /// Replace a voter down this long by promoting a healthy learner (leader setting;
    /// default off), e.g. `10m`.
    #[arg(long, value_parser = parse_duration)]
    pub dead_voter_timeout: Option<std::time::Duration>,
    /// Start a one-node cluster from this node's data dir (a surviving node of a cluster
    /// that lost its quorum, or a dir prepared by `snapshot restore`), keeping its state
    /// under a new cluster epoch; old members that come back are refused. Once: a restart
    /// with the flag still set is refused until the node has started without it.
    #[arg(long, conflicts_with_all = ["peers", "join"])]
    pub force_new_cluster: bool,
    /// Raft heartbeat interval.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub heartbeat_interval: std::time::Duration,
    /// Lower bound of the randomized election timeout. openraft 0.9 also holds a leader
    /// lease of the upper bound, so failover takes about max + a random timeout.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub election_timeout_min: std::time::Duration,
    /// Upper bound of the randomized election timeout.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub election_timeout_max: std::time::Duration,
    /// Build a snapshot every this many log entries.
    #[arg(long, default_value_t = 5000)]
    pub snapshot_interval: u64,
    /// Log entries kept behind a snapshot for slightly lagging followers.
    #[arg(long, default_value_t = 1000)]
    pub snapshot_keep: u64,
    /// A node label for placement constraints (repeatable): `--label zone=a`.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// CPU offered to tasks, in cores (default: the machine's).
    #[arg(long)]
    pub cpu: Option<f64>,
    /// Memory offered to tasks, in MiB (default: the machine's).
    #[arg(long)]
    pub memory: Option<u64>,
    /// A node silent this long is marked down and its tasks replaced (leader setting).
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    pub node_timeout: std::time::Duration,
    /// A new leader places new work once every Raft member has registered, or after
    /// this long (leader setting; less than --node-timeout; default 2s, or half of
    /// --node-timeout when that is shorter): work applied the moment a cluster starts is
    /// spread over all its nodes, not piled on the first to report.
    #[arg(long, value_parser = parse_duration)]
    pub placement_grace: Option<std::time::Duration>,
    /// How tasks run: `docker` (the Docker Engine; DOCKER_HOST or the default socket),
    /// `process` (plain child processes), `auto` (docker when the engine answers).
    #[arg(long, value_enum, default_value_t = DriverKind::Auto)]
    pub driver: DriverKind,
    /// How long a pull of an image missing on this node may run (docker driver). A pull
    /// the engine gives up on ends at once: no such image or no registry fails the task,
    /// anything else is retried.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub pull_deadline: std::time::Duration,
    /// A task's log is rotated at this size (per stream; e.g. 10MiB, 512KiB, 1048576).
    #[arg(long, default_value = "10MiB", value_parser = parse_size)]
    pub task_log_max_size: u64,
    /// Log files kept per task and stream, the one being written included.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub task_log_max_files: u32,
    /// The `flotilla.cluster` label on this cluster's containers (same on every node).
    #[arg(long, default_value = "flotilla")]
    pub cluster_name: String,
    /// How long the container of a completed task (exit 0, not restarted) is kept, for
    /// `flotilla logs`, before it is removed.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub keep_completed: std::time::Duration,
    /// Serve `/metrics` (Prometheus), `/healthz` and `/readyz` over plain HTTP on this
    /// address (default off). They carry no credentials: bind a loopback or private address.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// What the agent logs: a level (`error`, `warn`, `info`, `debug`, `trace`) or
    /// tracing directives (`info,flotilla_node=debug`). RUST_LOG, when set, wins.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,
    /// `text` for people, `json` (one object per line, with its spans' node, service and
    /// task ids) for a log shipper.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// A file holding this node's token: the bootstrap token every `--peers` node of a new
    /// cluster shares (`flotilla token generate`), or the cluster's join token (`flotilla
    /// token join`). Needed until the node holds a certificate (kept in its data dir).
    #[arg(long, value_name = "FILE", env = "FLOTILLA_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The token itself. It shows in `ps`: for experiments; prefer --token-file.
    #[arg(long, env = "FLOTILLA_TOKEN", hide_env_values = true, conflicts_with = "token_file")]
    pub token: Option<String>,
    /// No TLS and no authentication: anyone who reaches the port controls the cluster.
    /// Refused unless --listen is a loopback address; logs a warning at every start.
    #[arg(long)]
    pub insecure: bool,
    /// How long the node certificates this node signs (its own renewals included) are
    /// valid; renewed when a third is left.
    #[arg(long, default_value = "90d", value_parser = parse_duration)]
    pub cert_lifetime: std::time::Duration,
    /// How long the server lets one request run before answering DEADLINE_EXCEEDED
    /// (snapshot installs get at least 10m; streamed answers such as `logs -f` are not
    /// cut once they start).
    #[arg(long, default_value = "3m", value_parser = parse_duration)]
    pub request_timeout: std::time::Duration,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    Docker,
    Process,
    Auto,
}

#[cfg(test)]
mod tests {
    use super::{parse_dns_listen, parse_dns_upstreams, parse_host_port, parse_size, DnsListen, DnsUpstreams};

    #[test]
    fn dns_flags_parse() {
        assert_eq!(parse_dns_listen("off"), Ok(DnsListen::Off));
        assert_eq!(
            parse_dns_listen("172.17.0.1"),
            Ok(DnsListen::At("172.17.0.1:53".parse().unwrap()))
        );
        assert_eq!(
            parse_dns_listen("127.0.0.1:5353"),
            Ok(DnsListen::At("127.0.0.1:5353".parse().unwrap()))
        );
        assert_eq!(
            parse_dns_listen("[::1]"),
            Ok(DnsListen::At("[::1]:53".parse().unwrap()))
        );
        assert!(parse_dns_listen("gateway").unwrap_err().contains("`off`"));
        assert_eq!(parse_dns_upstreams("none"), Ok(DnsUpstreams(vec![])));
        assert_eq!(
            parse_dns_upstreams("10.0.0.2, 10.0.0.3:5353"),
            Ok(DnsUpstreams(vec![
                "10.0.0.2:53".parse().unwrap(),
                "10.0.0.3:5353".parse().unwrap()
            ]))
        );
        assert!(parse_dns_upstreams("10.0.0.2,nope").is_err());
    }

    #[test]
    fn an_advertised_address_is_host_and_port_that_others_can_reach() {
        assert_eq!(parse_host_port("10.0.0.5:7000").as_deref(), Ok("10.0.0.5:7000"));
        assert_eq!(parse_host_port("node1.lan:7000").as_deref(), Ok("node1.lan:7000"));
        assert_eq!(parse_host_port("[fd00::5]:7000").as_deref(), Ok("[fd00::5]:7000"));
        assert!(parse_host_port("10.0.0.5").unwrap_err().contains("no port"));
        assert!(parse_host_port("10.0.0.5:http").unwrap_err().contains("not a number"));
        assert!(parse_host_port("10.0.0.5:0").unwrap_err().contains("port 0"));
        assert!(parse_host_port(":7000").unwrap_err().contains("no host"));
        assert!(parse_host_port("0.0.0.0:7000")
            .unwrap_err()
            .contains("others can reach"));
    }

    #[test]
    fn sizes_take_binary_units_and_refuse_nonsense() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("2 GB"), Ok(2 << 30));
        assert!(parse_size("0").unwrap_err().contains("more than zero"));
        assert!(parse_size("10XB").unwrap_err().contains("unknown unit"));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }
}
