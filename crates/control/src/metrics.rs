//! What the leader's loops count for `/metrics`: handles into the node's registry (the
//! node registers them; cloning a handle shares the series).

use prometheus_client::metrics::counter::Counter;
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
}

impl Default for ControlMetrics {
    fn default() -> Self {
        ControlMetrics {
            // 0.1 ms .. ~3 s.
            pass_duration: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            placements: Counter::default(),
            restarts: Counter::default(),
            nodes_down: Counter::default(),
        }
    }
}
