//! A container's usage from the engine's stats: two one-shot samples a moment apart give
//! the CPU share (the engine's own "previous" sample is empty in one-shot mode).

use std::time::Duration;

use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::StatsOptions;
use bollard::Docker;
use flotilla_executor::{ContainerId, DriverError, TaskStats};
use futures::StreamExt;

/// Time between the two samples.
const SAMPLE: Duration = Duration::from_millis(250);

async fn sample(docker: &Docker, id: &ContainerId) -> Result<ContainerStatsResponse, DriverError> {
    let options = StatsOptions {
        stream: false,
        one_shot: true,
    };
    match docker.stats(id.as_str(), Some(options)).next().await {
        Some(Ok(s)) => Ok(s),
        Some(Err(e)) => Err(crate::error::on_container(id, e)),
        None => Err(DriverError::Other(format!("no stats for {id}"))),
    }
}

/// (container CPU ns, system CPU ns, online CPUs).
fn cpu(s: &ContainerStatsResponse) -> (u64, u64, u32) {
    let c = s.cpu_stats.as_ref();
    (
        c.and_then(|c| c.cpu_usage.as_ref())
            .and_then(|u| u.total_usage)
            .unwrap_or(0),
        c.and_then(|c| c.system_cpu_usage).unwrap_or(0),
        c.and_then(|c| c.online_cpus).unwrap_or(1).max(1),
    )
}

pub(crate) async fn stats(docker: &Docker, id: &ContainerId) -> Result<TaskStats, DriverError> {
    let first = sample(docker, id).await?;
    tokio::time::sleep(SAMPLE).await;
    let second = sample(docker, id).await?;
    let (c0, s0, _) = cpu(&first);
    let (c1, s1, cpus) = cpu(&second);
    let (dc, ds) = (c1.saturating_sub(c0), s1.saturating_sub(s0));
    // As `docker stats` reckons it: the container's share of all CPUs, times their count.
    let cpu_percent = if ds > 0 {
        dc as f64 / ds as f64 * f64::from(cpus) * 100.0
    } else {
        0.0
    };
    // Also as `docker stats`: the usage less the page cache that can be dropped.
    let memory_bytes = second.memory_stats.as_ref().map_or(0, |m| {
        let cache = m
            .stats
            .as_ref()
            .and_then(|s| s.get("inactive_file").or_else(|| s.get("total_inactive_file")).copied())
            .unwrap_or(0);
        m.usage.unwrap_or(0).saturating_sub(cache)
    });
    let (rx, tx) = second.networks.as_ref().map_or((None, None), |nets| {
        let rx = nets.values().filter_map(|n| n.rx_bytes).sum();
        let tx = nets.values().filter_map(|n| n.tx_bytes).sum();
        (Some(rx), Some(tx))
    });
    Ok(TaskStats {
        cpu_percent,
        memory_bytes,
        rx_bytes: rx,
        tx_bytes: tx,
    })
}
