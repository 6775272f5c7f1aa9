//! How much log a task may keep on its node. The Docker driver hands this to the engine
//! (`json-file`, `max-size`, `max-file`); the process driver rotates its own files by
//! copy and truncate (see `process::rotate`).

use std::path::{Path, PathBuf};

/// A log file is rotated once it reaches `max_size` bytes; `max_files` files are kept,
/// the one being written included, so a task keeps at most `max_size * max_files` bytes
/// per stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotation {
    pub max_size: u64,
    pub max_files: u32,
}

impl Default for LogRotation {
    /// 10 MiB, 3 files: at most 30 MiB of log per container and stream.
    fn default() -> Self {
        LogRotation {
            max_size: 10 * 1024 * 1024,
            max_files: 3,
        }
    }
}

impl LogRotation {
    /// Rotates `path` when it has reached `max_size`: `path.1` becomes `path.2` and so on
    /// (the oldest beyond `max_files` is deleted), `path` is copied to `path.1`, then
    /// truncated. The writer keeps its descriptor (opened with `O_APPEND`, so it goes on
    /// at the new end); lines written between the copy and the truncation are lost, the
    /// known price of copy-and-truncate. True when it rotated.
    pub fn rotate(&self, path: &Path) -> std::io::Result<bool> {
        let len = match std::fs::metadata(path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if len < self.max_size.max(1) {
            return Ok(false);
        }
        let keep = self.max_files.max(1);
        // Older files: path.(keep-1) is the last one kept.
        let numbered = |n: u32| -> PathBuf {
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        for n in (1..keep).rev() {
            let from = numbered(n);
            if n + 1 >= keep {
                remove_if_present(&from)?;
            } else if from.exists() {
                std::fs::rename(&from, numbered(n + 1))?;
            }
        }
        // Leftovers of a larger setting earlier.
        remove_if_present(&numbered(keep))?;
        if keep > 1 {
            std::fs::copy(path, numbered(1))?;
        }
        std::fs::OpenOptions::new().write(true).open(path)?.set_len(0)?;
        Ok(true)
    }
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn files_rotate_at_the_size_and_only_the_count_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stdout.log");
        let rotation = LogRotation {
            max_size: 10,
            max_files: 3,
        };
        assert!(!rotation.rotate(&log).unwrap(), "no file: nothing to do");
        write(&log, "short\n");
        assert!(!rotation.rotate(&log).unwrap(), "under the size");
        for round in 0..5 {
            write(&log, &format!("round {round} line\n"));
            assert!(rotation.rotate(&log).unwrap());
            assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
        }
        let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap();
        assert_eq!(read("stdout.log.1"), "round 4 line\n");
        assert_eq!(read("stdout.log.2"), "round 3 line\n");
        assert!(!dir.path().join("stdout.log.3").exists());
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["stdout.log", "stdout.log.1", "stdout.log.2"]);
    }

    #[test]
    fn one_file_means_truncate_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        let rotation = LogRotation {
            max_size: 4,
            max_files: 1,
        };
        write(&log, "0123456789\n");
        assert!(rotation.rotate(&log).unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
    }
}
