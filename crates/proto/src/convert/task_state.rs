use flotilla_types::TaskState as Types;

use crate::v1::TaskState as Proto;

super::mirror!(Types <=> Proto {
    Pending, Assigned, Starting, Running, Healthy, Unhealthy, Exited, Failed, Lost, Stopped,
});

impl Proto {
    /// Running, with or without a passed health check.
    pub fn is_up(self) -> bool {
        matches!(self, Proto::Running | Proto::Healthy)
    }
}
