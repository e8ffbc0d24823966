//! A crash between every pair of steps of `CommitLog::truncate` and of a segment roll, through
//! the shipped code's crash points (feature `harness`, which `cargo test` turns on): for each
//! `k` the operation runs with the "process" dead after its `k`-th step that changes the disk,
//! the store is reopened, and the recovered log must be a prefix (on a record boundary) of the
//! log's bytes, with every byte of the log before the operation either still in the log or in
//! `quarantine/`, no epoch entry past the end, and a second reopen changing nothing. A planted
//! truncation that skips the quarantine copy must fail the same checks.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use rmq_lifecycle::store::{CommitLog, StoreConfig};

const SEG: u64 = 4096;

#[path = "support/rng.rs"]
mod rng;
use rng::Rng;

fn open(dir: &Path) -> CommitLog {
    CommitLog::open(StoreConfig {
        segment_size: SEG,
        ..StoreConfig::new(dir)
    })
    .expect("open")
}

/// Every byte of the log, read as the HA master does.
fn log_bytes(log: &CommitLog) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = log.min_offset();
    while at < log.max_offset() {
        let n = log.read(at, 1 << 20, &mut out).unwrap();
        assert!(n > 0);
        at += n as u64;
    }
    out
}

/// The record boundaries of a log starting at 0 (record starts, BLANKs included, and its end).
fn boundaries(bytes: &[u8]) -> Vec<u64> {
    let mut at = 0usize;
    let mut out = vec![0];
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        assert!(size >= 8, "a record of {size} bytes at {at}");
        at += size;
        out.push(at as u64);
    }
    out
}

/// Every file under `dir` (recursively) but the lock, with its bytes (none if it is missing).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(snapshot(&path));
        } else if path.file_name().unwrap() != "lock" {
            out.insert(path.clone(), fs::read(&path).unwrap());
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &dest);
        } else {
            fs::copy(&path, &dest).unwrap();
        }
    }
}

/// The log offset a quarantine file's bytes start at: its name's leading 20 digits.
fn quarantine_offset(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.get(..20)?.parse().ok()
}

/// Reopens the crashed store in `dir` and checks it against the log before the operation
/// (`before`) and after it ran whole (`after`); `Err` says what failed.
fn check_recovered(dir: &Path, before: &[u8], after: &[u8]) -> Result<u64, String> {
    let log = CommitLog::open(StoreConfig {
        segment_size: SEG,
        ..StoreConfig::new(dir)
    })
    .map_err(|e| format!("reopen failed: {e}"))?;
    let max = log.max_offset();
    let bytes = log_bytes(&log);
    let longer = if after.len() > before.len() {
        after
    } else {
        before
    };
    if max as usize > longer.len() || bytes[..] != longer[..max as usize] {
        return Err(format!(
            "the log ({max} bytes) is not a prefix of the log's bytes"
        ));
    }
    if !boundaries(longer).contains(&max) {
        return Err(format!("the log ends at {max}, not on a record boundary"));
    }
    if let Some(e) = log.epochs().iter().find(|e| e.start > max) {
        return Err(format!("epoch entry {e} starts past the end {max}"));
    }
    drop(log);
    // Nothing destroyed: each byte of the old log past the end is in a quarantine file.
    let mut kept: Vec<Option<u8>> = vec![None; before.len()];
    for (path, content) in snapshot(&dir.join("quarantine")) {
        let Some(at) = quarantine_offset(&path) else {
            continue;
        };
        for (i, b) in content.iter().enumerate() {
            if let Some(slot) = kept.get_mut(at as usize + i) {
                *slot = Some(*b);
            }
        }
    }
    for at in max as usize..before.len() {
        if kept[at] != Some(before[at]) {
            return Err(format!(
                "byte {at} of the old log is neither in the log (which ends at {max}) nor in \
                 quarantine/"
            ));
        }
    }
    // A second reopen is a no-op.
    let files = snapshot(dir);
    let again = open(dir).max_offset();
    if again != max || snapshot(dir) != files {
        return Err(format!(
            "the second reopen changed the store (max {max} -> {again})"
        ));
    }
    Ok(max)
}

/// Runs `op` on a copy of `store` for every crash point `k` until it completes; returns the
/// step names of the complete run and, per `k`, the check's outcome.
fn crash_every_step(
    store: &Path,
    plant: fn(&CommitLog),
    op: &dyn Fn(&CommitLog) -> std::io::Result<()>,
) -> (Vec<&'static str>, Vec<Result<u64, String>>) {
    let before = log_bytes(&open(store));
    let whole = tempfile::tempdir().unwrap();
    copy_dir(store, whole.path());
    let after = {
        let log = open(whole.path());
        plant(&log);
        op(&log).unwrap();
        log_bytes(&log)
    };
    let mut outcomes = Vec::new();
    for k in 0.. {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(store, copy.path());
        let (done, steps) = {
            let log = open(copy.path());
            plant(&log);
            log.crash_after(k);
            let result = op(&log);
            let steps = log.crash_steps();
            if let Err(e) = &result {
                assert!(e.to_string().contains("injected crash"), "k={k}: {e}");
            }
            (result.is_ok(), steps)
        };
        outcomes.push(check_recovered(copy.path(), &before, &after));
        if done {
            assert_eq!(
                steps.len() as u64,
                k,
                "a complete run takes every step it counts"
            );
            return (steps, outcomes);
        }
        assert!(k < 64, "the operation never completes");
    }
    unreachable!()
}

/// A store with epochs 1 and 2, the second starting at `point` and running on for more than
/// two segments.
fn store_to_truncate() -> (tempfile::TempDir, u64) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut rng = Rng(5);
    log.begin_epoch(1).unwrap();
    while log.max_offset() < SEG + SEG / 2 {
        log.append(&rng.payload(600)).unwrap();
    }
    let point = log.max_offset();
    log.begin_epoch(2).unwrap();
    while log.max_offset() < 4 * SEG + SEG / 3 {
        log.append(&rng.payload(600)).unwrap();
    }
    (dir, point)
}

#[test]
fn a_crash_between_any_two_steps_of_a_truncation_recovers_a_prefix_and_destroys_nothing() {
    let (dir, point) = store_to_truncate();
    let (steps, outcomes) =
        crash_every_step(dir.path(), |_| {}, &|log: &CommitLog| log.truncate(point));
    // The log spans segments 1..=4: the checkpoint moves below segment 1, segments 4, 3 and 2
    // move, segment 1 is cut, the epoch file drops epoch 2.
    let mut expected = vec!["lower the checkpoint"];
    for _ in 0..3 {
        expected.extend([
            "truncate: move a later segment",
            "truncate: sync the quarantine",
            "truncate: sync the store directory",
        ]);
    }
    expected.extend([
        "truncate: copy the tail into the quarantine",
        "truncate: cut the segment",
        "truncate: sync the segment",
        "truncate: sync the store directory",
        "truncate: rewrite the epoch file",
    ]);
    assert_eq!(steps, expected, "every step is a crash point");
    assert_eq!(outcomes.len(), expected.len() + 1);
    for (k, outcome) in outcomes.iter().enumerate() {
        let max = outcome
            .as_ref()
            .unwrap_or_else(|e| panic!("crash after step {k}: {e}"));
        assert!(*max >= point, "crash after step {k}: cut below the point");
    }
    assert_eq!(*outcomes.last().unwrap().as_ref().unwrap(), point);
}

/// The broken variant: a truncation that cuts without copying the tail into the quarantine
/// destroys bytes, and the same checks say so (for the complete run and every crash after the
/// cut).
#[test]
fn a_truncation_that_skips_the_quarantine_copy_is_caught() {
    let (dir, point) = store_to_truncate();
    let (steps, outcomes) = crash_every_step(
        dir.path(),
        |log| log.skip_quarantine_copy(),
        &|log: &CommitLog| log.truncate(point),
    );
    let cut = steps
        .iter()
        .position(|s| *s == "truncate: cut the segment")
        .unwrap();
    for (k, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Ok(_) => assert!(k <= cut, "crash after step {k}: not caught"),
            Err(e) => {
                assert!(k > cut, "crash after step {k}: {e}");
                assert!(e.contains("neither in the log"), "{e}");
            }
        }
    }
    assert!(
        outcomes.last().unwrap().is_err(),
        "the complete run is caught"
    );
}

#[test]
fn a_crash_between_any_two_steps_of_a_segment_roll_recovers_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    {
        // Two segments sealed, the third nearly full.
        let log = open(dir.path());
        let mut rng = Rng(9);
        while log.max_offset() < 3 * SEG - 700 {
            log.append(&rng.payload(500)).unwrap();
        }
    }
    let record = vec![0xA5; 900]; // does not fit what is left: a BLANK, then a roll
    let (steps, outcomes) = crash_every_step(dir.path(), |_| {}, &|log: &CommitLog| {
        log.append(&record).map(drop)
    });
    assert_eq!(
        steps,
        [
            "roll: write the BLANK header",
            "roll: fill the segment",
            "seal: sync the full segment",
            "seal: write the checkpoint",
            "roll: create the next segment",
            "roll: preallocate the next segment",
            "write the record",
        ],
        "every step is a crash point"
    );
    for (k, outcome) in outcomes.iter().enumerate() {
        outcome
            .as_ref()
            .unwrap_or_else(|e| panic!("crash after step {k}: {e}"));
    }
    assert_eq!(
        *outcomes.last().unwrap().as_ref().unwrap(),
        3 * SEG + 912,
        "the complete roll"
    );
}

/// The slave's roll: bytes from the master that cross a segment end are written up to it, the
/// full segment sealed, the next one created, the rest written into it.
#[test]
fn a_crash_between_any_two_steps_of_a_slaves_roll_recovers_a_prefix() {
    let master_dir = tempfile::tempdir().unwrap();
    let master = open(master_dir.path());
    let mut rng = Rng(13);
    while master.max_offset() < 3 * SEG + 800 {
        master.append(&rng.payload(500)).unwrap();
    }
    let bytes = log_bytes(&master);
    // The slave holds whole records up to the last one starting before 3 * SEG (a reopen would
    // cut a partial one); the rest crosses 3 * SEG.
    let split = *boundaries(&bytes)
        .iter()
        .filter(|&&b| b < 3 * SEG)
        .max()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    {
        let slave = open(dir.path());
        slave.append_raw(0, &bytes[..split as usize]).unwrap();
    }
    let rest = bytes[split as usize..].to_vec();
    let (steps, outcomes) = crash_every_step(dir.path(), |_| {}, &|log: &CommitLog| {
        log.append_raw(split, &rest).map(drop)
    });
    assert_eq!(
        steps,
        [
            "write the transfer",
            "seal: sync the full segment",
            "seal: write the checkpoint",
            "roll: create the next segment",
            "roll: preallocate the next segment",
            "write the transfer",
        ],
        "every step is a crash point"
    );
    for (k, outcome) in outcomes.iter().enumerate() {
        outcome
            .as_ref()
            .unwrap_or_else(|e| panic!("crash after step {k}: {e}"));
    }
    assert_eq!(
        *outcomes.last().unwrap().as_ref().unwrap(),
        master.max_offset()
    );
}
