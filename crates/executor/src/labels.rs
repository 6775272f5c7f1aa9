//! Labels every container flotilla creates carries. On start-up the executor lists its
//! containers by them to adopt the ones the state still wants and remove the rest, so a
//! container without them is invisible to flotilla.

pub const LABEL_CLUSTER: &str = "flotilla.cluster";
pub const LABEL_NODE: &str = "flotilla.node";
pub const LABEL_SERVICE: &str = "flotilla.service";
pub const LABEL_TASK: &str = "flotilla.task";
pub const LABEL_SLOT: &str = "flotilla.slot";
