//! The engine's inspect answer as a `ContainerStatus`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::UNIX_EPOCH;

use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};
use flotilla_executor::{ContainerId, ContainerState, ContainerStatus, DriverError};

pub(crate) fn from_inspect(info: ContainerInspectResponse) -> Result<ContainerStatus, DriverError> {
    let id = info
        .id
        .ok_or_else(|| DriverError::Other("inspect answer without an id".into()))?;
    let engine_state = info.state.unwrap_or_default();
    let state = match engine_state.status {
        Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
        Some(ContainerStateStatusEnum::RUNNING) => ContainerState::Running,
        Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD) => ContainerState::Exited {
            code: engine_state.exit_code.unwrap_or(-1),
        },
        Some(other) => ContainerState::Unknown(other.to_string()),
        None => ContainerState::Unknown(String::new()),
    };
    let ip = if state.is_running() {
        // Sorted by network name so a container on several networks always reports the
        // same address.
        let networks: BTreeMap<_, _> = info
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_iter()
            .collect();
        networks
            .into_values()
            .filter_map(|endpoint| endpoint.ip_address?.parse::<IpAddr>().ok())
            .next()
    } else {
        None
    };
    let started_at_ms = engine_state.started_at.as_deref().and_then(unix_ms);
    // The engine stamps start and exit from different events; a container that exits at
    // once can read as finished a millisecond before it started. Keep the order sane.
    let finished_at_ms = engine_state
        .finished_at
        .as_deref()
        .and_then(unix_ms)
        .map(|finished| finished.max(started_at_ms.unwrap_or(0)));
    Ok(ContainerStatus {
        id: ContainerId(id),
        // The engine reports names with a leading '/'.
        name: info.name.unwrap_or_default().trim_start_matches('/').to_string(),
        labels: info
            .config
            .and_then(|c| c.labels)
            .unwrap_or_default()
            .into_iter()
            .collect(),
        state,
        started_at_ms,
        finished_at_ms,
        ip,
    })
}

/// RFC 3339 (as the engine writes it, UTC with nanoseconds) to Unix milliseconds. The
/// engine's "never" is year 1 ("0001-01-01T00:00:00Z"), which this maps to `None`.
fn unix_ms(time: &str) -> Option<u64> {
    let at = humantime::parse_rfc3339(time).ok()?;
    let ms = at.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64;
    (ms > 0).then_some(ms)
}

#[cfg(test)]
mod tests {
    use bollard::models::{ContainerState as EngineState, EndpointSettings, NetworkSettings};

    use super::*;

    #[test]
    fn engine_times_become_unix_millis_and_year_one_is_never() {
        assert_eq!(unix_ms("2024-01-02T03:04:05.678901234Z"), Some(1_704_164_645_678));
        assert_eq!(unix_ms("0001-01-01T00:00:00Z"), None);
        assert_eq!(unix_ms(""), None);
    }

    #[test]
    fn a_running_container_reports_its_network_address() {
        let info = ContainerInspectResponse {
            id: Some("abc".into()),
            name: Some("/web".into()),
            state: Some(EngineState {
                status: Some(ContainerStateStatusEnum::RUNNING),
                started_at: Some("2024-01-02T03:04:05Z".into()),
                finished_at: Some("0001-01-01T00:00:00Z".into()),
                ..EngineState::default()
            }),
            network_settings: Some(NetworkSettings {
                networks: Some(
                    [(
                        "bridge".to_string(),
                        EndpointSettings {
                            ip_address: Some("172.17.0.5".into()),
                            ..EndpointSettings::default()
                        },
                    )]
                    .into(),
                ),
                ..NetworkSettings::default()
            }),
            ..ContainerInspectResponse::default()
        };
        let status = from_inspect(info).unwrap();
        assert_eq!(status.name, "web");
        assert_eq!(status.state, ContainerState::Running);
        assert_eq!(status.ip, Some("172.17.0.5".parse().unwrap()));
        assert_eq!(status.started_at_ms, Some(1_704_164_645_000));
        assert_eq!(status.finished_at_ms, None);
    }

    #[test]
    fn an_instant_exit_never_finishes_before_it_started() {
        let info = ContainerInspectResponse {
            id: Some("abc".into()),
            state: Some(EngineState {
                status: Some(ContainerStateStatusEnum::EXITED),
                started_at: Some("2024-01-02T03:04:05.008Z".into()),
                finished_at: Some("2024-01-02T03:04:05.007Z".into()),
                ..EngineState::default()
            }),
            ..ContainerInspectResponse::default()
        };
        let status = from_inspect(info).unwrap();
        assert_eq!(status.finished_at_ms, status.started_at_ms);
    }

    #[test]
    fn exited_and_unfamiliar_states() {
        let with = |status, code| ContainerInspectResponse {
            id: Some("abc".into()),
            state: Some(EngineState {
                status: Some(status),
                exit_code: Some(code),
                ..EngineState::default()
            }),
            ..ContainerInspectResponse::default()
        };
        let state = |info| from_inspect(info).unwrap().state;
        assert_eq!(
            state(with(ContainerStateStatusEnum::EXITED, 137)),
            ContainerState::Exited { code: 137 }
        );
        assert_eq!(
            state(with(ContainerStateStatusEnum::PAUSED, 0)),
            ContainerState::Unknown("paused".into())
        );
    }
}
