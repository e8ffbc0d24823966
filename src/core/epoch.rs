//! Epochs: which master term wrote which bytes of a log (upstream `EpochFileCache`, RocketMQ 5),
//! and the consistent point a slave truncates to before it replicates.
//!
//! An epoch entry `(epoch, start)` says that the bytes from `start` up to the next entry's
//! start (or the log's end, for the last entry) were written by the master of `epoch`. Epochs
//! strictly increase; starts never decrease (two epochs start at one offset when a master lost
//! its role before it wrote a byte). Two logs hold the same bytes up to the end of the newest
//! epoch both have with the same start: that is what [`find_consistent_point`] computes.
//!
//! This is the value logic only; the store keeps the file ([`crate::store::CommitLog::epochs`]).

use std::fmt;

/// One epoch: the master term that wrote the log from `start` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct EpochEntry {
    /// The term (upstream's `epoch`, an `i32` on the wire; never negative here).
    pub epoch: u32,
    /// Offset of the epoch's first byte.
    pub start: u64,
}

impl fmt::Display for EpochEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.epoch, self.start)
    }
}

/// Checks that `entries` can follow each other in one log: epochs strictly increasing, starts
/// never decreasing.
pub fn check_entries(entries: &[EpochEntry]) -> Result<(), String> {
    for pair in entries.windows(2) {
        if pair[1].epoch <= pair[0].epoch || pair[1].start < pair[0].start {
            return Err(format!(
                "epoch entry {} cannot follow {} (epochs must increase, starts never decrease)",
                pair[1], pair[0]
            ));
        }
    }
    Ok(())
}

/// Where the `i`th entry of a list ends: the next entry's start, or `max` for the last.
pub fn end_of(entries: &[EpochEntry], i: usize, max: u64) -> u64 {
    entries.get(i + 1).map_or(max, |next| next.start)
}

/// The index of the entry holding `offset` (the last one starting at or before it), if any.
pub fn entry_at(entries: &[EpochEntry], offset: u64) -> Option<usize> {
    entries.iter().rposition(|e| e.start <= offset)
}

/// The offset up to which a slave's log (`local`, ending at `local_max`) and its master's
/// (`master`, ending at `master_max`) hold the same bytes: for the newest epoch both lists have
/// with the same start, the smaller of its two ends (upstream `findConsistentPoint`). `None` if
/// they share no such epoch: nothing in the slave's log is known to be the master's.
///
/// A slave whose log is empty needs no common epoch: its point is its own end.
pub fn find_consistent_point(
    local: &[EpochEntry],
    local_min: u64,
    local_max: u64,
    master: &[EpochEntry],
    master_max: u64,
) -> Option<u64> {
    if local_max == local_min {
        return Some(local_max);
    }
    for (i, l) in local.iter().enumerate().rev() {
        let Some(j) = master.iter().position(|m| m.epoch == l.epoch) else {
            continue;
        };
        if master[j].start != l.start {
            continue;
        }
        let point = end_of(local, i, local_max).min(end_of(master, j, master_max));
        return Some(point);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(epoch: u32, start: u64) -> EpochEntry {
        EpochEntry { epoch, start }
    }

    #[test]
    fn the_newest_common_epoch_with_the_same_start_bounds_the_point() {
        // The slave replicated epoch 1 to 1120; the master lost [560, 1120) and went on in
        // epoch 2 from 560.
        let master = [e(1, 0), e(2, 560)];
        assert_eq!(
            find_consistent_point(&[e(1, 0)], 0, 1120, &master, 1680),
            Some(560)
        );
        // A slave that is behind within the common epoch keeps everything.
        assert_eq!(
            find_consistent_point(&[e(1, 0)], 0, 300, &master, 1680),
            Some(300)
        );
        // A slave already in epoch 2 keeps what it has of it.
        let local = [e(1, 0), e(2, 560)];
        assert_eq!(
            find_consistent_point(&local, 0, 900, &master, 1680),
            Some(900)
        );
        assert_eq!(
            find_consistent_point(&local, 0, 2000, &master, 1680),
            Some(1680)
        );
    }

    #[test]
    fn an_epoch_with_another_start_is_not_common() {
        // Both had an epoch 2, but from different offsets (two masters of one term cannot
        // happen with a controller; a hand-made store can): the point falls back to epoch 1.
        let local = [e(1, 0), e(2, 700)];
        let master = [e(1, 0), e(2, 560), e(3, 900)];
        assert_eq!(
            find_consistent_point(&local, 0, 1000, &master, 1200),
            Some(560)
        );
    }

    #[test]
    fn a_demoted_master_truncates_its_unreplicated_tail() {
        // Old master: epoch 2 from 560 to 1500. The slave promoted at 1200 in epoch 3.
        let old = [e(1, 0), e(2, 560)];
        let new = [e(1, 0), e(2, 560), e(3, 1200)];
        assert_eq!(find_consistent_point(&old, 0, 1500, &new, 1900), Some(1200));
    }

    #[test]
    fn no_common_epoch_means_no_point_unless_the_log_is_empty() {
        assert_eq!(
            find_consistent_point(&[e(4, 0)], 0, 10, &[e(5, 0)], 10),
            None
        );
        assert_eq!(find_consistent_point(&[], 0, 10, &[e(5, 0)], 10), None);
        assert_eq!(
            find_consistent_point(&[], 4096, 4096, &[e(5, 0)], 10),
            Some(4096)
        );
    }

    #[test]
    fn entries_must_increase() {
        assert!(check_entries(&[e(1, 0), e(2, 0), e(3, 10)]).is_ok());
        assert!(check_entries(&[e(1, 0), e(1, 10)]).is_err());
        assert!(check_entries(&[e(1, 10), e(2, 5)]).is_err());
        assert_eq!(entry_at(&[e(1, 0), e(2, 10)], 9), Some(0));
        assert_eq!(entry_at(&[e(1, 0), e(2, 10)], 10), Some(1));
        assert_eq!(entry_at(&[e(2, 10)], 9), None);
    }
}
