//! Exit codes that tell an operator what went wrong: 4 for something that does not exist.

use std::time::Duration;

use flotilla_testkit::Cluster;
use flotilla_tests::{ok, spec, stderr};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_undo_to_a_version_not_in_the_history_exits_4() {
    let cluster = Cluster::builder(1).driver("process").start();
    cluster.wait_for_leader(T).await;
    let addrs = cluster.addrs();
    let file = cluster.write_file("web.yaml", &spec("web", 0));
    ok(cluster.cli_at(&addrs, &["apply", "-f", file.to_str().expect("utf-8")]));
    let o = cluster.cli_at(&addrs, &["rollout", "undo", "web", "--to-version", "7"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("version 7 is not in the history (kept: 1)"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_verify_with_a_node_down_says_unreachable_not_divergent_and_exits_3() {
    let mut cluster = Cluster::builder(3).driver("process").start();
    let leader = cluster.wait_for_leader(T).await;
    let down = cluster.ids().into_iter().find(|i| *i != leader).expect("a follower");
    cluster.kill(down);
    let o = cluster.cli_at(&cluster.live_addrs(), &["cluster", "verify"]);
    assert_eq!(o.status.code(), Some(3), "{}{}", flotilla_tests::stdout(&o), stderr(&o));
    let text = flotilla_tests::stdout(&o);
    assert!(
        text.contains(&format!("node(s) {down} did not answer (unreachable)")),
        "{text}"
    );
    assert!(!text.contains("do NOT agree"), "{text}");
}
