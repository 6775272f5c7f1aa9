//! Status reports waiting for the leader's acknowledgement. Only the newest report per
//! task is kept: a later state supersedes an earlier one that was never delivered.

use std::collections::BTreeMap;

use flotilla_types::{TaskId, TaskReport};

#[derive(Debug, Default)]
pub struct Outbox {
    pending: BTreeMap<TaskId, TaskReport>,
}

impl Outbox {
    pub fn push(&mut self, r: TaskReport) {
        self.pending.insert(r.task.clone(), r);
    }

    pub fn pending(&self) -> Vec<TaskReport> {
        self.pending.values().cloned().collect()
    }

    /// Drops what was delivered, unless a newer report arrived meanwhile.
    pub fn acknowledge(&mut self, delivered: &[TaskReport]) {
        for r in delivered {
            if self.pending.get(&r.task) == Some(r) {
                self.pending.remove(&r.task);
            }
        }
    }
}
