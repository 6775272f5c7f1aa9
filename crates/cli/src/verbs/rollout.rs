//! `flotilla rollout status|history|undo|pause|resume`.

use flotilla_proto::v1::{RolloutControlRequest, RolloutHistoryRequest, RolloutInfo, RolloutRequest};
use flotilla_scheduler::RolloutReport;
use serde::Serialize;

use crate::args::{Format, RolloutWhat};
use crate::client::Client;
use crate::error::CliError;
use crate::output::{age, now_ms, print, table};

fn report(info: &RolloutInfo) -> Result<RolloutReport, CliError> {
    serde_json::from_str(&info.report_json)
        .map_err(|e| CliError::Failed(format!("the node sent an unreadable rollout report: {e}")))
}

pub async fn status(client: &Client, name: &str, stale: bool) -> Result<RolloutReport, CliError> {
    let info = client
        .send(RolloutRequest {
            name: name.into(),
            stale,
        })
        .await?;
    report(&info)
}

fn millis(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

/// The human form of a report.
pub fn describe(r: &RolloutReport) -> String {
    let now = now_ms();
    let mut text = format!("Service:    {} (version {})\n", r.service, r.version);
    if r.phase == "none" {
        text.push_str(&format!(
            "Rollout:    none yet (every task runs the template of version {})\n",
            r.template_version
        ));
        return text;
    }
    let state = match &r.paused {
        Some(_) => format!("{} (paused)", r.phase),
        None => r.phase.clone(),
    };
    text.push_str(&format!("State:      {state}\n"));
    text.push_str(&format!(
        "Change:     version {} -> {} ({}, started {} ago)\n",
        r.from_version,
        r.to_version,
        r.cause,
        age(r.started_at, now)
    ));
    if r.phase == "rolling-back" || r.phase == "rolled-back" {
        text.push_str(&format!("Target:     version {} (rollback)\n", r.template_version));
    }
    text.push_str(&format!(
        "Progress:   {}/{} on the target template, {} serving, {} passed monitor\n",
        r.updated, r.replicas, r.serving, r.done
    ));
    text.push_str(&format!(
        "Policy:     parallelism {}, {}, monitor {}, delay {}, on failure {}\n",
        match r.parallelism {
            0 => "0 (all at once)".to_string(),
            p => p.to_string(),
        },
        r.order,
        millis(r.monitor_ms),
        millis(r.delay_ms),
        r.failure_action
    ));
    if r.failures > 0 {
        text.push_str(&format!("Failures:   {}\n", r.failures));
    }
    if let Some(p) = &r.paused {
        text.push_str(&format!("Paused:     {p}\n"));
    }
    if !r.reason.is_empty() && r.paused.as_ref() != Some(&r.reason) {
        text.push_str(&format!("Reason:     {}\n", r.reason));
    }
    if !r.waiting.is_empty() && r.paused.is_none() {
        text.push_str(&format!("Waiting:    {}\n", r.waiting));
    }
    if !r.batches.is_empty() {
        text.push_str("Batches:\n");
        let rows: Vec<Vec<String>> = r
            .batches
            .iter()
            .map(|b| {
                vec![
                    b.number.to_string(),
                    b.target.to_string(),
                    b.slots.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
                    b.state.clone(),
                    b.tasks.join(","),
                    age(b.started_at, now),
                ]
            })
            .collect();
        for line in table(&["BATCH", "VERSION", "SLOTS", "STATE", "TASKS", "AGE"], &rows).lines() {
            text.push_str(&format!("  {line}\n"));
        }
    }
    text
}

#[derive(Serialize)]
struct RevisionView {
    version: u64,
    template_version: u64,
    change: String,
    at_ms: u64,
    current: bool,
    spec: serde_json::Value,
}

pub async fn run(client: &Client, out: Format, what: RolloutWhat) -> Result<(), CliError> {
    match what {
        RolloutWhat::Status { name, stale } => {
            let r = status(client, &name, stale).await?;
            print(out, &r, || describe(&r))
        }
        RolloutWhat::History { name, stale } => {
            let h = client.send(RolloutHistoryRequest { name, stale }).await?;
            let views: Vec<RevisionView> = h
                .revisions
                .iter()
                .map(|r| RevisionView {
                    version: r.version,
                    template_version: r.template_version,
                    change: r.change.clone(),
                    at_ms: r.at_ms,
                    current: r.version == h.version,
                    spec: serde_json::from_str(&r.spec_json).unwrap_or_default(),
                })
                .collect();
            print(out, &views, || {
                let now = now_ms();
                let rows: Vec<Vec<String>> = views
                    .iter()
                    .map(|v| {
                        vec![
                            format!("{}{}", v.version, if v.current { "*" } else { "" }),
                            v.template_version.to_string(),
                            v.spec["image"].as_str().unwrap_or_default().to_string(),
                            v.spec["replicas"].to_string(),
                            age(v.at_ms, now),
                            v.change.clone(),
                        ]
                    })
                    .collect();
                table(&["VERSION", "TEMPLATE", "IMAGE", "REPLICAS", "AGE", "CHANGE"], &rows)
            })
        }
        RolloutWhat::Undo { name, to_version } => control(client, out, &name, "undo", to_version).await,
        RolloutWhat::Pause { name } => control(client, out, &name, "pause", None).await,
        RolloutWhat::Resume { name } => control(client, out, &name, "resume", None).await,
    }
}

async fn control(
    client: &Client,
    out: Format,
    name: &str,
    action: &str,
    to_version: Option<u64>,
) -> Result<(), CliError> {
    let info = client
        .send(RolloutControlRequest {
            name: name.into(),
            action: action.into(),
            to_version,
        })
        .await?;
    let r = report(&info)?;
    print(out, &r, || {
        let what = match action {
            "pause" => "rollout paused".to_string(),
            "resume" => "rollout resumed".to_string(),
            _ => format!(
                "rolling back to the template of version {} (now version {})",
                r.template_version, r.version
            ),
        };
        format!("service/{name}: {what}\n")
    })
}
