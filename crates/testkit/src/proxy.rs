//! A TCP proxy on loopback in front of one agent, that a test can tell to drop the
//! answers: from [`Proxy::drop_answers`] on, what the client sends still reaches the
//! agent, and nothing the agent sends back reaches the client. A request sent then is
//! served and its answer lost, as when a connection breaks after the request went out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Proxy {
    addr: String,
    dropping: Arc<AtomicBool>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// A proxy on a free port of 127.0.0.1 to `target`.
    pub async fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound").to_string();
        let dropping = Arc::new(AtomicBool::new(false));
        let target = target.to_string();
        let flag = dropping.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = TcpStream::connect(&target).await else {
                    continue;
                };
                tokio::spawn(relay(client, upstream, flag.clone()));
            }
        });
        Proxy { addr, dropping, accept }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// From now on (`true`), the agent's answers are read and thrown away.
    pub fn drop_answers(&self, on: bool) {
        self.dropping.store(on, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay(client: TcpStream, upstream: TcpStream, dropping: Arc<AtomicBool>) {
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut up_rx, mut up_tx) = upstream.into_split();
    let requests = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match client_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if up_tx.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let answers = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match up_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if dropping.load(Ordering::SeqCst) {
                        continue;
                    }
                    if client_tx.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::join!(requests, answers);
}
