//! The state of one rollout batch, as flotilla-scheduler's rollout report names it.

use crate::v1::BatchState;

super::words!(BatchState {
    Updating => "updating",
    Monitoring => "monitoring",
    Done => "done",
    Failed => "failed",
    RolledBack => "rolled-back",
    Replaced => "replaced",
});
