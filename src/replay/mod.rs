//! `rmq-lifecycle replay`: the two production incidents re-run in-process on loopback, against
//! this crate and, side by side in the same run, against a faithful emulation of upstream.
//!
//! * [`ha_probes`]: RocketMQ 5.1.4's HA port under load-balancer health checks (#8875).
//! * [`stale_groups`]: 15,000 abandoned `IotRuleEngine-<timestamp>` producer groups while
//!   consumers heartbeat and channels churn (#8673 and 4.x's single lock).
//!
//! Each returns a report with sampled series and a verdict; the CLI renders it (table, JSON,
//! chart). Nothing here prints.

pub mod ha_probes;
pub mod stale_groups;

use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Where a replay reports progress (a progress bar, periodic lines, or nothing).
pub trait Progress: Send + Sync {
    /// A new phase with `total` steps.
    fn phase(&self, name: &str, total: u64);
    /// `n` more steps done.
    fn advance(&self, n: u64);
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Progress for Quiet {
    fn phase(&self, _name: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
}

/// A replay's stop switch: Ctrl-C in the CLI; a replay stops early and still reports.
pub type Stop = CancellationToken;

/// This process's resident memory, open fds and threads, read from `/proc/self`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcessStats {
    /// Resident set size in bytes.
    pub rss_bytes: u64,
    /// Open file descriptors, excluding files under the replay's log directories.
    pub fds: usize,
}

impl ProcessStats {
    /// Reads the current figures; fds whose target lies under one of `exclude` are not counted
    /// (a commit log opens one fd per segment as it grows, which is not a leak).
    pub fn read(exclude: &[&std::path::Path]) -> ProcessStats {
        let page = 4096;
        let rss_bytes = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |pages| pages * page);
        let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |dir| {
            dir.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .map_or(true, |t| !exclude.iter().any(|x| t.starts_with(x)))
                })
                .count()
        });
        ProcessStats { rss_bytes, fds }
    }
}

/// Milliseconds since `start`, for sample timestamps.
fn ms_since(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

/// Nearest-rank percentile of a sorted slice (0 for an empty one).
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[], 99.0), 0);
    }

    #[test]
    fn reads_this_process() {
        let s = ProcessStats::read(&[]);
        assert!(s.rss_bytes > 0 && s.fds > 0);
    }
}
