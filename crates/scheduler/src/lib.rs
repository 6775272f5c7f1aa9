//! flotilla-scheduler is PURE: `reconcile` decides which tasks to create, stop, mark lost
//! or forget, and `place` picks a node for each new task or says why none fits. Both take
//! plain data (time included) and return plain data. No tokio, rocksdb, tonic or clock.

mod place;
mod reconcile;
mod rollout;
mod view;

pub use place::{place, PendingTask, Plan, Reason, Unplaced};
pub use reconcile::{backoff, reconcile, Action, HISTORY_PER_SLOT};
pub use rollout::{rollout_report, BatchReport, RolloutReport};
pub use view::ClusterView;
