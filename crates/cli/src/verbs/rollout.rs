//! `flotilla rollout status|history|undo|pause|resume`.

use flotilla_proto::v1::{self, RolloutControlRequest, RolloutHistoryRequest, RolloutInfo, RolloutRequest};
use flotilla_types::RolloutOp;
use serde::Serialize;

use crate::args::{Format, RolloutWhat};
use crate::client::Client;
use crate::error::CliError;
use crate::output::{age, now_ms, print, table};

/// A rollout as `rollout status` prints it: the report's fields under the names (and with
/// the omissions) `-o json` and `-o yaml` have always shown.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutReport {
    pub service: String,
    pub version: u64,
    pub template_version: u64,
    /// `none` when the service never had a template change.
    pub phase: String,
    pub from_version: u64,
    pub to_version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    pub cause: String,
    pub replicas: u32,
    pub updated: u32,
    pub serving: u32,
    pub done: u32,
    pub failures: u32,
    pub parallelism: u32,
    pub order: String,
    pub monitor_ms: u64,
    pub delay_ms: u64,
    pub failure_action: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub waiting: String,
    pub started_at: u64,
    pub updated_at: u64,
    pub batches: Vec<BatchReport>,
    /// Rebalancing moves under way.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub moves: Vec<MoveView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MoveView {
    pub slot: u32,
    pub task: String,
    pub from: u64,
    /// Unset while the copy waits for a node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
    pub state: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchReport {
    pub number: u32,
    pub target: u64,
    pub slots: Vec<u32>,
    pub state: String,
    pub tasks: Vec<String>,
    pub started_at: u64,
}

impl From<&v1::RolloutReport> for RolloutReport {
    fn from(r: &v1::RolloutReport) -> Self {
        RolloutReport {
            service: r.service.clone(),
            version: r.version,
            template_version: r.template_version,
            phase: r.phase().word().into(),
            from_version: r.from_version,
            to_version: r.to_version,
            paused: r.paused.clone(),
            reason: r.reason.clone(),
            cause: r.cause.clone(),
            replicas: r.replicas,
            updated: r.updated,
            serving: r.serving,
            done: r.done,
            failures: r.failures,
            parallelism: r.parallelism,
            order: r.order().word().into(),
            monitor_ms: r.monitor_ms,
            delay_ms: r.delay_ms,
            failure_action: r.failure_action().word().into(),
            waiting: r.waiting.clone(),
            started_at: r.started_at_ms,
            updated_at: r.updated_at_ms,
            batches: r
                .batches
                .iter()
                .map(|b| BatchReport {
                    number: b.number,
                    target: b.target,
                    slots: b.slots.clone(),
                    state: b.state().word().into(),
                    tasks: b.tasks.clone(),
                    started_at: b.started_at_ms,
                })
                .collect(),
            moves: r
                .moves
                .iter()
                .map(|m| MoveView {
                    slot: m.slot,
                    task: m.task.clone(),
                    from: m.from_node,
                    to: (m.to_node != 0).then_some(m.to_node),
                    state: m.state.clone(),
                    reason: m.reason.clone(),
                })
                .collect(),
        }
    }
}

fn report(info: &RolloutInfo) -> Result<RolloutReport, CliError> {
    info.report
        .as_ref()
        .map(RolloutReport::from)
        .ok_or_else(|| CliError::Failed("the node sent no rollout report".into()))
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
        text.push_str(&moves(r));
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
    text.push_str(&moves(r));
    text
}

/// The rebalancing moves under way, as a table under `Moves:`; empty when there are none.
fn moves(r: &RolloutReport) -> String {
    if r.moves.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = r
        .moves
        .iter()
        .map(|m| {
            vec![
                m.slot.to_string(),
                m.task.clone(),
                m.from.to_string(),
                m.to.map_or_else(|| "-".into(), |n| n.to_string()),
                m.state.clone(),
                m.reason.clone(),
            ]
        })
        .collect();
    let mut text = String::from("Moves:\n");
    for line in table(&["SLOT", "TASK", "FROM", "TO", "STATE", "WHY"], &rows).lines() {
        text.push_str(&format!("  {line}\n"));
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
                    spec: serde_json::from_slice(&r.spec_document).unwrap_or_default(),
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
        RolloutWhat::Undo { name, to_version } => control(client, out, &name, RolloutOp::Undo { to_version }).await,
        RolloutWhat::Pause { name } => control(client, out, &name, RolloutOp::Pause).await,
        RolloutWhat::Resume { name } => control(client, out, &name, RolloutOp::Resume).await,
    }
}

async fn control(client: &Client, out: Format, name: &str, op: RolloutOp) -> Result<(), CliError> {
    let info = client
        .send(RolloutControlRequest {
            name: name.into(),
            ..RolloutControlRequest::from(&op)
        })
        .await?;
    let r = report(&info)?;
    print(out, &r, || {
        let what = match op {
            RolloutOp::Pause => "rollout paused".to_string(),
            RolloutOp::Resume => "rollout resumed".to_string(),
            RolloutOp::Undo { .. } => format!(
                "rolling back to the template of version {} (now version {})",
                r.template_version, r.version
            ),
        };
        format!("service/{name}: {what}\n")
    })
}
