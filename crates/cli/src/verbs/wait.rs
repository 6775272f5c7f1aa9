//! `--wait`: follow services until they converge, with a progress bar; fail with the
//! reason when they cannot.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use flotilla_proto::v1::{DesiredState, StopReason, TaskInfo, TaskState};
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::Global;
use crate::client::Client;
use crate::error::CliError;

const POLL: Duration = Duration::from_millis(300);
/// A task without a health check counts as up once this wait has seen it running (same
/// attempt) for this long: a process that exits at once is briefly "running" first.
const SETTLE: Duration = Duration::from_secs(1);

/// When this wait first saw each task attempt running, by its own clock (the CLI's
/// clock is not compared with the cluster's).
#[derive(Default)]
struct Seen(HashMap<(String, u32), Instant>);

impl Seen {
    fn observe(&mut self, tasks: &[TaskInfo], now: Instant) {
        let up: Vec<(String, u32)> = tasks
            .iter()
            .filter(|t| t.state().is_up())
            .map(|t| (t.id.clone(), t.attempt))
            .collect();
        self.0.retain(|k, _| up.contains(k));
        for k in up {
            self.0.entry(k).or_insert(now);
        }
    }

    fn settled(&self, t: &TaskInfo, now: Instant) -> bool {
        self.0
            .get(&(t.id.clone(), t.attempt))
            .is_some_and(|since| now.duration_since(*since) >= SETTLE)
    }
}

struct Progress {
    replicas: u32,
    running: u32,
    healthy: u32,
    /// Slots whose task ran to completion (exit 0, not restarted): done, not failed.
    complete: u32,
    /// Why it cannot converge, when that is certain.
    failed: Option<String>,
    /// The last reason of each slot that is not up yet (why it waits, failed or is
    /// pending), for the message at the deadline.
    reasons: Vec<String>,
}

/// Whether an attempt could not start or failed its health check. (A task that exits is
/// waited for until its restart policy gives up: `max_attempts`.)
fn failed_attempt(t: &TaskInfo) -> bool {
    matches!(t.state(), TaskState::Failed | TaskState::Unhealthy) || t.stop_reason() == StopReason::Unhealthy
}

/// ` (exit code N)` for a task that exited, else nothing.
fn exit_code_note(t: &TaskInfo) -> String {
    t.exit_code.map(|c| format!(" (exit code {c})")).unwrap_or_default()
}

/// One line on why a task is where it is: its state, exit code and message.
fn reason(t: &TaskInfo) -> String {
    let code = exit_code_note(t);
    let state = match t.stop_reason() {
        StopReason::Unhealthy => "unhealthy",
        _ => t.state().word(),
    };
    if t.message.is_empty() {
        format!("{} {state}{code}", t.id)
    } else {
        format!("{} {state}{code}: {}", t.id, t.message)
    }
}

fn assess(
    replicas: u32,
    template: u64,
    checked: bool,
    restart: &serde_json::Value,
    tasks: &[TaskInfo],
    up: impl Fn(&TaskInfo) -> bool,
) -> Progress {
    let current: Vec<&TaskInfo> = tasks
        .iter()
        .filter(|t| t.desired() == DesiredState::Running && t.spec_version == template)
        .collect();
    let running = current.iter().filter(|t| t.state().is_up()).count() as u32;
    let healthy = current.iter().filter(|t| t.state() == TaskState::Healthy).count() as u32;
    let settled = current.iter().filter(|t| t.state().is_up() && up(t)).count() as u32;
    let is_up = |t: &TaskInfo| {
        t.desired() == DesiredState::Running
            && if checked {
                t.state() == TaskState::Healthy
            } else {
                t.state().is_up() && up(t)
            }
    };
    let condition = restart["condition"].as_str().unwrap_or("on-failure");
    let max_attempts = restart["max_attempts"].as_u64().unwrap_or(0) as u32;
    let mut failed = current.iter().find_map(|t| {
        let gives_up = condition == "never" || (max_attempts > 0 && t.attempt >= max_attempts);
        let code = exit_code_note(t);
        match t.state() {
            TaskState::Failed if gives_up || t.message.starts_with("image not found") => {
                Some(format!("task {} failed{code}: {}", t.id, t.message))
            }
            TaskState::Exited if gives_up && (t.exit_code != Some(0) || condition == "always") => Some(format!(
                "task {} exited{code} and will not be restarted: {}",
                t.id, t.message
            )),
            _ => None,
        }
    });

    // Slot by slot, at this template: done, or the last reason it is not.
    let mut complete = 0;
    let mut reasons = Vec::new();
    // Whether every slot not up yet has failed (and there is one).
    let mut failing = 0;
    let mut waiting = 0;
    for slot in 0..replicas {
        let mut attempts: Vec<&TaskInfo> = tasks
            .iter()
            .filter(|t| t.slot == slot && t.spec_version == template)
            .collect();
        attempts.sort_by_key(|t| super::tasks::seq(t));
        if attempts.iter().any(|t| t.stop_reason() == StopReason::Completed) {
            complete += 1;
            continue;
        }
        if attempts.iter().any(|t| is_up(t)) {
            continue;
        }
        waiting += 1;
        failing += u32::from(attempts.iter().any(|t| failed_attempt(t)));
        // The newest attempt's own words, else the last that said something.
        if let Some(t) = attempts.iter().rev().find(|t| !t.message.is_empty()) {
            reasons.push(reason(t));
        }
    }
    // Every task still to come up failed to start or failed its check (a health check on
    // the wrong port, a host port taken): waiting longer only repeats it. The cluster
    // keeps retrying per the restart policy.
    if failed.is_none() && waiting > 0 && failing == waiting {
        failed = Some(format!(
            "{failing} task(s) failed to start or failed their health check: {}",
            reasons.join("; ")
        ));
    }
    Progress {
        replicas,
        running,
        healthy: if checked { healthy } else { settled },
        complete,
        failed,
        reasons,
    }
}

/// Follows each `(service, template version the change made)` to its end; without a
/// template (a scale), the one current at the first look.
pub async fn converge(client: &Client, global: &Global, services: &[(String, Option<u64>)]) -> Result<(), CliError> {
    let deadline = Instant::now() + global.wait_timeout();
    for (name, template) in services {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} healthy  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(name.clone());
        // The template this wait is about: a rollout away from it is this change failing
        // (taken from the apply, so a rollback that ends before the first look still counts).
        let mut wanted: Option<u64> = *template;
        let mut seen = Seen::default();
        let result = loop {
            let (svc, tasks) = super::tasks::service_and_tasks(client, name, false).await?;
            let rollout = super::rollout::status(client, name, false).await?;
            let wanted = *wanted.get_or_insert(svc.template_version);
            let spec: serde_json::Value = serde_json::from_slice(&svc.spec_document).unwrap_or_default();
            let checked = !spec["health_check"].is_null();
            let now = Instant::now();
            seen.observe(&tasks, now);
            let p = assess(
                svc.replicas,
                svc.template_version,
                checked,
                &spec["restart"],
                &tasks,
                |t| seen.settled(t, now),
            );
            bar.set_length(u64::from(p.replicas));
            bar.set_position(u64::from((p.healthy + p.complete).min(p.replicas)));
            let ours = rollout.to_version == wanted;
            let rolling = ours && (rollout.phase == "updating" || rollout.phase == "rolling-back");
            bar.set_message(match (rolling, rollout.phase.as_str()) {
                (true, "rolling-back") => format!("{} running, rolling back: {}", p.running, rollout.reason),
                (true, _) => format!("{} running, rollout {}/{} updated", p.running, rollout.done, p.replicas),
                _ => format!("{} running", p.running),
            });
            if ours && rollout.phase == "rolled-back" {
                break Err(CliError::Failed(format!(
                    "service/{name}: version {wanted} was rolled back to version {}: {}",
                    rollout.from_version, rollout.reason
                )));
            }
            if let Some(why) = rollout.paused.as_ref().filter(|_| rolling) {
                break Err(CliError::Failed(format!(
                    "service/{name}: rollout {} paused: {why} (see `flotilla rollout status {name}`)",
                    rollout.phase
                )));
            }
            let settled = tasks
                .iter()
                .filter(|t| t.desired() == DesiredState::Running)
                .all(|t| t.spec_version == svc.template_version);
            if p.healthy + p.complete >= p.replicas && settled && !rolling {
                let complete = match p.complete {
                    0 => String::new(),
                    n => format!(", {n} complete"),
                };
                break Ok(format!(
                    "service/{name} converged: {}/{} {}{complete} (version {})",
                    p.healthy,
                    p.replicas,
                    if checked { "healthy" } else { "running" },
                    svc.version
                ));
            }
            // A rollout of this change decides itself what a failure means.
            if let Some(why) = p.failed.filter(|_| !rolling) {
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
                if rolling && !rollout.waiting.is_empty() {
                    why.push_str(&format!("; rollout {}: {}", rollout.phase, rollout.waiting));
                }
                for reason in p.reasons {
                    why.push_str(&format!("; {reason}"));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, state: TaskState, attempt: u32) -> TaskInfo {
        TaskInfo {
            id: id.into(),
            desired: DesiredState::Running.into(),
            state: state.into(),
            spec_version: 1,
            attempt,
            ..Default::default()
        }
    }

    fn up_count(seen: &Seen, tasks: &[TaskInfo], now: Instant) -> u32 {
        let never = serde_json::json!({"condition": "never"});
        assess(tasks.len() as u32, 1, false, &never, tasks, |t| seen.settled(t, now)).healthy
    }

    #[test]
    fn an_unchecked_task_counts_only_after_it_stayed_running() {
        let t0 = Instant::now();
        let mut seen = Seen::default();
        let tasks = [task("a.0", TaskState::Running, 0)];
        seen.observe(&tasks, t0);
        assert_eq!(up_count(&seen, &tasks, t0), 0, "just seen running");
        let later = t0 + SETTLE;
        seen.observe(&tasks, later);
        assert_eq!(up_count(&seen, &tasks, later), 1, "running for the whole settle window");

        // It exited and was restarted: the new attempt starts its window again.
        let restarted = [task("a.0", TaskState::Running, 1)];
        seen.observe(&restarted, later);
        assert_eq!(up_count(&seen, &restarted, later), 0);
        // One that exits is never counted, and the exit is the reason to fail.
        let exited = [TaskInfo {
            exit_code: Some(3),
            ..task("a.0", TaskState::Exited, 1)
        }];
        seen.observe(&exited, later + SETTLE);
        let never = serde_json::json!({"condition": "never"});
        let p = assess(1, 1, false, &never, &exited, |t| seen.settled(t, later + SETTLE));
        assert_eq!(p.healthy, 0);
        assert!(p.failed.unwrap().contains("exit code 3"));
    }

    fn in_slot(slot: u32, t: TaskInfo) -> TaskInfo {
        TaskInfo { slot, ..t }
    }

    #[test]
    fn every_slot_failing_its_check_fails_early_with_each_reason() {
        let refused = "health check failed: http probe 172.17.0.2:9999/: Connection refused";
        let stopped = TaskInfo {
            desired: DesiredState::Shutdown.into(),
            stop_reason: StopReason::Unhealthy.into(),
            message: refused.into(),
            ..task("web.0.3", TaskState::Stopped, 0)
        };
        let retry = task("web.0.5", TaskState::Running, 1);
        let unhealthy = TaskInfo {
            message: refused.into(),
            ..in_slot(1, task("web.1.4", TaskState::Unhealthy, 0))
        };
        let policy = serde_json::json!({"condition": "on-failure"});
        let tasks = [stopped.clone(), retry.clone(), unhealthy.clone()];
        let p = assess(2, 1, true, &policy, &tasks, |_| false);
        let why = p.failed.expect("every slot failed its check");
        assert!(
            why.starts_with("2 task(s) failed to start or failed their health check: "),
            "{why}"
        );
        assert!(why.contains(&format!("web.0.3 unhealthy: {refused}")), "{why}");
        assert!(why.contains(&format!("web.1.4 unhealthy: {refused}")), "{why}");

        // One slot healthy: the other still failed, and only its reason is given.
        let healthy = in_slot(1, task("web.1.6", TaskState::Healthy, 1));
        let p = assess(
            2,
            1,
            true,
            &policy,
            &[stopped.clone(), retry.clone(), unhealthy, healthy],
            |_| false,
        );
        assert_eq!(p.healthy, 1);
        assert_eq!(p.reasons, [format!("web.0.3 unhealthy: {refused}")]);
        assert!(p.failed.unwrap().starts_with("1 task(s) failed"));

        // A slot that has not failed yet (still starting): keep waiting.
        let starting = in_slot(1, task("web.1.7", TaskState::Starting, 0));
        let p = assess(2, 1, true, &policy, &[stopped, retry, starting], |_| false);
        assert!(p.failed.is_none(), "{:?}", p.failed);
    }

    #[test]
    fn a_task_that_ran_to_completion_counts_as_done() {
        let done = TaskInfo {
            desired: DesiredState::Shutdown.into(),
            stop_reason: StopReason::Completed.into(),
            exit_code: Some(0),
            ..task("job.0.1", TaskState::Exited, 0)
        };
        let never = serde_json::json!({"condition": "never"});
        let p = assess(1, 1, false, &never, &[done], |_| false);
        assert_eq!((p.complete, p.healthy), (1, 0));
        assert!(p.failed.is_none());
    }
}
