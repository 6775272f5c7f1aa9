use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::lifecycle::UNTIL_TERM;
use super::wait;
use super::{Fixture, Scope};
use crate::Driver;

const IGNORES_TERM: &str = "trap '' TERM; echo ready; while :; do sleep 0.1; done";

/// A process that exits on SIGTERM is stopped well before a long grace period ends,
/// with its own exit code (0) and a finish time; stopping it again is Ok.
pub async fn stop_graceful(driver: Arc<dyn Driver>, fixture: &Fixture) {
    let scope = Scope::new(driver.clone(), "stop_graceful");
    scope
        .run(async {
            let id = scope.run_container(&fixture.spec("stop_graceful", UNTIL_TERM)).await;
            wait::log_line(&driver, &id, "ready").await;
            let grace = Duration::from_secs(30);
            let started = Instant::now();
            driver.stop(&id, grace).await.expect("stop");
            let took = started.elapsed();
            assert!(
                took < Duration::from_secs(15),
                "stop took {took:?}: a process that exits on SIGTERM must not wait out the grace"
            );
            assert_eq!(wait::exited(&driver, &id).await, 0, "exit code of the TERM trap");
            let status = wait::inspect(&driver, &id).await;
            assert!(status.finished_at_ms.is_some(), "an exited container has a finish time");
            assert_eq!(status.ip, None, "an exited container has no probe address");
            driver
                .stop(&id, grace)
                .await
                .expect("stop of a stopped container is Ok");
        })
        .await;
}

/// A process that ignores SIGTERM keeps running through the grace period and is then
/// killed: stop returns after roughly `grace`, and the exit code is 137 (SIGKILL).
pub async fn stop_escalates_to_kill(driver: Arc<dyn Driver>, fixture: &Fixture) {
    let scope = Scope::new(driver.clone(), "stop_escalates_to_kill");
    scope
        .run(async {
            let id = scope
                .run_container(&fixture.spec("stop_escalates_to_kill", IGNORES_TERM))
                .await;
            wait::log_line(&driver, &id, "ready").await;
            let grace = Duration::from_secs(2);
            let started = Instant::now();
            let stopper = tokio::spawn({
                let (driver, id) = (driver.clone(), id.clone());
                async move { driver.stop(&id, grace).await }
            });
            // Through the first half of the grace period SIGTERM must not have ended it.
            while started.elapsed() < grace / 2 {
                let status = wait::inspect(&driver, &id).await;
                assert!(
                    status.state.is_running(),
                    "gone {:?} into a {grace:?} grace period although it ignores SIGTERM: {:?}",
                    started.elapsed(),
                    status.state
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::timeout(grace + wait::WAIT, stopper)
                .await
                .expect("stop did not return after grace + margin")
                .expect("stop task")
                .expect("stop");
            let took = started.elapsed();
            assert!(
                took >= grace.mul_f32(0.75),
                "stop returned after {took:?}, before the {grace:?} grace period"
            );
            assert_eq!(wait::exited(&driver, &id).await, 137, "killed by SIGKILL");
        })
        .await;
}

/// The exit code of a process that exits by itself is kept, with start and finish times.
pub async fn exit_code(driver: Arc<dyn Driver>, fixture: &Fixture) {
    let scope = Scope::new(driver.clone(), "exit_code");
    scope
        .run(async {
            let id = scope
                .run_container(&fixture.spec("exit_code", "echo bye; exit 7"))
                .await;
            assert_eq!(wait::exited(&driver, &id).await, 7);
            let status = wait::inspect(&driver, &id).await;
            let started = status.started_at_ms.expect("start time");
            let finished = status.finished_at_ms.expect("finish time");
            assert!(finished >= started, "finished {finished} before started {started}");
        })
        .await;
}
