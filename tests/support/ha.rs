//! Shared by `tests/loom_ha.rs` and `tests/shuttle_ha.rs`: the HA table's checks at a quiescent
//! point, one line per violation, each of the form `"<Invariant> violated: <detail>"`.
//!
//! Included with `#[path = "support/ha.rs"] mod ha;` (it is not a submodule of `support`, so the
//! client-registry harnesses do not compile it). It reads the table through `HaRegistry`'s public
//! API only, so it runs the same on loom's and shuttle's primitives; call it when every thread
//! and task that could change the table has finished.

#![allow(dead_code)]

use rmq_lifecycle::registry::{ConnId, HaRegistry};
use std::fmt::Write as _;

/// What must hold at a quiescent point, besides `CountIsTable`.
#[derive(Debug, Default)]
pub(crate) struct HaExpect {
    /// Rows that must still be in the table (registered, and no path removed them). Any other
    /// row is a leak (`NoLeakAtQuiescence`).
    pub(crate) live: Vec<ConnId>,
    /// The connection count the server reports, when it keeps one apart from the table
    /// (upstream's `connectionCount`); `HaRegistry::count` is always checked.
    pub(crate) reported_count: Option<i64>,
    /// Tasks still alive (a `TaskGauge`), when the harness counts them: must be 0.
    pub(crate) tasks_alive: Option<usize>,
    /// For rows whose removals the harness saw: how many callers removed the row (a
    /// `deregister` that returned true, or the id in a `close_all` list). Must be 0 for a live
    /// row and 1 for any other (`RemovedOnce`).
    pub(crate) removals: Vec<(ConnId, usize)>,
    /// Violations the harness observed during the run, already worded.
    pub(crate) observed: Vec<String>,
}

/// Every violated invariant, one line each.
pub(crate) fn violations(reg: &HaRegistry, expect: &HaExpect) -> Vec<String> {
    let mut out = expect.observed.clone();
    let rows: Vec<ConnId> = reg.entries().iter().map(|e| e.id).collect();
    let count = reg.count();
    if count != rows.len() {
        out.push(format!(
            "CountIsTable violated: count() is {count}, the table has {} rows {rows:?}",
            rows.len()
        ));
    }
    if let Some(reported) = expect.reported_count {
        if reported != rows.len() as i64 {
            out.push(format!(
                "CountIsTable violated: the server reports {reported} connections, the table \
                 has {} rows {rows:?}",
                rows.len()
            ));
        }
    }
    let (accepted, closed) = (reg.accepted_total(), reg.closed_total());
    if accepted.checked_sub(closed) != Some(rows.len() as u64) {
        out.push(format!(
            "CountIsTable violated: {accepted} registered - {closed} removed, but the table has \
             {} rows {rows:?}",
            rows.len()
        ));
    }
    let leaked: Vec<ConnId> = rows
        .iter()
        .copied()
        .filter(|id| !expect.live.contains(id))
        .collect();
    if !leaked.is_empty() {
        out.push(format!(
            "NoLeakAtQuiescence violated: {leaked:?} left in the table with nothing running \
             that would remove them"
        ));
    }
    if let Some(alive) = expect.tasks_alive.filter(|n| *n != 0) {
        out.push(format!(
            "NoLeakAtQuiescence violated: {alive} task(s) still alive at quiescence"
        ));
    }
    for id in &expect.live {
        if !rows.contains(id) {
            out.push(format!(
                "RemovedOnce violated: {id} is gone from the table, but no caller removed it"
            ));
        }
    }
    for (id, n) in &expect.removals {
        let want = usize::from(!expect.live.contains(id));
        if *n != want {
            out.push(format!(
                "RemovedOnce violated: {n} callers removed {id} (expected {want})"
            ));
        }
    }
    out
}

/// Panics with every violated invariant, plus the table, if any does not hold.
pub(crate) fn check(reg: &HaRegistry, expect: &HaExpect) {
    let found = violations(reg, expect);
    if !found.is_empty() {
        let mut msg = format!("{} HA invariant violation(s):\n", found.len());
        for v in &found {
            let _ = writeln!(msg, "  {v}");
        }
        let _ = write!(msg, "table: {:#?}", reg.entries());
        panic!("{msg}");
    }
}

/// The table right after `close_all` returned: it must be empty and stay empty, since the
/// registry refuses every later registration. Returns the violations, worded.
pub(crate) fn after_close_all(reg: &HaRegistry) -> Vec<String> {
    let mut out = Vec::new();
    let rows: Vec<ConnId> = reg.entries().iter().map(|e| e.id).collect();
    let count = reg.count();
    if !rows.is_empty() {
        out.push(format!(
            "NoLeakAtQuiescence violated: close_all returned, but {rows:?} survived it"
        ));
    }
    // Nothing can be added after close_all, so the two reads see the same table.
    if count != rows.len() {
        out.push(format!(
            "CountIsTable violated: after close_all, count() is {count} but the table has {} rows",
            rows.len()
        ));
    }
    if !reg.is_closed() {
        out.push("NoLeakAtQuiescence violated: close_all returned, but the table is open".into());
    }
    out
}

/// The number of `true`s.
pub(crate) fn times(flags: impl IntoIterator<Item = bool>) -> usize {
    flags.into_iter().filter(|b| *b).count()
}
