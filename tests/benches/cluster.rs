//! `make bench`: the replicated store measured on a real 3-process cluster (real `flotilla
//! agent` processes on 127.0.0.1, synced RocksDB writes), driven over gRPC only.
//!
//! Not criterion: one sample is a whole cluster's behaviour (a write committed on a quorum,
//! a leader killed and replaced), so this binary runs fixed workloads and prints a table.
//! Results and how to read them: docs/BENCHMARKS.md.
//!
//! Environment (all optional):
//!   BENCH_ONLY=throughput|failover   run one half only
//!   BENCH_OPS=2000                   operations of the single-client runs
//!   BENCH_OPS_CONCURRENT=10000       operations of the concurrent runs
//!   BENCH_CLIENTS=32                 clients of the concurrent runs
//!   BENCH_KILLS=20                   leader kills in the failover run
//!   BENCH_AGENT_ARGS="..."           extra `flotilla agent` flags, e.g. to try other
//!                                    timeouts: "--election-timeout-min 500ms --election-timeout-max 1s"
//!   BENCH_INSECURE=1                 agents --insecure, clients plain TCP: what TLS costs
//!   BENCH_METRICS=0                  agents without --metrics-listen and no scraper (by
//!                                    default every agent serves /metrics and is scraped
//!                                    once a second during the runs): what metrics cost
//!   FLOTILLA_BIN                     the agent binary (see flotilla_testkit::flotilla_bin)

use flotilla_tests::bench::{env_usize, loadavg, ms, percentile};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_proto::v1::{ApplyOutcome, ApplyRequest, ApplyResponse};
use flotilla_testkit::{flotilla_bin, Cluster};
use flotilla_testkit::{Access, ApiClient};

/// Deadline for cluster-level waits (leader elected, node caught up).
const WAIT: Duration = Duration::from_secs(60);
/// Deadline of one apply in the throughput runs: generous, a slow call is a data point.
const LOAD_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A throughput run stops early (and says so) after this long.
const RUN_DEADLINE: Duration = Duration::from_secs(600);
/// Deadline of one apply attempt while a leader is being replaced.
const FAILOVER_CALL_TIMEOUT: Duration = Duration::from_millis(300);
/// A failover that has not committed a write after this long aborts the benchmark.
const FAILOVER_DEADLINE: Duration = Duration::from_secs(30);
/// A failed attempt that came back faster than this is retried after this pause, so a
/// fast-failing loop cannot steal one of the two cores from the agents it measures.
const FAST_FAILURE_PAUSE: Duration = Duration::from_millis(10);
/// Applies per client before a run's clock starts (connections, first write of a name).
const WARMUP_PER_CLIENT: usize = 3;

/// The agents' Raft settings: the defaults of `flotilla agent`, printed with the results.
fn agent_defaults() -> String {
    let t = flotilla_node::RaftTuning::default();
    format!(
        "heartbeat {} ms, election timeout {}-{} ms, snapshot every {} entries ({} kept), \
         max {} entries per append RPC",
        t.heartbeat.as_millis(),
        t.election_min.as_millis(),
        t.election_max.as_millis(),
        t.snapshot_interval,
        t.snapshot_keep,
        flotilla_node::config::MAX_PAYLOAD_ENTRIES
    )
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Only {
    Both,
    Throughput,
    Failover,
}

#[derive(Debug)]
struct Config {
    only: Only,
    ops_single: usize,
    ops_concurrent: usize,
    clients: usize,
    kills: usize,
    agent_args: Vec<String>,
    /// `BENCH_INSECURE=1`: plain TCP, no credentials (to measure what TLS costs).
    insecure: bool,
    /// `BENCH_METRICS=0`: no metrics listener, no scraper (to measure what metrics cost).
    metrics: bool,
}

impl Config {
    fn from_env() -> Config {
        let only = match std::env::var("BENCH_ONLY").as_deref() {
            Err(_) | Ok("") => Only::Both,
            Ok("throughput") => Only::Throughput,
            Ok("failover") => Only::Failover,
            Ok(other) => panic!("BENCH_ONLY={other:?}: expected `throughput` or `failover`"),
        };
        Config {
            only,
            ops_single: env_usize("BENCH_OPS", 2000),
            ops_concurrent: env_usize("BENCH_OPS_CONCURRENT", 10_000),
            clients: env_usize("BENCH_CLIENTS", 32).max(1),
            kills: env_usize("BENCH_KILLS", 20),
            insecure: std::env::var("BENCH_INSECURE").is_ok_and(|v| v == "1"),
            metrics: !std::env::var("BENCH_METRICS").is_ok_and(|v| v == "0"),
            agent_args: std::env::var("BENCH_AGENT_ARGS")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        }
    }
}

/// Every apply carries a value no earlier apply used, so each one is a real Raft write
/// (`updated`), never an `unchanged` answer served without writing.
static SEQ: AtomicU64 = AtomicU64::new(1);

fn spec_text(name: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("name: {name}\nimage: x\nreplicas: 1\nenv: {{N: \"{n}\"}}\n")
}

/// A client on its own HTTP/2 connection (TLS and the admin token, or plain TCP with
/// `BENCH_INSECURE=1`), connected now.
async fn connect(addr: &str, access: &Access) -> ApiClient {
    access
        .client_now(addr, |e| {
            e.connect_timeout(Duration::from_millis(500)).tcp_nodelay(true)
        })
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// One apply of `name` with a fresh value; an `unchanged` answer is an error here.
async fn apply(client: &mut ApiClient, name: &str, timeout: Duration) -> Result<ApplyResponse, String> {
    let req = ApplyRequest {
        spec_document: spec_text(name).into(),
    };
    let resp = match tokio::time::timeout(timeout, client.apply(req)).await {
        Err(_) => return Err(format!("no answer within {timeout:?}")),
        Ok(Err(status)) => return Err(format!("{:?}: {}", status.code(), status.message())),
        Ok(Ok(r)) => r.into_inner(),
    };
    match resp.outcome() {
        ApplyOutcome::Created | ApplyOutcome::Updated => Ok(resp),
        other => Err(format!("apply of {name} answered {other:?}, not a write")),
    }
}

// ---------------------------------------------------------------------------------------
// Statistics and printing.

/// CPU time (user + system) a process has used so far, from `/proc/PID/stat`.
fn cpu_time(pid: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the `(comm)` one, which may hold spaces: state is field 3, so field n
    // is at n - 3; utime and stime are fields 14 and 15, in USER_HZ ticks (100 on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Scrapes measured one after another on the leader for `scrape_cost`.
const SCRAPE_COST_SAMPLES: u32 = 1000;

/// What one `/metrics` scrape costs the leader, measured directly: its CPU time over
/// `SCRAPE_COST_SAMPLES` scrapes back to back, less its CPU time over as long a pause
/// without scrapes (heartbeats, the scheduler), on the cluster the runs left.
async fn scrape_cost(cluster: &Cluster) {
    let leader = cluster.wait_for_leader(WAIT).await;
    let agent = cluster.agent(leader);
    let Some(pid) = agent.pid().map(|p| p.to_string()) else {
        println!("  scrape cost: the leader has no pid");
        return;
    };
    let (before, began) = (cpu_time(&pid), Instant::now());
    let (mut done, mut bytes) = (0u32, 0usize);
    for _ in 0..SCRAPE_COST_SAMPLES {
        if let Some((_, body)) = flotilla_testkit::http_get(&agent.metrics_addr, "/metrics") {
            done += 1;
            bytes = body.len();
        }
    }
    let (busy, wall) = (cpu_time(&pid) - before, began.elapsed());
    let idle_before = cpu_time(&pid);
    tokio::time::sleep(wall).await;
    let idle = cpu_time(&pid) - idle_before;
    let per_scrape_ms = ms(busy.saturating_sub(idle)) / f64::from(done.max(1));
    println!(
        "  scrape cost on the leader: {done} scrapes of {bytes} bytes back to back in {:.1} s; leader CPU {:.0} ms \
         (idle over as long: {:.0} ms) = {per_scrape_ms:.2} CPU ms per scrape, {:.3} % of one core at one scrape a second",
        wall.as_secs_f64(),
        ms(busy),
        ms(idle),
        per_scrape_ms / 10.0
    );
}

/// CPU time of every running agent (by id) and of this process.
struct CpuSample {
    agents: BTreeMap<u64, Duration>,
    bench: Duration,
}

impl CpuSample {
    fn take(cluster: &Cluster) -> CpuSample {
        let agents = cluster
            .ids()
            .into_iter()
            .filter_map(|id| cluster.agent(id).pid().map(|pid| (id, cpu_time(&pid.to_string()))))
            .collect();
        CpuSample {
            agents,
            bench: cpu_time("self"),
        }
    }

    /// `n1 4.1 / n2 2.0 / n3 2.0 / bench 1.5` CPU seconds spent since `before`.
    fn since(&self, before: &CpuSample) -> String {
        let mut parts: Vec<String> = self
            .agents
            .iter()
            .map(|(id, t)| {
                let used = t.saturating_sub(before.agents.get(id).copied().unwrap_or_default());
                format!("n{id} {:.1}", used.as_secs_f64())
            })
            .collect();
        parts.push(format!(
            "bench {:.1}",
            self.bench.saturating_sub(before.bench).as_secs_f64()
        ));
        parts.join(" / ")
    }

    fn total_since(&self, before: &CpuSample) -> Duration {
        let agents: Duration = self
            .agents
            .iter()
            .map(|(id, t)| t.saturating_sub(before.agents.get(id).copied().unwrap_or_default()))
            .sum();
        agents + self.bench.saturating_sub(before.bench)
    }
}

/// Latency of a small synced write in `dir`: 200 bytes written in place into a file whose
/// blocks are already allocated, then `fdatasync` (as RocksDB syncs its preallocated WAL).
/// The floor under every committed apply on this disk.
fn fsync_probe(dir: &std::path::Path, n: usize) -> Summary {
    use std::io::Write;
    const RECORD: usize = 200;
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).expect("probe file");
    f.write_all(&vec![0u8; RECORD * n]).expect("probe preallocation");
    f.sync_all().expect("probe sync");
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).expect("probe file");
    let record = [b'x'; RECORD];
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&record).expect("probe write");
        f.sync_data().expect("fdatasync");
        samples.push(t.elapsed());
    }
    let _ = std::fs::remove_file(&path);
    Summary::of(samples)
}

struct Summary {
    count: usize,
    min: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
    mean: Duration,
}

impl Summary {
    fn of(mut samples: Vec<Duration>) -> Summary {
        samples.sort();
        let total: Duration = samples.iter().sum();
        Summary {
            count: samples.len(),
            min: samples.first().copied().unwrap_or_default(),
            p50: percentile(&samples, 0.50),
            p99: percentile(&samples, 0.99),
            max: samples.last().copied().unwrap_or_default(),
            mean: total.checked_div(samples.len().max(1) as u32).unwrap_or_default(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Throughput and latency.

struct LoadResult {
    label: String,
    clients: usize,
    latency: Summary,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
    stopped_early: bool,
    load_before: String,
    load_after: String,
    /// `fdatasync` latency on the agents' disk just before the run: other work on the
    /// machine moves it, and with it every figure of the run.
    disk: Summary,
    /// Per-process CPU seconds during the run, and their sum.
    cpu: String,
    cpu_total: Duration,
    /// The leader's Raft term before and after the run: a change means an election
    /// happened under load.
    terms: (u64, u64),
}

/// Runs `ops` applies from `clients` concurrent clients, client `i` talking to
/// `targets[i % targets.len()]` over its own connection and updating its own service.
async fn run_load(
    cluster: &Cluster,
    run: &str,
    label: &str,
    targets: &[String],
    clients: usize,
    ops: usize,
) -> LoadResult {
    eprintln!("[bench] {label}: {clients} client(s), {ops} applies ...");
    let disk = fsync_probe(cluster.root(), 100);
    let start_line = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let access = Arc::new(cluster.creds.access());
    let mut tasks = Vec::with_capacity(clients);
    for i in 0..clients {
        let addr = targets[i % targets.len()].clone();
        let share = ops / clients + usize::from(i < ops % clients);
        let name = format!("{run}-c{i}");
        let start_line = start_line.clone();
        let access = access.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = connect(&addr, &access).await;
            for _ in 0..WARMUP_PER_CLIENT {
                if let Err(e) = apply(&mut client, &name, LOAD_CALL_TIMEOUT).await {
                    panic!("warm-up apply of {name} to {addr} failed: {e}");
                }
            }
            start_line.wait().await;
            let began = Instant::now();
            let mut latencies = Vec::with_capacity(share);
            let mut errors = Vec::new();
            for _ in 0..share {
                if began.elapsed() > RUN_DEADLINE {
                    return (latencies, errors, true);
                }
                let t = Instant::now();
                match apply(&mut client, &name, LOAD_CALL_TIMEOUT).await {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(e) => errors.push(e),
                }
            }
            (latencies, errors, false)
        }));
    }
    start_line.wait().await;
    let load_before = loadavg();
    let cpu_before = CpuSample::take(cluster);
    let began = Instant::now();
    let mut latencies = Vec::with_capacity(ops);
    let mut errors = Vec::new();
    let mut stopped_early = false;
    for t in tasks {
        let (l, e, early) = t.await.expect("client task");
        latencies.extend(l);
        errors.extend(e);
        stopped_early |= early;
    }
    let elapsed = began.elapsed();
    let cpu_after = CpuSample::take(cluster);
    LoadResult {
        label: label.to_string(),
        clients,
        latency: Summary::of(latencies),
        errors: errors.len(),
        first_error: errors.into_iter().next(),
        elapsed,
        stopped_early,
        load_before,
        load_after: loadavg(),
        disk,
        cpu: cpu_after.since(&cpu_before),
        cpu_total: cpu_after.total_since(&cpu_before),
        terms: (0, 0),
    }
}

/// The current Raft term, as the agreed leader reports it.
async fn term(cluster: &Cluster) -> u64 {
    let leader = cluster.wait_for_leader(WAIT).await;
    cluster.status(leader).await.map_or(0, |s| s.term)
}

async fn throughput(cluster: &Cluster, config: &Config) -> Vec<LoadResult> {
    let mut results = Vec::new();
    let runs = [
        ("leader", 1, config.ops_single),
        ("leader", config.clients, config.ops_concurrent),
        ("followers", 1, config.ops_single),
        ("followers", config.clients, config.ops_concurrent),
    ];
    for (n, (to, clients, ops)) in runs.into_iter().enumerate() {
        if ops == 0 {
            continue;
        }
        let leader = cluster.wait_for_leader(WAIT).await;
        let targets: Vec<String> = if to == "leader" {
            vec![cluster.addr(leader)]
        } else {
            cluster
                .ids()
                .into_iter()
                .filter(|id| *id != leader)
                .map(|id| cluster.addr(id))
                .collect()
        };
        let label = if to == "leader" {
            format!("to leader (node {leader})")
        } else {
            format!("to followers (forwarded to node {leader})")
        };
        let term_before = term(cluster).await;
        let mut r = run_load(cluster, &format!("tp{n}"), &label, &targets, clients, ops).await;
        r.terms = (term_before, term(cluster).await);
        eprintln!(
            "[bench]   {:.0} applies/s, p50 {:.1} ms, p99 {:.1} ms, {} errors",
            r.latency.count as f64 / r.elapsed.as_secs_f64(),
            ms(r.latency.p50),
            ms(r.latency.p99),
            r.errors
        );
        results.push(r);
    }
    results
}

fn print_throughput(results: &[LoadResult], cores: usize) {
    println!();
    println!("Throughput and latency (every apply is a real update, committed on a quorum)");
    println!("(fsync50: p50 of 100 x (200-byte in-place write + fdatasync) on the agents' disk just before the run)");
    println!(
        "{:<36} {:>7} {:>7} {:>6} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8} {:>11}",
        "run",
        "clients",
        "ops",
        "errors",
        "elapsed s",
        "applies/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "mean ms",
        "fsync50 ms"
    );
    for r in results {
        println!(
            "{:<36} {:>7} {:>7} {:>6} {:>9.2} {:>10.0} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>11.2}",
            r.label,
            r.clients,
            r.latency.count,
            r.errors,
            r.elapsed.as_secs_f64(),
            r.latency.count as f64 / r.elapsed.as_secs_f64(),
            ms(r.latency.p50),
            ms(r.latency.p99),
            ms(r.latency.max),
            ms(r.latency.mean),
            ms(r.disk.p50),
        );
    }
    for r in results {
        let busy = r.cpu_total.as_secs_f64() / (r.elapsed.as_secs_f64() * cores.max(1) as f64);
        println!(
            "  {}, {} client(s): CPU s {} = {:.0}% of {cores} cores, {:.2} CPU ms per apply; \
             raft term {} -> {}; load average {} at start, {} at end{}",
            r.label,
            r.clients,
            r.cpu,
            busy * 100.0,
            ms(r.cpu_total) / r.latency.count.max(1) as f64,
            r.terms.0,
            r.terms.1,
            r.load_before,
            r.load_after,
            if r.stopped_early {
                " (STOPPED EARLY at the run deadline)"
            } else {
                ""
            }
        );
        if let Some(e) = &r.first_error {
            println!("    first error: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Leader failover.

struct Round {
    killed: u64,
    new_leader: u64,
    failover: Duration,
    attempts: usize,
    timeouts: usize,
    catch_up: Duration,
}

/// SIGKILLs the leader, then applies through the survivors in turn until one commits.
async fn failover_round(cluster: &mut Cluster, clients: &mut BTreeMap<u64, ApiClient>) -> Round {
    let old = cluster.wait_for_leader(WAIT).await;
    let survivors: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != old).collect();

    cluster.kill(old);
    let killed_at = Instant::now();
    let mut attempts = 0;
    let mut timeouts = 0;
    let mut last_error = String::new();
    loop {
        let elapsed = killed_at.elapsed();
        assert!(
            elapsed < FAILOVER_DEADLINE,
            "no write committed {elapsed:?} after killing leader {old} ({attempts} attempts; last error: {last_error})"
        );
        let client = clients
            .get_mut(&survivors[attempts % survivors.len()])
            .expect("a client per node");
        attempts += 1;
        let t = Instant::now();
        match apply(client, "failover", FAILOVER_CALL_TIMEOUT).await {
            Ok(_) => break,
            Err(e) => {
                if t.elapsed() >= FAILOVER_CALL_TIMEOUT {
                    timeouts += 1;
                } else if t.elapsed() < FAST_FAILURE_PAUSE {
                    tokio::time::sleep(FAST_FAILURE_PAUSE).await;
                }
                last_error = e;
            }
        }
    }
    let failover = killed_at.elapsed();

    let restarted_at = Instant::now();
    cluster.start_agent(old);
    let new_leader = cluster.wait_for_leader(WAIT).await;
    let target = cluster
        .status(new_leader)
        .await
        .map(|s| s.applied_index)
        .expect("the new leader answers NodeStatus");
    cluster.wait_applied(old, target, WAIT).await;
    Round {
        killed: old,
        new_leader,
        failover,
        attempts,
        timeouts,
        catch_up: restarted_at.elapsed(),
    }
}

async fn failover(cluster: &mut Cluster, kills: usize) -> Vec<Round> {
    eprintln!("[bench] leader failover: {kills} kills ...");
    let access = cluster.creds.access();
    let mut clients: BTreeMap<u64, _> = cluster
        .ids()
        .into_iter()
        .map(|id| (id, access.client(&cluster.addr(id))))
        .collect();
    let mut rounds = Vec::with_capacity(kills);
    for i in 1..=kills {
        let r = failover_round(cluster, &mut clients).await;
        eprintln!(
            "[bench]   round {i}: killed {}, node {} leads, first write after {:.0} ms ({} attempts), caught up in {:.0} ms",
            r.killed,
            r.new_leader,
            ms(r.failover),
            r.attempts,
            ms(r.catch_up)
        );
        rounds.push(r);
    }
    rounds
}

fn print_failover(rounds: &[Round], load_before: &str, load_after: &str) {
    println!();
    println!("Leader failover: SIGKILL the leader -> first write committed through a survivor");
    println!(
        "(per-attempt timeout {} ms, attempts alternate between the two survivors)",
        FAILOVER_CALL_TIMEOUT.as_millis()
    );
    println!(
        "{:>5} {:>6} {:>10} {:>11} {:>8} {:>8} {:>12}",
        "round", "killed", "new leader", "failover ms", "attempts", "timeouts", "catch-up ms"
    );
    for (i, r) in rounds.iter().enumerate() {
        println!(
            "{:>5} {:>6} {:>10} {:>11.0} {:>8} {:>8} {:>12.0}",
            i + 1,
            r.killed,
            r.new_leader,
            ms(r.failover),
            r.attempts,
            r.timeouts,
            ms(r.catch_up)
        );
    }
    let fo = Summary::of(rounds.iter().map(|r| r.failover).collect());
    let cu = Summary::of(rounds.iter().map(|r| r.catch_up).collect());
    println!();
    println!(
        "{:<34} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "", "samples", "min ms", "p50 ms", "p99 ms", "max ms", "mean ms"
    );
    for (name, s) in [
        ("kill -> first committed write", &fo),
        ("restart -> caught up with leader", &cu),
    ] {
        println!(
            "{:<34} {:>7} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0}",
            name,
            s.count,
            ms(s.min),
            ms(s.p50),
            ms(s.p99),
            ms(s.max),
            ms(s.mean)
        );
    }
    println!("  (with fewer than 100 samples the nearest-rank p99 is the maximum)");
    println!(
        "  openraft 0.9 lets a follower that knew a leader stand for election only after \
         leader_lease (= election-timeout-max) + its own election timeout without a heartbeat"
    );
    println!("  load average {load_before} at start, {load_after} at end");
}

// ---------------------------------------------------------------------------------------

fn main() {
    let config = Config::from_env();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("flotilla cluster benchmark: 3 agents on 127.0.0.1, synced RocksDB writes, gRPC clients");
    println!("  agent binary: {}", flotilla_bin().display());
    println!("  agent Raft settings: {}", agent_defaults());
    println!(
        "  transport: {}",
        if config.insecure {
            "plain TCP, no credentials (BENCH_INSECURE=1)"
        } else {
            "TLS 1.3 (rustls, ring), node certificates, the admin token on every call"
        }
    );
    println!(
        "  metrics: {}",
        if config.metrics {
            "every agent serves /metrics, scraped once a second during the runs"
        } else {
            "no metrics listener, no scraper (BENCH_METRICS=0)"
        }
    );
    if !config.agent_args.is_empty() {
        println!(
            "  extra agent flags (BENCH_AGENT_ARGS): {}",
            config.agent_args.join(" ")
        );
    }
    println!(
        "  workload: BENCH_OPS={} (1 client), BENCH_OPS_CONCURRENT={} over BENCH_CLIENTS={}, BENCH_KILLS={}, BENCH_ONLY={:?}",
        config.ops_single, config.ops_concurrent, config.clients, config.kills, config.only
    );
    println!("  apply: `name: <run>-c<client>, image: x, replicas: 1, env: {{N: <fresh number>}}` (always an update)");
    println!(
        "  machine: {cores} cores shared by the agents and this client; load average {}",
        loadavg()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let started = Instant::now();
        let mut builder =
            Cluster::builder(3).agent_args(&config.agent_args.iter().map(String::as_str).collect::<Vec<_>>());
        if config.insecure {
            builder = builder.insecure();
        }
        if !config.metrics {
            builder = builder.without_metrics_listener();
        }
        let mut cluster = builder.start();
        // A scraper, harsher than Prometheus' usual 15 s: every agent once a second.
        let scraping = Arc::new(std::sync::atomic::AtomicBool::new(config.metrics));
        let scraper = {
            let scraping = scraping.clone();
            let addrs: Vec<String> = cluster.ids().iter().map(|id| cluster.agent(*id).metrics_addr.clone()).collect();
            std::thread::spawn(move || {
                let mut scrapes = 0u64;
                while scraping.load(Ordering::Relaxed) {
                    for a in &addrs {
                        if flotilla_testkit::http_get(a, "/metrics").is_some() {
                            scrapes += 1;
                        }
                    }
                    std::thread::park_timeout(Duration::from_secs(1));
                }
                scrapes
            })
        };
        let probe = fsync_probe(cluster.root(), 200);
        println!(
            "  disk: 200 x (200-byte in-place write + fdatasync) in the cluster's temp dir: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(probe.p50),
            ms(probe.p99),
            ms(probe.max)
        );
        let leader = cluster.wait_for_leader(WAIT).await;
        eprintln!(
            "[bench] cluster up, node {leader} leads, in {:.1} s",
            started.elapsed().as_secs_f64()
        );

        let tp = if config.only != Only::Failover {
            throughput(&cluster, &config).await
        } else {
            Vec::new()
        };
        let (fo, fo_load) = if config.only != Only::Throughput && config.kills > 0 {
            let before = loadavg();
            let rounds = failover(&mut cluster, config.kills).await;
            (rounds, (before, loadavg()))
        } else {
            (Vec::new(), Default::default())
        };

        scraping.store(false, Ordering::Relaxed);
        scraper.thread().unpark();
        let scrapes = scraper.join().expect("scraper");
        if config.metrics {
            println!("  /metrics scraped {scrapes} times during the runs");
            scrape_cost(&cluster).await;
        }
        if !tp.is_empty() {
            print_throughput(&tp, cores);
        }
        if !fo.is_empty() {
            print_failover(&fo, &fo_load.0, &fo_load.1);
        }
        println!();
        println!("total wall time {:.0} s", started.elapsed().as_secs_f64());
    });
}
