use flotilla_types::DesiredState as Types;

use crate::v1::DesiredState as Proto;

super::mirror!(Types <=> Proto { Running, Shutdown });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        super::super::tests::round_trip::<Types, Proto>(Proto::ALL);
        assert_eq!(Proto::Shutdown.word(), "shutdown");
    }
}
