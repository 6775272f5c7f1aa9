//! A rollout's phase; NONE is a service that never had a template change (no rollout
//! record), which flotilla-types has as `Option::None`.

use flotilla_types::RolloutPhase as Types;

use crate::convert::Unspecified;
use crate::v1::RolloutPhase as Proto;

super::words!(Proto {
    None => "none",
    Updating => Types::Updating.as_str(),
    RollingBack => Types::RollingBack.as_str(),
    Completed => Types::Completed.as_str(),
    RolledBack => Types::RolledBack.as_str(),
});

impl From<Option<Types>> for Proto {
    fn from(p: Option<Types>) -> Self {
        match p {
            None => Proto::None,
            Some(Types::Updating) => Proto::Updating,
            Some(Types::RollingBack) => Proto::RollingBack,
            Some(Types::Completed) => Proto::Completed,
            Some(Types::RolledBack) => Proto::RolledBack,
        }
    }
}

impl TryFrom<Proto> for Option<Types> {
    type Error = Unspecified;

    fn try_from(p: Proto) -> Result<Self, Unspecified> {
        Ok(match p {
            Proto::None => None,
            Proto::Updating => Some(Types::Updating),
            Proto::RollingBack => Some(Types::RollingBack),
            Proto::Completed => Some(Types::Completed),
            Proto::RolledBack => Some(Types::RolledBack),
            Proto::Unspecified => return Err(Unspecified("RolloutPhase")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        super::super::tests::round_trip::<Option<Types>, Proto>(Proto::ALL);
        assert_eq!(Proto::from(None).word(), "none");
        assert_eq!(Proto::from(Some(Types::RollingBack)).word(), "rolling-back");
    }
}
