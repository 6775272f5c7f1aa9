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
    #[cfg(feature = "unsafe-early-ack")]
    let replies = early_ack::answer_now(&cmds, replies);
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
            #[cfg(feature = "unsafe-early-ack")]
            responses.iter().for_each(early_ack::learn);
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

/// DELIBERATELY WRONG, test-only (`--features unsafe-early-ack`): answers service writes
/// as soon as they are proposed, with the version this leader expects them to get, before
/// a quorum has them. A leader that dies or is deposed loses acknowledged writes, and a
/// new leader guesses versions from what it alone has seen. The chaos checker must catch
/// this (`make chaos-broken`); it proves the checker can fail.
#[cfg(feature = "unsafe-early-ack")]
mod early_ack {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use flotilla_types::{Command, PutOutcome, Response};
    use tokio::sync::oneshot;

    use super::Reply;

    /// Per service: the last version seen or promised here, and whether it exists.
    static SEEN: Mutex<BTreeMap<String, (u64, bool)>> = Mutex::new(BTreeMap::new());

    /// Answers every service command now; the others keep their reply for the commit.
    pub(super) fn answer_now(cmds: &[Command], replies: Vec<Reply>) -> Vec<Reply> {
        cmds.iter()
            .zip(replies)
            .map(|(cmd, reply)| match speculate(cmd) {
                Some(r) => {
                    let _ = reply.send(Ok((r, 0)));
                    oneshot::channel().0
                }
                None => reply,
            })
            .collect()
    }

    fn speculate(cmd: &Command) -> Option<Response> {
        let mut seen = SEEN.lock().expect("early-ack lock");
        match cmd {
            Command::PutService { spec, .. } => {
                let (v, exists) = seen.get(&spec.name).copied().unwrap_or((0, false));
                seen.insert(spec.name.clone(), (v + 1, true));
                Some(Response::Service {
                    name: spec.name.clone(),
                    version: v + 1,
                    outcome: if exists {
                        PutOutcome::Updated { from: v }
                    } else {
                        PutOutcome::Created
                    },
                })
            }
            Command::ScaleService { name, replicas, .. } => {
                let (v, _) = seen.get(name).copied().unwrap_or((0, true));
                seen.insert(name.clone(), (v + 1, true));
                Some(Response::Scaled {
                    name: name.clone(),
                    version: v + 1,
                    replicas: *replicas,
                })
            }
            Command::DeleteService { name, .. } => {
                let (v, _) = seen.get(name).copied().unwrap_or((1, true));
                seen.insert(name.clone(), (v, false));
                Some(Response::Deleted {
                    name: name.clone(),
                    version: v,
                })
            }
            Command::By { cmd, .. } => speculate(cmd),
            _ => None,
        }
    }

    pub(super) fn learn(r: &Response) {
        let mut seen = SEEN.lock().expect("early-ack lock");
        match r {
            Response::Service { name, version, .. } | Response::Scaled { name, version, .. } => {
                seen.insert(name.clone(), (*version, true));
            }
            Response::Deleted { name, version } => {
                seen.insert(name.clone(), (*version, false));
            }
            _ => {}
        }
    }
}
