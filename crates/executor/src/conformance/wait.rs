//! Deadline-bounded polling: the suite never asserts on a bare sleep.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use crate::{ContainerId, ContainerState, ContainerStatus, Driver, LogLine, LogOptions, LogStream};

const POLL: Duration = Duration::from_millis(50);
/// Generous: an engine on two busy cores can take seconds to start a container.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// Polls `check` until it yields a value; panics with `what` after `within`.
pub(crate) async fn until<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

pub(crate) async fn inspect(driver: &Arc<dyn Driver>, id: &ContainerId) -> ContainerStatus {
    driver
        .inspect(id)
        .await
        .unwrap_or_else(|e| panic!("[{}] inspect {id}: {e}", driver.name()))
}

/// Waits until the state matches and returns that status.
pub(crate) async fn state(
    driver: &Arc<dyn Driver>,
    id: &ContainerId,
    what: &str,
    matches: impl Fn(&ContainerState) -> bool,
) -> ContainerStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        let last = match driver.inspect(id).await {
            Ok(status) if matches(&status.state) => return status,
            Ok(status) => Ok(status.state),
            Err(e) => Err(e.to_string()),
        };
        assert!(
            Instant::now() < deadline,
            "[{}] timed out after {WAIT:?} waiting for {what} of {id}; last seen {last:?}",
            driver.name()
        );
        tokio::time::sleep(POLL).await;
    }
}

pub(crate) async fn running(driver: &Arc<dyn Driver>, id: &ContainerId) -> ContainerStatus {
    state(driver, id, "state Running", ContainerState::is_running).await
}

pub(crate) async fn exited(driver: &Arc<dyn Driver>, id: &ContainerId) -> i64 {
    let status = state(driver, id, "state Exited", |s| {
        matches!(s, ContainerState::Exited { .. })
    })
    .await;
    match status.state {
        ContainerState::Exited { code } => code,
        _ => unreachable!(),
    }
}

/// The whole (non-follow) log, bounded in time.
pub(crate) async fn logs(driver: &Arc<dyn Driver>, id: &ContainerId, tail: Option<usize>) -> Vec<LogLine> {
    let options = LogOptions {
        tail,
        ..LogOptions::default()
    };
    let collect = driver.logs(id, options).collect::<Vec<_>>();
    let items = tokio::time::timeout(WAIT, collect)
        .await
        .unwrap_or_else(|_| panic!("[{}] logs of {id} did not end", driver.name()));
    items
        .into_iter()
        .map(|item| item.unwrap_or_else(|e| panic!("[{}] logs of {id}: {e}", driver.name())))
        .collect()
}

pub(crate) fn texts(lines: &[LogLine], stream: LogStream) -> Vec<&str> {
    lines
        .iter()
        .filter(|l| l.stream == stream)
        .map(|l| l.text.as_str())
        .collect()
}

/// Waits until `text` appears as a stdout line: how a case knows a script got past setup
/// (a `trap`, say) before acting on it.
pub(crate) async fn log_line(driver: &Arc<dyn Driver>, id: &ContainerId, text: &str) {
    until(&format!("log line {text:?}"), WAIT, move || async move {
        let lines = logs(driver, id, None).await;
        texts(&lines, LogStream::Stdout).contains(&text).then_some(())
    })
    .await
}
