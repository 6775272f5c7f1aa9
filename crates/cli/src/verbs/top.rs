//! `top [-w]`: CPU, memory and network of every running task, measured by the drivers of
//! the nodes that run them and gathered by the node asked.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use flotilla_proto::v1::{TaskStat, TopRequest, TopResponse};
use serde::Serialize;

use crate::args::Format;
use crate::client::Client;
use crate::error::CliError;
use crate::output::{render, table};

/// How often `-w` refreshes.
const REFRESH: Duration = Duration::from_secs(2);

#[derive(Serialize)]
struct StatView<'a> {
    task: &'a str,
    service: &'a str,
    node: u64,
    cpu_percent: f64,
    memory_bytes: u64,
    /// `null` when the driver cannot tell (a process shares the host's network).
    rx_bytes: Option<u64>,
    tx_bytes: Option<u64>,
}

#[derive(Serialize)]
struct UnreachableView<'a> {
    node: u64,
    error: &'a str,
}

#[derive(Serialize)]
struct TopView<'a> {
    tasks: Vec<StatView<'a>>,
    unreachable: Vec<UnreachableView<'a>>,
}

/// 1023B, 1.5KiB, 12.0MiB, …
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

fn rows(stats: &[TaskStat]) -> Vec<Vec<String>> {
    stats
        .iter()
        .map(|s| {
            vec![
                s.task.clone(),
                s.service.clone(),
                s.node_id.to_string(),
                format!("{:.1}", s.cpu_percent),
                bytes(s.memory_bytes),
                s.rx_bytes.map_or_else(|| "-".into(), bytes),
                s.tx_bytes.map_or_else(|| "-".into(), bytes),
            ]
        })
        .collect()
}

fn text(r: &TopResponse, out: Format, quiet: bool) -> Result<String, CliError> {
    if quiet {
        return Ok(crate::output::ids(r.stats.iter().map(|s| s.task.as_str())));
    }
    let view = TopView {
        tasks: r
            .stats
            .iter()
            .map(|s| StatView {
                task: &s.task,
                service: &s.service,
                node: s.node_id,
                cpu_percent: s.cpu_percent,
                memory_bytes: s.memory_bytes,
                rx_bytes: s.rx_bytes,
                tx_bytes: s.tx_bytes,
            })
            .collect(),
        unreachable: r
            .unreachable
            .iter()
            .map(|u| UnreachableView {
                node: u.node_id,
                error: &u.error,
            })
            .collect(),
    };
    let mut text = render(out, &view, || {
        let mut t = table(
            &["TASK", "SERVICE", "NODE", "CPU%", "MEM", "NET RX", "NET TX"],
            &rows(&r.stats),
        );
        for u in &r.unreachable {
            t.push_str(&format!("node {} did not answer: {}\n", u.node_id, u.error));
        }
        t
    })?;
    // JSON on one line per refresh, so `-w -o json` streams.
    if out == Format::Json {
        text = serde_json::to_string(&view).map_err(|e| CliError::Failed(e.to_string()))? + "\n";
    }
    Ok(text)
}

pub async fn top(client: &Client, out: Format, quiet: bool, watch: bool) -> Result<(), CliError> {
    let clear = watch && out != Format::Json && std::io::stdout().is_terminal();
    loop {
        match client.send(TopRequest {}).await {
            Ok(r) => {
                let shown = text(&r, out, quiet)?;
                let mut stdout = std::io::stdout().lock();
                if clear {
                    let _ = write!(stdout, "\x1b[H\x1b[2J");
                }
                if write!(stdout, "{shown}").and_then(|()| stdout.flush()).is_err() {
                    return Ok(()); // stdout closed
                }
            }
            Err(e) if watch => eprintln!("warning: {e}"),
            Err(e) => return Err(e),
        }
        if !watch {
            return Ok(());
        }
        if out != Format::Json && !clear {
            println!();
        }
        tokio::time::sleep(REFRESH).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_top() {
        assert_eq!(bytes(0), "0B");
        assert_eq!(bytes(1023), "1023B");
        assert_eq!(bytes(1536), "1.5KiB");
        assert_eq!(bytes(12 << 20), "12.0MiB");
    }
}
