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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        super::super::tests::round_trip::<Types, Proto>(Proto::ALL);
        for p in Proto::ALL {
            assert_eq!(Proto::from_word(p.word()), *p);
        }
        assert_eq!(Proto::Healthy.word(), "healthy");
        assert_eq!(Proto::from_word("nonsense"), Proto::Unspecified);
    }
}
