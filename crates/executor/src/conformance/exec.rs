use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::lifecycle::UNTIL_TERM;
use super::wait;
use super::{Fixture, Scope};
use crate::{ContainerId, Driver, DriverError};

/// exec returns the command's exit code and its stdout+stderr, sees the container's env,
/// fails with `Timeout` (promptly) when the command outlives its timeout, with
/// `NotFound` for an unknown container and `NotRunning` for a stopped one.
pub async fn exec(driver: Arc<dyn Driver>, fixture: &Fixture) {
    let scope = Scope::new(driver.clone(), "exec");
    scope
        .run(async {
            let id = scope.run_container(&fixture.spec("exec", UNTIL_TERM)).await;
            wait::log_line(&driver, &id, "ready").await;

            let script = "echo hello; echo oops >&2; echo \"env=$FLOTILLA_CONFORMANCE\"; exit 3";
            let out = driver.exec(&id, &fixture.sh(script), wait::WAIT).await.expect("exec");
            assert_eq!(out.exit_code, 3, "output: {}", out.output);
            for expected in ["hello", "oops", "env=yes"] {
                assert!(out.output.contains(expected), "{expected:?} not in {:?}", out.output);
            }
            let ok = driver.exec(&id, &fixture.sh("true"), wait::WAIT).await;
            assert_eq!(ok.expect("exec true").exit_code, 0);

            let timeout = Duration::from_millis(500);
            let started = Instant::now();
            match driver.exec(&id, &fixture.sh("sleep 30"), timeout).await {
                Err(DriverError::Timeout { .. }) => {}
                other => panic!("exec past its timeout: expected Timeout, got {other:?}"),
            }
            let took = started.elapsed();
            assert!(took < Duration::from_secs(10), "timed-out exec returned after {took:?}");

            let unknown = ContainerId("0123456789abcdef0123456789abcdef".into());
            match driver.exec(&unknown, &fixture.sh("true"), wait::WAIT).await {
                Err(DriverError::NotFound { .. }) => {}
                other => panic!("exec in an unknown container: expected NotFound, got {other:?}"),
            }

            driver.stop(&id, wait::WAIT).await.expect("stop");
            match driver.exec(&id, &fixture.sh("true"), wait::WAIT).await {
                Err(DriverError::NotRunning { .. }) => {}
                other => panic!("exec in a stopped container: expected NotRunning, got {other:?}"),
            }
        })
        .await;
}
