//! The stable harness: proptest generates inputs from the corpus (a seed, then a few byte
//! mutations: bit flips, inserted and deleted runs, splices of another seed, dictionary
//! tokens) and runs a target on each. A panic is a crash: proptest shrinks the mutations
//! to a small input, which [`run`] returns. Deterministic for a given seed.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};

use crate::Target;

/// Inputs grow no larger than this.
pub const MAX_LEN: usize = 64 << 10;

/// One byte mutation; positions are taken modulo the input's length.
#[derive(Debug, Clone)]
pub enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Set {
        at: usize,
        byte: u8,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Duplicate {
        from: usize,
        len: usize,
        at: usize,
    },
    Token {
        at: usize,
        token: usize,
        replace: bool,
    },
    Splice {
        at: usize,
        seed: usize,
        from: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        4 => (at, 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        2 => (at, any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        2 => (at, vec(any::<u8>(), 1..8)).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        3 => (at, 1usize..16).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => (at, 1usize..64, any::<usize>()).prop_map(|(from, len, at)| Mutation::Duplicate { from, len, at }),
        4 => (at, any::<usize>(), any::<bool>())
            .prop_map(|(at, token, replace)| Mutation::Token { at, token, replace }),
        2 => (at, any::<usize>(), any::<usize>(), 1usize..256)
            .prop_map(|(at, seed, from, len)| Mutation::Splice { at, seed, from, len }),
        1 => at.prop_map(|at| Mutation::Truncate { at }),
    ]
}

/// Applies `mutations` to seed `seed` (modulo the number of seeds).
pub fn mutate(seeds: &[Vec<u8>], dict: &[Vec<u8>], seed: usize, mutations: &[Mutation]) -> Vec<u8> {
    let mut d = if seeds.is_empty() {
        Vec::new()
    } else {
        seeds[seed % seeds.len()].clone()
    };
    for m in mutations {
        let pos = |at: usize, len: usize| at % (len + 1);
        match m {
            Mutation::Flip { at, bit } => {
                if !d.is_empty() {
                    let i = at % d.len();
                    d[i] ^= 1 << bit;
                }
            }
            Mutation::Set { at, byte } => {
                if !d.is_empty() {
                    let i = at % d.len();
                    d[i] = *byte;
                }
            }
            Mutation::Insert { at, bytes } => {
                let i = pos(*at, d.len());
                d.splice(i..i, bytes.iter().copied());
            }
            Mutation::Delete { at, len } => {
                if !d.is_empty() {
                    let i = at % d.len();
                    let end = (i + len).min(d.len());
                    d.drain(i..end);
                }
            }
            Mutation::Duplicate { from, len, at } => {
                if !d.is_empty() {
                    let i = from % d.len();
                    let run = d[i..(i + len).min(d.len())].to_vec();
                    let j = pos(*at, d.len());
                    d.splice(j..j, run);
                }
            }
            Mutation::Token { at, token, replace } => {
                if !dict.is_empty() {
                    let t = &dict[token % dict.len()];
                    let i = pos(*at, d.len());
                    let end = if *replace { (i + t.len()).min(d.len()) } else { i };
                    d.splice(i..end, t.iter().copied());
                }
            }
            Mutation::Splice { at, seed, from, len } => {
                if !seeds.is_empty() {
                    let other = &seeds[seed % seeds.len()];
                    if !other.is_empty() {
                        let i = from % other.len();
                        let run = &other[i..(i + len).min(other.len())];
                        let j = pos(*at, d.len());
                        d.splice(j..j, run.iter().copied());
                    }
                }
            }
            Mutation::Truncate { at } => {
                let i = pos(*at, d.len());
                d.truncate(i);
            }
        }
        d.truncate(MAX_LEN);
    }
    d
}

/// The inputs for `target`: mostly mutated seeds, some raw random bytes (behind a choice
/// byte, for a target that decodes several messages).
pub fn inputs(seeds: Arc<Vec<Vec<u8>>>, dict: Arc<Vec<Vec<u8>>>) -> impl Strategy<Value = Vec<u8>> {
    let n = seeds.len().max(1);
    let mutated = (0..n, vec(mutation(), 0..8)).prop_map(move |(seed, muts)| mutate(&seeds, &dict, seed, &muts));
    prop_oneof![
        19 => mutated,
        1 => vec(any::<u8>(), 0..128),
    ]
}

/// The tokens mutations insert: the target's own, and the words quoted or keyed in its
/// seeds (JSON keys and enum names, YAML keys).
pub fn dictionary(target: &Target, seeds: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut words: std::collections::BTreeSet<Vec<u8>> = target.tokens.iter().map(|t| t.as_bytes().to_vec()).collect();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    for seed in seeds {
        let mut i = 0;
        while i < seed.len() {
            if word(seed[i]) && (i == 0 || !word(seed[i - 1])) {
                let start = i;
                while i < seed.len() && word(seed[i]) {
                    i += 1;
                }
                let w = &seed[start..i];
                let before = start.checked_sub(1).map(|j| seed[j]);
                let after = seed.get(i).copied();
                let quoted = before == Some(b'"') && after == Some(b'"');
                let keyed = after == Some(b':');
                if (2..=32).contains(&w.len()) && (quoted || keyed) {
                    let mut token = w.to_vec();
                    if quoted {
                        token.insert(0, b'"');
                        token.push(b'"');
                    }
                    words.insert(token);
                }
            } else {
                i += 1;
            }
        }
    }
    words.into_iter().collect()
}

/// The files of a corpus or crash directory, sorted by name (none when it is missing).
pub fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| {
            Some((
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).ok()?,
            ))
        })
        .collect();
    out.sort();
    out
}

/// This crate's directory (corpus/, crashes/ and fuzz/ are in it).
pub fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn corpus_dir(target: &str) -> std::path::PathBuf {
    crate_dir().join("corpus").join(target)
}

pub fn crashes_dir(target: &str) -> std::path::PathBuf {
    crate_dir().join("crashes").join(target)
}

/// The reproducers of `crashes/KNOWN` (bugs not fixed yet): `(target, file)` and what
/// each shows.
pub fn known_crashes() -> std::collections::BTreeMap<(String, String), String> {
    let text = std::fs::read_to_string(crate_dir().join("crashes/KNOWN")).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (path, why) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            let (target, file) = path.split_once('/')?;
            Some(((target.to_string(), file.to_string()), why.trim().to_string()))
        })
        .collect()
}

/// What a run of `target` starts from: its corpus and its crash reproducers, less the
/// known ones (each would crash it at once).
pub fn seed_files(target: &str) -> Vec<(String, Vec<u8>)> {
    let known = known_crashes();
    let mut out = files(&corpus_dir(target));
    out.extend(
        files(&crashes_dir(target))
            .into_iter()
            .filter(|(f, _)| !known.contains_key(&(target.to_string(), f.clone()))),
    );
    out
}

/// A crash: the (shrunk) input and why it failed.
#[derive(Debug, Clone)]
pub struct Crash {
    pub input: Vec<u8>,
    pub reason: String,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Inputs run, shrinking included.
    pub executions: u64,
    pub elapsed: Duration,
    pub crash: Option<Crash>,
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        self.executions as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `target` on `runs` generated inputs or for `limit`, whichever comes first,
/// stopping at the first crash. `progress` is called about every ten seconds.
pub fn run(
    target: &Target,
    seeds: Vec<Vec<u8>>,
    runs: u64,
    limit: Duration,
    seed: u64,
    mut progress: impl FnMut(u64, Duration),
) -> Outcome {
    let dict = Arc::new(dictionary(target, &seeds));
    let strategy = inputs(Arc::new(seeds), dict);
    let executions = AtomicU64::new(0);
    let start = Instant::now();
    let mut last_report = start;
    let mut cases_done = 0u64;
    let mut chunk = 256u64;
    let mut round = 0u64;
    while cases_done < runs && start.elapsed() < limit {
        let cases = (runs - cases_done).min(chunk);
        let config = Config {
            cases: cases as u32,
            failure_persistence: None,
            max_shrink_iters: 4096,
            max_shrink_time: 60_000,
            ..Config::default()
        };
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&round.to_le_bytes());
        let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &key));
        let began = Instant::now();
        let result = runner.run(&strategy, |input| {
            executions.fetch_add(1, Ordering::Relaxed);
            (target.run)(&input);
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(TestError::Fail(reason, input)) => {
                return Outcome {
                    executions: executions.load(Ordering::Relaxed),
                    elapsed: start.elapsed(),
                    crash: Some(Crash {
                        input,
                        reason: reason.to_string(),
                    }),
                }
            }
            Err(TestError::Abort(reason)) => panic!("proptest aborted: {reason}"),
        }
        cases_done += cases;
        round += 1;
        // About half a second per round, so the time limit holds.
        let took = began.elapsed().as_secs_f64();
        chunk = if took < 0.25 {
            (chunk * 2).min(1 << 20)
        } else if took > 1.0 {
            (chunk / 2).max(16)
        } else {
            chunk
        };
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            progress(executions.load(Ordering::Relaxed), start.elapsed());
        }
    }
    Outcome {
        executions: executions.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        crash: None,
    }
}

/// A short file name for a crash input (FNV-1a of its bytes).
pub fn crash_name(input: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in input {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("crash-{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, Target};

    fn planted(data: &[u8]) {
        if data.windows(4).any(|w| w == b"boom") {
            panic!("planted crash");
        }
    }

    static PLANTED: Target = Target {
        name: "planted",
        messages: &[Message {
            name: "Planted",
            decode: planted,
        }],
        tokens: &["boom"],
        run: planted,
    };

    #[test]
    fn a_planted_crash_is_found_and_shrunk() {
        let outcome = run(
            &PLANTED,
            vec![b"hello world".to_vec()],
            100_000,
            Duration::from_secs(60),
            1,
            |_, _| {},
        );
        let crash = outcome.crash.expect("the crash is found");
        assert!(crash.reason.contains("planted crash"), "{}", crash.reason);
        assert!(crash.input.windows(4).any(|w| w == b"boom"));
        assert!(
            crash.input.len() <= b"hello world".len() + 4,
            "shrunk: {:?}",
            crash.input
        );
    }

    thread_local! {
        static SEEN: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    fn record(data: &[u8]) {
        SEEN.with(|s| s.borrow_mut().push(crash_name(data)));
    }

    static RECORD: Target = Target {
        name: "record",
        messages: &[Message {
            name: "Record",
            decode: record,
        }],
        tokens: &["image: "],
        run: record,
    };

    #[test]
    fn runs_are_deterministic_and_counted() {
        let seeds = vec![b"name: web\nimage: nginx\n".to_vec()];
        let mut inputs = Vec::new();
        for _ in 0..2 {
            SEEN.with(|s| s.borrow_mut().clear());
            let outcome = run(&RECORD, seeds.clone(), 300, Duration::from_secs(60), 7, |_, _| {});
            assert_eq!(outcome.executions, 300);
            assert!(outcome.crash.is_none());
            inputs.push(SEEN.with(|s| s.borrow().clone()));
        }
        assert_eq!(inputs[0].len(), 300);
        assert_eq!(inputs[0], inputs[1], "the same seed makes the same inputs");
        let distinct: std::collections::BTreeSet<_> = inputs[0].iter().collect();
        assert!(distinct.len() > 100, "inputs vary: {} distinct", distinct.len());
        let dict = dictionary(&RECORD, &seeds);
        assert!(dict.contains(&b"name".to_vec()) && dict.contains(&b"image: ".to_vec()));
    }

    #[test]
    fn mutations_stay_in_bounds() {
        let seeds = vec![b"abc".to_vec(), Vec::new()];
        let dict = vec![b"XY".to_vec()];
        let all = [
            Mutation::Flip { at: 99, bit: 7 },
            Mutation::Set { at: 5, byte: 0 },
            Mutation::Insert {
                at: usize::MAX,
                bytes: vec![1, 2],
            },
            Mutation::Delete { at: 1, len: 100 },
            Mutation::Duplicate { from: 7, len: 9, at: 3 },
            Mutation::Token {
                at: 0,
                token: 3,
                replace: true,
            },
            Mutation::Splice {
                at: 1,
                seed: 0,
                from: 2,
                len: 10,
            },
            Mutation::Truncate { at: 1 },
        ];
        for seed in 0..2 {
            for m in &all {
                let _ = mutate(&seeds, &dict, seed, std::slice::from_ref(m));
            }
            let _ = mutate(&seeds, &dict, seed, &all);
        }
        assert_eq!(mutate(&seeds, &dict, 0, &[Mutation::Truncate { at: 1 }]), b"a");
        assert_eq!(
            mutate(
                &seeds,
                &dict,
                0,
                &[Mutation::Token {
                    at: 1,
                    token: 0,
                    replace: false
                }]
            ),
            b"aXYbc"
        );
    }
}
