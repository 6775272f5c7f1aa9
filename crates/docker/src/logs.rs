//! The engine's log stream cut into lines. The engine sends frames per write, which may
//! hold several lines or part of one, so each stream keeps its unfinished line until the
//! rest arrives or the stream ends.

use std::collections::VecDeque;

use bollard::container::LogOutput;
use flotilla_executor::{ContainerId, DriverError, LogLine, LogStream, Logs};
use futures::stream::BoxStream;
use futures::StreamExt;

pub(crate) fn lines(id: ContainerId, frames: BoxStream<'static, Result<LogOutput, bollard::errors::Error>>) -> Logs {
    let splitter = Splitter {
        id,
        frames,
        stdout: Vec::new(),
        stderr: Vec::new(),
        pending: VecDeque::new(),
        done: false,
    };
    futures::stream::unfold(splitter, |mut s| async move {
        let item = s.next().await?;
        Some((item, s))
    })
    .boxed()
}

struct Splitter {
    id: ContainerId,
    frames: BoxStream<'static, Result<LogOutput, bollard::errors::Error>>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    pending: VecDeque<LogLine>,
    done: bool,
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
        let buffer = match stream {
            LogStream::Stdout => &mut self.stdout,
            LogStream::Stderr => &mut self.stderr,
        };
        buffer.extend_from_slice(&bytes);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            self.pending.push_back(line_of(stream, &line[..end]));
        }
    }

    /// The stream ended: unterminated last lines still count.
    fn flush(&mut self) {
        for (stream, buffer) in [
            (LogStream::Stdout, std::mem::take(&mut self.stdout)),
            (LogStream::Stderr, std::mem::take(&mut self.stderr)),
        ] {
            if !buffer.is_empty() {
                self.pending.push_back(line_of(stream, &buffer));
            }
        }
    }
}

fn line_of(stream: LogStream, bytes: &[u8]) -> LogLine {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    LogLine {
        stream,
        text: String::from_utf8_lossy(bytes).into_owned(),
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
        let got: Vec<_> = lines(ContainerId("x".into()), frames)
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
}
