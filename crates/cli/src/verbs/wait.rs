//! `--wait`: follow services until they converge, with a progress bar; fail with the
//! reason when they cannot.

use std::time::{Duration, Instant};

use flotilla_proto::v1::TaskInfo;
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::Global;
use crate::client::Client;
use crate::error::CliError;

const POLL: Duration = Duration::from_millis(300);

struct Progress {
    replicas: u32,
    running: u32,
    healthy: u32,
    /// Why it cannot converge, when that is certain.
    failed: Option<String>,
    pending: Vec<String>,
}

fn assess(replicas: u32, template: u64, checked: bool, restart: &serde_json::Value, tasks: &[TaskInfo]) -> Progress {
    let current: Vec<&TaskInfo> = tasks
        .iter()
        .filter(|t| t.desired == "running" && t.spec_version == template)
        .collect();
    let running = current
        .iter()
        .filter(|t| t.state == "running" || t.state == "healthy")
        .count() as u32;
    let healthy = current.iter().filter(|t| t.state == "healthy").count() as u32;
    let condition = restart["condition"].as_str().unwrap_or("on-failure");
    let max_attempts = restart["max_attempts"].as_u64().unwrap_or(0) as u32;
    let failed = current.iter().find_map(|t| {
        let gives_up = condition == "never" || (max_attempts > 0 && t.attempt >= max_attempts);
        let code = t.exit_code.map(|c| format!(" (exit code {c})")).unwrap_or_default();
        match t.state.as_str() {
            "failed" if gives_up || t.message.starts_with("image not found") => {
                Some(format!("task {} failed{code}: {}", t.id, t.message))
            }
            "exited" if gives_up && (t.exit_code != Some(0) || condition == "always") => Some(format!(
                "task {} exited{code} and will not be restarted: {}",
                t.id, t.message
            )),
            _ => None,
        }
    });
    let pending = current
        .iter()
        .filter(|t| t.state == "pending")
        .map(|t| format!("{} pending: {}", t.id, t.message))
        .collect();
    Progress {
        replicas,
        running,
        healthy: if checked { healthy } else { running },
        failed,
        pending,
    }
}

pub async fn converge(client: &Client, global: &Global, names: &[String]) -> Result<(), CliError> {
    let deadline = Instant::now() + global.wait_timeout();
    for name in names {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} healthy  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(name.clone());
        let result = loop {
            let (svc, tasks) = super::tasks::service_and_tasks(client, name, false).await?;
            let spec: serde_json::Value = serde_json::from_str(&svc.spec_json).unwrap_or_default();
            let checked = !spec["health_check"].is_null();
            let p = assess(svc.replicas, svc.template_version, checked, &spec["restart"], &tasks);
            bar.set_length(u64::from(p.replicas));
            bar.set_position(u64::from(p.healthy.min(p.replicas)));
            bar.set_message(format!("{} running", p.running));
            let settled = tasks
                .iter()
                .filter(|t| t.desired == "running")
                .all(|t| t.spec_version == svc.template_version);
            if p.healthy >= p.replicas && settled {
                break Ok(format!(
                    "service/{name} converged: {}/{} {} (version {})",
                    p.healthy,
                    p.replicas,
                    if checked { "healthy" } else { "running" },
                    svc.version
                ));
            }
            if let Some(why) = p.failed {
                break Err(CliError::Failed(format!("service/{name} cannot converge: {why}")));
            }
            if Instant::now() >= deadline {
                let mut why = format!(
                    "service/{name} did not converge within {:?}: {}/{} healthy, {} running",
                    global.wait_timeout(),
                    p.healthy,
                    p.replicas,
                    p.running
                );
                for pending in p.pending {
                    why.push_str(&format!("; {pending}"));
                }
                break Err(CliError::Failed(why));
            }
            tokio::time::sleep(POLL).await;
        };
        bar.finish_and_clear();
        println!("{}", result?);
    }
    Ok(())
}
