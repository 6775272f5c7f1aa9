//! `flotilla ca …`: the cluster CA, its members' certificates, and its rotation.

use std::time::{Duration, Instant};

use flotilla_proto::v1::{CaStatusRequest, CaStatusResponse, RotateCaRequest};
use serde::Serialize;

use crate::args::{CaWhat, Format};
use crate::client::Client;
use crate::error::CliError;
use crate::output::{print, table};

#[derive(Serialize)]
struct CaView {
    digest: String,
    rotating: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_digest: Option<String>,
    members: Vec<MemberCa>,
}

#[derive(Serialize)]
struct MemberCa {
    id: u64,
    address: String,
    /// current, previous, unreachable or unknown.
    cert: &'static str,
    cert_ca: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn short(digest: &str) -> String {
    digest.chars().take(16).collect()
}

fn view(r: &CaStatusResponse) -> CaView {
    let members = r
        .members
        .iter()
        .map(|m| MemberCa {
            id: m.id,
            address: m.address.clone(),
            cert: if !m.reachable {
                "unreachable"
            } else if m.cert_ca == r.digest {
                "current"
            } else if !r.previous_digest.is_empty() && m.cert_ca == r.previous_digest {
                "previous"
            } else {
                "unknown"
            },
            cert_ca: m.cert_ca.clone(),
            error: (!m.error.is_empty()).then(|| m.error.clone()),
        })
        .collect();
    CaView {
        digest: r.digest.clone(),
        rotating: !r.previous_digest.is_empty(),
        previous_digest: (!r.previous_digest.is_empty()).then(|| r.previous_digest.clone()),
        members,
    }
}

fn text(v: &CaView) -> String {
    let mut out = format!("CA {}\n", v.digest);
    if let Some(p) = &v.previous_digest {
        let moved = v.members.iter().filter(|m| m.cert == "current").count();
        out.push_str(&format!(
            "rotating from {p}: {moved}/{} members hold a certificate of the new CA\n",
            v.members.len()
        ));
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = v
        .members
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                m.address.clone(),
                m.cert.to_string(),
                short(&m.cert_ca),
                m.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table(&["ID", "ADDRESS", "CERT", "CERT CA", "ERROR"], &rows));
    out
}

pub async fn run(client: &Client, out: Format, what: CaWhat) -> Result<(), CliError> {
    match what {
        CaWhat::Status => {
            let r = client.send(CaStatusRequest {}).await?;
            let v = view(&r);
            print(out, &v, || text(&v))
        }
        CaWhat::Cert => {
            let r = client.send(CaStatusRequest {}).await?;
            print(out, &serde_json::json!({ "ca_pem": r.ca_pem }), || r.ca_pem.clone())
        }
        CaWhat::Rotate { detach, wait_timeout } => {
            let started = client.send(RotateCaRequest {}).await?;
            // Trusting both CAs keeps this client and its config working while the
            // rotation goes on and after it.
            client.trust(&started.ca_pem)?;
            if let Some(path) = client.update_config_ca(&started.ca_pem)? {
                eprintln!("{} now trusts the new and the previous CA", path.display());
            }
            eprintln!(
                "rotating the cluster CA from {} to {}",
                short(&started.previous_digest),
                short(&started.digest)
            );
            if detach {
                let v = view(&started);
                return print(out, &v, || text(&v));
            }
            let done = wait_rotated(client, &started.digest, wait_timeout).await?;
            if let Some(path) = client.update_config_ca(&done.ca_pem)? {
                eprintln!("{} now trusts the new CA only", path.display());
            }
            eprintln!("the previous CA is trusted no more; give other client configs the new CA (flotilla ca cert)");
            let v = view(&done);
            print(out, &v, || text(&v))
        }
    }
}

/// Polls `ca status` until the rotation to `digest` has finished, saying how many members
/// have moved as that changes.
async fn wait_rotated(client: &Client, digest: &str, timeout: Duration) -> Result<CaStatusResponse, CliError> {
    let deadline = Instant::now() + timeout;
    let mut said = usize::MAX;
    loop {
        match client.send(CaStatusRequest {}).await {
            Ok(r) if r.digest != digest => {
                return Err(CliError::Failed(format!(
                    "the cluster's CA is now {}, not the {} this rotation made: another rotation \
                     followed it",
                    short(&r.digest),
                    short(digest)
                )))
            }
            Ok(r) if r.previous_digest.is_empty() => return Ok(r),
            Ok(r) => {
                let moved = r.members.iter().filter(|m| m.reachable && m.cert_ca == digest).count();
                if moved != said {
                    eprintln!("{moved}/{} members hold a certificate of the new CA", r.members.len());
                    said = moved;
                }
            }
            Err(e @ CliError::Credential(_)) => return Err(e),
            Err(e) => tracing::debug!(error = %e, "ca status; retrying"),
        }
        if Instant::now() >= deadline {
            return Err(CliError::Failed(format!(
                "the rotation has not finished within {timeout:?}: a member does not hold a \
                 certificate of the new CA yet (flotilla ca status shows which; a member that is \
                 gone for good must be removed with flotilla node remove)"
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
