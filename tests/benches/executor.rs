//! `cargo bench --profile dev -p flotilla-tests --bench executor`: what the executor costs
//! on a real Docker engine. Three `flotilla agent --driver docker` processes on 127.0.0.1
//! (flotilla_testkit::Cluster), driven over gRPC only; the engine is looked at through the
//! `docker` CLI (flotilla_testkit::docker), as an operator would.
//!
//! Two workloads, each on its own fresh cluster:
//! - start: `Apply` of a 1-replica service until `ListTasks` shows its task `running`,
//!   interleaved with a bare `docker run -d` of the same image on the same engine;
//! - node loss: 6 replicas of an httpd with an http health check; a follower's agent is
//!   SIGKILLed and its containers `docker kill`ed, until all 6 run (and are healthy) on the
//!   survivors.
//!
//! Not criterion: one sample is a whole cluster's behaviour, so this binary runs fixed
//! workloads and prints a table. Results and how to read them: docs/BENCHMARKS.md.
//!
//! Environment (all optional):
//!   BENCH_ONLY=start|node-loss   run one half only
//!   BENCH_START_TRIALS=15        measured trials of each start variant (after one warm-up)
//!   BENCH_LOSS_TRIALS=10         node kills (spread over one heartbeat period)
//!   BENCH_POLL_MS=10             ListTasks polling period
//!   BENCH_AGENT_ARGS="..."       extra `flotilla agent` flags, e.g. "--node-timeout 2s"
//!   BENCH_LOGS=DIR               copy the agents' logs there before the clusters go
//!   FLOTILLA_BIN                 the agent binary (see flotilla_testkit::flotilla_bin)

use flotilla_tests::bench::{env_usize, loadavg, ms, percentile};
use std::process::Command;
use std::time::{Duration, Instant};

use flotilla_proto::v1::{
    ApplyOutcome, ApplyRequest, DeleteServiceRequest, DesiredState, ListNodesRequest, ListTasksRequest,
    NodeAvailability, NodeStatus, SetNodeAvailabilityRequest, TaskInfo, TaskState,
};
use flotilla_testkit::docker::{self, WORKLOAD_IMAGE};
use flotilla_testkit::{flotilla_bin, wait_until_async, Cluster};

type Client = flotilla_testkit::ApiClient;

/// Deadline for cluster-level waits (leader, nodes ready, containers gone, recovery).
const WAIT: Duration = Duration::from_secs(60);
/// One trial that has not reached its end state after this long aborts the benchmark.
const TRIAL_DEADLINE: Duration = Duration::from_secs(60);
/// Deadline of one gRPC call while polling: a slow answer is a data point, a hung one is not.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The node-loss workload: the same service as the executor's Docker cluster tests.
const WEB: &str = "web";
const WEB_REPLICAS: usize = 6;

fn web_spec() -> String {
    format!(
        r#"name: {WEB}
image: {WORKLOAD_IMAGE}
command: ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
replicas: {WEB_REPLICAS}
health_check: {{http: {{port: 8080, path: /}}, interval: 1s}}
stop_grace: 2s
"#
    )
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Only {
    Both,
    Start,
    NodeLoss,
}

#[derive(Debug)]
struct Config {
    only: Only,
    start_trials: usize,
    loss_trials: usize,
    poll: Duration,
    agent_args: Vec<String>,
    logs: Option<std::path::PathBuf>,
}

impl Config {
    fn from_env() -> Config {
        let only = match std::env::var("BENCH_ONLY").as_deref() {
            Err(_) | Ok("") => Only::Both,
            Ok("start") => Only::Start,
            Ok("node-loss") => Only::NodeLoss,
            Ok(other) => panic!("BENCH_ONLY={other:?}: expected `start` or `node-loss`"),
        };
        Config {
            only,
            start_trials: env_usize("BENCH_START_TRIALS", 15),
            loss_trials: env_usize("BENCH_LOSS_TRIALS", 10),
            poll: Duration::from_millis(env_usize("BENCH_POLL_MS", 10).max(1) as u64),
            agent_args: std::env::var("BENCH_AGENT_ARGS")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            logs: std::env::var_os("BENCH_LOGS").map(Into::into),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Statistics (percentiles from flotilla_tests::bench, as in benches/cluster.rs).

struct Summary {
    count: usize,
    min: Duration,
    p50: Duration,
    p90: Duration,
    max: Duration,
}

impl Summary {
    fn of(mut samples: Vec<Duration>) -> Summary {
        samples.sort();
        Summary {
            count: samples.len(),
            min: samples.first().copied().unwrap_or_default(),
            p50: percentile(&samples, 0.50),
            p90: percentile(&samples, 0.90),
            max: samples.last().copied().unwrap_or_default(),
        }
    }

    fn row(&self, name: &str) {
        println!(
            "{:<44} {:>7} {:>8.0} {:>8.0} {:>8.0} {:>8.0}",
            name,
            self.count,
            ms(self.min),
            ms(self.p50),
            ms(self.p90),
            ms(self.max)
        );
    }
}

fn summary_header() {
    println!(
        "{:<44} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "", "samples", "min ms", "p50 ms", "p90 ms", "max ms"
    );
}

// ---------------------------------------------------------------------------------------
// The cluster, over gRPC.

async fn connect(cluster: &Cluster, addr: &str) -> Client {
    let config = cluster.creds.config().expect("admin config");
    flotilla_testkit::api_client_now(addr, Some(&config), |e| {
        e.connect_timeout(Duration::from_millis(500)).tcp_nodelay(true)
    })
    .await
    .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// A 3-agent Docker cluster with every node registered and ready; returns it with a
/// client on its leader.
async fn docker_cluster(config: &Config) -> (Cluster, Client) {
    let started = Instant::now();
    let cluster = Cluster::builder(3)
        .driver("docker")
        .agent_args(&config.agent_args.iter().map(String::as_str).collect::<Vec<_>>())
        .start();
    let leader = cluster.wait_for_leader(WAIT).await;
    let mut client = connect(&cluster, &cluster.addr(leader)).await;
    wait_ready(&mut client, &cluster.ids()).await;
    eprintln!(
        "[bench] cluster {} up, node {leader} leads, 3 nodes ready in {:.1} s",
        cluster.name(),
        started.elapsed().as_secs_f64()
    );
    (cluster, client)
}

/// Waits until the leader's state shows every node of `ids` ready.
async fn wait_ready(client: &mut Client, ids: &[u64]) {
    wait_until_async(&format!("nodes {ids:?} ready"), WAIT, || {
        let mut c = client.clone();
        async move {
            let nodes = c
                .list_nodes(ListNodesRequest { stale: false })
                .await
                .ok()?
                .into_inner()
                .nodes;
            ids.iter()
                .all(|id| nodes.iter().any(|n| n.id == *id && n.status() == NodeStatus::Ready))
                .then_some(())
        }
    })
    .await
}

/// The tasks of `service` meant to run (history left out), read through the leader.
async fn live_tasks(client: &mut Client, service: &str) -> Result<Vec<TaskInfo>, String> {
    let req = ListTasksRequest {
        service: service.to_string(),
        stale: false,
    };
    match tokio::time::timeout(CALL_TIMEOUT, client.list_tasks(req)).await {
        Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
        Ok(Err(s)) => Err(format!("{:?}: {}", s.code(), s.message())),
        Ok(Ok(r)) => Ok(r
            .into_inner()
            .tasks
            .into_iter()
            .filter(|t| t.desired() == DesiredState::Running)
            .collect()),
    }
}

/// `flotilla.cluster=<cluster>` plus `more`, as container label filters.
fn labels<'a>(cluster: &'a str, more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut l = vec![("flotilla.cluster", cluster)];
    l.extend_from_slice(more);
    l
}

/// Copies every agent's log to `dir/<part>-node<id>.log` (the cluster's temp dir goes
/// with it).
fn keep_logs(cluster: &Cluster, dir: Option<&std::path::Path>, part: &str) {
    let Some(dir) = dir else { return };
    std::fs::create_dir_all(dir).expect("BENCH_LOGS dir");
    for id in cluster.ids() {
        let to = dir.join(format!("{part}-node{id}.log"));
        std::fs::write(&to, cluster.log(id)).expect("copy agent log");
    }
    eprintln!("[bench] agent logs of {part} copied to {}", dir.display());
}

// ---------------------------------------------------------------------------------------
// Start latency: Apply -> running, against a bare `docker run -d`.

struct StartRound {
    /// The node the task ran on, and whether it was the leader.
    node: u64,
    on_leader: bool,
    /// `Apply` answered (the service is committed).
    acked: Duration,
    /// The task was first seen placed (created and assigned by the leader's pass).
    placed: Duration,
    /// The task was first seen `running`.
    running: Duration,
    polls: usize,
}

async fn start_round(client: &mut Client, name: &str, leader: u64, poll: Duration) -> StartRound {
    let t0 = Instant::now();
    let resp = client
        .apply(ApplyRequest {
            spec_document: flotilla_tests::spec(name, 1).into(),
        })
        .await
        .unwrap_or_else(|s| panic!("apply {name}: {s}"))
        .into_inner();
    assert_eq!(resp.outcome(), ApplyOutcome::Created, "apply {name}");
    let acked = t0.elapsed();
    let mut placed = None;
    let mut polls = 0;
    loop {
        let elapsed = t0.elapsed();
        assert!(elapsed < TRIAL_DEADLINE, "{name} not running after {elapsed:?}");
        polls += 1;
        if let Ok(tasks) = live_tasks(client, name).await {
            if let Some(t) = tasks.iter().find(|t| t.node_id != 0) {
                let placed = *placed.get_or_insert(t0.elapsed());
                if t.state() == TaskState::Running {
                    return StartRound {
                        node: t.node_id,
                        on_leader: t.node_id == leader,
                        acked,
                        placed,
                        running: t0.elapsed(),
                        polls,
                    };
                }
                assert!(
                    !matches!(t.state(), TaskState::Failed | TaskState::Exited),
                    "{name}: task {} {}: {}",
                    t.id,
                    t.state().word(),
                    t.message
                );
            }
        }
        tokio::time::sleep(poll).await;
    }
}

/// Pauses every node but `target` (no new placements there), so the next task lands on
/// `target`: with every node empty the scheduler would always pick the same one.
async fn pin_placement(client: &mut Client, cluster: &Cluster, target: u64) {
    for id in cluster.ids() {
        let availability = if id == target {
            NodeAvailability::Active
        } else {
            NodeAvailability::Pause
        };
        client
            .set_node_availability(SetNodeAvailabilityRequest {
                id,
                availability: availability.into(),
            })
            .await
            .unwrap_or_else(|s| panic!("set node {id} {}: {s}", availability.word()));
    }
}

/// Deletes `name` and waits until its container is gone from the engine, so the next
/// trial does not share the engine with a stop in progress.
async fn delete_and_wait(client: &mut Client, cluster: &Cluster, name: &str) {
    client
        .delete_service(DeleteServiceRequest { name: name.to_string() })
        .await
        .unwrap_or_else(|s| panic!("delete {name}: {s}"));
    let filter = labels(cluster.name(), &[("flotilla.service", name)]);
    wait_until_async(&format!("the container of {name} removed"), WAIT, || {
        let gone = docker::containers(&filter).is_empty();
        async move { gone.then_some(()) }
    })
    .await;
}

struct BareRound {
    /// `docker run -d` returned (container created and started).
    run: Duration,
    /// `docker inspect` first said `.State.Running` is true.
    running: Duration,
}

fn docker_cli(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker: {e}"));
    assert!(
        out.status.success(),
        "`docker {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The engine alone: `docker run -d` of the same image and command, then `docker
/// inspect` until it runs. Labelled with the cluster's name, so the cluster's cleanup
/// removes it if this benchmark dies; no `flotilla.node` label, so no agent adopts it.
fn bare_round(cluster_name: &str) -> BareRound {
    let label = format!("flotilla.cluster={cluster_name}");
    let t0 = Instant::now();
    let id = docker_cli(&[
        "run",
        "-d",
        "--rm",
        "--label",
        &label,
        "--label",
        "flotilla.bench=bare",
        WORKLOAD_IMAGE,
        "sleep",
        "3600",
    ]);
    let run = t0.elapsed();
    loop {
        assert!(t0.elapsed() < TRIAL_DEADLINE, "bare container {id} not running");
        if docker_cli(&["inspect", "-f", "{{.State.Running}}", &id]) == "true" {
            break;
        }
    }
    let running = t0.elapsed();
    // `sleep` as PID 1 ignores SIGTERM: remove with SIGKILL, at once.
    docker_cli(&["rm", "-f", &id]);
    BareRound { run, running }
}

struct StartResult {
    rounds: Vec<StartRound>,
    bare: Vec<BareRound>,
    load_before: String,
    load_after: String,
}

async fn start_latency(config: &Config) -> StartResult {
    let (cluster, mut client) = docker_cluster(config).await;
    let leader = cluster.wait_for_leader(WAIT).await;
    eprintln!(
        "[bench] start: 1 warm-up + {} trials each, flotilla and bare docker interleaved ...",
        config.start_trials
    );
    // Warm-up: first connection, first container of the image on this engine.
    start_round(&mut client, "warm", leader, config.poll).await;
    delete_and_wait(&mut client, &cluster, "warm").await;
    bare_round(cluster.name());

    let load_before = loadavg();
    let mut rounds = Vec::new();
    let mut bare = Vec::new();
    let ids = cluster.ids();
    for i in 1..=config.start_trials {
        let name = format!("s{i}");
        // Round-robin over the nodes: the leader's executor sees each write first, the
        // followers' only once it is replicated and committed to them.
        pin_placement(&mut client, &cluster, ids[(i - 1) % ids.len()]).await;
        let r = start_round(&mut client, &name, leader, config.poll).await;
        delete_and_wait(&mut client, &cluster, &name).await;
        let b = bare_round(cluster.name());
        eprintln!(
            "[bench]   trial {i}: flotilla {:.0} ms (acked {:.0}, placed {:.0}, node {}{}), bare docker {:.0} ms",
            ms(r.running),
            ms(r.acked),
            ms(r.placed),
            r.node,
            if r.on_leader { " = leader" } else { "" },
            ms(b.running)
        );
        rounds.push(r);
        bare.push(b);
    }
    let load_after = loadavg();
    keep_logs(&cluster, config.logs.as_deref(), "start");
    StartResult {
        rounds,
        bare,
        load_before,
        load_after,
    }
}

fn print_start(r: &StartResult, poll: Duration) {
    println!();
    println!("Start latency: Apply of a 1-replica service (sleep 3600) -> ListTasks shows it running");
    println!(
        "(ListTasks through the leader every {} ms; each flotilla trial followed by a bare docker trial)",
        poll.as_millis()
    );
    println!(
        "{:>5} {:>5} {:>7} {:>9} {:>10} {:>11} {:>6} {:>10} {:>14}",
        "trial", "node", "leader", "acked ms", "placed ms", "running ms", "polls", "docker run", "docker running"
    );
    for (i, (f, b)) in r.rounds.iter().zip(&r.bare).enumerate() {
        println!(
            "{:>5} {:>5} {:>7} {:>9.0} {:>10.0} {:>11.0} {:>6} {:>10.0} {:>14.0}",
            i + 1,
            f.node,
            if f.on_leader { "yes" } else { "no" },
            ms(f.acked),
            ms(f.placed),
            ms(f.running),
            f.polls,
            ms(b.run),
            ms(b.running)
        );
    }
    let flotilla = Summary::of(r.rounds.iter().map(|f| f.running).collect());
    let bare = Summary::of(r.bare.iter().map(|b| b.running).collect());
    println!();
    summary_header();
    Summary::of(r.rounds.iter().map(|f| f.acked).collect()).row("flotilla: Apply answered");
    Summary::of(r.rounds.iter().map(|f| f.placed).collect()).row("flotilla: task seen placed");
    flotilla.row("flotilla: task seen running");
    for (leader, what) in [(true, "on the leader"), (false, "on a follower")] {
        Summary::of(
            r.rounds
                .iter()
                .filter(|f| f.on_leader == leader)
                .map(|f| f.running)
                .collect(),
        )
        .row(&format!("  of which {what}"));
    }
    Summary::of(r.rounds.iter().map(|f| f.running - f.placed).collect()).row("flotilla: placed -> running");
    Summary::of(r.bare.iter().map(|b| b.run).collect()).row("docker run -d returned");
    bare.row("docker run -d -> inspect says running");
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!(
        "  ratio flotilla / bare docker (both until running): p50 {:.2}x, p90 {:.2}x",
        ratio(flotilla.p50, bare.p50),
        ratio(flotilla.p90, bare.p90)
    );
    println!("  load average {} at start, {} at end", r.load_before, r.load_after);
}

// ---------------------------------------------------------------------------------------
// Node loss: kill a follower and its containers -> replacements running on the survivors.

struct LossRound {
    /// How long the kill waited after the previous round's recovery (see [`kill_phase`]).
    phase: Duration,
    victim: u64,
    /// Tasks the victim ran, all replaced.
    on_victim: usize,
    /// SIGKILL of the agent until its containers were killed too.
    kill: Duration,
    /// No task meant to run is on the victim any more: it was marked down and its tasks
    /// replaced (one leader pass does both).
    replaced: Duration,
    /// All 6 running or healthy on the survivors.
    running: Duration,
    /// All 6 healthy.
    healthy: Duration,
    poll_errors: usize,
    /// Restart of the victim until it was ready, its stale containers removed and all 6
    /// healthy again.
    recovery: Duration,
}

/// The follower running the most tasks of `tasks` (ties: the lowest id).
fn busiest_follower(cluster: &Cluster, leader: u64, tasks: &[TaskInfo]) -> (u64, usize) {
    cluster
        .ids()
        .into_iter()
        .filter(|id| *id != leader)
        .map(|id| (id, tasks.iter().filter(|t| t.node_id == id).count()))
        .max_by_key(|(id, n)| (*n, std::cmp::Reverse(*id)))
        .expect("two followers")
}

/// Waits until all replicas are healthy on nodes other than `except`; returns them.
async fn wait_healthy(client: &mut Client, except: Option<u64>) -> Vec<TaskInfo> {
    let what = format!("{WEB_REPLICAS} healthy {WEB} tasks (none on node {except:?})");
    wait_until_async(&what, WAIT, || {
        let mut c = client.clone();
        async move {
            let live = live_tasks(&mut c, WEB).await.ok()?;
            let done = live.len() == WEB_REPLICAS
                && live.iter().all(|t| t.state() == TaskState::Healthy)
                && live.iter().all(|t| Some(t.node_id) != except);
            done.then_some(live)
        }
    })
    .await
}

/// `phase` delays the kill: see [`kill_phase`].
async fn loss_round(cluster: &mut Cluster, poll: Duration, phase: Duration) -> LossRound {
    let leader = cluster.wait_for_leader(WAIT).await;
    let mut client = connect(cluster, &cluster.addr(leader)).await;
    let before = wait_healthy(&mut client, None).await;
    let (victim, on_victim) = busiest_follower(cluster, leader, &before);
    assert!(on_victim > 0, "no follower runs a task: {before:?}");
    let (name, victim_id) = (cluster.name().to_string(), victim.to_string());
    let victim_labels = labels(&name, &[("flotilla.node", &victim_id)]);
    tokio::time::sleep(phase).await;

    let t0 = Instant::now();
    cluster.kill(victim);
    let killed = docker::kill_containers(&victim_labels);
    let kill = t0.elapsed();
    assert_eq!(killed.len(), on_victim, "containers killed on node {victim}");

    let (mut replaced, mut running) = (None, None);
    let mut poll_errors = 0;
    let healthy = loop {
        let elapsed = t0.elapsed();
        assert!(
            elapsed < TRIAL_DEADLINE,
            "{WEB} not healthy on the survivors {elapsed:?} after killing node {victim} \
             (replaced {replaced:?}, running {running:?})"
        );
        match live_tasks(&mut client, WEB).await {
            Err(_) => poll_errors += 1,
            Ok(live) => {
                let now = t0.elapsed();
                let off_victim = live.len() == WEB_REPLICAS && live.iter().all(|t| t.node_id != victim);
                let all = |up: fn(TaskState) -> bool| live.iter().all(|t| up(t.state()));
                if off_victim {
                    replaced.get_or_insert(now);
                    if all(TaskState::is_up) {
                        running.get_or_insert(now);
                    }
                    if all(|s| s == TaskState::Healthy) {
                        break now;
                    }
                }
            }
        }
        tokio::time::sleep(poll).await;
    };

    // Back to six healthy with nothing stale, before the next kill.
    let restarted = Instant::now();
    cluster.start_agent(victim);
    wait_ready(&mut client, &[victim]).await;
    wait_until_async(&format!("node {victim}'s stale containers removed"), WAIT, || {
        let left = docker::containers(&victim_labels);
        let clean = left.iter().all(|c| !killed.contains(&c.id));
        async move { clean.then_some(()) }
    })
    .await;
    wait_healthy(&mut client, None).await;
    let all = docker::containers(&labels(&name, &[]));
    assert_eq!(all.len(), WEB_REPLICAS, "no container but the live ones: {all:#?}");
    LossRound {
        phase,
        victim,
        on_victim,
        kill,
        replaced: replaced.expect("set before healthy"),
        running: running.unwrap_or(healthy),
        healthy,
        poll_errors,
        recovery: restarted.elapsed(),
    }
}

/// How often agents heartbeat the leader (fixed in `flotilla agent`), and the period of the
/// leader's pass tick: the two clocks detection depends on.
const HEARTBEAT: Duration = flotilla_node::config::NODE_HEARTBEAT;

/// The delay before kill `i` (1-based) of `n`: the kills are spread evenly over one
/// heartbeat period. Without it every kill came at the same point of the agents' 1 s
/// heartbeat and tick cycle (each trial's end is paced by those clocks), so all samples
/// saw the same detection delay instead of its whole range.
fn kill_phase(i: usize, n: usize) -> Duration {
    HEARTBEAT * (i - 1) as u32 / n.max(1) as u32
}

struct LossResult {
    rounds: Vec<LossRound>,
    node_timeout: String,
    load_before: String,
    load_after: String,
}

async fn node_loss(config: &Config) -> LossResult {
    let (mut cluster, mut client) = docker_cluster(config).await;
    let resp = client
        .apply(ApplyRequest {
            spec_document: web_spec().into(),
        })
        .await
        .unwrap_or_else(|s| panic!("apply {WEB}: {s}"))
        .into_inner();
    assert_eq!(resp.outcome(), ApplyOutcome::Created);
    wait_healthy(&mut client, None).await;
    eprintln!(
        "[bench] node loss: {WEB_REPLICAS} healthy replicas; {} kills ...",
        config.loss_trials
    );
    let load_before = loadavg();
    let mut rounds = Vec::new();
    for i in 1..=config.loss_trials {
        let phase = kill_phase(i, config.loss_trials);
        let r = loss_round(&mut cluster, config.poll, phase).await;
        eprintln!(
            "[bench]   kill {i}: node {} ({} tasks): replaced {:.0} ms, running {:.0} ms, healthy {:.0} ms; recovered in {:.1} s",
            r.victim,
            r.on_victim,
            ms(r.replaced),
            ms(r.running),
            ms(r.healthy),
            r.recovery.as_secs_f64()
        );
        rounds.push(r);
    }
    let load_after = loadavg();
    keep_logs(&cluster, config.logs.as_deref(), "node-loss");
    let node_timeout = config
        .agent_args
        .iter()
        .position(|a| a == "--node-timeout")
        .and_then(|i| config.agent_args.get(i + 1))
        .map_or_else(
            || format!("{:?} (default)", flotilla_node::ControlConfig::default().node_timeout),
            String::clone,
        );
    LossResult {
        rounds,
        node_timeout,
        load_before,
        load_after,
    }
}

fn print_node_loss(r: &LossResult) {
    println!();
    println!(
        "Node loss: SIGKILL a follower's agent + docker kill its containers -> all {WEB_REPLICAS} \
         replicas running / healthy on the survivors"
    );
    println!(
        "(node timeout {}; agents heartbeat the leader every {} ms; http probe every 1 s; \
         kill i of n is delayed by (i - 1)/n of a heartbeat period)",
        r.node_timeout,
        HEARTBEAT.as_millis()
    );
    println!(
        "{:>5} {:>8} {:>6} {:>6} {:>8} {:>12} {:>11} {:>11} {:>11} {:>12}",
        "kill",
        "delay ms",
        "victim",
        "tasks",
        "kill ms",
        "replaced ms",
        "running ms",
        "healthy ms",
        "poll errors",
        "recovery s"
    );
    for (i, l) in r.rounds.iter().enumerate() {
        println!(
            "{:>5} {:>8.0} {:>6} {:>6} {:>8.0} {:>12.0} {:>11.0} {:>11.0} {:>11} {:>12.1}",
            i + 1,
            ms(l.phase),
            l.victim,
            l.on_victim,
            ms(l.kill),
            ms(l.replaced),
            ms(l.running),
            ms(l.healthy),
            l.poll_errors,
            l.recovery.as_secs_f64()
        );
    }
    println!();
    summary_header();
    Summary::of(r.rounds.iter().map(|l| l.replaced).collect()).row("kill -> node down, tasks replaced");
    Summary::of(r.rounds.iter().map(|l| l.running).collect()).row("kill -> all running or healthy");
    Summary::of(r.rounds.iter().map(|l| l.healthy).collect()).row("kill -> all healthy");
    Summary::of(r.rounds.iter().map(|l| l.running - l.replaced).collect()).row("replaced -> all running or healthy");
    println!("  load average {} at start, {} at end", r.load_before, r.load_after);
}

// ---------------------------------------------------------------------------------------

fn main() {
    let config = Config::from_env();
    if !docker::docker_or_skip("the executor benchmark") {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("flotilla executor benchmark: 3 agents on 127.0.0.1 with --driver docker, gRPC clients");
    println!("  agent binary: {}", flotilla_bin().display());
    println!(
        "  docker engine {}, image {WORKLOAD_IMAGE}",
        docker::engine_version().unwrap_or_else(|e| e)
    );
    if !config.agent_args.is_empty() {
        println!(
            "  extra agent flags (BENCH_AGENT_ARGS): {}",
            config.agent_args.join(" ")
        );
    }
    println!(
        "  machine: {cores} cores shared by the agents, the engine and this client; load average {}",
        loadavg()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let started = Instant::now();
        if config.only != Only::NodeLoss && config.start_trials > 0 {
            let r = start_latency(&config).await;
            print_start(&r, config.poll);
        }
        if config.only != Only::Start && config.loss_trials > 0 {
            let r = node_loss(&config).await;
            print_node_loss(&r);
        }
        println!();
        println!("total wall time {:.0} s", started.elapsed().as_secs_f64());
    });
}
