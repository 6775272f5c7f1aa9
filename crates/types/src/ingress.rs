//! The routing mesh's view of the state: which service each ingress port belongs to, and
//! which of its tasks take connections now. Every node computes both from its own replica,
//! so the mesh changes at the moment the state does: there is no second table to drift.

use std::collections::BTreeMap;

use crate::error::SpecError;
use crate::model::{DesiredState, NodeStatus, Task, TaskState};
use crate::spec::{PortMode, Protocol, ServiceSpec};
use crate::state::State;
use crate::NodeId;

/// Where a mesh listener is, which decides the spec ports it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Via {
    /// On the node's publish address, on an ingress port's `host` number: clients
    /// outside the cluster.
    Publish,
    /// On the engine's bridge gateway, on a port's `container` number: the containers on
    /// this node, which reach a service by name (its DNS answer is the gateway).
    Gateway,
}

impl Via {
    /// Whether the spec port `p` is served by a listener on `port` here.
    pub fn serves(self, p: &crate::spec::Port, port: u16) -> bool {
        match self {
            Via::Publish => p.ingress() == Some(port),
            Via::Gateway => p.container == u32::from(port),
        }
    }

    /// The port a listener here takes for the spec port `p`.
    pub fn port_of(self, p: &crate::spec::Port) -> Option<u16> {
        match self {
            Via::Publish => p.ingress(),
            Via::Gateway => u16::try_from(p.container).ok(),
        }
    }
}

/// One port of a service the mesh listens on, as the service's current spec has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressPort {
    pub via: Via,
    /// The port listened on: the `host` number (publish) or the `container` one (gateway).
    pub port: u16,
    pub protocol: Protocol,
    pub service: String,
    /// The port inside the containers, in the current spec (a task of an older version
    /// may have another: see [`State::ingress_backends`]).
    pub container: u16,
    pub proxy_protocol: bool,
}

/// A task the mesh may send a connection for an ingress port to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub task: String,
    pub node: NodeId,
    /// The port inside the task's container, from the spec version the task runs.
    pub container: u16,
}

/// A task of the service the mesh leaves out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    pub task: String,
    pub node: Option<NodeId>,
    pub reason: &'static str,
}

/// The ingress ports of every service. A port claimed by several services (a state
/// written before ports were exclusive) belongs to the oldest of them; the others are in
/// the second list with the owner's name.
pub fn ingress_ports(state: &State) -> (Vec<IngressPort>, Vec<(IngressPort, String)>) {
    mesh_ports(state, Via::Publish)
}

/// The ports the mesh listens on `via`, each with its service, and the ports claimed by
/// a younger service too (with the owner's name): on the gateway, two services with the
/// same container port cannot both be reached by name on it.
pub fn mesh_ports(state: &State, via: Via) -> (Vec<IngressPort>, Vec<(IngressPort, String)>) {
    let mut services: Vec<_> = state.services.values().collect();
    services.sort_by(|a, b| (a.created_at, &a.spec.name).cmp(&(b.created_at, &b.spec.name)));
    let mut owners: BTreeMap<(u16, Protocol), IngressPort> = BTreeMap::new();
    let mut conflicts = Vec::new();
    for svc in services {
        for p in &svc.spec.ports {
            let Some(port) = via.port_of(p) else { continue };
            let ingress = IngressPort {
                via,
                port,
                protocol: p.protocol,
                service: svc.spec.name.clone(),
                container: p.container as u16,
                proxy_protocol: p.proxy_protocol,
            };
            match owners.get(&(port, p.protocol)) {
                Some(owner) => conflicts.push((ingress, owner.service.clone())),
                None => {
                    owners.insert((port, p.protocol), ingress);
                }
            }
        }
    }
    (owners.into_values().collect(), conflicts)
}

impl State {
    /// Why `spec` may not be applied beside the other services: an ingress port of it
    /// is published by another service, or a port it publishes is another's ingress port
    /// (the mesh listens on every node, so the two could never both bind).
    pub fn ingress_conflict(&self, spec: &ServiceSpec) -> Option<SpecError> {
        for (i, p) in spec.ports.iter().enumerate() {
            let Some(host) = p.host else { continue };
            let mine = p.effective_mode();
            for other in self.services.values().filter(|s| s.spec.name != spec.name) {
                let clash = other.spec.ports.iter().find(|q| {
                    q.host == Some(host)
                        && q.protocol == p.protocol
                        && (mine == PortMode::Ingress || q.effective_mode() == PortMode::Ingress)
                });
                if let Some(q) = clash {
                    return Some(SpecError::invalid(
                        format!("ports[{i}].host"),
                        format!(
                            "port {host}/{} is already published by service {:?} (mode {}); the routing mesh \
                             listens on every node, so an ingress port belongs to one service",
                            p.protocol.as_str(),
                            other.spec.name,
                            q.effective_mode().as_str(),
                        ),
                    ));
                }
            }
        }
        None
    }

    /// The tasks of `service` that take connections for ingress `port` now, and those
    /// left out with the reason: a backend is desired running on a ready node, and
    /// healthy (running, for a service without a health check).
    pub fn ingress_backends(&self, service: &str, port: u16, protocol: Protocol) -> (Vec<Backend>, Vec<LeftOut>) {
        self.mesh_backends(Via::Publish, service, port, protocol)
    }

    /// The tasks of `service` that take connections for a mesh listener on `port` `via`
    /// the publish address or the gateway, and those left out with the reason.
    pub fn mesh_backends(
        &self,
        via: Via,
        service: &str,
        port: u16,
        protocol: Protocol,
    ) -> (Vec<Backend>, Vec<LeftOut>) {
        let mut backends = Vec::new();
        let mut left_out = Vec::new();
        let Some(svc) = self.services.get(service) else {
            return (backends, left_out);
        };
        for task in self
            .tasks
            .values()
            .filter(|t| t.service == service && !t.state.is_terminal())
        {
            let spec = svc.spec_at(task.spec_version);
            let container = spec
                .ports
                .iter()
                .find(|p| via.serves(p, port) && p.protocol == protocol)
                .map(|p| p.container as u16);
            let reason = self.why_no_traffic(task, spec, container.is_some());
            match (reason, task.node, container) {
                (None, Some(node), Some(container)) => backends.push(Backend {
                    task: task.id.clone(),
                    node,
                    container,
                }),
                (reason, node, _) => left_out.push(LeftOut {
                    task: task.id.clone(),
                    node,
                    reason: reason.unwrap_or("not placed"),
                }),
            }
        }
        (backends, left_out)
    }
}

impl State {
    /// Why `task` (running `spec`) takes no traffic, if it does not: it must be desired
    /// running on a ready node, serve the port asked for (`serves`), and be healthy
    /// (running, for a service without a health check).
    fn why_no_traffic(&self, task: &Task, spec: &ServiceSpec, serves: bool) -> Option<&'static str> {
        let node_ready = task
            .node
            .and_then(|n| self.nodes.get(&n))
            .is_some_and(|n| n.status == NodeStatus::Ready);
        let ready = match task.state {
            TaskState::Healthy => true,
            TaskState::Running => spec.health_check.is_none(),
            _ => false,
        };
        if task.desired != DesiredState::Running {
            Some("draining")
        } else if !node_ready {
            Some("node not ready")
        } else if !serves {
            Some("its version does not publish this port")
        } else if task.state == TaskState::Unhealthy {
            Some("unhealthy")
        } else if !ready {
            Some(match task.state {
                TaskState::Running => "not healthy yet",
                _ => "not running",
            })
        } else {
            None
        }
    }

    /// The tasks of `service` that take traffic now (what its `tasks.` DNS name lists).
    pub fn ready_tasks(&self, service: &str) -> Vec<&Task> {
        let Some(svc) = self.services.get(service) else {
            return Vec::new();
        };
        self.tasks
            .values()
            .filter(|t| t.service == service && !t.state.is_terminal() && t.node.is_some())
            .filter(|t| self.why_no_traffic(t, svc.spec_at(t.spec_version), true).is_none())
            .collect()
    }
}

/// What `describe service` shows of a service's ingress ports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshView {
    /// Where clients reach it: each ready node's publish address with the port
    /// (`127.0.0.11:8080/tcp`).
    pub endpoints: Vec<String>,
    /// Per ingress port (`8080/tcp`): the tasks taking connections.
    pub backends: Vec<(String, Backend)>,
    /// Per ingress port: the tasks left out, and why.
    pub left_out: Vec<(String, LeftOut)>,
    /// Nodes whose mesh does not serve one of its ports (`node 2: 8080/tcp: …`).
    pub errors: Vec<String>,
}

impl State {
    /// The routing mesh's view of `service`: where it is reached, and by which tasks.
    pub fn mesh_view(&self, service: &str) -> MeshView {
        let mut view = MeshView::default();
        let Some(svc) = self.services.get(service) else {
            return view;
        };
        let ports: Vec<(u16, Protocol)> = svc
            .spec
            .ports
            .iter()
            .filter_map(|p| p.ingress().map(|h| (h, p.protocol)))
            .collect();
        for (port, protocol) in ports {
            let key = format!("{port}/{}", protocol.as_str());
            for node in self.nodes.values().filter(|n| n.status == NodeStatus::Ready) {
                if let Some(ip) = reach(node) {
                    view.endpoints
                        .push(format!("{}/{}", join_host_port(&ip, port), protocol.as_str()));
                }
                if let Some(why) = node.mesh_errors.get(&key) {
                    view.errors.push(format!("node {}: {key}: {why}", node.id));
                }
            }
            let (backends, left_out) = self.ingress_backends(service, port, protocol);
            view.backends.extend(backends.into_iter().map(|b| (key.clone(), b)));
            view.left_out.extend(left_out.into_iter().map(|l| (key.clone(), l)));
        }
        for (port, owner) in mesh_ports(self, Via::Gateway).1 {
            if port.service == service {
                view.errors.push(format!(
                    "by name: {}/{} on the bridge gateway is service {owner:?}'s (applied first): \
                     reach this service at tasks.{service} instead",
                    port.port,
                    port.protocol.as_str()
                ));
            }
        }
        view
    }
}

/// The address clients reach a node's mesh at: its publish address, or with an
/// unspecified one (0.0.0.0) the host of its API address.
pub fn reach(node: &crate::model::Node) -> Option<String> {
    let publish = node.publish_addr.parse::<std::net::IpAddr>().ok()?;
    if !publish.is_unspecified() {
        return Some(publish.to_string());
    }
    let host = match node.address.rsplit_once(':') {
        Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => node.address.as_str(),
    };
    Some(host.to_string())
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
