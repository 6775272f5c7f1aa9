//! `events [--follow] [--since INDEX]` and `get events`.

use flotilla_proto::v1::{EventInfo, EventsRequest};
use serde::Serialize;

use crate::args::Format;
use crate::client::Client;
use crate::error::CliError;
use crate::output::{age, now_ms, render, table};

#[derive(Serialize)]
pub(crate) struct EventView {
    index: u64,
    at_ms: u64,
    kind: String,
    object: String,
    message: String,
}

pub async fn events(client: &Client, out: Format, since: u64, follow: bool) -> Result<(), CliError> {
    let mut stream = client.stream(EventsRequest { since, follow }).await?;
    let mut rows = Vec::new();
    let mut header = true;
    loop {
        match stream.message().await {
            Ok(Some(e)) => {
                let view = view(e);
                if follow {
                    // One line per event as it arrives (JSON lines for scripts).
                    let line = match out {
                        Format::Json => {
                            serde_json::to_string(&view).map_err(|e| CliError::Failed(e.to_string()))? + "\n"
                        }
                        Format::Yaml => render(out, &vec![&view], String::new)?,
                        _ => {
                            // Fixed widths: each line is printed as it arrives.
                            let head = if std::mem::take(&mut header) {
                                format!("{:<7} {:<5} {:<18} {:<20} MESSAGE\n", "INDEX", "AGE", "KIND", "OBJECT")
                            } else {
                                String::new()
                            };
                            let r = row(&view);
                            format!("{head}{:<7} {:<5} {:<18} {:<20} {}\n", r[0], r[1], r[2], r[3], r[4])
                        }
                    };
                    print!("{line}");
                } else {
                    rows.push(view);
                }
            }
            Ok(None) => break,
            Err(s) => return Err(CliError::from_status(&s)),
        }
    }
    if !follow {
        print!(
            "{}",
            render(out, &rows, || {
                if rows.is_empty() {
                    return "No events.\n".into();
                }
                table_of(&rows)
            })?
        );
    }
    Ok(())
}

/// The events about service `name` and its tasks (ids `NAME.SLOT.SEQ`) that the node asked
/// still holds, oldest first.
pub(crate) async fn of_service(client: &Client, name: &str) -> Result<Vec<EventView>, CliError> {
    let mut stream = client
        .stream(EventsRequest {
            since: 0,
            follow: false,
        })
        .await?;
    let task_prefix = format!("{name}.");
    let mut events = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(e)) if e.object == name || e.object.starts_with(&task_prefix) => events.push(view(e)),
            Ok(Some(_)) => {}
            Ok(None) => return Ok(events),
            Err(s) => return Err(CliError::from_status(&s)),
        }
    }
}

/// Events as a table (with ages).
pub(crate) fn table_of(events: &[EventView]) -> String {
    table(
        &["INDEX", "AGE", "KIND", "OBJECT", "MESSAGE"],
        &events.iter().map(row).collect::<Vec<_>>(),
    )
}

fn view(e: EventInfo) -> EventView {
    EventView {
        index: e.index,
        at_ms: e.at_ms,
        kind: e.kind,
        object: e.object,
        message: e.message,
    }
}

fn row(e: &EventView) -> Vec<String> {
    vec![
        e.index.to_string(),
        age(e.at_ms, now_ms()),
        e.kind.clone(),
        e.object.clone(),
        e.message.clone(),
    ]
}
