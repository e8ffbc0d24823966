//! `store verify` and `store repair`: the full read of a store that [`CommitLog::open`] does not
//! do (it trusts the checkpoint), and the one explicit operation that ends a damaged log.
//!
//! Repair never deletes: the damaged bytes and every later segment file move into the store's
//! `quarantine/` directory, where an operator can inspect or restore them.
//!
//! [`CommitLog::open`]: super::CommitLog::open

use std::io;
use std::path::{Path, PathBuf};

use super::dir::{self, Lock};
use super::segment::{self, Found};
use crate::io::fs;

/// One thing wrong with a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file it is in.
    pub file: PathBuf,
    /// The log offset where it starts.
    pub offset: u64,
    /// What is wrong.
    pub what: String,
}

/// What [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The store's segment size (from its marker).
    pub segment_size: u64,
    /// Segment files read.
    pub segments: usize,
    /// The first segment's base.
    pub min_offset: u64,
    /// The end of the log's valid prefix: where [`repair`] would end it.
    pub valid_end: u64,
    /// Bytes in segment files, valid or not.
    pub bytes: u64,
    /// Every segment below this offset is sealed (the checkpoint).
    pub sealed: u64,
    /// Files already in the quarantine.
    pub quarantined: usize,
    /// Everything wrong, by offset. Empty: the store is sound.
    pub problems: Vec<Problem>,
}

impl Verified {
    /// No problems.
    pub fn is_sound(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What [`repair`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repaired {
    /// The store as it was.
    pub before: Verified,
    /// The log's end after the repair.
    pub end: u64,
    /// Where each moved thing went (cut bytes and whole segment files), in the quarantine.
    pub moved: Vec<PathBuf>,
}

/// Reads every record of the store in `dir` (CRCs included, sealed segments too) and reports
/// every problem. Takes the store's lock, so it refuses a store that a process has open.
pub fn verify(dir: &Path) -> io::Result<Verified> {
    let (lock, found, verified) = scan_all(dir)?;
    drop((lock, found));
    Ok(verified)
}

/// Ends the log at the end of its valid prefix (see [`verify`]): the rest of the segment that
/// holds the first problem and every later segment file move into `quarantine/`. Explicit and
/// never automatic: [`CommitLog::open`](super::CommitLog::open) refuses damage it cannot prove
/// to be a torn tail and names this.
pub fn repair(dir: &Path) -> io::Result<Repaired> {
    let (_lock, found, before) = scan_all(dir)?;
    let end = before.valid_end;
    let mut moved = Vec::new();
    if before.is_sound() {
        return Ok(Repaired { before, end, moved });
    }
    let size = before.segment_size;
    let quarantine = dir::quarantine(dir)?;
    for f in &found {
        if f.base + f.len <= end {
            continue;
        }
        if f.base < end || (f.base == end && end == before.min_offset) {
            // The segment holding the end keeps its valid bytes; the rest is set aside.
            let file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&f.path)?;
            let keep = end - f.base;
            let name = format!("{end:020}.tail");
            moved.push(dir::set_aside(dir, &name, &file, keep, f.len - keep)?);
            file.set_len(keep)?;
            file.sync_all()?;
        } else {
            let name = f.path.file_name().expect("a segment file has a name");
            let to = dir::free_name(quarantine.join(name));
            fs::rename(&f.path, &to)?;
            moved.push(to);
        }
    }
    fs::sync_dir(&quarantine)?;
    fs::sync_dir(dir)?;
    let sealed = before.sealed.min(end - end % size);
    if sealed != before.sealed {
        dir::write_checkpoint(dir, sealed)?;
    }
    for path in &moved {
        tracing::warn!(moved = %path.display(), "store repair: set aside");
    }
    Ok(Repaired { before, end, moved })
}

fn scan_all(dir: &Path) -> io::Result<(Lock, Vec<Found>, Verified)> {
    let Some(marker) = dir::read_marker(dir)? else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} is not a store directory (it has no {} file)",
                dir.display(),
                dir::MARKER
            ),
        ));
    };
    let lock = dir::lock(dir)?;
    let size = marker.segment_size;
    let sealed = dir::read_checkpoint(dir)?;
    let found = segment::list(dir, size)?;
    let quarantined = match fs::read_dir(dir.join(dir::QUARANTINE)) {
        Ok(entries) => entries.count(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    let mut problems = Vec::new();
    let mut valid_end = None;
    let min_offset = found.first().map_or(sealed, |f| f.base);
    let mut expected = min_offset;
    for (i, f) in found.iter().enumerate() {
        let last = i + 1 == found.len();
        let mut problem = |offset: u64, what: String| {
            valid_end.get_or_insert(offset);
            problems.push(Problem {
                file: f.path.clone(),
                offset,
                what,
            });
        };
        if f.base != expected {
            problem(
                expected,
                format!(
                    "it follows a gap: the segment files from {expected:020} up to it are missing"
                ),
            );
        }
        expected = f.base + size;
        let file = fs::OpenOptions::new().read(true).open(&f.path)?;
        let scan = segment::scan(&file, f.len, size)?;
        if scan.valid < f.len {
            let why = scan.stop.unwrap_or_else(|| "trailing bytes".to_owned());
            let what = if last {
                format!("{why} (a torn tail: open cuts it)")
            } else {
                why
            };
            problem(f.base + scan.valid, what);
        } else if !last && f.len < size {
            problem(
                f.base + f.len,
                format!(
                    "a short segment ({} of {size} bytes) that later segments follow",
                    f.len
                ),
            );
        } else if f.base + size <= sealed && f.len != size {
            problem(
                f.base + f.len,
                format!("a sealed segment (below the checkpoint {sealed}) that is not full"),
            );
        }
        if valid_end.is_none() && last {
            valid_end = Some(f.base + scan.valid);
        }
    }
    let verified = Verified {
        segment_size: size,
        segments: found.len(),
        min_offset,
        valid_end: valid_end.unwrap_or(min_offset),
        bytes: found.iter().map(|f| f.len).sum(),
        sealed,
        quarantined,
        problems,
    };
    Ok((lock, found, verified))
}
