use std::sync::Arc;

use super::wait;
use super::{Fixture, Scope};
use crate::{ContainerState, Driver, DriverError};

/// Runs until SIGTERM, then exits 0. "ready" tells the case the trap is in place.
pub(crate) const UNTIL_TERM: &str = "trap 'exit 0' TERM; echo ready; while :; do sleep 0.1; done";

/// create → Created (name, labels, no start time, no ip); start → Running with a start
/// time and an ip; a second start is a no-op; list by the case's labels finds exactly it.
pub async fn create_start_inspect(driver: Arc<dyn Driver>, fixture: &Fixture) {
    let scope = Scope::new(driver.clone(), "create_start_inspect");
    scope
        .run(async {
            let spec = fixture.spec("create_start_inspect", UNTIL_TERM);
            let id = scope.create(&spec).await;
            let created = wait::inspect(&driver, &id).await;
            assert_eq!(created.id, id);
            assert_eq!(created.name, spec.name);
            assert_eq!(created.state, ContainerState::Created);
            for (key, value) in &spec.labels {
                assert_eq!(created.labels.get(key), Some(value), "label {key} on {id}");
            }
            assert_eq!(created.started_at_ms, None, "never started: no start time");
            assert_eq!(created.ip, None, "not running: no ip");

            driver.start(&id).await.expect("start");
            let running = wait::running(&driver, &id).await;
            assert!(running.started_at_ms.is_some(), "a running container has a start time");
            assert!(running.ip.is_some(), "a running container has a probe address");

            driver
                .start(&id)
                .await
                .expect("start of a running container is a no-op");
            assert!(wait::inspect(&driver, &id).await.state.is_running());

            let listed = driver.list(&spec.labels).await.expect("list");
            assert_eq!(listed.len(), 1, "list by this case's labels: {listed:?}");
            assert_eq!(listed[0].id, id);
            assert!(listed[0].state.is_running());
        })
        .await;
}

/// A second container with a taken name fails with `AlreadyExists`: this is what stops
/// the executor from ever running two containers for one task.
pub async fn duplicate_name(driver: Arc<dyn Driver>, fixture: &Fixture) {
    let scope = Scope::new(driver.clone(), "duplicate_name");
    scope
        .run(async {
            let spec = fixture.spec("duplicate_name", "exit 0");
            scope.create(&spec).await;
            match driver.create(&spec).await {
                Err(DriverError::AlreadyExists { name }) => assert_eq!(name, spec.name),
                Err(e) => panic!("duplicate name: expected AlreadyExists, got {e:?}"),
                Ok(id) => {
                    scope.track(id.clone());
                    panic!("duplicate name {} was accepted as {id}", spec.name);
                }
            }
        })
        .await;
}
