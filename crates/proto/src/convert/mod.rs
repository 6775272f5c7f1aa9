//! proto <-> flotilla-types conversions, one file per type.

mod apply_outcome;
mod node;
mod service;
mod task;
