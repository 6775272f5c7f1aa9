//! Logs of a process "container", read from its `stdout.log` and `stderr.log`. The child
//! writes those files directly (no relay), so its output survives a driver restart; the
//! price is that the order between the two streams is lost: stdout lines come first.

use std::collections::VecDeque;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::record::{self, Layout};
use super::Inner;
use crate::{ContainerId, ContainerState, DriverError, LogLine, LogOptions, LogStream, Logs};

/// How often `follow` looks for new output.
const POLL: Duration = Duration::from_millis(100);
/// Read at most this much per file per step, so a huge log is streamed, not slurped.
const CHUNK: u64 = 64 * 1024;

pub(crate) fn stream(inner: Arc<Inner>, id: ContainerId, options: LogOptions) -> Logs {
    let reader = Reader {
        inner,
        id,
        options,
        phase: Phase::Open,
        cursors: Vec::new(),
        pending: VecDeque::new(),
    };
    futures::stream::unfold(reader, |mut reader| async move {
        let item = reader.next().await?;
        Some((item, reader))
    })
    .boxed()
}

enum Phase {
    Open,
    Reading,
    Done,
}

struct Reader {
    inner: Arc<Inner>,
    id: ContainerId,
    options: LogOptions,
    phase: Phase,
    cursors: Vec<Cursor>,
    pending: VecDeque<LogLine>,
}

impl Reader {
    async fn next(&mut self) -> Option<Result<LogLine, DriverError>> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Some(Ok(line));
            }
            let step = match self.phase {
                Phase::Done => return None,
                Phase::Open => self.open().await,
                Phase::Reading => self.read().await,
            };
            if let Err(e) = step {
                self.phase = Phase::Done;
                return Some(Err(e));
            }
        }
    }

    async fn open(&mut self) -> Result<(), DriverError> {
        let dir = self.inner.layout.dir(&self.id);
        let dir = match dir {
            Some(dir) if record::load(&dir).await?.is_some() => dir,
            _ => return Err(DriverError::not_found(&self.id)),
        };
        for stream in [LogStream::Stdout, LogStream::Stderr] {
            let path = Layout::log(&dir, stream);
            let offset = if written_before(&path, self.options.since_ms).await? {
                end_offset(&path).await?
            } else {
                match self.options.tail {
                    Some(n) => tail_offset(&path, n).await?,
                    None => 0,
                }
            };
            self.cursors.push(Cursor {
                path,
                stream,
                offset,
                partial: Vec::new(),
            });
        }
        self.phase = Phase::Reading;
        Ok(())
    }

    /// One step: queue whatever is new; at the end of both files either wait (still
    /// running and following) or flush the unterminated last lines and finish.
    async fn read(&mut self) -> Result<(), DriverError> {
        // Sampled before reading: whatever the process wrote before it exited is then
        // certainly read in this step or a later one before we finish.
        let running = self.options.follow && self.running().await?;
        let mut at_end = true;
        for cursor in &mut self.cursors {
            at_end &= cursor.read_chunk(&mut self.pending).await?;
        }
        if !self.pending.is_empty() || !at_end {
            return Ok(());
        }
        if running {
            tokio::time::sleep(POLL).await;
            return Ok(());
        }
        for cursor in &mut self.cursors {
            cursor.flush(&mut self.pending);
        }
        self.phase = Phase::Done;
        Ok(())
    }

    async fn running(&self) -> Result<bool, DriverError> {
        match self.inner.status(&self.id).await {
            Ok(status) => Ok(status.state == ContainerState::Running),
            // Removed while we followed it: nothing more will be written.
            Err(DriverError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Reading position in one log file, with the start of a line not yet terminated.
struct Cursor {
    path: PathBuf,
    stream: LogStream,
    offset: u64,
    partial: Vec<u8>,
}

impl Cursor {
    /// Queues the complete lines in the next chunk; true when the end of file was reached.
    async fn read_chunk(&mut self, out: &mut VecDeque<LogLine>) -> Result<bool, DriverError> {
        let mut file = match tokio::fs::File::open(&self.path).await {
            Ok(file) => file,
            // Never started: no file yet.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(e.into()),
        };
        if file.metadata().await?.len() < self.offset {
            // Rotated (copied away and truncated): go on from the start of the new file.
            self.offset = 0;
        }
        file.seek(SeekFrom::Start(self.offset)).await?;
        let before = self.partial.len();
        let read = file.take(CHUNK).read_to_end(&mut self.partial).await?;
        self.offset += read as u64;
        let mut start = 0;
        for i in before..self.partial.len() {
            if self.partial[i] == b'\n' {
                out.push_back(self.line(&self.partial[start..i]));
                start = i + 1;
            }
        }
        self.partial.drain(..start);
        Ok((read as u64) < CHUNK)
    }

    /// The process is gone: its last line will not get its newline any more.
    fn flush(&mut self, out: &mut VecDeque<LogLine>) {
        if !self.partial.is_empty() {
            out.push_back(self.line(&self.partial));
            self.partial.clear();
        }
    }

    fn line(&self, bytes: &[u8]) -> LogLine {
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        LogLine {
            stream: self.stream,
            text: String::from_utf8_lossy(bytes).into_owned(),
            at_ms: None,
        }
    }
}

/// Whether the log file was last written before `since_ms`: then none of its lines is
/// recent enough. A missing file has nothing to skip.
async fn written_before(path: &Path, since_ms: Option<u64>) -> Result<bool, DriverError> {
    let Some(since_ms) = since_ms else { return Ok(false) };
    let modified = match tokio::fs::metadata(path).await {
        Ok(m) => m.modified()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let modified_ms = modified
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Ok(modified_ms < since_ms)
}

async fn end_offset(path: &Path) -> Result<u64, DriverError> {
    match tokio::fs::metadata(path).await {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Byte offset where the last `n` lines of the file begin, found by scanning backwards
/// so a long log is not read whole. A final newline ends the last line; it does not
/// start an empty one.
async fn tail_offset(path: &Path, n: usize) -> Result<u64, DriverError> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata().await?.len();
    if n == 0 {
        return Ok(len);
    }
    let mut newlines = 0;
    let mut end = len;
    let mut buf = vec![0u8; 8192];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start)).await?;
        file.read_exact(chunk).await?;
        for (i, byte) in chunk.iter().enumerate().rev() {
            let pos = start + i as u64;
            if *byte == b'\n' && pos + 1 != len {
                newlines += 1;
                if newlines == n {
                    return Ok(pos + 1);
                }
            }
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn tail_of(content: &str, n: usize) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, content).unwrap();
        let offset = tail_offset(&path, n).await.unwrap() as usize;
        content[offset..].to_string()
    }

    #[tokio::test]
    async fn tail_counts_lines_from_the_end() {
        assert_eq!(tail_of("a\nb\nc\n", 2).await, "b\nc\n");
        assert_eq!(tail_of("a\nb\nc\n", 1).await, "c\n");
        assert_eq!(tail_of("a\nb\nc\n", 9).await, "a\nb\nc\n");
        assert_eq!(tail_of("a\nb\nc\n", 0).await, "");
        assert_eq!(tail_of("a\nb", 1).await, "b");
        assert_eq!(tail_of("", 3).await, "");
    }

    #[tokio::test]
    async fn tail_crosses_chunk_boundaries() {
        let content: String = (0..5000).map(|i| format!("line{i}\n")).collect();
        assert_eq!(tail_of(&content, 2).await, "line4998\nline4999\n");
    }
}
