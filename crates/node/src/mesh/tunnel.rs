//! `AgentService/Tunnel`: one mesh connection (or UDP flow) carried from the node it
//! arrived at to the node that runs its task, over the cluster's mutual-TLS channel. The
//! node that runs the task dials the container and answers `connected` (or an error, so the
//! other node tries another task before its client sees anything); then bytes go both
//! ways, each message a datagram for UDP.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use flotilla_proto::v1::tunnel_input::Input;
use flotilla_proto::v1::tunnel_output::Output;
use flotilla_proto::v1::{TunnelInput, TunnelOpen, TunnelOutput};
use flotilla_types::{NodeId, Protocol};
use futures::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status, Streaming};

use super::{Mesh, LOCAL_DIAL, REMOTE_DIAL};
use crate::node::Node;

pub type TunnelStream = Pin<Box<dyn Stream<Item = Result<TunnelOutput, Status>> + Send>>;

/// Bytes read from a socket per message.
pub(super) const CHUNK: usize = 32 * 1024;
/// A UDP flow with no datagram either way for this long ends.
pub(super) const UDP_IDLE: Duration = Duration::from_secs(30);
/// Messages queued each way before the sender waits.
const QUEUE: usize = 32;

/// The sending and the receiving half of a tunnel this node opened.
pub struct Remote {
    pub tx: mpsc::Sender<TunnelInput>,
    pub rx: Streaming<TunnelOutput>,
}

pub(super) fn data(bytes: Vec<u8>) -> TunnelInput {
    TunnelInput {
        input: Some(Input::Data(bytes)),
    }
}

/// Opens a tunnel to `task`'s `port` through node `owner`, once its agent dialed it.
pub async fn open(node: &Node, owner: NodeId, task: &str, port: u16, protocol: Protocol) -> Result<Remote, String> {
    let (mut client, addr) = crate::logs::agent_client(node, owner).map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel(QUEUE);
    let open = TunnelInput {
        input: Some(Input::Open(TunnelOpen {
            task: task.to_string(),
            port: port.into(),
            protocol: protocol.as_str().to_string(),
        })),
    };
    tx.send(open).await.map_err(|_| "tunnel closed".to_string())?;
    let answered = async {
        let mut answers = client
            .tunnel(Request::new(ReceiverStream::new(rx)))
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        match answers.message().await {
            Ok(Some(TunnelOutput {
                output: Some(Output::Connected(_)),
            })) => Ok(answers),
            Ok(_) => Err("the tunnel closed before the task answered".to_string()),
            Err(s) => Err(s.message().to_string()),
        }
    };
    match tokio::time::timeout(REMOTE_DIAL, answered).await {
        Ok(Ok(rx)) => Ok(Remote { tx, rx }),
        Ok(Err(e)) => Err(format!("node {owner} at {addr}: {e}")),
        Err(_) => Err(format!("node {owner} at {addr}: no answer within {REMOTE_DIAL:?}")),
    }
}

/// Serves a tunnel to a task on this node.
pub async fn serve(mesh: &Arc<Mesh>, req: Request<Streaming<TunnelInput>>) -> Result<TunnelStream, Status> {
    let mut inputs = req.into_inner();
    let open = match inputs.message().await? {
        Some(TunnelInput {
            input: Some(Input::Open(open)),
        }) => open,
        _ => {
            return Err(Status::invalid_argument(
                "tunnel: the first message must be a TunnelOpen",
            ))
        }
    };
    let protocol = match open.protocol.as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => return Err(Status::invalid_argument(format!("tunnel: unknown protocol {other:?}"))),
    };
    let port = u16::try_from(open.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| Status::invalid_argument(format!("tunnel: port {} is out of range", open.port)))?;
    published_here(&mesh.node, &open.task, port, protocol)?;
    let addr = mesh.local_addr(&open.task, port).await.map_err(Status::unavailable)?;
    let (out, out_rx) = mpsc::channel(QUEUE);
    let connected = Ok(TunnelOutput {
        output: Some(Output::Connected(true)),
    });
    match protocol {
        Protocol::Tcp => {
            let stream = match tokio::time::timeout(LOCAL_DIAL, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    mesh.backends.failed(&open.task);
                    return Err(Status::unavailable(format!("task {} at {addr}: {e}", open.task)));
                }
                Err(_) => {
                    mesh.backends.failed(&open.task);
                    return Err(Status::unavailable(format!(
                        "task {} at {addr}: no answer within {LOCAL_DIAL:?}",
                        open.task
                    )));
                }
            };
            let _ = stream.set_nodelay(true);
            let _ = out.send(connected).await;
            tokio::spawn(pipe_tcp(stream, inputs, out));
        }
        Protocol::Udp => {
            let socket = UdpSocket::bind(super::udp::any_port(addr))
                .await
                .map_err(|e| Status::unavailable(format!("tunnel: {e}")))?;
            socket
                .connect(addr)
                .await
                .map_err(|e| Status::unavailable(format!("task {} at {addr}: {e}", open.task)))?;
            let _ = out.send(connected).await;
            tokio::spawn(pipe_udp(socket, inputs, out));
        }
    }
    Ok(Box::pin(ReceiverStream::new(out_rx)))
}

/// The tunnel's task must run on this node and publish `port` in the version it runs.
fn published_here(node: &Node, task: &str, port: u16, protocol: Protocol) -> Result<(), Status> {
    let sm = node.state.read();
    let t = sm
        .state
        .tasks
        .get(task)
        .ok_or_else(|| Status::not_found(format!("no task named {task:?}")))?;
    if t.node != Some(node.id) {
        return Err(Status::not_found(format!(
            "task {task} does not run on node {}",
            node.id
        )));
    }
    let published = sm.state.services.get(&t.service).is_some_and(|s| {
        s.spec_at(t.spec_version)
            .ports
            .iter()
            .any(|p| p.container == u32::from(port) && p.protocol == protocol)
    });
    if !published {
        return Err(Status::permission_denied(format!(
            "task {task} does not publish port {port}/{}",
            protocol.as_str()
        )));
    }
    Ok(())
}

async fn pipe_tcp(
    stream: TcpStream,
    mut inputs: Streaming<TunnelInput>,
    out: mpsc::Sender<Result<TunnelOutput, Status>>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let upstream = tokio::spawn(async move {
        while let Ok(Some(msg)) = inputs.message().await {
            if let Some(Input::Data(bytes)) = msg.input {
                if wr.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = vec![0u8; CHUNK];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let msg = TunnelOutput {
                    output: Some(Output::Data(buf[..n].to_vec())),
                };
                if out.send(Ok(msg)).await.is_err() {
                    upstream.abort();
                    return;
                }
            }
        }
    }
    // The task closed its side: end the answer stream now (the client sees the close),
    // while the client may still send until it closes too.
    drop(out);
    let _ = upstream.await;
}

async fn pipe_udp(
    socket: UdpSocket,
    mut inputs: Streaming<TunnelInput>,
    out: mpsc::Sender<Result<TunnelOutput, Status>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            msg = inputs.message() => match msg {
                Ok(Some(TunnelInput { input: Some(Input::Data(d)) })) => {
                    let _ = socket.send(&d).await;
                }
                Ok(Some(_)) => {}
                _ => return,
            },
            // A refused datagram (nothing listens yet) is not the end of the flow.
            got = socket.recv(&mut buf) => if let Ok(n) = got {
                let msg = TunnelOutput { output: Some(Output::Data(buf[..n].to_vec())) };
                if out.send(Ok(msg)).await.is_err() {
                    return;
                }
            },
            _ = tokio::time::sleep(UDP_IDLE) => return,
        }
    }
}
