//! Human durations in specs (`5s`, `1m30s`, `250ms`), kept as milliseconds.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration written the way operators write it: `5s`, `2m`, `250ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }

    pub const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }

    pub fn as_millis(&self) -> u64 {
        self.0.as_millis() as u64
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

/// The one hint every duration error gives.
const HINT: &str = r#"write it like "500ms" or "10s""#;

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "0" {
            return Ok(Duration::default());
        }
        // humantime's own reason ("time unit needed, for example 10sec or 10ms") would
        // suggest a second set of spellings; one hint is clearer.
        humantime::parse_duration(s)
            .map(Duration)
            .map_err(|_| format!("invalid duration {s:?}: {HINT}"))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DurationVisitor)
    }
}

/// Accepts a string, or the bare number 0; any other number lacks its unit. Errors are
/// raised inside the visitor, so the format attaches the value's own line and path.
struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a duration ({HINT})")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
        s.parse().map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Duration, E> {
        match n {
            0 => Ok(Duration::default()),
            n => Err(E::custom(format!("invalid duration {n}: {HINT}"))),
        }
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Duration, E> {
        match u64::try_from(n) {
            Ok(n) => self.visit_u64(n),
            Err(_) => Err(E::custom(format!("invalid duration {n}: {HINT}"))),
        }
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Duration, E> {
        Err(E::custom(format!("invalid duration {n}: {HINT}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_operator_durations() {
        assert_eq!("5s".parse::<Duration>().unwrap(), Duration::from_secs(5));
        assert_eq!("250ms".parse::<Duration>().unwrap(), Duration::from_millis(250));
        assert_eq!("1m30s".parse::<Duration>().unwrap(), Duration::from_secs(90));
        assert_eq!("0".parse::<Duration>().unwrap(), Duration::default());
    }

    #[test]
    fn rejects_garbage_and_round_trips() {
        let err = "5 parsecs".parse::<Duration>().unwrap_err();
        assert_eq!(err, r#"invalid duration "5 parsecs": write it like "500ms" or "10s""#);
        let d = Duration::from_millis(1500);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Duration>(&json).unwrap(), d);
    }

    #[test]
    fn a_bare_number_is_refused_with_one_hint() {
        assert_eq!(serde_json::from_str::<Duration>("0").unwrap(), Duration::default());
        let err = serde_json::from_str::<Duration>("10").unwrap_err().to_string();
        assert!(
            err.starts_with(r#"invalid duration 10: write it like "500ms" or "10s""#),
            "{err}"
        );
    }
}
