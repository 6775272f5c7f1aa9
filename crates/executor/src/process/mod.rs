//! The process driver: workloads as plain child processes, for machines without a
//! container engine. A "container" is a directory under the state dir holding its record
//! and log files; `image`, resource limits and port mappings are recorded but not applied
//! (the process binds its ports on the host itself). Each process leads its own process
//! group, so it outlives the driver: a restarted agent finds and adopts it.

mod exec;
mod logs;
mod proc_stat;
mod record;
mod signal;
mod spawn;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use self::record::{load, load_all, save, Layout, Record};
use crate::{
    now_ms, ContainerId, ContainerSpec, ContainerState, ContainerStatus, Driver, DriverError, ExecOutput, ExecRequest,
    ExecSession, LogOptions, Logs, TaskStats,
};

/// How long `stats` watches a process group's CPU time to tell its CPU use.
const CPU_SAMPLE: Duration = Duration::from_millis(250);

/// How long `stop` and `remove` wait for the exit waiter to record the exit code, so a
/// caller that inspects right after sees `Exited` with the real code.
const RECORD_WAIT: Duration = Duration::from_secs(5);

pub struct ProcessDriver {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    layout: Layout,
    /// Serialises read-modify-write of records within this driver: create (name
    /// uniqueness), start, remove and the exit waiters. Readers take no lock: records are
    /// replaced atomically. Two drivers on one state dir at once are not supported.
    write_lock: tokio::sync::Mutex<()>,
    /// Container id -> pid of the child a task of ours is waiting on. Such a container
    /// is running until that task has written its exit code; this keeps inspect from
    /// briefly reporting the "died unwatched" code -1 between exit and record.
    watched: Mutex<HashMap<ContainerId, i32>>,
    /// How the children's log files are rotated (by their exit waiters).
    rotation: crate::LogRotation,
}

impl ProcessDriver {
    /// Keeps its records under `state_dir` (created on first use). A new driver on the
    /// same directory sees the containers of the previous one.
    pub fn new(state_dir: PathBuf) -> Self {
        ProcessDriver {
            inner: Arc::new(Inner {
                layout: Layout::new(state_dir),
                write_lock: tokio::sync::Mutex::new(()),
                watched: Mutex::new(HashMap::new()),
                rotation: crate::LogRotation::default(),
            }),
        }
    }

    /// How the log files of the processes this driver starts are rotated.
    pub fn with_log_rotation(mut self, rotation: crate::LogRotation) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.rotation = rotation,
            // Shared already (never, for a driver just made): keep the default.
            None => tracing::warn!("log rotation set on a driver in use; ignored"),
        }
        self
    }

    pub fn state_dir(&self) -> &Path {
        self.inner.layout.root()
    }
}

impl Inner {
    fn dir(&self, id: &ContainerId) -> Result<PathBuf, DriverError> {
        self.layout.dir(id).ok_or_else(|| DriverError::not_found(id))
    }

    async fn record(&self, id: &ContainerId) -> Result<(PathBuf, Record), DriverError> {
        let dir = self.dir(id)?;
        let record = load(&dir).await?.ok_or_else(|| DriverError::not_found(id))?;
        Ok((dir, record))
    }

    pub(crate) async fn status(&self, id: &ContainerId) -> Result<ContainerStatus, DriverError> {
        // Ask "watched?" before reading the record: the waiter writes the code first and
        // unwatches after, so this order never yields "not watched and no code" for a
        // process that exited under our eyes.
        let watched = self.is_watched(id);
        let (_, record) = self.record(id).await?;
        Ok(status_of(&record, watched))
    }

    fn watch(&self, id: &ContainerId, pid: i32) {
        self.watched_map().insert(id.clone(), pid);
    }

    /// Only the waiter of `pid` may unwatch: a restarted container has a new one.
    fn unwatch(&self, id: &ContainerId, pid: i32) {
        let mut watched = self.watched_map();
        if watched.get(id) == Some(&pid) {
            watched.remove(id);
        }
    }

    fn is_watched(&self, id: &ContainerId) -> bool {
        self.watched_map().contains_key(id)
    }

    fn watched_map(&self) -> std::sync::MutexGuard<'_, HashMap<ContainerId, i32>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.watched.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn wait_recorded(&self, id: &ContainerId) {
        let deadline = tokio::time::Instant::now() + RECORD_WAIT;
        while self.is_watched(id) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn status_of(record: &Record, watched: bool) -> ContainerStatus {
    let state = match &record.run {
        None => ContainerState::Created,
        Some(run) => match run.exit_code {
            Some(code) => ContainerState::Exited { code },
            None if watched || proc_stat::is_alive(run.pid, run.start_ticks) => ContainerState::Running,
            None => ContainerState::Exited { code: -1 },
        },
    };
    let running = state.is_running();
    ContainerStatus {
        id: record.id.clone(),
        name: record.spec.name.clone(),
        labels: record.spec.labels.clone(),
        state,
        started_at_ms: record.run.map(|run| run.started_at_ms),
        finished_at_ms: record.run.and_then(|run| run.finished_at_ms),
        ip: running.then_some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    }
}

fn new_id() -> ContainerId {
    ContainerId(format!("{:032x}", rand::random::<u128>()))
}

#[async_trait]
impl Driver for ProcessDriver {
    fn name(&self) -> &'static str {
        "process"
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId, DriverError> {
        if spec.command.is_empty() && spec.args.is_empty() {
            return Err(DriverError::InvalidSpec(
                "the process driver needs a command or args: it has no image to supply one".into(),
            ));
        }
        let inner = &self.inner;
        let _lock = inner.write_lock.lock().await;
        tokio::fs::create_dir_all(inner.layout.root()).await?;
        if !spec.name.is_empty() {
            let records = load_all(&inner.layout).await?;
            if records.iter().any(|r| r.spec.name == spec.name) {
                return Err(DriverError::AlreadyExists {
                    name: spec.name.clone(),
                });
            }
        }
        let (id, dir) = loop {
            let id = new_id();
            let dir = inner.dir(&id)?;
            match tokio::fs::create_dir(&dir).await {
                Ok(()) => break (id, dir),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let record = Record {
            id: id.clone(),
            spec: spec.clone(),
            created_at_ms: now_ms(),
            run: None,
        };
        if let Err(e) = save(&dir, &record).await {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return Err(e);
        }
        tracing::debug!(container = %id, name = %spec.name, "process container created");
        Ok(id)
    }

    async fn start(&self, id: &ContainerId) -> Result<(), DriverError> {
        let inner = &self.inner;
        let _lock = inner.write_lock.lock().await;
        let watched = inner.is_watched(id);
        let (dir, mut record) = inner.record(id).await?;
        if status_of(&record, watched).state.is_running() {
            return Ok(());
        }
        spawn::start(inner, &dir, &mut record).await?;
        tracing::debug!(container = %id, pid = ?record.run.map(|r| r.pid), "process started");
        Ok(())
    }

    async fn stop(&self, id: &ContainerId, grace: Duration) -> Result<(), DriverError> {
        let (_, record) = self.inner.record(id).await?;
        let Some(run) = record.run.filter(|run| run.exit_code.is_none()) else {
            return Ok(());
        };
        signal::terminate(run.pid, run.start_ticks, grace).await?;
        self.inner.wait_recorded(id).await;
        Ok(())
    }

    async fn remove(&self, id: &ContainerId) -> Result<(), DriverError> {
        // An id we could never have issued names nothing, so it is already "gone".
        let Some(dir) = self.inner.layout.dir(id) else {
            return Ok(());
        };
        if let Some(run) = load(&dir).await?.and_then(|r| r.run) {
            if run.exit_code.is_none() {
                signal::terminate(run.pid, run.start_ticks, Duration::ZERO).await?;
                self.inner.wait_recorded(id).await;
            }
        }
        let _lock = self.inner.write_lock.lock().await;
        match tokio::fs::remove_dir_all(&dir).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn inspect(&self, id: &ContainerId) -> Result<ContainerStatus, DriverError> {
        self.inner.status(id).await
    }

    async fn list(&self, labels: &BTreeMap<String, String>) -> Result<Vec<ContainerStatus>, DriverError> {
        let watched = self.inner.watched_map().clone();
        let records = load_all(&self.inner.layout).await?;
        Ok(records
            .iter()
            .filter(|r| labels.iter().all(|(k, v)| r.spec.labels.get(k) == Some(v)))
            .map(|r| status_of(r, watched.contains_key(&r.id)))
            .collect())
    }

    fn logs(&self, id: &ContainerId, options: LogOptions) -> Logs {
        logs::stream(self.inner.clone(), id.clone(), options)
    }

    async fn exec(&self, id: &ContainerId, cmd: &[String], timeout: Duration) -> Result<ExecOutput, DriverError> {
        let watched = self.inner.is_watched(id);
        let (_, record) = self.inner.record(id).await?;
        if !status_of(&record, watched).state.is_running() {
            return Err(DriverError::NotRunning { id: id.0.clone() });
        }
        exec::run(&record.spec.env, cmd, timeout).await
    }

    async fn exec_stream(&self, id: &ContainerId, req: &ExecRequest) -> Result<ExecSession, DriverError> {
        let run = self.running(id).await?;
        let (_, record) = self.inner.record(id).await?;
        exec::stream(&record.spec.env, Some(run.pid), req).await
    }

    /// CPU and memory of the process group; no network figures (a process shares the
    /// host's network).
    async fn stats(&self, id: &ContainerId) -> Result<TaskStats, DriverError> {
        let run = self.running(id).await?;
        let (ticks_per_second, page) = proc_stat::units();
        let before = proc_stat::group_usage(run.pid);
        let started = std::time::Instant::now();
        tokio::time::sleep(CPU_SAMPLE).await;
        let after = proc_stat::group_usage(run.pid);
        let seconds = after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / ticks_per_second as f64;
        Ok(TaskStats {
            cpu_percent: 100.0 * seconds / started.elapsed().as_secs_f64().max(1e-3),
            memory_bytes: after.rss_pages * page,
            rx_bytes: None,
            tx_bytes: None,
        })
    }
}

impl ProcessDriver {
    /// The run of a running container; `NotRunning` otherwise.
    async fn running(&self, id: &ContainerId) -> Result<record::Run, DriverError> {
        let watched = self.inner.is_watched(id);
        let (_, record) = self.inner.record(id).await?;
        match record.run {
            Some(run) if status_of(&record, watched).state.is_running() => Ok(run),
            _ => Err(DriverError::NotRunning { id: id.0.clone() }),
        }
    }
}
