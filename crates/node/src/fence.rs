//! Fencing: a node that learns it must not take part any more (it was removed, or it
//! belongs to an older incarnation of the cluster) stops its tasks and exits with a clear
//! message instead of being merged back. One node per process, so this is process state.

use std::sync::OnceLock;

use tokio::sync::watch;
use tonic::Status;

/// Marks a refusal that concerns the caller itself: it must stop.
pub const FENCED_HEADER: &str = "x-flotilla-fenced";

fn channel() -> &'static watch::Sender<Option<String>> {
    static FENCE: OnceLock<watch::Sender<Option<String>>> = OnceLock::new();
    FENCE.get_or_init(|| watch::channel(None).0)
}

/// Fences this node with `why` (the first reason wins).
pub fn fence(why: impl Into<String>) {
    let why = why.into();
    let first = channel().send_if_modified(|current| {
        if current.is_none() {
            *current = Some(why.clone());
            true
        } else {
            false
        }
    });
    if first {
        tracing::error!("{why}");
    }
}

pub fn is_fenced() -> bool {
    channel().borrow().is_some()
}

/// Completes with the reason once this node is fenced.
pub async fn fenced() -> String {
    let mut rx = channel().subscribe();
    loop {
        if let Some(why) = rx.borrow_and_update().clone() {
            return why;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A refusal telling the caller to stop.
pub fn fenced_status(msg: impl Into<String>) -> Status {
    let mut s = Status::failed_precondition(msg);
    s.metadata_mut().insert(FENCED_HEADER, "1".parse().expect("ascii"));
    s
}

pub fn is_fenced_status(s: &Status) -> bool {
    s.metadata().contains_key(FENCED_HEADER)
}
