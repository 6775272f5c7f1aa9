//! A Wing–Gong–Lowe linearizability checker for one service's history.
//!
//! Depth-first search over the order in which operations take effect: an operation can
//! take effect next only if it was invoked before every not-yet-placed completed
//! operation returned (real-time order). Completed operations must all be placed; an
//! operation with an unknown outcome may be placed anywhere after its invoke, or never.
//! Failed operations never happened and are left out. Configurations already explored
//! (set of placed operations, model state) are remembered (Lowe's memoisation), so the
//! search is exponential only in the true concurrency of the history.

use std::collections::HashSet;

use super::history::{Entry, Op, Outcome, Ret};
use super::model::Service;

/// Explored configurations after which the search gives up (inconclusive, not a pass).
const BUDGET: u64 = 5_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order works; `detail` names the furthest the search got.
    NotLinearizable {
        detail: String,
    },
    Inconclusive {
        explored: u64,
    },
}

struct Call {
    op: Op,
    invoke: u64,
    /// `u64::MAX` when the outcome is unknown.
    ret: u64,
    answer: Option<Ret>,
    text: String,
}

struct Search<'a> {
    calls: &'a [Call],
    placed: Vec<bool>,
    memo: HashSet<(Vec<u64>, Service)>,
    explored: u64,
    /// The most completed calls placed in one branch, with the state and order there.
    best: (usize, Service, Vec<usize>),
    order: Vec<usize>,
}

/// Checks one service's history (entries of other services are ignored by the caller).
pub fn check(entries: &[Entry]) -> Verdict {
    let mut calls: Vec<Call> = entries
        .iter()
        .filter_map(|e| {
            let (ret, answer) = match &e.outcome {
                Outcome::Ok(r) => (e.ret, Some(r.clone())),
                Outcome::Unknown(_) if e.op != Op::Get => (u64::MAX, None),
                // A read without an answer, or an operation that never ran, says nothing.
                Outcome::Unknown(_) | Outcome::Fail(_) => return None,
            };
            Some(Call {
                op: e.op.clone(),
                invoke: e.invoke,
                ret,
                answer,
                text: e.to_string(),
            })
        })
        .collect();
    calls.sort_by_key(|c| c.invoke);
    // Deep histories recurse deeply: search on a thread with room for it.
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn_scoped(s, || run(&calls))
            .expect("checker thread")
            .join()
            .expect("checker panicked")
    })
}

fn run(calls: &[Call]) -> Verdict {
    let completed = calls.iter().filter(|c| c.answer.is_some()).count();
    let mut search = Search {
        calls,
        placed: vec![false; calls.len()],
        memo: HashSet::new(),
        explored: 0,
        best: (0, Service::default(), Vec::new()),
        order: Vec::new(),
    };
    match search.dfs(&Service::default(), completed) {
        Some(true) => Verdict::Linearizable,
        None => Verdict::Inconclusive {
            explored: search.explored,
        },
        Some(false) => {
            let (done, state, order) = &search.best;
            let tail: Vec<&str> = order
                .iter()
                .rev()
                .take(5)
                .rev()
                .map(|i| calls[*i].text.as_str())
                .collect();
            let blocked: Vec<&str> = calls
                .iter()
                .enumerate()
                .filter(|(i, c)| c.answer.is_some() && !order.contains(i))
                .take(4)
                .map(|(_, c)| c.text.as_str())
                .collect();
            Verdict::NotLinearizable {
                detail: format!(
                    "at most {done} of {completed} completed operations linearize; then the \
                     state is {state:?}\n      last placed:\n        {}\n      next completed \
                     operations, none of which fits:\n        {}",
                    tail.join("\n        "),
                    blocked.join("\n        ")
                ),
            }
        }
    }
}

impl Search<'_> {
    /// `Some(true)`: the remaining calls linearize from `state`; `None`: out of budget.
    fn dfs(&mut self, state: &Service, left: usize) -> Option<bool> {
        if left == 0 {
            return Some(true);
        }
        self.explored += 1;
        if self.explored > BUDGET {
            return None;
        }
        // Versions never go down: a completed call that names a version below the current
        // one can no longer be placed, so this branch is dead (prunes the unknown writes
        // that would otherwise be tried in every subset).
        let stuck = self
            .calls
            .iter()
            .zip(&self.placed)
            .filter(|(_, p)| !**p)
            .filter_map(|(c, _)| c.answer.as_ref().and_then(Ret::version))
            .any(|v| v < state.version);
        if stuck {
            return Some(false);
        }
        let key = (self.bits(), state.clone());
        if !self.memo.insert(key) {
            return Some(false);
        }
        let done = self.order.iter().filter(|i| self.calls[**i].answer.is_some()).count();
        if done > self.best.0 || self.best.2.is_empty() {
            self.best = (done, state.clone(), self.order.clone());
        }
        let horizon = self
            .calls
            .iter()
            .zip(&self.placed)
            .filter(|(c, p)| !**p && c.answer.is_some())
            .map(|(c, _)| c.ret)
            .min()
            .unwrap_or(u64::MAX);
        // Completed calls first: they must be placed anyway, unknown ones only may be.
        let candidates: Vec<usize> = (0..self.calls.len())
            .take_while(|i| self.calls[*i].invoke <= horizon)
            .filter(|i| !self.placed[*i])
            .collect();
        let (done_first, maybe): (Vec<usize>, Vec<usize>) =
            candidates.into_iter().partition(|i| self.calls[*i].answer.is_some());
        for i in done_first.into_iter().chain(maybe) {
            let call = &self.calls[i];
            let Some(next) = state.step(&call.op, call.answer.as_ref()) else {
                continue;
            };
            self.placed[i] = true;
            self.order.push(i);
            let left = left - usize::from(call.answer.is_some());
            let found = self.dfs(&next, left);
            self.placed[i] = false;
            self.order.pop();
            if found != Some(false) {
                return found;
            }
        }
        Some(false)
    }

    fn bits(&self) -> Vec<u64> {
        let mut bits = vec![0u64; self.placed.len().div_ceil(64)];
        for (i, p) in self.placed.iter().enumerate() {
            if *p {
                bits[i / 64] |= 1 << (i % 64);
            }
        }
        bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(invoke: u64, ret: u64, op: Op, outcome: Outcome) -> Entry {
        Entry {
            client: 0,
            service: "s".into(),
            op,
            invoke,
            ret,
            outcome,
        }
    }

    fn put(v: &str, r: u32) -> Op {
        Op::Put {
            value: v.into(),
            replicas: r,
        }
    }

    fn ok(r: Ret) -> Outcome {
        Outcome::Ok(r)
    }

    fn read(version: u64, value: &str, replicas: u32) -> Outcome {
        ok(Ret::Read {
            version,
            value: value.into(),
            replicas,
        })
    }

    #[test]
    fn a_sequential_history_linearizes() {
        let h = vec![
            e(0, 1, put("a", 1), ok(Ret::Created(1))),
            e(2, 3, Op::Scale { replicas: 2 }, ok(Ret::Scaled(2))),
            e(4, 5, put("a", 2), ok(Ret::Unchanged(2))),
            e(6, 7, Op::Get, read(2, "a", 2)),
            e(8, 9, Op::Delete, ok(Ret::Deleted(2))),
            e(10, 11, Op::Get, ok(Ret::NotFound)),
            e(12, 13, put("b", 1), ok(Ret::Created(3))),
        ];
        assert_eq!(check(&h), Verdict::Linearizable);
    }

    #[test]
    fn concurrent_writes_may_take_effect_in_either_order() {
        // Two overlapping puts; the one that returned first took effect second.
        let h = vec![
            e(0, 10, put("a", 1), ok(Ret::Created(1))),
            e(1, 5, put("b", 1), ok(Ret::Updated(2))),
            e(11, 12, Op::Get, read(2, "b", 1)),
        ];
        assert_eq!(check(&h), Verdict::Linearizable);
    }

    #[test]
    fn an_unknown_write_may_have_happened_or_not() {
        let happened = vec![
            e(0, 1, put("a", 1), ok(Ret::Created(1))),
            e(2, 3, put("b", 1), Outcome::Unknown("timeout".into())),
            e(20, 21, Op::Get, read(2, "b", 1)),
        ];
        assert_eq!(check(&happened), Verdict::Linearizable);
        let did_not = vec![
            e(0, 1, put("a", 1), ok(Ret::Created(1))),
            e(2, 3, put("b", 1), Outcome::Unknown("timeout".into())),
            e(20, 21, Op::Get, read(1, "a", 1)),
        ];
        assert_eq!(check(&did_not), Verdict::Linearizable);
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        let h = vec![
            e(0, 1, put("a", 1), ok(Ret::Created(1))),
            e(2, 3, put("b", 1), ok(Ret::Updated(2))),
            e(4, 5, Op::Get, read(1, "a", 1)),
        ];
        assert!(matches!(check(&h), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn a_stale_read_after_a_newer_read_is_caught() {
        // Both reads overlap the write, but real time orders the reads.
        let h = vec![
            e(0, 1, put("a", 1), ok(Ret::Created(1))),
            e(2, 20, put("b", 1), ok(Ret::Updated(2))),
            e(3, 4, Op::Get, read(2, "b", 1)),
            e(5, 6, Op::Get, read(1, "a", 1)),
        ];
        assert!(matches!(check(&h), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn a_value_nobody_wrote_or_a_reused_version_is_caught() {
        let never_written = vec![
            e(0, 1, put("a", 1), ok(Ret::Created(1))),
            e(2, 3, Op::Get, read(2, "z", 1)),
        ];
        assert!(matches!(check(&never_written), Verdict::NotLinearizable { .. }));
        // Two acknowledged changes with the same version: one of them was not committed
        // where the other was (the early-ack bug).
        let reused = vec![
            e(0, 1, put("a", 1), ok(Ret::Created(1))),
            e(2, 3, put("b", 1), ok(Ret::Updated(2))),
            e(4, 5, put("c", 1), ok(Ret::Updated(2))),
        ];
        assert!(matches!(check(&reused), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn a_failed_operation_must_not_show() {
        let h = vec![
            e(0, 1, put("a", 1), ok(Ret::Created(1))),
            e(2, 3, Op::Delete, Outcome::Fail("refused".into())),
            e(4, 5, Op::Get, ok(Ret::NotFound)),
        ];
        assert!(matches!(check(&h), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn many_unknown_writes_stay_tractable() {
        let mut h = vec![e(0, 1, put("v0", 1), ok(Ret::Created(1)))];
        for i in 1..40u64 {
            h.push(e(
                i * 10,
                i * 10 + 5,
                put(&format!("v{i}"), 1),
                Outcome::Unknown("timeout".into()),
            ));
        }
        h.push(e(1000, 1001, Op::Get, read(3, "v39", 1)));
        assert_eq!(check(&h), Verdict::Linearizable);
    }
}
