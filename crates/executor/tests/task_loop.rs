//! The node-side task loop against the real process driver: steps, reports re-sent until
//! acknowledged, adoption without duplicates, orphans removed, stops.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use flotilla_executor::task_loop::{DesiredSource, Executor, ExecutorConfig, ReportError, Reporter};
use flotilla_executor::{ContainerState, Driver, ProcessDriver, LABEL_CLUSTER, LABEL_TASK};
use flotilla_testkit::faulty::{FaultyDriver, Refusal};
use flotilla_testkit::wait_until_async;
use flotilla_types::{DesiredState, ServiceSpec, Task, TaskReport, TaskState};

#[derive(Default)]
struct Source(Mutex<Vec<(Task, Option<ServiceSpec>)>>);

impl DesiredSource for Source {
    fn assignments(&self) -> Vec<(Task, Option<ServiceSpec>)> {
        self.0.lock().unwrap().clone()
    }
}

#[derive(Default)]
struct Leader {
    delivered: Mutex<Vec<TaskReport>>,
    down: Mutex<bool>,
}

#[async_trait]
impl Reporter for Leader {
    async fn report(&self, reports: Vec<TaskReport>) -> Result<(), ReportError> {
        if *self.down.lock().unwrap() {
            return Err(ReportError::Unreachable("down".into()));
        }
        self.delivered.lock().unwrap().extend(reports);
        Ok(())
    }
}

fn spec() -> ServiceSpec {
    ServiceSpec::parse("name: web\nimage: none\ncommand: [\"sleep\", \"30\"]\nstop_grace: 1s\n").unwrap()
}

fn task(id: &str) -> Task {
    Task {
        id: id.into(),
        service: "web".into(),
        slot: 0,
        seq: 1,
        spec_version: 1,
        node: Some(1),
        desired: DesiredState::Running,
        state: TaskState::Assigned,
        cpu_millis: 100,
        memory_mb: 64,
        stop_grace_ms: 1000,
        state_since: 0,
        attempt: 0,
        stop_reason: None,
        container_id: None,
        address: None,
        exit_code: None,
        message: String::new(),
        created_at: 0,
        updated_at: 0,
        rebalanced_from: None,
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    driver: Arc<dyn Driver>,
    source: Arc<Source>,
    leader: Arc<Leader>,
    cluster: String,
}

impl Rig {
    fn new() -> Rig {
        Rig::with_driver(|process| process)
    }

    /// A rig whose driver is `wrap` around the process driver.
    fn with_driver(wrap: impl FnOnce(Arc<dyn Driver>) -> Arc<dyn Driver>) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let driver = wrap(Arc::new(ProcessDriver::new(dir.path().join("process"))));
        Rig {
            _dir: dir,
            driver,
            source: Arc::default(),
            leader: Arc::default(),
            cluster: format!("loop{}", std::process::id()),
        }
    }

    fn executor(&self) -> Executor {
        Executor::new(
            self.driver.clone(),
            self.source.clone(),
            self.leader.clone(),
            ExecutorConfig {
                cluster: self.cluster.clone(),
                node: 1,
                interval: Duration::from_millis(100),
                keep_completed: flotilla_executor::task_loop::KEEP_COMPLETED,
            },
        )
    }

    fn set(&self, tasks: Vec<Task>) {
        self.set_with(tasks, spec());
    }

    fn set_with(&self, tasks: Vec<Task>, spec: ServiceSpec) {
        *self.source.0.lock().unwrap() = tasks.into_iter().map(|t| (t, Some(spec.clone()))).collect();
    }

    fn reports(&self) -> Vec<TaskReport> {
        self.leader.delivered.lock().unwrap().clone()
    }

    async fn containers(&self) -> Vec<flotilla_executor::ContainerStatus> {
        let labels = BTreeMap::from([(LABEL_CLUSTER.to_string(), self.cluster.clone())]);
        self.driver.list(&labels).await.unwrap()
    }

    fn delivered(&self) -> Vec<(String, TaskState)> {
        self.leader
            .delivered
            .lock()
            .unwrap()
            .iter()
            .map(|r| (r.task.clone(), r.state))
            .collect()
    }
}

#[tokio::test]
async fn starts_reports_and_resends_until_acknowledged() {
    let rig = Rig::new();
    let mut ex = rig.executor();
    assert!(ex.adopt().await);
    rig.set(vec![task("web.0.1")]);
    *rig.leader.down.lock().unwrap() = true;
    ex.pass().await;
    ex.flush().await;
    assert!(
        rig.delivered().is_empty(),
        "nothing can be delivered while the leader is down"
    );
    let running = rig.containers().await;
    assert_eq!(running.len(), 1);
    assert!(running[0].labels.get(LABEL_TASK).is_some_and(|t| t == "web.0.1"));

    // The leader is back: the newest state of the task is delivered once.
    *rig.leader.down.lock().unwrap() = false;
    ex.flush().await;
    assert_eq!(rig.delivered(), vec![("web.0.1".into(), TaskState::Running)]);
    ex.pass().await;
    ex.flush().await;
    assert_eq!(rig.delivered().len(), 1, "an acknowledged report is not sent again");

    // Asked to stop: stopped and removed, then reported.
    let mut t = task("web.0.1");
    t.state = TaskState::Running;
    t.desired = DesiredState::Shutdown;
    rig.set(vec![t]);
    wait_until_async("the stop to be reported", Duration::from_secs(15), async || {
        ex.pass().await;
        ex.flush().await;
        rig.delivered()
            .contains(&("web.0.1".into(), TaskState::Stopped))
            .then_some(())
    })
    .await;
    assert!(rig.containers().await.is_empty());
}

#[tokio::test]
async fn a_new_executor_adopts_what_runs_and_removes_what_is_not_wanted() {
    let rig = Rig::new();
    let mut first = rig.executor();
    first.adopt().await;
    rig.set(vec![task("web.0.1"), task("web.1.2")]);
    first.pass().await;
    let before = rig.containers().await;
    assert_eq!(before.len(), 2);
    drop(first); // the agent dies; its workloads keep running

    // Restarted: web.0.1 is still wanted, web.1.2 no longer is.
    let mut t = task("web.0.1");
    t.state = TaskState::Running;
    rig.set(vec![t]);
    let mut second = rig.executor();
    assert!(second.adopt().await);
    second.pass().await;
    let after = wait_until_async("the unwanted container to go", Duration::from_secs(15), async || {
        let c = rig.containers().await;
        (c.len() == 1).then_some(c)
    })
    .await;
    let kept = before.iter().find(|c| c.labels[LABEL_TASK] == "web.0.1").unwrap();
    assert_eq!(
        after[0].id, kept.id,
        "the running workload was adopted, not started again"
    );
    assert!(matches!(after[0].state, ContainerState::Running));
    // A second pass never creates a duplicate.
    second.pass().await;
    assert_eq!(rig.containers().await.len(), 1);
    for c in rig.containers().await {
        rig.driver.remove(&c.id).await.unwrap();
    }
}

#[tokio::test]
async fn a_start_the_engine_refuses_fails_the_task_with_the_engine_s_words() {
    let faulty = Arc::new(std::sync::OnceLock::new());
    let rig = Rig::with_driver(|process| {
        let d = Arc::new(FaultyDriver::new(process));
        faulty.set(d.clone()).ok();
        d
    });
    let refused =
        "driver failed programming external connectivity: Bind for 127.0.0.1:18080 failed: port is already allocated";
    faulty.get().unwrap().refuse_starts(Some(Refusal {
        status: 500,
        message: refused.into(),
    }));
    let mut ex = rig.executor();
    assert!(ex.adopt().await);
    rig.set(vec![task("web.0.1")]);
    ex.pass().await;
    ex.flush().await;
    let failed: Vec<TaskReport> = rig
        .reports()
        .into_iter()
        .filter(|r| r.state == TaskState::Failed)
        .collect();
    assert_eq!(failed.len(), 1, "one failure, reported once: {:?}", rig.reports());
    assert!(failed[0].message.starts_with("start failed: "), "{}", failed[0].message);
    assert!(failed[0].message.contains(refused), "{}", failed[0].message);

    // The leader has it as failed: no second report, no second container.
    let mut t = task("web.0.1");
    t.state = TaskState::Failed;
    rig.set(vec![t]);
    ex.pass().await;
    ex.flush().await;
    assert_eq!(rig.reports().iter().filter(|r| r.state == TaskState::Failed).count(), 1);
    assert_eq!(rig.containers().await.len(), 1);
    for c in rig.containers().await {
        rig.driver.remove(&c.id).await.unwrap();
    }
}

#[tokio::test]
async fn a_completed_task_keeps_its_container_for_a_while_then_it_goes() {
    let rig = Rig::new();
    let once =
        ServiceSpec::parse("name: web\nimage: none\ncommand: [\"true\"]\nrestart: {condition: never}\n").unwrap();
    let mut ex = rig.executor();
    assert!(ex.adopt().await);
    rig.set_with(vec![task("web.0.1")], once.clone());
    ex.pass().await;
    wait_until_async("the task to run and exit", Duration::from_secs(10), async || {
        let c = rig.containers().await;
        (c.len() == 1 && matches!(c[0].state, ContainerState::Exited { code: 0 })).then_some(())
    })
    .await;

    // The leader marked it completed just now: the container stays, for `logs`.
    let mut t = task("web.0.1");
    t.state = TaskState::Exited;
    t.exit_code = Some(0);
    t.desired = DesiredState::Shutdown;
    t.stop_reason = Some(flotilla_types::StopReason::Completed);
    t.state_since = flotilla_executor::now_ms();
    rig.set_with(vec![t.clone()], once.clone());
    ex.pass().await;
    ex.flush().await;
    assert_eq!(rig.containers().await.len(), 1, "kept for keep_completed");

    // Completed longer ago than keep_completed: removed, and nothing is reported.
    t.state_since -= flotilla_executor::task_loop::KEEP_COMPLETED.as_millis() as u64 + 1;
    rig.set_with(vec![t], once);
    let before = rig.reports().len();
    ex.pass().await;
    ex.flush().await;
    assert!(rig.containers().await.is_empty());
    assert_eq!(rig.reports().len(), before, "a completed task stays completed");
}
