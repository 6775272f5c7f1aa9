//! The mesh's TCP listeners: each accepted connection goes to a backend, tried in turn
//! until one answers, then its bytes are copied both ways until both sides closed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use flotilla_proto::v1::tunnel_output::Output;
use flotilla_types::ingress::{Backend, IngressPort};
use flotilla_types::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::tunnel::{self, Remote, CHUNK};
use super::{Mesh, LOCAL_DIAL};

/// Binds `addr` now (so a taken port is reported at once) and accepts on it in a task.
pub(super) fn bind(
    mesh: Arc<Mesh>,
    addr: SocketAddr,
    port: Arc<Mutex<IngressPort>>,
) -> std::io::Result<JoinHandle<()>> {
    let std = std::net::TcpListener::bind(addr)?;
    std.set_nonblocking(true)?;
    let listener = TcpListener::from_std(std)?;
    Ok(tokio::spawn(accept(mesh, listener, port)))
}

async fn accept(mesh: Arc<Mesh>, listener: TcpListener, port: Arc<Mutex<IngressPort>>) {
    loop {
        let (client, from) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "mesh: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let port = port.lock().expect("mesh port lock").clone();
        tokio::spawn(handle(mesh.clone(), client, from, port));
    }
}

/// A backend connection: a task here, dialed directly, or one on another node.
enum Conn {
    Local(TcpStream),
    Remote(Remote),
}

async fn dial(mesh: &Mesh, b: &Backend) -> Result<Conn, String> {
    if b.node == mesh.node.id {
        let addr = mesh.backends.local_addr(&b.task, b.container).await?;
        match tokio::time::timeout(LOCAL_DIAL, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(Conn::Local(s))
            }
            Ok(Err(e)) => Err(format!("task {} at {addr}: {e}", b.task)),
            Err(_) => Err(format!("task {} at {addr}: no answer within {LOCAL_DIAL:?}", b.task)),
        }
    } else {
        tunnel::open(&mesh.node, b.node, &b.task, b.container, Protocol::Tcp)
            .await
            .map(Conn::Remote)
    }
}

async fn handle(mesh: Arc<Mesh>, mut client: TcpStream, from: SocketAddr, port: IngressPort) {
    let _ = client.set_nodelay(true);
    let mut last_error = None;
    let mut conn = None;
    let order = mesh.backends.order(&port);
    tracing::debug!(service = %port.service, backends = ?order.iter().map(|b| &b.task).collect::<Vec<_>>(), "mesh: connection");
    for b in order {
        match dial(&mesh, &b).await {
            Ok(c) => {
                conn = Some(c);
                break;
            }
            Err(e) => {
                tracing::debug!(service = %port.service, task = %b.task, error = %e, "mesh: backend failed; trying the next");
                mesh.backends.failed(&b.task);
                last_error = Some(e);
            }
        }
    }
    let Some(conn) = conn else {
        tracing::debug!(
            service = %port.service,
            port = port.port,
            error = last_error.as_deref().unwrap_or("no healthy task"),
            "mesh: connection refused"
        );
        return;
    };
    let header = port
        .proxy_protocol
        .then(|| client.local_addr().ok())
        .flatten()
        .map(|local| super::proxy::header(from, local, Protocol::Tcp));
    match conn {
        Conn::Local(mut backend) => {
            if let Some(h) = header {
                if backend.write_all(&h).await.is_err() {
                    return;
                }
            }
            let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
        }
        Conn::Remote(remote) => pipe_remote(client, remote, header).await,
    }
}

/// Copies a client's bytes into a tunnel and the tunnel's back until both ended; a
/// tunnel that breaks (its node died) drops the client at once.
async fn pipe_remote(client: TcpStream, remote: Remote, header: Option<Vec<u8>>) {
    let Remote { tx, mut rx } = remote;
    let (mut rd, mut wr) = client.into_split();
    let upstream = tokio::spawn(async move {
        if let Some(h) = header {
            if tx.send(tunnel::data(h)).await.is_err() {
                return;
            }
        }
        let mut buf = vec![0u8; CHUNK];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(tunnel::data(buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    loop {
        match rx.message().await {
            Ok(Some(msg)) => {
                if let Some(Output::Data(bytes)) = msg.output {
                    if wr.write_all(&bytes).await.is_err() {
                        upstream.abort();
                        return;
                    }
                }
            }
            Ok(None) => break,
            Err(_) => {
                upstream.abort();
                return;
            }
        }
    }
    let _ = wr.shutdown().await;
    let _ = upstream.await;
}
