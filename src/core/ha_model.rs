//! The master-side HA connection lifecycle as a plain sequential value: the oracle of the HA
//! fuzz target and of the HA conformance traces, the way [`ClientModel`](super::tables::ClientModel)
//! is for the client tables.
//!
//! [`HaModel`] applies [`HaOp`]s (accept, register, spawn, a slave's bytes, the log growing, every
//! way a connection ends, shutdown) one at a time and says what must be observable afterwards
//! ([`HaObserved`]). Its semantics are those of `registry::HaRegistry`, `lifecycle::HaConnection`
//! and one [`MasterLink`](super::ha::MasterLink) per connection, driven the way `net::ha` drives
//! them, restated with ordered maps and no cleverness. It is not an implementation: it moves no
//! bytes, and its ids are accept order, not the registry's.
//!
//! Simplifications, each an interleaving the real system also has: a task's input (a report, an
//! EOF, an idle timer, a failure) is an op only while the connection is running (bytes sent
//! earlier wait in the socket and are read after `spawn`); the writer sends only on
//! [`HaOp::Flush`]; the log starts at offset 0 (no segment was deleted).
//!
//! [`HaObserved::check_invariants`] and [`HaObserved::check_step`] state the invariants of
//! docs/SPEC.md (section 4) (`NoRunningUnregistered`, `CountIsTable`, `AckBounded`, ...) on an observation, so
//! the same checks run on the model and on whatever a driver observes of the real code.

use super::ha::HaState;
use super::tables::Violation;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The i-th accepted connection (1, 2, ...). Never reused.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct HaConn(pub u64);

impl fmt::Display for HaConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// One operation on the master's HA side, as the harnesses and the conformance traces spell it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum HaOp {
    /// A socket was accepted (`HaConnection::new`); the model hands out the next [`HaConn`].
    Accept,
    /// `HaConnection<Init>::register`. A refused connection is closed at once, as the accept
    /// loop does.
    Register {
        /// The connection.
        conn: HaConn,
    },
    /// `HaConnection<Registered>::spawn`: the reader and writer start; the link enters `Transfer`.
    Spawn {
        /// The connection.
        conn: HaConn,
    },
    /// The reader reads these bytes from the slave (8-byte big-endian reports, possibly split
    /// across ops, or a probe's garbage).
    Report {
        /// The connection.
        conn: HaConn,
        /// The bytes as received.
        bytes: Vec<u8>,
    },
    /// The writer sends everything it may (nothing before the first valid report).
    Flush {
        /// The connection.
        conn: HaConn,
    },
    /// The master's log grows by `len` bytes.
    Append {
        /// Bytes appended.
        len: u64,
    },
    /// The reader reads EOF.
    PeerClose {
        /// The connection.
        conn: HaConn,
    },
    /// Nothing valid was read for the housekeeping interval.
    IdleTimeout {
        /// The connection.
        conn: HaConn,
    },
    /// A task ended abnormally (an IO error, a panic).
    TaskFail {
        /// The connection.
        conn: HaConn,
    },
    /// The owner closes the connection for its own reasons (`close(CloseReason::Local)`).
    Close {
        /// The connection.
        conn: HaConn,
    },
    /// `HaMaster::shutdown`: close every registered connection and the table.
    Shutdown,
}

/// Why a registration was refused (`HaRegisterError`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum HaRefusal {
    /// The table was closed by shutdown.
    ShuttingDown,
    /// The connection cap was reached.
    TooManyConnections {
        /// The cap.
        max: usize,
    },
}

/// Which clause of `AckBounded` a report broke.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ReportRule {
    /// The report was negative.
    Negative,
    /// The report was beyond the master's max offset.
    BeyondMax,
    /// The report was below the previous one.
    WentBack,
    /// The report was beyond what the master had sent.
    BeyondSent,
}

/// Why a connection closed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum HaCloseReason {
    /// The peer closed.
    PeerClosed,
    /// A bad report.
    ProtocolError {
        /// The clause it broke.
        rule: ReportRule,
    },
    /// The housekeeping interval passed with nothing valid read.
    IdleTimeout,
    /// A task failed (IO error or panic).
    TaskFailed,
    /// The master shut down.
    Shutdown,
    /// The registration was refused.
    Rejected {
        /// Why.
        refusal: HaRefusal,
    },
    /// The owner closed it.
    Local,
}

/// A connection closed during an op. Each connection closes exactly once.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct HaClosed {
    /// The connection.
    pub conn: HaConn,
    /// Why.
    pub reason: HaCloseReason,
    /// True if this close removed its table row (false for a connection never registered).
    pub deregistered: bool,
}

/// A connection's lifecycle phase (the `HaConnection<P>` typestate).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum HaPhase {
    /// Accepted, not registered.
    Init,
    /// In the table, tasks not started.
    Registered,
    /// In the table, tasks running.
    Running,
    /// Closed; terminal.
    Closed,
}

/// What an op returned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum HaOpResult {
    /// `Accept`: the new connection.
    Accepted {
        /// The connection.
        conn: HaConn,
    },
    /// `Register` succeeded.
    Registered {
        /// The connection.
        conn: HaConn,
    },
    /// `Register` was refused; the connection is closed (`Rejected`).
    Refused {
        /// The connection.
        conn: HaConn,
        /// Why.
        refusal: HaRefusal,
    },
    /// `Spawn` started the tasks.
    Spawned {
        /// The connection.
        conn: HaConn,
    },
    /// `Report` was read: the valid reports applied, in order. A bad one closes the connection
    /// (see the op's events) and ends the list.
    Reported {
        /// The connection.
        conn: HaConn,
        /// Offsets acknowledged by this op.
        acked: Vec<u64>,
    },
    /// `Flush` ran: the writer has now sent up to `sent`.
    Flushed {
        /// The connection.
        conn: HaConn,
        /// The offset the next transfer would start at.
        sent: u64,
    },
    /// `Append` ran.
    Appended {
        /// The master's max offset now.
        max_offset: u64,
    },
    /// `PeerClose`, `IdleTimeout`, `TaskFail` or `Close` closed the connection.
    Closed {
        /// The connection.
        conn: HaConn,
    },
    /// `Shutdown` ran and closed these connections.
    ShutDown {
        /// The connections it closed, ascending.
        closed: Vec<HaConn>,
    },
    /// The op does nothing to a connection in this phase (`None`: never accepted).
    Ignored {
        /// The connection.
        conn: HaConn,
        /// Its phase.
        phase: Option<HaPhase>,
    },
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HaRow {
    /// The connection.
    pub conn: HaConn,
    /// The link's state: `Ready` until spawned, then `Transfer`.
    pub state: HaState,
    /// The last valid report; `None` before the first.
    pub ack: Option<u64>,
    /// The offset the next transfer starts at (what was sent, once the first report came).
    pub sent: u64,
}

/// A connection that is not closed, with its phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HaLive {
    /// The connection.
    pub conn: HaConn,
    /// Its phase (never `Closed`).
    pub phase: HaPhase,
}

/// Everything observable of the master's HA side after an op.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HaObserved {
    /// The table's rows, by connection.
    pub table: Vec<HaRow>,
    /// Connections not closed, by connection.
    pub live: Vec<HaLive>,
    /// The connection count (`rmq_ha_connections`).
    pub count: usize,
    /// Connections that count for sync replication (`acked_at_least(0)`).
    pub reported: usize,
    /// Connections that acknowledged the master's max offset.
    pub acked_max: usize,
    /// Connections within the max gap of the master (`in_sync`).
    pub in_sync: usize,
    /// The master's log end.
    pub max_offset: u64,
    /// Shutdown ran: the table refuses registrations.
    pub shut_down: bool,
    /// Registrations since start.
    pub accepted_total: u64,
    /// Rows removed since start.
    pub closed_total: u64,
    /// Connections the last op closed, by connection.
    pub events: Vec<HaClosed>,
}

fn violation(invariant: &'static str, detail: String) -> Result<(), Violation> {
    Err(Violation { invariant, detail })
}

impl HaObserved {
    /// The invariants that hold in every state: `CountIsTable`, `NoRunningUnregistered`,
    /// `NoDeadEntry` (no row without a live registered connection), `AckBounded` and
    /// `NoLeakAtQuiescence` (after shutdown, nothing is registered).
    pub fn check_invariants(&self) -> Result<(), Violation> {
        if self.count != self.table.len() {
            return violation(
                "CountIsTable",
                format!("count {} but {} rows", self.count, self.table.len()),
            );
        }
        if self.accepted_total.checked_sub(self.closed_total) != Some(self.table.len() as u64) {
            return violation(
                "CountIsTable",
                format!(
                    "{} registered - {} removed != {} rows",
                    self.accepted_total,
                    self.closed_total,
                    self.table.len()
                ),
            );
        }
        let rows: BTreeMap<HaConn, &HaRow> = self.table.iter().map(|r| (r.conn, r)).collect();
        if rows.len() != self.table.len() {
            return violation("CountIsTable", "a connection has two rows".into());
        }
        let live: BTreeMap<HaConn, HaPhase> = self.live.iter().map(|l| (l.conn, l.phase)).collect();
        for l in &self.live {
            let registered = matches!(l.phase, HaPhase::Registered | HaPhase::Running);
            if registered && !rows.contains_key(&l.conn) {
                return violation(
                    "NoRunningUnregistered",
                    format!("{} is {:?} but has no row", l.conn, l.phase),
                );
            }
            if l.phase == HaPhase::Closed {
                return violation(
                    "NoDeadEntry",
                    format!("{} is listed live but closed", l.conn),
                );
            }
        }
        for row in &self.table {
            let want = match live.get(&row.conn) {
                Some(HaPhase::Registered) => HaState::Ready,
                Some(HaPhase::Running) => HaState::Transfer,
                other => {
                    return violation(
                        "NoDeadEntry",
                        format!("{} has a row but its connection is {other:?}", row.conn),
                    );
                }
            };
            if row.state != want {
                return violation(
                    "NoDeadEntry",
                    format!("{} row is {:?}, expected {want:?}", row.conn, row.state),
                );
            }
            if let Some(ack) = row.ack {
                if ack > self.max_offset || ack > row.sent {
                    return violation(
                        "AckBounded",
                        format!(
                            "{} acked {ack}: max offset {}, sent {}",
                            row.conn, self.max_offset, row.sent
                        ),
                    );
                }
            } else if row.sent != 0 {
                return violation(
                    "AckBounded",
                    format!("{} was sent {} bytes before any report", row.conn, row.sent),
                );
            }
            if row.sent > self.max_offset {
                return violation(
                    "AckBounded",
                    format!("{} sent {} > max {}", row.conn, row.sent, self.max_offset),
                );
            }
        }
        let acked = |at: u64| self.table.iter().filter(|r| r.ack >= Some(at)).count();
        if self.reported != acked(0) || self.acked_max != acked(self.max_offset) {
            return violation(
                "AckBounded",
                format!(
                    "reported {} / acked max {} disagree with the rows ({} / {})",
                    self.reported,
                    self.acked_max,
                    acked(0),
                    acked(self.max_offset)
                ),
            );
        }
        if self.in_sync > self.reported {
            return violation(
                "AckBounded",
                format!(
                    "{} in sync but only {} ever reported",
                    self.in_sync, self.reported
                ),
            );
        }
        if self.shut_down && !self.table.is_empty() {
            return violation(
                "NoLeakAtQuiescence",
                format!("{} rows after shutdown", self.table.len()),
            );
        }
        for e in &self.events {
            if live.contains_key(&e.conn) {
                return violation(
                    "CloseExactlyOnce",
                    format!("{} closed but still live", e.conn),
                );
            }
        }
        Ok(())
    }

    /// The invariants of one step from `before` to `self`: acks never go backwards
    /// (`AckBounded`), and every connection that left is closed exactly once, removing its row
    /// exactly once (`CloseExactlyOnce`).
    pub fn check_step(&self, before: &HaObserved) -> Result<(), Violation> {
        let old: BTreeMap<HaConn, &HaRow> = before.table.iter().map(|r| (r.conn, r)).collect();
        for row in &self.table {
            if let Some(prev) = old.get(&row.conn) {
                if row.ack < prev.ack {
                    return violation(
                        "AckBounded",
                        format!("{} ack went from {:?} to {:?}", row.conn, prev.ack, row.ack),
                    );
                }
            }
        }
        let was_live: BTreeSet<HaConn> = before.live.iter().map(|l| l.conn).collect();
        let is_live: BTreeSet<HaConn> = self.live.iter().map(|l| l.conn).collect();
        let mut closed = BTreeSet::new();
        for e in &self.events {
            if !was_live.contains(&e.conn) || !closed.insert(e.conn) {
                return violation(
                    "CloseExactlyOnce",
                    format!("{} closed again ({:?})", e.conn, e.reason),
                );
            }
            if e.deregistered != old.contains_key(&e.conn) {
                return violation(
                    "CloseExactlyOnce",
                    format!(
                        "{} closed with deregistered = {}, row before: {}",
                        e.conn,
                        e.deregistered,
                        old.contains_key(&e.conn)
                    ),
                );
            }
        }
        if let Some(gone) = was_live.difference(&is_live).find(|c| !closed.contains(c)) {
            return violation(
                "CloseExactlyOnce",
                format!("{gone} vanished without a close"),
            );
        }
        let removed = self.events.iter().filter(|e| e.deregistered).count() as u64;
        if self.closed_total != before.closed_total + removed
            || self.accepted_total < before.accepted_total
        {
            return violation(
                "CloseExactlyOnce",
                format!(
                    "closed_total went {} -> {} with {removed} rows removed",
                    before.closed_total, self.closed_total
                ),
            );
        }
        Ok(())
    }
}

/// The model's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HaModelConfig {
    /// `HaRegistry::new(max_connections)`.
    pub max_connections: usize,
    /// `in_sync`'s gap (upstream `haMaxGapNotInSync`, 256 MiB).
    pub max_gap: u64,
    /// `HaConfig::segment_size`: a first report of 0 is sent the log from the start of its last
    /// segment. A trace without it means upstream's 1 GiB.
    #[serde(
        default = "default_segment_size",
        skip_serializing_if = "is_default_segment_size"
    )]
    pub segment_size: u64,
}

fn default_segment_size() -> u64 {
    1 << 30
}

fn is_default_segment_size(size: &u64) -> bool {
    *size == default_segment_size()
}

impl Default for HaModelConfig {
    fn default() -> Self {
        HaModelConfig {
            max_connections: usize::MAX,
            max_gap: 256 << 20,
            segment_size: default_segment_size(),
        }
    }
}

#[derive(Debug, Clone)]
struct ConnState {
    phase: HaPhase,
    /// Bytes of an incomplete report.
    partial: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
struct Row {
    running: bool,
    ack: Option<u64>,
    sent: u64,
}

/// The sequential reference of the master's HA side.
#[derive(Debug, Clone, Default)]
pub struct HaModel {
    config: HaModelConfig,
    conns: BTreeMap<HaConn, ConnState>,
    table: BTreeMap<HaConn, Row>,
    max_offset: u64,
    shut_down: bool,
    accepted_total: u64,
    closed_total: u64,
    events: Vec<HaClosed>,
}

impl HaModel {
    /// A master with an empty log and no connection.
    pub fn new(config: HaModelConfig) -> Self {
        HaModel {
            config,
            ..HaModel::default()
        }
    }

    /// The rules.
    pub fn config(&self) -> HaModelConfig {
        self.config
    }

    /// Connections accepted so far (the highest [`HaConn`] handed out).
    pub fn accepted(&self) -> u64 {
        self.conns.len() as u64
    }

    /// A connection's phase; `None` if it was never accepted.
    pub fn phase(&self, conn: HaConn) -> Option<HaPhase> {
        self.conns.get(&conn).map(|c| c.phase)
    }

    /// The connections in `phase`, ascending.
    pub fn conns_in(&self, phase: HaPhase) -> impl Iterator<Item = HaConn> + '_ {
        self.conns
            .iter()
            .filter(move |(_, c)| c.phase == phase)
            .map(|(conn, _)| *conn)
    }

    /// The master's log end.
    pub fn max_offset(&self) -> u64 {
        self.max_offset
    }

    /// A registered connection's last valid report and what was sent to it.
    pub fn ack_and_sent(&self, conn: HaConn) -> Option<(Option<u64>, u64)> {
        self.table.get(&conn).map(|r| (r.ack, r.sent))
    }

    /// [`HaObserved::check_invariants`] on the model's own observation.
    pub fn check_invariants(&self) -> Result<(), Violation> {
        self.observe().check_invariants()
    }

    /// What must be observable now; `events` are those of the last op.
    pub fn observe(&self) -> HaObserved {
        let table: Vec<HaRow> = self
            .table
            .iter()
            .map(|(conn, r)| HaRow {
                conn: *conn,
                state: if r.running {
                    HaState::Transfer
                } else {
                    HaState::Ready
                },
                ack: r.ack,
                sent: r.sent,
            })
            .collect();
        let acked = |at: u64| table.iter().filter(|r| r.ack >= Some(at)).count();
        let in_sync = table
            .iter()
            .filter(|r| {
                r.ack
                    .is_some_and(|a| self.max_offset.saturating_sub(a) < self.config.max_gap)
            })
            .count();
        HaObserved {
            count: table.len(),
            reported: acked(0),
            acked_max: acked(self.max_offset),
            in_sync,
            live: self
                .conns
                .iter()
                .filter(|(_, c)| c.phase != HaPhase::Closed)
                .map(|(conn, c)| HaLive {
                    conn: *conn,
                    phase: c.phase,
                })
                .collect(),
            table,
            max_offset: self.max_offset,
            shut_down: self.shut_down,
            accepted_total: self.accepted_total,
            closed_total: self.closed_total,
            events: self.events.clone(),
        }
    }

    /// Applies one op.
    pub fn apply(&mut self, op: &HaOp) -> HaOpResult {
        self.events.clear();
        match *op {
            HaOp::Accept => {
                let conn = HaConn(self.conns.len() as u64 + 1);
                self.conns.insert(
                    conn,
                    ConnState {
                        phase: HaPhase::Init,
                        partial: Vec::new(),
                    },
                );
                HaOpResult::Accepted { conn }
            }
            HaOp::Register { conn } => {
                if self.phase(conn) != Some(HaPhase::Init) {
                    return self.ignored(conn);
                }
                let refusal = if self.shut_down {
                    Some(HaRefusal::ShuttingDown)
                } else if self.table.len() >= self.config.max_connections {
                    Some(HaRefusal::TooManyConnections {
                        max: self.config.max_connections,
                    })
                } else {
                    None
                };
                if let Some(refusal) = refusal {
                    self.close(conn, HaCloseReason::Rejected { refusal });
                    return HaOpResult::Refused { conn, refusal };
                }
                self.table.insert(conn, Row::default());
                self.accepted_total += 1;
                self.set_phase(conn, HaPhase::Registered);
                HaOpResult::Registered { conn }
            }
            HaOp::Spawn { conn } => {
                if self.phase(conn) != Some(HaPhase::Registered) {
                    return self.ignored(conn);
                }
                self.set_phase(conn, HaPhase::Running);
                self.table.get_mut(&conn).expect("registered").running = true;
                HaOpResult::Spawned { conn }
            }
            HaOp::Report { conn, ref bytes } => {
                if self.phase(conn) != Some(HaPhase::Running) {
                    return self.ignored(conn);
                }
                let acked = self.read_reports(conn, bytes);
                HaOpResult::Reported { conn, acked }
            }
            HaOp::Flush { conn } => {
                if self.phase(conn) != Some(HaPhase::Running) {
                    return self.ignored(conn);
                }
                let max = self.max_offset;
                let row = self.table.get_mut(&conn).expect("running");
                if row.ack.is_some() {
                    row.sent = max;
                }
                HaOpResult::Flushed {
                    conn,
                    sent: row.sent,
                }
            }
            HaOp::Append { len } => {
                self.max_offset = self.max_offset.saturating_add(len);
                HaOpResult::Appended {
                    max_offset: self.max_offset,
                }
            }
            HaOp::PeerClose { conn } => self.task_ends(conn, HaCloseReason::PeerClosed),
            HaOp::IdleTimeout { conn } => self.task_ends(conn, HaCloseReason::IdleTimeout),
            HaOp::TaskFail { conn } => self.task_ends(conn, HaCloseReason::TaskFailed),
            HaOp::Close { conn } => match self.phase(conn) {
                Some(HaPhase::Init | HaPhase::Registered | HaPhase::Running) => {
                    self.close(conn, HaCloseReason::Local);
                    HaOpResult::Closed { conn }
                }
                _ => self.ignored(conn),
            },
            HaOp::Shutdown => {
                self.shut_down = true;
                let closed: Vec<HaConn> = self.table.keys().copied().collect();
                for conn in &closed {
                    self.close(*conn, HaCloseReason::Shutdown);
                }
                HaOpResult::ShutDown { closed }
            }
        }
    }

    fn ignored(&self, conn: HaConn) -> HaOpResult {
        HaOpResult::Ignored {
            conn,
            phase: self.phase(conn),
        }
    }

    fn set_phase(&mut self, conn: HaConn, phase: HaPhase) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.phase = phase;
        }
    }

    /// One of the running connection's tasks ends with `reason`.
    fn task_ends(&mut self, conn: HaConn, reason: HaCloseReason) -> HaOpResult {
        if self.phase(conn) != Some(HaPhase::Running) {
            return self.ignored(conn);
        }
        self.close(conn, reason);
        HaOpResult::Closed { conn }
    }

    /// Closes a live connection: its row (if any) goes, exactly once.
    fn close(&mut self, conn: HaConn, reason: HaCloseReason) {
        let deregistered = self.table.remove(&conn).is_some();
        if deregistered {
            self.closed_total += 1;
        }
        self.set_phase(conn, HaPhase::Closed);
        self.events.push(HaClosed {
            conn,
            reason,
            deregistered,
        });
    }

    /// Splits `bytes` into 8-byte reports and applies them in order until a bad one closes the
    /// connection.
    fn read_reports(&mut self, conn: HaConn, bytes: &[u8]) -> Vec<u64> {
        let mut acked = Vec::new();
        let state = self.conns.get_mut(&conn).expect("running");
        let mut buf = std::mem::take(&mut state.partial);
        buf.extend_from_slice(bytes);
        let mut chunks = buf.chunks_exact(8);
        let seg = self.config.segment_size.max(1);
        for chunk in &mut chunks {
            let raw = i64::from_be_bytes(chunk.try_into().expect("8 bytes"));
            let row = self.table.get_mut(&conn).expect("running");
            match Self::judge(row, raw, self.max_offset) {
                Ok(offset) => {
                    if row.ack.is_none() {
                        // classic: an empty slave starts at the master's last segment
                        row.sent = match offset {
                            0 => self.max_offset - self.max_offset % seg,
                            offset => offset,
                        };
                    }
                    row.ack = Some(offset);
                    acked.push(offset);
                }
                Err(rule) => {
                    self.close(conn, HaCloseReason::ProtocolError { rule });
                    return acked;
                }
            }
        }
        let rest = chunks.remainder().to_vec();
        self.conns.get_mut(&conn).expect("running").partial = rest;
        acked
    }

    /// `AckBounded` for one report: non-negative, at most the master's max offset, never
    /// backwards and, after the first, at most what was sent.
    fn judge(row: &Row, raw: i64, max_offset: u64) -> Result<u64, ReportRule> {
        let offset = u64::try_from(raw).map_err(|_| ReportRule::Negative)?;
        if offset > max_offset {
            return Err(ReportRule::BeyondMax);
        }
        match row.ack {
            Some(prev) if offset < prev => Err(ReportRule::WentBack),
            Some(_) if offset > row.sent => Err(ReportRule::BeyondSent),
            _ => Ok(offset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(n: u64) -> HaConn {
        HaConn(n)
    }

    fn run(model: &mut HaModel, ops: &[HaOp]) -> Vec<HaOpResult> {
        ops.iter()
            .map(|op| {
                let before = model.observe();
                let r = model.apply(op);
                let after = model.observe();
                after.check_invariants().unwrap();
                after.check_step(&before).unwrap();
                r
            })
            .collect()
    }

    fn report(conn: u64, offset: i64) -> HaOp {
        HaOp::Report {
            conn: c(conn),
            bytes: offset.to_be_bytes().to_vec(),
        }
    }

    #[test]
    fn a_slave_replicates_and_counts_only_after_reporting() {
        let mut m = HaModel::new(HaModelConfig::default());
        run(
            &mut m,
            &[
                HaOp::Accept,
                HaOp::Register { conn: c(1) },
                HaOp::Spawn { conn: c(1) },
                HaOp::Append { len: 100 },
            ],
        );
        assert_eq!(m.observe().reported, 0, "no report yet: does not count");
        let r = run(
            &mut m,
            &[
                report(1, 0),
                HaOp::Flush { conn: c(1) },
                report(1, 60),
                report(1, 100),
            ],
        );
        assert_eq!(
            r[1],
            HaOpResult::Flushed {
                conn: c(1),
                sent: 100
            }
        );
        let o = m.observe();
        assert_eq!((o.reported, o.acked_max, o.in_sync), (1, 1, 1));
        assert_eq!(o.table[0].ack, Some(100));
    }

    #[test]
    fn every_bad_report_closes_with_its_rule() {
        let cases: [(&[HaOp], ReportRule); 4] = [
            (&[report(1, -1)], ReportRule::Negative),
            (
                &[HaOp::Report {
                    conn: c(1),
                    bytes: b"2024-10-30 16:42:30\n".to_vec(),
                }],
                ReportRule::BeyondMax,
            ),
            (
                &[report(1, 5), HaOp::Flush { conn: c(1) }, report(1, 4)],
                ReportRule::WentBack,
            ),
            (&[report(1, 5), report(1, 6)], ReportRule::BeyondSent),
        ];
        for (ops, rule) in cases {
            let mut m = HaModel::new(HaModelConfig::default());
            let setup = [
                HaOp::Accept,
                HaOp::Append { len: 10 },
                HaOp::Register { conn: c(1) },
                HaOp::Spawn { conn: c(1) },
            ];
            run(&mut m, &setup);
            run(&mut m, ops);
            let o = m.observe();
            assert_eq!(
                o.events,
                [HaClosed {
                    conn: c(1),
                    reason: HaCloseReason::ProtocolError { rule },
                    deregistered: true
                }]
            );
            assert!(o.table.is_empty() && o.live.is_empty());
            assert_eq!((o.accepted_total, o.closed_total), (1, 1));
        }
    }

    #[test]
    fn reports_split_across_reads_and_ops_on_the_wrong_phase_are_ignored() {
        let mut m = HaModel::new(HaModelConfig::default());
        let bytes = 3i64.to_be_bytes();
        let r = run(
            &mut m,
            &[
                HaOp::Accept,
                HaOp::Append { len: 3 },
                report(1, 3),
                HaOp::Register { conn: c(1) },
                HaOp::Register { conn: c(1) },
                HaOp::Spawn { conn: c(1) },
                HaOp::Report {
                    conn: c(1),
                    bytes: bytes[..5].to_vec(),
                },
                HaOp::Report {
                    conn: c(1),
                    bytes: bytes[5..].to_vec(),
                },
                HaOp::PeerClose { conn: c(9) },
            ],
        );
        assert_eq!(
            r[2],
            HaOpResult::Ignored {
                conn: c(1),
                phase: Some(HaPhase::Init)
            }
        );
        assert_eq!(
            r[4],
            HaOpResult::Ignored {
                conn: c(1),
                phase: Some(HaPhase::Registered)
            }
        );
        assert_eq!(
            r[6],
            HaOpResult::Reported {
                conn: c(1),
                acked: vec![]
            }
        );
        assert_eq!(
            r[7],
            HaOpResult::Reported {
                conn: c(1),
                acked: vec![3]
            }
        );
        assert_eq!(
            r[8],
            HaOpResult::Ignored {
                conn: c(9),
                phase: None
            }
        );
    }

    #[test]
    fn shutdown_closes_everything_registered_and_refuses_the_rest() {
        let mut m = HaModel::new(HaModelConfig {
            max_connections: 2,
            ..HaModelConfig::default()
        });
        let r = run(
            &mut m,
            &[
                HaOp::Accept,
                HaOp::Accept,
                HaOp::Accept,
                HaOp::Accept,
                HaOp::Register { conn: c(1) },
                HaOp::Register { conn: c(2) },
                HaOp::Register { conn: c(3) },
                HaOp::Spawn { conn: c(2) },
                HaOp::Shutdown,
                HaOp::Register { conn: c(4) },
                HaOp::Shutdown,
            ],
        );
        assert_eq!(
            r[6],
            HaOpResult::Refused {
                conn: c(3),
                refusal: HaRefusal::TooManyConnections { max: 2 }
            }
        );
        assert_eq!(
            r[8],
            HaOpResult::ShutDown {
                closed: vec![c(1), c(2)]
            }
        );
        assert_eq!(
            r[9],
            HaOpResult::Refused {
                conn: c(4),
                refusal: HaRefusal::ShuttingDown
            }
        );
        assert_eq!(r[10], HaOpResult::ShutDown { closed: vec![] });
        let o = m.observe();
        assert!(o.table.is_empty() && o.live.is_empty() && o.shut_down);
        assert_eq!((o.accepted_total, o.closed_total), (2, 2));
    }

    #[test]
    fn ops_round_trip_through_json() {
        let ops = [
            HaOp::Accept,
            report(1, 7),
            HaOp::Append { len: 3 },
            HaOp::Shutdown,
        ];
        let json = serde_json::to_string(&ops).unwrap();
        assert!(json.contains(r#"{"op":"accept"}"#), "{json}");
        assert_eq!(serde_json::from_str::<Vec<HaOp>>(&json).unwrap(), ops);
        let closed = HaClosed {
            conn: c(1),
            reason: HaCloseReason::ProtocolError {
                rule: ReportRule::BeyondMax,
            },
            deregistered: true,
        };
        let json = serde_json::to_string(&closed).unwrap();
        assert!(
            json.contains(r#""reason":{"reason":"protocol_error","rule":"beyond_max"}"#),
            "{json}"
        );
    }

    /// Each check fails on an observation broken in the way it names.
    #[test]
    fn the_checks_catch_broken_observations() {
        let mut m = HaModel::new(HaModelConfig::default());
        run(
            &mut m,
            &[
                HaOp::Accept,
                HaOp::Accept,
                HaOp::Append { len: 10 },
                HaOp::Register { conn: c(1) },
                HaOp::Spawn { conn: c(1) },
                report(1, 4),
            ],
        );
        let good = m.observe();
        let broken = |f: &dyn Fn(&mut HaObserved)| {
            let mut o = good.clone();
            f(&mut o);
            o.check_invariants().unwrap_err().invariant
        };
        assert_eq!(broken(&|o| o.count = 2), "CountIsTable");
        assert_eq!(broken(&|o| o.closed_total = 1), "CountIsTable");
        assert_eq!(
            broken(&|o| {
                o.table.clear();
                o.count = 0;
                o.closed_total = 1;
                o.reported = 0;
                o.acked_max = 0;
                o.in_sync = 0;
            }),
            "NoRunningUnregistered"
        );
        assert_eq!(
            broken(&|o| o.live.retain(|l| l.conn != c(1))),
            "NoDeadEntry"
        );
        assert_eq!(broken(&|o| o.table[0].ack = Some(11)), "AckBounded");
        assert_eq!(broken(&|o| o.table[0].ack = Some(5)), "AckBounded");
        assert_eq!(broken(&|o| o.reported = 0), "AckBounded");
        assert_eq!(broken(&|o| o.shut_down = true), "NoLeakAtQuiescence");

        let step = |f: &dyn Fn(&mut HaObserved)| {
            let mut o = good.clone();
            f(&mut o);
            o.check_step(&good).unwrap_err().invariant
        };
        assert_eq!(step(&|o| o.table[0].ack = Some(3)), "AckBounded");
        assert_eq!(
            step(&|o| o.live.retain(|l| l.conn != c(2))),
            "CloseExactlyOnce"
        );
        let closed = HaClosed {
            conn: c(2),
            reason: HaCloseReason::Local,
            deregistered: false,
        };
        assert_eq!(
            step(&|o| o.events = vec![closed, closed]),
            "CloseExactlyOnce"
        );
        assert_eq!(
            step(&|o| o.events = vec![HaClosed {
                deregistered: true,
                ..closed
            }]),
            "CloseExactlyOnce"
        );
    }
}
