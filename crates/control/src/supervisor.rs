//! Starts the leader loops when this node becomes leader and stops them when it steps
//! down: the scheduling loop here, and the loops other crates hand in (the node's
//! membership loop), all under the same supervision.

use std::sync::Arc;
use std::time::Duration;

use flotilla_executor::now_ms;
use flotilla_scheduler::ClusterView;
use flotilla_store::{Raft, SharedState};
use flotilla_types::{Command, NodeId, NodeRegistration, NodeStatus, Response, TaskId, TaskReport};
use futures::future::BoxFuture;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState};
use tokio::task::JoinHandle;

use crate::{ControlConfig, ControlMetrics, Liveness};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The write was refused because this node no longer leads.
    #[error("not the leader")]
    NotLeader,
    #[error("raft write failed: {0}")]
    Raft(#[source] RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>),
    /// The state machine answered a command with something it never answers to it.
    #[error("unexpected state machine response {0}")]
    Unexpected(String),
}

/// A loop that runs while this node leads: started anew (by calling `start`) on every
/// term this node leads, aborted when it steps down, and started again (after a backoff)
/// when it panics.
pub struct LeaderLoop {
    /// For logs and the `loop` label of `flotilla_leader_loop_panics_total`.
    pub name: &'static str,
    pub start: Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>,
}

impl LeaderLoop {
    pub fn new(name: &'static str, start: impl Fn() -> BoxFuture<'static, ()> + Send + Sync + 'static) -> Self {
        LeaderLoop {
            name,
            start: Arc::new(start),
        }
    }
}

/// The first pause before a panicked leader loop starts again; it doubles on each panic
/// in a row, up to [`RESTART_BACKOFF_MAX`].
const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(100);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A loop that ran this long before it panicked starts again after the shortest pause.
const RESTART_BACKOFF_RESET: Duration = Duration::from_secs(60);

/// Runs `start()` for as long as this task lives: a panic is logged, counted and the loop
/// started again after a backoff; a loop that returns is done. Aborting this task drops
/// the loop with it (the loop runs inside it, not in a task of its own).
async fn supervise(name: &'static str, metrics: ControlMetrics, start: impl Fn() -> BoxFuture<'static, ()>) {
    use futures::FutureExt;
    let mut backoff = RESTART_BACKOFF_MIN;
    loop {
        let began = std::time::Instant::now();
        match std::panic::AssertUnwindSafe(start()).catch_unwind().await {
            Ok(()) => return,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic with no message".into());
                if began.elapsed() >= RESTART_BACKOFF_RESET {
                    backoff = RESTART_BACKOFF_MIN;
                }
                metrics
                    .loop_panics
                    .get_or_create(&crate::metrics::LoopLabel { r#loop: name.into() })
                    .inc();
                tracing::error!(
                    r#loop = name,
                    panic = %what,
                    restart_in_ms = backoff.as_millis() as u64,
                    "leader loop panicked; starting it again"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
            }
        }
    }
}

/// Test-only fault injection for real agents: `FLOTILLA_FAILPOINTS=name[=count],…` makes
/// [`failpoint`]`(name)` true `count` times (default once) in this process. Unset in
/// production, where every call is one atomic load after the first.
pub fn failpoint(name: &str) -> bool {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static POINTS: OnceLock<Option<Mutex<HashMap<String, u32>>>> = OnceLock::new();
    let points = POINTS.get_or_init(|| {
        let spec = std::env::var("FLOTILLA_FAILPOINTS")
            .ok()
            .filter(|s| !s.trim().is_empty())?;
        let map = spec
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| match p.trim().split_once('=') {
                Some((n, c)) => (n.to_string(), c.parse().unwrap_or(1)),
                None => (p.trim().to_string(), 1),
            })
            .collect();
        Some(Mutex::new(map))
    });
    let Some(points) = points else { return false };
    let mut points = points.lock().unwrap_or_else(|e| e.into_inner());
    match points.get_mut(name) {
        Some(left) if *left > 0 => {
            *left -= 1;
            tracing::warn!(failpoint = name, "failpoint fired (FLOTILLA_FAILPOINTS)");
            true
        }
        _ => false,
    }
}

pub struct Control {
    raft: Raft,
    state: SharedState,
    liveness: Liveness,
    config: ControlConfig,
    metrics: ControlMetrics,
}

impl Control {
    pub fn new(raft: Raft, state: SharedState, config: ControlConfig, metrics: ControlMetrics) -> Arc<Self> {
        Arc::new(Control {
            raft,
            state,
            liveness: Liveness::default(),
            config,
            metrics,
        })
    }

    pub fn config(&self) -> &ControlConfig {
        &self.config
    }

    /// Watches leadership for the life of the node: on every term this node leads, runs
    /// the scheduling loop and each of `loops`; stops them all when it steps down.
    pub fn spawn(self: &Arc<Self>, loops: Vec<LeaderLoop>) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut metrics = this.raft.metrics();
            let mut running: Option<(u64, Vec<JoinHandle<()>>)> = None;
            let stop = |handles: Vec<JoinHandle<()>>| handles.iter().for_each(JoinHandle::abort);
            loop {
                let (leading, term) = {
                    let m = metrics.borrow_and_update();
                    (m.state == ServerState::Leader, m.current_term)
                };
                let stale = running.as_ref().is_some_and(|(t, _)| !leading || *t != term);
                if stale {
                    if let Some((t, handles)) = running.take() {
                        tracing::info!(term = t, "stepping down: leader loops stopped");
                        stop(handles);
                    }
                }
                if leading && running.is_none() {
                    tracing::info!(term, "became leader: starting leader loops");
                    this.liveness.reset();
                    let scheduler = this.clone();
                    let mut handles = vec![tokio::spawn(supervise("scheduler", this.metrics.clone(), move || {
                        Box::pin(scheduler.clone().lead())
                    }))];
                    handles.extend(
                        loops
                            .iter()
                            .map(|l| {
                                let start = l.start.clone();
                                tokio::spawn(supervise(l.name, this.metrics.clone(), move || start()))
                            })
                            .collect::<Vec<_>>(),
                    );
                    running = Some((term, handles));
                }
                if metrics.changed().await.is_err() {
                    if let Some((_, handles)) = running.take() {
                        stop(handles);
                    }
                    return;
                }
            }
        })
    }

    async fn lead(self: Arc<Self>) {
        // The first view must include everything committed in earlier terms.
        while let Err(e) = self.raft.ensure_linearizable().await {
            tracing::warn!(error = %e, "leader read barrier failed; retrying");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.await_members().await;
        let mut applied = self.state.subscribe();
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Besides the tick and every apply, wake when a node's silence would pass the
            // timeout, so a dead node is declared down on time rather than on the next tick.
            let deadline = {
                let sm = self.state.read();
                let ready = sm
                    .state
                    .nodes
                    .values()
                    .filter(|n| n.status == NodeStatus::Ready)
                    .map(|n| n.id);
                let down = self.liveness.next_deadline(ready, self.config.node_timeout);
                // A fenced task on a down node may be replaced once its wait is over.
                let view = ClusterView::of(&sm.state);
                let silence = self.silence(&sm.state);
                let fenced = flotilla_scheduler::fence_waits(&view.with_silence(&silence))
                    .into_iter()
                    .map(|(_, left)| std::time::Instant::now() + left)
                    .min();
                down.into_iter().chain(fenced).min()
            };
            let wake = deadline.map_or(self.config.tick, |d| {
                // At least 50 ms: a pass that could not write must not spin.
                (d.saturating_duration_since(std::time::Instant::now()) + Duration::from_millis(5))
                    .max(Duration::from_millis(50))
            });
            tokio::select! {
                _ = tick.tick() => {}
                changed = applied.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(wake) => {}
            }
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "scheduling pass failed");
            }
        }
    }

    /// Waits (at most `placement_grace` from the start of the term) until every Raft
    /// member has registered: placing earlier would pile the work a starting cluster is
    /// given on the first nodes to report. A member registered before (a failover, a
    /// restart) is not waited for: a dead one is found by the node timeout as ever.
    async fn await_members(&self) {
        let deadline = tokio::time::Instant::now() + self.config.placement_grace;
        let mut applied = self.state.subscribe();
        loop {
            applied.borrow_and_update();
            let members: Vec<NodeId> = self
                .raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .collect();
            let waiting: Vec<NodeId> = {
                let sm = self.state.read();
                members
                    .into_iter()
                    .filter(|id| !sm.state.nodes.contains_key(id))
                    .collect()
            };
            if waiting.is_empty() {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::info!(
                    ?waiting,
                    grace = ?self.config.placement_grace,
                    "placing work without the members that have not registered yet"
                );
                return;
            }
            // The next apply (a registration), or the deadline.
            if let Ok(Err(_)) = tokio::time::timeout_at(deadline, applied.changed()).await {
                return; // the state machine is gone: the node is shutting down
            }
        }
    }

    /// Runs one pass: reads one view, proposes one `ApplyPlan` when there is work.
    pub async fn pass(&self) -> Result<(), ControlError> {
        let started = std::time::Instant::now();
        let result = self.plan_and_propose().await;
        self.metrics.pass_duration.observe(started.elapsed().as_secs_f64());
        result
    }

    async fn plan_and_propose(&self) -> Result<(), ControlError> {
        if failpoint("scheduler-panic") {
            panic!("failpoint scheduler-panic");
        }
        let now = now_ms();
        let update = {
            let sm = self.state.read();
            let ready: Vec<NodeId> = sm
                .state
                .nodes
                .values()
                .filter(|n| n.status == NodeStatus::Ready)
                .map(|n| n.id)
                .collect();
            let down = self.liveness.silent(ready, self.config.node_timeout);
            let silence = self.silence(&sm.state);
            flotilla_scheduler::plan(&ClusterView::of(&sm.state).with_silence(&silence), &down, now)
        };
        if update.is_empty() {
            return Ok(());
        }
        tracing::info!(
            nodes_down = ?update.nodes_down,
            lost = update.lost.len(),
            stop = update.stop.len(),
            create = update.create.len(),
            assign = update.assign.len(),
            remove = update.remove.len(),
            "scheduling pass"
        );
        let placed = update.create.iter().filter(|t| t.node.is_some()).count() + update.assign.len();
        let restarts = update.create.iter().filter(|t| t.attempt > 0).count();
        let nodes_down = update.nodes_down.len();
        // Straight to Raft, not through the node's group commit (`Command::Batch`): the
        // events of an entry are derived from the state after the whole entry, so a plan
        // sharing one with client writes would have its events judged against what those
        // writes changed after it (an operator's pause in the same entry hides the plan's
        // `rollout.batch` event).
        self.write(Command::ApplyPlan { plan: update, at: now }).await?;
        self.metrics.placements.inc_by(placed as u64);
        self.metrics.restarts.inc_by(restarts as u64);
        self.metrics.nodes_down.inc_by(nodes_down as u64);
        Ok(())
    }

    /// How long this leader has not heard from each node, for `on_disconnect: fence`.
    fn silence(&self, state: &flotilla_types::State) -> flotilla_scheduler::Silence {
        flotilla_scheduler::Silence {
            quiet_for: self.liveness.quiet_for(state.nodes.keys().copied()),
            default_stop_after: self.config.default_stop_after(),
        }
    }

    /// A heartbeat reached this leader: the node is alive; (re)register it when the
    /// state does not know it as it is.
    pub async fn heartbeat(&self, reg: NodeRegistration) -> Result<(), ControlError> {
        self.liveness.beat(reg.id);
        let current = {
            let sm = self.state.read();
            sm.state.nodes.get(&reg.id).is_some_and(|n| {
                n.status == NodeStatus::Ready
                    && n.address == reg.address
                    && n.labels == reg.labels
                    && n.capacity == reg.capacity
                    && n.publish_addr == reg.publish_addr
                    && n.mesh_errors == reg.mesh_errors
                    && (n.instance == reg.instance || reg.instance.is_empty())
            })
        };
        if current {
            return Ok(());
        }
        tracing::info!(node = reg.id, "registering node");
        self.write(Command::RegisterNode {
            node: reg,
            at: now_ms(),
        })
        .await
    }

    /// Records an executor's status reports; returns the tasks the state does not place
    /// on that node.
    pub async fn report(&self, node: NodeId, reports: Vec<TaskReport>) -> Result<Vec<TaskId>, ControlError> {
        self.liveness.beat(node);
        match self
            .propose(Command::ReportStatus {
                node,
                reports,
                at: now_ms(),
            })
            .await?
        {
            Response::Reported { unknown } => Ok(unknown),
            other => Err(ControlError::Unexpected(format!("{other:?}"))),
        }
    }

    async fn write(&self, cmd: Command) -> Result<(), ControlError> {
        self.propose(cmd).await.map(drop)
    }

    async fn propose(&self, cmd: Command) -> Result<Response, ControlError> {
        use openraft::error::{ClientWriteError, RaftError};
        match self.raft.client_write(cmd).await {
            Ok(r) => Ok(r.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(ControlError::NotLeader),
            Err(e) => Err(ControlError::Raft(e)),
        }
    }
}
