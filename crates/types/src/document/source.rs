//! The two input formats behind one interface: read a unit of text again, from the start,
//! with any seed, and say where an error points.

use serde::de::{self, DeserializeSeed};

use super::fault::Location;

/// A unit of input that can be read any number of times.
pub(crate) trait Source<'de> {
    type Error: de::Error;

    fn run<T: DeserializeSeed<'de>>(&self, seed: T) -> Result<T::Value, Self::Error>;

    fn location(e: &Self::Error) -> Option<Location>;
}

/// The whole JSON text.
pub(crate) struct Json<'de>(pub &'de str);

impl<'de> Source<'de> for Json<'de> {
    type Error = serde_json::Error;

    fn run<T: DeserializeSeed<'de>>(&self, seed: T) -> Result<T::Value, serde_json::Error> {
        seed.deserialize(&mut serde_json::Deserializer::from_str(self.0))
    }

    fn location(e: &serde_json::Error) -> Option<Location> {
        (e.line() > 0).then(|| Location {
            line: e.line(),
            column: e.column(),
        })
    }
}

/// Document `index` of a YAML stream.
pub(crate) struct Yaml<'de> {
    pub text: &'de str,
    pub index: usize,
}

impl<'de> Source<'de> for Yaml<'de> {
    type Error = serde_norway::Error;

    fn run<T: DeserializeSeed<'de>>(&self, seed: T) -> Result<T::Value, serde_norway::Error> {
        match serde_norway::Deserializer::from_str(self.text).nth(self.index) {
            Some(doc) => seed.deserialize(doc),
            None => Err(de::Error::custom(format!("no YAML document {}", self.index + 1))),
        }
    }

    fn location(e: &serde_norway::Error) -> Option<Location> {
        e.location().map(|l| Location {
            line: l.line(),
            column: l.column(),
        })
    }
}
