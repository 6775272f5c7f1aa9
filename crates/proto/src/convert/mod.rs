//! proto <-> flotilla-types conversions, one file per type.

mod apply_outcome;
mod node;
mod report;
mod service;
mod task;
