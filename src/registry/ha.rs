//! `HaRegistry`: the master's table of HA connections (upstream `DefaultHAService`'s
//! `connectionList` + `connectionCount`), and each connection's acknowledged offset.
//!
//! The count is the table's length (`CountIsTable`): upstream keeps a separate `AtomicInteger`
//! that is incremented in the connection's constructor and decremented by its reader thread, so
//! the two drift apart as soon as a path skips one of them. Removal is by connection id and
//! idempotent, so every exit path of a connection may call it. `close_all` closes the table to new
//! registrations in the same critical section that empties it, so a connection accepted during
//! shutdown is either refused or removed, never left behind (`NoLeakAtQuiescence`).
//!
//! Each row holds its connection's [`StopSignal`], and every removal (a task's exit, the owner's
//! close, `close_all`, housekeeping) raises it under the table lock before the row goes, so a task
//! that is still running is either in the table or already told to stop (`StopBeforeRemove`, and
//! with it `NoRunningUnregistered`). The mutators are crate-private: rows are added and removed
//! only through `lifecycle::HaConnection` and its tasks' context; what is public is read-only.
//!
//! No IO, no clock, no runtime: waiting for replication is the driver's job; this table answers
//! how many connections have acknowledged an offset.

use super::stop::StopSignal;
use crate::core::model_trace::{self, HA_TARGET as MODEL};
use crate::lifecycle::CloseReason;
use crate::lifecycle::registration::Holder;
use crate::sync::Mutex;
use crate::sync::atomic::{AtomicU64, Ordering};
use rustc_hash::FxBuildHasher;
use std::fmt;

/// An HA connection's identity in the table; never reused. Only the table hands them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ConnId(pub(crate) u64);

impl ConnId {
    /// The id as a number (for traces and metrics labels).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ha#{}", self.0)
    }
}

/// Why a connection was not registered. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HaRegisterError {
    /// `close_all` ran: the master is shutting down.
    #[error("the HA service is shutting down")]
    ShuttingDown,
    /// `max_connections` are registered.
    #[error("too many HA connections (limit {max})")]
    TooManyConnections {
        /// The configured limit.
        max: usize,
    },
}

/// One row of the table, as seen from outside.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HaEntry {
    /// The connection.
    pub id: ConnId,
    /// Its peer, for traces and metrics.
    pub peer: String,
    /// The last valid report; `None` until the first, and such a connection never counts for
    /// sync replication.
    pub ack: Option<u64>,
}

#[derive(Debug)]
struct Row {
    peer: String,
    ack: Option<u64>,
    /// Raised before the row is removed, on every path.
    stop: StopSignal,
    /// Its tasks were started (`HaConnection::spawn`).
    started: bool,
    /// Housekeeping found it not started once already (see [`HaRegistry::reclaim_unstarted`]).
    seen_unstarted: bool,
}

#[derive(Debug, Default)]
struct Table {
    closed: bool,
    rows: hashbrown::HashMap<ConnId, Row, FxBuildHasher>,
}

/// Deliberate defects, for proving that the harnesses catch them (feature `harness` only).
#[cfg(feature = "harness")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HaFaults {
    /// `close_all` empties the table and marks it closed in two critical sections: a
    /// registration in between survives the shutdown.
    pub split_close_all: bool,
    /// A row is removed without raising its stop signal: when one task of a connection ends,
    /// the other keeps running on a removed row.
    pub remove_without_stop: bool,
}

/// The connection table.
///
/// Read-only from outside: a row is added by [`HaConnection::register`] and removed by that
/// connection's close or its tasks' end, each exactly once. The table caps the connections and
/// counts acknowledgements for sync replication:
///
/// ```
/// use rmq_lifecycle::lifecycle::{CloseReason, HaConnection};
/// use rmq_lifecycle::registry::{HaRegisterError, HaRegistry};
/// use std::sync::Arc;
///
/// let registry = Arc::new(HaRegistry::new(1));
/// let first = HaConnection::new((), "10.0.0.2:41000").register(&registry).unwrap();
/// let refused = HaConnection::new((), "10.0.0.3:41000").register(&registry).unwrap_err();
/// assert_eq!(refused.error, HaRegisterError::TooManyConnections { max: 1 });
/// refused.connection.close(CloseReason::Rejected(refused.error.to_string()));
///
/// assert_eq!(registry.count(), 1);
/// assert_eq!(registry.entries()[0].ack, None); // no report yet: counts for no sync wait
/// assert_eq!(registry.acked_at_least(0), 0);
/// first.close(CloseReason::PeerClosed);
/// assert_eq!((registry.count(), registry.accepted_total(), registry.closed_total()), (0, 1, 1));
/// ```
///
/// [`HaConnection::register`]: crate::lifecycle::HaConnection::register
#[derive(Debug)]
pub struct HaRegistry {
    table: Mutex<Table>,
    next_id: AtomicU64,
    accepted: AtomicU64,
    removed: AtomicU64,
    max_connections: usize,
    /// The next model trace sequence number (see [`model_trace`]).
    model_seq: AtomicU64,
    #[cfg(feature = "harness")]
    faults: HaFaults,
}

impl Default for HaRegistry {
    fn default() -> Self {
        Self::new(usize::MAX)
    }
}

impl HaRegistry {
    /// An empty, open table admitting at most `max_connections`.
    pub fn new(max_connections: usize) -> Self {
        HaRegistry {
            table: Mutex::new(Table::default()),
            next_id: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            removed: AtomicU64::new(0),
            max_connections,
            model_seq: AtomicU64::new(0),
            #[cfg(feature = "harness")]
            faults: HaFaults::default(),
        }
    }

    /// A table with planted defects, for the harnesses.
    #[cfg(feature = "harness")]
    pub fn with_faults(max_connections: usize, faults: HaFaults) -> Self {
        HaRegistry {
            faults,
            ..Self::new(max_connections)
        }
    }

    /// Adds a connection (before any of its tasks start); `stop` is raised when the row goes.
    pub(crate) fn register(&self, peer: &str, stop: StopSignal) -> Result<ConnId, HaRegisterError> {
        let mut table = self.table.lock();
        if table.closed || table.rows.len() >= self.max_connections {
            let closed = table.closed;
            self.model_step(
                |seq| tracing::trace!(target: MODEL, seq, action = "RegisterRefused", closed),
            );
            return Err(if closed {
                HaRegisterError::ShuttingDown
            } else {
                HaRegisterError::TooManyConnections {
                    max: self.max_connections,
                }
            });
        }
        let id = ConnId(self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        self.model_step(|seq| tracing::trace!(target: MODEL, seq, action = "Register", c = id.0));
        table.rows.insert(
            id,
            Row {
                peer: peer.to_owned(),
                ack: None,
                stop,
                started: false,
                seen_unstarted: false,
            },
        );
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(id)
    }

    /// Notes that the row's tasks are starting; false if the row is gone (reclaimed or closed),
    /// in which case its stop signal is already raised and the tasks must not run.
    pub(crate) fn mark_started(&self, id: ConnId) -> bool {
        match self.table.lock().rows.get_mut(&id) {
            Some(row) => {
                row.started = true;
                true
            }
            None => false,
        }
    }

    /// Raises the row's stop signal, then removes it; false if it was not there (already removed
    /// by another path). `by` and `reason` (who let go, and why) are for the model trace.
    pub(crate) fn deregister(&self, id: ConnId, by: Holder, reason: &CloseReason) -> bool {
        let mut table = self.table.lock();
        // Numbered before the signal is raised: a task that sees it acts after this step.
        let seq = self.model_seq();
        let row = table.rows.remove(&id);
        if let Some(row) = &row
            && !planted!(self.faults.remove_without_stop)
        {
            row.stop.stop();
        }
        let removed = row.is_some();
        if let Some(seq) = seq {
            // Whether the removed row's signal is raised now (StopBeforeRemove).
            let stopped = row.as_ref().is_some_and(|r| r.stop.is_stopped());
            let c = id.0;
            match by {
                Holder::Handle | Holder::Task => {
                    tracing::trace!(target: MODEL, seq, action = "Close", c, removed, stopped)
                }
                Holder::Reader | Holder::Writer => {
                    let t = if by == Holder::Reader {
                        "reader"
                    } else {
                        "writer"
                    };
                    let why = model_why(reason);
                    tracing::trace!(target: MODEL, seq, action = "End", c, t, why, removed, stopped);
                }
            }
        }
        // Counted under the lock, so a reader that finds the row gone finds it counted closed.
        if removed {
            self.removed.fetch_add(1, Ordering::Relaxed);
        }
        drop(table);
        removed
    }

    /// Records a model action (see [`model_trace`]) with the next sequence number: call it inside
    /// the critical section that makes the action take effect.
    pub(crate) fn model_step(&self, record: impl FnOnce(u64)) {
        if let Some(seq) = self.model_seq() {
            record(seq);
        }
    }

    /// The next model trace sequence number, if recording: for a step whose event is written
    /// after its effects, numbered before any of them can be seen.
    fn model_seq(&self) -> Option<u64> {
        model_trace::ha_enabled().then(|| self.model_seq.fetch_add(1, Ordering::Relaxed))
    }

    /// Opens a connection's gate (`go`: its tasks may run) inside the table's critical section,
    /// so a shutdown's `close_all` takes effect wholly before it (the gated tasks see their stop
    /// and never run) or wholly after (they run, then see it), in the order the model trace
    /// numbers the two. Outside the lock, a gate opened between `close_all`'s step and its
    /// signals let a task run that the trace said was stopped first (trace validation found it).
    pub(crate) fn open_gate(&self, id: ConnId, go: &StopSignal) {
        let _table = self.table.lock();
        self.model_step(|seq| tracing::trace!(target: MODEL, seq, action = "OpenGate", c = id.0));
        go.stop();
    }

    /// The id the next registration gets (for the model trace of the planted 5.1.4 order, whose
    /// tasks start before their row exists).
    #[cfg(feature = "harness")]
    pub(crate) fn next_id(&self) -> ConnId {
        ConnId(self.next_id.load(Ordering::Relaxed) + 1)
    }

    /// Shutdown: refuses new registrations and removes every connection, raising each one's stop
    /// signal first, atomically. Returns the ids removed (their owners' own removal is then a
    /// no-op).
    pub(crate) fn close_all(&self) -> Vec<ConnId> {
        let mut table = self.table.lock();
        if planted!(self.faults.split_close_all) {
            let ids = Self::stop_and_drain(&mut table);
            drop(table);
            self.removed.fetch_add(ids.len() as u64, Ordering::Relaxed);
            self.table.lock().closed = true;
            return ids;
        }
        self.model_step(|seq| tracing::trace!(target: MODEL, seq, action = "CloseAll"));
        table.closed = true;
        let ids = Self::stop_and_drain(&mut table);
        self.removed.fetch_add(ids.len() as u64, Ordering::Relaxed);
        ids
    }

    fn stop_and_drain(table: &mut Table) -> Vec<ConnId> {
        table
            .rows
            .drain()
            .map(|(id, row)| {
                row.stop.stop();
                id
            })
            .collect()
    }

    /// Housekeeping for leaked handles: removes (stop first) every row whose tasks were never
    /// started and that the previous call already found so. A `Registered` handle that is
    /// forgotten (`mem::forget`) thus holds its row, and a slot under `max_connections`, for at
    /// most two housekeeping periods. Returns the rows reclaimed.
    pub(crate) fn reclaim_unstarted(&self) -> usize {
        let mut table = self.table.lock();
        let mut reclaimed = 0;
        table.rows.retain(|id, row| {
            if row.started {
                return true;
            }
            if !row.seen_unstarted {
                row.seen_unstarted = true;
                return true;
            }
            tracing::warn!(id = id.0, peer = %row.peer, "HA row reclaimed: registered but never started (a leaked handle)");
            row.stop.stop();
            self.model_step(|seq| tracing::trace!(target: MODEL, seq, action = "Reclaim", c = id.0));
            reclaimed += 1;
            false
        });
        drop(table);
        self.removed.fetch_add(reclaimed as u64, Ordering::Relaxed);
        reclaimed as usize
    }

    /// True once `close_all` ran.
    pub fn is_closed(&self) -> bool {
        self.table.lock().closed
    }

    /// Records a valid report; false if the connection is gone.
    pub(crate) fn record_ack(&self, id: ConnId, offset: u64) -> bool {
        match self.table.lock().rows.get_mut(&id) {
            Some(row) => {
                let ack = row.ack.map_or(offset, |a| a.max(offset));
                if row.ack != Some(ack) {
                    self.model_step(|seq| tracing::trace!(target: MODEL, seq, action = "Ack", c = id.0, o = ack));
                }
                row.ack = Some(ack);
                true
            }
            None => false,
        }
    }

    /// Connections in the table (`CountIsTable`: this is the table's length).
    pub fn count(&self) -> usize {
        self.table.lock().rows.len()
    }

    /// Connections that reported at least `offset` (upstream GroupTransferService's count,
    /// without the master itself).
    pub fn acked_at_least(&self, offset: u64) -> usize {
        self.table
            .lock()
            .rows
            .values()
            .filter(|r| r.ack.is_some_and(|a| a >= offset))
            .count()
    }

    /// Connections whose ack is within `max_gap` of `master_max` (upstream
    /// `inSyncReplicasNums` minus the master, with the gap compared strictly).
    pub fn in_sync(&self, master_max: u64, max_gap: u64) -> usize {
        self.table
            .lock()
            .rows
            .values()
            .filter(|r| {
                r.ack
                    .is_some_and(|a| master_max.saturating_sub(a) < max_gap)
            })
            .count()
    }

    /// The table's rows, ordered by id.
    pub fn entries(&self) -> Vec<HaEntry> {
        let table = self.table.lock();
        let mut out: Vec<_> = table
            .rows
            .iter()
            .map(|(id, r)| HaEntry {
                id: *id,
                peer: r.peer.clone(),
                ack: r.ack,
            })
            .collect();
        out.sort_by_key(|e| e.id);
        out
    }

    /// Connections registered since start.
    pub fn accepted_total(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections removed since start.
    pub fn closed_total(&self) -> u64 {
        self.removed.load(Ordering::Relaxed)
    }
}

/// A task's close reason as the model's way for a task to end (models/README.md).
fn model_why(reason: &CloseReason) -> &'static str {
    match reason {
        CloseReason::PeerClosed => "PeerClosed",
        CloseReason::ProtocolError(_) => "Protocol",
        CloseReason::IdleTimeout => "Idle",
        CloseReason::Shutdown => "Stop",
        CloseReason::TaskDropped => "Dropped",
        CloseReason::Io(_) | CloseReason::Rejected(_) | CloseReason::Local => "Fail",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream `HAServerTest.inSyncReplicasNums` with its four slaves (the master not counted).
    #[test]
    fn in_sync_counts_like_upstream() {
        let r = HaRegistry::default();
        let gap = 256 << 20;
        for ack in [123, 124, 123, 125] {
            let id = r.register("s", StopSignal::new()).unwrap();
            assert!(r.record_ack(id, ack));
        }
        assert_eq!(r.in_sync(gap, gap), 4);
        assert_eq!(r.in_sync(123 + gap, gap), 2);
        assert_eq!(r.in_sync(124 + gap, gap), 1);
        assert_eq!(r.in_sync(125 + gap, gap), 0);
        assert_eq!(r.acked_at_least(124), 2);
    }

    #[test]
    fn unreported_connections_never_count() {
        let r = HaRegistry::default();
        r.register("probe", StopSignal::new()).unwrap();
        assert_eq!(r.acked_at_least(0), 0);
        assert_eq!(r.in_sync(0, 1 << 30), 0);
        assert_eq!(r.count(), 1);
    }

    #[test]
    fn removal_is_idempotent_and_close_all_refuses_newcomers() {
        let r = HaRegistry::new(2);
        let (sa, sb) = (StopSignal::new(), StopSignal::new());
        let a = r.register("a", sa.clone()).unwrap();
        let _b = r.register("b", sb.clone()).unwrap();
        assert_eq!(
            r.register("c", StopSignal::new()),
            Err(HaRegisterError::TooManyConnections { max: 2 })
        );
        assert!(r.deregister(a, Holder::Handle, &CloseReason::Local));
        assert!(
            sa.is_stopped(),
            "StopBeforeRemove: deregister raised the row's stop"
        );
        assert!(!r.deregister(a, Holder::Handle, &CloseReason::Local));
        assert!(!r.record_ack(a, 1));
        assert!(!sb.is_stopped());
        assert_eq!(r.close_all().len(), 1);
        assert!(
            sb.is_stopped(),
            "StopBeforeRemove: close_all raised the row's stop"
        );
        assert_eq!(
            r.register("d", StopSignal::new()),
            Err(HaRegisterError::ShuttingDown)
        );
        assert_eq!(r.count(), 0);
        assert_eq!((r.accepted_total(), r.closed_total()), (2, 2));
    }

    /// A row whose tasks never start is reclaimed on the second housekeeping pass that finds it
    /// so, stop first; a started row is never reclaimed.
    #[test]
    fn housekeeping_reclaims_rows_never_started() {
        let r = HaRegistry::new(2);
        let (leaked, live) = (StopSignal::new(), StopSignal::new());
        let a = r.register("leaked", leaked.clone()).unwrap();
        let b = r.register("live", live.clone()).unwrap();
        assert!(r.mark_started(b));
        assert_eq!(r.reclaim_unstarted(), 0);
        assert_eq!(r.count(), 2);
        assert_eq!(r.reclaim_unstarted(), 1);
        assert!(leaked.is_stopped() && !live.is_stopped());
        assert!(!r.mark_started(a), "a reclaimed row cannot start");
        assert!(
            r.register("next", StopSignal::new()).is_ok(),
            "its cap slot is free"
        );
        assert_eq!(r.closed_total(), 1);
    }
}
