//! Network partitions between agents on the loopback, with iptables (needs root).
//!
//! Each agent of a cluster built with [`crate::ClusterBuilder::distinct_ips`] listens on
//! its own 127.x.y.z address and connects to its peers from it, so a rule on the source
//! and destination addresses cuts exactly one pair of nodes. Clients (tests, the CLI)
//! connect from 127.0.0.1 and still reach every node.
//!
//! Every rule carries the comment `flotilla-chaos-<pid>` of the process that added it; it
//! is removed on [`Partitions::heal`] and on drop, and [`Partitions::remove_stale`] removes
//! the rules of processes that are gone (a run killed before it could heal).

use std::net::IpAddr;
use std::process::Command;

/// Prefix of the comment on every rule this module adds.
pub const TAG_PREFIX: &str = "flotilla-chaos-";

const CHAIN: &str = "INPUT";

fn iptables(args: &[&str]) -> Result<String, String> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .map_err(|e| format!("iptables: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The cuts this process has made; healed on drop.
pub struct Partitions {
    tag: String,
    /// Rule specs (without `-A`/`-D`) currently installed.
    rules: Vec<Vec<String>>,
}

impl Default for Partitions {
    fn default() -> Self {
        Self::new()
    }
}

impl Partitions {
    pub fn new() -> Partitions {
        Partitions {
            tag: format!("{TAG_PREFIX}{}", std::process::id()),
            rules: Vec::new(),
        }
    }

    /// Whether iptables can be used here (installed, and we may change rules).
    pub fn available() -> Result<(), String> {
        iptables(&["-S", CHAIN]).map(|_| ())
    }

    /// Removes rules tagged by processes that no longer exist. Returns how many.
    pub fn remove_stale() -> usize {
        let Ok(listing) = iptables(&["-S", CHAIN]) else {
            return 0;
        };
        let mut removed = 0;
        for line in listing.lines() {
            let Some(pos) = line.find(TAG_PREFIX) else {
                continue;
            };
            let pid: String = line[pos + TAG_PREFIX.len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            let alive = pid.is_empty() || std::path::Path::new(&format!("/proc/{pid}")).exists();
            if alive {
                continue;
            }
            // `-A INPUT <spec>` as listed; delete by the same spec. The comment is quoted
            // only when it has spaces, which ours never has.
            let Some(spec) = line.strip_prefix(&format!("-A {CHAIN} ")) else {
                continue;
            };
            let mut args = vec!["-D", CHAIN];
            args.extend(spec.split_whitespace());
            if iptables(&args).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Cuts `node` off from each of `others`, both directions.
    pub fn isolate(&mut self, node: IpAddr, others: &[IpAddr]) -> Result<(), String> {
        for other in others.iter().filter(|o| **o != node) {
            for (src, dst) in [(node, *other), (*other, node)] {
                self.drop_packets(src, dst, None)?;
            }
        }
        Ok(())
    }

    /// Drops packets from `src` to `dst` (one direction): all of them, or each with
    /// `probability` (iptables `statistic`, for packet loss).
    pub fn drop_packets(&mut self, src: IpAddr, dst: IpAddr, probability: Option<f64>) -> Result<(), String> {
        let mut spec: Vec<String> = ["-s", &src.to_string(), "-d", &dst.to_string()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if let Some(p) = probability {
            spec.extend(
                [
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &format!("{p:.3}"),
                ]
                .iter()
                .map(|s| s.to_string()),
            );
        }
        spec.extend(
            ["-m", "comment", "--comment", &self.tag, "-j", "DROP"]
                .iter()
                .map(|s| s.to_string()),
        );
        let mut args = vec!["-I", CHAIN];
        args.extend(spec.iter().map(String::as_str));
        iptables(&args)?;
        self.rules.push(spec);
        Ok(())
    }

    /// Replaces any earlier cut by one between `node` and every other address of `all`
    /// (a node of a cluster whose members each have their own address).
    pub fn isolate_only(&mut self, node: IpAddr, all: impl IntoIterator<Item = IpAddr>) -> Result<(), String> {
        let others: Vec<IpAddr> = all.into_iter().filter(|ip| *ip != node).collect();
        if others.is_empty() {
            return Err(format!(
                "{node} is the address of every member: give each its own (distinct_ips)"
            ));
        }
        self.heal();
        let r = self.isolate(node, &others);
        if r.is_err() {
            self.heal();
        }
        r
    }

    /// Whether a cut is in place.
    pub fn active(&self) -> bool {
        !self.rules.is_empty()
    }

    /// Removes every cut this value made.
    pub fn heal(&mut self) {
        for spec in self.rules.drain(..) {
            let mut args = vec!["-D", CHAIN];
            args.extend(spec.iter().map(String::as_str));
            if let Err(e) = iptables(&args) {
                eprintln!("partition heal: {e}");
            }
        }
    }
}

impl Drop for Partitions {
    fn drop(&mut self) {
        self.heal();
    }
}
