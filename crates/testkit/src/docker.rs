//! The Docker engine as a test sees it: through the `docker` CLI, as an operator would,
//! so the testkit pulls in no engine client. Tests use it to check what agents running
//! `--driver docker` really left on the engine, and to inject faults (killing workloads).
//!
//! No engine: Docker tests fail under `CI=true` and are skipped with a notice otherwise.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The workload image tests run, built offline by `docker/busybox/build.sh`.
pub const WORKLOAD_IMAGE: &str = "flotilla/busybox:latest";

/// Between two fields of an inspect line; labels come last, one per field.
const SEP: char = '\t';
const INSPECT_FORMAT: &str = "{{.Id}}\t{{.Name}}\t{{.State.Status}}\t{{.State.StartedAt}}\
{{range $k, $v := .Config.Labels}}\t{{$k}}={{$v}}{{end}}";

/// One container, as `docker inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// The full 64-hex id.
    pub id: String,
    pub name: String,
    /// `created`, `running`, `exited`, ...
    pub status: String,
    /// RFC 3339 with nanoseconds; changes whenever the container is (re)started.
    pub started_at: String,
    pub labels: BTreeMap<String, String>,
}

impl Container {
    pub fn is_running(&self) -> bool {
        self.status == "running"
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    fn parse(line: &str) -> Option<Container> {
        let mut fields = line.split(SEP);
        let id = fields.next()?.to_string();
        let name = fields.next()?.trim_start_matches('/').to_string();
        let status = fields.next()?.to_string();
        let started_at = fields.next()?.to_string();
        let labels = fields
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(Container {
            id,
            name,
            status,
            started_at,
            labels,
        })
    }
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `docker {}`: {e}", args.join(" ")))
}

fn checked(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "`docker {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The engine's version, or why it cannot be reached.
pub fn engine_version() -> Result<String, String> {
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .map_err(|e| format!("docker CLI not runnable: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker engine not reachable (DOCKER_HOST={}): {}",
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unset".into()),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether a Docker test can run here. With an engine: true, once [`WORKLOAD_IMAGE`]
/// exists (built if missing). Without one: a panic under `CI=true`, where Docker tests
/// are real, otherwise a skip notice naming `test` and false.
pub fn docker_or_skip(test: &str) -> bool {
    // Checked once per test process: every Docker test asks.
    static ENGINE: OnceLock<Result<String, String>> = OnceLock::new();
    match ENGINE.get_or_init(engine_version) {
        Ok(_) => {
            ensure_workload_image();
            true
        }
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true requires a Docker engine for {test}: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED {test}: {e} (with CI=true this fails)");
            false
        }
    }
}

/// Builds [`WORKLOAD_IMAGE`] with `docker/busybox/build.sh` when the engine lacks it.
pub fn ensure_workload_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if docker(&["image", "inspect", WORKLOAD_IMAGE]).status.success() {
            return;
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docker/busybox/build.sh");
        eprintln!("{WORKLOAD_IMAGE} missing: running {}", script.display());
        let status = Command::new("bash").arg(&script).status().expect("run build.sh");
        assert!(
            status.success(),
            "building {WORKLOAD_IMAGE} with {} failed: run `make images`",
            script.display()
        );
    });
}

/// Every container (running or not) carrying all of `labels`.
pub fn containers(labels: &[(&str, &str)]) -> Vec<Container> {
    let mut args = vec!["ps".to_string(), "-aq".into(), "--no-trunc".into()];
    for (k, v) in labels {
        args.push("--filter".into());
        args.push(format!("label={k}={v}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ids = checked(&args);
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if ids.is_empty() {
        return Vec::new();
    }
    // A container removed between `ps` and `inspect` makes inspect fail for it alone:
    // the others are still printed, and a gone container is simply not listed.
    let mut args = vec!["inspect", "--format", INSPECT_FORMAT];
    args.extend(&ids);
    let out = docker(&args);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(Container::parse)
        .collect()
}

/// The running containers among [`containers`].
pub fn running_containers(labels: &[(&str, &str)]) -> Vec<Container> {
    containers(labels).into_iter().filter(Container::is_running).collect()
}

/// SIGKILLs the running containers carrying all of `labels` (they stay, exited, until
/// someone removes them); returns their ids.
pub fn kill_containers(labels: &[(&str, &str)]) -> Vec<String> {
    let ids: Vec<String> = running_containers(labels).into_iter().map(|c| c.id).collect();
    if !ids.is_empty() {
        let mut args = vec!["kill"];
        args.extend(ids.iter().map(String::as_str));
        // One that exited meanwhile makes `kill` fail for it alone; what counts is that
        // none of them runs any more.
        let out = docker(&args);
        let still: Vec<Container> = running_containers(labels)
            .into_iter()
            .filter(|c| ids.contains(&c.id))
            .collect();
        assert!(
            still.is_empty(),
            "docker kill left {still:?} running: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    ids
}

/// Removes (`rm -f`) every container carrying all of `labels`, running or not; returns
/// how many there were. For a test that plays a machine that lost its disk and rebooted.
pub fn remove_containers(labels: &[(&str, &str)]) -> usize {
    let ids: Vec<String> = containers(labels).into_iter().map(|c| c.id).collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(ids.iter().map(String::as_str));
        docker(&args);
    }
    ids.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inspect_line_is_parsed_with_its_labels() {
        let c = Container::parse("abc\t/flotilla-t1-web.0.3\trunning\t2024-01-01T00:00:00.1Z\tflotilla.slot=0\ta=b=c")
            .expect("parsed");
        assert_eq!(c.id, "abc");
        assert_eq!(c.name, "flotilla-t1-web.0.3");
        assert!(c.is_running());
        assert_eq!(c.label("flotilla.slot"), Some("0"));
        assert_eq!(c.label("a"), Some("b=c"));
        assert_eq!(Container::parse("abc\tname"), None);
    }
}
