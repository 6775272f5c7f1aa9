//! Finding where a path is written. Neither format keeps positions once a value is built,
//! so the unit is read again with everything off the path skipped, and the read fails on
//! purpose at the path's last key (or list element): the format attaches its own line and
//! column to that error.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::fault::Location;
use super::path::Seg;
use super::source::Source;

/// Marks the deliberate failure, told apart from the input's own errors by its text.
const HERE: &str = "the probed path";

/// The line and column of `path` in `source`, if it is written there.
pub(crate) fn locate<'de, S: Source<'de>>(source: &S, path: &[Seg]) -> Option<Location> {
    match source.run(Probe(path)) {
        Err(e) if e.to_string().contains(HERE) => S::location(&e),
        _ => None,
    }
}

/// Walks `path`; the empty path fails at the value it stands on.
struct Probe<'p>(&'p [Seg]);

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.0.is_empty() {
            d.deserialize_any(Here)
        } else {
            d.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();

    // Scalars fall to the default methods, whose type error does not contain HERE: a path
    // that goes on below a scalar is simply not found.
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map or a list")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Seg::Key(target), rest)) = self.0.split_first() else {
            return Ok(());
        };
        // The last key fails while it is read, so the error carries the key's position.
        let fail_at = rest.is_empty().then_some(target.as_str());
        while let Some(key) = map.next_key_seed(Key(fail_at))? {
            if key == *target {
                return map.next_value_seed(Probe(rest));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Seg::Index(target), rest)) = self.0.split_first() else {
            return Ok(());
        };
        for _ in 0..*target {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Probe(rest)).map(|_| ())
    }
}

/// Fails on whatever value it is given.
struct Here;

impl Visitor<'_> for Here {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(HERE)
    }
}

/// A map key, failing when it is the one sought.
struct Key<'p>(Option<&'p str>);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Key<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<String, E> {
        match self.0 {
            Some(target) if target == key => Err(E::custom(HERE)),
            _ => Ok(key.to_string()),
        }
    }
}
