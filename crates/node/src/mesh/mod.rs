//! The routing mesh: for every ingress port of every service, this node listens on
//! `--publish-addr:host` and forwards each TCP connection (each UDP flow) to a healthy task
//! of the service on any node: to a task here at its container's address, to a task on
//! another node through that node's agent (`AgentService/Tunnel`, over the cluster's
//! mutual TLS), since container addresses do not route between machines.
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
use flotilla_types::ingress::{ingress_ports, IngressPort};
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
    /// Another service owns the port (a state from before ports were exclusive).
    Conflict {
        owner: String,
    },
}

/// One ingress port's listener: its service and options, updated in place on a change.
struct Listener {
    port: Arc<Mutex<IngressPort>>,
    task: JoinHandle<()>,
}

pub struct Mesh {
    node: Arc<Node>,
    /// Where the listeners bind; `None`: the mesh is off on this node.
    publish: Option<IpAddr>,
    pub(crate) backends: Backends,
    listeners: Mutex<BTreeMap<(u16, Protocol), Listener>>,
    status: Mutex<BTreeMap<(u16, Protocol), (String, PortStatus)>>,
}

impl Mesh {
    pub fn new(node: Arc<Node>, driver: Arc<dyn Driver>, publish: Option<IpAddr>) -> Arc<Self> {
        Arc::new(Mesh {
            backends: Backends::new(node.clone(), driver.clone()),
            node,
            publish,
            listeners: Mutex::new(BTreeMap::new()),
            status: Mutex::new(BTreeMap::new()),
        })
    }

    /// Every ingress port this node knows of, with its service and what became of it here.
    pub fn status(&self) -> BTreeMap<(u16, Protocol), (String, PortStatus)> {
        self.status.lock().expect("mesh status lock").clone()
    }

    /// The ingress ports this node's mesh does not serve (`8080/tcp`), and why: what its
    /// heartbeat tells the leader, for `describe service` and the events.
    pub fn errors(&self) -> std::collections::HashMap<String, String> {
        self.status()
            .into_iter()
            .filter_map(|((port, protocol), (service, status))| {
                let why = match status {
                    PortStatus::Listening => return None,
                    PortStatus::Failed(e) => format!("service {service}: {e}"),
                    PortStatus::Conflict { owner } => {
                        format!("service {service}: the port is service {owner}'s (applied first)")
                    }
                };
                Some((format!("{port}/{}", protocol.as_str()), why))
            })
            .collect()
    }

    /// Keeps a listener on every ingress port of the replica, until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        let Some(publish) = self.publish else { return };
        let mut applied = self.node.state.subscribe();
        let _close = CloseOnDrop(self.clone());
        loop {
            self.reconcile(publish);
            tokio::select! {
                changed = applied.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(REBIND_EVERY) => {}
            }
        }
    }

    fn reconcile(self: &Arc<Self>, publish: IpAddr) {
        let (wanted, conflicts) = {
            let sm = self.node.state.read();
            if self.node.fence().is_fenced() {
                (Vec::new(), Vec::new())
            } else {
                ingress_ports(&sm.state)
            }
        };
        let mut listeners = self.listeners.lock().expect("mesh listeners lock");
        let mut status = BTreeMap::new();
        let keys: Vec<_> = wanted.iter().map(|p| (p.port, p.protocol)).collect();
        listeners.retain(|key, l| {
            let keep = keys.contains(key);
            if !keep {
                l.task.abort();
                tracing::info!(port = key.0, protocol = key.1.as_str(), "mesh: stopped listening");
            }
            keep
        });
        for port in wanted {
            let key = (port.port, port.protocol);
            let service = port.service.clone();
            if let Some(l) = listeners.get(&key) {
                *l.port.lock().expect("mesh port lock") = port;
                status.insert(key, (service, PortStatus::Listening));
                continue;
            }
            let addr = SocketAddr::new(publish, port.port);
            let shared = Arc::new(Mutex::new(port));
            let bound = match key.1 {
                Protocol::Tcp => tcp::bind(self.clone(), addr, shared.clone()),
                Protocol::Udp => udp::bind(self.clone(), addr, shared.clone()),
            };
            match bound {
                Ok(task) => {
                    tracing::info!(%addr, protocol = key.1.as_str(), %service, "mesh: listening");
                    listeners.insert(key, Listener { port: shared, task });
                    status.insert(key, (service, PortStatus::Listening));
                }
                Err(e) => {
                    let message = format!("cannot listen on {addr}/{}: {e}", key.1.as_str());
                    let old = self.status.lock().expect("mesh status lock").get(&key).cloned();
                    if !matches!(old, Some((_, PortStatus::Failed(ref m))) if *m == message) {
                        tracing::warn!(%service, "mesh: {message}");
                    }
                    status.insert(key, (service, PortStatus::Failed(message)));
                }
            }
        }
        for (port, owner) in conflicts {
            status
                .entry((port.port, port.protocol))
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
