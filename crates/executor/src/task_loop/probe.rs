//! Health probes: exec (inside the container), http (GET, 2xx/3xx healthy), tcp (connect).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use flotilla_types::{HealthCheck, HealthCheckKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{ContainerId, Driver};

/// Runs one probe; `Err` says why it failed.
pub async fn probe(driver: &dyn Driver, id: &ContainerId, ip: Option<IpAddr>, hc: &HealthCheck) -> Result<(), String> {
    let timeout = hc.timeout.0;
    let ip = ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let run = async {
        match hc.kind() {
            Some(HealthCheckKind::Exec(cmd)) => {
                let out = driver.exec(id, cmd, timeout).await.map_err(|e| e.to_string())?;
                if out.exit_code == 0 {
                    Ok(())
                } else {
                    Err(format!(
                        "exec probe exited with {}: {}",
                        out.exit_code,
                        out.output.trim()
                    ))
                }
            }
            Some(HealthCheckKind::Http(h)) => http_get(SocketAddr::new(ip, h.port as u16), &h.path).await,
            Some(HealthCheckKind::Tcp(t)) => TcpStream::connect(SocketAddr::new(ip, t.port as u16))
                .await
                .map(drop)
                .map_err(|e| format!("tcp probe: {e}")),
            None => Ok(()),
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(format!("probe timed out after {timeout:?}")),
    }
}

/// A minimal HTTP/1.0 GET: healthy on a 2xx or 3xx status line.
async fn http_get(addr: SocketAddr, path: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("http probe {addr}: {e}"))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: flotilla-probe\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("http probe {addr}: {e}"))?;
    let mut buf = vec![0u8; 256];
    let mut read = 0;
    while read < 12 {
        let n = stream
            .read(&mut buf[read..])
            .await
            .map_err(|e| format!("http probe {addr}: {e}"))?;
        if n == 0 {
            break;
        }
        read += n;
    }
    let head = String::from_utf8_lossy(&buf[..read]);
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("http probe {addr}: no status line in {head:?}"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("http probe {addr}{path}: status {code}"))
    }
}

/// Consecutive results turned into healthy / unhealthy, per the check's settings.
#[derive(Debug)]
pub struct HealthTracker {
    started: Instant,
    last_probe: Option<Instant>,
    failures: u32,
    pub healthy: Option<bool>,
    pub last_error: String,
}

impl HealthTracker {
    pub fn new() -> Self {
        HealthTracker {
            started: Instant::now(),
            last_probe: None,
            failures: 0,
            healthy: None,
            last_error: String::new(),
        }
    }

    pub fn due(&self, hc: &HealthCheck) -> bool {
        self.last_probe.is_none_or(|t| t.elapsed() >= hc.interval.0)
    }

    /// Records a result; returns the new verdict when it changed.
    pub fn record(&mut self, hc: &HealthCheck, result: Result<(), String>) -> Option<bool> {
        self.last_probe = Some(Instant::now());
        let before = self.healthy;
        match result {
            Ok(()) => {
                self.failures = 0;
                self.healthy = Some(true);
            }
            Err(e) => {
                self.last_error = e;
                // Failures during the start period do not count.
                if self.started.elapsed() < hc.start_period.0 && self.healthy != Some(true) {
                    return None;
                }
                self.failures += 1;
                if self.failures >= hc.retries {
                    self.healthy = Some(false);
                }
            }
        }
        (self.healthy != before).then_some(self.healthy).flatten()
    }
}

impl Default for HealthTracker {
    fn default() -> Self {
        Self::new()
    }
}
