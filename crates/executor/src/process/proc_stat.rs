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

/// CPU time and resident memory of a process group, summed over its members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GroupUsage {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident pages.
    pub rss_pages: u64,
}

/// Fields 5 (pgrp), 14 + 15 (utime, stime) and 24 (rss) of a stat line.
fn usage_fields(text: &str) -> Option<(i32, u64, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state).
    let pgrp = fields.get(2)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let rss: i64 = fields.get(21)?.parse().ok()?;
    Some((pgrp, utime + stime, rss.max(0) as u64))
}

/// The usage of every live process in group `pgid` (what the workload started).
pub(crate) fn group_usage(pgid: i32) -> GroupUsage {
    let mut usage = GroupUsage::default();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return usage;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((pgrp, ticks, rss)) = usage_fields(&text) {
            if pgrp == pgid {
                usage.cpu_ticks += ticks;
                usage.rss_pages += rss;
            }
        }
    }
    usage
}

/// Clock ticks per second and bytes per page.
pub(crate) fn units() -> (u64, u64) {
    use nix::unistd::{sysconf, SysconfVar};
    let get = |v, default: u64| sysconf(v).ok().flatten().map_or(default, |n| n.max(1) as u64);
    (get(SysconfVar::CLK_TCK, 100), get(SysconfVar::PAGE_SIZE, 4096))
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
    fn usage_fields_are_counted_from_the_last_paren() {
        let line = "4242 (we(ird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 987654 1000 33";
        assert_eq!(usage_fields(line), Some((4242, 12, 33)));
    }

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let pid = std::process::id() as i32;
        let stat = read(pid).expect("own stat");
        assert!(is_alive(pid, stat.start_ticks));
        assert!(!is_alive(pid, stat.start_ticks + 1));
    }
}
