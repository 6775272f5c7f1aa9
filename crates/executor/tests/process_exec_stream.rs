//! The process driver's streamed exec (pipes and a pseudo-terminal, resized on request)
//! and its stats.

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_executor::{ContainerSpec, Driver, ExecChunk, ExecInput, ExecRequest, ExecSession, ProcessDriver};

const T: Duration = Duration::from_secs(20);

async fn running(dir: &tempfile::TempDir) -> (ProcessDriver, flotilla_executor::ContainerId) {
    let driver = ProcessDriver::new(dir.path().to_path_buf());
    let spec = ContainerSpec {
        name: format!("exec-{}", rand::random::<u32>()),
        command: vec!["sh".into(), "-c".into(), "exec sleep 600".into()],
        env: BTreeMap::from([("GREETING".to_string(), "hi".to_string())]),
        ..ContainerSpec::default()
    };
    let id = driver.create(&spec).await.expect("create");
    driver.start(&id).await.expect("start");
    (driver, id)
}

/// Everything the session writes, and its exit code.
async fn drain(mut session: ExecSession) -> (String, String, i64) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        let chunk = tokio::time::timeout(T, session.output.recv())
            .await
            .expect("output in time")
            .expect("an exit code before the end")
            .expect("no error");
        match chunk {
            ExecChunk::Stdout(b) => out.extend(b),
            ExecChunk::Stderr(b) => err.extend(b),
            ExecChunk::Exit(code) => {
                return (
                    String::from_utf8_lossy(&out).into_owned(),
                    String::from_utf8_lossy(&err).into_owned(),
                    code,
                )
            }
        }
    }
}

fn cmd(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

#[tokio::test]
async fn piped_exec_streams_stdin_stdout_stderr_and_the_exit_code() {
    let dir = tempfile::tempdir().expect("tmp");
    let (driver, id) = running(&dir).await;
    let req = ExecRequest {
        cmd: cmd("read a; echo got $a $GREETING; echo oops >&2; exit 7"),
        stdin: true,
        ..ExecRequest::default()
    };
    let session = driver.exec_stream(&id, &req).await.expect("exec");
    session
        .input
        .send(ExecInput::Stdin(b"x\n".to_vec()))
        .await
        .expect("send");
    session.input.send(ExecInput::CloseStdin).await.expect("send");
    let (out, err, code) = drain(session).await;
    assert_eq!((out.as_str(), err.as_str(), code), ("got x hi\n", "oops\n", 7));
    driver.remove(&id).await.expect("remove");
}

#[tokio::test]
async fn tty_exec_has_a_terminal_of_the_asked_size_and_follows_resizes() {
    let dir = tempfile::tempdir().expect("tmp");
    let (driver, id) = running(&dir).await;
    let req = ExecRequest {
        cmd: cmd("stty size; read a; stty size; exit 3"),
        tty: true,
        stdin: true,
        rows: 33,
        cols: 101,
    };
    let mut session = driver.exec_stream(&id, &req).await.expect("exec");
    // The first size shows before the resize is sent.
    let mut first = Vec::new();
    while !String::from_utf8_lossy(&first).contains("33 101") {
        match tokio::time::timeout(T, session.output.recv())
            .await
            .expect("output in time")
        {
            Some(Ok(ExecChunk::Stdout(b))) => first.extend(b),
            other => panic!("{other:?} before the size; got {:?}", String::from_utf8_lossy(&first)),
        }
    }
    session
        .input
        .send(ExecInput::Resize { rows: 40, cols: 120 })
        .await
        .expect("resize");
    session
        .input
        .send(ExecInput::Stdin(b"\n".to_vec()))
        .await
        .expect("send");
    let (out, err, code) = drain(session).await;
    assert_eq!(code, 3, "{out}");
    assert!(err.is_empty(), "a terminal has one stream: {err}");
    assert!(out.contains("40 120"), "{out}");
    driver.remove(&id).await.expect("remove");
}

#[tokio::test]
async fn dropping_the_output_kills_the_command() {
    let dir = tempfile::tempdir().expect("tmp");
    let (driver, id) = running(&dir).await;
    let marker = dir.path().join("pid");
    let req = ExecRequest {
        cmd: cmd(&format!("echo $$ > {}; exec sleep 600", marker.display())),
        ..ExecRequest::default()
    };
    let session = driver.exec_stream(&id, &req).await.expect("exec");
    let pid: i32 = flotilla_testkit::wait_until_async("the exec wrote its pid", T, || async {
        std::fs::read_to_string(&marker).ok()?.trim().parse().ok()
    })
    .await;
    drop(session);
    flotilla_testkit::wait_until_async("the exec is gone", T, || async {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        (stat.is_empty() || stat.contains(") Z")).then_some(())
    })
    .await;
    driver.remove(&id).await.expect("remove");
}

#[tokio::test]
async fn stats_of_a_running_process_and_none_of_a_stopped_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let (driver, id) = running(&dir).await;
    let stats = driver.stats(&id).await.expect("stats");
    assert!(stats.memory_bytes > 0, "{stats:?}");
    assert!(stats.cpu_percent >= 0.0, "{stats:?}");
    assert_eq!((stats.rx_bytes, stats.tx_bytes), (None, None));
    driver.stop(&id, Duration::from_secs(1)).await.expect("stop");
    assert!(driver.stats(&id).await.is_err());
    driver.remove(&id).await.expect("remove");
}
