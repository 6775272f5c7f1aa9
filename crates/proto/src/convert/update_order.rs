use flotilla_types::UpdateOrder as Types;

use crate::v1::UpdateOrder as Proto;

super::mirror!(Types <=> Proto { StopFirst, StartFirst });
