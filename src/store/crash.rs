//! Crash points (feature `harness` only): a counter of the steps that change the disk in a
//! multi-step operation (a truncation, a segment roll). Armed at `k`, the first `k` steps run
//! and every later one fails with an injected error before it touches anything, and so does
//! every cleanup a live process would do: the files are left exactly as a process killed after
//! step `k` leaves them (its written bytes are in the page cache, which outlives it). While armed,
//! seals run in place, so the step order is the same in every run.

use crate::sync::Mutex;
use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct CrashPoints {
    /// Steps allowed before the "crash"; `u64::MAX`: not armed.
    limit: AtomicU64,
    /// The steps taken (or refused) since the last arming, by name.
    steps: Mutex<Vec<&'static str>>,
    /// A planted defect: truncation cuts its tail without copying it into the quarantine.
    pub(crate) skip_copy: AtomicBool,
}

impl Default for CrashPoints {
    fn default() -> Self {
        CrashPoints {
            limit: AtomicU64::new(u64::MAX),
            steps: Mutex::new(Vec::new()),
            skip_copy: AtomicBool::new(false),
        }
    }
}

impl CrashPoints {
    /// Arms the crash after `steps` more steps and forgets the steps counted so far.
    pub(crate) fn arm(&self, steps: u64) {
        self.steps.lock().clear();
        self.limit.store(steps, Ordering::SeqCst);
    }

    pub(crate) fn armed(&self) -> bool {
        self.limit.load(Ordering::SeqCst) != u64::MAX
    }

    /// Counts `step`, about to run; `true` if the process is dead by then (it must not run).
    pub(crate) fn dead_at(&self, step: &'static str) -> bool {
        if !self.armed() {
            return false; // nothing recorded: a long harness run does not grow the list
        }
        let mut steps = self.steps.lock();
        steps.push(step);
        steps.len() as u64 > self.limit.load(Ordering::SeqCst)
    }

    /// Whether the crash has happened (a cleanup must not run).
    pub(crate) fn is_dead(&self) -> bool {
        self.steps.lock().len() as u64 > self.limit.load(Ordering::SeqCst)
    }

    /// The steps run since arming, by name (those refused after the crash included).
    pub(crate) fn steps(&self) -> Vec<&'static str> {
        self.steps.lock().clone()
    }
}
