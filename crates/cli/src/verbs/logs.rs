//! `logs TASK|SERVICE [-f] [--tail N]`.

use std::io::Write;

use flotilla_proto::v1::LogsRequest;

use crate::client::Client;
use crate::error::CliError;

pub async fn logs(client: &Client, target: &str, follow: bool, tail: Option<u32>) -> Result<(), CliError> {
    let req = LogsRequest {
        target: target.to_string(),
        follow,
        tail,
    };
    let mut stream = client.stream(req).await?;
    // One task's lines are printed as they are; a service's are prefixed with the task.
    let single = !target.is_empty() && target.matches('.').count() == 2;
    let stdout = std::io::stdout();
    loop {
        match stream.message().await {
            Ok(Some(chunk)) => {
                let mut out = stdout.lock();
                let written = if single {
                    writeln!(out, "{}", chunk.line)
                } else {
                    writeln!(out, "{} | {}", chunk.task, chunk.line)
                };
                if written.is_err() {
                    return Ok(()); // stdout closed (e.g. piped into head)
                }
            }
            Ok(None) => return Ok(()),
            Err(s) => return Err(CliError::from_status(&s)),
        }
    }
}
