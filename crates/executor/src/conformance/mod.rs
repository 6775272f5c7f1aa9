//! The driver conformance suite: one set of cases that every `Driver` implementation runs
//! (the process driver in this crate's tests, Docker in flotilla-docker's), so both keep
//! the same contract. Each case creates its own containers, labelled with the fixture's
//! per-run labels, and removes them when it ends, failed or not.
//!
//! A driver's test file runs every case as its own test with
//! `flotilla_executor::driver_conformance_tests!(setup)`, where `setup` is an async fn
//! returning `Option<(Arc<dyn Driver>, Fixture)>` (`None` skips), or calls `run_all`.

mod exec;
mod image;
mod lifecycle;
mod list;
mod logs;
mod probe;
mod remove;
mod scope;
mod stop;
mod wait;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;

pub use self::exec::exec;
pub use self::image::missing_image;
pub use self::lifecycle::{create_start_inspect, duplicate_name};
pub use self::list::list_by_labels;
pub use self::logs::{logs, logs_follow, logs_since, logs_tail};
pub use self::probe::probe_address;
pub use self::remove::remove_idempotent;
pub use self::scope::Scope;
pub use self::stop::{exit_code, stop_escalates_to_kill, stop_graceful};
use crate::{ContainerSpec, Driver, LABEL_CLUSTER, LABEL_TASK};

/// What a driver's tests tell the suite about their environment.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Image every case runs (ignored by drivers without images).
    pub image: String,
    /// Runs a script given as one more argument: `["sh", "-c"]`. Scripts use POSIX sh
    /// plus busybox's `httpd`.
    pub shell: Vec<String>,
    /// On every container of this run: unique per run, so parallel runs never see each
    /// other's containers. Cases add `flotilla.task = <case>`.
    pub labels: BTreeMap<String, String>,
    /// Unique per run; part of every container name.
    pub run_id: String,
    /// Whether to check that a missing image fails with `ImageNotFound` (drivers
    /// without images skip it).
    pub check_missing_image: bool,
    /// Address a workload's listener binds to so that `ContainerStatus::ip` reaches it:
    /// "0.0.0.0" inside a container, "127.0.0.1" for host processes.
    pub listen_host: String,
}

impl Fixture {
    pub fn new(image: impl Into<String>, shell: Vec<String>) -> Self {
        let run_id = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let labels = BTreeMap::from([(LABEL_CLUSTER.to_string(), format!("conformance-{run_id}"))]);
        Fixture {
            image: image.into(),
            shell,
            labels,
            run_id,
            check_missing_image: false,
            listen_host: "127.0.0.1".into(),
        }
    }

    /// The fixture's labels plus `flotilla.task = case`.
    pub fn case_labels(&self, case: &str) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels.insert(LABEL_TASK.to_string(), case.to_string());
        labels
    }

    /// A container named after the run and `case` that runs `script` in the shell.
    pub fn spec(&self, case: &str, script: &str) -> ContainerSpec {
        ContainerSpec {
            name: format!("flotilla-conf-{}-{}", self.run_id, case.replace('_', "-")),
            image: self.image.clone(),
            command: self.shell.clone(),
            args: vec![script.to_string()],
            env: BTreeMap::from([("FLOTILLA_CONFORMANCE".to_string(), "yes".to_string())]),
            labels: self.case_labels(case),
            ..ContainerSpec::default()
        }
    }

    /// Shell command line for `exec`.
    pub fn sh(&self, script: &str) -> Vec<String> {
        let mut cmd = self.shell.clone();
        cmd.push(script.to_string());
        cmd
    }
}

pub type CaseFn = for<'a> fn(Arc<dyn Driver>, &'a Fixture) -> BoxFuture<'a, ()>;

/// Every case, in the order `run_all` runs them.
pub const CASES: &[(&str, CaseFn)] = &[
    ("create_start_inspect", |d, f| Box::pin(create_start_inspect(d, f))),
    ("duplicate_name", |d, f| Box::pin(duplicate_name(d, f))),
    ("stop_graceful", |d, f| Box::pin(stop_graceful(d, f))),
    ("stop_escalates_to_kill", |d, f| Box::pin(stop_escalates_to_kill(d, f))),
    ("exit_code", |d, f| Box::pin(exit_code(d, f))),
    ("logs", |d, f| Box::pin(logs(d, f))),
    ("logs_tail", |d, f| Box::pin(logs_tail(d, f))),
    ("logs_follow", |d, f| Box::pin(logs_follow(d, f))),
    ("logs_since", |d, f| Box::pin(logs_since(d, f))),
    ("list_by_labels", |d, f| Box::pin(list_by_labels(d, f))),
    ("exec", |d, f| Box::pin(exec(d, f))),
    ("remove_idempotent", |d, f| Box::pin(remove_idempotent(d, f))),
    ("missing_image", |d, f| Box::pin(missing_image(d, f))),
    ("probe_address", |d, f| Box::pin(probe_address(d, f))),
];

/// Runs every case one after another; panics on the first failure.
pub async fn run_all(driver: Arc<dyn Driver>, fixture: &Fixture) {
    for (_, case) in CASES {
        case(driver.clone(), fixture).await;
    }
}

/// Expands to one `#[tokio::test]` per case plus a check that no case is missing.
/// `$setup` is an async fn returning `Option<(Arc<dyn Driver>, Fixture)>`; `None` skips
/// (it should say why). The calling crate needs tokio as a dev-dependency.
#[macro_export]
macro_rules! driver_conformance_tests {
    ($setup:path) => {
        $crate::driver_conformance_tests!(@cases $setup;
            create_start_inspect, duplicate_name, stop_graceful, stop_escalates_to_kill,
            exit_code, logs, logs_tail, logs_follow, logs_since, list_by_labels, exec, remove_idempotent,
            missing_image, probe_address);
    };
    (@cases $setup:path; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some((driver, fixture)) = $setup().await {
                    $crate::conformance::$case(driver, &fixture).await;
                }
            }
        )*

        #[test]
        fn conformance_runs_every_case() {
            let generated = [$(stringify!($case)),*];
            let all: Vec<&str> = $crate::conformance::CASES.iter().map(|(name, _)| *name).collect();
            assert_eq!(generated.to_vec(), all, "driver_conformance_tests! is missing cases");
        }
    };
}
