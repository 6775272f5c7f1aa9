use flotilla_types::NodeStatus as Types;

use crate::v1::NodeStatus as Proto;

super::mirror!(Types <=> Proto { Ready, Down });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        super::super::tests::round_trip::<Types, Proto>(Proto::ALL);
        assert_eq!(Proto::Ready.word(), "ready");
    }
}
