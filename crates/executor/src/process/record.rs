//! The on-disk record of one process "container": `<state_dir>/<id>/record.json` beside
//! its `stdout.log` and `stderr.log`. Records are the driver's only memory, so a new
//! driver on the same directory (an agent restart) sees every container the old one made.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{ContainerId, ContainerSpec, DriverError, LogStream};

const RECORD_FILE: &str = "record.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub id: ContainerId,
    pub spec: ContainerSpec,
    pub created_at_ms: u64,
    /// The latest start; `None` until started.
    pub run: Option<Run>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Run {
    /// Also the process group id: the child leads its own group.
    pub pid: i32,
    /// See `proc_stat`: tells our process from a later one reusing the pid.
    pub start_ticks: u64,
    pub started_at_ms: u64,
    /// Written by the task that waits on the child; stays `None` if it died unwatched.
    pub exit_code: Option<i64>,
    pub finished_at_ms: Option<u64>,
}

/// Where each container's files live.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: PathBuf) -> Self {
        Layout { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `None` for ids this driver cannot have made: ids are hex, and anything else
    /// (`..`, `/`) must never reach a path.
    pub fn dir(&self, id: &ContainerId) -> Option<PathBuf> {
        let valid = !id.0.is_empty() && id.0.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| self.root.join(&id.0))
    }

    pub fn log(dir: &Path, stream: LogStream) -> PathBuf {
        dir.join(match stream {
            LogStream::Stdout => "stdout.log",
            LogStream::Stderr => "stderr.log",
        })
    }
}

/// `Ok(None)` when there is no record (never created, removed, or still being created).
pub(crate) async fn load(dir: &Path) -> Result<Option<Record>, DriverError> {
    let path = dir.join(RECORD_FILE);
    match tokio::fs::read(&path).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| DriverError::Other(format!("corrupt process record {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Write-then-rename so readers, which take no lock, never see half a record. Fails
/// (rather than recreating it) when the directory was removed meanwhile.
pub(crate) async fn save(dir: &Path, record: &Record) -> Result<(), DriverError> {
    let bytes =
        serde_json::to_vec_pretty(record).map_err(|e| DriverError::Other(format!("encode process record: {e}")))?;
    let tmp = dir.join(format!("{RECORD_FILE}.tmp"));
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, dir.join(RECORD_FILE)).await?;
    Ok(())
}

/// Every readable record under the root. Unreadable ones are logged and skipped so one
/// damaged directory cannot hide the others from adoption.
pub(crate) async fn load_all(layout: &Layout) -> Result<Vec<Record>, DriverError> {
    let mut entries = match tokio::fs::read_dir(layout.root()).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut records = Vec::new();
    while let Some(entry) = entries.next_entry().await? {
        let id = ContainerId(entry.file_name().to_string_lossy().into_owned());
        let Some(dir) = layout.dir(&id) else { continue };
        match load(&dir).await {
            Ok(Some(record)) => records.push(record),
            Ok(None) => {}
            Err(e) => tracing::warn!(container = %id, error = %e, "skipping process record"),
        }
    }
    Ok(records)
}
