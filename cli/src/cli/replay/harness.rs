//! What both replays share: the progress sink, the stop switch, `/proc/self` figures and
//! percentiles. Nothing here prints.

use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Where a replay reports progress (a progress bar, periodic lines, or nothing).
pub(crate) trait Progress: Send + Sync {
    /// A new phase with `total` steps.
    fn phase(&self, name: &str, total: u64);
    /// `n` more steps done.
    fn advance(&self, n: u64);
}

/// Records each phase's name, total and the steps reported for it (the tests' sink, so that
/// the progress a replay reports is checked with its figures).
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Recorded(pub(crate) std::sync::Mutex<Vec<(String, u64, u64)>>);

#[cfg(test)]
impl Progress for Recorded {
    fn phase(&self, name: &str, total: u64) {
        let mut phases = self.0.lock().unwrap();
        phases.push((name.to_owned(), total, 0));
    }
    fn advance(&self, n: u64) {
        let mut phases = self.0.lock().unwrap();
        phases.last_mut().expect("advance before any phase").2 += n;
    }
}

/// A replay's stop switch: Ctrl-C in the CLI; a replay stops early and still reports.
pub(crate) type Stop = CancellationToken;

/// This process's resident memory, open fds and threads, read from `/proc/self`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct ProcessStats {
    /// Resident set size in bytes.
    pub(crate) rss_bytes: u64,
    /// Open file descriptors, excluding files under the replay's log directories.
    pub(crate) fds: usize,
}

impl ProcessStats {
    /// Reads the current figures; fds whose target lies under one of `exclude` are not counted
    /// (a commit log opens one fd per segment as it grows, which is not a leak).
    pub(crate) fn read(exclude: &[&std::path::Path]) -> ProcessStats {
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
pub(crate) fn ms_since(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

/// Nearest-rank percentile of a sorted slice (0 for an empty one).
pub(crate) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Held by every unit test of this binary that opens fds while another may count them: the HA
/// replay's verdict compares the process's fds with a baseline, exactly.
#[cfg(test)]
pub(crate) static FD_COUNT: std::sync::Mutex<()> = std::sync::Mutex::new(());

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
        let _fds = FD_COUNT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let s = ProcessStats::read(&[]);
        assert!(s.rss_bytes > 0 && s.fds > 0);
    }
}
