use std::future::Future;
use std::panic::{resume_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;

use crate::{ContainerId, ContainerSpec, Driver};

/// No case takes this long on a healthy machine; past it the case fails instead of hanging.
const CASE_TIMEOUT: Duration = Duration::from_secs(120);
const REMOVE_TIMEOUT: Duration = Duration::from_secs(30);

/// The cleanup guard of one case: remembers what the case created and removes it after
/// the case body, whether the body passed, panicked or timed out.
pub struct Scope {
    pub driver: Arc<dyn Driver>,
    case: &'static str,
    created: Mutex<Vec<ContainerId>>,
}

impl Scope {
    pub fn new(driver: Arc<dyn Driver>, case: &'static str) -> Self {
        Scope {
            driver,
            case,
            created: Mutex::new(Vec::new()),
        }
    }

    /// Runs the case body, cleans up, then re-raises the body's failure.
    pub async fn run(&self, body: impl Future<Output = ()>) {
        let outcome = AssertUnwindSafe(tokio::time::timeout(CASE_TIMEOUT, body))
            .catch_unwind()
            .await;
        self.cleanup().await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!(
                "[{}] case {} did not finish within {CASE_TIMEOUT:?}",
                self.driver.name(),
                self.case
            ),
            Err(panic) => resume_unwind(panic),
        }
    }

    /// Creates a container that cleanup will remove; panics if creation fails.
    pub async fn create(&self, spec: &ContainerSpec) -> ContainerId {
        let id = self
            .driver
            .create(spec)
            .await
            .unwrap_or_else(|e| panic!("[{}] create {}: {e}", self.driver.name(), spec.name));
        self.track(id.clone());
        id
    }

    /// Creates and starts.
    pub async fn run_container(&self, spec: &ContainerSpec) -> ContainerId {
        let id = self.create(spec).await;
        self.driver
            .start(&id)
            .await
            .unwrap_or_else(|e| panic!("[{}] start {}: {e}", self.driver.name(), spec.name));
        id
    }

    pub fn track(&self, id: ContainerId) {
        self.created.lock().unwrap_or_else(|e| e.into_inner()).push(id);
    }

    async fn cleanup(&self) {
        let ids = std::mem::take(&mut *self.created.lock().unwrap_or_else(|e| e.into_inner()));
        for id in ids {
            match tokio::time::timeout(REMOVE_TIMEOUT, self.driver.remove(&id)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("[{}] cleanup: remove {id}: {e}", self.case),
                Err(_) => eprintln!("[{}] cleanup: remove {id} timed out", self.case),
            }
        }
    }
}

impl Drop for Scope {
    /// Only reached with containers left if the case future itself was dropped mid-way.
    fn drop(&mut self) {
        let left = self.created.get_mut().map(|ids| ids.len()).unwrap_or(0);
        if left > 0 {
            eprintln!("[{}] {left} container(s) leaked: the case was cancelled", self.case);
        }
    }
}
