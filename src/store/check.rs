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
    /// The file it is in (a segment, or the checkpoint).
    pub file: PathBuf,
    /// The log offset where it starts.
    pub offset: u64,
    /// What is wrong.
    pub what: String,
    /// Bytes from `offset` to the next record that checks out (to the file's end if none):
    /// what [`verify`] skipped to find its footing again.
    pub skipped: u64,
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
    /// The checkpoint written (every segment below it full and synced), if one was.
    pub checkpoint: Option<u64>,
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
        return Ok(Repaired {
            before,
            end,
            moved,
            checkpoint: None,
        });
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
    // A checkpoint `open` accepts: every segment below the one the log now ends in (all full
    // and valid, or verify would have ended the log sooner) synced, then named.
    let sealed = end - end % size;
    for f in found.iter().filter(|f| f.base + size <= sealed) {
        fs::OpenOptions::new()
            .read(true)
            .open(&f.path)?
            .sync_all()?;
    }
    dir::write_checkpoint(dir, sealed)?;
    for path in &moved {
        tracing::warn!(moved = %path.display(), "store repair: set aside");
    }
    Ok(Repaired {
        before,
        end,
        moved,
        checkpoint: Some(sealed),
    })
}

/// What is wrong with the checkpoint given the segment files (`found`, by base), if anything:
/// the offset and why. A roll waits for the seal of the segment before the one it leaves, so a
/// store with a segment two past its first has a checkpoint (a store moved to a new base has
/// one from the start), and a checkpoint never names more than the files hold.
pub(crate) fn checkpoint_problem(
    path: &Path,
    found: &[Found],
    size: u64,
    checkpoint: Option<u64>,
) -> Option<(u64, String)> {
    let (first, last) = (found.first()?, found.last()?);
    match checkpoint {
        None if first.base != 0 || last.base >= first.base + 2 * size => Some((
            first.base,
            format!(
                "the checkpoint {} is missing, but a log of segments {:020} to {:020} must have \
                 one (a roll past the second segment writes it), so the segments from offset {} \
                 on cannot be told sealed from torn",
                path.display(),
                first.base,
                last.base,
                first.base
            ),
        )),
        Some(sealed) if sealed > last.base + size => Some((
            last.base + last.len,
            format!(
                "the checkpoint {} says every segment below offset {sealed} is sealed, but the \
                 last segment file {} ends at offset {}",
                path.display(),
                last.path.display(),
                last.base + last.len
            ),
        )),
        _ => None,
    }
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
    let checkpoint_path = dir.join(dir::CHECKPOINT);
    let mut problems = Vec::new();
    let checkpoint = match dir::read_checkpoint(dir) {
        Ok(checkpoint) => checkpoint,
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            problems.push(Problem {
                file: checkpoint_path.clone(),
                offset: 0,
                what: e.to_string(),
                skipped: 0,
            });
            None
        }
        Err(e) => return Err(e),
    };
    let sealed = checkpoint.unwrap_or(0);
    let found = segment::list(dir, size)?;
    let quarantined = match fs::read_dir(dir.join(dir::QUARANTINE)) {
        Ok(entries) => entries.count(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    if problems.is_empty() {
        if let Some((offset, what)) = checkpoint_problem(&checkpoint_path, &found, size, checkpoint)
        {
            problems.push(Problem {
                file: checkpoint_path.clone(),
                offset,
                what,
                skipped: 0,
            });
        }
    }
    // A wrong checkpoint is one problem, not one per segment it misnames.
    let sealed = if problems.is_empty() { sealed } else { 0 };
    let mut valid_end = None;
    let min_offset = found.first().map_or(sealed, |f| f.base);
    // Where a crash can tear (see `CommitLog::open`): damage there is what open cuts.
    let tearable = found
        .last()
        .map_or(sealed, |l| l.base.saturating_sub(size).max(sealed));
    let mut expected = min_offset;
    for (i, f) in found.iter().enumerate() {
        let last = i + 1 == found.len();
        let mut problem = |offset: u64, what: String, skipped: u64| {
            valid_end.get_or_insert(offset);
            problems.push(Problem {
                file: f.path.clone(),
                offset,
                what,
                skipped,
            });
        };
        if f.base != expected {
            problem(
                expected,
                format!(
                    "it follows a gap: the segment files from {expected:020} up to it are missing"
                ),
                0,
            );
        }
        expected = f.base + size;
        let file = fs::OpenOptions::new().read(true).open(&f.path)?;
        // Every bad record, each with the bytes skipped to the next one that checks out.
        let mut pos = 0;
        let mut bad_records = false;
        while pos < f.len {
            let scan = segment::scan_from(&file, pos, f.len, size)?;
            if scan.valid >= f.len {
                break;
            }
            bad_records = true;
            let bad = scan.valid;
            let why = scan.stop.unwrap_or_else(|| "trailing bytes".to_owned());
            let what = if f.base >= tearable {
                format!("{why} (where a crash can tear: open cuts it)")
            } else {
                why
            };
            let next = segment::resync(&file, bad + 1, f.len, size)?;
            problem(f.base + bad, what, next.unwrap_or(f.len) - bad);
            match next {
                Some(next) => pos = next,
                None => break,
            }
        }
        if !last && f.len < size && !bad_records {
            problem(
                f.base + f.len,
                format!(
                    "a short segment ({} of {size} bytes) that later segments follow",
                    f.len
                ),
                0,
            );
        } else if f.base + size <= sealed && f.len != size && !bad_records {
            problem(
                f.base + f.len,
                format!("a sealed segment (below the checkpoint {sealed}) that is not full"),
                0,
            );
        }
        if valid_end.is_none() && last {
            valid_end = Some(f.base + f.len);
        }
    }
    problems.sort_by_key(|p| p.offset);
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
