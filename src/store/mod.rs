//! The replicated commit log: the byte stream that HA replication reads on the master
//! ([`CommitLog::read`]) and writes on the slave ([`CommitLog::append_raw`]).
//!
//! It is the file IO layer: append-only segment files named like upstream's (the 20-digit
//! base offset), positional reads and (vectored) writes, recovery of a torn tail on open.
//! [`CommitLog`] knows only the record envelope ([`record`]); [`messages`] puts producers'
//! messages in it (encoded by `core::message`) and keeps their queue offsets. There is no
//! consume queue, retention, mmap, runtime or clock: flushing follows a [`FlushPolicy`] or an
//! explicit [`CommitLog::flush`].
//!
//! # Invariants
//!
//! * `PublishAfterWrite`: [`CommitLog::max_offset`] is published (Release) only after every byte
//!   below it is written, and synced under [`FlushPolicy::EveryAppend`]; a reader (Acquire) never
//!   sees a byte that is not there.
//! * `NoCrossSegment`: no record and no read crosses a segment end; a record that does not fit
//!   the rest of a segment is preceded by a BLANK filling it.
//! * `ValidPrefix`: after [`CommitLog::open`] the log is a prefix of valid records (size,
//!   bounds, known magic, CRC of ours); a torn unsealed tail is cut, never served.
//! * `NothingDestroyed`: recovery deletes nothing, and cuts only where a crash can have torn
//!   (below), copying the cut bytes and moving any later segment file into `quarantine/`.
//!   Anything else that does not check out stops [`CommitLog::open`] with an error naming the
//!   file and offset and what to run, with nothing changed; [`verify`] reads everything and
//!   reports every problem, and [`repair`], run by an operator, sets damage aside.
//! * `TornOnlyAtTheEnd`: a crash can tear only the last segment and, while its seal is in
//!   flight, the one before it: a roll waits for the seal of the segment before the one it
//!   leaves (`Sealer::settle`), so the checkpoint is never more than one segment behind the last
//!   file. The checkpoint is first written by the first seal (or by [`CommitLog::reset_base`]),
//!   so a store whose files reach past its second segment (or start past 0) without one, or
//!   whose checkpoint names segments its files do not hold, is refused. Damage in a segment
//!   that two later ones follow is refused even above a lagging checkpoint (a crash inside a
//!   truncation lowers it before the later segments move).
//! * `SlaveAppendsAtMax`: [`CommitLog::append_raw`] writes only at the max offset and only bytes
//!   that frame as records recovery would keep; otherwise it errors and writes nothing. Together
//!   with per-segment reads this gives the HA invariant `SlaveIsPrefix`.
//!
//! # The store directory
//!
//! Besides the segment files (named like upstream's, the 20-digit base offset) it holds a
//! marker (`rmq-lifecycle.store`: format and segment size; a directory without one is refused
//! unless empty), a `lock` file (an exclusive `flock`, held while the log is open, naming the
//! holder's pid), a `checkpoint` (every segment below its offset is full and synced; a full
//! segment is sealed, synced and then named by the checkpoint, in the background once the next
//! one starts, so `open` reads only the unsealed tail, usually the last segment), `epochs`, and
//! `quarantine/`.
//!
//! # Resources
//!
//! Every segment file stays open, one fd per segment (1 GiB segments: one fd per GiB of log),
//! so reads never reopen files. A segment reserves its full size of disk when its first byte is
//! written (Linux `fallocate`, keeping the file length the data's), as upstream's full-size
//! files do; an empty log reserves nothing. Appends are serialized by an internal mutex; reads
//! take a second, short lock only to clone the segment's file handle, never while doing IO.

/// Returns an injected error before `$name`, one step of a multi-step change to the disk (a
/// truncation, a segment roll), once a crash point has stopped the "process" (feature `harness`,
/// see `crash.rs`); nothing at all in other builds.
macro_rules! step {
    ($crash:expr, $name:literal) => {
        if planted!($crash.dead_at($name)) {
            return Err(std::io::Error::other(concat!(
                "injected crash before: ",
                $name
            )));
        }
    };
}

mod check;
#[cfg(feature = "harness")]
mod crash;
mod dir;
pub mod messages;
pub mod record;
mod seal;
mod segment;

pub use check::{Problem, Repaired, Verified, repair, verify};

/// The segment size the store in `dir` was created with; `None` if `dir` is not a store (yet).
pub fn segment_size_of(dir: &Path) -> io::Result<Option<u64>> {
    match dir::read_marker(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        other => Ok(other?.map(|m| m.segment_size)),
    }
}

use std::fmt;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::BytesMut;

use crate::core::epoch::{self, EpochEntry};
use crate::core::model_trace::{REPLICATION_TARGET as MODEL, replication_step as model_step};
use crate::io::fs::{self, File};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::{Arc, Mutex, MutexGuard};
use record::{HEADER_LEN, MIN_BLANK_LEN};
use segment::Segment;

/// Upstream's default `mappedFileSizeCommitLog`.
pub const DEFAULT_SEGMENT_SIZE: u64 = 1 << 30;

/// The smallest segment accepted: room for a few records, small enough for tests.
pub const MIN_SEGMENT_SIZE: u64 = 64;

/// When appended bytes are made durable (`sync_data`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FlushPolicy {
    /// After every append, before its bytes are published: everything below the max offset is
    /// on disk (and so is everything a slave acks).
    EveryAppend,
    /// Once at least this many bytes are unsynced: bounded loss, a sync per batch.
    EveryBytes(u64),
    /// Only on [`CommitLog::flush`] and on drop, like upstream's default asynchronous flush
    /// driven by a caller's timer.
    #[default]
    Manual,
}

/// Where and how the log is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// The segment directory, created if missing.
    pub dir: PathBuf,
    /// Bytes per segment file, `MIN_SEGMENT_SIZE..=i32::MAX`. It must be the same on master and
    /// slave: segment ends (and so blanks) are at the same offsets in both logs.
    pub segment_size: u64,
    /// When appends are synced.
    pub flush: FlushPolicy,
}

impl StoreConfig {
    /// Upstream's defaults (1 GiB segments) with [`FlushPolicy::Manual`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_size: DEFAULT_SEGMENT_SIZE,
            flush: FlushPolicy::Manual,
        }
    }
}

/// Where [`CommitLog::append`] put a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the record's first byte (after any BLANK that had to precede it).
    pub start: u64,
    /// Offset right after the record: the new max offset, which a sync-replicating master waits
    /// for slaves to ack (upstream's `wroteOffset + wroteBytes`).
    pub end: u64,
}

/// A growable buffer that [`CommitLog::read`] fills in place, so bytes are copied once, from the
/// page cache into the buffer.
pub trait GrowBuf {
    /// Appends `n` zeroed bytes and returns them to be filled.
    fn grow(&mut self, n: usize) -> &mut [u8];
    /// Removes the last `n` bytes (undoes a `grow` whose read failed).
    fn shrink(&mut self, n: usize);
}

impl GrowBuf for Vec<u8> {
    fn grow(&mut self, n: usize) -> &mut [u8] {
        let old = self.len();
        self.resize(old + n, 0);
        &mut self[old..]
    }
    fn shrink(&mut self, n: usize) {
        self.truncate(self.len().saturating_sub(n));
    }
}

impl GrowBuf for BytesMut {
    fn grow(&mut self, n: usize) -> &mut [u8] {
        let old = self.len();
        self.resize(old + n, 0);
        &mut self[old..]
    }
    fn shrink(&mut self, n: usize) {
        self.truncate(self.len().saturating_sub(n));
    }
}

/// A byte range of one segment file (see [`CommitLog::file_range`]).
#[derive(Debug, Clone)]
pub struct FileRange {
    /// The segment file.
    pub file: Arc<File>,
    /// Position of the first byte in the file.
    pub pos: u64,
    /// Bytes in the range (at least 1).
    pub len: usize,
}

/// The append side's state, owned by whoever holds the append lock.
struct Tail {
    /// The segment the last write went to (saves a table lookup per append).
    active: Segment,
    /// Whether `active`'s disk blocks are reserved; an empty log reserves nothing until its
    /// first append.
    reserved: bool,
    /// Start of the next record whose header is not yet checked. Equal to the max offset when
    /// the log ends on a record boundary; past it while a slave's record is half received.
    next_record: u64,
    /// Start of the record that ends at `next_record` (the log's last record boundary below
    /// its max offset, when the log ends inside a record).
    record_start: u64,
    /// Everything below is synced.
    synced: u64,
    /// Whether every segment file created so far has a durable directory entry.
    dir_synced: bool,
    /// The write in progress, for its model trace event (`Append` or `Transfer`), and where its
    /// bytes not yet recorded start: a segment roll in the middle records the part before the
    /// roll first, since the roll's seal makes that part durable (`Sync`) before the rest is
    /// written.
    model: Option<(&'static str, u64)>,
}

/// The commit log. See the [module docs](self) for its invariants.
pub struct CommitLog {
    dir: PathBuf,
    segment_size: u64,
    flush: FlushPolicy,
    /// Serializes appends; held across their IO.
    tail: Mutex<Tail>,
    /// Every segment, by base, contiguous from the min offset. Locked only to look up or push.
    segments: Mutex<Vec<Segment>>,
    min: AtomicU64,
    max: AtomicU64,
    /// Everything below it (and below `max`) is synced: what the HA master may send.
    durable: AtomicU64,
    /// The epoch file's entries (auto-switch replication); locked after `tail`.
    epochs: Mutex<Vec<EpochEntry>>,
    /// Seals full segments and keeps the checkpoint.
    sealer: seal::Sealer,
    /// The store directory's exclusive lock, released on drop.
    _lock: dir::Lock,
}

impl fmt::Debug for CommitLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommitLog")
            .field("dir", &self.dir)
            .field("segment_size", &self.segment_size)
            .field("min_offset", &self.min_offset())
            .field("max_offset", &self.max_offset())
            .finish_non_exhaustive()
    }
}

fn invalid_input(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// The error for damage that recovery does not cut (it is not a torn tail): nothing was changed.
fn damaged(file: &Path, offset: u64, why: &str) -> io::Error {
    refused(
        file,
        &format!(
            "commit log segment {} is damaged at offset {offset}: {why}",
            file.display()
        ),
    )
}

/// The error for a store `open` does not recover by itself, `what` naming the file and offset:
/// nothing was changed, and the operator is told what to run (with the store's directory).
fn refused(file: &Path, what: &str) -> io::Error {
    let dir = file.parent().unwrap_or(Path::new("DIR")).display();
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{what}. Nothing was changed; `rmq-lifecycle store verify {dir}` lists every \
             problem, then `rmq-lifecycle store repair {dir}` ends the log at the first one, \
             moving the rest into the store's quarantine/ directory, and rewrites the checkpoint"
        ),
    )
}

/// The checkpoint against the segment files (see `check::checkpoint_problem`).
fn check_checkpoint(
    dir: &Path,
    found: &[segment::Found],
    segment_size: u64,
    checkpoint: Option<u64>,
) -> io::Result<()> {
    let path = dir.join(dir::CHECKPOINT);
    match check::checkpoint_problem(&path, found, segment_size, checkpoint) {
        Some((offset, why)) => Err(refused(&path, &format!("at offset {offset}: {why}"))),
        None => Ok(()),
    }
}

/// Segments must follow each other with no gap: a missing file is data lost, never a place to
/// end the log silently.
fn check_contiguous(
    dir: &Path,
    found: &[segment::Found],
    segment_size: u64,
    sealed: u64,
) -> io::Result<()> {
    for pair in found.windows(2) {
        if pair[1].base != pair[0].base + segment_size {
            let gap = pair[0].base + segment_size;
            return Err(damaged(
                &pair[1].path,
                gap,
                &format!("it follows a gap: the segment files from {gap:020} up to it are missing"),
            ));
        }
    }
    if let Some(first) = found.first().filter(|f| f.base > sealed && sealed > 0) {
        return Err(damaged(
            &first.path,
            sealed,
            &format!(
                "the checkpoint says the log holds sealed segments up to {sealed}, but the first \
                 segment file in {} starts at {}",
                dir.display(),
                first.base
            ),
        ));
    }
    Ok(())
}

impl CommitLog {
    /// Opens the log in `config.dir`, creating the store if the directory is new or empty, and
    /// recovers it. Only a torn tail is cut (in the last segment, or in the one before it if
    /// that is not sealed, the last then set aside whole), and its bytes are first copied into
    /// the store's `quarantine/` directory. Everything else that does not check out is an error
    /// naming the file and the offset, with nothing changed: a directory this crate did not
    /// create, a segment size other than the store's, another open of the same store (the lock),
    /// a gap between segments, a missing or wrong checkpoint, a damaged record in a segment that
    /// must have been sealed.
    ///
    /// Segments below the checkpoint (full and synced when they were sealed) are checked by
    /// length only, so the work is proportional to the last segment, not to the log;
    /// [`verify`] reads everything.
    pub fn open(config: StoreConfig) -> io::Result<Self> {
        let StoreConfig {
            dir: path,
            segment_size,
            flush,
        } = config;
        if !(MIN_SEGMENT_SIZE..=i32::MAX as u64).contains(&segment_size) {
            return Err(invalid_input(format!(
                "segment size {segment_size} is outside {MIN_SEGMENT_SIZE}..={}",
                i32::MAX
            )));
        }
        fs::create_dir_all(&path)?;
        dir::claim(&path, segment_size)?;
        let lock = dir::lock(&path)?;
        let checkpoint = dir::read_checkpoint(&path)?;
        let found = segment::list(&path, segment_size)?;
        check_checkpoint(&path, &found, segment_size, checkpoint)?;
        let sealed = checkpoint.unwrap_or(0);
        check_contiguous(&path, &found, segment_size, sealed)?;
        // The segments a crash can have torn: the last one and, while its seal is in flight, the
        // one before it (a roll waits for the seal before that: `Sealer::settle`), unless the
        // checkpoint covers it.
        let tearable = found
            .last()
            .map_or(sealed, |l| l.base.saturating_sub(segment_size).max(sealed));

        let mut segments = Vec::with_capacity(found.len());
        let mut end = found.first().map_or(sealed, |f| f.base);
        let mut changed = false;
        for (i, f) in found.iter().enumerate() {
            let seg = segment::open(f)?;
            if f.base + segment_size <= sealed {
                if f.len != segment_size {
                    return Err(damaged(
                        &f.path,
                        f.base + f.len.min(segment_size),
                        &format!(
                            "a sealed segment (below the checkpoint {sealed}) is {} bytes, not {segment_size}",
                            f.len
                        ),
                    ));
                }
                end = f.base + segment_size;
                segments.push(seg.unchecked());
                continue;
            }
            if f.base < tearable {
                // Above a lagging checkpoint (a crash inside a truncation lowers it before the
                // later segments move) but followed by two segments: it was sealed, so damage
                // here is not a torn tail.
                let scan = segment::scan(&seg.file, f.len, segment_size)?;
                if scan.valid != segment_size {
                    let why = scan.stop.as_deref().unwrap_or("a short segment");
                    return Err(damaged(
                        &f.path,
                        f.base + scan.valid,
                        &format!(
                            "{why}, in a segment that two later segments follow (a crash tears \
                             only the last segment and, while its seal is in flight, the one \
                             before it)"
                        ),
                    ));
                }
                end = f.base + segment_size;
                segments.push(seg);
                continue;
            }
            // The unsealed tail: what a crash may have torn. It ends at the first record that
            // does not check out; the rest is set aside, never deleted.
            let scan = segment::scan(&seg.file, f.len, segment_size)?;
            end = f.base + scan.valid;
            let later = &found[i + 1..];
            let whole = scan.valid == segment_size || (later.is_empty() && scan.valid == f.len);
            if !whole {
                let why = scan.stop.as_deref().unwrap_or("a short segment");
                if f.len > scan.valid {
                    let kept = dir::set_aside(
                        &path,
                        &format!("{end:020}.tail"),
                        &seg.file,
                        scan.valid,
                        f.len - scan.valid,
                    )?;
                    tracing::warn!(
                        file = %f.path.display(), offset = end, cut = f.len - scan.valid,
                        reason = why, kept = %kept.display(),
                        "commit log: cutting a torn tail (its bytes are kept in the quarantine)"
                    );
                    seg.file.set_len(scan.valid)?;
                    seg.file.sync_all()?;
                }
                for l in later.iter().rev() {
                    let to =
                        dir::free_name(dir::quarantine(&path)?.join(format!("{:020}", l.base)));
                    tracing::warn!(
                        file = %l.path.display(), to = %to.display(), offset = end, reason = why,
                        "commit log: setting aside a segment past a torn tail"
                    );
                    fs::rename(&l.path, &to)?;
                    changed = true;
                }
                segments.push(seg);
                break;
            }
            segments.push(seg);
        }
        let reserved = match segments.last() {
            // The segment appends continue in: reserve its rest (again, if a cut freed it).
            Some(seg) if end > seg.base => {
                segment::preallocate(&seg.file, &segment::path(&path, seg.base), segment_size);
                true
            }
            Some(_) => false,
            None => {
                segments.push(segment::create(&path, end, segment_size, false)?);
                changed = true;
                false
            }
        };
        if changed {
            segment::sync_dir(&path)?;
        }
        let mut epochs = dir::read_epochs(&path)?;
        // An entry past the end describes bytes that are not there: a crash came between a
        // truncation of the log and of the epoch file, or took the first bytes of an epoch.
        if let Some(keep) = epochs.iter().position(|e| e.start > end) {
            tracing::warn!(
                dir = %path.display(), max = end, dropped = ?&epochs[keep..],
                "commit log: dropping epoch entries past the log's end"
            );
            epochs.truncate(keep);
            dir::write_epochs(&path, &epochs)?;
        }

        let min = segments[0].base;
        let active = segments[segments.len() - 1].clone();
        let path_for_sealer = path.clone();
        model_step(|seq| {
            let epochs = epochs_json(&epochs);
            tracing::trace!(target: MODEL, seq, action = "Open", max = end, epochs);
        });
        Ok(Self {
            tail: Mutex::new(Tail {
                active,
                reserved,
                next_record: end,
                record_start: end,
                synced: end,
                dir_synced: true,
                model: None,
            }),
            segments: Mutex::new(segments),
            min: AtomicU64::new(min),
            max: AtomicU64::new(end),
            durable: AtomicU64::new(end),
            epochs: Mutex::new(epochs),
            dir: path,
            segment_size,
            flush,
            sealer: seal::Sealer::new(&path_for_sealer, sealed),
            _lock: lock,
        })
    }

    /// The end of the synced prefix: every byte below it survives a crash. The HA master sends
    /// slaves only these bytes, so a master that crashes and recovers never finds a slave holding
    /// bytes it lost (with [`FlushPolicy::Manual`] the sender calls [`flush`](Self::flush) when a
    /// slave has caught up with it).
    pub fn durable_offset(&self) -> u64 {
        let durable = self.durable.load(Ordering::Acquire);
        durable.min(self.max.load(Ordering::Acquire))
    }

    /// Offset of the first byte kept (the first segment's base).
    pub fn min_offset(&self) -> u64 {
        self.min.load(Ordering::Acquire)
    }

    /// Offset right after the last byte written: the next byte a slave needs. One atomic load.
    pub fn max_offset(&self) -> u64 {
        self.max.load(Ordering::Acquire)
    }

    /// Bytes held: `max_offset() - min_offset()`.
    pub fn len(&self) -> u64 {
        self.max_offset().saturating_sub(self.min_offset())
    }

    /// Whether the log holds no bytes (it may still start at a non-zero base).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes per segment file.
    pub fn segment_size(&self) -> u64 {
        self.segment_size
    }

    /// Base of the segment holding `offset`; for a fresh slave a master starts at
    /// `segment_base(max_offset())`, the start of its last file, like upstream.
    pub fn segment_base(&self, offset: u64) -> u64 {
        offset - offset % self.segment_size
    }

    /// The segment directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The master path: appends `payload` as one record (after a BLANK filling the current
    /// segment if it does not fit there). A record that cannot fit an empty segment (longer than
    /// it, or 1..=11 bytes shorter, which would leave a gap too small to frame) is refused, and so is
    /// an append while the log ends inside a record received by [`append_raw`](Self::append_raw)
    /// (reopen to recover first).
    pub fn append(&self, payload: &[u8]) -> io::Result<Appended> {
        let len = HEADER_LEN + payload.len() as u64;
        self.append_at_tail(len, |seg, at| {
            seg.file.write_all_at(&record::header(payload), at)?;
            seg.file.write_all_at(payload, at + HEADER_LEN)
        })
    }

    /// The master path for a record that names its own offset (an upstream message record
    /// carries its PHYSICALOFFSET): `encode` is called under the append lock with the record's
    /// offset and exactly `len` bytes to fill. The bytes must frame as an upstream message
    /// whose body CRC holds (what recovery keeps); otherwise nothing is written. Placement and
    /// refusals are [`append`](Self::append)'s.
    pub fn append_message(
        &self,
        len: usize,
        encode: impl FnOnce(u64, &mut [u8]),
    ) -> io::Result<Appended> {
        let mut encode = Some(encode);
        let placed = self.append_messages(&[len], |_, offset, dst| {
            if let Some(encode) = encode.take() {
                encode(offset, dst);
            }
        })?;
        Ok(placed[0])
    }

    /// [`append_message`](Self::append_message) for several records at once (a group commit):
    /// `encode(i, offset, dst)` fills record `i`; the records are placed one after another
    /// (a BLANK where one does not fit the rest of a segment), written with one write per
    /// segment, and published together. All are written or none.
    pub fn append_messages(
        &self,
        lens: &[usize],
        mut encode: impl FnMut(usize, u64, &mut [u8]),
    ) -> io::Result<Vec<Appended>> {
        let (mut tail, max) = self.lock_for_append(lens.iter().map(|&len| len as u64))?;
        // Lay the records out from `max`: one contiguous run of bytes per segment, a run that
        // ends in a BLANK header when the next record moves on to the next segment.
        let mut runs: Vec<(u64, Vec<u8>, bool)> = vec![(max, Vec::new(), false)];
        let mut placed = Vec::with_capacity(lens.len());
        let mut pos = max;
        for (i, &len) in lens.iter().enumerate() {
            let len = len as u64;
            let room = self.room(pos);
            if !record::fits(len, room) {
                let run = runs.last_mut().expect("one run at least");
                run.1.extend_from_slice(&record::blank_header(room));
                run.2 = true;
                pos += room;
                runs.push((pos, Vec::new(), false));
            }
            let run = &mut runs.last_mut().expect("one run at least").1;
            let at = run.len();
            run.resize(at + len as usize, 0);
            let rec = &mut run[at..];
            encode(i, pos, rec);
            check_message(rec, self.room(pos))?;
            placed.push(Appended {
                start: pos,
                end: pos + len,
            });
            pos += len;
        }
        if placed.is_empty() {
            return Ok(placed);
        }
        let end = self.commit(&mut tail, max, "Append", |log, tail| {
            for (start, bytes, blank_after) in &runs {
                if bytes.is_empty() {
                    continue;
                }
                let seg = log.segment_for(tail, *start)?;
                step!(log.sealer.crash, "write the records");
                seg.file.write_all_at(bytes, start - seg.base)?;
                if *blank_after {
                    step!(log.sealer.crash, "roll: fill the segment");
                    seg.file.set_len(log.segment_size)?; // the blank's rest reads as zeros
                }
            }
            Ok(pos)
        })?;
        tail.next_record = end;
        tail.record_start = placed.last().expect("not empty").start;
        Ok(placed)
    }

    /// Takes the append lock for records of `lens` bytes, and the max offset they go after; an
    /// error if one cannot fit an empty segment (longer than it, or 1..=11 bytes shorter, which
    /// would leave a gap too small to frame) or the log ends inside a record from `append_raw`.
    fn lock_for_append(
        &self,
        lens: impl IntoIterator<Item = u64>,
    ) -> io::Result<(MutexGuard<'_, Tail>, u64)> {
        for len in lens {
            if !record::fits(len, self.segment_size) {
                return Err(invalid_input(format!(
                    "record of {len} bytes does not fit in a segment of {} (a record fills a \
                     segment or leaves at least {HEADER_LEN} bytes)",
                    self.segment_size
                )));
            }
        }
        let tail = self.tail.lock();
        let max = self.max.load(Ordering::Relaxed);
        if tail.next_record != max {
            return Err(io::Error::other(format!(
                "the log ends at {max}, inside a record received by append_raw: reopen it to recover"
            )));
        }
        Ok((tail, max))
    }

    /// Appends a record of `len` bytes at the tail: after a BLANK filling the current segment if
    /// it does not fit there, `write` gets the segment and the position in it.
    fn append_at_tail(
        &self,
        len: u64,
        write: impl FnOnce(&Segment, u64) -> io::Result<()>,
    ) -> io::Result<Appended> {
        let (mut tail, max) = self.lock_for_append([len])?;
        let mut start = max;
        let end = self.commit(&mut tail, max, "Append", |log, tail| {
            let room = log.room(start);
            if !record::fits(len, room) {
                let seg = log.segment_for(tail, start)?;
                step!(log.sealer.crash, "roll: write the BLANK header");
                seg.file
                    .write_all_at(&record::blank_header(room), start - seg.base)?;
                step!(log.sealer.crash, "roll: fill the segment");
                seg.file.set_len(log.segment_size)?; // the blank's rest reads as zeros
                start += room;
            }
            let seg = log.segment_for(tail, start)?;
            step!(log.sealer.crash, "write the record");
            write(&seg, start - seg.base)?;
            Ok(start + len)
        })?;
        tail.next_record = end;
        tail.record_start = start;
        Ok(Appended { start, end })
    }

    /// The slave path: appends bytes received from the master verbatim at `offset`, which must
    /// be the max offset, creating segments as the bytes cross segment ends; returns the new max
    /// offset. The bytes may start or end inside a record, but the record headers they complete
    /// must frame as the log's records; anything else is refused with nothing written.
    pub fn append_raw(&self, offset: u64, bytes: &[u8]) -> io::Result<u64> {
        self.append_raw_vectored(offset, &[bytes])
    }

    /// [`append_raw`](Self::append_raw) of the concatenation of `pieces`, written with one
    /// `pwritev` per segment: a slave appends all the transfer bodies of one socket read at once
    /// (the read holds them between frame headers) instead of one write per 32 KiB transfer.
    pub fn append_raw_vectored(&self, offset: u64, pieces: &[&[u8]]) -> io::Result<u64> {
        let mut tail = self.tail.lock();
        let max = self.max.load(Ordering::Relaxed);
        if offset != max {
            return Err(invalid_input(format!(
                "append_raw at offset {offset}, but the log ends at {max}: a slave appends only at its max offset"
            )));
        }
        let len: u64 = pieces.iter().map(|p| p.len() as u64).sum();
        if len == 0 {
            return Ok(max);
        }
        let (next_record, record_start) =
            self.check_frames(tail.next_record, tail.record_start, offset, pieces, len)?;
        let end = self.commit(&mut tail, max, "Transfer", |log, tail| {
            let mut pos = offset;
            let mut rest = Pieces::new(pieces);
            while !rest.is_empty() {
                let seg = log.segment_for(tail, pos)?;
                step!(log.sealer.crash, "write the transfer");
                let n = rest.write_at(&seg.file, pos - seg.base, log.room(pos))?;
                pos += n;
            }
            Ok(pos)
        })?;
        tail.next_record = next_record;
        tail.record_start = record_start;
        Ok(end)
    }

    /// Makes an empty log start at `offset`, a segment-aligned base: a Java master sends a fresh
    /// slave its data from the start of its last segment. Refused if the log holds bytes.
    pub fn reset_base(&self, offset: u64) -> io::Result<()> {
        let mut tail = self.tail.lock();
        let (min, max) = (
            self.min.load(Ordering::Relaxed),
            self.max.load(Ordering::Relaxed),
        );
        if min != max {
            return Err(invalid_input(format!(
                "reset_base({offset}) on a log holding [{min}, {max}): only an empty log can move"
            )));
        }
        if offset % self.segment_size != 0 {
            return Err(invalid_input(format!(
                "reset_base({offset}) is not aligned to the segment size {}",
                self.segment_size
            )));
        }
        if offset == min {
            return Ok(());
        }
        // The steps in the order that leaves an empty log after a crash between any two: the
        // old (empty) segments go, the checkpoint moves, the new segment appears.
        let mut table = self.segments.lock();
        for seg in table.iter() {
            fs::remove_file(segment::path(&self.dir, seg.base))?;
        }
        table.clear();
        segment::sync_dir(&self.dir)?;
        self.sealer.reset(offset)?;
        let seg = segment::create(&self.dir, offset, self.segment_size, false)?;
        table.push(seg.clone());
        drop(table);
        segment::sync_dir(&self.dir)?;
        *tail = Tail {
            active: seg,
            reserved: false,
            next_record: offset,
            record_start: offset,
            synced: offset,
            dir_synced: true,
            model: None,
        };
        self.min.store(offset, Ordering::Release);
        self.max.store(offset, Ordering::Release);
        self.durable.store(offset, Ordering::Release);
        Ok(())
    }

    /// Appends to `dst` up to `max_len` bytes starting at `offset`, never past the max offset and
    /// never across a segment end (the HA master sends per-segment batches); returns how many,
    /// 0 at the max offset. One pread, straight into `dst`, with no lock held. Offsets below the
    /// min or above the max offset are errors.
    pub fn read(&self, offset: u64, max_len: usize, dst: &mut impl GrowBuf) -> io::Result<usize> {
        let Some(range) = self.file_range(offset, max_len)? else {
            return Ok(0);
        };
        if let Err(e) = range.file.read_exact_at(dst.grow(range.len), range.pos) {
            dst.shrink(range.len);
            return Err(e);
        }
        Ok(range.len)
    }

    /// Where the bytes [`read`](Self::read) would return live: a segment file, a position in it
    /// and a length (same limits; `None` for 0 bytes). Lets the HA master read a transfer body
    /// straight into its place among the other frames of one socket write. The file stays open
    /// while the range is held, even if the segment is removed meanwhile.
    pub fn file_range(&self, offset: u64, max_len: usize) -> io::Result<Option<FileRange>> {
        let max = self.max.load(Ordering::Acquire);
        if offset > max {
            return Err(invalid_input(format!(
                "read at offset {offset}, past the max offset {max}"
            )));
        }
        let Some(seg) = self.segment_at(offset)? else {
            return Ok(None); // the max offset is a segment end and the next segment is not created yet
        };
        if let Err(why) = seg.checked(self.segment_size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "commit log segment {} is damaged at {why}; nothing is read from it. \
                     `rmq-lifecycle store verify` lists the damage",
                    segment::path(&self.dir, seg.base).display()
                ),
            ));
        }
        let end = max.min(seg.base + self.segment_size);
        let len = end.saturating_sub(offset).min(max_len as u64) as usize;
        if len == 0 {
            return Ok(None);
        }
        Ok(Some(FileRange {
            file: seg.file,
            pos: offset - seg.base,
            len,
        }))
    }

    /// CRC32 of the bytes in `[from, to)`: lets tests and tools compare a master's and a slave's
    /// logs byte for byte without holding either in memory. Not a cryptographic digest.
    pub fn digest(&self, from: u64, to: u64) -> io::Result<u32> {
        if to > self.max_offset() || from > to {
            return Err(invalid_input(format!(
                "digest of [{from}, {to}) outside the log's [{}, {})",
                self.min_offset(),
                self.max_offset()
            )));
        }
        let mut h = crc32fast::Hasher::new();
        let mut buf = Vec::new();
        let mut pos = from;
        while pos < to {
            buf.clear();
            let want = (to - pos).min(1 << 20) as usize;
            let n = self.read(pos, want, &mut buf)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            h.update(&buf);
            pos += n as u64;
        }
        Ok(h.finalize())
    }

    /// Syncs every byte appended so far (and new segments' directory entries) to disk.
    pub fn flush(&self) -> io::Result<()> {
        let mut tail = self.tail.lock();
        let max = self.max.load(Ordering::Relaxed);
        self.sync_to(&mut tail, max)
    }

    /// The epoch entries (auto-switch replication; empty for a log that only ever replicated in
    /// classic mode).
    pub fn epochs(&self) -> Vec<EpochEntry> {
        self.epochs.lock().clone()
    }

    /// The master's side of an election: syncs the log and starts `epoch` at its max offset (cut
    /// back to its last whole record), durably, before any byte of the new epoch is appended. A log with bytes but no entries
    /// first records them as epoch 0 from its min offset (bytes from before epochs were kept).
    /// `epoch` must be above every recorded one.
    pub fn begin_epoch(&self, epoch: u32) -> io::Result<EpochEntry> {
        let mut tail = self.tail.lock();
        // A slave being promoted may end inside a record its old master never finished: the
        // new epoch starts at the last record boundary (the partial record is set aside).
        let max = self.max.load(Ordering::Relaxed);
        let boundary = if tail.next_record > max {
            tail.record_start
        } else {
            tail.next_record
        };
        if boundary < max {
            self.truncate_locked(&mut tail, boundary)?;
        }
        let max = self.max.load(Ordering::Relaxed);
        self.sync_to(&mut tail, max)?;
        let mut epochs = self.epochs.lock();
        let mut next = epochs.clone();
        let min = self.min.load(Ordering::Relaxed);
        if next.is_empty() && max > min {
            next.push(EpochEntry {
                epoch: 0,
                start: min,
            });
        }
        let entry = EpochEntry { epoch, start: max };
        next.push(entry);
        epoch::check_entries(&next).map_err(invalid_input)?;
        dir::write_epochs(&self.dir, &next)?;
        *epochs = next;
        model_step(|seq| {
            tracing::trace!(target: MODEL, seq, action = "BeginEpoch", e = epoch, start = max);
        });
        Ok(entry)
    }

    /// The slave's side: the master's data from `entry.start` on is of `entry.epoch`, newer
    /// than every local entry; recorded before the first byte of it is appended.
    pub fn append_epoch(&self, entry: EpochEntry) -> io::Result<()> {
        let tail = self.tail.lock();
        let max = self.max.load(Ordering::Relaxed);
        if entry.start > max {
            return Err(invalid_input(format!(
                "epoch entry {entry} starts past the log's end {max}"
            )));
        }
        let mut epochs = self.epochs.lock();
        let mut next = epochs.clone();
        next.push(entry);
        epoch::check_entries(&next).map_err(invalid_input)?;
        dir::write_epochs(&self.dir, &next)?;
        *epochs = next;
        model_step(|seq| {
            let (e, start) = (entry.epoch, entry.start);
            tracing::trace!(target: MODEL, seq, action = "Epoch", e, start);
        });
        drop(tail);
        Ok(())
    }

    /// Cuts the log back to `offset` (between its min and max offsets, on a record boundary: a
    /// consistent point), and drops the epoch entries that start at or past it. The bytes cut
    /// are first copied into `quarantine/` (with whole later segment files moved there), so a
    /// truncation destroys nothing. For a slave: a reader holding bytes past `offset` may still
    /// read them from the moved files.
    ///
    /// The steps are ordered so that a crash between any two leaves a log that opens to a
    /// prefix of the old one: the checkpoint moves below the cut, later segments move out from
    /// the last one, the segment holding `offset` is cut, then the epoch file is rewritten
    /// (and an entry left past the end is dropped by the next open).
    pub fn truncate(&self, offset: u64) -> io::Result<()> {
        let mut tail = self.tail.lock();
        self.truncate_locked(&mut tail, offset)?;
        model_step(|seq| tracing::trace!(target: MODEL, seq, action = "Truncate", point = offset));
        Ok(())
    }

    fn truncate_locked(&self, tail: &mut Tail, offset: u64) -> io::Result<()> {
        let (min, max) = (
            self.min.load(Ordering::Relaxed),
            self.max.load(Ordering::Relaxed),
        );
        if offset < min || offset > max {
            return Err(invalid_input(format!(
                "truncate to {offset}: outside the log [{min}, {max}]"
            )));
        }
        if offset < max {
            let base = self.segment_base(offset);
            self.sealer.lower(base)?;
            let mut table = self.segments.lock();
            while table.len() > 1 && table[table.len() - 1].base > base {
                step!(self.sealer.crash, "truncate: move a later segment");
                let seg = table.pop().expect("checked non-empty");
                let from = segment::path(&self.dir, seg.base);
                let quarantine = dir::quarantine(&self.dir)?;
                let to = dir::free_name(quarantine.join(format!("{:020}", seg.base)));
                fs::rename(&from, &to)?;
                // Durable before the next (lower) segment moves: after a crash the log then ends
                // at a segment boundary, never with a gap that `open` must refuse; and the moved
                // file is under quarantine/ before it is gone from the log.
                step!(self.sealer.crash, "truncate: sync the quarantine");
                segment::sync_dir(&quarantine)?;
                step!(self.sealer.crash, "truncate: sync the store directory");
                segment::sync_dir(&self.dir)?;
                tracing::warn!(from = %from.display(), to = %to.display(), "commit log: truncation set a segment aside");
            }
            let seg = table.last().cloned().expect("a log always has a segment");
            drop(table);
            let len = seg.file.metadata()?.len();
            let keep = offset - seg.base;
            if len > keep {
                step!(
                    self.sealer.crash,
                    "truncate: copy the tail into the quarantine"
                );
                let kept = if planted!(self.sealer.crash.skip_copy.load(Ordering::SeqCst)) {
                    PathBuf::new()
                } else {
                    dir::set_aside(
                        &self.dir,
                        &format!("{offset:020}.truncated"),
                        &seg.file,
                        keep,
                        len - keep,
                    )?
                };
                step!(self.sealer.crash, "truncate: cut the segment");
                seg.file.set_len(keep)?;
                step!(self.sealer.crash, "truncate: sync the segment");
                seg.file.sync_all()?;
                tracing::warn!(offset, cut = len - keep, kept = %kept.display(), "commit log: truncated");
            }
            step!(self.sealer.crash, "truncate: sync the store directory");
            segment::sync_dir(&self.dir)?;
            tail.active = seg;
            tail.next_record = offset;
            tail.record_start = offset;
            tail.synced = tail.synced.min(offset);
            self.durable.store(tail.synced, Ordering::Release);
            self.max.store(offset, Ordering::Release);
        }
        let mut epochs = self.epochs.lock();
        if let Some(keep) = epochs.iter().position(|e| e.start >= offset) {
            let next = epochs[..keep].to_vec();
            step!(self.sealer.crash, "truncate: rewrite the epoch file");
            dir::write_epochs(&self.dir, &next)?;
            *epochs = next;
        }
        Ok(())
    }

    /// Bytes left in the segment holding `offset` (a segment end counts as the next start).
    fn room(&self, offset: u64) -> u64 {
        self.segment_size - offset % self.segment_size
    }

    /// The segment holding `offset`, if it exists; below the min offset is an error.
    fn segment_at(&self, offset: u64) -> io::Result<Option<Segment>> {
        let table = self.segments.lock();
        let Some(base) = table.first().map(|s| s.base).filter(|&b| b <= offset) else {
            return Err(invalid_input(format!(
                "offset {offset} is below the min offset {}",
                self.min_offset()
            )));
        };
        let index = usize::try_from((offset - base) / self.segment_size).ok();
        Ok(index.and_then(|i| table.get(i)).cloned())
    }

    /// The segment to write `offset` into, created when the write reaches a new segment.
    fn segment_for(&self, tail: &mut Tail, offset: u64) -> io::Result<Segment> {
        let base = self.segment_base(offset);
        if tail.active.base == base {
            if !tail.reserved {
                segment::preallocate(
                    &tail.active.file,
                    &segment::path(&self.dir, base),
                    self.segment_size,
                );
                tail.reserved = true;
            }
            return Ok(tail.active.clone());
        }
        let seg = match self.segment_at(offset)? {
            Some(seg) => seg, // left empty by a failed append
            None => {
                // The full segments are sealed in the background: synced, then the checkpoint
                // moves past them, so the next open need not read them. Until then they are
                // part of the unsealed tail that recovery may cut.
                let from = self.segment_base(tail.synced);
                let full: Vec<_> = self
                    .segments
                    .lock()
                    .iter()
                    .filter(|s| s.base >= from && s.base < base)
                    .map(|s| s.file.clone())
                    .collect();
                // At most one full segment unsealed: the seal before the last one is done.
                let sealed = self.sealer.sealed();
                let before = base.saturating_sub(self.segment_size);
                let unsealed: Vec<_> = self
                    .segments
                    .lock()
                    .iter()
                    .filter(|s| s.base >= sealed && s.base < before)
                    .map(|s| s.file.clone())
                    .collect();
                self.sealer.settle(base, self.segment_size, &unsealed)?;
                if let Some((action, from)) = tail.model.filter(|&(_, from)| from < base) {
                    model_step(|seq| tracing::trace!(target: MODEL, seq, action, from, to = base));
                    tail.model = Some((action, base));
                }
                self.sealer.seal(full, base);
                step!(self.sealer.crash, "roll: create the next segment");
                let seg = segment::create(&self.dir, base, self.segment_size, false)?;
                self.segments.lock().push(seg.clone());
                step!(self.sealer.crash, "roll: preallocate the next segment");
                segment::preallocate(
                    &seg.file,
                    &segment::path(&self.dir, base),
                    self.segment_size,
                );
                tail.dir_synced = false;
                seg
            }
        };
        tail.active = seg.clone();
        tail.reserved = true;
        Ok(seg)
    }

    /// Checks the record headers that `pieces` (`len` bytes to be appended at `offset`) complete,
    /// starting with the record at `next_record`; returns the new start of the next unchecked
    /// record and the start of the record before it (`record_start` if none was completed).
    fn check_frames(
        &self,
        next_record: u64,
        record_start: u64,
        offset: u64,
        pieces: &[&[u8]],
        len: u64,
    ) -> io::Result<(u64, u64)> {
        let end = offset + len;
        let mut at = next_record;
        let mut start = record_start;
        while at + MIN_BLANK_LEN <= end {
            let mut head = [0; MIN_BLANK_LEN as usize];
            // A header started by an earlier batch has its first bytes (< 8) on disk.
            let on_disk = offset.saturating_sub(at) as usize;
            if on_disk > 0 {
                let seg = self
                    .segment_at(at)?
                    .ok_or_else(|| io::Error::other(format!("no segment holds offset {at}")))?;
                seg.file
                    .read_exact_at(&mut head[..on_disk], at - seg.base)?;
            }
            copy_from(pieces, at + on_disk as u64 - offset, &mut head[on_disk..]);
            let room = self.room(at);
            let (_, len) = record::check(head, room).map_err(|why| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "append_raw: no valid record at offset {at} ({why}); nothing written. {}",
                        self.framing_hint(head, at, room)
                    ),
                )
            })?;
            start = at;
            at += len;
        }
        Ok((at, start))
    }

    /// Why a record header from the master (`head`, at `at`, with `room` bytes left in our
    /// segment) may not frame here: a BLANK or a record that meets our segment end elsewhere
    /// means the master's segments are another size, and says which way.
    fn framing_hint(&self, head: [u8; MIN_BLANK_LEN as usize], at: u64, room: u64) -> String {
        let size = u64::try_from(i32::from_be_bytes([head[0], head[1], head[2], head[3]]));
        let magic = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        let ours = self.segment_size;
        match size {
            Ok(len) if magic == record::BLANK_MAGIC && len != room => format!(
                "The master's segment ends at {} (a BLANK fills [{at}, {})), ours at {}: its \
                 segments are not {ours} bytes like this store's. Both sides must use one \
                 segment size (--segment-size); this store must be emptied to change its own",
                at + len,
                at + len,
                at + room
            ),
            Ok(len) if magic != record::BLANK_MAGIC && len > room => format!(
                "The master's record [{at}, {}) crosses this store's segment end at {}: the \
                 master's segments are larger than ours ({ours} bytes). Both sides must use one \
                 segment size (--segment-size); this store must be emptied to change its own",
                at + len,
                at + room
            ),
            _ => format!(
                "This store's segments are {ours} bytes: a master with another segment size \
                 puts its segment ends (and blanks) elsewhere"
            ),
        }
    }

    /// Runs `write` (which appends from `start` and returns the new end), syncs per the policy
    /// and publishes the end. On error nothing is published and the partial write is cut back,
    /// so neither readers nor a later recovery see it.
    fn commit(
        &self,
        tail: &mut Tail,
        start: u64,
        action: &'static str,
        write: impl FnOnce(&Self, &mut Tail) -> io::Result<u64>,
    ) -> io::Result<u64> {
        tail.model = Some((action, start));
        let result = write(self, tail).and_then(|end| {
            // Written: recorded before the sync that may follow (a Sync covers what precedes it).
            if let Some((action, from)) = tail.model.take() {
                model_step(|seq| tracing::trace!(target: MODEL, seq, action, from, to = end));
            }
            let due = match self.flush {
                FlushPolicy::EveryAppend => true,
                FlushPolicy::EveryBytes(n) => end - tail.synced >= n,
                FlushPolicy::Manual => false,
            };
            if due {
                self.sync_to(tail, end)?;
            }
            Ok(end)
        });
        match result {
            Ok(end) => {
                self.max.store(end, Ordering::Release);
                Ok(end)
            }
            Err(e) if planted!(self.sealer.crash.is_dead()) => Err(e), // no cleanup after a crash
            Err(e) => {
                for seg in self.segments.lock().iter() {
                    if seg.base + self.segment_size > start {
                        let _ = seg.file.set_len(start.saturating_sub(seg.base));
                    }
                }
                tail.model = None;
                // A roll may have synced and sealed bytes that were just cut back.
                tail.synced = tail.synced.min(start);
                self.durable.store(tail.synced, Ordering::Release);
                let _ = self.sealer.lower(self.segment_base(start));
                Err(e)
            }
        }
    }

    /// Syncs the segments holding `[tail.synced, end)` and any new directory entries.
    fn sync_to(&self, tail: &mut Tail, end: u64) -> io::Result<()> {
        step!(self.sealer.crash, "sync");
        if end > tail.synced {
            let from = self.segment_base(tail.synced);
            let files: Vec<_> = {
                let table = self.segments.lock();
                table
                    .iter()
                    .filter(|s| s.base >= from && s.base < end)
                    .map(|s| s.file.clone())
                    .collect()
            };
            for file in files {
                file.sync_data()?;
            }
        }
        if !tail.dir_synced {
            segment::sync_dir(&self.dir)?;
            tail.dir_synced = true;
        }
        if end > tail.synced {
            model_step(|seq| tracing::trace!(target: MODEL, seq, action = "Sync", to = end));
        }
        tail.synced = tail.synced.max(end);
        self.durable.store(tail.synced, Ordering::Release);
        // Every segment below the one holding the synced end is full and synced.
        self.sealer.advance(self.segment_base(tail.synced))
    }
}

/// Crash points and a planted defect for the crash tests (feature `harness` only).
#[cfg(feature = "harness")]
impl CommitLog {
    /// Arms a crash point: the next `steps` steps that change the disk (of a truncation, a
    /// segment roll, a sync) run, and then the process is as good as dead: every later step and
    /// cleanup fails with an injected error before touching anything, so the files are as a
    /// process killed there leaves them. Seals run in place meanwhile (one step order).
    pub fn crash_after(&self, steps: u64) {
        self.sealer.crash.arm(steps);
    }

    /// The steps counted since [`crash_after`](Self::crash_after), by name (refused ones too).
    pub fn crash_steps(&self) -> Vec<&'static str> {
        self.sealer.crash.steps()
    }

    /// A planted defect: truncation cuts the tail of the segment holding the point without
    /// copying it into `quarantine/` first (bytes destroyed).
    pub fn skip_quarantine_copy(&self) {
        self.sealer.crash.skip_copy.store(true, Ordering::SeqCst);
    }
}

/// Epoch entries as the model trace's JSON list of `[epoch, start]` pairs.
fn epochs_json(entries: &[EpochEntry]) -> String {
    let pairs: Vec<String> = entries
        .iter()
        .map(|e| format!("[{},{}]", e.epoch, e.start))
        .collect();
    format!("[{}]", pairs.join(","))
}

/// Checks that `rec` (one whole record, `room` bytes left in its segment at its start) frames
/// as an upstream message whose body CRC holds, as recovery would keep it.
fn check_message(rec: &[u8], room: u64) -> io::Result<()> {
    let len = rec.len();
    let head: [u8; MIN_BLANK_LEN as usize] = rec
        .get(..MIN_BLANK_LEN as usize)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| invalid_input(format!("a record of {len} bytes has no header")))?;
    match record::check(head, room) {
        Ok((record::Frame::Upstream, n)) if n == len as u64 => {}
        Ok((frame, n)) => {
            return Err(invalid_input(format!(
                "append_message: the encoded bytes frame as {frame:?} of {n} bytes, not a \
                 message of {len}"
            )));
        }
        Err(why) => return Err(invalid_input(format!("append_message: {why}"))),
    }
    record::check_upstream(rec).map_err(invalid_input)
}

/// Fills `dst` from the concatenation of `pieces`, starting `from` bytes into it (the caller
/// checked that they hold that many).
fn copy_from(pieces: &[&[u8]], mut from: u64, mut dst: &mut [u8]) {
    for piece in pieces {
        if dst.is_empty() {
            return;
        }
        let len = piece.len() as u64;
        if from >= len {
            from -= len;
            continue;
        }
        let piece = &piece[from as usize..];
        let n = piece.len().min(dst.len());
        dst[..n].copy_from_slice(&piece[..n]);
        dst = &mut dst[n..];
        from = 0;
    }
}

/// The unwritten rest of an append's pieces.
struct Pieces<'a> {
    pieces: &'a [&'a [u8]],
    /// Bytes of `pieces[0]` already written.
    skip: usize,
}

impl<'a> Pieces<'a> {
    fn new(pieces: &'a [&'a [u8]]) -> Self {
        let mut rest = Pieces { pieces, skip: 0 };
        rest.advance(0);
        rest
    }

    fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// Drops `n` written bytes and any empty pieces from the front.
    fn advance(&mut self, mut n: usize) {
        while let Some((first, more)) = self.pieces.split_first() {
            let left = first.len() - self.skip;
            if n < left {
                self.skip += n;
                return;
            }
            n -= left;
            self.pieces = more;
            self.skip = 0;
        }
    }

    /// Writes up to `room` bytes from the front at `pos` of `file`; returns how many.
    fn write_at(&mut self, file: &File, pos: u64, room: u64) -> io::Result<u64> {
        let mut slices = Vec::with_capacity(self.pieces.len());
        let mut take = room;
        for (i, piece) in self.pieces.iter().enumerate() {
            if take == 0 {
                break;
            }
            let piece = if i == 0 { &piece[self.skip..] } else { piece };
            let n = (piece.len() as u64).min(take);
            slices.push(io::IoSlice::new(&piece[..n as usize]));
            take -= n;
        }
        let total = room - take;
        write_all_vectored_at(file, &mut slices, pos)?;
        self.advance(total as usize);
        Ok(total)
    }
}

/// `pwritev` until all of `slices` is written at `pos` (rustix passes at most `IOV_MAX` slices per
/// call, and a read full of tiny transfers can hold more bodies: the loop writes the rest).
#[cfg(all(target_os = "linux", not(feature = "sim")))]
fn write_all_vectored_at(
    file: &File,
    mut slices: &mut [io::IoSlice<'_>],
    mut pos: u64,
) -> io::Result<()> {
    while !slices.is_empty() {
        let n = match rustix::io::pwritev(file, slices, pos) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        pos += n as u64;
        io::IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

/// One positional write per slice where there is no `pwritev` binding.
#[cfg(not(all(target_os = "linux", not(feature = "sim"))))]
fn write_all_vectored_at(
    file: &File,
    slices: &mut [io::IoSlice<'_>],
    mut pos: u64,
) -> io::Result<()> {
    for slice in slices.iter() {
        file.write_all_at(slice, pos)?;
        pos += slice.len() as u64;
    }
    Ok(())
}

impl Drop for CommitLog {
    /// Syncs what [`FlushPolicy::Manual`] or [`FlushPolicy::EveryBytes`] left unsynced; errors
    /// cannot be reported here, so call [`CommitLog::flush`] first to see them.
    fn drop(&mut self) {
        if crate::io::fs::SYNC_ON_DROP {
            let _ = self.flush();
        }
        self.sealer.join();
    }
}
