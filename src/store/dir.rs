//! The store directory's own files: the marker that says this store wrote the directory (and
//! with which segment size), the exclusive lock, the checkpoint of sealed segments, and the
//! quarantine that recovery and repair move bytes into instead of deleting them.
//!
//! It is not the segment format (see [`super::segment`] and [`super::record`]).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::core::epoch::EpochEntry;
use crate::io::fs::{self, File, OpenOptions};

/// The marker file: its presence means this crate created the directory.
pub(crate) const MARKER: &str = "rmq-lifecycle.store";
/// The lock file; its content is the holder's pid (informational: the lock is the `flock`).
pub(crate) const LOCK: &str = "lock";
/// The checkpoint: every segment below its offset is full and synced.
pub(crate) const CHECKPOINT: &str = "checkpoint";
/// Where cut bytes and set-aside segment files go.
pub(crate) const QUARANTINE: &str = "quarantine";

const MARKER_HEAD: &str = "rmq-lifecycle commit log";
const FORMAT: u32 = 1;

fn invalid_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Whether `name` is one of the files a store directory holds (its own files, segments,
/// temporary files of an interrupted atomic write).
fn is_ours(name: &str) -> bool {
    matches!(name, MARKER | LOCK | CHECKPOINT | QUARANTINE | EPOCHS)
        || name.ends_with(".tmp")
        || (name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()))
}

/// What the marker records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Marker {
    pub(crate) segment_size: u64,
}

/// Reads the marker of `dir`: `Ok(None)` if there is none.
pub(crate) fn read_marker(dir: &Path) -> io::Result<Option<Marker>> {
    let path = dir.join(MARKER);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = |why: &str| invalid_data(format!("store marker {}: {why}", path.display()));
    let mut lines = text.lines();
    if lines.next() != Some(MARKER_HEAD) {
        return Err(bad("not written by rmq-lifecycle"));
    }
    let mut format = None;
    let mut segment_size = None;
    for line in lines {
        match line.split_once(' ') {
            Some(("format", v)) => format = v.parse::<u32>().ok(),
            Some(("segment_size", v)) => segment_size = v.parse::<u64>().ok(),
            _ => {}
        }
    }
    match (format, segment_size) {
        (Some(FORMAT), Some(segment_size)) => Ok(Some(Marker { segment_size })),
        (Some(f), _) if f != FORMAT => Err(bad(&format!(
            "store format {f}; this build reads format {FORMAT}"
        ))),
        _ => Err(bad("missing or malformed format or segment_size line")),
    }
}

/// Writes `contents` to `dir/name` atomically (a temporary file, synced, renamed over it, the
/// directory synced): a crash leaves the old or the new content, never a mix.
pub(crate) fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    fs::sync_dir(dir)
}

/// Makes `dir` a store directory with this segment size, or checks that it is one with the same
/// size. A directory holding anything this crate did not write is refused before anything is
/// created in it (it may be another program's data: a Java broker's store, say).
pub(crate) fn claim(dir: &Path, segment_size: u64) -> io::Result<()> {
    if let Some(marker) = read_marker(dir)? {
        if marker.segment_size != segment_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "store {} was created with segment size {}, not {segment_size}: \
                     open it with segment size {} (--segment-size {})",
                    dir.display(),
                    marker.segment_size,
                    marker.segment_size,
                    marker.segment_size
                ),
            ));
        }
        return Ok(());
    }
    let mut foreign = Vec::new();
    let mut ours = false;
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if is_ours(&name) && name != LOCK {
            ours = true;
        }
        if !is_ours(&name) {
            foreign.push(name.into_owned());
        }
    }
    if !foreign.is_empty() || ours {
        foreign.sort();
        let what = if foreign.is_empty() {
            "segment files but no store marker".to_owned()
        } else {
            format!("files this store did not write ({})", list(&foreign))
        };
        return Err(invalid_data(format!(
            "{} holds {what}; nothing was changed. Point the store at an empty or new directory \
             (a store directory is created with a {MARKER} file)",
            dir.display()
        )));
    }
    let text = format!("{MARKER_HEAD}\nformat {FORMAT}\nsegment_size {segment_size}\n");
    write_atomic(dir, MARKER, text.as_bytes())
}

fn list(names: &[String]) -> String {
    let shown: Vec<_> = names.iter().take(3).map(String::as_str).collect();
    match names.len() - shown.len() {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// The exclusive lock on a store directory, held while the value lives.
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
}

/// Takes the exclusive lock of `dir`; if another process (or another open log in this one) holds
/// it, the error names the holder's pid.
pub(crate) fn lock(dir: &Path) -> io::Result<Lock> {
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    if !fs::try_lock(&file)? {
        let holder = fs::read_to_string(&path).unwrap_or_default();
        let holder = holder.trim();
        let holder = if holder.is_empty() {
            "another process".to_owned()
        } else {
            format!("process {holder}")
        };
        return Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!(
                "store {} is in use by {holder} (lock file {}); stop it, or use another directory",
                dir.display(),
                path.display()
            ),
        ));
    }
    file.set_len(0)?;
    use std::os::unix::fs::FileExt;
    file.write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0)?;
    Ok(Lock { _file: file })
}

/// Reads the checkpoint: every segment below the returned offset is full and synced (`None` if
/// there is no checkpoint file: a store that never sealed a segment).
pub(crate) fn read_checkpoint(dir: &Path) -> io::Result<Option<u64>> {
    let path = dir.join(CHECKPOINT);
    match fs::read_to_string(&path) {
        Ok(text) => text
            .strip_prefix("sealed ")
            .and_then(|v| v.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| {
                invalid_data(format!(
                    "checkpoint {} is malformed: {text:?}. Nothing was changed; \
                     `rmq-lifecycle store repair {}` rewrites it",
                    path.display(),
                    dir.display()
                ))
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Records that every segment below `sealed` is full and synced.
pub(crate) fn write_checkpoint(dir: &Path, sealed: u64) -> io::Result<()> {
    write_atomic(dir, CHECKPOINT, format!("sealed {sealed}\n").as_bytes())
}

/// The quarantine directory, created if missing.
pub(crate) fn quarantine(dir: &Path) -> io::Result<PathBuf> {
    let q = dir.join(QUARANTINE);
    fs::create_dir_all(&q)?;
    Ok(q)
}

/// `path`, or `path.1`, `path.2`, ... : the first that does not exist, so nothing set aside
/// earlier is overwritten.
pub(crate) fn free_name(path: PathBuf) -> PathBuf {
    let mut candidate = path.clone();
    let mut n = 1;
    while fs::exists(&candidate) {
        candidate = PathBuf::from(format!("{}.{n}", path.display()));
        n += 1;
    }
    candidate
}

/// Copies `len` bytes of `file` from `pos` into a new quarantine file named `name` (synced),
/// before the caller cuts them (see [`free_name`]).
pub(crate) fn set_aside(
    dir: &Path,
    name: &str,
    file: &File,
    pos: u64,
    len: u64,
) -> io::Result<PathBuf> {
    use std::os::unix::fs::FileExt;
    let path = free_name(quarantine(dir)?.join(name));
    let mut bytes = vec![0; usize::try_from(len).map_err(|_| io::ErrorKind::OutOfMemory)?];
    file.read_exact_at(&mut bytes, pos)?;
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    out.write_all(&bytes)?;
    out.sync_all()?;
    fs::sync_dir(&dir.join(QUARANTINE))?;
    Ok(path)
}

/// The epoch file: which master term wrote which bytes (see [`crate::core::epoch`]).
pub(crate) const EPOCHS: &str = "epochs";
const EPOCHS_HEAD: &str = "rmq-lifecycle epochs 1";

/// Reads the epoch file (empty if there is none).
pub(crate) fn read_epochs(dir: &Path) -> io::Result<Vec<EpochEntry>> {
    let path = dir.join(EPOCHS);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let bad = |why: String| invalid_data(format!("epoch file {}: {why}", path.display()));
    let mut lines = text.lines();
    if lines.next() != Some(EPOCHS_HEAD) {
        return Err(bad(format!("the first line is not {EPOCHS_HEAD:?}")));
    }
    let mut entries = Vec::new();
    for line in lines {
        let parsed = line
            .split_once(' ')
            .and_then(|(epoch, start)| Some((epoch.parse().ok()?, start.parse().ok()?)));
        let Some((epoch, start)) = parsed else {
            return Err(bad(format!("malformed line {line:?} (want `EPOCH START`)")));
        };
        entries.push(EpochEntry { epoch, start });
    }
    crate::core::epoch::check_entries(&entries).map_err(bad)?;
    Ok(entries)
}

/// Replaces the epoch file atomically.
pub(crate) fn write_epochs(dir: &Path, entries: &[EpochEntry]) -> io::Result<()> {
    let mut text = format!("{EPOCHS_HEAD}\n");
    for e in entries {
        text.push_str(&format!("{} {}\n", e.epoch, e.start));
    }
    write_atomic(dir, EPOCHS, text.as_bytes())
}
