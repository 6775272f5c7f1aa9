//! The seed corpus and the libFuzzer dictionaries are made from real messages
//! (flotilla_fuzz::seeds): `cargo test -p flotilla-fuzz --test seeds -- --ignored` writes
//! them again. The other tests check that every message of every target has a seed.

use std::path::Path;

use flotilla_fuzz::{harness, seeds, TARGETS};

/// A libFuzzer dictionary: one quoted token a line.
fn dict_text(tokens: &[Vec<u8>]) -> String {
    let mut out = String::from("# Written by `cargo test -p flotilla-fuzz --test seeds -- --ignored`.\n");
    for t in tokens {
        out.push('"');
        for &b in t {
            match b {
                b'"' | b'\\' => out.push_str(&format!("\\{}", b as char)),
                0x20..=0x7e => out.push(b as char),
                _ => out.push_str(&format!("\\x{b:02X}")),
            }
        }
        out.push_str("\"\n");
    }
    out
}

fn dict_path(target: &str) -> std::path::PathBuf {
    harness::crate_dir().join("fuzz/dict").join(format!("{target}.dict"))
}

fn dictionary(target: &flotilla_fuzz::Target) -> Vec<Vec<u8>> {
    let seeds: Vec<Vec<u8>> = harness::files(&harness::corpus_dir(target.name))
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    harness::dictionary(target, &seeds)
}

#[test]
#[ignore = "writes crates/fuzz/corpus and crates/fuzz/fuzz/dict"]
fn write_seeds() {
    for target in TARGETS {
        let dir = harness::corpus_dir(target.name);
        std::fs::create_dir_all(&dir).unwrap();
        // Seeds already there stay as they are (their keys and tokens are random): only
        // new ones are written, unless FLOTILLA_FUZZ_RESEED=1.
        let again = std::env::var("FLOTILLA_FUZZ_RESEED").is_ok_and(|v| v == "1");
        for (name, bytes) in seeds::seeds(target) {
            let path = dir.join(&name);
            if again || !path.exists() {
                eprintln!("writing corpus/{}/{name}", target.name);
                std::fs::write(path, bytes).unwrap();
            }
        }
        let crashes = harness::crashes_dir(target.name);
        std::fs::create_dir_all(&crashes).unwrap();
        let keep = crashes.join(".gitkeep");
        if !keep.exists() {
            std::fs::write(keep, "").unwrap();
        }
        let dict = dict_path(target.name);
        std::fs::create_dir_all(dict.parent().unwrap()).unwrap();
        std::fs::write(dict, dict_text(&dictionary(target))).unwrap();
    }
}

#[test]
fn every_message_has_a_seed() {
    for target in TARGETS {
        let files = harness::files(&harness::corpus_dir(target.name));
        for (i, m) in target.messages.iter().enumerate() {
            let seeded = files
                .iter()
                .any(|(_, b)| !target.selects() || b.first().is_some_and(|&c| c as usize == i));
            assert!(
                seeded,
                "crates/fuzz/corpus/{} has no seed for {}: run `cargo test -p flotilla-fuzz --test seeds -- --ignored`",
                target.name, m.name
            );
        }
    }
}

#[test]
fn seeds_made_now_are_all_decoded() {
    // Every generated seed goes through its target (seeds use real keys, so this also
    // checks the CA, tokens and CSRs they hold).
    for target in TARGETS {
        for (name, bytes) in seeds::seeds(target) {
            assert!(!bytes.is_empty(), "{}/{name}", target.name);
            (target.run)(&bytes);
        }
    }
}

#[test]
fn dictionaries_hold_the_target_tokens() {
    for target in TARGETS {
        let path = dict_path(target.name);
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        for token in target.tokens {
            let line = dict_text(&[token.as_bytes().to_vec()]);
            let line = line.lines().last().unwrap_or_default();
            assert!(
                have.lines().any(|l| l == line),
                "{} lacks {line}: run `cargo test -p flotilla-fuzz --test seeds -- --ignored`",
                Path::new("crates/fuzz/fuzz/dict")
                    .join(format!("{}.dict", target.name))
                    .display()
            );
        }
    }
}
