use std::sync::Arc;

use futures::StreamExt;

use super::lifecycle::UNTIL_TERM;
use super::wait;
use super::{Fixture, Scope};
use crate::{Driver, DriverError, LogOptions};

/// remove kills a running container and forgets it: inspect, start, stop and logs then
/// fail with `NotFound`, list no longer shows it, and a second remove is Ok. Removing a
/// container that never started works too.
pub async fn remove_idempotent(driver: Arc<dyn Driver>, fixture: &Fixture) {
    let scope = Scope::new(driver.clone(), "remove_idempotent");
    scope
        .run(async {
            let spec = fixture.spec("remove_idempotent", UNTIL_TERM);
            let id = scope.run_container(&spec).await;
            wait::running(&driver, &id).await;

            driver.remove(&id).await.expect("remove of a running container");
            let not_found = |what: &str, result: Result<(), DriverError>| match result {
                Err(DriverError::NotFound { .. }) => {}
                other => panic!("{what} after remove: expected NotFound, got {other:?}"),
            };
            not_found("inspect", driver.inspect(&id).await.map(drop));
            not_found("start", driver.start(&id).await);
            not_found("stop", driver.stop(&id, wait::WAIT).await);
            let first_log = driver.logs(&id, LogOptions::default()).next().await;
            not_found("logs", first_log.expect("logs of a removed container").map(drop));
            let listed = driver.list(&spec.labels).await.expect("list");
            assert!(listed.is_empty(), "removed container still listed: {listed:?}");
            driver.remove(&id).await.expect("second remove is Ok");

            let never_started = scope.create(&spec).await;
            driver
                .remove(&never_started)
                .await
                .expect("remove of a created container");
            not_found("inspect", driver.inspect(&never_started).await.map(drop));
        })
        .await;
}
