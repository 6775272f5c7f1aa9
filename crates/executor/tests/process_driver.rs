//! The driver conformance suite against the process driver, plus what only the process
//! driver has: records that outlive the driver (an agent restart) and the
//! command-is-required rule.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flotilla_executor::conformance::{Fixture, Scope};
use flotilla_executor::{ContainerSpec, ContainerState, Driver, DriverError, ProcessDriver};
use flotilla_testkit::wait_until_async;
use futures::StreamExt;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Scripts need busybox's applets (httpd) whatever the host has, so the suite runs them
/// in busybox's shell.
const BUSYBOX: &str = "/bin/busybox";

fn fixture() -> Fixture {
    assert!(
        std::path::Path::new(BUSYBOX).exists(),
        "{BUSYBOX} missing: install busybox-static (`make deps`)"
    );
    Fixture::new("none", vec![BUSYBOX.into(), "sh".into(), "-c".into()])
}

/// Each test gets its own state dir; the cases remove their containers, so it ends empty.
fn state_dir(fixture: &Fixture) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("process-driver")
        .join(&fixture.run_id)
}

async fn setup() -> Option<(Arc<dyn Driver>, Fixture)> {
    let fixture = fixture();
    let driver = Arc::new(ProcessDriver::new(state_dir(&fixture)));
    Some((driver, fixture))
}

flotilla_executor::driver_conformance_tests!(setup);

#[tokio::test]
async fn a_command_is_required() {
    let fixture = fixture();
    let driver = ProcessDriver::new(state_dir(&fixture));
    let spec = ContainerSpec {
        command: vec![],
        args: vec![],
        ..fixture.spec("no_command", "unused")
    };
    match driver.create(&spec).await {
        Err(DriverError::InvalidSpec(_)) => {}
        other => panic!("expected InvalidSpec, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_program_is_an_invalid_spec() {
    let fixture = fixture();
    let driver: Arc<dyn Driver> = Arc::new(ProcessDriver::new(state_dir(&fixture)));
    let scope = Scope::new(driver.clone(), "missing_program");
    scope
        .run(async {
            let spec = ContainerSpec {
                command: vec!["/nonexistent/flotilla-program".into()],
                args: vec![],
                ..fixture.spec("missing_program", "unused")
            };
            let id = scope.create(&spec).await;
            match driver.start(&id).await {
                Err(DriverError::InvalidSpec(_)) => {}
                other => panic!("expected InvalidSpec, got {other:?}"),
            }
        })
        .await;
}

/// A new driver on the same state dir sees what the old one left: a process still
/// running, a known exit code, a never-started record; and a process that died while
/// no driver watched it reads as `Exited { code: -1 }`.
#[test]
fn records_survive_a_driver_restart() {
    let fixture = fixture();
    let dir = state_dir(&fixture);
    let labels = fixture.case_labels("restart");
    let spec = |name: &str, script: &str| ContainerSpec {
        labels: labels.clone(),
        ..fixture.spec(name, script)
    };

    // The first "agent": its runtime, and with it the task waiting on the child, ends.
    let first = tokio::runtime::Runtime::new().unwrap();
    let (running, exited, created) = first.block_on(async {
        let driver = ProcessDriver::new(dir.clone());
        let running = driver
            .create(&spec("restart-running", "echo $$; while :; do sleep 0.1; done"))
            .await
            .unwrap();
        driver.start(&running).await.unwrap();
        let exited = driver.create(&spec("restart-exited", "exit 5")).await.unwrap();
        driver.start(&exited).await.unwrap();
        let created = driver.create(&spec("restart-created", "true")).await.unwrap();
        wait_state(&driver, &exited, |s| *s == ContainerState::Exited { code: 5 }).await;
        (running, exited, created)
    });
    first.shutdown_timeout(Duration::from_secs(5));

    let second = tokio::runtime::Runtime::new().unwrap();
    second.block_on(async {
        let driver = ProcessDriver::new(dir.clone());
        let states: BTreeMap<_, _> = driver
            .list(&labels)
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.id, s.state))
            .collect();
        assert_eq!(states.len(), 3, "{states:?}");
        assert_eq!(states[&running], ContainerState::Running);
        assert_eq!(states[&exited], ContainerState::Exited { code: 5 });
        assert_eq!(states[&created], ContainerState::Created);

        // Kill it behind every driver's back: its exit code is lost.
        let pid: i32 = first_stdout_line(&driver, &running).await.parse().unwrap();
        // Never through kill(1): some versions take "-PGID" for "every process".
        assert!(pid > 1, "pid {pid}");
        killpg(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        wait_state(&driver, &running, |s| *s == ContainerState::Exited { code: -1 }).await;

        for id in [&running, &exited, &created] {
            driver.remove(id).await.unwrap();
        }
        assert!(driver.list(&labels).await.unwrap().is_empty());
    });
}

async fn wait_state(
    driver: &ProcessDriver,
    id: &flotilla_executor::ContainerId,
    matches: impl Fn(&ContainerState) -> bool,
) {
    wait_until_async(
        &format!("{id} to reach the expected state"),
        Duration::from_secs(30),
        async || matches(&driver.inspect(id).await.unwrap().state).then_some(()),
    )
    .await
}

async fn first_stdout_line(driver: &ProcessDriver, id: &flotilla_executor::ContainerId) -> String {
    wait_until_async(
        &format!("output from {id}"),
        Duration::from_secs(30),
        async || match driver.logs(id, Default::default()).next().await {
            Some(Ok(line)) => Some(line.text),
            _ => None,
        },
    )
    .await
}

/// A chatty process's log is rotated at the size, only the count is kept, and `logs`
/// goes on reading the current file after a rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_rotated_at_the_size_and_only_the_count_is_kept() {
    let fixture = fixture();
    let dir = state_dir(&fixture);
    let rotation = flotilla_executor::LogRotation {
        max_size: 8 * 1024,
        max_files: 3,
    };
    let driver = Arc::new(ProcessDriver::new(dir.clone()).with_log_rotation(rotation));
    let as_driver: Arc<dyn Driver> = driver.clone();
    let scope = Scope::new(as_driver, "rotation");
    scope
        .run(async {
            // About 100 bytes a line, a line a millisecond: 8 KiB in well under a second.
            let pad = "x".repeat(90);
            let spec = fixture.spec(
                "rotation",
                &format!("i=0; while :; do echo \"line $i {pad}\"; i=$((i+1)); usleep 1000; done"),
            );
            let id = scope.create(&spec).await;
            driver.start(&id).await.unwrap();
            let log = dir.join(id.as_str()).join("stdout.log");
            let numbered = |n: u32| dir.join(id.as_str()).join(format!("stdout.log.{n}"));
            // Two rotations at least: .1 and .2 exist.
            wait_until_async("two rotations", Duration::from_secs(30), async || {
                numbered(2).exists().then_some(())
            })
            .await;
            assert!(!numbered(3).exists(), "only 3 files are kept");
            let rotated = std::fs::metadata(numbered(1)).unwrap().len();
            assert!(rotated >= rotation.max_size, "rotated at {rotated} bytes");
            // Checked once a second: at most about a second of output past the size.
            assert!(rotated < rotation.max_size + 256 * 1024, "rotated at {rotated} bytes");
            // The current file starts where the last copy ended.
            let last_rotated = std::fs::read_to_string(numbered(1)).unwrap();
            let number = |line: &str| -> u64 { line.split_whitespace().nth(1).unwrap().parse().unwrap() };
            let last = number(last_rotated.lines().last().unwrap());
            let lines: Vec<String> = driver
                .logs(&id, Default::default())
                .take(5)
                .map(|l| l.unwrap().text)
                .collect()
                .await;
            assert!(!lines.is_empty());
            assert!(
                number(&lines[0]) > last,
                "logs read the current file: {:?} after line {last}",
                lines[0]
            );
            // After two more rotations still only three files.
            let before = std::fs::read_to_string(numbered(2)).unwrap();
            wait_until_async("two more rotations", Duration::from_secs(30), async || {
                let now = std::fs::read_to_string(numbered(2)).unwrap_or_default();
                (now != before && !now.is_empty()).then_some(())
            })
            .await;
            assert!(log.exists() && !numbered(3).exists());
        })
        .await;
}
