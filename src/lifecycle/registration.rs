//! The RAII guard behind every `Registered` and `Running` handle: membership in a table that is
//! removed exactly once, by whichever holder lets go first.

use super::CloseReason;
use crate::sync::Arc;
use std::fmt::Debug;

/// A table a lifecycle handle can be registered in. Crate-private: `remove` is a raw mutator.
pub(crate) trait Membership: Send + Sync + 'static {
    /// What identifies a member (a channel slot, a connection id).
    type Key: Clone + Debug + Send + Sync + 'static;
    /// The member's kind, for traces ("client channel", "HA connection").
    const KIND: &'static str;
    /// Removes the member; false if another path already did. Must be idempotent. `holder` and
    /// `reason` say who let go and why, for the model trace (models/README.md).
    fn remove(&self, key: &Self::Key, holder: Holder, reason: &CloseReason) -> bool;
    /// The member's id as a number, for the trace's `id` field.
    fn trace_id(key: &Self::Key) -> u64;
}

/// Who holds a [`Registration`]: the lifecycle handle, or one of its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    /// The `Registered` or `Running` handle.
    Handle,
    /// An HA connection's reader task.
    Reader,
    /// An HA connection's writer task.
    Writer,
    /// A client channel's task.
    Task,
}

/// Membership of one key in one table; removes it when closed or dropped.
///
/// A handle and each of its tasks hold one (see [`Registration::duplicate`]); the table's
/// idempotent removal makes their closes one.
#[derive(Debug)]
pub(crate) struct Registration<T: Membership> {
    table: Arc<T>,
    key: T::Key,
    holder: Holder,
    done: bool,
}

impl<T: Membership> Registration<T> {
    /// Wraps a key that was just added to `table`.
    pub(crate) fn new(table: Arc<T>, key: T::Key) -> Self {
        tracing::debug!(id = T::trace_id(&key), "{} registered", T::KIND);
        Registration {
            table,
            key,
            holder: Holder::Handle,
            done: false,
        }
    }

    /// The key.
    pub(crate) fn key(&self) -> &T::Key {
        &self.key
    }

    /// The table.
    pub(crate) fn table(&self) -> &Arc<T> {
        &self.table
    }

    /// A second guard on the same membership, for a task.
    pub(crate) fn duplicate(&self, holder: Holder) -> Self {
        Registration {
            table: self.table.clone(),
            key: self.key.clone(),
            holder,
            done: false,
        }
    }

    /// Removes the membership if no one did yet; traces the reason if this call did it.
    pub(crate) fn close(&mut self, reason: &CloseReason) -> bool {
        if std::mem::replace(&mut self.done, true) {
            return false;
        }
        let removed = self.table.remove(&self.key, self.holder, reason);
        if removed {
            tracing::debug!(id = T::trace_id(&self.key), ?reason, "{} closed", T::KIND);
        }
        removed
    }
}

impl<T: Membership> Drop for Registration<T> {
    fn drop(&mut self) {
        self.close(&CloseReason::TaskDropped);
    }
}
