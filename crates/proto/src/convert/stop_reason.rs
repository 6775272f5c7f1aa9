use flotilla_types::StopReason as Types;

use crate::v1::StopReason as Proto;

super::mirror!(Types <=> Proto {
    ScaleDown, ServiceDeleted, Unhealthy, Outdated, Drained, NodeDown, Removed,
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        super::super::tests::round_trip::<Types, Proto>(Proto::ALL);
        assert_eq!(Proto::Outdated.word(), "replaced by a newer version");
        // A task not asked to stop has no reason: the CLI shows nothing.
        assert_eq!(Proto::Unspecified.word(), "");
    }
}
