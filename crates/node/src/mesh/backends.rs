//! Which task a new connection goes to: the service's healthy tasks from the replica, in
//! turn, those that failed a moment ago last; and where a task here listens.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use flotilla_executor::Driver;
use flotilla_types::ingress::{Backend, IngressPort};
use flotilla_types::Protocol;

use super::{AVOID_FOR, TRIES};
use crate::node::Node;

/// Most container addresses remembered; past it the memory starts over.
const MAX_ADDRS: usize = 4096;

pub struct Backends {
    node: Arc<Node>,
    driver: Arc<dyn Driver>,
    /// Round-robin position per ingress port.
    next: Mutex<std::collections::BTreeMap<(flotilla_types::ingress::Via, u16, Protocol), usize>>,
    /// Tasks that refused or timed out, passed over until the instant.
    avoid: Mutex<HashMap<String, Instant>>,
    /// Container addresses of tasks on this node (a task keeps one container for life).
    addrs: Mutex<HashMap<String, IpAddr>>,
}

impl Backends {
    pub fn new(node: Arc<Node>, driver: Arc<dyn Driver>) -> Self {
        Backends {
            node,
            driver,
            next: Mutex::default(),
            avoid: Mutex::default(),
            addrs: Mutex::default(),
        }
    }

    /// The backends to try for one new connection to `port`, in order: from the next
    /// in turn, those that failed within [`AVOID_FOR`] last; at most [`TRIES`].
    pub fn order(&self, port: &IngressPort) -> Vec<Backend> {
        let (mut list, _) =
            self.node
                .state
                .read()
                .state
                .mesh_backends(port.via, &port.service, port.port, port.protocol);
        if list.is_empty() {
            return list;
        }
        let start = {
            let mut next = self.next.lock().expect("mesh cursor lock");
            let n = next.entry((port.via, port.port, port.protocol)).or_insert(0);
            *n = n.wrapping_add(1);
            *n % list.len()
        };
        list.rotate_left(start);
        let now = Instant::now();
        let mut avoid = self.avoid.lock().expect("mesh avoid lock");
        avoid.retain(|_, until| *until > now);
        // Stable: the turn order is kept within each group.
        list.sort_by_key(|b| avoid.contains_key(&b.task));
        list.truncate(TRIES);
        list
    }

    /// `task` refused or timed out: pass it over for a moment, and look its address up
    /// again next time.
    pub fn failed(&self, task: &str) {
        self.avoid
            .lock()
            .expect("mesh avoid lock")
            .insert(task.to_string(), Instant::now() + AVOID_FOR);
        self.addrs.lock().expect("mesh addrs lock").remove(task);
    }

    /// Where `task`, running on this node, listens on `port`: its container's address.
    pub async fn local_addr(&self, task: &str, port: u16) -> Result<SocketAddr, String> {
        if let Some(ip) = self.addrs.lock().expect("mesh addrs lock").get(task) {
            return Ok(SocketAddr::new(*ip, port));
        }
        let container = crate::logs::container_of(&self.node, self.driver.as_ref(), task)
            .await
            .map_err(|e| e.to_string())?;
        let ip = container
            .ip
            .ok_or_else(|| format!("task {task}: its container is not running"))?;
        let mut addrs = self.addrs.lock().expect("mesh addrs lock");
        if addrs.len() >= MAX_ADDRS {
            addrs.clear();
        }
        addrs.insert(task.to_string(), ip);
        Ok(SocketAddr::new(ip, port))
    }
}
