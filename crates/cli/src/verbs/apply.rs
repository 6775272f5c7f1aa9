//! `apply -f FILE|DIR|- [--dry-run] [--wait]`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use flotilla_proto::convert::spec_document;
use flotilla_proto::v1::{ApplyOutcome, ApplyRequest, DryRunRequest};
use flotilla_types::ServiceSpec;
use serde::Serialize;

use crate::args::{Format, Global};
use crate::client::Client;
use crate::error::CliError;
use crate::output::{print, table};

/// The documents to apply: `-` is stdin, a directory is its spec files in name order.
/// Everything is read and checked before anything is sent, so a bad document, or two
/// documents of one name, applies nothing (also with `--dry-run`).
fn read_specs(path: &Path) -> Result<Vec<ServiceSpec>, CliError> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::Usage(format!("cannot read stdin: {e}")))?;
        return ServiceSpec::parse_many(&text).map_err(|e| CliError::Failed(format!("stdin: invalid spec: {e}")));
    }
    let files = if path.is_dir() {
        spec_files(path)?
    } else {
        vec![path.to_path_buf()]
    };
    let mut specs = Vec::new();
    // Service name -> the file defining it. One file refuses its own duplicates.
    let mut defined: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
        let parsed = ServiceSpec::parse_many(&text)
            .map_err(|e| CliError::Failed(format!("{}: invalid spec: {e}", file.display())))?;
        for spec in &parsed {
            if let Some(first) = defined.insert(spec.name.clone(), file.clone()) {
                return Err(CliError::Failed(format!(
                    "{} and {} both define service {:?}",
                    first.display(),
                    file.display(),
                    spec.name
                )));
            }
        }
        specs.extend(parsed);
    }
    Ok(specs)
}

/// The names of the services the spec files at `path` define (for `delete -f`).
pub(crate) fn service_names(path: &Path) -> Result<Vec<String>, CliError> {
    Ok(read_specs(path)?.into_iter().map(|s| s.name).collect())
}

/// The `.yaml`, `.yml` and `.json` files of `dir`, in name order.
fn spec_files(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(CliError::Usage(format!(
            "{} holds no .yaml, .yml or .json file",
            dir.display()
        )));
    }
    Ok(files)
}

#[derive(Serialize)]
struct ApplyResult {
    name: String,
    version: u64,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_version: Option<u64>,
}

fn outcome_word(o: ApplyOutcome) -> &'static str {
    match o {
        ApplyOutcome::Created => "created",
        ApplyOutcome::Updated => "updated",
        ApplyOutcome::Unchanged => "unchanged",
        ApplyOutcome::Unspecified => "unknown",
    }
}

pub async fn apply(client: &Client, global: &Global, file: &Path, wait: bool) -> Result<(), CliError> {
    let out = global.output;
    let specs = read_specs(file)?;
    let mut results = Vec::new();
    let mut templates = Vec::new();
    for spec in specs {
        let r = client
            .send(ApplyRequest {
                spec_document: spec_document(&spec),
            })
            .await?;
        let outcome = r.outcome();
        if matches!(out, Format::Table | Format::Wide) {
            println!(
                "service/{} {} (version {})",
                r.name,
                outcome.describe(r.previous_version),
                r.version
            );
        }
        templates.push((r.name.clone(), Some(r.template_version).filter(|v| *v > 0)));
        results.push(ApplyResult {
            name: r.name,
            version: r.version,
            outcome: outcome_word(outcome),
            previous_version: (outcome == ApplyOutcome::Updated).then_some(r.previous_version),
        });
    }
    if !matches!(out, Format::Table | Format::Wide) {
        print(out, &results, String::new)?;
    }
    if wait {
        super::wait::converge(client, global, &templates).await?;
    }
    Ok(())
}

#[derive(Serialize)]
struct DryRunView {
    name: String,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_version: Option<u64>,
    diff: Vec<String>,
    placements: Vec<PlacementView>,
    stops: Vec<String>,
}

#[derive(Serialize)]
struct PlacementView {
    slot: u32,
    node: Option<u64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    reason: String,
}

/// A spec document as YAML lines; none for an empty document (no stored spec).
fn yaml_lines(document: &[u8]) -> Vec<String> {
    if document.is_empty() {
        return Vec::new();
    }
    let value: serde_json::Value = serde_json::from_slice(document).unwrap_or_default();
    serde_norway::to_string(&value)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// A line diff (longest common subsequence): `-` removed, `+` added, ` ` kept.
pub fn diff(old: &[String], new: &[String]) -> Vec<String> {
    let (n, m) = (old.len(), new.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if old[i] == new[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && old[i] == new[j] {
            out.push(format!("  {}", old[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("- {}", old[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", new[j]));
            j += 1;
        }
    }
    out
}

pub async fn dry_run(client: &Client, out: Format, file: &Path) -> Result<(), CliError> {
    let mut views = Vec::new();
    for spec in read_specs(file)? {
        let r = client
            .send(DryRunRequest {
                spec_document: spec_document(&spec),
            })
            .await?;
        let outcome = r.outcome();
        views.push(DryRunView {
            name: r.name.clone(),
            outcome: outcome_word(outcome),
            previous_version: (outcome == ApplyOutcome::Updated).then_some(r.previous_version),
            diff: diff(&yaml_lines(&r.current_spec_document), &yaml_lines(&r.new_spec_document)),
            placements: r
                .placements
                .iter()
                .map(|p| PlacementView {
                    slot: p.slot,
                    node: (p.node_id != 0).then_some(p.node_id),
                    reason: p.reason.clone(),
                })
                .collect(),
            stops: r.stops.clone(),
        });
    }
    print(out, &views, || {
        let mut text = String::new();
        for v in &views {
            let what = match (v.outcome, v.previous_version) {
                ("updated", Some(p)) => format!("would be updated from version {p}"),
                (o, _) => format!("would be {o}"),
            };
            text.push_str(&format!("service/{} {what} (dry run: nothing written)\n", v.name));
            if v.outcome != "unchanged" {
                for line in &v.diff {
                    text.push_str(&format!("  {line}\n"));
                }
            }
            if !v.placements.is_empty() {
                let rows: Vec<Vec<String>> = v
                    .placements
                    .iter()
                    .map(|p| {
                        vec![
                            p.slot.to_string(),
                            p.node.map_or("-".into(), |n| n.to_string()),
                            if p.node.is_some() {
                                String::new()
                            } else {
                                p.reason.clone()
                            },
                        ]
                    })
                    .collect();
                text.push_str("new tasks:\n");
                for line in table(&["SLOT", "NODE", "REASON"], &rows).lines() {
                    text.push_str(&format!("  {line}\n"));
                }
            }
            for s in &v.stops {
                text.push_str(&format!("would stop {s}\n"));
            }
        }
        text
    })
}

#[cfg(test)]
mod tests {
    use super::{diff, read_specs};
    use crate::error::CliError;

    #[test]
    fn two_files_of_a_directory_with_one_name_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "name: web\nimage: x\n").unwrap();
        std::fs::write(dir.path().join("b.yaml"), "name: db\nimage: x\n").unwrap();
        assert_eq!(read_specs(dir.path()).unwrap().len(), 2);
        std::fs::write(dir.path().join("c.json"), r#"{"name": "web", "image": "y"}"#).unwrap();
        let Err(CliError::Failed(msg)) = read_specs(dir.path()) else {
            panic!("duplicate accepted")
        };
        let (a, c) = (dir.path().join("a.yaml"), dir.path().join("c.json"));
        assert_eq!(
            msg,
            format!("{} and {} both define service \"web\"", a.display(), c.display())
        );
    }

    #[test]
    fn diff_marks_changed_lines() {
        let old: Vec<String> = ["name: web", "replicas: 1", "image: a"].map(String::from).to_vec();
        let new: Vec<String> = ["name: web", "replicas: 3", "image: a"].map(String::from).to_vec();
        assert_eq!(
            diff(&old, &new),
            vec!["  name: web", "- replicas: 1", "+ replicas: 3", "  image: a"]
        );
        assert_eq!(diff(&[], &new[..1]), vec!["+ name: web"]);
    }
}
