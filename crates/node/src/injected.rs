//! Test-only fault injection on the node's peer transport, for the chaos suite's packet
//! delay (this kernel has no netem): `FLOTILLA_DELAY_FILE=PATH` makes every Raft and agent
//! message this node receives from a peer wait for the milliseconds written in PATH before
//! it is handled (a missing or empty file: no delay). The file is read at most every
//! 100 ms, so a test changes the delay while the agent runs. Unset in production, where a
//! call is one check of a value initialised once.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const REREAD: Duration = Duration::from_millis(100);
/// A delay above this is taken as a typo, not a fault to inject.
const MAX_DELAY: Duration = Duration::from_secs(60);

pub const DELAY_FILE_ENV: &str = "FLOTILLA_DELAY_FILE";

/// The delay `text` asks for: whole milliseconds, blank for none.
fn parse(text: &str) -> Option<Duration> {
    let ms: u64 = text.trim().parse().ok()?;
    Some(Duration::from_millis(ms).min(MAX_DELAY))
}

/// Waits for the injected delay, if any.
pub async fn peer_delay() {
    static FILE: OnceLock<Option<PathBuf>> = OnceLock::new();
    static CACHE: Mutex<Option<(Instant, Duration)>> = Mutex::new(None);
    let Some(path) = FILE.get_or_init(|| std::env::var_os(DELAY_FILE_ENV).map(PathBuf::from)) else {
        return;
    };
    let delay = {
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        match *cache {
            Some((read, d)) if read.elapsed() < REREAD => d,
            _ => {
                let d = std::fs::read_to_string(path)
                    .ok()
                    .and_then(|t| parse(&t))
                    .unwrap_or_default();
                *cache = Some((Instant::now(), d));
                d
            }
        }
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delay_file_holds_whole_milliseconds_and_blank_is_none() {
        assert_eq!(parse("250\n"), Some(Duration::from_millis(250)));
        assert_eq!(parse(""), None);
        assert_eq!(parse("soon"), None);
        assert_eq!(parse("99999999"), Some(MAX_DELAY));
    }
}
