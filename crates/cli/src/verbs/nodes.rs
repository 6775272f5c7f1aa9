//! `get nodes`, `node drain|pause|activate`.

use flotilla_proto::v1::{ListNodesRequest, NodeInfo, SetNodeAvailabilityRequest};
use serde::Serialize;

use crate::args::{Format, NodeWhat};
use crate::client::Client;
use crate::error::CliError;
use crate::output::{print, table};

#[derive(Serialize)]
struct NodeView {
    id: u64,
    address: String,
    status: String,
    availability: String,
    tasks: u32,
    cpu_millis: u64,
    allocated_cpu_millis: u64,
    memory_mb: u64,
    allocated_memory_mb: u64,
    labels: std::collections::BTreeMap<String, String>,
}

impl From<&NodeInfo> for NodeView {
    fn from(n: &NodeInfo) -> Self {
        NodeView {
            id: n.id,
            address: n.address.clone(),
            status: n.status.clone(),
            availability: n.availability.clone(),
            tasks: n.tasks,
            cpu_millis: n.cpu_millis,
            allocated_cpu_millis: n.allocated_cpu_millis,
            memory_mb: n.memory_mb,
            allocated_memory_mb: n.allocated_memory_mb,
            labels: n.labels.clone().into_iter().collect(),
        }
    }
}

pub async fn get_nodes(client: &Client, out: Format, stale: bool) -> Result<(), CliError> {
    let r = client
        .call(|mut c| async move { c.list_nodes(ListNodesRequest { stale }).await })
        .await?;
    let views: Vec<NodeView> = r.nodes.iter().map(NodeView::from).collect();
    print(out, &views, || {
        if views.is_empty() {
            return "No nodes registered yet.\n".into();
        }
        let rows: Vec<Vec<String>> = views
            .iter()
            .map(|n| {
                let labels: Vec<String> =
                    n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                vec![
                    n.id.to_string(),
                    n.address.clone(),
                    n.status.clone(),
                    n.availability.clone(),
                    n.tasks.to_string(),
                    format!("{}/{}m", n.allocated_cpu_millis, n.cpu_millis),
                    format!("{}/{}Mi", n.allocated_memory_mb, n.memory_mb),
                    labels.join(","),
                ]
            })
            .collect();
        table(
            &[
                "ID",
                "ADDRESS",
                "STATUS",
                "AVAILABILITY",
                "TASKS",
                "CPU",
                "MEMORY",
                "LABELS",
            ],
            &rows,
        )
    })
}

pub async fn set_availability(
    client: &Client,
    out: Format,
    what: NodeWhat,
) -> Result<(), CliError> {
    let (id, availability, verb) = match what {
        NodeWhat::Drain { id } => (id, "drain", "draining: its tasks move to other nodes"),
        NodeWhat::Pause { id } => (id, "pause", "paused: no new tasks are placed on it"),
        NodeWhat::Activate { id } => (id, "active", "active"),
    };
    let req = SetNodeAvailabilityRequest {
        id,
        availability: availability.into(),
    };
    let n = client
        .call(|mut c| {
            let req = req.clone();
            async move { c.set_node_availability(req).await }
        })
        .await?;
    let v = NodeView::from(&n);
    print(out, &v, || format!("node/{} {verb}\n", v.id))
}
