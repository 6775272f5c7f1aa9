//! flotilla-scheduler is PURE: `plan` is one scheduling pass — `reconcile` decides which
//! tasks to create, stop, mark lost or forget, and `place` picks a node for each new or
//! waiting task or says why none fits. All take plain data (time included) and return
//! plain data: the `PlanUpdate` the leader proposes. No tokio, rocksdb, tonic or clock.

mod fence;
mod place;
mod plan;
mod rebalance;
mod reconcile;
mod rollout;
mod view;

pub use fence::{fence_waits, wait_left};
pub use place::{place, PendingTask, Placements, Reason, Unplaced};
pub use plan::plan;
pub use rebalance::{FAILED_MOVE_PAUSE, MOVES_IN_FLIGHT};
pub use reconcile::{backoff, reconcile, HISTORY_PER_SLOT};
pub use rollout::{rollout_report, BatchReport, MoveReport, RolloutReport};
pub use view::{ClusterView, Silence, NO_SILENCE};
