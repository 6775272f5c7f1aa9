//! The chaos runner (issue 7): a 3-node cluster of real agents, concurrent clients that
//! write and read a few services, and a seeded fault schedule; then the checks. One seed
//! decides the fault schedule and every client's choices, so a seed replays the same
//! schedule (timing on a loaded machine still varies).
//!
//! Run it with `make chaos SEEDS=N`; replay one seed with `CHAOS_SEED=S make chaos`.

pub mod checks;
pub mod client;
pub mod faults;
pub mod fence;
pub mod history;
pub mod linearizability;
pub mod model;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_testkit::Cluster;
use rand::rngs::StdRng;
use rand::SeedableRng;

use history::{Entry, Outcome, Ret};
use linearizability::Verdict;

#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    /// How long faults are injected; clients run through it.
    pub duration: Duration,
    pub clients: usize,
    pub services: Vec<String>,
    /// The agents' `--node-timeout`; the convergence bound is this plus 10 s.
    pub node_timeout: Duration,
    /// `docker` or `process`.
    pub driver: &'static str,
    /// Whether partitions are injected (iptables usable); otherwise they become pauses.
    pub partitions: bool,
    /// Whether the `fence` service and its sampled check run (default on; `CHAOS_FENCE=0`
    /// turns them off, e.g. to tell a fence problem from another one).
    pub fence: bool,
}

impl Config {
    pub fn new(seed: u64, driver: &'static str) -> Config {
        Config {
            seed,
            duration: Duration::from_secs(25),
            clients: 3,
            services: ["svc-a", "svc-b", "svc-c"].map(String::from).to_vec(),
            node_timeout: flotilla_node::ControlConfig::default().node_timeout,
            driver,
            partitions: true,
            fence: std::env::var("CHAOS_FENCE").as_deref() != Ok("0"),
        }
    }

    pub fn convergence_bound(&self) -> Duration {
        // A move to even out a spread takes a copy's start plus `monitor` (5 s).
        self.node_timeout + Duration::from_secs(20)
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub ops: usize,
    pub ok: usize,
    pub failed: usize,
    pub unknown: usize,
    pub faults: Vec<String>,
    pub violations: Vec<String>,
    pub convergence: Option<Duration>,
    /// The `fence` check's samples of the engine while the faults were on (Docker only).
    pub fence: fence::Sampled,
    pub history: Vec<Entry>,
    /// Where the agents' logs were kept (when there are violations).
    pub kept: Option<String>,
}

pub async fn run(cfg: &Config) -> Report {
    let mut report = Report {
        seed: cfg.seed,
        ..Report::default()
    };
    let node_timeout = format!("{}ms", cfg.node_timeout.as_millis());
    let mut cluster = Cluster::builder(3)
        .driver(cfg.driver)
        .distinct_ips()
        .agent_args(&["--node-timeout", &node_timeout, "--cpu", "4", "--memory", "4096"])
        .start();
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    if cfg.fence {
        if let Err(e) = apply_fenced(&cluster, Duration::from_secs(30)).await {
            report.violations.push(e);
        }
    }

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let addrs: Vec<String> = cluster.ids().iter().map(|id| cluster.addr(*id)).collect();
    let config = Arc::new(
        cluster
            .creds
            .config()
            .expect("the admin config, written before the leader"),
    );
    let clients: Vec<_> = (0..cfg.clients)
        .map(|id| {
            tokio::spawn(client::run(
                id,
                cfg.seed,
                addrs.clone(),
                cfg.services.clone(),
                start,
                stop.clone(),
                config.clone(),
            ))
        })
        .collect();
    let downs = fence::Downs::default();
    let sampling = Arc::new(AtomicBool::new(false));
    let sampler = (cfg.fence && cfg.driver == "docker").then(|| {
        tokio::spawn(fence::sample(
            cluster.name().to_string(),
            downs.clone(),
            sampling.clone(),
        ))
    });
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    report.faults = faults::run(&mut cluster, &mut rng, start, cfg.duration, cfg.partitions, &downs).await;
    report.violations.extend(
        report
            .faults
            .iter()
            .filter(|f| f.contains("VIOLATION"))
            .map(|f| format!("fault: {f}")),
    );
    // Healed: every node runs (the schedule restarts what it kills) and no cut remains.
    // Clients go on against the whole cluster until every replica has caught up with the
    // leader, then stop.
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let target = cluster.status(leader).await.map_or(0, |s| s.applied_index);
    for id in cluster.ids() {
        cluster.wait_applied(id, target, Duration::from_secs(30)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        report.history.extend(c.await.expect("client task panicked"));
    }
    sampling.store(true, Ordering::Relaxed);
    if let Some(s) = sampler {
        report.fence = s.await.expect("fence sampler panicked");
        report.violations.extend(report.fence.violations.iter().cloned());
    }

    // Final reads, after every client call returned: the last word of each history.
    let mut finals = BTreeMap::new();
    for service in &cfg.services {
        let invoke = start.elapsed().as_nanos() as u64;
        match checks::final_read(&cluster, service, Duration::from_secs(30)).await {
            Some(r) => {
                report.history.push(Entry {
                    client: usize::MAX,
                    service: service.clone(),
                    op: history::Op::Get,
                    invoke,
                    ret: start.elapsed().as_nanos() as u64,
                    outcome: Outcome::Ok(r.clone()),
                });
                finals.insert(service.clone(), r);
            }
            None => report
                .violations
                .push(format!("{service}: no node answered a read after healing")),
        }
    }

    for service in &cfg.services {
        let mine: Vec<&Entry> = report.history.iter().filter(|e| &e.service == service).collect();
        if let Some(fin) = finals.get(service) {
            report.violations.extend(checks::durability(service, &mine, fin));
        }
        let owned: Vec<Entry> = mine.into_iter().cloned().collect();
        match linearizability::check(&owned) {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable { detail } => report
                .violations
                .push(format!("{service}: history not linearizable: {detail}")),
            Verdict::Inconclusive { explored } => report.violations.push(format!(
                "{service}: linearizability inconclusive after {explored} configurations"
            )),
        }
    }

    if let Err(e) = checks::verify(&cluster, Duration::from_secs(20)) {
        report.violations.push(e);
    }
    // The fenced service, which no client touches, ends with all its replicas too.
    let mut wanted = finals.clone();
    if cfg.fence {
        wanted.insert(
            fence::SERVICE.to_string(),
            Ret::Read {
                version: 1,
                value: String::new(),
                replicas: fence::REPLICAS,
            },
        );
    }
    match checks::converge(&cluster, &wanted, cfg.convergence_bound(), cfg.driver == "docker").await {
        Ok(t) => report.convergence = Some(t),
        Err(v) => report.violations.extend(v),
    }

    report.ops = report.history.len();
    for e in &report.history {
        match e.outcome {
            Outcome::Ok(_) => report.ok += 1,
            Outcome::Fail(_) => report.failed += 1,
            Outcome::Unknown(_) => report.unknown += 1,
        }
    }
    if !report.violations.is_empty() {
        let dir = cluster.root().to_path_buf();
        // Keep the agents' logs and data: the evidence for the violations.
        let kept = std::env::temp_dir().join(format!("flotilla-chaos-seed-{}", cfg.seed));
        let _ = std::fs::remove_dir_all(&kept);
        if copy_dir(&dir, &kept).is_ok() {
            report.kept = Some(kept.display().to_string());
        }
    }
    report
}

/// Applies the fenced service (see [`fence`]), retried until `deadline`.
async fn apply_fenced(cluster: &Cluster, deadline: Duration) -> Result<(), String> {
    let file = cluster.write_file("fenced.yaml", &fence::spec());
    let file = file.to_str().unwrap_or_default();
    let mut last = String::new();
    let applied = flotilla_testkit::poll_until_async(deadline, async || {
        let out = tokio::task::block_in_place(|| cluster.cli(&["apply", "-f", file]));
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        out.status.success().then_some(())
    })
    .await;
    applied.ok_or_else(|| format!("apply of the fenced service failed: {last}"))
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}
