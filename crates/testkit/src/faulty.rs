//! A task driver that can be told to fail: wraps a real one (the process driver in unit
//! tests of the task loop) and answers chosen calls with an engine refusal instead.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use flotilla_executor::{
    ContainerId, ContainerSpec, ContainerStatus, Driver, DriverError, ExecOutput, LogOptions, Logs,
};

/// An engine's refusal, as the Docker driver reports it (`status`, `message`).
#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

impl Refusal {
    fn error(&self) -> DriverError {
        DriverError::Engine {
            status: self.status,
            message: self.message.clone(),
        }
    }
}

/// `inner`, except that `start` is refused while a refusal is set.
pub struct FaultyDriver {
    inner: Arc<dyn Driver>,
    start: Mutex<Option<Refusal>>,
}

impl FaultyDriver {
    pub fn new(inner: Arc<dyn Driver>) -> Self {
        FaultyDriver {
            inner,
            start: Mutex::new(None),
        }
    }

    /// Every `start` from now on is refused with `refusal`; `None` lets them through again.
    pub fn refuse_starts(&self, refusal: Option<Refusal>) {
        *self.start.lock().expect("not poisoned") = refusal;
    }
}

#[async_trait]
impl Driver for FaultyDriver {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId, DriverError> {
        self.inner.create(spec).await
    }

    async fn start(&self, id: &ContainerId) -> Result<(), DriverError> {
        let refusal = self.start.lock().expect("not poisoned").clone();
        match refusal {
            Some(r) => Err(r.error()),
            None => self.inner.start(id).await,
        }
    }

    async fn stop(&self, id: &ContainerId, grace: Duration) -> Result<(), DriverError> {
        self.inner.stop(id, grace).await
    }

    async fn remove(&self, id: &ContainerId) -> Result<(), DriverError> {
        self.inner.remove(id).await
    }

    async fn inspect(&self, id: &ContainerId) -> Result<ContainerStatus, DriverError> {
        self.inner.inspect(id).await
    }

    async fn list(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ContainerStatus>, DriverError> {
        self.inner.list(labels).await
    }

    fn logs(&self, id: &ContainerId, options: LogOptions) -> Logs {
        self.inner.logs(id, options)
    }

    async fn exec(&self, id: &ContainerId, cmd: &[String], timeout: Duration) -> Result<ExecOutput, DriverError> {
        self.inner.exec(id, cmd, timeout).await
    }
}
