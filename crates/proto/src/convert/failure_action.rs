use flotilla_types::FailureAction as Types;

use crate::v1::FailureAction as Proto;

super::mirror!(Types <=> Proto { Pause, Rollback, Continue });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        super::super::tests::round_trip::<Types, Proto>(Proto::ALL);
        assert_eq!(Proto::from_word("rollback"), Proto::Rollback);
    }
}
