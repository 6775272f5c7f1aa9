//! `snapshot save|inspect|restore`: backups of the replicated state, and a data dir to
//! re-form a cluster from (`agent --force-new-cluster`).

use std::path::Path;

use flotilla_proto::v1::SaveSnapshotRequest;
use flotilla_store::backup::{self, SnapshotSummary};
use flotilla_store::{snapshot_file, DataDir, StoreError};
use serde::Serialize;

use crate::args::{Format, SnapshotWhat};
use crate::client::Client;
use crate::error::CliError;
use crate::output::print;

#[derive(Serialize)]
struct SnapshotView<'a> {
    file: String,
    checksum_ok: bool,
    #[serde(flatten)]
    summary: &'a SnapshotSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<String>,
}

fn store_error(e: StoreError) -> CliError {
    CliError::Failed(e.to_string())
}

fn describe(s: &SnapshotSummary) -> String {
    let ids = |v: &[u64]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
        }
    };
    format!(
        "Index:     {}\nTerm:      {}\nEpoch:     {}\nServices:  {}\nTasks:     {}\nNodes:     {}\nVoters:    {}\nLearners:  {}\nSize:      {} bytes\nChecksum:  OK (crc32 {})\nSHA-256:   {}\n",
        s.index,
        s.term,
        s.epoch,
        s.services,
        s.tasks,
        s.nodes,
        ids(&s.voters),
        ids(&s.learners),
        s.size_bytes,
        s.crc32,
        s.sha256
    )
}

fn read(file: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(file).map_err(|e| CliError::Failed(format!("cannot read {}: {e}", file.display())))
}

pub async fn run(client: &Client, out: Format, what: SnapshotWhat) -> Result<(), CliError> {
    match what {
        SnapshotWhat::Save { file } => save(client, out, &file).await,
        SnapshotWhat::Inspect { file } => {
            let bytes = read(&file)?;
            let (summary, _, _) = backup::inspect(&bytes, &file.display().to_string()).map_err(store_error)?;
            let view = SnapshotView {
                file: file.display().to_string(),
                checksum_ok: true,
                summary: &summary,
                data_dir: None,
            };
            print(out, &view, || {
                format!("File:      {}\n{}", view.file, describe(&summary))
            })
        }
        SnapshotWhat::Restore { file, data_dir } => {
            let summary = backup::prepare_restore(&file, &DataDir::new(&data_dir)).map_err(store_error)?;
            let view = SnapshotView {
                file: file.display().to_string(),
                checksum_ok: true,
                summary: &summary,
                data_dir: Some(data_dir.display().to_string()),
            };
            print(out, &view, || {
                format!(
                    "{} restored into {} (index {}, epoch {}): start a node on it with \
                     `flotilla agent --id ID --listen ADDR --data-dir {} --force-new-cluster`, \
                     then add nodes with `--join ADDR`\n",
                    view.file,
                    data_dir.display(),
                    summary.index,
                    summary.epoch,
                    data_dir.display()
                )
            })
        }
    }
}

async fn save(client: &Client, out: Format, file: &Path) -> Result<(), CliError> {
    let r = client.send(SaveSnapshotRequest {}).await?;
    // Verified before it is written: a file on disk is always a good one.
    let (summary, _, _) = backup::inspect(&r.data, "the snapshot the leader sent").map_err(store_error)?;
    // A bare file name has an empty parent: write (and sync) it in "." instead.
    let local;
    let file = if file.parent() == Some(Path::new("")) {
        local = Path::new(".").join(file);
        &local
    } else {
        file
    };
    snapshot_file::write_atomically(file, &r.data)
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", file.display())))?;
    let view = SnapshotView {
        file: file.display().to_string(),
        checksum_ok: true,
        summary: &summary,
        data_dir: None,
    };
    print(out, &view, || {
        format!(
            "snapshot of node {} at index {} (term {}, epoch {}) saved to {}: {} services, {} tasks, {} nodes, {} bytes, sha256 {}\n",
            r.node_id,
            summary.index,
            summary.term,
            summary.epoch,
            view.file,
            summary.services,
            summary.tasks,
            summary.nodes,
            summary.size_bytes,
            summary.sha256
        )
    })
}
