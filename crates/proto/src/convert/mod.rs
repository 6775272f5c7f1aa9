//! proto <-> flotilla-types conversions, one file per type.
//!
//! Every proto enum has an `UNSPECIFIED = 0` value: what a field holds when the sender
//! did not set it, or set a value this build does not know. Converting it to a
//! flotilla-types value fails with [`Unspecified`]; its `word()` is empty.

mod apply_outcome;
mod batch_state;
mod desired_state;
mod failure_action;
mod member_role;
mod node;
mod node_availability;
mod node_status;
mod report;
mod rollout_action;
mod rollout_phase;
mod service;
mod spec_document;
mod stop_reason;
mod task;
mod task_state;
mod update_order;

pub use spec_document::{parse_spec_document, spec_document};

/// A proto enum field was UNSPECIFIED (or held an unknown value) where a value is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} is unspecified or not known to this version")]
pub struct Unspecified(pub &'static str);

/// The words a proto enum is shown and written as (by the CLI, in `-o json`, in texts):
/// `word()`, its inverse `from_word()` (UNSPECIFIED for any other text) and `ALL` the
/// specified values.
macro_rules! words {
    ($proto:ident { $($v:ident => $w:expr),+ $(,)? }) => {
        impl $proto {
            /// Every value but UNSPECIFIED.
            pub const ALL: &'static [$proto] = &[$($proto::$v),+];

            /// How the CLI says it; empty when unspecified.
            pub fn word(self) -> &'static str {
                match self {
                    $($proto::$v => $w,)+
                    $proto::Unspecified => "",
                }
            }

            /// The value whose `word()` is `word`; UNSPECIFIED for any other text.
            pub fn from_word(word: &str) -> Self {
                Self::ALL.iter().copied().find(|p| p.word() == word).unwrap_or($proto::Unspecified)
            }
        }

        #[cfg(test)]
        mod words_tests {
            #[test]
            fn every_word_reads_back() {
                for p in super::$proto::ALL {
                    assert!(!p.word().is_empty());
                    assert_eq!(super::$proto::from_word(p.word()), *p);
                }
                assert_eq!(super::$proto::from_word("no such word"), super::$proto::Unspecified);
            }
        }
    };
}

/// A proto enum mirroring a flotilla-types enum variant for variant (both matches are
/// exhaustive, so a variant added on one side only does not compile); its words are the
/// flotilla-types `as_str`.
macro_rules! mirror {
    ($types:ident <=> $proto:ident { $($v:ident),+ $(,)? }) => {
        impl From<$types> for $proto {
            fn from(v: $types) -> Self {
                match v {
                    $($types::$v => $proto::$v,)+
                }
            }
        }

        impl TryFrom<$proto> for $types {
            type Error = $crate::convert::Unspecified;

            fn try_from(v: $proto) -> Result<Self, Self::Error> {
                match v {
                    $($proto::$v => Ok($types::$v),)+
                    $proto::Unspecified => Err($crate::convert::Unspecified(stringify!($proto))),
                }
            }
        }

        $crate::convert::words!($proto { $($v => $types::$v.as_str()),+ });

        #[cfg(test)]
        mod mirror_tests {
            #[test]
            fn round_trips() {
                $crate::convert::tests::round_trip::<super::$types, super::$proto>(super::$proto::ALL);
            }
        }
    };
}

pub(crate) use {mirror, words};

#[cfg(test)]
pub(crate) mod tests {
    /// Every value of a mirrored enum survives types -> proto -> types and its word.
    pub fn round_trip<T, P>(all: &[P])
    where
        T: TryFrom<P> + Copy + PartialEq + std::fmt::Debug,
        <T as TryFrom<P>>::Error: std::fmt::Debug,
        P: From<T> + Copy + PartialEq + std::fmt::Debug + Default,
    {
        assert!(!all.is_empty());
        for &p in all {
            let t = T::try_from(p).expect("a specified value converts");
            assert_eq!(P::from(t), p);
        }
        assert!(T::try_from(P::default()).is_err(), "UNSPECIFIED converts to nothing");
    }

    /// The words are what the CLI printed when these fields were strings: its tables and
    /// `-o json|yaml` output must not change.
    #[test]
    fn words_are_the_strings_the_wire_had() {
        use crate::v1::*;
        fn said<P: Copy>(all: &[P], word: fn(P) -> &'static str) -> String {
            all.iter().map(|p| word(*p)).collect::<Vec<_>>().join(",")
        }
        assert_eq!(
            said(TaskState::ALL, TaskState::word),
            "pending,assigned,starting,running,healthy,unhealthy,exited,failed,lost,stopped"
        );
        assert_eq!(said(DesiredState::ALL, DesiredState::word), "running,shutdown");
        assert_eq!(
            said(StopReason::ALL, StopReason::word),
            "scaled down,service deleted,unhealthy,replaced by a newer version,node drained,node down,removed,completed,moved to even out the spread,fenced: its node was cut off from the leader"
        );
        assert_eq!(
            said(NodeAvailability::ALL, NodeAvailability::word),
            "active,pause,drain"
        );
        assert_eq!(said(NodeStatus::ALL, NodeStatus::word), "ready,down");
        assert_eq!(
            said(MemberRole::ALL, MemberRole::word),
            "leader,follower,candidate,learner,shutdown"
        );
        assert_eq!(
            said(RolloutPhase::ALL, RolloutPhase::word),
            "none,updating,rolling-back,completed,rolled-back"
        );
        assert_eq!(
            said(BatchState::ALL, BatchState::word),
            "updating,monitoring,done,failed,rolled-back,replaced"
        );
        assert_eq!(said(UpdateOrder::ALL, UpdateOrder::word), "stop-first,start-first");
        assert_eq!(said(FailureAction::ALL, FailureAction::word), "pause,rollback,continue");
        assert_eq!(said(RolloutAction::ALL, RolloutAction::word), "pause,resume,undo");
        // Unset fields show nothing (a task not asked to stop, an unreachable member).
        assert_eq!(StopReason::Unspecified.word(), "");
        assert_eq!(MemberRole::Unspecified.word(), "");
    }
}
