use flotilla_types::FailureAction as Types;

use crate::v1::FailureAction as Proto;

super::mirror!(Types <=> Proto { Pause, Rollback, Continue });
