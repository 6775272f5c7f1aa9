//! The state of one rollout batch, as flotilla-scheduler's rollout report names it.

use crate::v1::BatchState;

super::words!(BatchState {
    Updating => "updating",
    Monitoring => "monitoring",
    Done => "done",
    Failed => "failed",
    RolledBack => "rolled-back",
    Replaced => "replaced",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for s in BatchState::ALL {
            assert_eq!(BatchState::from_word(s.word()), *s);
        }
        assert_eq!(BatchState::from_word("rolled-back"), BatchState::RolledBack);
    }
}
