//! The snapshot file: a checksummed, self-describing image of the state machine at one
//! log index. The same format is written by the Raft snapshot builder and by
//! `flotilla snapshot save`.
//!
//! Layout: `FLTSNAP1` | body length (u64 LE) | CRC-32 of body (u32 LE) | body, where
//! body = meta length (u32 LE) | meta (JSON `SnapshotMeta`) | data (JSON `State`).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use crate::{SnapshotMeta, StoreError};

const MAGIC: &[u8; 8] = b"FLTSNAP1";
const PREAMBLE: usize = 8 + 8 + 4;

pub fn encode(meta: &SnapshotMeta, data: &[u8]) -> Vec<u8> {
    let meta_json = serde_json::to_vec(meta).expect("snapshot meta serializes");
    let body_len = 4 + meta_json.len() + data.len();
    let mut out = Vec::with_capacity(PREAMBLE + body_len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(body_len as u64).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(meta_json.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta_json);
    out.extend_from_slice(data);
    let crc = crc32fast::hash(&out[PREAMBLE..]);
    out[16..20].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes and verifies a snapshot image; `what` names it in error messages.
pub fn decode(bytes: &[u8], what: &str) -> Result<(SnapshotMeta, Vec<u8>), StoreError> {
    let corrupt = |why: String| StoreError::Corrupt(format!("{what}: {why}"));
    if bytes.len() < PREAMBLE || &bytes[..8] != MAGIC {
        return Err(corrupt("not a flotilla snapshot (bad magic)".into()));
    }
    let body_len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    let body = &bytes[PREAMBLE..];
    if body.len() != body_len {
        return Err(corrupt(format!(
            "truncated or padded: {} body bytes, header says {body_len}",
            body.len()
        )));
    }
    if crc32fast::hash(body) != crc {
        return Err(corrupt("checksum mismatch".into()));
    }
    if body.len() < 4 {
        return Err(corrupt("body too short".into()));
    }
    let meta_len = u32::from_le_bytes(body[..4].try_into().expect("4 bytes")) as usize;
    if body.len() < 4 + meta_len {
        return Err(corrupt("metadata overruns the body".into()));
    }
    let meta: SnapshotMeta =
        serde_json::from_slice(&body[4..4 + meta_len]).map_err(|e| corrupt(format!("bad metadata: {e}")))?;
    Ok((meta, body[4 + meta_len..].to_vec()))
}

/// Reads the snapshot at `path`; `Ok(None)` when there is none yet.
pub fn read(path: &Path) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => decode(&bytes, &path.display().to_string()).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Creates `dir` and any missing parents readable by their owner only (0700): a data dir
/// holds every spec's environment, and a backup the whole state.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one:
/// a temp file is written and synced, renamed over `path`, and the directory synced. The
/// file is readable by its owner only (0600); a missing directory is created 0700.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // A temp file left by a crash keeps its old mode through `open`.
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(openraft::LogId::new(openraft::CommittedLeaderId::new(3, 1), 42)),
            last_membership: Default::default(),
            snapshot_id: "3-42-1".into(),
        }
    }

    #[test]
    fn files_are_written_0600_in_dirs_created_0700() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("a/b/current.snap");
        write_atomically(&file, b"x").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(mode(&root.path().join("a/b")), 0o700);
        // Over an existing file of another mode too.
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(file.with_extension("tmp"), b"left by a crash").unwrap();
        fs::set_permissions(file.with_extension("tmp"), fs::Permissions::from_mode(0o666)).unwrap();
        write_atomically(&file, b"y").unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(fs::read(&file).unwrap(), b"y");
    }

    #[test]
    fn round_trips() {
        let bytes = encode(&meta(), b"{\"services\":{}}");
        let (m, d) = decode(&bytes, "t").unwrap();
        assert_eq!(m, meta());
        assert_eq!(d, b"{\"services\":{}}");
    }

    #[test]
    fn every_truncation_and_bit_flip_is_refused() {
        let bytes = encode(&meta(), &vec![7u8; 300]);
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len], "t").is_err(), "truncated to {len}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(decode(&b, "t").is_err(), "bit flip at {i}");
        }
    }
}
