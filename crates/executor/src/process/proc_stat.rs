//! Liveness of a recorded pid, read from /proc. A pid alone is not an identity: once our
//! process is gone the kernel may hand the number to another one, so a record also keeps
//! the process's start time and a pid only counts as ours while that still matches.

/// `/proc/<pid>/stat` fields we need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub state: char,
    /// Field 22, `starttime`: clock ticks after boot. Constant for a process's life.
    pub start_ticks: u64,
}

pub(crate) fn read(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse(&text)
}

/// True while `pid` is the process we started (same start time) and has not exited. A
/// zombie has exited: it only waits to be reaped.
pub(crate) fn is_alive(pid: i32, start_ticks: u64) -> bool {
    match read(pid) {
        Some(stat) => stat.start_ticks == start_ticks && !matches!(stat.state, 'Z' | 'X' | 'x'),
        None => false,
    }
}

fn parse(text: &str) -> Option<ProcStat> {
    // The command name (field 2) is in parentheses and may itself contain spaces and
    // parentheses, so fields are counted from the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `state` was field 3; `starttime` is field 22, 19 further on.
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_ticks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let line = "4242 (we(ird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(
            parse(line),
            Some(ProcStat {
                state: 'S',
                start_ticks: 987654
            })
        );
    }

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let pid = std::process::id() as i32;
        let stat = read(pid).expect("own stat");
        assert!(is_alive(pid, stat.start_ticks));
        assert!(!is_alive(pid, stat.start_ticks + 1));
    }
}
