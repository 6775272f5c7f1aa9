//! Discovery by name: every agent serves DNS, over UDP and TCP, on `--dns-listen` (by
//! default the engine's bridge gateway, port 53, which the containers the Docker driver
//! starts use as their resolver). Names in `<cluster>.flotilla` are answered from this
//! node's replica ([`answer`]); other names are passed to the machine's resolvers.
//!
//! Where several agents share one engine, one of them holds the port and answers for the
//! cluster; the others keep trying to bind it, and take over when it goes.

pub mod answer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flotilla_dns::{Query, Rcode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

use crate::config::DnsConfig;
use crate::mesh::Mesh;
use crate::node::Node;
use answer::Asker;

/// How often a port that could not be bound is tried again.
const REBIND_EVERY: Duration = Duration::from_secs(5);
/// How long an upstream resolver may take to answer a forwarded query.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a TCP client may stay idle between queries.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Most TCP clients served at once, and most forwarded queries in flight.
const MAX_CLIENTS: usize = 256;
/// The largest message over TCP (the length prefix allows 65535).
const MAX_TCP_MESSAGE: usize = 65535;

pub struct Server {
    node: Arc<Node>,
    mesh: Arc<Mesh>,
    config: DnsConfig,
    busy: Arc<Semaphore>,
}

impl Server {
    pub fn new(node: Arc<Node>, mesh: Arc<Mesh>, config: DnsConfig) -> Arc<Self> {
        Arc::new(Server {
            node,
            mesh,
            config,
            busy: Arc::new(Semaphore::new(MAX_CLIENTS)),
        })
    }

    /// Serves until dropped, UDP and TCP each on its own, binding again when a bind fails.
    pub async fn run(self: Arc<Self>) {
        tokio::join!(self.clone().keep_udp(), self.clone().keep_tcp());
    }

    /// Records what became of binding one protocol, for the heartbeat (an error) and the
    /// log (once per change).
    fn bound(&self, protocol: &str, result: &std::io::Result<()>, last: &mut Option<String>) {
        let key = format!("dns {}/{protocol}", self.config.listen.port());
        let now = result.as_ref().err().map(|e| e.to_string());
        if *last == now {
            return;
        }
        match result {
            Ok(()) => {
                tracing::info!(listen = %self.config.listen, zone = %self.config.zone, "dns: serving over {protocol}")
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => tracing::info!(
                listen = %self.config.listen,
                "dns: {protocol} port taken (another agent sharing this engine answers for the cluster, or another \
                 program holds it); trying again every {REBIND_EVERY:?}"
            ),
            Err(e) => tracing::warn!(listen = %self.config.listen, error = %e, "dns: cannot serve over {protocol}"),
        }
        // A port another agent holds is not this node's error.
        let error = match result {
            Err(e) if e.kind() != std::io::ErrorKind::AddrInUse => {
                Some(format!("cannot listen on {}/{protocol}: {e}", self.config.listen))
            }
            _ => None,
        };
        self.mesh.report_dns(key, error);
        *last = now;
    }

    async fn keep_udp(self: Arc<Self>) {
        let mut last = None;
        loop {
            match UdpSocket::bind(self.config.listen).await {
                Ok(socket) => {
                    self.bound("udp", &Ok(()), &mut last);
                    self.clone().serve_udp(Arc::new(socket)).await;
                }
                Err(e) => self.bound("udp", &Err(e), &mut last),
            }
            tokio::time::sleep(REBIND_EVERY).await;
        }
    }

    async fn keep_tcp(self: Arc<Self>) {
        let mut last = None;
        loop {
            match TcpListener::bind(self.config.listen).await {
                Ok(listener) => {
                    self.bound("tcp", &Ok(()), &mut last);
                    self.clone().serve_tcp(listener).await;
                }
                Err(e) => self.bound("tcp", &Err(e), &mut last),
            }
            tokio::time::sleep(REBIND_EVERY).await;
        }
    }

    async fn serve_udp(self: Arc<Self>, socket: Arc<UdpSocket>) {
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, from) = match socket.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    // ICMP errors of earlier sends surface here on Linux; keep serving.
                    tracing::debug!(error = %e, "dns: udp receive");
                    continue;
                }
            };
            let msg = buf[..n].to_vec();
            match self.local(&msg, from, true) {
                Reply::Ready(out) => {
                    let _ = socket.send_to(&out, from).await;
                }
                Reply::Forward => {
                    // Past the bound a query is dropped: the client asks again.
                    let Ok(permit) = self.busy.clone().try_acquire_owned() else {
                        continue;
                    };
                    let (server, socket) = (self.clone(), socket.clone());
                    tokio::spawn(async move {
                        let _permit = permit;
                        let out = server.forward_udp(&msg).await;
                        let _ = socket.send_to(&out, from).await;
                    });
                }
                Reply::Drop => {}
            }
        }
    }

    async fn serve_tcp(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, from) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "dns: tcp accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = self.busy.clone().try_acquire_owned() else {
                tracing::debug!(%from, "dns: too many tcp clients; closing");
                continue;
            };
            let server = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = server.tcp_client(stream, from).await {
                    tracing::debug!(%from, error = %e, "dns: tcp client");
                }
            });
        }
    }

    async fn tcp_client(&self, mut stream: TcpStream, from: SocketAddr) -> std::io::Result<()> {
        loop {
            let msg = match tokio::time::timeout(TCP_IDLE, read_framed(&mut stream)).await {
                Ok(read) => match read? {
                    Some(msg) => msg,
                    None => return Ok(()),
                },
                Err(_) => return Ok(()), // idle
            };
            let out = match self.local(&msg, from, false) {
                Reply::Ready(out) => out,
                Reply::Forward => self.forward_tcp(&msg).await,
                Reply::Drop => return Ok(()),
            };
            write_framed(&mut stream, &out).await?;
        }
    }

    /// The answer from the replica, or that the name is to be forwarded.
    fn local(&self, msg: &[u8], from: SocketAddr, udp: bool) -> Reply {
        let q = match flotilla_dns::parse_query(msg) {
            Ok(q) => q,
            Err(e) => {
                tracing::debug!(%from, error = %e, "dns: malformed query");
                return match flotilla_dns::message_id(msg) {
                    Some(id) => Reply::Ready(flotilla_dns::encode_error(id, None, Rcode::FormErr)),
                    None => Reply::Drop,
                };
            }
        };
        if q.opcode != 0 {
            return Reply::Ready(flotilla_dns::encode_error(q.id, Some(&q), Rcode::NotImp));
        }
        let asker = match self.config.bridge {
            Some(b) if b.contains(from.ip()) => Asker::Container { gateway: b.gateway },
            _ => Asker::Outside,
        };
        let answered = {
            let sm = self.node.state.read();
            answer::answer(&sm.state, &self.config.zone, asker, &q)
        };
        match answered {
            Some(r) => {
                let limit = if udp {
                    flotilla_dns::udp_limit(&q)
                } else {
                    MAX_TCP_MESSAGE
                };
                Reply::Ready(flotilla_dns::encode_response(&q, &r, limit))
            }
            None if self.config.upstreams.is_empty() => {
                Reply::Ready(flotilla_dns::encode_error(q.id, Some(&q), Rcode::Refused))
            }
            None => Reply::Forward,
        }
    }

    /// A name outside the zone, asked of the machine's resolvers in turn.
    async fn forward_udp(&self, msg: &[u8]) -> Vec<u8> {
        for upstream in &self.config.upstreams {
            let any: SocketAddr = if upstream.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let Ok(socket) = UdpSocket::bind(any).await else {
                continue;
            };
            if socket.connect(upstream).await.is_err() || socket.send(msg).await.is_err() {
                continue;
            }
            let mut buf = vec![0u8; 4096];
            if let Ok(Ok(n)) = tokio::time::timeout(UPSTREAM_TIMEOUT, socket.recv(&mut buf)).await {
                if buf.get(..2) == msg.get(..2) {
                    buf.truncate(n);
                    return buf;
                }
            }
        }
        servfail(msg)
    }

    async fn forward_tcp(&self, msg: &[u8]) -> Vec<u8> {
        for upstream in &self.config.upstreams {
            let attempt = async {
                let mut s = TcpStream::connect(upstream).await?;
                write_framed(&mut s, msg).await?;
                read_framed(&mut s).await
            };
            if let Ok(Ok(Some(out))) = tokio::time::timeout(UPSTREAM_TIMEOUT, attempt).await {
                return out;
            }
        }
        servfail(msg)
    }
}

enum Reply {
    Ready(Vec<u8>),
    Forward,
    Drop,
}

fn servfail(msg: &[u8]) -> Vec<u8> {
    let q: Option<Query> = flotilla_dns::parse_query(msg).ok();
    let id = flotilla_dns::message_id(msg).unwrap_or(0);
    flotilla_dns::encode_error(id, q.as_ref(), Rcode::ServFail)
}

/// One length-prefixed message (RFC 1035 §4.2.2); `None` at a clean end of the stream.
async fn read_framed(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut msg).await?;
    Ok(Some(msg))
}

async fn write_framed(stream: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| std::io::Error::other("dns message over 65535 bytes"))?;
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    stream.write_all(&out).await
}
