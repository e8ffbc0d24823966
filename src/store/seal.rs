//! The checkpoint's keeper: sealing full segments (sync them, then move the checkpoint past
//! them) in the background (`io::thread`), so an append that crosses a segment end does not
//! wait for a whole segment to reach the disk; only the next roll waits for it
//! ([`Sealer::settle`]), so at most one full segment is ever unsealed.
//!
//! The checkpoint only ever names synced segments, so everything below it survives a crash; of
//! the segments at or above it, the last two are what recovery may cut (section 9.2 of
//! docs/SPEC.md). A truncation lowers the checkpoint and makes any seal still in flight stale,
//! so a late seal never names bytes that were cut.

use std::io;
use std::path::{Path, PathBuf};

use super::dir;
use crate::core::model_trace::{REPLICATION_TARGET as MODEL, replication_step as model_step};
use crate::io::fs::{self, File};
use crate::io::thread;
use crate::sync::{Arc, Mutex};

#[derive(Debug)]
struct State {
    /// The checkpoint as written.
    sealed: u64,
    /// Bumped by every lowering: a seal started before it is stale.
    generation: u64,
}

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Sealer {
    dir: PathBuf,
    state: Arc<Mutex<State>>,
    threads: Mutex<Vec<thread::Handle>>,
    #[cfg(feature = "harness")]
    pub(crate) crash: Arc<super::crash::CrashPoints>,
}

impl Sealer {
    pub(crate) fn new(dir: &Path, sealed: u64) -> Self {
        Sealer {
            dir: dir.to_owned(),
            state: Arc::new(Mutex::new(State {
                sealed,
                generation: 0,
            })),
            threads: Mutex::new(Vec::new()),
            #[cfg(feature = "harness")]
            crash: Arc::default(),
        }
    }

    /// The checkpoint as last written.
    pub(crate) fn sealed(&self) -> u64 {
        self.state.lock().sealed
    }

    /// Before a roll creates the segment at `next`: waits for the seals in flight and, if the
    /// checkpoint is still below the segment before `next` (a seal failed), seals `files` (the
    /// full segments it does not cover) in place; an error fails the roll. So at most one full
    /// segment is ever unsealed besides the one appends go to, and a crash can tear only those
    /// two (the rule [`CommitLog::open`](super::CommitLog::open) relies on).
    pub(crate) fn settle(&self, next: u64, size: u64, files: &[Arc<File>]) -> io::Result<()> {
        self.join();
        let below = next.saturating_sub(size);
        if self.state.lock().sealed >= below {
            return Ok(());
        }
        for f in files {
            f.sync_data()?;
        }
        fs::sync_dir(&self.dir)?;
        self.advance(below)
    }

    /// The caller synced every segment below `up_to` (all full): move the checkpoint there.
    pub(crate) fn advance(&self, up_to: u64) -> io::Result<()> {
        advance(&self.dir, &self.state, up_to, None).map(drop)
    }

    /// Moves the checkpoint back to `to` if it is past it, and makes seals in flight stale.
    pub(crate) fn lower(&self, to: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        s.generation += 1;
        if s.sealed > to {
            step!(self.crash, "lower the checkpoint");
            dir::write_checkpoint(&self.dir, to)?;
            s.sealed = to;
        }
        Ok(())
    }

    /// Sets the checkpoint to `to` (an empty log moved to a new base), stale-making seals.
    pub(crate) fn reset(&self, to: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        s.generation += 1;
        dir::write_checkpoint(&self.dir, to)?;
        s.sealed = to;
        Ok(())
    }

    /// Seals `files` (the full segments below `up_to` not yet synced): syncs them and the
    /// directory, then moves the checkpoint to `up_to`, on a thread of its own. A failure is
    /// logged and leaves the checkpoint where it was (the next open then scans more).
    pub(crate) fn seal(&self, files: Vec<Arc<File>>, up_to: u64) {
        let generation = self.state.lock().generation;
        let (dir, state) = (self.dir.clone(), self.state.clone());
        #[cfg(feature = "harness")]
        let crash = self.crash.clone();
        let work = move || {
            let synced = (|| {
                step!(crash, "seal: sync the full segment");
                files.iter().try_for_each(|f| f.sync_data())?;
                fs::sync_dir(&dir)?;
                step!(crash, "seal: write the checkpoint");
                advance(&dir, &state, up_to, Some(generation))
            })();
            if let Ok(true) = synced {
                // Durable below `up_to` now (the model's Flush: in the simulation the seal runs
                // in place, inside the write that filled the segment, after the part of it that
                // went before `up_to` was recorded).
                model_step(|seq| tracing::trace!(target: MODEL, seq, action = "Sync", to = up_to));
            }
            if let Err(error) = synced {
                tracing::warn!(dir = %dir.display(), up_to, %error, "commit log: sealing a segment failed");
            }
        };
        if planted!(self.crash.armed()) {
            work(); // in place: the same step order in every run
            return;
        }
        let mut threads = self.threads.lock();
        threads.retain(|t| !t.is_finished());
        match thread::spawn("commitlog-seal", work) {
            Ok(thread) => threads.push(thread),
            Err(error) => {
                tracing::warn!(%error, "commit log: no thread to seal a segment; the checkpoint stays behind");
            }
        }
    }

    /// Waits for every seal in flight.
    pub(crate) fn join(&self) {
        for thread in std::mem::take(&mut *self.threads.lock()) {
            thread.join();
        }
    }
}

fn advance(
    dir: &Path,
    state: &Mutex<State>,
    up_to: u64,
    generation: Option<u64>,
) -> io::Result<bool> {
    let mut s = state.lock();
    if generation.is_some_and(|g| g != s.generation) || s.sealed >= up_to {
        return Ok(false);
    }
    dir::write_checkpoint(dir, up_to)?;
    s.sealed = up_to;
    Ok(true)
}
