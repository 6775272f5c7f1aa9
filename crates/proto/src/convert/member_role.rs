//! A member's Raft role. The node maps openraft's server state to it (this crate does not
//! know openraft); unreachable members have none.

use crate::v1::MemberRole;

super::words!(MemberRole {
    Leader => "leader",
    Follower => "follower",
    Candidate => "candidate",
    Learner => "learner",
    Shutdown => "shutdown",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for r in MemberRole::ALL {
            assert_eq!(MemberRole::from_word(r.word()), *r);
        }
        assert_eq!(
            MemberRole::Unspecified.word(),
            "",
            "an unreachable member shows no role"
        );
    }
}
