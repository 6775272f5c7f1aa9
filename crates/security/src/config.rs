//! The client configuration file: where the cluster is, the CA to check it against and
//! the token to show. The node that initializes a cluster writes one for an admin into
//! its data dir (owner-only), as k3s writes its kubeconfig; the CLI reads it from
//! `--config`, `FLOTILLA_CONFIG` or `~/.config/flotilla/config.yaml`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::SecurityError;

/// The admin config's file name in the initializing node's data dir.
pub const ADMIN_CONFIG: &str = "admin.yaml";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfigFile {
    /// API addresses (`host:port`) of cluster members.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// PEM of the cluster CA.
    pub ca: String,
    /// A client token (`flotilla token create`).
    pub token: String,
}

impl ClientConfigFile {
    pub fn load(path: &Path) -> Result<ClientConfigFile, SecurityError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SecurityError::Io(format!("cannot read client config {}: {e}", path.display())))?;
        serde_norway::from_str(&text)
            .map_err(|e| SecurityError::Cert(format!("invalid client config {}: {e}", path.display())))
    }

    /// Writes the file readable by its owner only (it holds a credential).
    pub fn save(&self, path: &Path) -> Result<(), SecurityError> {
        let text = serde_norway::to_string(self).map_err(|e| SecurityError::Cert(e.to_string()))?;
        write_private(path, text.as_bytes())
    }
}

/// Writes `bytes` to `path` (replacing it) with mode 0600, through a temporary file.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SecurityError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e: std::io::Error| SecurityError::Io(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The default client config: `$FLOTILLA_CONFIG`'s absence falls back to
/// `~/.config/flotilla/config.yaml`.
pub fn default_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/flotilla/config.yaml"))
}
