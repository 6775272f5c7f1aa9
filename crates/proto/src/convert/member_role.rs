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
