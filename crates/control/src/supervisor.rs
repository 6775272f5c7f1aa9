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

/// A loop that runs while this node leads: started anew (by calling it) on every term
/// this node leads, aborted when it steps down.
pub type LeaderLoop = Box<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

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
                    let mut handles = vec![tokio::spawn(this.clone().lead())];
                    handles.extend(loops.iter().map(|start| tokio::spawn(start())));
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
                self.liveness.next_deadline(ready, self.config.node_timeout)
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

    /// Runs one pass: reads one view, proposes one `ApplyPlan` when there is work.
    pub async fn pass(&self) -> Result<(), ControlError> {
        let started = std::time::Instant::now();
        let result = self.plan_and_propose().await;
        self.metrics.pass_duration.observe(started.elapsed().as_secs_f64());
        result
    }

    async fn plan_and_propose(&self) -> Result<(), ControlError> {
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
            flotilla_scheduler::plan(&ClusterView::of(&sm.state), &down, now)
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
