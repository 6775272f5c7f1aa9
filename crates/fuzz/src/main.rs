//! `flotilla-fuzz TARGET [--runs N] [--seconds S] [--seed N]`: the stable fuzzing harness
//! (proptest, no nightly). Starts from `corpus/TARGET/` and `crashes/TARGET/` (less the
//! known reproducers of `crashes/KNOWN`), stops at
//! N executions, S seconds or the first crash, whose input it writes to
//! `crashes/TARGET/` (or `--crashes DIR`). Its last line is the summary scripts/fuzz.sh
//! reads. `flotilla-fuzz list` names the targets; `flotilla-fuzz replay TARGET FILE…`
//! runs files once.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use flotilla_fuzz::harness;

const USAGE: &str = "usage: flotilla-fuzz TARGET [--runs N] [--seconds S] [--seed N] [--corpus DIR]... [--crashes DIR]
       flotilla-fuzz replay TARGET FILE...
       flotilla-fuzz list
defaults: 10000000 runs, 1800 seconds, seed 0; corpus crates/fuzz/corpus/TARGET and crates/fuzz/crashes/TARGET";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("flotilla-fuzz: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn target(name: Option<&String>) -> Result<&'static flotilla_fuzz::Target, String> {
    let name = name.ok_or("no target given")?;
    flotilla_fuzz::target(name).ok_or_else(|| {
        let all: Vec<_> = flotilla_fuzz::TARGETS.iter().map(|t| t.name).collect();
        format!("no target {name:?}; the targets are {}", all.join(", "))
    })
}

fn run(args: Vec<String>) -> Result<ExitCode, String> {
    match args.first().map(String::as_str) {
        None | Some("-h" | "--help") => {
            println!("{USAGE}");
            return Ok(ExitCode::SUCCESS);
        }
        Some("list") => {
            for t in flotilla_fuzz::TARGETS {
                println!("{}", t.name);
            }
            return Ok(ExitCode::SUCCESS);
        }
        Some("replay") => {
            let t = target(args.get(1))?;
            for file in &args[2..] {
                let data = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
                (t.run)(&data);
                println!("{file}: ok");
            }
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let t = target(args.first())?;
    let mut runs: u64 = 10_000_000;
    let mut seconds: f64 = 1800.0;
    let mut seed: u64 = 0;
    let mut corpora: Vec<PathBuf> = Vec::new();
    let mut crashes = harness::crashes_dir(t.name);
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let mut value = || rest.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--runs" => runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--seconds" => seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--seed" => seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--corpus" => corpora.push(value()?.into()),
            "--crashes" => crashes = value()?.into(),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    // The corpus and the reproducers (less the known ones: crashes/KNOWN), or the
    // directories given.
    let seeds: Vec<Vec<u8>> = if corpora.is_empty() {
        harness::seed_files(t.name).into_iter().map(|(_, b)| b).collect()
    } else {
        corpora.iter().flat_map(|d| harness::files(d)).map(|(_, b)| b).collect()
    };
    eprintln!(
        "flotilla-fuzz: {} from {} seeds, at most {runs} runs or {seconds} s (seed {seed})",
        t.name,
        seeds.len()
    );
    // Shrinking runs the target on many failing inputs: keep their panic messages quiet
    // (proptest keeps the last one as the failure's reason).
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = harness::run(
        t,
        seeds,
        runs,
        Duration::from_secs_f64(seconds.max(0.0)),
        seed,
        |n, at| eprintln!("  {n} executions in {:.0} s", at.as_secs_f64()),
    );
    let _ = std::panic::take_hook();
    let crashed = outcome.crash.is_some();
    if let Some(crash) = &outcome.crash {
        std::fs::create_dir_all(&crashes).map_err(|e| format!("{}: {e}", crashes.display()))?;
        let path = crashes.join(harness::crash_name(&crash.input));
        std::fs::write(&path, &crash.input).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!(
            "flotilla-fuzz: CRASH in {}: {}\n  reproducer: {} ({} bytes)\n  replay: cargo run -p flotilla-fuzz -- replay {} {}",
            t.name,
            crash.reason,
            path.display(),
            crash.input.len(),
            t.name,
            path.display()
        );
    }
    println!(
        "flotilla-fuzz: target={} executions={} seconds={:.1} exec_per_sec={:.0} crashes={}",
        t.name,
        outcome.executions,
        outcome.elapsed.as_secs_f64(),
        outcome.per_second(),
        u8::from(crashed)
    );
    Ok(if crashed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
