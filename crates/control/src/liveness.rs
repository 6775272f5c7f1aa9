//! Heartbeat bookkeeping on the leader. Not replicated: a new leader starts every node's
//! timer from its own election, so a healthy node gets one full `node_timeout` of grace.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flotilla_types::NodeId;

pub struct Liveness {
    inner: Mutex<Inner>,
}

struct Inner {
    /// When this node last became leader; the default "last seen" of every node.
    epoch: Instant,
    last_seen: HashMap<NodeId, Instant>,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            inner: Mutex::new(Inner {
                epoch: Instant::now(),
                last_seen: HashMap::new(),
            }),
        }
    }
}

impl Liveness {
    pub fn beat(&self, id: NodeId) {
        self.lock().last_seen.insert(id, Instant::now());
    }

    /// Called on election: forget what an earlier term saw, start every timer now.
    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.epoch = Instant::now();
        inner.last_seen.clear();
    }

    /// Of `ids`, those not heard from for longer than `timeout`.
    pub fn silent(&self, ids: impl IntoIterator<Item = NodeId>, timeout: Duration) -> Vec<NodeId> {
        let inner = self.lock();
        let now = Instant::now();
        ids.into_iter()
            .filter(|id| {
                let last = inner.last_seen.get(id).copied().unwrap_or(inner.epoch);
                now.duration_since(last) > timeout
            })
            .collect()
    }

    /// How long each of `ids` has not been heard from (since this term began, for one
    /// not heard from in it).
    pub fn quiet_for(&self, ids: impl IntoIterator<Item = NodeId>) -> std::collections::BTreeMap<NodeId, Duration> {
        let inner = self.lock();
        let now = Instant::now();
        ids.into_iter()
            .map(|id| {
                let last = inner.last_seen.get(&id).copied().unwrap_or(inner.epoch);
                (id, now.duration_since(last))
            })
            .collect()
    }

    /// The earliest moment one of `ids` would become silent for longer than `timeout`.
    pub fn next_deadline(&self, ids: impl IntoIterator<Item = NodeId>, timeout: Duration) -> Option<Instant> {
        let inner = self.lock();
        ids.into_iter()
            .map(|id| inner.last_seen.get(&id).copied().unwrap_or(inner.epoch) + timeout)
            .min()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("liveness lock poisoned")
    }
}
