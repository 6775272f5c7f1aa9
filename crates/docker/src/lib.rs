//! flotilla-docker owns the Docker Engine driver: `flotilla_executor::Driver` over the
//! Engine API through bollard. It is the only crate in the workspace that sees bollard;
//! everything else talks to containers through the `Driver` trait.

mod config;
mod driver;
mod error;
mod exec;
mod image;
mod logs;
mod stats;
mod status;

pub use driver::DockerDriver;
pub use image::DEFAULT_PULL_DEADLINE;
