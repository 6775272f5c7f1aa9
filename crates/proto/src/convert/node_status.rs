use flotilla_types::NodeStatus as Types;

use crate::v1::NodeStatus as Proto;

super::mirror!(Types <=> Proto { Ready, Down });
