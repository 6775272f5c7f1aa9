//! What the DNS server answers, read from the replica: every agent's answer is the same
//! (up to the one difference below), so whichever agent holds the port answers for the
//! cluster.
//!
//! In the zone `<cluster>.flotilla`:
//! - `<service>`: for a container on the bridge, the gateway, where the mesh listens on
//!   the service's container ports; for anyone else, each ready node's publish address
//!   (where the mesh listens on its ingress ports).
//! - `tasks.<service>`: each healthy task's container address.
//! - `<task>.tasks.<service>` (the task id with `-` for `.`): that task's address.
//! - `_<port>._<tcp|udp>.<service>`: SRV, one per healthy task serving that container
//!   port, its target the task's name above, with the addresses in the additional section.
//!
//! Answers list healthy tasks only (running, for a service without a health check) on
//! ready nodes, with a short TTL; a name outside the zone is not answered here.

use std::net::IpAddr;

use flotilla_dns::{Query, RData, Rcode, Record, Response};
use flotilla_types::ingress::{mesh_ports, reach, Via};
use flotilla_types::{NodeStatus, Protocol, State, Task};

/// Seconds an answer may be cached: a task that turns unhealthy leaves the answer at once,
/// and resolvers see it within this.
pub const TTL: u32 = 5;

/// Who asks, which decides what `<service>` resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asker {
    /// A container on this node's bridge: it reaches the mesh at the gateway.
    Container { gateway: IpAddr },
    /// A program elsewhere: it reaches the mesh at the nodes' publish addresses.
    Outside,
}

/// The answer to `q` for the zone `zone`, or `None` when the name is outside the zone.
pub fn answer(state: &State, zone: &str, asker: Asker, q: &Query) -> Option<Response> {
    let rest = if q.name == zone {
        ""
    } else {
        q.name.strip_suffix(zone)?.strip_suffix('.')?
    };
    let mut r = Response {
        authoritative: true,
        ..Response::default()
    };
    if q.qclass != flotilla_dns::CLASS_IN {
        r.rcode = Rcode::Refused;
        return Some(r);
    }
    let labels: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('.').collect()
    };
    let found: Option<Vec<Record>> = match labels.as_slice() {
        [] => Some(Vec::new()),
        [service] => state
            .services
            .contains_key(*service)
            .then(|| service_addresses(state, service, asker))
            .map(|ips| records(&q.name, ips)),
        ["tasks", service] => state
            .services
            .contains_key(*service)
            .then(|| records(&q.name, task_addresses(state, service))),
        [task, "tasks", service] => state
            .ready_tasks(service)
            .into_iter()
            .find(|t| task_label(t) == *task)
            .map(|t| records(&q.name, address(t).into_iter().collect())),
        [port, proto, service] if port.starts_with('_') && proto.starts_with('_') => {
            srv(state, zone, service, port, proto, &q.name).map(|(answers, additional)| {
                r.additional = additional;
                answers
            })
        }
        _ => None,
    };
    match found {
        None => {
            r.rcode = Rcode::NxDomain;
            r.additional.clear();
            r.authority.push(soa(zone));
        }
        Some(all) => {
            r.answers = all.into_iter().filter(|rec| wanted(q.qtype, &rec.data)).collect();
            if labels.is_empty() && matches!(q.qtype, flotilla_dns::TYPE_SOA | flotilla_dns::TYPE_ANY) {
                r.answers.push(soa(zone));
            }
            if r.answers.is_empty() {
                // The name exists without records of this type: NODATA, with the SOA
                // for how long to cache that.
                r.additional.clear();
                r.authority.push(soa(zone));
            }
        }
    }
    Some(r)
}

/// The name a task has under `tasks.<service>`: its id, `-` for `.` (`web-1-3`).
pub fn task_label(t: &Task) -> String {
    t.id.replace('.', "-")
}

fn address(t: &Task) -> Option<IpAddr> {
    t.address.as_deref()?.parse().ok()
}

fn task_addresses(state: &State, service: &str) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = state.ready_tasks(service).into_iter().filter_map(address).collect();
    ips.sort();
    ips.dedup();
    ips
}

/// Where `service` is reached through the mesh, as `asker` reaches it.
fn service_addresses(state: &State, service: &str, asker: Asker) -> Vec<IpAddr> {
    match asker {
        Asker::Container { gateway } => {
            let served = mesh_ports(state, Via::Gateway).0.iter().any(|p| p.service == service);
            if served {
                vec![gateway]
            } else {
                Vec::new()
            }
        }
        Asker::Outside => {
            let published = mesh_ports(state, Via::Publish).0.iter().any(|p| p.service == service);
            if !published {
                return Vec::new();
            }
            let mut ips: Vec<IpAddr> = state
                .nodes
                .values()
                .filter(|n| n.status == NodeStatus::Ready)
                .filter_map(|n| reach(n)?.parse().ok())
                .collect();
            ips.sort();
            ips.dedup();
            ips
        }
    }
}

/// SRV `_<port>._<proto>.<service>`: one record per healthy task serving that container
/// port, and the tasks' addresses.
fn srv(
    state: &State,
    zone: &str,
    service: &str,
    port: &str,
    proto: &str,
    name: &str,
) -> Option<(Vec<Record>, Vec<Record>)> {
    state.services.get(service)?;
    let port: u16 = port.strip_prefix('_')?.parse().ok()?;
    let protocol = match proto {
        "_tcp" => Protocol::Tcp,
        "_udp" => Protocol::Udp,
        _ => return None,
    };
    let (backends, _) = state.mesh_backends(Via::Gateway, service, port, protocol);
    let mut answers = Vec::new();
    let mut additional = Vec::new();
    for b in backends {
        let Some(task) = state.tasks.get(&b.task) else { continue };
        let target = format!("{}.tasks.{service}.{zone}", task_label(task));
        answers.push(Record {
            name: name.to_string(),
            ttl: TTL,
            data: RData::Srv {
                priority: 0,
                weight: 1,
                port: b.container,
                target: target.clone(),
            },
        });
        additional.extend(records(&target, address(task).into_iter().collect()));
    }
    Some((answers, additional))
}

fn records(name: &str, ips: Vec<IpAddr>) -> Vec<Record> {
    ips.into_iter()
        .map(|ip| Record {
            name: name.to_string(),
            ttl: TTL,
            data: match ip {
                IpAddr::V4(v4) => RData::A(v4),
                IpAddr::V6(v6) => RData::Aaaa(v6),
            },
        })
        .collect()
}

fn wanted(qtype: u16, data: &RData) -> bool {
    qtype == flotilla_dns::TYPE_ANY
        || matches!(
            (qtype, data),
            (flotilla_dns::TYPE_A, RData::A(_))
                | (flotilla_dns::TYPE_AAAA, RData::Aaaa(_))
                | (flotilla_dns::TYPE_SRV, RData::Srv { .. })
        )
}

/// The zone's SOA: in the authority section of a negative answer, its minimum is how long
/// the absence may be cached.
fn soa(zone: &str) -> Record {
    Record {
        name: zone.to_string(),
        ttl: TTL,
        data: RData::Soa {
            mname: format!("ns.{zone}"),
            rname: format!("hostmaster.{zone}"),
            serial: 1,
            refresh: 60,
            retry: 10,
            expire: 600,
            minimum: TTL,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use flotilla_dns::{TYPE_A, TYPE_AAAA, TYPE_SRV};
    use flotilla_types::{
        Capacity, Command, NewTask, NodeRegistration, PlanUpdate, ServiceSpec, TaskReport, TaskState,
    };

    use super::*;

    const ZONE: &str = "prod.flotilla";
    const GATEWAY: Asker = Asker::Container {
        gateway: IpAddr::V4(Ipv4Addr::new(172, 17, 0, 1)),
    };

    /// Two ready nodes; `backend` (port 8080 inside, health-checked) with a healthy, an
    /// unhealthy and a not-yet-healthy task; `web` with ingress port 80 and no tasks.
    fn state() -> (State, Vec<String>) {
        let mut state = State::default();
        for (id, publish) in [(1, "127.0.0.11"), (2, "0.0.0.0")] {
            state.apply(&Command::RegisterNode {
                node: NodeRegistration {
                    id,
                    address: format!("10.0.0.{id}:7000"),
                    labels: Default::default(),
                    capacity: Capacity {
                        cpu_millis: 4000,
                        memory_mb: 4096,
                    },
                    instance: String::new(),
                    publish_addr: publish.into(),
                    mesh_errors: Default::default(),
                },
                at: 1,
            });
        }
        for (i, text) in [
            "name: backend\nimage: x\nports: [{container: 8080}]\nhealth_check: {tcp: {port: 8080}, interval: 1s}\n",
            "name: web\nimage: x\nports: [{container: 80, host: 80}]\n",
        ]
        .into_iter()
        .enumerate()
        {
            state.apply(&Command::PutService {
                spec: ServiceSpec::parse(text).expect(text),
                at: 2 + i as u64,
                exclusive_ingress: true,
            });
        }
        let create = (0..3)
            .map(|slot| NewTask {
                service: "backend".into(),
                slot,
                spec_version: 1,
                attempt: 0,
                node: Some(1 + u64::from(slot % 2)),
                message: String::new(),
                start_first: false,
                rebalanced_from: None,
            })
            .collect();
        state.apply(&Command::ApplyPlan {
            plan: PlanUpdate {
                create,
                ..Default::default()
            },
            at: 5,
        });
        let ids: Vec<String> = state.tasks.keys().cloned().collect();
        for (i, (id, s)) in ids
            .iter()
            .zip([TaskState::Healthy, TaskState::Unhealthy, TaskState::Running])
            .enumerate()
        {
            let node = state.tasks[id].node.expect("placed");
            state.apply(&Command::ReportStatus {
                node,
                reports: vec![TaskReport {
                    task: id.clone(),
                    state: s,
                    container_id: Some("c".into()),
                    address: Some(format!("172.17.0.{}", 5 + i)),
                    exit_code: None,
                    message: String::new(),
                    stop_reason: None,
                }],
                at: 6,
            });
        }
        (state, ids)
    }

    fn ask(state: &State, asker: Asker, name: &str, qtype: u16) -> Option<Response> {
        let q = Query {
            id: 7,
            opcode: 0,
            recursion_desired: true,
            name: name.into(),
            qtype,
            qclass: flotilla_dns::CLASS_IN,
            edns_udp_size: None,
        };
        answer(state, ZONE, asker, &q)
    }

    fn ips(r: &Response) -> Vec<String> {
        r.answers
            .iter()
            .map(|rec| match &rec.data {
                RData::A(ip) => ip.to_string(),
                RData::Aaaa(ip) => ip.to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_service_resolves_where_the_asker_reaches_its_mesh() {
        let (state, _) = state();
        let r = ask(&state, GATEWAY, "backend.prod.flotilla", TYPE_A).unwrap();
        assert_eq!((r.rcode, ips(&r)), (Rcode::NoError, vec!["172.17.0.1".to_string()]));
        assert_eq!(r.answers[0].ttl, TTL);
        assert!(r.authoritative);
        // From outside, a service is reached at the nodes' publish addresses, and only
        // through an ingress port: backend has none.
        let r = ask(&state, Asker::Outside, "web.prod.flotilla", TYPE_A).unwrap();
        assert_eq!(ips(&r), ["10.0.0.2", "127.0.0.11"]);
        let r = ask(&state, Asker::Outside, "backend.prod.flotilla", TYPE_A).unwrap();
        assert_eq!((r.rcode, r.answers.len(), r.authority.len()), (Rcode::NoError, 0, 1));
    }

    #[test]
    fn tasks_and_srv_list_the_healthy_tasks_only() {
        let (state, ids) = state();
        let r = ask(&state, GATEWAY, "tasks.backend.prod.flotilla", TYPE_A).unwrap();
        assert_eq!(
            ips(&r),
            ["172.17.0.5"],
            "the unhealthy and not-yet-healthy tasks are left out"
        );
        let name = format!("{}.tasks.backend.prod.flotilla", ids[0].replace('.', "-"));
        let r = ask(&state, Asker::Outside, &name, TYPE_A).unwrap();
        assert_eq!(ips(&r), ["172.17.0.5"]);
        let unhealthy = format!("{}.tasks.backend.prod.flotilla", ids[1].replace('.', "-"));
        assert_eq!(
            ask(&state, Asker::Outside, &unhealthy, TYPE_A).unwrap().rcode,
            Rcode::NxDomain
        );

        let r = ask(&state, GATEWAY, "_8080._tcp.backend.prod.flotilla", TYPE_SRV).unwrap();
        assert_eq!(
            r.answers.iter().map(|a| a.data.clone()).collect::<Vec<_>>(),
            [RData::Srv {
                priority: 0,
                weight: 1,
                port: 8080,
                target: name.clone()
            }]
        );
        assert_eq!(r.additional.len(), 1);
        assert_eq!(r.additional[0].name, name);
        // No such port, protocol or service.
        let empty = ask(&state, GATEWAY, "_9090._tcp.backend.prod.flotilla", TYPE_SRV).unwrap();
        assert_eq!((empty.rcode, empty.answers.len()), (Rcode::NoError, 0));
        let udp = ask(&state, GATEWAY, "_8080._udp.backend.prod.flotilla", TYPE_SRV).unwrap();
        assert_eq!(udp.answers.len(), 0);
        let nope = ask(&state, GATEWAY, "_8080._tcp.nope.prod.flotilla", TYPE_SRV).unwrap();
        assert_eq!(nope.rcode, Rcode::NxDomain);
    }

    #[test]
    fn unknown_names_are_nxdomain_other_types_nodata_and_other_zones_not_ours() {
        let (state, _) = state();
        let r = ask(&state, GATEWAY, "nope.prod.flotilla", TYPE_A).unwrap();
        assert_eq!(r.rcode, Rcode::NxDomain);
        assert!(matches!(r.authority[0].data, RData::Soa { minimum: TTL, .. }));
        let r = ask(&state, GATEWAY, "backend.prod.flotilla", TYPE_AAAA).unwrap();
        assert_eq!((r.rcode, r.answers.len(), r.authority.len()), (Rcode::NoError, 0, 1));
        let r = ask(&state, GATEWAY, "prod.flotilla", flotilla_dns::TYPE_SOA).unwrap();
        assert_eq!(r.answers.len(), 1);
        assert!(ask(&state, GATEWAY, "example.org", TYPE_A).is_none());
        assert!(ask(&state, GATEWAY, "xprod.flotilla", TYPE_A).is_none());
        assert_eq!(
            ask(&state, GATEWAY, "a.b.c.d.prod.flotilla", TYPE_A).unwrap().rcode,
            Rcode::NxDomain
        );
    }
}
