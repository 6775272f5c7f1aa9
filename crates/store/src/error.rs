use std::path::PathBuf;

/// Why a data dir cannot be opened. All of these stop the agent before it serves anything.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("RocksDB at {path}: {message}")]
    Rocks { path: PathBuf, message: String },
    #[error("corrupt data: {0}")]
    Corrupt(String),
    #[error("inconsistent data dir: {0}")]
    Inconsistent(String),
    #[error("data dir {dir} belongs to node {found}, not node {expected}")]
    WrongNode { dir: PathBuf, found: u64, expected: u64 },
}
