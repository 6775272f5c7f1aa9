//! Group commit for client writes. openraft 0.9 flushes one append at a time, so each
//! log entry costs a synced write on a quorum; concurrent client commands are gathered
//! into one `Command::Batch` entry while earlier entries are in flight.

use std::sync::Arc;

use flotilla_store::Raft;
use flotilla_types::{Command, Response};
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Largest batch in one entry, in commands...
const MAX_BATCH: usize = 128;
/// ...and in bytes (their JSON): a command that would take a batch past this goes first
/// in the next one, so one entry is at most this or one command (a spec is at most
/// 1 MiB). openraft 0.9 gives an AppendEntries one heartbeat interval (50 ms) to come
/// back, so an entry must stay small enough to travel in that time.
pub const MAX_BATCH_BYTES: usize = 1 << 20;
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

/// The size of a command's JSON, without writing it anywhere.
fn json_size(cmd: &Command) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, cmd);
    c.0
}

/// Whether a command of `size` bytes joins a batch of `len` commands and `bytes` bytes.
fn joins(len: usize, bytes: usize, size: usize) -> bool {
    len < MAX_BATCH && (len == 0 || bytes.saturating_add(size) <= MAX_BATCH_BYTES)
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<(Command, Reply)>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    // A command that did not fit the last batch: the first of the next.
    let mut carried: Option<((Command, Reply), usize)> = None;
    loop {
        let (first, first_size) = match carried.take() {
            Some(c) => c,
            None => match rx.recv().await {
                Some(c) => {
                    let size = json_size(&c.0);
                    (c, size)
                }
                None => return,
            },
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        let mut bytes = first_size;
        while batch.len() < MAX_BATCH {
            let Ok(next) = rx.try_recv() else { break };
            let size = json_size(&next.0);
            if !joins(batch.len(), bytes, size) {
                carried = Some((next, size));
                break;
            }
            bytes += size;
            batch.push(next);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_stops_short_of_its_byte_cap_and_a_first_command_always_goes() {
        assert!(joins(0, 0, MAX_BATCH_BYTES * 2));
        assert!(joins(1, 1000, 1000));
        assert!(!joins(1, MAX_BATCH_BYTES - 10, 11));
        assert!(joins(1, MAX_BATCH_BYTES - 10, 10));
        assert!(!joins(MAX_BATCH, 0, 1));
        assert!(!joins(1, usize::MAX, 1));
        let cmd = Command::Batch(vec![]);
        assert_eq!(json_size(&cmd), serde_json::to_vec(&cmd).unwrap().len());
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
            Command::By { cmd, .. } | Command::Request { cmd, .. } => speculate(cmd),
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
