//! Field paths as the operator reads them: `ports[1].host`, `health_check.interval`.

use std::fmt::Write;

/// One step into a document: a map key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// `ports[1].host`; empty for the document itself.
pub(crate) fn dotted(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => write!(out, ".{k}").expect("writing to a String"),
            Seg::Index(i) => write!(out, "[{i}]").expect("writing to a String"),
        }
    }
    out
}

/// The steps of a dotted field as validation names it. A key that itself holds a `.` or
/// `[` (an `env` name) splits wrongly; the path is then not found and nothing worse happens.
pub(crate) fn parse_dotted(field: &str) -> Vec<Seg> {
    let mut path = Vec::new();
    for part in field.split('.') {
        let mut pieces = part.split('[');
        if let Some(key) = pieces.next().filter(|k| !k.is_empty()) {
            path.push(Seg::Key(key.to_string()));
        }
        for index in pieces {
            match index.strip_suffix(']').and_then(|i| i.parse().ok()) {
                Some(i) => path.push(Seg::Index(i)),
                None => path.push(Seg::Key(format!("[{index}"))),
            }
        }
    }
    path
}

/// The path serde_path_to_error tracked, in our steps. Enum variants and keys it could not
/// capture are not written in a spec by path, so they are left out.
pub(crate) fn tracked(path: &serde_path_to_error::Path) -> Vec<Seg> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|seg| match seg {
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_paths_round_trip() {
        for field in ["replicas", "ports[1].host", "health_check.http.port", "a[0][2].b"] {
            assert_eq!(dotted(&parse_dotted(field)), field);
        }
        assert_eq!(dotted(&[]), "");
    }
}
