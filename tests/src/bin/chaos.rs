//! `make chaos SEEDS=N`: N seeded chaos runs (see `flotilla_tests::chaos`); exit 1 on any
//! violation. `CHAOS_SEED=S` replays one seed; `CHAOS_SEED_BASE=B` runs seeds B..B+N
//! (default: from the clock, printed). `CHAOS_EXPECT=violation` inverts the verdict, for
//! the deliberately broken build (`make chaos-broken`): it stops at the first caught seed.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_testkit::docker;
use flotilla_testkit::partition::Partitions;
use flotilla_tests::chaos::{self, history::Outcome, Config};

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.trim().parse().ok())
}

fn main() -> ExitCode {
    let seeds: Vec<u64> = match env_u64("CHAOS_SEED") {
        Some(s) => vec![s],
        None => {
            let n = env_u64("SEEDS").unwrap_or(1);
            let base = env_u64("CHAOS_SEED_BASE").unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs() % 1_000_000)
                    .unwrap_or(1)
            });
            (base..base + n).collect()
        }
    };
    let expect_violation = std::env::var("CHAOS_EXPECT").as_deref() == Ok("violation");
    let driver = match docker::engine_version() {
        Ok(_) => {
            docker::ensure_workload_image();
            "docker"
        }
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            eprintln!("CI=true requires a Docker engine for the chaos runs: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("NOTICE: {e}: chaos runs use the process driver (no container checks)");
            "process"
        }
    };
    // Partitions need iptables (root). Rules left by killed runs are removed first.
    let partitions = match Partitions::available() {
        Ok(()) => {
            let stale = Partitions::remove_stale();
            if stale > 0 {
                println!("removed {stale} stale partition rules of dead chaos runs");
            }
            true
        }
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            eprintln!("CI=true requires iptables (root) for the partitions: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("NOTICE: {e}: no partitions (scheduled partitions become pauses)");
            false
        }
    };
    let duration = env_u64("CHAOS_DURATION").map(Duration::from_secs);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (mut runs, mut faults, mut ops, mut violations) = (0, 0, 0, 0);
    let mut worst = Duration::ZERO;
    let mut kinds = std::collections::BTreeMap::new();
    let mut samples = 0;
    let mut failed_seeds = Vec::new();
    for seed in seeds {
        let mut cfg = Config::new(seed, driver);
        cfg.partitions = partitions;
        if let Some(d) = duration {
            cfg.duration = d;
        }
        println!("=== chaos seed {seed} (replay: CHAOS_SEED={seed} make chaos), driver {driver}");
        let r = rt.block_on(chaos::run(&cfg));
        for f in &r.faults {
            println!("  fault {f}");
        }
        let conv = r
            .convergence
            .map(|d| format!("{:.1}s", d.as_secs_f64()))
            .unwrap_or_else(|| "-".into());
        println!(
            "  seed {seed}: {} faults, {} ops ({} ok, {} unknown, {} failed), converged in {conv} \
             (bound {:?}), fence sampled {} times ({} excused: a copy outlived its agent), {} violations",
            r.faults.len(),
            r.ops,
            r.ok,
            r.unknown,
            r.failed,
            cfg.convergence_bound(),
            r.fence.samples,
            r.fence.excused,
            r.violations.len()
        );
        for v in &r.violations {
            println!("  VIOLATION {v}");
        }
        if !r.violations.is_empty() {
            let path = std::env::temp_dir().join(format!("flotilla-chaos-seed-{seed}.history"));
            let text: Vec<String> = r.history.iter().map(|e| e.to_string()).collect();
            let _ = std::fs::write(&path, text.join("\n"));
            println!("  history: {}; agent logs: {:?}", path.display(), r.kept);
            failed_seeds.push(seed);
        }
        runs += 1;
        faults += r.faults.len();
        for f in &r.faults {
            let kind = f.split_whitespace().nth(1).unwrap_or("?").to_string();
            *kinds.entry(kind).or_insert(0usize) += 1;
        }
        samples += r.fence.samples;
        ops += r.ops;
        violations += r.violations.len();
        worst = worst.max(r.convergence.unwrap_or_default());
        let unknown_writes = r
            .history
            .iter()
            .filter(|e| matches!(e.outcome, Outcome::Unknown(_)))
            .count();
        debug_assert_eq!(unknown_writes, r.unknown);
        if expect_violation && !r.violations.is_empty() {
            break;
        }
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!(
        "chaos summary: {runs} runs, {faults} faults ({}), {ops} operations, {samples} fence samples, \
         {violations} violations (seeds {failed_seeds:?}), worst convergence {:.1}s",
        kinds.join(", "),
        worst.as_secs_f64()
    );
    match (expect_violation, violations > 0) {
        (false, false) | (true, true) => ExitCode::SUCCESS,
        (false, true) => ExitCode::FAILURE,
        (true, false) => {
            println!("the broken build was NOT caught");
            ExitCode::FAILURE
        }
    }
}
