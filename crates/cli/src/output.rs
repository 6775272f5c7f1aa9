//! Rendering: aligned tables for people, JSON and YAML for scripts.

use serde::Serialize;

use crate::args::Format;
use crate::error::CliError;

/// Prints `value` as JSON or YAML, or calls `table` for the human format.
pub fn print<T: Serialize>(format: Format, value: &T, table: impl FnOnce() -> String) -> Result<(), CliError> {
    print!("{}", render(format, value, table)?);
    Ok(())
}

/// What `print` prints.
pub fn render<T: Serialize>(format: Format, value: &T, table: impl FnOnce() -> String) -> Result<String, CliError> {
    Ok(match format {
        Format::Table | Format::Wide => table(),
        Format::Json => serde_json::to_string_pretty(value).map_err(|e| CliError::Failed(e.to_string()))? + "\n",
        Format::Yaml => serde_norway::to_string(value).map_err(|e| CliError::Failed(e.to_string()))?,
    })
}

/// One id per line, for `-q`.
pub fn ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    ids.into_iter().map(|i| format!("{i}\n")).collect()
}

/// Left-aligned columns separated by three spaces, with a header row.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                l.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// `12s`, `3m`, `5h`, `2d`: how long ago `ms` (Unix milliseconds) was.
pub fn age(ms: u64, now_ms: u64) -> String {
    let s = now_ms.saturating_sub(ms) / 1000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_ages_read_well() {
        let t = table(
            &["NAME", "VERSION"],
            &[vec!["web".into(), "12".into()], vec!["database".into(), "1".into()]],
        );
        assert_eq!(t, "NAME       VERSION\nweb        12\ndatabase   1\n");
        assert_eq!(age(0, 12_000), "12s");
        assert_eq!(age(0, 180_000), "3m");
        assert_eq!(age(0, 5 * 3_600_000), "5h");
        assert_eq!(age(0, 3 * 86_400_000), "3d");
    }

    /// `-o yaml` is read by scripts: this text is what serde_yaml 0.9 printed, kept through
    /// the move to its fork (quoting of strings that would read as other types, block
    /// scalars, empty collections, nesting).
    #[test]
    fn yaml_output_keeps_its_text() {
        let v = serde_json::json!({
            "name": "web", "version": 3, "created_at": "2026-11-25T00:00:00Z",
            "spec": {
                "command": ["sleep", "3600"], "ports": [{"container": 80, "host": 8080}],
                "env": {"MODE": "yes", "EMPTY": "", "NULL": "null", "MULTI": "a\nb", "COLON": "a: b"},
                "restart": {"delay": "1s", "condition": "on-failure"}, "ratio": 0.25,
                "labels": {}, "args": [], "nested": [[1, 2], {"a": null}], "star": "*x",
            },
        });
        let want = "\
created_at: 2026-11-25T00:00:00Z
name: web
spec:
  args: []
  command:
  - sleep
  - '3600'
  env:
    COLON: 'a: b'
    EMPTY: ''
    MODE: yes
    MULTI: |-
      a
      b
    'NULL': 'null'
  labels: {}
  nested:
  - - 1
    - 2
  - a: null
  ports:
  - container: 80
    host: 8080
  ratio: 0.25
  restart:
    condition: on-failure
    delay: 1s
  star: '*x'
version: 3
";
        assert_eq!(render(Format::Yaml, &v, String::new).unwrap(), want);
    }
}
