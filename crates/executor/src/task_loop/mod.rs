//! The node-side task loop. It reads the tasks assigned to this node from the node's OWN
//! replica, advances each one idempotent step at a time (create → start → probe → report;
//! stop → remove), each step ending done, retry-later or fatal, and reports status changes
//! to the leader in batches that are re-sent until acknowledged.
//!
//! Containers are found again by their labels: on start-up the loop adopts the ones the
//! state still wants and removes the rest, and it never creates a second container for a
//! task that has one.

mod probe;
mod report;
mod step;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flotilla_types::{NodeId, ServiceSpec, Task, TaskId, TaskReport};
use tokio::sync::watch;
use tracing::Instrument;

pub use probe::HealthTracker;
pub use report::Outbox;

use crate::{ContainerId, Driver, LABEL_CLUSTER, LABEL_NODE, LABEL_TASK};

/// What the executor reads from its node's replica.
pub trait DesiredSource: Send + Sync + 'static {
    /// Tasks assigned to this node, each with its service's spec (`None` once the service
    /// is deleted).
    fn assignments(&self) -> Vec<(Task, Option<ServiceSpec>)>;

    /// When the executor must take its next pass at the latest, whatever else it waits
    /// for (a fence service's task due to stop on a cut-off node); `None`: no such moment.
    fn act_by(&self) -> Option<std::time::Instant> {
        None
    }
}

/// Where status reports go: the leader.
#[async_trait]
pub trait Reporter: Send + Sync + 'static {
    /// Delivers a batch. A batch that was not delivered is sent again later (reports are
    /// idempotent). Tasks the state does not place on this node need no answer: the
    /// executor stops what its own replica does not assign to it.
    async fn report(&self, reports: Vec<TaskReport>) -> Result<(), ReportError>;
}

/// Why a batch of reports was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no leader known")]
    NoLeader,
    /// The leader could not be reached or did not answer in time.
    #[error("leader unreachable: {0}")]
    Unreachable(String),
    /// The leader answered with an error.
    #[error("report refused: {0}")]
    Refused(String),
}

#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    pub cluster: String,
    pub node: NodeId,
    /// How often every task is looked at even when nothing was applied.
    pub interval: Duration,
    /// How long the container of a completed task (exit 0, not restarted) is kept after
    /// it ended, so `flotilla logs` still reads it; then it is removed.
    pub keep_completed: Duration,
}

/// `ExecutorConfig::keep_completed` unless the agent is told otherwise.
pub const KEEP_COMPLETED: Duration = Duration::from_secs(60);

/// What the loop knows about one task's container.
#[derive(Debug, Default)]
pub struct Tracked {
    pub container: Option<ContainerId>,
    /// A stop in progress (it can take the whole grace period; it runs on its own).
    pub stopping: Option<tokio::task::JoinHandle<Result<(), crate::DriverError>>>,
    pub health: HealthTracker,
    /// The last state queued for the leader, so one change is reported once.
    pub last_report: Option<flotilla_types::TaskState>,
    /// The running container's address, as last inspected: reported with its states.
    pub ip: Option<std::net::IpAddr>,
    /// The address last sent on its own (see `step::running_step`), so it is sent once.
    pub address_sent: Option<String>,
}

pub struct Executor {
    driver: Arc<dyn Driver>,
    source: Arc<dyn DesiredSource>,
    reporter: Arc<dyn Reporter>,
    config: ExecutorConfig,
    tracked: HashMap<TaskId, Tracked>,
    outbox: Outbox,
}

impl Executor {
    pub fn new(
        driver: Arc<dyn Driver>,
        source: Arc<dyn DesiredSource>,
        reporter: Arc<dyn Reporter>,
        config: ExecutorConfig,
    ) -> Self {
        Executor {
            driver,
            source,
            reporter,
            config,
            tracked: HashMap::new(),
            outbox: Outbox::default(),
        }
    }

    /// This node's containers, by the labels every container carries.
    fn own_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_CLUSTER.to_string(), self.config.cluster.clone()),
            (LABEL_NODE.to_string(), self.config.node.to_string()),
        ])
    }

    /// Finds the containers this node already runs. Returns false when the driver cannot
    /// list them yet (the caller retries: starting work blind could duplicate it).
    pub async fn adopt(&mut self) -> bool {
        let containers = match self.driver.list(&self.own_labels()).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list containers for adoption; retrying");
                return false;
            }
        };
        for c in containers {
            let Some(task) = c.labels.get(LABEL_TASK).cloned() else {
                continue;
            };
            let tracked = self.tracked.entry(task.clone()).or_default();
            match &tracked.container {
                None => {
                    tracing::info!(task = %task, container = %c.id.as_str(), "adopted container");
                    tracked.container = Some(c.id);
                }
                Some(kept) if *kept != c.id => {
                    // Never two containers for one task: the extra one goes.
                    tracing::warn!(task = %task, container = %c.id.as_str(), "removing duplicate container");
                    let _ = self.driver.stop(&c.id, Duration::from_secs(2)).await;
                    let _ = self.driver.remove(&c.id).await;
                }
                Some(_) => {}
            }
        }
        true
    }

    /// Runs until `wake` closes. `wake` fires whenever the node's replica applies entries.
    pub async fn run(mut self, mut wake: watch::Receiver<u64>) {
        while !self.adopt().await {
            tokio::time::sleep(self.config.interval).await;
        }
        let mut passes: u64 = 0;
        loop {
            passes += 1;
            // Now and then look at the engine again: containers whose removal failed, or
            // that someone else started with our labels, are found and reconciled.
            if passes.is_multiple_of(30) {
                self.adopt().await;
            }
            self.pass().await;
            // Reports to an unreachable leader must not hold the next pass past a fence
            // deadline: the flush gives up then (its reports stay pending, sent again).
            match self.source.act_by() {
                Some(by) => {
                    let _ = tokio::time::timeout_at(tokio::time::Instant::from_std(by), self.flush()).await;
                }
                None => self.flush().await,
            }
            tokio::select! {
                changed = wake.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(self.config.interval) => {}
            }
        }
    }

    /// One look at every task assigned here, and at every container with no task.
    pub async fn pass(&mut self) {
        let assignments: HashMap<TaskId, (Task, Option<ServiceSpec>)> = self
            .source
            .assignments()
            .into_iter()
            .filter(|(t, _)| t.node == Some(self.config.node))
            .map(|(t, s)| (t.id.clone(), (t, s)))
            .collect();

        let orphans: Vec<TaskId> = self
            .tracked
            .keys()
            .filter(|id| !assignments.contains_key(*id))
            .cloned()
            .collect();
        for id in orphans {
            if let Some(Tracked { container: Some(c), .. }) = self.tracked.remove(&id) {
                tracing::info!(task = %id, container = %c.as_str(), "removing container of a task this node no longer has");
                let driver = self.driver.clone();
                tokio::spawn(async move {
                    let _ = driver.stop(&c, Duration::from_secs(5)).await;
                    if let Err(e) = driver.remove(&c).await {
                        // Found again by the next periodic adoption.
                        tracing::warn!(task = %id, error = %e, "remove failed");
                    }
                });
            }
        }

        // Tasks advance concurrently: one slow probe or create does not hold up the rest.
        let driver = self.driver.clone();
        let cluster = self.config.cluster.clone();
        let node = self.config.node;
        let keep_completed = self.config.keep_completed;
        let now = crate::now_ms();
        let work = assignments.into_iter().map(|(id, (task, spec))| {
            let mut tracked = self.tracked.remove(&id).unwrap_or_default();
            let driver = driver.clone();
            let cluster = cluster.clone();
            async move {
                let ctx = step::Ctx {
                    driver,
                    cluster: &cluster,
                    node,
                    now,
                    keep_completed,
                };
                let reports = advance(&ctx, &task, spec.as_ref(), &mut tracked).await;
                (id, tracked, reports)
            }
        });
        for (id, tracked, reports) in futures::future::join_all(work).await {
            for r in reports {
                self.outbox.push(r);
            }
            self.tracked.insert(id, tracked);
        }
    }

    /// Sends pending reports; keeps them for the next try when the leader is unreachable.
    pub async fn flush(&mut self) {
        let batch = self.outbox.pending();
        if batch.is_empty() {
            return;
        }
        match self.reporter.report(batch.clone()).await {
            Ok(()) => self.outbox.acknowledge(&batch),
            Err(e) => {
                tracing::debug!(error = %e, reports = batch.len(), "report not delivered; will re-send")
            }
        }
    }
}

/// Takes the steps one task needs now (several may follow each other, e.g. create then
/// start; each is idempotent, so a crash between two is repaired by the next pass).
async fn advance(
    ctx: &step::Ctx<'_>,
    task: &Task,
    spec: Option<&ServiceSpec>,
    tracked: &mut Tracked,
) -> Vec<TaskReport> {
    let span = tracing::info_span!("task_step", node = ctx.node, service = %task.service, task = %task.id);
    steps(ctx, task, spec, tracked).instrument(span).await
}

async fn steps(ctx: &step::Ctx<'_>, task: &Task, spec: Option<&ServiceSpec>, tracked: &mut Tracked) -> Vec<TaskReport> {
    let mut reports = Vec::new();
    for _ in 0..4 {
        match step::next(ctx, task, spec, tracked).await {
            step::Outcome::Done(report) => {
                if let Some(r) = report {
                    tracing::debug!(state = r.state.as_str(), "task state changed");
                    tracked.last_report = Some(r.state);
                    reports.push(r);
                }
            }
            step::Outcome::Idle => break,
            step::Outcome::RetryLater(why) => {
                tracing::debug!(reason = %why, "retry later");
                break;
            }
            step::Outcome::Fatal(report) => {
                if tracked.last_report != Some(report.state) {
                    tracing::warn!(message = %report.message, "task failed");
                    tracked.last_report = Some(report.state);
                    reports.push(report);
                }
                break;
            }
        }
    }
    reports
}
