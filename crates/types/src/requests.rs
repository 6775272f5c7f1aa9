//! Exactly-once client writes. Every client write carries a request id (the CLI makes one
//! per write and keeps it across its retries; a node makes one for a write that arrives
//! without, before its own retries). The state remembers the first answer to each id and
//! answers a repeat with it instead of applying the command again; an id it no longer
//! remembers is refused, never applied again.
//!
//! An id is `<milliseconds since the Unix epoch, on the client's clock>-<8 to 64 of
//! [A-Za-z0-9_.-]>`. The time in it is what makes a forgotten id recognisable: ids are
//! forgotten oldest first, and the state keeps the newest client time among the ones it
//! forgot; an unknown id no newer than that may be a repeat of a forgotten one and is
//! refused. (A client whose clock is more than the remembering window behind the others'
//! has its writes refused with that explanation rather than risk a double apply.)

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::command::Response;
use crate::Millis;

/// Ids are remembered at least this long (by the applying leader's clock)…
pub const REMEMBER_FOR_MS: Millis = 10 * 60 * 1000;
/// …and at least this many of the latest, whichever keeps more…
pub const REMEMBER_AT_LEAST: usize = 10_000;
/// …but never more than this many: past it the oldest go even if younger than
/// [`REMEMBER_FOR_MS`] (a sustained 333 writes/s for 10 minutes), so that the state and
/// its snapshots stay bounded. A repeat of one of them is refused, as for any forgotten id.
pub const REMEMBER_AT_MOST: usize = 200_000;

pub const MAX_REQUEST_ID_LEN: usize = 90;

/// Why a request id is malformed, or `Ok(client time)`.
pub fn parse_request_id(id: &str) -> Result<Millis, String> {
    if id.len() > MAX_REQUEST_ID_LEN {
        return Err(format!(
            "request id is {} bytes; at most {MAX_REQUEST_ID_LEN}",
            id.len()
        ));
    }
    let Some((ms, rest)) = id.split_once('-') else {
        return Err(format!("request id {id:?} is not <milliseconds>-<random>"));
    };
    let ms: Millis = ms
        .parse()
        .map_err(|_| format!("request id {id:?}: {ms:?} is not a time in milliseconds"))?;
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if !(8..=64).contains(&rest.len()) || !rest.chars().all(ok) {
        return Err(format!(
            "request id {id:?}: after the time come 8 to 64 of A-Z, a-z, 0-9, '_', '.', '-'"
        ));
    }
    Ok(ms)
}

/// A fresh request id: the time now and 16 random hex digits.
/// The id of the `n`-th write (from 1) made while serving request `id`: `id` itself for
/// the first, `id` with `.wN` for the others, cut so that it stays a valid id.
pub fn nth_write_id(id: &str, n: u32) -> String {
    if n <= 1 {
        return id.to_string();
    }
    let suffix = format!(".w{n}");
    let Some((ms, rest)) = id.split_once('-') else {
        return format!("{id}{suffix}");
    };
    let kept: String = rest.chars().take(64 - suffix.len()).collect();
    format!("{ms}-{kept}{suffix}")
}

pub fn new_request_id(now: Millis, random: u64) -> String {
    format!("{now}-{random:016x}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Remembered {
    /// When it was applied (the leader's clock, from the command).
    at: Millis,
    /// The time in the id (the client's clock).
    client: Millis,
    response: Response,
}

/// The ids of recent client writes and their first answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestLog {
    answers: BTreeMap<String, Remembered>,
    /// Ids in the order they were applied, oldest first.
    order: VecDeque<String>,
    /// The newest client time among the forgotten ids.
    #[serde(default)]
    forgotten_upto: Millis,
}

/// What the log says about an id.
pub enum Seen<'a> {
    /// Applied before: this was its answer.
    Answered(&'a Response),
    /// Not remembered, and perhaps a repeat of a forgotten one.
    Forgotten {
        upto: Millis,
    },
    New,
}

impl RequestLog {
    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }

    pub fn len(&self) -> usize {
        self.answers.len()
    }

    pub fn seen(&self, id: &str, client: Millis) -> Seen<'_> {
        match self.answers.get(id) {
            Some(r) => Seen::Answered(&r.response),
            None if client <= self.forgotten_upto => Seen::Forgotten {
                upto: self.forgotten_upto,
            },
            None => Seen::New,
        }
    }

    /// Remembers `id`'s answer and forgets what is past both bounds (or past the cap).
    pub fn remember(&mut self, id: &str, client: Millis, at: Millis, response: Response) {
        if self
            .answers
            .insert(id.to_string(), Remembered { at, client, response })
            .is_none()
        {
            self.order.push_back(id.to_string());
        }
        while let Some(oldest) = self.order.front() {
            let Some(r) = self.answers.get(oldest) else {
                self.order.pop_front();
                continue;
            };
            let over_cap = self.order.len() > REMEMBER_AT_MOST;
            let past_both = self.order.len() > REMEMBER_AT_LEAST && r.at.saturating_add(REMEMBER_FOR_MS) < at;
            if !(over_cap || past_both) {
                break;
            }
            self.forgotten_upto = self.forgotten_upto.max(r.client);
            self.answers.remove(oldest);
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn each_write_of_a_request_has_its_own_valid_id() {
        let id = "1700000000000-abcdefgh";
        assert_eq!(super::nth_write_id(id, 1), id);
        assert_eq!(super::nth_write_id(id, 2), "1700000000000-abcdefgh.w2");
        let long = format!("1700000000000-{}", "x".repeat(64));
        let second = super::nth_write_id(&long, 2);
        assert_ne!(second, long);
        assert_eq!(super::parse_request_id(&second), Ok(1_700_000_000_000));
        assert_ne!(super::nth_write_id(&long, 3), second);
    }

    use super::*;

    #[test]
    fn ids_parse_with_their_time_and_bad_ones_say_why() {
        assert_eq!(
            parse_request_id("1700000000000-0123456789abcdef"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(parse_request_id(&new_request_id(42, 7)), Ok(42));
        for bad in [
            "",
            "abc",
            "12-short",
            "x1-0123456789",
            "12-0123456789 ab",
            &"1-".repeat(60),
        ] {
            assert!(parse_request_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ids_are_forgotten_only_past_both_bounds_and_then_refused() {
        let mut log = RequestLog::default();
        let t0: Millis = 1_000_000;
        for i in 0..REMEMBER_AT_LEAST + 5 {
            log.remember(
                &format!("{}-id{i:08}", t0 + i as u64),
                t0 + i as u64,
                t0,
                Response::Exec,
            );
        }
        // More than 10,000, but none is 10 minutes old: all remembered.
        assert_eq!(log.len(), REMEMBER_AT_LEAST + 5);
        assert!(matches!(log.seen("1000000-id00000000", t0), Seen::Answered(_)));
        // Ten minutes on, the next write forgets down to 10,000.
        let later = t0 + REMEMBER_FOR_MS + 1;
        log.remember("9999999-idlater00", 9_999_999, later, Response::Exec);
        assert_eq!(log.len(), REMEMBER_AT_LEAST);
        assert!(matches!(log.seen("1000000-id00000000", t0), Seen::Forgotten { .. }));
        // A new id from after the forgotten ones is new.
        assert!(matches!(log.seen("9999999-idnew0000", 9_999_999), Seen::New));
    }

    #[test]
    fn the_cap_bounds_the_log_even_within_ten_minutes() {
        let mut log = RequestLog::default();
        for i in 0..REMEMBER_AT_MOST + 3 {
            log.remember(&format!("{i}-abcdefgh"), i as u64, 5, Response::None);
        }
        assert_eq!(log.len(), REMEMBER_AT_MOST);
        assert!(matches!(log.seen("0-abcdefgh", 0), Seen::Forgotten { upto: 2 }));
        assert!(matches!(log.seen("3-abcdefgh", 3), Seen::Answered(_)));
    }
}
