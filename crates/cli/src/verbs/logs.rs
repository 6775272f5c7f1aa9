//! `logs TASK|SERVICE.SLOT|SERVICE [-f] [--tail N] [--timestamps] [--since DURATION]`.

use std::io::Write;
use std::time::Duration;

use flotilla_proto::v1::{LogChunk, LogsRequest};
use serde::Serialize;

use crate::args::Format;
use crate::client::Client;
use crate::error::CliError;

pub struct Options {
    pub follow: bool,
    pub tail: Option<u32>,
    pub timestamps: bool,
    pub since: Option<Duration>,
}

/// One line as `-o json` prints it (one object per line).
#[derive(Serialize)]
struct LineView<'a> {
    task: &'a str,
    stream: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    line: &'a str,
}

/// RFC 3339 with milliseconds; `-` when the driver did not know the time.
fn time_of(at_ms: u64) -> String {
    if at_ms == 0 {
        return "-".into();
    }
    let t = std::time::UNIX_EPOCH + Duration::from_millis(at_ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// How one chunk is printed: one task's lines as they are, a service's prefixed with the
/// task; `--timestamps` puts the time first.
fn render(out: Format, chunk: &LogChunk, single: bool, timestamps: bool) -> Result<String, CliError> {
    if out == Format::Json {
        let view = LineView {
            task: &chunk.task,
            stream: &chunk.stream,
            time: (chunk.at_ms != 0).then(|| time_of(chunk.at_ms)),
            line: &chunk.line,
        };
        return serde_json::to_string(&view).map_err(|e| CliError::Failed(e.to_string()));
    }
    let mut text = String::new();
    if timestamps {
        text.push_str(&time_of(chunk.at_ms));
        text.push(' ');
    }
    if !single {
        text.push_str(&chunk.task);
        text.push_str(" | ");
    }
    text.push_str(&chunk.line);
    Ok(text)
}

pub async fn logs(client: &Client, out: Format, target: &str, options: Options) -> Result<(), CliError> {
    if out == Format::Yaml {
        return Err(CliError::Usage("logs prints text or, with -o json, JSON lines".into()));
    }
    // `web.1`: the slot's current task.
    let target = if target.matches('.').count() == 1 {
        super::tasks::resolve(client, target, false).await?.1.id
    } else {
        target.to_string()
    };
    let since_ms = options
        .since
        .map(|d| crate::output::now_ms().saturating_sub(d.as_millis() as u64));
    let req = LogsRequest {
        target: target.clone(),
        follow: options.follow,
        tail: options.tail,
        since_ms,
    };
    let mut stream = client.stream(req).await?;
    let single = target.matches('.').count() == 2;
    let stdout = std::io::stdout();
    loop {
        match stream.message().await {
            Ok(Some(chunk)) => {
                let line = render(out, &chunk, single, options.timestamps)?;
                if writeln!(stdout.lock(), "{line}").is_err() {
                    return Ok(()); // stdout closed (e.g. piped into head)
                }
            }
            Ok(None) => return Ok(()),
            Err(s) => return Err(CliError::from_status(&s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(at_ms: u64) -> LogChunk {
        LogChunk {
            task: "web.0.3".into(),
            stream: "stdout".into(),
            line: "hello".into(),
            at_ms,
        }
    }

    #[test]
    fn lines_as_text_json_and_with_times() {
        let text = |c: &LogChunk, single, ts| render(Format::Table, c, single, ts).expect("text");
        assert_eq!(text(&chunk(0), true, false), "hello");
        assert_eq!(text(&chunk(0), false, false), "web.0.3 | hello");
        assert_eq!(text(&chunk(1_500), true, true), "1970-01-01T00:00:01.500Z hello");
        assert_eq!(text(&chunk(0), true, true), "- hello");
        let json = render(Format::Json, &chunk(1_500), false, false).expect("json");
        assert_eq!(
            json,
            r#"{"task":"web.0.3","stream":"stdout","time":"1970-01-01T00:00:01.500Z","line":"hello"}"#
        );
        assert!(!json.contains('\n'));
    }
}
