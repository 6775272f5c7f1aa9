//! serde's messages in the operator's words: the field as a dotted path, what was expected
//! and what was found, a "did you mean" for a misspelt name, and where it is written.

use std::fmt;

use super::path::{dotted, Seg};
use crate::error::SpecError;

/// Where a value is written in the input, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A misspelling closer than this (Jaro-Winkler) to a known name is offered as the fix.
const SIMILAR: f64 = 0.8;

pub(crate) fn is_unknown_field(message: &str) -> bool {
    message.starts_with("unknown field `")
}

/// The message of a format error without what we report ourselves: the trailing
/// ` at line L column C` and the YAML parser's own path prefix (`restart: `), which names
/// the enclosing map rather than the field.
pub(crate) fn bare_message(message: &str, at: Option<Location>) -> &str {
    let message = at
        .and_then(|l| message.strip_suffix(&format!(" at line {} column {}", l.line, l.column)))
        .unwrap_or(message);
    match message.split_once(": ") {
        // serde's own messages ("invalid type: …") have a space before their first colon;
        // a path never has one.
        Some((head, rest)) if !head.contains([' ', '`']) => rest,
        _ => message,
    }
}

/// The error for `message`, raised while typing the value at `path`.
pub(crate) fn describe(path: &[Seg], message: &str, at: Option<Location>) -> SpecError {
    let mut field = path.to_vec();
    let reason = if let Some(rest) = message.strip_prefix("unknown field `") {
        unknown(rest, None)
    } else if let Some(rest) = message.strip_prefix("unknown variant `") {
        unknown(rest, Some("value"))
    } else if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        field.push(Seg::Key(name.to_string()));
        "is required".to_string()
    } else if let Some((found, expected)) = mismatch(message) {
        format!(
            "expected {}, found {}",
            expected_words(expected, found),
            found_words(found)
        )
    } else {
        message.to_string()
    };
    let reason = match at {
        Some(at) => format!("{reason} ({at})"),
        None => reason,
    };
    match dotted(&field) {
        field if field.is_empty() => SpecError::Parse(reason),
        field => SpecError::invalid(field, reason),
    }
}

/// `rest` follows "unknown field `" or "unknown variant `": the name given, then serde's
/// list of the names it knows. A field's path already ends with the name given; a value's
/// name is repeated.
fn unknown(rest: &str, value: Option<&str>) -> String {
    let (given, known) = rest.split_once('`').unwrap_or((rest, ""));
    let known: Vec<&str> = known.split('`').skip(1).step_by(2).collect();
    let what = match value {
        Some(what) => format!("unknown {what} {given:?}"),
        None => "unknown field".to_string(),
    };
    match closest(given, &known) {
        Some(name) => format!("{what}, did you mean {name:?}?"),
        None if known.is_empty() => what,
        None => format!("{what}; expected one of {}", known.join(", ")),
    }
}

fn closest<'a>(given: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(given, k), *k))
        .filter(|(score, _)| *score > SIMILAR)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// serde's "invalid type: FOUND, expected EXPECTED" (or "invalid value: …").
fn mismatch(message: &str) -> Option<(&str, &str)> {
    let rest = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))?;
    rest.rsplit_once(", expected ")
}

/// serde's `Unexpected`: "floating point `1.5`", "string \"x\"", "sequence", "unit value".
fn found_words(found: &str) -> String {
    if let Some(value) = found.split('`').nth(1) {
        return value.to_string();
    }
    if let Some(text) = found.strip_prefix("string ") {
        return text.to_string();
    }
    match found {
        "sequence" => "a list".into(),
        "map" => "a map".into(),
        "unit value" => "nothing".into(),
        other => other.into(),
    }
}

/// serde's `Expected` for the types a spec holds.
fn expected_words(expected: &str, found: &str) -> String {
    let whole_number = found.split('`').nth(1).is_some_and(|v| v.parse::<i128>().is_ok());
    match expected {
        // A whole number out of range says the range; anything else is not a number.
        "u32" if whole_number => format!("an integer from 0 to {}", u32::MAX),
        "u8" | "u16" | "u32" | "u64" | "i32" | "i64" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        "a sequence" => "a list".into(),
        "a boolean" => "true or false".into(),
        s if s.starts_with("struct ") || s == "a map" => "a map".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize) -> Option<Location> {
        Some(Location { line, column })
    }

    #[test]
    fn a_type_error_says_what_was_expected_and_found() {
        let e = describe(
            &[Seg::Key("replicas".into())],
            "invalid type: floating point `1.5`, expected u32",
            at(3, 15),
        );
        assert_eq!(
            e.to_string(),
            "replicas: expected an integer, found 1.5 (line 3, column 15)"
        );
        let e = describe(
            &[Seg::Key("replicas".into())],
            "invalid value: integer `-1`, expected u32",
            None,
        );
        assert_eq!(
            e.to_string(),
            "replicas: expected an integer from 0 to 4294967295, found -1"
        );
        let e = describe(&[], "invalid type: sequence, expected struct ServiceSpec", at(1, 1));
        assert_eq!(
            e,
            SpecError::Parse("expected a map, found a list (line 1, column 1)".into())
        );
    }

    #[test]
    fn misspelt_names_get_a_suggestion() {
        let path = [Seg::Key("health_check".into()), Seg::Key("intervall".into())];
        let e = describe(
            &path,
            "unknown field `intervall`, expected one of `exec`, `http`, `tcp`, `interval`, `timeout`",
            None,
        );
        assert_eq!(
            e.to_string(),
            r#"health_check.intervall: unknown field, did you mean "interval"?"#
        );
        let e = describe(
            &[Seg::Key("zzz".into())],
            "unknown field `zzz`, expected `a` or `b`",
            None,
        );
        assert_eq!(e.to_string(), "zzz: unknown field; expected one of a, b");
        let e = describe(
            &[Seg::Key("restart".into()), Seg::Key("condition".into())],
            "unknown variant `alway`, expected one of `on-failure`, `always`, `never`",
            None,
        );
        assert_eq!(
            e.to_string(),
            r#"restart.condition: unknown value "alway", did you mean "always"?"#
        );
    }

    #[test]
    fn a_missing_field_is_named_by_its_path() {
        let e = describe(&[Seg::Key("health_check".into())], "missing field `port`", None);
        assert_eq!(e.to_string(), "health_check.port: is required");
    }

    #[test]
    fn the_parsers_own_path_and_location_are_dropped() {
        let l = at(7, 10);
        assert_eq!(
            bare_message("restart: invalid duration 1: write it at line 7 column 10", l),
            "invalid duration 1: write it"
        );
        assert_eq!(
            bare_message("invalid type: string \"x\", expected u32", None),
            "invalid type: string \"x\", expected u32"
        );
    }
}
