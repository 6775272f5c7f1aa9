use flotilla_types::PutOutcome;

use crate::v1::ApplyOutcome;

impl From<PutOutcome> for ApplyOutcome {
    fn from(o: PutOutcome) -> Self {
        match o {
            PutOutcome::Created => ApplyOutcome::Created,
            PutOutcome::Updated { .. } => ApplyOutcome::Updated,
            PutOutcome::Unchanged => ApplyOutcome::Unchanged,
        }
    }
}

impl ApplyOutcome {
    /// How the CLI says it.
    pub fn describe(&self, previous_version: u64) -> String {
        match self {
            ApplyOutcome::Created => "created".into(),
            ApplyOutcome::Updated => format!("updated from version {previous_version}"),
            ApplyOutcome::Unchanged => "unchanged".into(),
            ApplyOutcome::Unspecified => "unknown".into(),
        }
    }
}
