//! The sequential specification of one service, as `flotilla_types::State` implements it:
//! versions start at 1 and grow by one on every change, also across delete and re-create;
//! an identical apply or a scale to the same count changes nothing; delete keeps the
//! version (the re-created service continues from it).

use super::history::{Op, Ret};

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Service {
    /// The last version the service had (0: never created).
    pub version: u64,
    /// `(value, replicas)` while it exists.
    pub live: Option<(String, u32)>,
}

impl Service {
    /// Applies `op`; returns the next state if `ret` is what the specification answers
    /// (any answer when `ret` is `None`: an operation whose result is unknown).
    pub fn step(&self, op: &Op, ret: Option<&Ret>) -> Option<Service> {
        let (next, expected) = self.apply(op);
        match ret {
            None => Some(next),
            Some(r) if *r == expected => Some(next),
            Some(_) => None,
        }
    }

    /// The next state and the answer the specification gives.
    pub fn apply(&self, op: &Op) -> (Service, Ret) {
        let mut next = self.clone();
        let ret = match (op, &self.live) {
            (Op::Put { value, replicas }, Some(cur)) if *cur == (value.clone(), *replicas) => {
                Ret::Unchanged(self.version)
            }
            (Op::Put { value, replicas }, live) => {
                next.version += 1;
                next.live = Some((value.clone(), *replicas));
                if live.is_some() {
                    Ret::Updated(next.version)
                } else {
                    Ret::Created(next.version)
                }
            }
            (Op::Scale { .. } | Op::Delete | Op::Get, None) => Ret::NotFound,
            (Op::Scale { replicas }, Some((value, cur))) => {
                if cur != replicas {
                    next.version += 1;
                    next.live = Some((value.clone(), *replicas));
                }
                Ret::Scaled(next.version)
            }
            (Op::Delete, Some(_)) => {
                next.live = None;
                Ret::Deleted(self.version)
            }
            (Op::Get, Some((value, replicas))) => Ret::Read {
                version: self.version,
                value: value.clone(),
                replicas: *replicas,
            },
        };
        (next, ret)
    }
}
