//! Group commit for client writes. openraft 0.9 flushes one append at a time, so each
//! log entry costs a synced write on a quorum; concurrent client commands are gathered
//! into one `Command::Batch` entry while earlier entries are in flight.

use std::sync::Arc;

use flotilla_store::Raft;
use flotilla_types::{Command, Response};
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Largest batch in one entry.
const MAX_BATCH: usize = 128;
/// Entries in flight at once; while they are, new commands queue up and batch.
const IN_FLIGHT: usize = 2;

/// Why a batched write did not happen.
#[derive(Debug, Clone)]
pub enum WriteError {
    NotLeader,
    Failed(String),
}

type Reply = oneshot::Sender<Result<(Response, u64), WriteError>>;

#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::UnboundedSender<(Command, Reply)>,
}

impl Batcher {
    pub fn spawn(raft: Raft) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx));
        Batcher { tx }
    }

    /// Proposes `cmd` (perhaps with others) and returns its own response and log index.
    pub async fn write(&self, cmd: Command) -> Result<(Response, u64), WriteError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((cmd, reply))
            .map_err(|_| WriteError::Failed("the node is shutting down".into()))?;
        answer
            .await
            .unwrap_or_else(|_| Err(WriteError::Failed("the write was dropped".into())))
    }
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<(Command, Reply)>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let _permit = permit;
            propose(&raft, batch).await;
        });
    }
}

async fn propose(raft: &Raft, mut batch: Vec<(Command, Reply)>) {
    let single = batch.len() == 1;
    let (cmds, replies): (Vec<Command>, Vec<Reply>) = batch.drain(..).unzip();
    let cmd = if single {
        cmds.into_iter().next().expect("one command")
    } else {
        Command::Batch(cmds)
    };
    match raft.client_write(cmd).await {
        Ok(r) => {
            let index = r.log_id.index;
            let responses = match r.data {
                Response::Batch(rs) if !single => rs,
                other => vec![other],
            };
            for (reply, response) in replies.into_iter().zip(responses) {
                let _ = reply.send(Ok((response, index)));
            }
        }
        Err(e) => {
            let err = match e {
                RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => WriteError::NotLeader,
                e => WriteError::Failed(e.to_string()),
            };
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}
