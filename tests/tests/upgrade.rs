//! Upgrades are real: a data dir and a `snapshot save` file written by an earlier main
//! (the fixtures under `tests/fixtures/upgrade/<commit>/`, made by its `make.sh` with that
//! commit's binary) open with this binary, show the same state, and take writes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flotilla_testkit::{wait_until_async, Cluster};
use flotilla_tests::{json, ok};

const T: Duration = Duration::from_secs(60);

/// Every fixture: the commit whose binary wrote it.
fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/upgrade");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/fixtures/upgrade")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no upgrade fixture under {}", root.display());
    dirs
}

/// Service name -> version, as `get services -o json` lists them.
fn versions(list: &serde_json::Value) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = list
        .as_array()
        .expect("a list of services")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().expect("name").to_string(),
                s["version"].as_u64().expect("version"),
            )
        })
        .collect();
    v.sort();
    v
}

fn expected(fixture: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture.join("services.json")).expect("services.json")).expect("json")
}

/// Replaces agent 1's data dir with the fixture's (the agent must be stopped).
fn unpack(cluster: &Cluster, fixture: &Path) {
    let node_dir = cluster.agent(1).data_dir.parent().expect("node dir").to_path_buf();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(fixture.join("data.tar.gz"))
        .arg("-C")
        .arg(&node_dir)
        .status()
        .expect("tar");
    assert!(status.success(), "unpacking {}", fixture.display());
}

async fn wait_services(cluster: &Cluster, addrs: &str, want: &[(String, u64)]) {
    wait_until_async("the fixture's services", T, || async {
        let o = cluster.cli_at(addrs, &["get", "services", "-o", "json"]);
        let list: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        (o.status.success() && versions(&list) == want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_the_previous_main_opens_and_takes_writes() {
    for fixture in fixtures() {
        let mut cluster = Cluster::builder(1).driver("process").start();
        cluster.wait_for_leader(T).await;
        cluster.kill(1);
        cluster.wipe(1);
        unpack(&cluster, &fixture);
        cluster.start_agent(1);
        let addrs = cluster.addrs();
        let want = versions(&expected(&fixture));
        wait_services(&cluster, &addrs, &want).await;

        // Its history came along: web was created, updated (a second template) and scaled.
        let history = json(cluster.cli_at(&addrs, &["rollout", "history", "web", "-o", "json"]));
        let templates: std::collections::BTreeSet<u64> = history
            .as_array()
            .expect("revisions")
            .iter()
            .map(|r| r["template_version"].as_u64().expect("template_version"))
            .collect();
        assert_eq!(templates.len(), 2, "{history}");

        // It takes writes, and the replica agrees with itself.
        let api = want.iter().find(|(n, _)| n == "api").expect("api").1;
        ok(cluster.cli_at(&addrs, &["scale", "api", "1"]));
        let after = versions(&json(cluster.cli_at(&addrs, &["get", "services", "-o", "json"])));
        assert!(after.contains(&("api".to_string(), api + 1)), "{after:?}");
        ok(cluster.cli_at(&addrs, &["cluster", "verify"]));
        cluster.cleanup_workloads();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_file_of_the_previous_main_inspects_and_restores() {
    for fixture in fixtures() {
        let mut cluster = Cluster::builder(1).driver("process").start();
        cluster.wait_for_leader(T).await;
        let addrs = cluster.addrs();
        let file = fixture.join("backup.snap");
        let file = file.to_str().expect("utf-8");
        let want = versions(&expected(&fixture));

        let inspected = json(cluster.cli_at(&addrs, &["snapshot", "inspect", file, "-o", "json"]));
        assert_eq!(inspected["checksum_ok"], true, "{inspected}");
        assert_eq!(inspected["services"].as_u64(), Some(want.len() as u64), "{inspected}");

        cluster.kill(1);
        cluster.wipe(1);
        let dir = cluster.agent(1).data_dir.to_str().expect("utf-8").to_string();
        ok(cluster.cli_at(&addrs, &["snapshot", "restore", file, "--data-dir", &dir]));
        cluster.set_membership_args(1, &["--force-new-cluster"]);
        cluster.start_agent(1);
        wait_services(&cluster, &addrs, &want).await;
        ok(cluster.cli_at(&addrs, &["scale", "web", "1"]));
        cluster.cleanup_workloads();
    }
}
