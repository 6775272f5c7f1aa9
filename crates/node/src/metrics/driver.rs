//! The task driver as the executor sees it, with every call timed: the executor's steps
//! (create, start, inspect, stop, remove, …) by call and driver, for `/metrics`. A
//! decorator, so neither the executor nor a driver knows about metrics.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use flotilla_executor::{
    ContainerId, ContainerSpec, ContainerStatus, Driver, DriverError, ExecOutput, ExecRequest, ExecSession, LogOptions,
    Logs, TaskStats,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriverCall {
    pub call: String,
    pub driver: String,
}

pub struct MeteredDriver {
    inner: Arc<dyn Driver>,
    durations: Family<DriverCall, Histogram>,
    errors: Family<DriverCall, Counter>,
}

impl MeteredDriver {
    pub fn new(inner: Arc<dyn Driver>, metrics: &super::Metrics) -> Self {
        MeteredDriver {
            inner,
            durations: metrics.driver_calls.clone(),
            errors: metrics.driver_errors.clone(),
        }
    }

    async fn timed<T>(&self, call: &str, work: impl Future<Output = Result<T, DriverError>>) -> Result<T, DriverError> {
        let started = Instant::now();
        let result = work.await;
        let labels = DriverCall {
            call: call.to_string(),
            driver: self.inner.name().to_string(),
        };
        self.durations
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.errors.get_or_create(&labels).inc();
        }
        result
    }
}

#[async_trait]
impl Driver for MeteredDriver {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId, DriverError> {
        self.timed("create", self.inner.create(spec)).await
    }

    async fn start(&self, id: &ContainerId) -> Result<(), DriverError> {
        self.timed("start", self.inner.start(id)).await
    }

    async fn stop(&self, id: &ContainerId, grace: Duration) -> Result<(), DriverError> {
        self.timed("stop", self.inner.stop(id, grace)).await
    }

    async fn remove(&self, id: &ContainerId) -> Result<(), DriverError> {
        self.timed("remove", self.inner.remove(id)).await
    }

    async fn inspect(&self, id: &ContainerId) -> Result<ContainerStatus, DriverError> {
        self.timed("inspect", self.inner.inspect(id)).await
    }

    async fn list(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ContainerStatus>, DriverError> {
        self.timed("list", self.inner.list(labels)).await
    }

    /// A stream: its length is the client's, so it is not timed.
    fn logs(&self, id: &ContainerId, options: LogOptions) -> Logs {
        self.inner.logs(id, options)
    }

    async fn exec(&self, id: &ContainerId, cmd: &[String], timeout: Duration) -> Result<ExecOutput, DriverError> {
        self.timed("exec", self.inner.exec(id, cmd, timeout)).await
    }

    /// Only the start is timed: the session lasts as long as its client.
    async fn exec_stream(&self, id: &ContainerId, req: &ExecRequest) -> Result<ExecSession, DriverError> {
        self.timed("exec_stream", self.inner.exec_stream(id, req)).await
    }

    async fn stats(&self, id: &ContainerId) -> Result<TaskStats, DriverError> {
        self.timed("stats", self.inner.stats(id)).await
    }
}
