//! Segment files: naming, listing, creation and the recovery scan.

use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::{self, Frame, HEADER_LEN, MIN_BLANK_LEN};
use crate::io::fs::{self, File, OpenOptions};
use crate::sync::{Arc, Mutex};

/// One segment file, shared with readers so a pread needs no lock.
#[derive(Clone, Debug)]
pub(crate) struct Segment {
    /// Physical offset of the segment's first byte (also its file name).
    pub(crate) base: u64,
    pub(crate) file: Arc<File>,
    /// Whether its records check out. `open` trusts a sealed segment by its length, so that
    /// startup reads only the unsealed tail; such a segment's records are checked on its first
    /// read ([`Segment::checked`]), so that damage is never sent or served. Set for every other
    /// segment: scanned at open, or written by this process.
    pub(crate) check: Arc<Mutex<Option<Result<(), String>>>>,
}

impl Segment {
    /// Marks a segment trusted by its length only: its records are checked on first read.
    pub(crate) fn unchecked(mut self) -> Self {
        self.check = Arc::new(Mutex::new(None));
        self
    }

    /// Checks the records of a segment (of `size`-byte segments) the first time it is asked
    /// (once, whoever asks first; others wait for that check); then answers from memory. The
    /// error names the first offset that does not check out and why. It reads the file's
    /// length, not `size`: a truncation may have cut a sealed segment before its first read.
    pub(crate) fn checked(&self, size: u64) -> Result<(), String> {
        // Held through the scan: a second reader waits for the first one's answer.
        let mut check = self.check.lock();
        check
            .get_or_insert_with(|| {
                match self
                    .file
                    .metadata()
                    .and_then(|m| Ok((m.len(), scan(&self.file, m.len(), size)?)))
                {
                    Ok((len, s)) if s.valid == len => Ok(()),
                    Ok((_, s)) => Err(format!(
                        "offset {}: {}",
                        self.base + s.valid,
                        s.stop.unwrap_or_else(|| "a short segment".into())
                    )),
                    Err(e) => Err(format!("reading it: {e}")),
                }
            })
            .clone()
    }
}

/// A segment file found in the directory, before recovery decides whether to keep it.
pub(crate) struct Found {
    pub(crate) base: u64,
    pub(crate) path: PathBuf,
    pub(crate) len: u64,
}

/// Upstream's name: the base offset as 20 zero-padded digits (`u64::MAX` has 20).
pub(crate) fn path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}"))
}

fn base_of(name: &std::ffi::OsStr) -> Option<u64> {
    let name = name.to_str()?;
    (name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.parse().ok())
        .flatten()
}

/// The segment files in `dir`, by base. Other names are ignored (they are not ours to delete).
/// A misaligned or oversized segment means the log was written with another segment size:
/// that is refused before recovery could mistake it for a torn tail and delete data.
pub(crate) fn list(dir: &Path, segment_size: u64) -> io::Result<Vec<Found>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(base) = base_of(&entry.file_name()) else {
            continue;
        };
        let path = entry.path();
        let meta = entry.metadata()?;
        let problem = if !meta.is_file() {
            Some("is not a regular file".to_owned())
        } else if base % segment_size != 0 {
            Some(format!("is not aligned to the segment size {segment_size}"))
        } else if meta.len() > segment_size {
            Some(format!(
                "is {} bytes, longer than the segment size {segment_size}",
                meta.len()
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "commit log segment {} {problem}: was the log written with another segment size?",
                    path.display()
                ),
            ));
        }
        found.push(Found {
            base,
            path,
            len: meta.len(),
        });
    }
    found.sort_by_key(|f| f.base);
    Ok(found)
}

fn open_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true);
    o
}

/// Opens an existing segment for reading and positional writes.
pub(crate) fn open(found: &Found) -> io::Result<Segment> {
    let file = open_options().open(&found.path)?;
    Ok(Segment {
        base: found.base,
        file: Arc::new(file),
        check: Arc::new(Mutex::new(Some(Ok(())))),
    })
}

/// Creates a new, empty segment; an existing file of that name is an error, never reused.
/// With `reserve`, its `size` bytes of disk are reserved up front (see [`preallocate`]).
pub(crate) fn create(dir: &Path, base: u64, size: u64, reserve: bool) -> io::Result<Segment> {
    let path = path(dir, base);
    let file = open_options().create_new(true).open(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("creating commit log segment {}: {e}", path.display()),
        )
    })?;
    if reserve {
        preallocate(&file, &path, size);
    }
    Ok(Segment {
        base,
        file: Arc::new(file),
        check: Arc::new(Mutex::new(Some(Ok(())))),
    })
}

/// Reserves the segment's disk blocks without changing its length (`FALLOC_FL_KEEP_SIZE`), the
/// counterpart of upstream's full-size segment files: appends then write into allocated blocks
/// instead of making the filesystem allocate on every write (on ext4 that halves the cost of a
/// slave's append), and a segment does not fragment. The length stays the data's length, so
/// recovery is unchanged. Best effort: a filesystem without `fallocate` (or a full disk, which
/// the writes themselves then report) only loses the speed-up.
#[cfg(all(target_os = "linux", not(feature = "sim")))]
pub(crate) fn preallocate(file: &File, path: &Path, size: u64) {
    use rustix::fs::{FallocateFlags, fallocate};
    if let Err(e) = fallocate(file, FallocateFlags::KEEP_SIZE, 0, size) {
        tracing::debug!(file = %path.display(), error = %e, "commit log: segment not preallocated");
    }
}

#[cfg(not(all(target_os = "linux", not(feature = "sim"))))]
pub(crate) fn preallocate(_: &File, _: &Path, _: u64) {}

/// Makes created or removed directory entries durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::sync_dir(dir)
}

/// The result of scanning one segment.
pub(crate) struct Scan {
    /// How many leading bytes are whole, valid records.
    pub(crate) valid: u64,
    /// Why the scan stopped before the file's end, if it did.
    pub(crate) stop: Option<String>,
}

/// Walks the records of a segment file of `len` bytes and returns its longest valid prefix.
/// Invalid content ends the scan (it is a torn or corrupt tail); an IO error is returned as is,
/// so a failing disk never makes recovery truncate.
pub(crate) fn scan(file: &File, len: u64, segment_size: u64) -> io::Result<Scan> {
    scan_from(file, 0, len, segment_size)
}

/// [`scan`] from the record starting at `start` (a record boundary, or where [`resync`] found
/// one): `valid` is then the position where the valid run from `start` ends.
pub(crate) fn scan_from(file: &File, start: u64, len: u64, segment_size: u64) -> io::Result<Scan> {
    let mut r = BufReader::with_capacity(1 << 16, PosReader { file, pos: start });
    let mut pos = start;
    let stop = |pos, why: String| -> io::Result<Scan> {
        Ok(Scan {
            valid: pos,
            stop: Some(why),
        })
    };
    while pos < len {
        let avail = len - pos;
        if avail < MIN_BLANK_LEN {
            return stop(pos, format!("{avail} trailing bytes, too few for a header"));
        }
        let mut head = [0; MIN_BLANK_LEN as usize];
        r.read_exact(&mut head)?;
        let (frame, size) = match record::check(head, segment_size - pos) {
            Ok(x) => x,
            Err(why) => return stop(pos, why),
        };
        if size > avail {
            return stop(pos, format!("record of {size} bytes, only {avail} on disk"));
        }
        match frame {
            Frame::Ours => {
                let mut crc = [0; 4];
                r.read_exact(&mut crc)?;
                if hash_next(&mut r, size - HEADER_LEN)? != u32::from_be_bytes(crc) {
                    return stop(pos, "payload CRC mismatch".to_owned());
                }
            }
            Frame::Upstream => {
                let mut rec =
                    vec![0; usize::try_from(size).map_err(|_| io::ErrorKind::OutOfMemory)?];
                rec[..MIN_BLANK_LEN as usize].copy_from_slice(&head);
                r.read_exact(&mut rec[MIN_BLANK_LEN as usize..])?;
                if let Err(why) = record::check_upstream(&rec) {
                    return stop(pos, why);
                }
            }
            Frame::Blank => r.seek_relative((size - MIN_BLANK_LEN) as i64)?,
        }
        pos += size;
    }
    Ok(Scan {
        valid: pos,
        stop: None,
    })
}

/// The first position at or after `from` (below `len`) where a whole record checks out: its
/// header (size in bounds, a known MAGIC), and the CRC where its format has one (ours; an
/// upstream message's body CRC). How `verify` finds its footing again after a bad record, to
/// report every problem rather than the first. `None`: no record until the file's end.
pub(crate) fn resync(
    file: &File,
    from: u64,
    len: u64,
    segment_size: u64,
) -> io::Result<Option<u64>> {
    const WINDOW: usize = 1 << 16;
    let magics = [
        record::MAGIC,
        record::MESSAGE_MAGIC,
        record::MESSAGE_MAGIC_V2,
        record::BLANK_MAGIC,
    ];
    let mut buf = vec![0; WINDOW];
    let mut at = from;
    while at + MIN_BLANK_LEN <= len {
        let n = usize::try_from((len - at).min(WINDOW as u64)).expect("at most a window");
        file.read_exact_at(&mut buf[..n], at)?;
        let last = n - MIN_BLANK_LEN as usize; // the last header start in this window
        for i in 0..=last {
            let magic = u32::from_be_bytes(buf[i + 4..i + 8].try_into().expect("4 bytes"));
            if magics.contains(&magic) && record_at(file, at + i as u64, len, segment_size)? {
                return Ok(Some(at + i as u64));
            }
        }
        at += last as u64 + 1;
    }
    Ok(None)
}

/// Whether a whole valid record starts at `pos` of a segment file of `len` bytes.
fn record_at(file: &File, pos: u64, len: u64, segment_size: u64) -> io::Result<bool> {
    let mut head = [0; MIN_BLANK_LEN as usize];
    file.read_exact_at(&mut head, pos)?;
    let Ok((frame, size)) = record::check(head, segment_size - pos) else {
        return Ok(false);
    };
    if size > len - pos {
        return Ok(false);
    }
    let whole = || -> io::Result<Vec<u8>> {
        let mut rec = vec![0; usize::try_from(size).map_err(|_| io::ErrorKind::OutOfMemory)?];
        file.read_exact_at(&mut rec, pos)?;
        Ok(rec)
    };
    Ok(match frame {
        Frame::Blank => true,
        Frame::Ours => {
            let rec = whole()?;
            let crc = u32::from_be_bytes(rec[8..12].try_into().expect("4 bytes"));
            crc32fast::hash(&rec[HEADER_LEN as usize..]) == crc
        }
        Frame::Upstream => record::check_upstream(&whole()?).is_ok(),
    })
}

/// CRC32 of the next `len` bytes of `r`, hashed straight from its buffer.
fn hash_next(r: &mut impl BufRead, mut len: u64) -> io::Result<u32> {
    let mut h = crc32fast::Hasher::new();
    while len > 0 {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let n = buf.len().min(usize::try_from(len).unwrap_or(usize::MAX));
        h.update(&buf[..n]);
        r.consume(n);
        len -= n as u64;
    }
    Ok(h.finalize())
}

/// Sequential reads of a shared file by positional reads: the scan needs no cursor of the file's
/// own (readers `pread` the same file concurrently), and positional reads are what every file
/// type of the IO facade offers.
struct PosReader<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for PosReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for PosReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the recovery scan seeks only forward",
                ));
            }
        };
        self.pos = pos.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}
