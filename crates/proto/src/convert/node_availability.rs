use flotilla_types::Availability as Types;

use crate::v1::NodeAvailability as Proto;

super::mirror!(Types <=> Proto { Active, Pause, Drain });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        super::super::tests::round_trip::<Types, Proto>(Proto::ALL);
        assert_eq!(Proto::Drain.word(), "drain");
    }
}
