//! The routing mesh: for every ingress port of every service, this node listens on
//! `--publish-addr:host` and forwards each TCP connection (each UDP flow) to a healthy task
//! of the service on any node: to a task here at its container's address, to a task on
//! another node through that node's agent (`AgentService/Tunnel`, over the cluster's
//! mutual TLS), since container addresses do not route between machines.
//!
//! With discovery by name on, every ingress-or-not port of every service is also served on
//! the engine's bridge gateway on its `container` number: a container resolves `backend`
//! to the gateway and `http://backend:8080` reaches a healthy task of `backend`.
//!
//! The ports and the backends are read from this node's replica on every change and every
//! connection, so the mesh changes at the moment the state does. Backends are taken in
//! turn; one that refuses or does not answer is left aside for a moment and the connection
//! is tried on the next before the client sees an error.

mod backends;
mod proxy;
mod tcp;
pub mod tunnel;
mod udp;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_executor::Driver;
use flotilla_types::ingress::{mesh_ports, IngressPort, Via};
use flotilla_types::Protocol;
use tokio::task::JoinHandle;

use crate::node::Node;

pub use backends::Backends;

/// How long a backend that refused or timed out is passed over.
const AVOID_FOR: Duration = Duration::from_secs(3);
/// How long a dial to a task here may take.
const LOCAL_DIAL: Duration = Duration::from_secs(1);
/// How long opening a tunnel to a task on another node may take (its agent dials too).
const REMOTE_DIAL: Duration = Duration::from_secs(2);
/// Most backends one connection is tried on.
const TRIES: usize = 3;
/// How often a port that could not be bound is tried again.
const REBIND_EVERY: Duration = Duration::from_secs(5);

/// What became of one ingress port on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortStatus {
    Listening,
    /// The bind failed (the port is taken on this node): the error.
    Failed(String),
    /// Another service owns the port (a state from before ports were exclusive; on the
    /// gateway, an older service with the same container port).
    Conflict {
        owner: String,
    },
    /// On the gateway, the port is taken: by another agent that shares this engine, which
    /// serves it for the cluster (not an error), or by another program.
    Taken(String),
}

/// A listener's key: where, which port, which protocol.
type Key = (Via, u16, Protocol);

/// One ingress port's listener: its service and options, updated in place on a change.
struct Listener {
    port: Arc<Mutex<IngressPort>>,
    task: JoinHandle<()>,
}

pub struct Mesh {
    node: Arc<Node>,
    /// Where the ingress listeners bind; `None`: no ingress ports on this node.
    publish: Option<IpAddr>,
    /// The engine's bridge gateway, where the listeners for names bind; `None`: off.
    gateway: Option<IpAddr>,
    pub(crate) backends: Backends,
    listeners: Mutex<BTreeMap<Key, Listener>>,
    status: Mutex<BTreeMap<Key, (String, PortStatus)>>,
    /// The DNS server's bind failures (`dns 53/udp`), reported with the mesh's.
    dns_errors: Mutex<BTreeMap<String, String>>,
}

impl Mesh {
    pub fn new(
        node: Arc<Node>,
        driver: Arc<dyn Driver>,
        publish: Option<IpAddr>,
        gateway: Option<IpAddr>,
    ) -> Arc<Self> {
        Arc::new(Mesh {
            backends: Backends::new(node.clone(), driver.clone()),
            node,
            publish,
            gateway,
            listeners: Mutex::new(BTreeMap::new()),
            status: Mutex::new(BTreeMap::new()),
            dns_errors: Mutex::new(BTreeMap::new()),
        })
    }

    /// Every port this node's mesh knows of, with its service and what became of it here.
    pub fn status(&self) -> BTreeMap<Key, (String, PortStatus)> {
        self.status.lock().expect("mesh status lock").clone()
    }

    /// The ingress ports this node's mesh does not serve (`8080/tcp`), and why: what its
    /// heartbeat tells the leader, for `describe service` and the events.
    pub fn errors(&self) -> std::collections::HashMap<String, String> {
        self.status()
            .into_iter()
            .filter_map(|((via, port, protocol), (service, status))| {
                let why = match status {
                    PortStatus::Listening | PortStatus::Taken(_) => return None,
                    // On the gateway a conflict is the state's, shown by `describe service`.
                    PortStatus::Conflict { .. } if via == Via::Gateway => return None,
                    PortStatus::Failed(e) => format!("service {service}: {e}"),
                    PortStatus::Conflict { owner } => {
                        format!("service {service}: the port is service {owner}'s (applied first)")
                    }
                };
                let key = format!("{port}/{}", protocol.as_str());
                Some((
                    match via {
                        Via::Publish => key,
                        Via::Gateway => format!("gateway {key}"),
                    },
                    why,
                ))
            })
            .chain(self.dns_errors.lock().expect("dns errors lock").clone())
            .collect()
    }

    /// What became of the DNS server's port `key`: an error, or none.
    pub(crate) fn report_dns(&self, key: String, error: Option<String>) {
        let mut errors = self.dns_errors.lock().expect("dns errors lock");
        match error {
            Some(e) => errors.insert(key, e),
            None => errors.remove(&key),
        };
    }

    /// Keeps a listener on every port of the replica, until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        if self.publish.is_none() && self.gateway.is_none() {
            return;
        }
        let mut applied = self.node.state.subscribe();
        let _close = CloseOnDrop(self.clone());
        loop {
            self.reconcile();
            tokio::select! {
                changed = applied.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(REBIND_EVERY) => {}
            }
        }
    }

    fn reconcile(self: &Arc<Self>) {
        let mut wanted = Vec::new();
        let mut conflicts = Vec::new();
        let places = [(Via::Publish, self.publish), (Via::Gateway, self.gateway)];
        if !self.node.fence().is_fenced() {
            let sm = self.node.state.read();
            for (via, addr) in places {
                if let Some(addr) = addr {
                    let (w, c) = mesh_ports(&sm.state, via);
                    wanted.extend(w.into_iter().map(|p| (addr, p)));
                    conflicts.extend(c);
                }
            }
        }
        let mut listeners = self.listeners.lock().expect("mesh listeners lock");
        let mut status = BTreeMap::new();
        let keys: Vec<Key> = wanted.iter().map(|(_, p)| (p.via, p.port, p.protocol)).collect();
        listeners.retain(|key, l| {
            let keep = keys.contains(key);
            if !keep {
                l.task.abort();
                tracing::info!(via = ?key.0, port = key.1, protocol = key.2.as_str(), "mesh: stopped listening");
            }
            keep
        });
        for (ip, port) in wanted {
            let key = (port.via, port.port, port.protocol);
            let service = port.service.clone();
            if let Some(l) = listeners.get(&key) {
                *l.port.lock().expect("mesh port lock") = port;
                status.insert(key, (service, PortStatus::Listening));
                continue;
            }
            let addr = SocketAddr::new(ip, port.port);
            let shared = Arc::new(Mutex::new(port));
            let bound = match key.2 {
                Protocol::Tcp => tcp::bind(self.clone(), addr, shared.clone()),
                Protocol::Udp => udp::bind(self.clone(), addr, shared.clone()),
            };
            let new = match bound {
                Ok(task) => {
                    tracing::info!(%addr, protocol = key.2.as_str(), %service, "mesh: listening");
                    listeners.insert(key, Listener { port: shared, task });
                    PortStatus::Listening
                }
                Err(e) => {
                    let message = format!("cannot listen on {addr}/{}: {e}", key.2.as_str());
                    if key.0 == Via::Gateway && e.kind() == std::io::ErrorKind::AddrInUse {
                        PortStatus::Taken(message)
                    } else {
                        PortStatus::Failed(message)
                    }
                }
            };
            let old = self.status.lock().expect("mesh status lock").get(&key).cloned();
            match &new {
                PortStatus::Failed(m) if !matches!(&old, Some((_, PortStatus::Failed(o))) if o == m) => {
                    tracing::warn!(%service, "mesh: {m}")
                }
                PortStatus::Taken(m) if !matches!(&old, Some((_, PortStatus::Taken(_)))) => tracing::info!(
                    %service,
                    "mesh: {m}: another agent sharing this engine serves it, or another program holds it"
                ),
                _ => {}
            }
            status.insert(key, (service, new));
        }
        for (port, owner) in conflicts {
            status
                .entry((port.via, port.port, port.protocol))
                .or_insert((port.service, PortStatus::Conflict { owner }));
        }
        *self.status.lock().expect("mesh status lock") = status;
    }

    /// A task's container address on this node, for a tunnel from another node.
    pub(crate) async fn local_addr(&self, task: &str, port: u16) -> Result<SocketAddr, String> {
        self.backends.local_addr(task, port).await
    }
}

/// Closes every listener of the mesh when the task running it is dropped (the node stops):
/// the listeners hold the mesh, so dropping it would not.
struct CloseOnDrop(Arc<Mesh>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Ok(mut listeners) = self.0.listeners.lock() {
            listeners.values().for_each(|l| l.task.abort());
            listeners.clear();
        }
    }
}
