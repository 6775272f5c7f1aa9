//! What a unit holds (its shape, from the untyped read) and the seeds that type it.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_path_to_error::Track;

use super::path::Seg;
use crate::spec::ServiceSpec;

/// Keys of a service as `flotilla get -o json|yaml` prints it; such a document is applied
/// by its `spec`, so the output of `get` can be fed back to `apply`.
const VIEW_KEYS: [&str; 5] = ["name", "version", "created_at", "updated_at", "spec"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    /// An empty YAML document.
    Empty,
    Spec,
    View,
    /// A list; for each element, whether it is a view.
    List(Vec<bool>),
}

impl Shape {
    pub fn of_json(v: &serde_json::Value) -> Shape {
        match v {
            serde_json::Value::Array(items) => Shape::List(items.iter().map(json_is_view).collect()),
            v if json_is_view(v) => Shape::View,
            _ => Shape::Spec,
        }
    }

    pub fn of_yaml(v: &serde_norway::Value) -> Shape {
        match v {
            serde_norway::Value::Null => Shape::Empty,
            serde_norway::Value::Sequence(items) => Shape::List(items.iter().map(yaml_is_view).collect()),
            v if yaml_is_view(v) => Shape::View,
            _ => Shape::Spec,
        }
    }

    pub fn is_list(&self) -> bool {
        matches!(self, Shape::List(_))
    }

    /// Whether the spec at `item` (of a list, or the unit itself) is a view.
    pub fn is_view(&self, item: Option<usize>) -> bool {
        match (self, item) {
            (Shape::View, None) => true,
            (Shape::List(views), Some(i)) => views.get(i).copied().unwrap_or(false),
            _ => false,
        }
    }

    /// A path into the unit as the spec it is in (its list element) and the field path
    /// inside that spec.
    pub fn split<'p>(&self, path: &'p [Seg]) -> (Option<usize>, &'p [Seg]) {
        let (item, rest) = match (self, path.split_first()) {
            (Shape::List(_), Some((Seg::Index(i), rest))) => (Some(*i), rest),
            _ => (None, path),
        };
        match rest.split_first() {
            Some((Seg::Key(k), field)) if k == "spec" && self.is_view(item) => (item, field),
            _ => (item, rest),
        }
    }

    /// The untyped tree of the spec at `item`.
    pub fn spec_tree(&self, tree: serde_json::Value, item: Option<usize>) -> Option<serde_json::Value> {
        let mut spec = match item {
            Some(i) => tree.get(i)?.clone(),
            None => tree,
        };
        if self.is_view(item) {
            spec = spec.get("spec")?.clone();
        }
        Some(spec)
    }
}

fn json_is_view(v: &serde_json::Value) -> bool {
    v.as_object().is_some_and(|m| {
        m.get("spec").is_some_and(|s| s.is_object()) && m.keys().all(|k| VIEW_KEYS.contains(&k.as_str()))
    })
}

fn yaml_is_view(v: &serde_norway::Value) -> bool {
    v.as_mapping().is_some_and(|m| {
        m.get("spec").is_some_and(|s| s.is_mapping())
            && m.keys().all(|k| k.as_str().is_some_and(|k| VIEW_KEYS.contains(&k)))
    })
}

/// A seed run with its path tracked into `track`.
pub(crate) struct Tracked<'t, S> {
    seed: S,
    track: &'t mut Track,
}

impl<'t, S> Tracked<'t, S> {
    pub fn new(seed: S, track: &'t mut Track) -> Self {
        Tracked { seed, track }
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Tracked<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.seed
            .deserialize(serde_path_to_error::Deserializer::new(d, self.track))
    }
}

/// The specs of a unit of the given shape.
pub(crate) struct UnitSeed<'a>(pub &'a Shape);

impl<'de> DeserializeSeed<'de> for UnitSeed<'_> {
    type Value = Vec<ServiceSpec>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<ServiceSpec>, D::Error> {
        match self.0 {
            Shape::Empty => Ok(Vec::new()),
            Shape::Spec => SpecSeed { view: false }.deserialize(d).map(|s| vec![s]),
            Shape::View => SpecSeed { view: true }.deserialize(d).map(|s| vec![s]),
            Shape::List(views) => d.deserialize_seq(ListVisitor(views)),
        }
    }
}

/// One spec, or the `spec` of a view.
struct SpecSeed {
    view: bool,
}

impl<'de> DeserializeSeed<'de> for SpecSeed {
    type Value = ServiceSpec;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ServiceSpec, D::Error> {
        if self.view {
            d.deserialize_map(ViewVisitor)
        } else {
            ServiceSpec::deserialize(d)
        }
    }
}

struct ViewVisitor;

impl<'de> Visitor<'de> for ViewVisitor {
    type Value = ServiceSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a service as `get` prints it")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ServiceSpec, A::Error> {
        let mut spec = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "spec" {
                spec = Some(map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        spec.ok_or_else(|| A::Error::missing_field("spec"))
    }
}

struct ListVisitor<'a>(&'a [bool]);

impl<'de> Visitor<'de> for ListVisitor<'_> {
    type Value = Vec<ServiceSpec>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of service specs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<ServiceSpec>, A::Error> {
        let mut specs = Vec::new();
        for &view in self.0 {
            match seq.next_element_seed(SpecSeed { view })? {
                Some(spec) => specs.push(spec),
                None => break,
            }
        }
        Ok(specs)
    }
}
