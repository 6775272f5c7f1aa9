use std::sync::Arc;

use futures::StreamExt;

use super::wait::{self, texts};
use super::{Fixture, Scope};
use crate::{Driver, LogLine, LogOptions, LogStream, Logs};

/// stdout and stderr lines arrive on their own streams, in order, one item per line,
/// with the container's env applied; an unterminated last line still comes out.
pub async fn logs(driver: Arc<dyn Driver>, fixture: &Fixture) {
    let scope = Scope::new(driver.clone(), "logs");
    scope
        .run(async {
            let script = "echo out1; echo err1 >&2; echo out2; echo err2 >&2; \
                          echo \"env=$FLOTILLA_CONFORMANCE\"; printf no-newline";
            let id = scope.run_container(&fixture.spec("logs", script)).await;
            assert_eq!(wait::exited(&driver, &id).await, 0);
            let lines = wait::logs(&driver, &id, None).await;
            assert_eq!(
                texts(&lines, LogStream::Stdout),
                ["out1", "out2", "env=yes", "no-newline"]
            );
            assert_eq!(texts(&lines, LogStream::Stderr), ["err1", "err2"]);
        })
        .await;
}

/// `tail: Some(n)` returns the last n lines; more than exist returns all; 0 returns none.
pub async fn logs_tail(driver: Arc<dyn Driver>, fixture: &Fixture) {
    let scope = Scope::new(driver.clone(), "logs_tail");
    scope
        .run(async {
            let script = "for i in 1 2 3 4 5; do echo line$i; done";
            let id = scope.run_container(&fixture.spec("logs_tail", script)).await;
            assert_eq!(wait::exited(&driver, &id).await, 0);
            let all = ["line1", "line2", "line3", "line4", "line5"];
            let tail = |n| wait::logs(&driver, &id, Some(n));
            assert_eq!(texts(&tail(2).await, LogStream::Stdout), ["line4", "line5"]);
            assert_eq!(texts(&tail(10).await, LogStream::Stdout), all);
            assert_eq!(tail(0).await, Vec::<LogLine>::new());
            assert_eq!(texts(&wait::logs(&driver, &id, None).await, LogStream::Stdout), all);
        })
        .await;
}

/// `since_ms` drops what was written before it: lines from the past are kept, a time
/// after the last line leaves none. Lines that carry a time carry that of their writing.
pub async fn logs_since(driver: Arc<dyn Driver>, fixture: &Fixture) {
    let scope = Scope::new(driver.clone(), "logs_since");
    scope
        .run(async {
            let id = scope.run_container(&fixture.spec("logs_since", "echo old")).await;
            assert_eq!(wait::exited(&driver, &id).await, 0);
            let now = crate::now_ms();
            let since = |since_ms: u64| {
                let options = LogOptions {
                    since_ms: Some(since_ms),
                    ..LogOptions::default()
                };
                driver
                    .logs(&id, options)
                    .map(|l| l.expect("a line"))
                    .collect::<Vec<_>>()
            };
            let past = since(now - 600_000).await;
            assert_eq!(texts(&past, LogStream::Stdout), ["old"]);
            for line in &past {
                if let Some(at) = line.at_ms {
                    assert!(
                        at > now - 600_000 && at <= now + 1_000,
                        "[{}] line time {at}, now {now}",
                        driver.name()
                    );
                }
            }
            assert_eq!(since(now + 60_000).await, Vec::<LogLine>::new());
        })
        .await;
}

/// `follow` replays what exists, then delivers lines written after it started (the
/// script only goes on once the case lets it), and ends once the container has exited.
pub async fn logs_follow(driver: Arc<dyn Driver>, fixture: &Fixture) {
    let scope = Scope::new(driver.clone(), "logs_follow");
    scope
        .run(async {
            // Same path inside a container and on the host; the script removes it.
            let flag = format!("/tmp/flotilla-conformance-{}-follow", fixture.run_id);
            let script = format!(
                "echo before; while [ ! -e {flag} ]; do sleep 0.1; done; rm -f {flag}; \
                 echo after; echo after-err >&2"
            );
            let id = scope.run_container(&fixture.spec("logs_follow", &script)).await;
            wait::log_line(&driver, &id, "before").await;

            let options = LogOptions {
                follow: true,
                ..LogOptions::default()
            };
            let mut stream = driver.logs(&id, options);
            let first = next(&mut stream).await.expect("follow ended before replaying");
            assert_eq!(first.text, "before");

            let touched = driver
                .exec(&id, &fixture.sh(&format!("touch {flag}")), wait::WAIT)
                .await
                .expect("exec touch");
            assert_eq!(touched.exit_code, 0, "touch {flag}: {}", touched.output);

            let mut rest = Vec::new();
            while let Some(line) = next(&mut stream).await {
                rest.push(line);
            }
            assert_eq!(texts(&rest, LogStream::Stdout), ["after"]);
            assert_eq!(texts(&rest, LogStream::Stderr), ["after-err"]);
        })
        .await;
}

/// The next line, `None` at the end; panics if nothing happens within the wait.
async fn next(stream: &mut Logs) -> Option<LogLine> {
    match tokio::time::timeout(wait::WAIT, stream.next()).await {
        Ok(Some(Ok(line))) => Some(line),
        Ok(Some(Err(e))) => panic!("follow: {e}"),
        Ok(None) => None,
        Err(_) => panic!("follow: no line and no end within {:?}", wait::WAIT),
    }
}
