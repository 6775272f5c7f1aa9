use flotilla_types::Availability as Types;

use crate::v1::NodeAvailability as Proto;

super::mirror!(Types <=> Proto { Active, Pause, Drain });
