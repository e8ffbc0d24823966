//! A change counter that wakes its waiters in the order they began to wait.
//!
//! It replaces `tokio::sync::watch` where only "something changed" matters: a watch channel
//! spreads its receivers over eight `Notify`s picked by tokio's per-thread random generator,
//! so which of several waiting tasks runs first after a change was a draw, and a simulation
//! seed did not replay (two slave writers woken by one append sent in either order). Here one
//! `Notify` holds every waiter, in order.

use crate::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Notify;

/// See the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct Pulse {
    version: AtomicU64,
    notify: Notify,
}

/// One waiter's view: the last version it saw.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen(u64);

impl Pulse {
    /// Records a change and wakes every waiter.
    pub(crate) fn bump(&self) {
        self.version.fetch_add(1, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// The current version, as a starting point for [`changed`](Self::changed).
    pub(crate) fn seen(&self) -> Seen {
        Seen(self.version.load(Ordering::Acquire))
    }

    /// Completes once a change after `seen` happened (at once if one already did), and
    /// advances `seen` past it.
    pub(crate) async fn changed(&self, seen: &mut Seen) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check: a bump between the check and the await still wakes.
            notified.as_mut().enable();
            let now = self.version.load(Ordering::Acquire);
            if now != seen.0 {
                seen.0 = now;
                return;
            }
            notified.await;
        }
    }
}
