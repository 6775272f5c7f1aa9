//! The engine's log stream cut into lines. The engine sends frames per write, which may
//! hold several lines or part of one, so each stream keeps its unfinished line until the
//! rest arrives or the stream ends. Logs are asked with timestamps: each frame starts with
//! the RFC 3339 time of its write, which becomes the time of the line it starts.

use std::collections::VecDeque;

use bollard::container::LogOutput;
use flotilla_executor::{ContainerId, DriverError, LogLine, LogStream, Logs};
use futures::stream::BoxStream;
use futures::StreamExt;

/// The lines of `frames` (timestamped by the engine), without those written before
/// `since_ms`.
pub(crate) fn lines(
    id: ContainerId,
    frames: BoxStream<'static, Result<LogOutput, bollard::errors::Error>>,
    since_ms: Option<u64>,
) -> Logs {
    let splitter = Splitter {
        id,
        frames,
        stdout: Partial::default(),
        stderr: Partial::default(),
        pending: VecDeque::new(),
        done: false,
    };
    let lines = futures::stream::unfold(splitter, |mut s| async move {
        let item = s.next().await?;
        Some((item, s))
    });
    match since_ms {
        None => lines.boxed(),
        Some(since) => lines
            .filter(move |l| {
                let keep = !matches!(l, Ok(LogLine { at_ms: Some(at), .. }) if *at < since);
                async move { keep }
            })
            .boxed(),
    }
}

/// A line not yet terminated, and when its first frame was written.
#[derive(Default)]
struct Partial {
    bytes: Vec<u8>,
    at_ms: Option<u64>,
}

struct Splitter {
    id: ContainerId,
    frames: BoxStream<'static, Result<LogOutput, bollard::errors::Error>>,
    stdout: Partial,
    stderr: Partial,
    pending: VecDeque<LogLine>,
    done: bool,
}

/// `2024-05-01T12:00:00.123456789Z text` → (its time in Unix milliseconds, `text`). A frame
/// without a readable time is all text.
fn timestamped(frame: &[u8]) -> (Option<u64>, &[u8]) {
    let Some(space) = frame.iter().position(|b| *b == b' ') else {
        return (None, frame);
    };
    let at = std::str::from_utf8(&frame[..space])
        .ok()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64);
    match at {
        Some(at) => (Some(at), &frame[space + 1..]),
        None => (None, frame),
    }
}

impl Splitter {
    async fn next(&mut self) -> Option<Result<LogLine, DriverError>> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Some(Ok(line));
            }
            if self.done {
                return None;
            }
            match self.frames.next().await {
                Some(Ok(frame)) => self.push(frame),
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(crate::error::on_container(&self.id, e)));
                }
                None => {
                    self.done = true;
                    self.flush();
                }
            }
        }
    }

    fn push(&mut self, frame: LogOutput) {
        let (stream, bytes) = match frame {
            // A tty merges both streams; we never allocate one, but stay total.
            LogOutput::StdOut { message } | LogOutput::Console { message } => (LogStream::Stdout, message),
            LogOutput::StdErr { message } => (LogStream::Stderr, message),
            LogOutput::StdIn { .. } => return,
        };
        let partial = match stream {
            LogStream::Stdout => &mut self.stdout,
            LogStream::Stderr => &mut self.stderr,
        };
        let (at_ms, text) = timestamped(&bytes);
        if partial.bytes.is_empty() {
            partial.at_ms = at_ms;
        }
        partial.bytes.extend_from_slice(text);
        while let Some(end) = partial.bytes.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial.bytes.drain(..=end).collect();
            self.pending.push_back(line_of(stream, &line[..end], partial.at_ms));
            // The rest of this frame was written at the same time.
            partial.at_ms = at_ms;
        }
    }

    /// The stream ended: unterminated last lines still count.
    fn flush(&mut self) {
        for (stream, partial) in [
            (LogStream::Stdout, std::mem::take(&mut self.stdout)),
            (LogStream::Stderr, std::mem::take(&mut self.stderr)),
        ] {
            if !partial.bytes.is_empty() {
                self.pending.push_back(line_of(stream, &partial.bytes, partial.at_ms));
            }
        }
    }
}

fn line_of(stream: LogStream, bytes: &[u8], at_ms: Option<u64>) -> LogLine {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    LogLine {
        stream,
        text: String::from_utf8_lossy(bytes).into_owned(),
        at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_cut_into_lines_per_stream() {
        let frame = |stream: LogStream, text: &str| {
            let message = text.to_string().into_bytes().into();
            Ok(match stream {
                LogStream::Stdout => LogOutput::StdOut { message },
                LogStream::Stderr => LogOutput::StdErr { message },
            })
        };
        let frames = futures::stream::iter(vec![
            frame(LogStream::Stdout, "a\nb"),
            frame(LogStream::Stderr, "e1\n"),
            frame(LogStream::Stdout, "c\nd\n"),
            frame(LogStream::Stdout, "tail"),
        ])
        .boxed();
        let got: Vec<_> = lines(ContainerId("x".into()), frames, None)
            .map(|l| l.unwrap())
            .map(|l| (l.stream, l.text))
            .collect()
            .await;
        let out = |t: &str| (LogStream::Stdout, t.to_string());
        assert_eq!(
            got,
            vec![
                out("a"),
                (LogStream::Stderr, "e1".to_string()),
                out("bc"),
                out("d"),
                out("tail"),
            ]
        );
    }

    #[tokio::test]
    async fn frame_times_become_line_times_and_since_drops_older_lines() {
        let frame = |text: &str| {
            Ok(LogOutput::StdOut {
                message: text.to_string().into_bytes().into(),
            })
        };
        let frames = || {
            futures::stream::iter(vec![
                frame("1970-01-01T00:00:01.500000000Z early\n"),
                frame("1970-01-01T00:00:03Z late\nsame"),
                frame("1970-01-01T00:00:04Z -frame\n"),
            ])
            .boxed()
        };
        let got: Vec<_> = lines(ContainerId("x".into()), frames(), None)
            .map(|l| l.unwrap())
            .map(|l| (l.text, l.at_ms))
            .collect()
            .await;
        assert_eq!(
            got,
            vec![
                ("early".to_string(), Some(1_500)),
                ("late".to_string(), Some(3_000)),
                ("same-frame".to_string(), Some(3_000)),
            ]
        );
        let since: Vec<_> = lines(ContainerId("x".into()), frames(), Some(2_000))
            .map(|l| l.unwrap().text)
            .collect()
            .await;
        assert_eq!(since, ["late", "same-frame"]);
    }
}
