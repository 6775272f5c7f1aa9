//! `State::apply` for nodes, plans and status reports. Plans are computed on a view that
//! may be a little old by the time they commit, so every item is re-checked here and a
//! stale one is skipped, never half-applied: in particular a slot never gets a second
//! live task.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::command::Response;
use crate::error::CommandError;
use crate::model::{
    Availability, DesiredState, NewTask, Node, NodeRegistration, NodeStatus, PlanUpdate, StopReason, Task, TaskReport,
    TaskState,
};
use crate::rollout::RolloutChange;
use crate::state::State;
use crate::{Millis, NodeId};

impl State {
    pub(crate) fn register_node(&mut self, reg: &NodeRegistration, at: Millis) -> Response {
        if self.removed.contains(&reg.id) {
            return Response::Error(CommandError::NodeRemoved { id: reg.id });
        }
        let node = self.nodes.entry(reg.id).or_insert_with(|| Node {
            id: reg.id,
            address: reg.address.clone(),
            labels: reg.labels.clone(),
            capacity: reg.capacity,
            availability: Availability::Active,
            status: NodeStatus::Ready,
            registered_at: at,
            updated_at: at,
            instance: String::new(),
            declared_dead: false,
            publish_addr: String::new(),
            mesh_errors: BTreeMap::new(),
        });
        // Recorded once; a different one is refused before it gets here (the leader checks
        // every heartbeat), and never overwrites the recorded one.
        if node.instance.is_empty() {
            node.instance = reg.instance.clone();
        }
        node.address = reg.address.clone();
        node.labels = reg.labels.clone();
        node.capacity = reg.capacity;
        node.publish_addr = reg.publish_addr.clone();
        node.mesh_errors = reg.mesh_errors.clone();
        node.status = NodeStatus::Ready;
        node.declared_dead = false;
        node.updated_at = at;
        Response::Node { id: reg.id }
    }

    pub(crate) fn set_node_status(&mut self, id: NodeId, status: NodeStatus, at: Millis) -> Response {
        match self.nodes.get_mut(&id) {
            Some(n) => {
                n.status = status;
                n.updated_at = at;
                Response::Node { id }
            }
            None => Response::Error(CommandError::NodeNotFound { id }),
        }
    }

    pub(crate) fn declare_node_dead(&mut self, id: NodeId, at: Millis) -> Response {
        match self.nodes.get_mut(&id) {
            Some(n) => {
                n.status = NodeStatus::Down;
                n.declared_dead = true;
                n.updated_at = at;
                Response::Node { id }
            }
            None => Response::Error(CommandError::NodeNotFound { id }),
        }
    }

    pub(crate) fn set_availability(&mut self, id: NodeId, availability: Availability, at: Millis) -> Response {
        match self.nodes.get_mut(&id) {
            Some(n) => {
                n.availability = availability;
                n.updated_at = at;
                Response::Node { id }
            }
            None => Response::Error(CommandError::NodeNotFound { id }),
        }
    }

    /// Slots that have a live task meant to run, with those tasks' versions: a create
    /// into one is stale, but for a start-first replacement beside exactly one task of
    /// another version.
    fn occupied_slots(&self) -> HashMap<(String, u32), Vec<u64>> {
        let mut slots: HashMap<(String, u32), Vec<u64>> = HashMap::new();
        for t in self.tasks.values() {
            if t.desired == DesiredState::Running && !t.state.is_terminal() {
                slots
                    .entry((t.service.clone(), t.slot))
                    .or_default()
                    .push(t.spec_version);
            }
        }
        slots
    }

    pub(crate) fn apply_plan(&mut self, plan: &PlanUpdate, at: Millis) -> Response {
        let (mut applied, mut skipped) = (0, 0);
        let mut count = |ok: bool| if ok { applied += 1 } else { skipped += 1 };
        for id in &plan.nodes_down {
            count(matches!(
                self.set_node_status(*id, NodeStatus::Down, at),
                Response::Node { .. }
            ));
        }
        for id in &plan.lost {
            count(self.mark_lost(id, at));
        }
        // A batch decided before an operator's pause (or a newer template) committed must
        // not start: its stops and creates are skipped with it.
        let stale_batch = self.stale_batch_slots(plan);
        let in_stale_batch = |service: &str, slot: u32| stale_batch.contains(&(service.to_string(), slot));
        for (id, reason) in &plan.stop {
            let stale = *reason == StopReason::Outdated
                && self.tasks.get(id).is_some_and(|t| in_stale_batch(&t.service, t.slot));
            count(!stale && self.stop_task(id, *reason, at));
        }
        let mut occupied = self.occupied_slots();
        for new in &plan.create {
            if in_stale_batch(&new.service, new.slot) {
                count(false);
                continue;
            }
            let live = occupied.entry((new.service.clone(), new.slot)).or_default();
            let fits = match live.as_slice() {
                [] => true,
                [other] => new.start_first && (*other != new.spec_version || new.rebalanced_from.is_some()),
                _ => false,
            };
            let created = fits && self.create_task(new, at);
            if created {
                live.push(new.spec_version);
            }
            count(created);
        }
        for (id, node) in &plan.assign {
            count(self.assign_task(id, *node, at));
        }
        for (id, reason) in &plan.unplaced {
            let ok = match self.tasks.get_mut(id) {
                Some(t) if t.state == TaskState::Pending => {
                    t.message = reason.clone();
                    true
                }
                _ => false,
            };
            count(ok);
        }
        for id in &plan.remove {
            let removable = self.tasks.get(id).is_some_and(|t| {
                t.state.is_terminal() || (t.state == TaskState::Pending && t.desired == DesiredState::Shutdown)
            });
            if removable {
                self.tasks.remove(id);
            }
            count(removable);
        }
        for change in &plan.rollouts {
            count(self.apply_rollout_change(change, at));
        }
        // Versions no task runs any more may leave the history. (Service names have no
        // dots, so a task id starts with its service's name.)
        let touched: BTreeSet<String> = plan
            .rollouts
            .iter()
            .map(|c| c.service())
            .chain(
                plan.remove
                    .iter()
                    .chain(plan.stop.iter().map(|(id, _)| id))
                    .filter_map(|id| id.split('.').next()),
            )
            .map(str::to_string)
            .collect();
        if !touched.is_empty() {
            self.trim_histories(&touched);
        }
        Response::Planned { applied, skipped }
    }

    /// The slots of the plan's batches that may no longer start: their rollout is paused,
    /// finished or moving to another template by now.
    fn stale_batch_slots(&self, plan: &PlanUpdate) -> BTreeSet<(String, u32)> {
        let mut stale = BTreeSet::new();
        for change in &plan.rollouts {
            if let RolloutChange::Batch { service, target, slots } = change {
                let runs = self.services.get(service).is_some_and(|svc| {
                    svc.template_version == *target
                        && svc
                            .rollout
                            .as_ref()
                            .is_some_and(|r| r.is_running() && r.target() == *target)
                });
                if !runs {
                    stale.extend(slots.iter().map(|slot| (service.clone(), *slot)));
                }
            }
        }
        stale
    }

    fn mark_lost(&mut self, id: &str, at: Millis) -> bool {
        let Some(t) = self.tasks.get_mut(id) else {
            return false;
        };
        if t.state.is_terminal() {
            return false;
        }
        t.state = TaskState::Lost;
        t.state_since = at;
        t.desired = DesiredState::Shutdown;
        t.stop_reason = Some(StopReason::NodeDown);
        t.message = match t.node {
            Some(n) => format!("node {n} went down"),
            None => "node went down".into(),
        };
        t.updated_at = at;
        true
    }

    fn stop_task(&mut self, id: &str, reason: StopReason, at: Millis) -> bool {
        let Some(t) = self.tasks.get_mut(id) else {
            return false;
        };
        if t.desired == DesiredState::Shutdown {
            return false;
        }
        t.desired = DesiredState::Shutdown;
        t.stop_reason = Some(reason);
        t.updated_at = at;
        // Nothing runs for a task that was never placed.
        if t.state == TaskState::Pending {
            t.state = TaskState::Stopped;
            t.state_since = at;
        }
        true
    }

    fn create_task(&mut self, new: &NewTask, at: Millis) -> bool {
        let Some(svc) = self.services.get(&new.service) else {
            return false;
        };
        let spec = svc.spec_at(new.spec_version);
        let (cpu_millis, memory_mb) = (spec.resources.cpu_millis, spec.resources.memory_mb);
        let stop_grace_ms = spec.stop_grace.as_millis();
        let node = new
            .node
            .filter(|n| self.nodes.get(n).is_some_and(|n| n.status == NodeStatus::Ready));
        let seq = self.next_task_seq;
        self.next_task_seq += 1;
        let id = format!("{}.{}.{}", new.service, new.slot, seq);
        let task = Task {
            id: id.clone(),
            service: new.service.clone(),
            slot: new.slot,
            seq,
            spec_version: new.spec_version,
            node,
            desired: DesiredState::Running,
            state: if node.is_some() {
                TaskState::Assigned
            } else {
                TaskState::Pending
            },
            cpu_millis,
            memory_mb,
            stop_grace_ms,
            attempt: new.attempt,
            state_since: at,
            stop_reason: None,
            container_id: None,
            address: None,
            exit_code: None,
            // A placed task has no message, but a rebalancing copy says why it exists.
            message: if node.is_some() && new.rebalanced_from.is_none() {
                String::new()
            } else {
                new.message.clone()
            },
            created_at: at,
            updated_at: at,
            rebalanced_from: new.rebalanced_from,
        };
        self.tasks.insert(id, task);
        true
    }

    fn assign_task(&mut self, id: &str, node: NodeId, at: Millis) -> bool {
        let ready = self.nodes.get(&node).is_some_and(|n| n.status == NodeStatus::Ready);
        match self.tasks.get_mut(id) {
            Some(t) if ready && t.state == TaskState::Pending && t.desired == DesiredState::Running => {
                t.node = Some(node);
                t.state = TaskState::Assigned;
                t.state_since = at;
                t.message.clear();
                t.updated_at = at;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn report_status(&mut self, node: NodeId, reports: &[TaskReport], at: Millis) -> Response {
        let mut unknown = Vec::new();
        for r in reports {
            let Some(t) = self.tasks.get_mut(&r.task).filter(|t| t.node == Some(node)) else {
                unknown.push(r.task.clone());
                continue;
            };
            if r.container_id.is_some() {
                t.container_id = r.container_id.clone();
            }
            if r.address.is_some() {
                t.address = r.address.clone();
            }
            if t.state.is_terminal() {
                // A lost task whose node came back and stopped it is now really stopped;
                // nothing else revives a finished task.
                if t.state == TaskState::Lost && r.state == TaskState::Stopped {
                    t.state = TaskState::Stopped;
                    t.state_since = at;
                    t.updated_at = at;
                }
                continue;
            }
            if r.state == TaskState::Pending || r.state == TaskState::Lost {
                continue; // not states an executor reports
            }
            if r.state == TaskState::Stopped && r.stop_reason == Some(StopReason::Fenced) {
                // Its node stopped it, cut off from the leader: it is not to run again
                // (a replacement fills the slot), even if the node is back.
                t.desired = DesiredState::Shutdown;
                t.stop_reason = Some(StopReason::Fenced);
            }
            if t.state != r.state {
                t.state_since = at;
            }
            t.state = r.state;
            if r.exit_code.is_some() {
                t.exit_code = r.exit_code;
            }
            if !r.message.is_empty() || r.state.is_terminal() {
                t.message = r.message.clone();
            }
            t.updated_at = at;
        }
        Response::Reported { unknown }
    }
}
