//! The clients: each applies, updates, scales, deletes and reads a few services through a
//! node picked at random, with short per-call timeouts, and records every call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_proto::v1::{
    ApplyOutcome, ApplyRequest, DeleteServiceRequest, GetServiceRequest, ScaleServiceRequest, ServiceInfo,
};
use flotilla_testkit::{api_client_now, ApiClient, ClientConfigFile};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::{Code, Status};

use super::history::{Entry, Op, Outcome, Ret};

/// One call's budget: long enough for a forward and a commit, short enough that a call
/// stuck on a dead or paused leader is recorded as unknown and the client moves on.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

/// The metadata key a node sets on "not the leader: not executed" (flotilla-node).
const NOT_LEADER: &str = "x-flotilla-not-leader";

/// The spec a `Put` applies.
pub fn spec(service: &str, value: &str, replicas: u32) -> String {
    format!(
        "name: {service}\nimage: flotilla/busybox:latest\ncommand: [\"sleep\", \"3600\"]\n\
         replicas: {replicas}\nenv: {{CHAOS: \"{value}\"}}\nstop_grace: 1s\n"
    )
}

/// A client of `addr` with the cluster's admin credentials, connected now (TLS included).
pub async fn connect(addr: &str, config: &ClientConfigFile) -> Result<ApiClient, String> {
    let connect = api_client_now(addr, Some(config), |e| {
        e.connect_timeout(CONNECT_TIMEOUT).timeout(CALL_TIMEOUT)
    });
    match tokio::time::timeout(CONNECT_TIMEOUT * 2, connect).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!("connect: {e}")),
        Err(_) => Err("connect: timed out".into()),
    }
}

/// Runs client `id` until `stop`; returns its history.
pub async fn run(
    id: usize,
    seed: u64,
    addrs: Vec<String>,
    services: Vec<String>,
    start: Instant,
    stop: Arc<AtomicBool>,
    config: Arc<ClientConfigFile>,
) -> Vec<Entry> {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1000).wrapping_add(id as u64));
    let mut history = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let service = services[rng.random_range(0..services.len())].clone();
        let op = match rng.random_range(0..100) {
            0..35 => {
                n += 1;
                Op::Put {
                    value: format!("c{id}-{n}"),
                    replicas: rng.random_range(0..=2),
                }
            }
            35..55 => Op::Scale {
                replicas: rng.random_range(0..=2),
            },
            55..63 => Op::Delete,
            _ => Op::Get,
        };
        let addr = &addrs[rng.random_range(0..addrs.len())];
        let invoke = start.elapsed().as_nanos() as u64;
        let outcome = call(addr, &config, &service, &op).await;
        history.push(Entry {
            client: id,
            service,
            op,
            invoke,
            ret: start.elapsed().as_nanos() as u64,
            outcome,
        });
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..120))).await;
    }
    history
}

/// One operation through node `addr`.
pub async fn call(addr: &str, config: &ClientConfigFile, service: &str, op: &Op) -> Outcome {
    let mut c = match connect(addr, config).await {
        Ok(c) => c,
        Err(e) => return Outcome::Fail(e),
    };
    let name = service.to_string();
    let answer = tokio::time::timeout(CALL_TIMEOUT, async {
        match op {
            Op::Put { value, replicas } => c
                .apply(ApplyRequest {
                    spec_document: spec(service, value, *replicas).into(),
                })
                .await
                .map(|r| {
                    let r = r.into_inner();
                    match ApplyOutcome::try_from(r.outcome) {
                        Ok(ApplyOutcome::Created) => Ret::Created(r.version),
                        Ok(ApplyOutcome::Unchanged) => Ret::Unchanged(r.version),
                        _ => Ret::Updated(r.version),
                    }
                }),
            Op::Scale { replicas } => c
                .scale_service(ScaleServiceRequest {
                    name,
                    replicas: *replicas,
                })
                .await
                .map(|r| Ret::Scaled(r.into_inner().version)),
            Op::Delete => c
                .delete_service(DeleteServiceRequest { name })
                .await
                .map(|r| Ret::Deleted(r.into_inner().version)),
            Op::Get => c
                .get_service(GetServiceRequest { name, stale: false })
                .await
                .map(|r| read(&r.into_inner())),
        }
    })
    .await;
    match answer {
        Err(_) => Outcome::Unknown(format!("no answer within {CALL_TIMEOUT:?}")),
        Ok(Ok(ret)) => Outcome::Ok(ret),
        Ok(Err(s)) => classify(&s),
    }
}

pub fn read(info: &ServiceInfo) -> Ret {
    let spec: serde_json::Value = serde_json::from_slice(&info.spec_document).unwrap_or_default();
    Ret::Read {
        version: info.version,
        value: spec["env"]["CHAOS"].as_str().unwrap_or("?").to_string(),
        replicas: info.replicas,
    }
}

/// Only answers that say the command was decided (not found) or certainly not run (not
/// the leader, invalid) are definite; anything else may have been committed.
fn classify(s: &Status) -> Outcome {
    match s.code() {
        Code::NotFound => Outcome::Ok(Ret::NotFound),
        Code::InvalidArgument => Outcome::Fail(s.message().to_string()),
        _ if s.metadata().contains_key(NOT_LEADER) => Outcome::Fail(format!("not leader: {}", s.message())),
        code => Outcome::Unknown(format!("{code:?}: {}", s.message())),
    }
}
