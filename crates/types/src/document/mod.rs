//! Reading spec documents. An input is a YAML stream or JSON. Each YAML document, or the
//! JSON text, holds one spec, a list of specs, or the view `get -o json|yaml` prints (a map
//! whose `spec` is applied). A unit is first read untyped, to learn its shape; then every
//! spec is typed from the text itself, so errors keep their line, with its path tracked
//! (serde_path_to_error), so they name the field. Errors name the document when the input
//! holds several.

mod fault;
mod path;
mod probe;
mod source;
mod specs;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_path_to_error::Track;

use self::fault::{bare_message, describe, is_unknown_field};
use self::path::{parse_dotted, tracked, Seg};
use self::probe::locate;
use self::source::{Json, Source, Yaml};
use self::specs::{Shape, Tracked, UnitSeed};
use crate::error::SpecError;
use crate::spec::ServiceSpec;

/// Most unknown fields reported for one spec; past that the operator has the wrong file.
const MAX_REPORTED: usize = 32;

/// One spec of an input and where it stands.
pub(crate) struct Document {
    pub position: Position,
    pub spec: ServiceSpec,
}

/// A spec's place in its input: the document of a YAML stream holding several, and the
/// element of a list. Neither for an input of one spec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Position {
    stream: Option<usize>,
    item: Option<usize>,
}

impl Position {
    /// `2`, or `2, item 3` for a list inside a document of a stream; 1-based.
    fn number(&self) -> Option<String> {
        match (self.stream, self.item) {
            (None, None) => None,
            (Some(d), None) | (None, Some(d)) => Some(format!("{}", d + 1)),
            (Some(d), Some(i)) => Some(format!("{}, item {}", d + 1, i + 1)),
        }
    }

    /// `err` prefixed with `document N: `, when the input holds several specs.
    fn wrap(&self, err: SpecError) -> SpecError {
        match self.number() {
            Some(n) => SpecError::Parse(format!("document {n}: {err}")),
            None => err,
        }
    }
}

/// Every spec of `text`, typed and validated, or the first document that fails.
pub(crate) fn read(text: &str) -> Result<Vec<Document>, SpecError> {
    let trimmed = text.trim_start();
    let docs = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        read_json(text)?
    } else {
        read_yaml(text)?
    };
    if docs.is_empty() {
        return Err(SpecError::Parse("no service spec found in the input".into()));
    }
    refuse_duplicates(&docs)?;
    Ok(docs)
}

fn read_json(text: &str) -> Result<Vec<Document>, SpecError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| SpecError::Parse(e.to_string()))?;
    let shape = Shape::of_json(&value);
    read_unit(&Json(text), &shape, None, || Some(value))
}

fn read_yaml(text: &str) -> Result<Vec<Document>, SpecError> {
    let mut values = Vec::new();
    for (index, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let value = serde_norway::Value::deserialize(doc).map_err(|e| match index {
            0 => SpecError::Parse(e.to_string()),
            _ => SpecError::Parse(format!("document {}: {e}", index + 1)),
        })?;
        values.push(value);
    }
    // An empty document (a trailing `---`) holds no spec and does not make a stream.
    let several = values.iter().filter(|v| !v.is_null()).count() > 1;
    let mut docs = Vec::new();
    for (index, value) in values.iter().enumerate() {
        let source = Yaml { text, index };
        // The untyped tree as JSON, to look for further unknown fields; a map with keys
        // JSON cannot hold gives up that search, nothing else.
        let tree = || serde_json::to_value(value).ok();
        docs.extend(read_unit(
            &source,
            &Shape::of_yaml(value),
            several.then_some(index),
            tree,
        )?);
    }
    Ok(docs)
}

/// The specs of one unit, typed from its text and validated.
fn read_unit<'de, S: Source<'de>>(
    source: &S,
    shape: &Shape,
    stream: Option<usize>,
    tree: impl FnOnce() -> Option<serde_json::Value>,
) -> Result<Vec<Document>, SpecError> {
    if *shape == Shape::Empty {
        return Ok(Vec::new());
    }
    let mut track = Track::new();
    let specs = match source.run(Tracked::new(UnitSeed(shape), &mut track)) {
        Ok(specs) => specs,
        Err(e) => return Err(typing_error(source, shape, stream, &tracked(&track.path()), &e, tree)),
    };
    let docs: Vec<Document> = specs
        .into_iter()
        .enumerate()
        .map(|(i, spec)| Document {
            position: Position {
                stream,
                item: shape.is_list().then_some(i),
            },
            spec,
        })
        .collect();
    for doc in &docs {
        if let Err(e) = doc.spec.validate() {
            return Err(doc.position.wrap(with_line(source, shape, doc.position.item, e)));
        }
    }
    Ok(docs)
}

/// The path inside a unit to a spec's field: through the list element and the view's
/// `spec`, as the shape has them.
fn in_unit(shape: &Shape, item: Option<usize>, field: &[Seg]) -> Vec<Seg> {
    let mut path = Vec::new();
    path.extend(item.map(Seg::Index));
    if shape.is_view(item) {
        path.push(Seg::Key("spec".into()));
    }
    path.extend_from_slice(field);
    path
}

/// A validation error with the line of its field, where the field is written.
fn with_line<'de, S: Source<'de>>(source: &S, shape: &Shape, item: Option<usize>, err: SpecError) -> SpecError {
    match err {
        SpecError::Invalid { field, reason } => match locate(source, &in_unit(shape, item, &parse_dotted(&field))) {
            Some(at) => SpecError::invalid(field, format!("{reason} ({at})")),
            None => SpecError::Invalid { field, reason },
        },
        other => other,
    }
}

/// The error typing a unit stopped at, in the operator's words. An unknown field comes with
/// every other unknown field of the same spec.
fn typing_error<'de, S: Source<'de>>(
    source: &S,
    shape: &Shape,
    stream: Option<usize>,
    path: &[Seg],
    err: &S::Error,
    tree: impl FnOnce() -> Option<serde_json::Value>,
) -> SpecError {
    let (item, field) = shape.split(path);
    let position = Position { stream, item };
    let at = S::location(err);
    let text = err.to_string();
    let message = bare_message(&text, at);
    if !is_unknown_field(message) {
        return position.wrap(describe(field, message, at));
    }
    let mut unknown = tree()
        .and_then(|t| shape.spec_tree(t, item))
        .map(unknown_fields)
        .unwrap_or_default();
    if unknown.is_empty() {
        unknown.push((field.to_vec(), message.to_string()));
    }
    let mut located: Vec<_> = unknown
        .iter()
        .map(|(field, message)| (locate(source, &in_unit(shape, item, field)), field, message))
        .collect();
    // In the order they are written (the tree's maps are sorted by key).
    located.sort_by_key(|(at, _, _)| at.map_or((usize::MAX, 0), |l| (l.line, l.column)));
    let errors: Vec<SpecError> = located
        .into_iter()
        .map(|(at, field, message)| describe(field, message, at))
        .collect();
    position.wrap(match <[SpecError; 1]>::try_from(errors) {
        Ok([one]) => one,
        Err(all) => SpecError::Parse(all.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")),
    })
}

/// Every unknown field of one spec, where serde stops at the first: the spec is typed
/// again from a copy of its tree with each offending key removed, until it types or the
/// offence cannot be removed. Other errors met on the way are removed too, unreported:
/// the text's own first error was an unknown field.
fn unknown_fields(mut tree: serde_json::Value) -> Vec<(Vec<Seg>, String)> {
    let mut found = Vec::new();
    while found.len() < MAX_REPORTED {
        let Err(e) = serde_path_to_error::deserialize::<_, ServiceSpec>(&tree) else {
            break;
        };
        let path = tracked(e.path());
        let message = e.inner().to_string();
        if is_unknown_field(&message) {
            found.push((path.clone(), message));
        }
        // Each round removes a key, so the loop ends.
        if !remove(&mut tree, &path) {
            break;
        }
    }
    found
}

/// Removes the last key on `path` (a list element is removed with its whole list, so the
/// indexes of the rest stay as written).
fn remove(tree: &mut serde_json::Value, path: &[Seg]) -> bool {
    let Some(last) = path.iter().rposition(|s| matches!(s, Seg::Key(_))) else {
        return false;
    };
    let Seg::Key(key) = &path[last] else { return false };
    let mut node = tree;
    for seg in &path[..last] {
        let next = match seg {
            Seg::Key(k) => node.get_mut(k.as_str()),
            Seg::Index(i) => node.get_mut(*i),
        };
        let Some(next) = next else { return false };
        node = next;
    }
    node.as_object_mut().is_some_and(|m| m.remove(key).is_some())
}

/// Two specs of one input with the same name would be applied one after the other, the
/// second silently winning: the input is refused instead, naming both.
fn refuse_duplicates(docs: &[Document]) -> Result<(), SpecError> {
    let mut seen: BTreeMap<&str, Position> = BTreeMap::new();
    for doc in docs {
        if let Some(first) = seen.get(doc.spec.name.as_str()) {
            let both = match (first.number(), doc.position.number()) {
                (Some(a), Some(b)) => format!("documents {a} and {b}"),
                _ => "two documents".to_string(),
            };
            return Err(SpecError::Parse(format!(
                "{both} both define service {:?}",
                doc.spec.name
            )));
        }
        seen.insert(&doc.spec.name, doc.position);
    }
    Ok(())
}
