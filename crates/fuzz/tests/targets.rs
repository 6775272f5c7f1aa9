//! CI's short fuzzing run: every target replays its corpus and its crash reproducers,
//! then runs a few thousand generated inputs (deterministic seed). A longer run is
//! scripts/fuzz.sh (docs/FUZZING.md).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use flotilla_fuzz::harness;

/// Generated inputs per target; `FLOTILLA_FUZZ_CASES` changes it.
fn cases() -> u64 {
    std::env::var("FLOTILLA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000)
}

fn failure(target: &flotilla_fuzz::Target, data: &[u8]) -> Option<String> {
    let e = catch_unwind(AssertUnwindSafe(|| (target.run)(data))).err()?;
    Some(
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    )
}

fn check(name: &str) {
    let target = flotilla_fuzz::target(name).expect("a target");
    let corpus = harness::files(&harness::corpus_dir(name));
    assert!(!corpus.is_empty(), "crates/fuzz/corpus/{name} holds no seed");
    for (file, data) in &corpus {
        if let Some(reason) = failure(target, data) {
            panic!("crates/fuzz/corpus/{name}/{file} fails: {reason}");
        }
    }
    let known = harness::known_crashes();
    for (file, data) in harness::files(&harness::crashes_dir(name)) {
        let why = known.get(&(name.to_string(), file.clone()));
        match (failure(target, &data), why) {
            (Some(reason), None) => panic!("crates/fuzz/crashes/{name}/{file} fails: {reason}"),
            (None, Some(why)) => panic!(
                "crates/fuzz/crashes/{name}/{file} passes now (it showed: {why}): delete its line from \
                 crates/fuzz/crashes/KNOWN"
            ),
            (Some(_), Some(why)) => eprintln!("known, not fixed yet: crashes/{name}/{file}: {why}"),
            (None, None) => {}
        }
    }
    let seeds = harness::seed_files(name).into_iter().map(|(_, b)| b).collect();
    let outcome = harness::run(target, seeds, cases(), Duration::from_secs(120), 0x5eed, |_, _| {});
    if let Some(crash) = outcome.crash {
        panic!(
            "target {name} crashed: {}\ninput ({} bytes, save it as crates/fuzz/crashes/{name}/{}): {:?}",
            crash.reason,
            crash.input.len(),
            harness::crash_name(&crash.input),
            String::from_utf8_lossy(&crash.input)
        );
    }
    assert_eq!(outcome.executions, cases());
}

#[test]
fn known_crashes_name_files_that_exist() {
    for (target, file) in harness::known_crashes().keys() {
        assert!(
            flotilla_fuzz::target(target).is_some(),
            "crashes/KNOWN: no target {target}"
        );
        assert!(
            harness::crashes_dir(target).join(file).is_file(),
            "crashes/KNOWN names crashes/{target}/{file}, which does not exist"
        );
    }
}

#[test]
fn spec() {
    check("spec");
}

#[test]
fn raft() {
    check("raft");
}

#[test]
fn snapshot_header() {
    check("snapshot_header");
}

#[test]
fn agent_request() {
    check("agent_request");
}

#[test]
fn client_request() {
    check("client_request");
}

#[test]
fn credentials() {
    check("credentials");
}

#[test]
fn dns() {
    check("dns");
}

#[test]
fn every_target_has_a_test_here() {
    let tested = [
        "spec",
        "raft",
        "snapshot_header",
        "agent_request",
        "client_request",
        "credentials",
        "dns",
    ];
    let all: Vec<&str> = flotilla_fuzz::TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(all, tested);
}

#[test]
fn empty_and_tiny_inputs_are_fine() {
    for target in flotilla_fuzz::TARGETS {
        (target.run)(b"");
        for b in 0..=255u8 {
            (target.run)(&[b]);
            (target.run)(&[b, 0]);
        }
    }
}
