use flotilla_types::DesiredState as Types;

use crate::v1::DesiredState as Proto;

super::mirror!(Types <=> Proto { Running, Shutdown });
