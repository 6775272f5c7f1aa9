//! The mesh's UDP listeners: datagrams from one client address are a flow, sent to one
//! backend (chosen in turn when the flow starts) until it is idle for [`UDP_IDLE`]; the
//! backend's answers go back to the client from the listener's address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use flotilla_proto::v1::tunnel_output::Output;
use flotilla_types::ingress::IngressPort;
use flotilla_types::Protocol;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::tunnel::{self, UDP_IDLE};
use super::Mesh;

/// Most datagrams queued for one flow; more are dropped (UDP may drop).
const FLOW_QUEUE: usize = 64;
/// Most flows one port keeps; a datagram from a new client past it is dropped.
const MAX_FLOWS: usize = 4096;

/// An unspecified address of `addr`'s family, any port: where a socket to `addr` binds.
pub(super) fn any_port(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
        IpAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
    }
}

pub(super) fn bind(
    mesh: Arc<Mesh>,
    addr: SocketAddr,
    port: Arc<Mutex<IngressPort>>,
) -> std::io::Result<JoinHandle<()>> {
    let std = std::net::UdpSocket::bind(addr)?;
    std.set_nonblocking(true)?;
    let socket = Arc::new(UdpSocket::from_std(std)?);
    Ok(tokio::spawn(serve(mesh, socket, port)))
}

async fn serve(mesh: Arc<Mesh>, socket: Arc<UdpSocket>, port: Arc<Mutex<IngressPort>>) {
    let mut flows: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(_) => continue,
        };
        let datagram = buf[..n].to_vec();
        if let Some(tx) = flows.get(&from) {
            match tx.try_send(datagram) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => continue,
                Err(mpsc::error::TrySendError::Closed(d)) => {
                    flows.remove(&from);
                    start(&mesh, &socket, &port, &mut flows, from, d);
                }
            }
        } else {
            if flows.len() >= MAX_FLOWS {
                flows.retain(|_, tx| !tx.is_closed());
                if flows.len() >= MAX_FLOWS {
                    continue;
                }
            }
            start(&mesh, &socket, &port, &mut flows, from, datagram);
        }
    }
}

fn start(
    mesh: &Arc<Mesh>,
    socket: &Arc<UdpSocket>,
    port: &Arc<Mutex<IngressPort>>,
    flows: &mut HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    from: SocketAddr,
    first: Vec<u8>,
) {
    let (tx, rx) = mpsc::channel(FLOW_QUEUE);
    let _ = tx.try_send(first);
    flows.insert(from, tx);
    let port = port.lock().expect("mesh port lock").clone();
    tokio::spawn(flow(mesh.clone(), socket.clone(), from, port, rx));
}

/// One client's datagrams to one backend, and its answers back.
async fn flow(
    mesh: Arc<Mesh>,
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    port: IngressPort,
    mut rx: mpsc::Receiver<Vec<u8>>,
) {
    let header = port
        .proxy_protocol
        .then(|| socket.local_addr().ok())
        .flatten()
        .map(|local| super::proxy::header(client, local, Protocol::Udp));
    let with_header = |d: Vec<u8>| match &header {
        Some(h) => [h.as_slice(), &d].concat(),
        None => d,
    };
    for b in mesh.backends.order(&port) {
        if b.node == mesh.node.id {
            let Ok(addr) = mesh.backends.local_addr(&b.task, b.container).await else {
                mesh.backends.failed(&b.task);
                continue;
            };
            let Ok(upstream) = UdpSocket::bind(any_port(addr)).await else {
                return;
            };
            if upstream.connect(addr).await.is_err() {
                mesh.backends.failed(&b.task);
                continue;
            }
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                tokio::select! {
                    d = rx.recv() => match d {
                        Some(d) => { let _ = upstream.send(&with_header(d)).await; }
                        None => return,
                    },
                    got = upstream.recv(&mut buf) => if let Ok(n) = got {
                        let _ = socket.send_to(&buf[..n], client).await;
                    },
                    _ = tokio::time::sleep(UDP_IDLE) => return,
                }
            }
        }
        let Ok(tunnel::Remote { tx, rx: mut answers }) =
            tunnel::open(&mesh.node, b.node, &b.task, b.container, Protocol::Udp).await
        else {
            mesh.backends.failed(&b.task);
            continue;
        };
        loop {
            tokio::select! {
                d = rx.recv() => match d {
                    Some(d) => if tx.send(tunnel::data(with_header(d))).await.is_err() { return },
                    None => return,
                },
                got = answers.message() => match got {
                    Ok(Some(msg)) => if let Some(Output::Data(d)) = msg.output {
                        let _ = socket.send_to(&d, client).await;
                    },
                    _ => return,
                },
                _ = tokio::time::sleep(UDP_IDLE) => return,
            }
        }
    }
}
