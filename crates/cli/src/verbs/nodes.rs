//! `get nodes`, `node drain|pause|activate`.

use flotilla_proto::v1::{
    ClusterStatusRequest, DeclareNodeDeadRequest, DesiredState, ListNodesRequest, MemberStatus, NodeAvailability,
    NodeInfo, SetNodeAvailabilityRequest,
};
use serde::Serialize;

use crate::args::{Format, NodeWhat};
use crate::client::Client;
use crate::error::CliError;
use crate::output::{print, table};
use crate::verbs::watch::Listing;

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
    /// Where its published ports and routing mesh listen.
    #[serde(skip_serializing_if = "String::is_empty")]
    publish_addr: String,
    /// The ingress ports its mesh cannot listen on, and why.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    mesh_errors: std::collections::BTreeMap<String, String>,
}

impl From<&NodeInfo> for NodeView {
    fn from(n: &NodeInfo) -> Self {
        NodeView {
            id: n.id,
            address: n.address.clone(),
            status: n.status().word().into(),
            availability: n.availability().word().into(),
            tasks: n.tasks,
            cpu_millis: n.cpu_millis,
            allocated_cpu_millis: n.allocated_cpu_millis,
            memory_mb: n.memory_mb,
            allocated_memory_mb: n.allocated_memory_mb,
            labels: n.labels.clone().into_iter().collect(),
            publish_addr: n.publish_addr.clone(),
            mesh_errors: n.mesh_errors.clone().into_iter().collect(),
        }
    }
}

/// Whether each member votes and which version it runs, from the cluster status; empty
/// when the status cannot be had (the wide table then shows `-`).
async fn members(client: &Client) -> Vec<MemberStatus> {
    client
        .send(ClusterStatusRequest {})
        .await
        .map(|r| r.members)
        .unwrap_or_default()
}

/// `get nodes`; `-o wide` adds ADDRESS, VOTER, LABELS and VERSION.
pub async fn get_nodes(client: &Client, out: Format, quiet: bool, stale: bool) -> Result<Listing, CliError> {
    let r = client.send(ListNodesRequest { stale }).await?;
    if quiet {
        let ids: Vec<String> = r.nodes.iter().map(|n| n.id.to_string()).collect();
        return Ok(Listing::ids(ids.iter().map(String::as_str)));
    }
    let wide = out == Format::Wide;
    let members = if wide { members(client).await } else { Vec::new() };
    let views: Vec<NodeView> = r.nodes.iter().map(NodeView::from).collect();
    Listing::of(
        out,
        &views,
        |n| n.id.to_string(),
        || {
            if views.is_empty() {
                return "No nodes registered yet.\n".into();
            }
            let rows: Vec<Vec<String>> = views
                .iter()
                .map(|n| {
                    let mut row = vec![
                        n.id.to_string(),
                        n.status.clone(),
                        n.availability.clone(),
                        n.tasks.to_string(),
                        format!("{}/{}m", n.allocated_cpu_millis, n.cpu_millis),
                        format!("{}/{}Mi", n.allocated_memory_mb, n.memory_mb),
                    ];
                    if wide {
                        let member = members.iter().find(|m| m.id == n.id);
                        let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        row.extend([
                            n.address.clone(),
                            member.map_or("-", |m| if m.voter { "yes" } else { "no" }).into(),
                            labels.join(","),
                            member
                                .filter(|m| m.reachable && !m.version.is_empty())
                                .map_or("-".into(), |m| m.version.clone()),
                        ]);
                    }
                    row
                })
                .collect();
            let mut header = vec!["ID", "STATUS", "AVAILABILITY", "TASKS", "CPU", "MEMORY"];
            if wide {
                header.extend(["ADDRESS", "VOTER", "LABELS", "VERSION"]);
            }
            table(&header, &rows)
        },
    )
}

pub async fn set_availability(client: &Client, out: Format, what: NodeWhat) -> Result<(), CliError> {
    let (id, availability, verb) = match what {
        NodeWhat::Drain { id } => (id, NodeAvailability::Drain, "draining: its tasks move to other nodes"),
        NodeWhat::Pause { id } => (id, NodeAvailability::Pause, "paused: no new tasks are placed on it"),
        NodeWhat::Activate { id } => (id, NodeAvailability::Active, "active"),
        NodeWhat::Remove { .. } => unreachable!("handled by members::remove"),
        NodeWhat::DeclareDead { id } => {
            let n = client.send(DeclareNodeDeadRequest { id }).await?;
            let v = NodeView::from(&n);
            return print(out, &v, || {
                format!(
                    "node/{} declared dead: its tasks are replaced on the other nodes\n",
                    v.id
                )
            });
        }
    };
    let n = client
        .send(SetNodeAvailabilityRequest {
            id,
            availability: availability.into(),
        })
        .await?;
    let v = NodeView::from(&n);
    print(out, &v, || format!("node/{} {verb}\n", v.id))
}

#[derive(Serialize)]
struct DescribedNode {
    node: NodeView,
    tasks: Vec<super::tasks::TaskView>,
}

pub async fn describe_node(client: &Client, out: Format, id: u64, stale: bool) -> Result<(), CliError> {
    let nodes = client.send(ListNodesRequest { stale }).await?.nodes;
    let n = nodes
        .iter()
        .find(|n| n.id == id)
        .ok_or_else(|| CliError::NotFound(format!("node {id} not found (see `flotilla get nodes`)")))?;
    let tasks: Vec<_> = client
        .send(flotilla_proto::v1::ListTasksRequest {
            service: String::new(),
            stale,
        })
        .await?
        .tasks
        .into_iter()
        .filter(|t| t.node_id == id && t.desired() == DesiredState::Running)
        .collect();
    let d = DescribedNode {
        node: NodeView::from(n),
        tasks: tasks.iter().map(super::tasks::TaskView::from).collect(),
    };
    print(out, &d, || {
        let labels: Vec<String> = d.node.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut text = format!(
            "ID:            {}\nAddress:       {}\nStatus:        {}\nAvailability:  {}\nCPU:           {}/{} millis allocated\nMemory:        {}/{} MiB allocated\nLabels:        {}\n\nTasks:\n",
            d.node.id,
            d.node.address,
            d.node.status,
            d.node.availability,
            d.node.allocated_cpu_millis,
            d.node.cpu_millis,
            d.node.allocated_memory_mb,
            d.node.memory_mb,
            if labels.is_empty() { "-".into() } else { labels.join(", ") },
        );
        if tasks.is_empty() {
            text.push_str("  none\n");
        }
        for t in &tasks {
            text.push_str(&format!("  {}   {}   {}\n", t.id, t.state().word(), t.message));
        }
        text
    })
}
