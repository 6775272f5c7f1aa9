//! The agent's side of `on_disconnect: fence`: how long this node has gone without a
//! heartbeat acknowledged by a leader that heard from a quorum, on this node's monotonic
//! clock, and which of its tasks it has stopped for that.
//!
//! A heartbeat sent at `sent` and acknowledged by a leader that last heard from a quorum
//! `age` before it answered vouches for the moment `sent - age`: no other leader can have
//! been elected before it (a quorum still followed this one), and the leader it reached
//! heard this node at or after `sent`. The node stops a fenced task once `stop_after` has
//! passed since the latest such moment; a leader (this one or a new one) replaces it only
//! `stop_after` + stop grace + a margin after it last heard from the node (or after its
//! own election), which is later. `docs/RELIABILITY.md` has the reasoning and the bounds.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flotilla_types::{DesiredState, ServiceSpec, StopReason, Task, TaskId};

pub struct Cutoff {
    inner: Mutex<Inner>,
    /// `stop_after` for a fence service whose spec sets none.
    default_stop_after: Duration,
}

struct Inner {
    /// The latest moment a leader with a quorum vouched for; the agent's start before
    /// the first acknowledgement.
    vouched: Instant,
    /// Tasks this node stopped for being cut off: they never run here again.
    fenced: HashSet<TaskId>,
}

impl Cutoff {
    pub fn new(default_stop_after: Duration) -> Self {
        Cutoff {
            inner: Mutex::new(Inner {
                vouched: Instant::now(),
                fenced: HashSet::new(),
            }),
            default_stop_after,
        }
    }

    /// A heartbeat sent at `sent` was acknowledged by a leader that had heard from a
    /// quorum `quorum_age` before.
    pub fn acknowledged(&self, sent: Instant, quorum_age: Duration) {
        let Some(at) = sent.checked_sub(quorum_age) else {
            return;
        };
        let mut inner = self.lock();
        if at > inner.vouched {
            inner.vouched = at;
        }
    }

    /// How long since the latest moment a leader with a quorum vouched for.
    pub fn silent_for(&self) -> Duration {
        self.lock().vouched.elapsed()
    }

    /// This node's assignments as the executor must see them: a task of a fence
    /// service that is to run here is turned into one to stop (reason `Fenced`) once the
    /// node has been cut off for its `stop_after`, and stays so for good. Forgets the
    /// fenced tasks the replica no longer lists.
    pub fn apply(&self, assignments: &mut [(Task, Option<ServiceSpec>)]) {
        let mut inner = self.lock();
        let silent = inner.vouched.elapsed();
        let listed: HashSet<&str> = assignments.iter().map(|(t, _)| t.id.as_str()).collect();
        inner.fenced.retain(|id| listed.contains(id.as_str()));
        for (task, spec) in assignments.iter_mut() {
            let Some(spec) = spec.as_ref().filter(|s| s.fenced()) else {
                continue;
            };
            if task.desired != DesiredState::Running || task.state.is_terminal() {
                continue;
            }
            let stop_after = spec.stop_after_or(self.default_stop_after);
            if !inner.fenced.contains(&task.id) {
                if silent < stop_after {
                    continue;
                }
                tracing::warn!(
                    task = %task.id,
                    silent_ms = silent.as_millis() as u64,
                    stop_after_ms = stop_after.as_millis() as u64,
                    "fencing: no heartbeat acknowledged by a leader with a quorum; stopping the task"
                );
                inner.fenced.insert(task.id.clone());
            }
            task.desired = DesiredState::Shutdown;
            task.stop_reason = Some(StopReason::Fenced);
            task.message = format!(
                "fenced: node cut off from the leader for {} (stop_after); stopped so that no second copy runs",
                flotilla_types::Duration(stop_after)
            );
        }
    }

    /// When the first fence service's task in `assignments` (to run here, not fenced yet)
    /// is due to be stopped if no acknowledgement comes before: the executor must not be
    /// busy elsewhere (e.g. reporting to an unreachable leader) past it.
    pub fn deadline(&self, assignments: &[(Task, Option<ServiceSpec>)]) -> Option<Instant> {
        let inner = self.lock();
        assignments
            .iter()
            .filter_map(|(t, spec)| {
                let s = spec.as_ref()?;
                (s.fenced()
                    && t.desired == DesiredState::Running
                    && !t.state.is_terminal()
                    && !inner.fenced.contains(&t.id))
                .then(|| inner.vouched + s.stop_after_or(self.default_stop_after))
            })
            .min()
    }

    /// Whether a fence service's task listed in `assignments` is due to be fenced now
    /// and not yet: the executor should take a pass.
    pub fn due(&self, assignments: &[(Task, Option<ServiceSpec>)]) -> bool {
        self.deadline(assignments).is_some_and(|d| d <= Instant::now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_types::TaskState;

    fn cutoff_silent_for(silent: Duration) -> Cutoff {
        let c = Cutoff::new(Duration::from_secs(3));
        c.lock().vouched = Instant::now() - silent;
        c
    }

    fn assignment(spec: &str, state: TaskState) -> (Task, Option<ServiceSpec>) {
        let spec = ServiceSpec::parse(&format!("name: db\nimage: busybox\n{spec}")).unwrap();
        let task: Task = serde_json::from_value(serde_json::json!({
            "id": "db.0.1", "service": "db", "slot": 0, "seq": 1, "spec_version": 1, "node": 1,
            "desired": "running", "state": state, "cpu_millis": 100, "memory_mb": 64,
            "state_since": 0, "attempt": 0, "created_at": 0, "updated_at": 0
        }))
        .unwrap();
        (task, Some(spec))
    }

    #[test]
    fn a_fence_task_stops_once_the_node_is_cut_off_for_stop_after_and_never_runs_again() {
        let c = cutoff_silent_for(Duration::from_secs(4));
        let before = Instant::now();
        let d = c
            .deadline(&[assignment("on_disconnect: fence\nstop_after: 3s\n", TaskState::Running)])
            .expect("a fence task has a deadline");
        assert!(
            d <= before - Duration::from_secs(1),
            "vouched 4 s ago + 3 s: {:?}",
            before - d
        );
        assert_eq!(c.deadline(&[assignment("", TaskState::Running)]), None, "replace: none");
        let mut a = vec![assignment("on_disconnect: fence\nstop_after: 5s\n", TaskState::Healthy)];
        assert!(!c.due(&a));
        c.apply(&mut a);
        assert_eq!(a[0].0.desired, DesiredState::Running, "4 s < stop_after 5 s");

        c.lock().vouched = Instant::now() - Duration::from_secs(5);
        assert!(c.due(&a));
        c.apply(&mut a);
        assert_eq!(a[0].0.desired, DesiredState::Shutdown);
        assert_eq!(a[0].0.stop_reason, Some(StopReason::Fenced));
        assert!(a[0].0.message.contains("fenced"), "{}", a[0].0.message);

        // Back in touch: the task stays stopped (a replacement runs elsewhere).
        c.acknowledged(Instant::now(), Duration::ZERO);
        let mut again = vec![assignment("on_disconnect: fence\nstop_after: 5s\n", TaskState::Healthy)];
        assert!(!c.due(&again));
        c.apply(&mut again);
        assert_eq!(again[0].0.desired, DesiredState::Shutdown);

        // Once the replica no longer lists it, it is forgotten.
        c.apply(&mut []);
        assert!(c.lock().fenced.is_empty());
    }

    #[test]
    fn the_default_stop_after_applies_and_replace_services_are_never_fenced() {
        let c = cutoff_silent_for(Duration::from_secs(3));
        let mut a = vec![
            assignment("on_disconnect: fence\n", TaskState::Running),
            assignment("", TaskState::Running),
        ];
        a[1].0.id = "db.1.2".into();
        c.apply(&mut a);
        assert_eq!(a[0].0.desired, DesiredState::Shutdown, "default stop_after 3 s");
        assert_eq!(a[1].0.desired, DesiredState::Running, "replace");
    }

    #[test]
    fn an_acknowledgement_vouches_for_its_send_time_less_the_leaders_quorum_age() {
        let c = Cutoff::new(Duration::from_secs(3));
        let sent = Instant::now();
        c.acknowledged(sent, Duration::from_secs(60));
        assert!(
            c.silent_for() < Duration::from_secs(1),
            "an older moment never moves it back"
        );
        c.lock().vouched = sent - Duration::from_secs(30);
        c.acknowledged(sent, Duration::from_secs(10));
        let silent = c.silent_for();
        assert!(
            silent >= Duration::from_secs(10) && silent < Duration::from_secs(11),
            "{silent:?}"
        );
    }
}
