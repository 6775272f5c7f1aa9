//! Fencing: a node that learns it must not take part any more (it was removed, or it
//! belongs to an older incarnation of the cluster) stops its tasks and exits with a clear
//! message instead of being merged back. Each node owns its fence (several nodes can live
//! in one process); clones share it.

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Clone)]
pub struct Fence {
    why: Arc<watch::Sender<Option<String>>>,
}

impl Default for Fence {
    fn default() -> Self {
        Fence {
            why: Arc::new(watch::channel(None).0),
        }
    }
}

impl Fence {
    /// Fences this node with `why` (the first reason wins).
    pub fn fence(&self, why: impl Into<String>) {
        let why = why.into();
        let first = self.why.send_if_modified(|current| {
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

    pub fn is_fenced(&self) -> bool {
        self.why.borrow().is_some()
    }

    /// Completes with the reason once this node is fenced.
    pub async fn fenced(&self) -> String {
        let mut rx = self.why.subscribe();
        loop {
            if let Some(why) = rx.borrow_and_update().clone() {
                return why;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_reason_wins_and_fences_are_per_node() {
        let (a, b) = (Fence::default(), Fence::default());
        let waiter = tokio::spawn({
            let a = a.clone();
            async move { a.fenced().await }
        });
        a.fence("removed");
        a.fence("older epoch");
        assert_eq!(waiter.await.unwrap(), "removed");
        assert!(a.is_fenced());
        assert!(!b.is_fenced(), "another node in the same process is not fenced");
    }
}
