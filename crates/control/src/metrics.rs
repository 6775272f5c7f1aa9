//! What the leader's loops count for `/metrics`: handles into the node's registry (the
//! node registers them; cloning a handle shares the series).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

#[derive(Clone)]
pub struct ControlMetrics {
    /// One scheduling pass: reading the view, planning, and proposing the plan when there
    /// is one, in seconds.
    pub pass_duration: Histogram,
    /// Tasks given a node by a pass (new tasks placed at once, and pending tasks placed).
    pub placements: Counter,
    /// New tasks that restart a slot after a failure (attempt > 0).
    pub restarts: Counter,
    /// Nodes a pass marked down.
    pub nodes_down: Counter,
    /// Leader loops that panicked (and were started again), by loop.
    pub loop_panics: Family<LoopLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoopLabel {
    /// `scheduler`, `membership`, …
    pub r#loop: String,
}

impl Default for ControlMetrics {
    fn default() -> Self {
        ControlMetrics {
            // 0.1 ms .. ~3 s.
            pass_duration: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            placements: Counter::default(),
            restarts: Counter::default(),
            nodes_down: Counter::default(),
            loop_panics: Family::default(),
        }
    }
}
