//! The client verbs.

mod apply;
mod ca;
mod events;
mod exec;
mod logs;
mod members;
mod misc;
mod nodes;
mod rollout;
mod snapshot;
mod tasks;
mod tokens;
mod top;
mod wait;
mod watch;

use flotilla_proto::v1::{
    ClusterStatusRequest, DeleteServiceRequest, DesiredState, GetServiceRequest, ListServicesRequest, ListTasksRequest,
    MemberStatus, ServiceInfo, TaskInfo, TaskState,
};
use serde::Serialize;

use crate::args::{ClusterWhat, DeleteWhat, DescribeWhat, Format, GetWhat, Global, Verb};
use crate::client::Client;
use crate::error::CliError;
use crate::output::{age, now_ms, print, table};
use crate::verbs::watch::Listing;

/// Default deadline of the calls that take long by nature (`node remove`, `snapshot save`).
const LONG_CALL: std::time::Duration = std::time::Duration::from_secs(120);

pub async fn run(global: &Global, verb: Verb) -> Result<(), CliError> {
    // Verbs that never talk to the cluster need no client config.
    match verb {
        Verb::Completion { shell } => return misc::completion(shell),
        Verb::Docs => return misc::docs(),
        Verb::Token {
            what: crate::args::TokenWhat::Generate,
        } => return tokens::generate(global.output),
        _ => {}
    }
    let client = Client::new(global, global.call_timeout())?;
    let out = global.output;
    let quiet = global.quiet;
    // `get … -w -o json`: one object per line, per change.
    let streams_json = out == Format::Json && !quiet;
    match verb {
        Verb::Agent(_) => unreachable!("handled by main"),
        Verb::Version => misc::version(&client, out).await,
        Verb::Completion { shell } => misc::completion(shell),
        Verb::Docs => misc::docs(),
        Verb::Apply { file, dry_run, wait } => {
            if dry_run {
                apply::dry_run(&client, out, &file).await
            } else {
                apply::apply(&client, global, &file, wait).await
            }
        }
        Verb::Events { follow, since } => events::events(&client, out, since, follow).await,
        Verb::Get {
            what: GetWhat::Events { since },
        } => events::events(&client, out, since, false).await,
        Verb::Get {
            what: GetWhat::Services { names, stale, watch },
        } => watch::repeat(watch, streams_json, || get_services(&client, out, quiet, &names, stale)).await,
        Verb::Get {
            what: GetWhat::Service { name, stale },
        } => get_service(&client, out, &name, stale).await,
        Verb::Delete {
            what: Some(DeleteWhat::Service { names }),
            ..
        } => delete_services(&client, out, &names).await,
        Verb::Delete { file: Some(file), .. } => {
            let names = apply::service_names(&file)?;
            delete_services(&client, out, &names).await
        }
        Verb::Delete { .. } => Err(CliError::Usage(
            "say what to delete: `delete service NAME…` or `delete -f FILE`".into(),
        )),
        Verb::Cluster {
            what: ClusterWhat::Status,
        } => cluster_status(&client, out).await,
        Verb::Cluster {
            what: ClusterWhat::Verify,
        } => cluster_verify(&client, out).await,
        Verb::Get {
            what:
                GetWhat::Tasks {
                    service,
                    all,
                    stale,
                    watch,
                },
        } => {
            let which = tasks::Which { service, all, stale };
            watch::repeat(watch, streams_json, || tasks::get_tasks(&client, out, quiet, &which)).await
        }
        Verb::Get {
            what: GetWhat::Nodes { stale, watch },
        } => watch::repeat(watch, streams_json, || nodes::get_nodes(&client, out, quiet, stale)).await,
        Verb::Describe {
            what: DescribeWhat::Service { name, stale },
        } => tasks::describe_service(&client, out, &name, stale).await,
        Verb::Describe {
            what: DescribeWhat::Task { id, stale },
        } => tasks::describe_task(&client, out, &id, stale).await,
        Verb::Describe {
            what: DescribeWhat::Node { id, stale },
        } => nodes::describe_node(&client, out, id, stale).await,
        Verb::Scale { name, replicas, wait } => {
            tasks::scale(&client, out, &name, replicas).await?;
            if wait {
                wait::converge(&client, global, &[(name, None)]).await?;
            }
            Ok(())
        }
        Verb::Node {
            what: crate::args::NodeWhat::Remove { id },
        } => {
            // Removal drains a live node first (up to a minute on the leader).
            let client = Client::new(global, global.timeout.unwrap_or(LONG_CALL))?;
            members::remove(&client, out, id).await
        }
        Verb::Node { what } => nodes::set_availability(&client, out, what).await,
        Verb::Rollout { what } => rollout::run(&client, out, what).await,
        Verb::Token { what } => tokens::run(&client, out, what).await,
        Verb::Ca { what } => ca::run(&client, out, what).await,
        Verb::Snapshot { what } => {
            let client = Client::new(global, global.timeout.unwrap_or(LONG_CALL))?;
            snapshot::run(&client, out, what).await
        }
        Verb::Exec {
            interactive,
            tty,
            task,
            cmd,
        } => {
            let code = exec::exec(&client, &task, cmd, exec::Options { interactive, tty }).await?;
            use std::io::Write;
            let _ = std::io::stdout().flush();
            std::process::exit(code);
        }
        Verb::Top { watch } => top::top(&client, out, quiet, watch).await,
        Verb::Logs {
            target,
            follow,
            tail,
            timestamps,
            since,
        } => {
            let options = logs::Options {
                follow,
                tail,
                timestamps,
                since,
            };
            logs::logs(&client, out, &target, options).await
        }
    }
}

/// A service as `get` prints it in JSON and YAML.
#[derive(Serialize)]
pub(crate) struct ServiceView {
    name: String,
    version: u64,
    created_at: String,
    updated_at: String,
    spec: serde_json::Value,
}

fn rfc3339(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

pub(crate) fn view(s: &ServiceInfo) -> Result<ServiceView, CliError> {
    Ok(ServiceView {
        name: s.name.clone(),
        version: s.version,
        created_at: rfc3339(s.created_at_ms),
        updated_at: rfc3339(s.updated_at_ms),
        spec: serde_json::from_slice(&s.spec_document)
            .map_err(|e| CliError::Failed(format!("the cluster sent an unreadable spec: {e}")))?,
    })
}

/// `2/3`, or `3/3 (2 healthy)` for a service with a health check: its current tasks that
/// run, of those it wants, as `docker service ls` counts them.
fn replicas(s: &ServiceInfo, spec: &serde_json::Value, tasks: &[TaskInfo]) -> String {
    let current: Vec<&TaskInfo> = tasks
        .iter()
        .filter(|t| t.service == s.name && t.desired() == DesiredState::Running)
        .collect();
    let running = current.iter().filter(|t| t.state().is_up()).count();
    let counts = format!("{running}/{}", s.replicas);
    if spec["health_check"].is_object() {
        let healthy = current.iter().filter(|t| t.state() == TaskState::Healthy).count();
        format!("{counts} ({healthy} healthy)")
    } else {
        counts
    }
}

/// `names` that `services` lacks, as a not-found error.
fn all_found(names: &[String], services: &[ServiceInfo]) -> Result<(), CliError> {
    let missing: Vec<&str> = names
        .iter()
        .filter(|n| !services.iter().any(|s| &s.name == *n))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(CliError::NotFound(format!(
        "service(s) {} not found (see `flotilla get services`)",
        missing.join(", ")
    )))
}

async fn get_services(
    client: &Client,
    out: Format,
    quiet: bool,
    names: &[String],
    stale: bool,
) -> Result<Listing, CliError> {
    let mut services = client.send(ListServicesRequest { stale }).await?.services;
    if !names.is_empty() {
        all_found(names, &services)?;
        services.retain(|s| names.contains(&s.name));
    }
    if quiet {
        return Ok(Listing::ids(services.iter().map(|s| s.name.as_str())));
    }
    let views = services.iter().map(view).collect::<Result<Vec<_>, _>>()?;
    // Replica counts are for people; the JSON and YAML views stay specs an apply reads back.
    let tasks = match out {
        Format::Table | Format::Wide => {
            client
                .send(ListTasksRequest {
                    service: String::new(),
                    stale,
                })
                .await?
                .tasks
        }
        Format::Json | Format::Yaml => Vec::new(),
    };
    Listing::of(
        out,
        &views,
        |v| v.name.clone(),
        || {
            let now = now_ms();
            let wide = out == Format::Wide;
            let rows: Vec<Vec<String>> = services
                .iter()
                .zip(&views)
                .map(|(s, v)| {
                    let spec = &v.spec;
                    let mut row = vec![
                        s.name.clone(),
                        s.version.to_string(),
                        replicas(s, spec, &tasks),
                        s.image.clone(),
                        age(s.updated_at_ms, now),
                        endpoints(&s.endpoints, wide),
                    ];
                    if wide {
                        row.push(age(s.created_at_ms, now));
                        row.push(ports(spec).join(","));
                        row.push(spec["command"].as_array().map_or(String::new(), |c| {
                            c.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(" ")
                        }));
                    }
                    row
                })
                .collect();
            if rows.is_empty() {
                return "No services.\n".into();
            }
            let mut header = vec!["NAME", "VERSION", "REPLICAS", "IMAGE", "UPDATED", "ENDPOINTS"];
            if wide {
                header.extend(["CREATED", "PORTS", "COMMAND"]);
            }
            table(&header, &rows)
        },
    )
}

/// A spec's ports as `8080->80` (published) or `80`, with `/udp` for UDP.
/// A service's mesh endpoints for the table: all of them wide, else the first two and
/// how many more.
fn endpoints(all: &[String], wide: bool) -> String {
    const SHOWN: usize = 2;
    if all.is_empty() {
        return "-".into();
    }
    if wide || all.len() <= SHOWN {
        return all.join(",");
    }
    format!("{} (+{} more)", all[..SHOWN].join(","), all.len() - SHOWN)
}

pub(crate) fn ports(spec: &serde_json::Value) -> Vec<String> {
    spec["ports"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let udp = if p["protocol"] == "udp" { "/udp" } else { "" };
                    // `*:` marks an ingress port: the mesh has it on every node.
                    let ingress = if p["mode"] == "host" { "" } else { "*:" };
                    match p["host"].as_u64() {
                        Some(h) => format!("{ingress}{h}->{}{udp}", p["container"]),
                        None => format!("{}{udp}", p["container"]),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn get_service(client: &Client, out: Format, name: &str, stale: bool) -> Result<(), CliError> {
    let s = client
        .send(GetServiceRequest {
            name: name.to_string(),
            stale,
        })
        .await?;
    let v = view(&s)?;
    print(out, &v, || {
        let now = now_ms();
        let spec = serde_norway::to_string(&v.spec).unwrap_or_default();
        let mut text = format!(
            "Name:      {}\nVersion:   {}\nImage:     {}\nReplicas:  {}\nCreated:   {} ({} ago)\nUpdated:   {} ({} ago)\nSpec:\n",
            s.name,
            s.version,
            s.image,
            s.replicas,
            v.created_at,
            age(s.created_at_ms, now),
            v.updated_at,
            age(s.updated_at_ms, now),
        );
        for line in spec.lines() {
            text.push_str("  ");
            text.push_str(line);
            text.push('\n');
        }
        text
    })
}

#[derive(Serialize)]
struct DeleteResult {
    name: String,
    version: u64,
    deleted: bool,
}

/// Deletes each service in turn; one that fails does not keep the others. The error is the
/// first failure's (exit code 4 when a service did not exist).
async fn delete_services(client: &Client, out: Format, names: &[String]) -> Result<(), CliError> {
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for name in names {
        match client.send(DeleteServiceRequest { name: name.clone() }).await {
            Ok(r) => results.push(DeleteResult {
                name: r.name,
                version: r.version,
                deleted: true,
            }),
            // Nothing further can go through an unreachable cluster.
            Err(e @ CliError::Unreachable(_)) => return Err(e),
            Err(e) => failures.push(e),
        }
    }
    // One object for one name, as before `delete` took several.
    let shown = match results.as_slice() {
        [one] if names.len() == 1 => serde_json::to_value(one),
        all => serde_json::to_value(all),
    }
    .map_err(|e| CliError::Failed(e.to_string()))?;
    print(out, &shown, || {
        results
            .iter()
            .map(|r| format!("service/{} deleted (was version {})\n", r.name, r.version))
            .collect()
    })?;
    let mut failures = failures.into_iter();
    match failures.next() {
        None => Ok(()),
        Some(first) => {
            for other in failures {
                eprintln!("error: {other}");
            }
            Err(first)
        }
    }
}

#[derive(Serialize)]
struct StatusView {
    leader: Option<u64>,
    term: u64,
    answered_by: u64,
    members: Vec<MemberView>,
    epoch: u64,
    voters: u32,
    reachable_voters: u32,
    /// Voters the cluster can lose now and keep a majority.
    can_lose: u32,
    fault_tolerance: String,
}

#[derive(Serialize)]
struct MemberView {
    id: u64,
    address: String,
    role: String,
    voter: bool,
    reachable: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
    term: u64,
    last_log_index: u64,
    applied_index: u64,
    snapshot_index: u64,
    snapshots_installed: u64,
    /// From the leader: the last index it knows this member holds, how far behind its own
    /// last log that is, and how long ago it last heard from it.
    match_index: u64,
    lag: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_contact_ms: Option<u64>,
    /// When the member's node certificate expires (Unix ms); absent on `--insecure`.
    #[serde(skip_serializing_if = "Option::is_none")]
    cert_expires_at: Option<u64>,
}

impl From<&MemberStatus> for MemberView {
    fn from(m: &MemberStatus) -> Self {
        MemberView {
            id: m.id,
            address: m.address.clone(),
            role: if m.reachable {
                m.role().word().into()
            } else {
                "unreachable".into()
            },
            voter: m.voter,
            reachable: m.reachable,
            error: m.error.clone(),
            term: m.term,
            last_log_index: m.last_log_index,
            applied_index: m.applied_index,
            snapshot_index: m.snapshot_index,
            snapshots_installed: m.snapshots_installed,
            match_index: m.match_index,
            lag: m.lag,
            last_contact_ms: (m.last_contact_ms > 0).then_some(m.last_contact_ms),
            cert_expires_at: (m.cert_expires_at > 0).then_some(m.cert_expires_at),
        }
    }
}

/// "in 89d", "in 5h" (or "expired") for a time `at` (Unix ms) after `now`.
pub fn expires_in(at: u64, now: u64) -> String {
    if at <= now {
        return "expired".into();
    }
    format!("in {}", age(now, at))
}

async fn cluster_status(client: &Client, out: Format) -> Result<(), CliError> {
    let r = client.send(ClusterStatusRequest {}).await?;
    let view = StatusView {
        leader: (r.leader_id != 0).then_some(r.leader_id),
        term: r.term,
        answered_by: r.answered_by,
        members: r.members.iter().map(MemberView::from).collect(),
        epoch: r.epoch,
        voters: r.voters,
        reachable_voters: r.reachable_voters,
        can_lose: r.can_lose,
        fault_tolerance: fault_tolerance(r.voters, r.reachable_voters, r.can_lose),
    };
    print(out, &view, || {
        let leader = view.leader.map_or("none".to_string(), |l| l.to_string());
        let mut text = format!("Leader: {leader}   Term: {}   Epoch: {}\n\n", view.term, view.epoch);
        let rows: Vec<Vec<String>> = view
            .members
            .iter()
            .map(|m| {
                let dash = |v: u64| {
                    if m.reachable {
                        v.to_string()
                    } else {
                        "-".into()
                    }
                };
                let is_leader = view.leader == Some(m.id);
                vec![
                    m.id.to_string(),
                    m.address.clone(),
                    m.role.clone(),
                    if m.voter { "yes" } else { "no" }.into(),
                    if m.reachable { "yes" } else { "no" }.into(),
                    dash(m.term),
                    dash(m.last_log_index),
                    dash(m.applied_index),
                    dash(m.snapshot_index),
                    if view.leader.is_some() {
                        m.match_index.to_string()
                    } else {
                        "-".into()
                    },
                    if view.leader.is_some() {
                        m.lag.to_string()
                    } else {
                        "-".into()
                    },
                    match m.last_contact_ms {
                        _ if is_leader => "-".into(),
                        Some(ms) => format!("{ms}ms ago"),
                        None => "never".into(),
                    },
                    match m.cert_expires_at {
                        Some(at) => expires_in(at, now_ms()),
                        None if m.reachable => "no TLS".into(),
                        None => "-".into(),
                    },
                    m.error.clone(),
                ]
            })
            .collect();
        text.push_str(&table(
            &[
                "ID",
                "ADDRESS",
                "ROLE",
                "VOTER",
                "REACHABLE",
                "TERM",
                "LAST LOG",
                "APPLIED",
                "SNAPSHOT",
                "MATCH",
                "LAG",
                "LAST CONTACT",
                "CERT EXPIRES",
                "ERROR",
            ],
            &rows,
        ));
        text.push_str(&format!("\nfault tolerance: {}\n", view.fault_tolerance));
        text
    })
}

/// "can lose 1 node (3 voters, 3 reachable)" or "cannot lose a node now (…)".
fn fault_tolerance(voters: u32, reachable: u32, can_lose: u32) -> String {
    let plural = if voters == 1 { "" } else { "s" };
    let counts = format!("{voters} voter{plural}, {reachable} reachable");
    match can_lose {
        0 => format!("cannot lose a node now ({counts})"),
        1 => format!("can lose 1 node ({counts})"),
        n => format!("can lose {n} nodes ({counts})"),
    }
}

#[derive(Serialize)]
struct VerifyView {
    index: u64,
    agree: bool,
    members: Vec<DigestView>,
}

#[derive(Serialize)]
struct DigestView {
    id: u64,
    address: String,
    reachable: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    digest: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
}

async fn cluster_verify(client: &Client, out: Format) -> Result<(), CliError> {
    let r = client.send(flotilla_proto::v1::VerifyRequest {}).await?;
    let view = VerifyView {
        index: r.index,
        agree: r.agree,
        members: r
            .members
            .iter()
            .map(|m| DigestView {
                id: m.id,
                address: m.address.clone(),
                reachable: m.reachable,
                digest: m.digest.clone(),
                error: m.error.clone(),
            })
            .collect(),
    };
    print(out, &view, || {
        let rows: Vec<Vec<String>> = view
            .members
            .iter()
            .map(|m| {
                vec![
                    m.id.to_string(),
                    m.address.clone(),
                    if m.reachable {
                        m.digest.chars().take(16).collect()
                    } else {
                        "-".into()
                    },
                    m.error.clone(),
                ]
            })
            .collect();
        let mut text = table(&["ID", "ADDRESS", "DIGEST", "ERROR"], &rows);
        let (differ, silent) = verify_outcome(&view.members);
        if view.agree {
            text.push_str(&format!(
                "\nall {} replicas agree at index {}\n",
                view.members.len(),
                view.index
            ));
        }
        if !differ.is_empty() {
            text.push_str(&format!(
                "\nreplicas do NOT agree at index {}: node(s) {} differ from the others\n",
                view.index,
                differ.join(", ")
            ));
        }
        if !silent.is_empty() {
            text.push_str(&format!(
                "\nnode(s) {} did not answer (unreachable): their state was not compared{}\n",
                silent.join(", "),
                if differ.is_empty() {
                    format!("; the replicas that answered agree at index {}", view.index)
                } else {
                    String::new()
                }
            ));
        }
        text
    })?;
    let (differ, silent) = verify_outcome(&view.members);
    if !differ.is_empty() {
        Err(CliError::Failed(format!(
            "replicas do not agree at index {}: node(s) {} differ",
            view.index,
            differ.join(", ")
        )))
    } else if !silent.is_empty() {
        Err(CliError::Unreachable(format!(
            "node(s) {} did not answer; the replicas that answered agree at index {}",
            silent.join(", "),
            view.index
        )))
    } else if !view.agree {
        Err(CliError::Failed(format!(
            "replicas do not agree at index {}",
            view.index
        )))
    } else {
        Ok(())
    }
}

/// The members whose digest differs from the one most members that answered have (ties:
/// the lowest digest), and the members that did not answer.
fn verify_outcome(members: &[DigestView]) -> (Vec<String>, Vec<String>) {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for m in members.iter().filter(|m| m.reachable) {
        *counts.entry(m.digest.as_str()).or_default() += 1;
    }
    let most = counts.values().copied().max().unwrap_or(0);
    let majority = counts
        .iter()
        .find(|(_, n)| **n == most)
        .map(|(d, _)| *d)
        .unwrap_or_default();
    let differ = members
        .iter()
        .filter(|m| m.reachable && m.digest != majority)
        .map(|m| m.id.to_string())
        .collect();
    let silent = members
        .iter()
        .filter(|m| !m.reachable)
        .map(|m| m.id.to_string())
        .collect();
    (differ, silent)
}

#[cfg(test)]
mod verify_tests {
    use super::{verify_outcome, DigestView};

    fn member(id: u64, digest: Option<&str>) -> DigestView {
        DigestView {
            id,
            address: format!("127.0.0.1:700{id}"),
            reachable: digest.is_some(),
            digest: digest.unwrap_or_default().into(),
            error: String::new(),
        }
    }

    #[test]
    fn a_silent_node_is_unreachable_not_divergent() {
        let (differ, silent) = verify_outcome(&[member(1, Some("a")), member(2, None), member(3, Some("a"))]);
        assert!(differ.is_empty());
        assert_eq!(silent, vec!["2"]);
    }

    #[test]
    fn the_odd_one_out_differs_whichever_answers_first() {
        let (differ, silent) = verify_outcome(&[member(1, Some("b")), member(2, Some("a")), member(3, Some("a"))]);
        assert_eq!(differ, vec!["1"]);
        assert!(silent.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_read_running_of_desired_and_healthy_when_checked() {
        let svc = ServiceInfo {
            name: "web".into(),
            replicas: 3,
            ..Default::default()
        };
        let task = |service: &str, desired: DesiredState, state: TaskState| {
            let mut t = TaskInfo {
                service: service.into(),
                ..Default::default()
            };
            t.set_desired(desired);
            t.set_state(state);
            t
        };
        let tasks = vec![
            task("web", DesiredState::Running, TaskState::Healthy),
            task("web", DesiredState::Running, TaskState::Running),
            task("web", DesiredState::Running, TaskState::Starting),
            task("web", DesiredState::Shutdown, TaskState::Running),
            task("api", DesiredState::Running, TaskState::Running),
        ];
        let plain = serde_json::json!({"name": "web"});
        assert_eq!(replicas(&svc, &plain, &tasks), "2/3");
        let checked = serde_json::json!({"name": "web", "health_check": {"exec": ["true"]}});
        assert_eq!(replicas(&svc, &checked, &tasks), "2/3 (1 healthy)");
        assert_eq!(replicas(&svc, &plain, &[]), "0/3");
    }
}
