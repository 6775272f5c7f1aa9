use flotilla_types::StopReason as Types;

use crate::v1::StopReason as Proto;

super::mirror!(Types <=> Proto {
    ScaleDown, ServiceDeleted, Unhealthy, Outdated, Drained, NodeDown, Removed, Completed, Rebalanced, Fenced,
});
