use flotilla_types::UpdateOrder as Types;

use crate::v1::UpdateOrder as Proto;

super::mirror!(Types <=> Proto { StopFirst, StartFirst });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        super::super::tests::round_trip::<Types, Proto>(Proto::ALL);
        assert_eq!(Proto::from_word("start-first"), Proto::StartFirst);
    }
}
