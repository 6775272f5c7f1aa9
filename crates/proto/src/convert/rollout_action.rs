use flotilla_types::RolloutOp;

use crate::convert::Unspecified;
use crate::v1::{RolloutAction, RolloutControlRequest};

super::words!(RolloutAction {
    Pause => "pause",
    Resume => "resume",
    Undo => "undo",
});

impl From<&RolloutOp> for RolloutControlRequest {
    /// The request for `op`; the caller sets `name`.
    fn from(op: &RolloutOp) -> Self {
        let (action, to_version) = match op {
            RolloutOp::Pause => (RolloutAction::Pause, None),
            RolloutOp::Resume => (RolloutAction::Resume, None),
            RolloutOp::Undo { to_version } => (RolloutAction::Undo, *to_version),
        };
        RolloutControlRequest {
            name: String::new(),
            action: action.into(),
            to_version,
        }
    }
}

impl TryFrom<&RolloutControlRequest> for RolloutOp {
    type Error = Unspecified;

    fn try_from(r: &RolloutControlRequest) -> Result<Self, Unspecified> {
        Ok(match r.action() {
            RolloutAction::Pause => RolloutOp::Pause,
            RolloutAction::Resume => RolloutOp::Resume,
            RolloutAction::Undo => RolloutOp::Undo {
                to_version: r.to_version,
            },
            RolloutAction::Unspecified => return Err(Unspecified("RolloutAction")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for op in [
            RolloutOp::Pause,
            RolloutOp::Resume,
            RolloutOp::Undo { to_version: None },
            RolloutOp::Undo { to_version: Some(3) },
        ] {
            assert_eq!(RolloutOp::try_from(&RolloutControlRequest::from(&op)), Ok(op));
        }
        assert!(RolloutOp::try_from(&RolloutControlRequest::default()).is_err());
    }
}
