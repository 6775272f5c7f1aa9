//! `Exec`: a command inside a running task, streamed both ways. The node asked records
//! the exec (a `task.exec` event, through the leader, naming the caller's token), then
//! runs it through its own driver when it runs the task, or relays the stream to the
//! `AgentService` of the node that does.

use std::pin::Pin;
use std::sync::Arc;

use flotilla_executor::{Driver, DriverError, ExecChunk, ExecRequest};
use flotilla_proto::v1::exec_input::Input;
use flotilla_proto::v1::exec_output::Output;
use flotilla_proto::v1::{ExecInput, ExecOutput, ExecStart, RecordExecRequest, RecordExecResponse};
use flotilla_types::Command;
use futures::{Stream, StreamExt};
use tonic::{Request, Status, Streaming};

use crate::cluster_service::ClusterApi;
use crate::error::ApiError;
use crate::logs::{agent_client, container_of, from_owner};
use crate::node::{now_ms, Node};
use crate::routed::{Kind, Routed};

pub type ExecStream = Pin<Box<dyn Stream<Item = Result<ExecOutput, Status>> + Send>>;

/// Most words in an exec's command.
pub const MAX_EXEC_WORDS: usize = 256;
/// Most bytes in an exec's command, all words together.
pub const MAX_EXEC_BYTES: usize = 64 * 1024;
/// How much of the command the `task.exec` event shows.
const EVENT_CMD_CHARS: usize = 200;

type Inputs = Pin<Box<dyn Stream<Item = Result<ExecInput, Status>> + Send>>;

/// The first message of an exec, checked: it must be an `ExecStart` with a bounded command.
async fn start_of(inputs: &mut Inputs) -> Result<ExecStart, ApiError> {
    let start = match inputs.next().await {
        Some(Ok(ExecInput {
            input: Some(Input::Start(start)),
        })) => start,
        Some(Err(s)) => return Err(ApiError::Remote(s)),
        _ => return Err(ApiError::Invalid("exec: the first message must be an ExecStart".into())),
    };
    if start.cmd.is_empty() || start.cmd[0].is_empty() {
        return Err(ApiError::Invalid("exec: no command given".into()));
    }
    let bytes: usize = start.cmd.iter().map(String::len).sum();
    if start.cmd.len() > MAX_EXEC_WORDS || bytes > MAX_EXEC_BYTES {
        return Err(ApiError::Invalid(format!(
            "exec: the command has {} words and {bytes} bytes; the limits are {MAX_EXEC_WORDS} words and \
             {MAX_EXEC_BYTES} bytes",
            start.cmd.len()
        )));
    }
    Ok(start)
}

/// The command as the event shows it: its words joined, cut at a length.
fn shown(cmd: &[String]) -> String {
    let text = cmd.join(" ");
    match text.char_indices().nth(EVENT_CMD_CHARS) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// `ClusterService/Exec`, on the node asked.
pub async fn cluster(
    api: &ClusterApi,
    driver: Arc<dyn Driver>,
    req: Request<Streaming<ExecInput>>,
) -> Result<ExecStream, Status> {
    let credential = req.metadata().get("authorization").cloned();
    let caller = req.extensions().get::<crate::auth::Caller>().cloned();
    let mut inputs: Inputs = Box::pin(req.into_inner());
    let start = start_of(&mut inputs).await?;
    let node = &api.node;
    let owner = {
        let sm = node.state.read();
        let task = sm
            .state
            .tasks
            .get(&start.task)
            .ok_or_else(|| ApiError::NotFound(format!("no task named {:?}", start.task)))?;
        task.node
            .ok_or_else(|| ApiError::NotFound(format!("task {} is not placed on a node", start.task)))?
    };
    // Every exec is an event, written before the command starts: through the routed
    // write path with the caller's own credential, so the event names its token.
    let mut record = Request::new(RecordExecRequest {
        task: start.task.clone(),
        node_id: owner,
        cmd: shown(&start.cmd),
    });
    if let Some(c) = credential {
        record.metadata_mut().insert("authorization", c);
    }
    if let Some(c) = caller {
        record.extensions_mut().insert(c);
    }
    api.route(record).await?;
    if owner == node.id {
        return Ok(local(node, driver.as_ref(), start, inputs).await?);
    }
    let (mut client, addr) = agent_client(node, owner)?;
    // The client's input, relayed until it ends or breaks.
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let _ = tx
        .send(ExecInput {
            input: Some(Input::Start(start)),
        })
        .await;
    tokio::spawn(async move {
        while let Some(Ok(msg)) = inputs.next().await {
            if tx.send(msg).await.is_err() {
                return;
            }
        }
    });
    let outbound = tokio_stream::wrappers::ReceiverStream::new(rx);
    let answers = client
        .exec(Request::new(outbound))
        .await
        .map_err(|s| from_owner(owner, &addr, s))?
        .into_inner();
    Ok(Box::pin(answers))
}

/// `AgentService/Exec`: the task runs on this node.
pub async fn agent(node: &Node, driver: &dyn Driver, req: Request<Streaming<ExecInput>>) -> Result<ExecStream, Status> {
    let mut inputs: Inputs = Box::pin(req.into_inner());
    let start = start_of(&mut inputs).await?;
    Ok(local(node, driver, start, inputs).await?)
}

fn clamp(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

/// Runs `start` through this node's driver; `inputs` feed it until they end.
async fn local(node: &Node, driver: &dyn Driver, start: ExecStart, mut inputs: Inputs) -> Result<ExecStream, ApiError> {
    let container = container_of(node, driver, &start.task).await?;
    let req = ExecRequest {
        cmd: start.cmd,
        tty: start.tty,
        stdin: start.stdin,
        rows: clamp(start.rows),
        cols: clamp(start.cols),
    };
    let session = driver.exec_stream(&container.id, &req).await.map_err(|e| match e {
        DriverError::NotFound { .. } => ApiError::NotFound(format!("task {}: {e}", start.task)),
        DriverError::NotRunning { .. } => ApiError::Refused(format!("task {} is not running", start.task)),
        DriverError::InvalidSpec(m) => ApiError::Invalid(m),
        e => ApiError::Unavailable(format!("node {}: {e}", node.id)),
    })?;
    let input = session.input;
    tokio::spawn(async move {
        while let Some(Ok(msg)) = inputs.next().await {
            let msg = match msg.input {
                Some(Input::Stdin(bytes)) => flotilla_executor::ExecInput::Stdin(bytes),
                Some(Input::Resize(r)) => flotilla_executor::ExecInput::Resize {
                    rows: clamp(r.rows),
                    cols: clamp(r.cols),
                },
                Some(Input::StdinClosed(true)) => flotilla_executor::ExecInput::CloseStdin,
                Some(Input::StdinClosed(false)) | Some(Input::Start(_)) | None => continue,
            };
            if input.send(msg).await.is_err() {
                return;
            }
        }
        // The client's side closed (or broke): keep the session's input until it ends,
        // without more input.
        input.closed().await;
    });
    let output = tokio_stream::wrappers::ReceiverStream::new(session.output).map(|chunk| {
        let output = match chunk {
            Ok(ExecChunk::Stdout(b)) => Output::Stdout(b),
            Ok(ExecChunk::Stderr(b)) => Output::Stderr(b),
            Ok(ExecChunk::Exit(code)) => Output::ExitCode(i32::try_from(code).unwrap_or(-1)),
            Err(e) => Output::Error(e.to_string()),
        };
        Ok(ExecOutput { output: Some(output) })
    });
    Ok(Box::pin(output))
}

impl Routed for RecordExecRequest {
    type Input = RecordExecRequest;
    const KIND: Kind = Kind::Write;
    fn prepare(&self) -> Result<RecordExecRequest, ApiError> {
        if self.task.is_empty() || self.cmd.chars().count() > EVENT_CMD_CHARS + 1 {
            return Err(ApiError::Invalid("record exec: a task and a short command".into()));
        }
        Ok(self.clone())
    }
    async fn run(api: &ClusterApi, req: &RecordExecRequest) -> Result<RecordExecResponse, ApiError> {
        let cmd = Command::Exec {
            task: req.task.clone(),
            node: req.node_id,
            cmd: req.cmd.clone(),
            at: now_ms(),
        };
        let (_, index) = api.node.command(cmd).await?;
        Ok(RecordExecResponse { log_index: index })
    }
}
