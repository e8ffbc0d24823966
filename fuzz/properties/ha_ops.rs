//! The `ha_ops` fuzz property: op sequences decoded from bytes, applied to the real HA master
//! side and to the oracle `core::ha_model::HaModel`, compared after every op.
//!
//! [`HaDriver`] is the real side, deterministic and single-threaded: the shipped
//! `lifecycle::HaAcceptor` over `registry::HaRegistry` (the accept/reap/shutdown `net::ha`
//! runs), `lifecycle::HaConnection` for the steps the model names apart (accept, register), the
//! reader and writer futures run by a hand-polled executor, and one `core::ha::MasterLink` per
//! connection stepped with the shipped steps `net::ha`'s tasks take
//! (`HaTaskContext::apply_link_events`, `due_transfers`). A task ends the way it does on tokio:
//! the reader future returns (EOF, a protocol error, idle), or is dropped mid-flight (a panic);
//! the lifecycle's guards remove the row and the acceptor reaps the connection. It is shared by
//! the fuzz target, `tests/fuzz_corpus.rs` and the HA conformance traces (`#[path]` includes).
//!
//! What it does not do: no sockets, no threads, no tokio; races between the two tasks and
//! `close_all`'s atomicity (`HaFaults::split_close_all`) are for loom, shuttle and TLC.

#![allow(dead_code)] // Each includer uses a different part.

use rmq_lifecycle::core::Millis;
use rmq_lifecycle::core::ha::{HaClose, HaConfig, MasterLink};
use rmq_lifecycle::core::ha_model::{
    HaCloseReason, HaClosed, HaConn, HaLive, HaModel, HaModelConfig, HaObserved, HaOp, HaOpResult,
    HaPhase, HaRefusal, HaRow, ReportRule,
};
use rmq_lifecycle::core::tables::Violation;
use rmq_lifecycle::lifecycle::{
    AcceptorFaults, BoxTask, CloseReason, HaAcceptor, HaConnection, HaTaskContext, Spawn,
    TaskHandle,
};
use rmq_lifecycle::phase::{Init, Registered};
use rmq_lifecycle::registry::{ConnId, HaFaults, HaRegisterError, HaRegistry};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Ops per input at most: enough for every lifecycle path, short enough for ~10^4 exec/s.
pub(crate) const MAX_OPS: usize = 64;

/// Deliberate defects on the driver's side, for proving that the property catches them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DriverFaults {
    /// Upstream's classic master: every 8 bytes read are recorded as the ack, unvalidated (a
    /// health check's text becomes an offset of ~3.7e18): the link's planted switch
    /// `MasterLink::with_unchecked_acks`. Breaks `AckBounded`.
    pub(crate) unchecked_acks: bool,
    /// A peer close is noted but the connection is neither stopped nor closed: its row and its
    /// tasks stay (the #8875 dead entry). Breaks close-exactly-once / `NoDeadEntry`.
    pub(crate) forget_on_peer_close: bool,
}

/// The rules both sides run with: small numbers so that the fuzzer reaches the edges.
pub(crate) fn model_config() -> HaModelConfig {
    HaModelConfig {
        max_connections: 3,
        max_gap: 64,
        segment_size: link_config().segment_size,
    }
}

fn link_config() -> HaConfig {
    HaConfig {
        heartbeat_ms: 5,
        housekeeping_ms: 20,
        batch_max: 16,
        segment_size: 100,
        body_max: 64,
    }
}

// ------------------------------------------------------------------------------------------------
// A hand-polled executor.

struct TaskSlot {
    future: Option<BoxTask>,
    aborted: Arc<AtomicBool>,
    finished: Arc<AtomicBool>,
}

/// Runs spawned futures only when told to (`run`), with a no-op waker.
#[derive(Clone, Default)]
struct ManualSpawner(Arc<Mutex<Vec<TaskSlot>>>);

struct ManualHandle {
    aborted: Arc<AtomicBool>,
    finished: Arc<AtomicBool>,
}

impl TaskHandle for ManualHandle {
    fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
    }
    fn is_finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }
}

impl Spawn for ManualSpawner {
    fn spawn(&self, task: BoxTask) -> Box<dyn TaskHandle> {
        let aborted = Arc::new(AtomicBool::new(false));
        let finished = Arc::new(AtomicBool::new(false));
        self.0.lock().unwrap().push(TaskSlot {
            future: Some(task),
            aborted: aborted.clone(),
            finished: finished.clone(),
        });
        Box::new(ManualHandle { aborted, finished })
    }
}

impl ManualSpawner {
    /// Polls every unfinished task until none makes progress; drops aborted ones.
    fn run(&self) {
        loop {
            let mut progressed = false;
            let n = self.0.lock().unwrap().len();
            for i in 0..n {
                // Take the future out: dropping or polling it runs lifecycle code that must not
                // find the executor locked.
                let (future, aborted, finished) = {
                    let mut tasks = self.0.lock().unwrap();
                    let slot = &mut tasks[i];
                    (
                        slot.future.take(),
                        slot.aborted.clone(),
                        slot.finished.clone(),
                    )
                };
                let Some(mut future) = future else { continue };
                if aborted.load(Ordering::SeqCst) {
                    drop(future);
                    finished.store(true, Ordering::SeqCst);
                    progressed = true;
                    continue;
                }
                let mut cx = Context::from_waker(Waker::noop());
                match future.as_mut().poll(&mut cx) {
                    Poll::Ready(()) => {
                        drop(future);
                        finished.store(true, Ordering::SeqCst);
                        progressed = true;
                    }
                    Poll::Pending => self.0.lock().unwrap()[i].future = Some(future),
                }
            }
            if !progressed {
                return;
            }
        }
    }

    /// Drops task `i`'s future without completing it, as a panic unwinding through it does.
    fn unwind(&self, i: usize) {
        let future = self.0.lock().unwrap()[i].future.take();
        if let Some(future) = future {
            drop(future);
            self.0.lock().unwrap()[i]
                .finished
                .store(true, Ordering::SeqCst);
        }
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn alive(&self) -> Vec<usize> {
        let tasks = self.0.lock().unwrap();
        (0..tasks.len())
            .filter(|i| tasks[*i].future.is_some())
            .collect()
    }
}

/// What a task future waits for: the stop signal, or its end being decided by the driver.
type Exit = Arc<Mutex<Option<CloseReason>>>;

/// A reader or writer: returns when the driver decides its end, or `Shutdown` once the
/// connection's stop signal is raised (the `select!` on `ctx.stopped()` in `net::ha`).
fn task_future(
    ctx: Arc<HaTaskContext>,
    exit: Exit,
) -> impl Future<Output = CloseReason> + Send + 'static {
    std::future::poll_fn(move |_| {
        if let Some(reason) = exit.lock().unwrap().take() {
            return Poll::Ready(reason);
        }
        if ctx.is_stopped() {
            return Poll::Ready(CloseReason::Shutdown);
        }
        Poll::Pending
    })
}

// ------------------------------------------------------------------------------------------------
// The driver.

struct Live {
    /// Its row; the acceptor holds its `Running` handle.
    id: ConnId,
    /// The reader's context (shared with its task), through which acks reach the table.
    ctx: Arc<HaTaskContext>,
    link: MasterLink,
    /// This link's clock: only differences matter, and an idle timeout on one connection must
    /// not age the others.
    now: Millis,
    reader: Exit,
    /// Index of the writer task in the spawner.
    writer_task: usize,
}

enum Slot {
    Init(HaConnection<Init, ()>),
    Registered(HaConnection<Registered, ()>),
    Running(Box<Live>),
    Closed,
}

impl Slot {
    fn phase(&self) -> HaPhase {
        match self {
            Slot::Init(_) => HaPhase::Init,
            Slot::Registered(_) => HaPhase::Registered,
            Slot::Running(_) => HaPhase::Running,
            Slot::Closed => HaPhase::Closed,
        }
    }
}

/// The real HA master side, driven one op at a time.
pub(crate) struct HaDriver {
    config: HaModelConfig,
    registry: Arc<HaRegistry>,
    spawner: ManualSpawner,
    acceptor: HaAcceptor<(), ManualSpawner>,
    slots: BTreeMap<HaConn, Slot>,
    ids: BTreeMap<ConnId, HaConn>,
    max_offset: u64,
    events: Vec<HaClosed>,
    faults: DriverFaults,
}

impl HaDriver {
    /// A master with an empty log.
    pub(crate) fn new(
        config: HaModelConfig,
        registry_faults: HaFaults,
        faults: DriverFaults,
    ) -> Self {
        let registry = Arc::new(HaRegistry::with_faults(
            config.max_connections,
            registry_faults,
        ));
        let spawner = ManualSpawner::default();
        HaDriver {
            config,
            acceptor: HaAcceptor::new(registry.clone(), spawner.clone()),
            registry,
            spawner,
            slots: BTreeMap::new(),
            ids: BTreeMap::new(),
            max_offset: 0,
            events: Vec::new(),
            faults,
        }
    }

    /// The same master with planted defects in its acceptor (before any op).
    pub(crate) fn with_acceptor_faults(mut self, faults: AcceptorFaults) -> Self {
        assert!(
            self.slots.is_empty(),
            "acceptor faults are planted before any op"
        );
        self.acceptor =
            HaAcceptor::with_faults(self.registry.clone(), self.spawner.clone(), faults);
        self
    }

    fn phase(&self, conn: HaConn) -> Option<HaPhase> {
        self.slots.get(&conn).map(Slot::phase)
    }

    fn ignored(&self, conn: HaConn) -> HaOpResult {
        HaOpResult::Ignored {
            conn,
            phase: self.phase(conn),
        }
    }

    fn rows(&self) -> BTreeSet<ConnId> {
        self.registry.entries().into_iter().map(|e| e.id).collect()
    }

    /// Applies `op` to the real code and returns what it returned.
    pub(crate) fn apply(&mut self, op: &HaOp) -> HaOpResult {
        self.events.clear();
        let before = self.rows();
        let mut closes: Vec<(HaConn, HaCloseReason)> = Vec::new();
        let result = self.apply_inner(op, &mut closes);
        self.spawner.run();
        let after = self.rows();
        let id_of: BTreeMap<HaConn, ConnId> = self.ids.iter().map(|(id, c)| (*c, *id)).collect();
        for (conn, reason) in closes {
            let deregistered = id_of
                .get(&conn)
                .is_some_and(|id| before.contains(id) && !after.contains(id));
            self.events.push(HaClosed {
                conn,
                reason,
                deregistered,
            });
        }
        self.events.sort();
        result
    }

    fn apply_inner(&mut self, op: &HaOp, closes: &mut Vec<(HaConn, HaCloseReason)>) -> HaOpResult {
        match *op {
            HaOp::Accept => {
                let conn = HaConn(self.slots.len() as u64 + 1);
                let peer = format!("10.0.0.{}:10912", conn.0);
                self.slots
                    .insert(conn, Slot::Init(HaConnection::new((), peer)));
                HaOpResult::Accepted { conn }
            }
            HaOp::Register { conn } => {
                let Some(Slot::Init(_)) = self.slots.get(&conn) else {
                    return self.ignored(conn);
                };
                let Some(Slot::Init(c)) = self.slots.insert(conn, Slot::Closed) else {
                    unreachable!("checked above")
                };
                match c.register(&self.registry) {
                    Ok(registered) => {
                        self.ids.insert(registered.id(), conn);
                        self.slots.insert(conn, Slot::Registered(registered));
                        HaOpResult::Registered { conn }
                    }
                    Err(failed) => {
                        let refusal = match failed.error {
                            HaRegisterError::ShuttingDown => HaRefusal::ShuttingDown,
                            HaRegisterError::TooManyConnections { max } => {
                                HaRefusal::TooManyConnections { max }
                            }
                        };
                        let _closed = failed
                            .connection
                            .close(CloseReason::Rejected(failed.error.to_string()));
                        closes.push((conn, HaCloseReason::Rejected { refusal }));
                        HaOpResult::Refused { conn, refusal }
                    }
                }
            }
            HaOp::Spawn { conn } => {
                let Some(Slot::Registered(_)) = self.slots.get(&conn) else {
                    return self.ignored(conn);
                };
                let Some(Slot::Registered(c)) = self.slots.insert(conn, Slot::Closed) else {
                    unreachable!("checked above")
                };
                let reader: Exit = Arc::default();
                let writer: Exit = Arc::default();
                let (r, w) = (reader.clone(), writer);
                let writer_task = self.spawner.len() + 1;
                let held: Arc<Mutex<Option<Arc<HaTaskContext>>>> = Arc::default();
                let keep = held.clone();
                let started = self.acceptor.start_registered(c, move |(), rctx, wctx| {
                    let rctx = Arc::new(rctx);
                    *keep.lock().unwrap() = Some(rctx.clone());
                    (task_future(rctx, r), task_future(Arc::new(wctx), w))
                });
                let id = started.expect("no shutdown while a connection is registered");
                let ctx = held
                    .lock()
                    .unwrap()
                    .take()
                    .expect("spawn built the futures");
                let config = HaConfig {
                    segment_size: self.config.segment_size,
                    ..link_config()
                };
                let mut link = MasterLink::new(config, 0, self.max_offset);
                if self.faults.unchecked_acks {
                    link = link.with_unchecked_acks();
                }
                let now = Millis(0);
                link.handle_start(now);
                self.slots.insert(
                    conn,
                    Slot::Running(Box::new(Live {
                        id,
                        ctx,
                        link,
                        now,
                        reader,
                        writer_task,
                    })),
                );
                HaOpResult::Spawned { conn }
            }
            HaOp::Report { conn, ref bytes } => {
                let Some(Slot::Running(live)) = self.slots.get_mut(&conn) else {
                    return self.ignored(conn);
                };
                live.link.handle_bytes(live.now, bytes);
                let (acked, closed) = drain(&mut live.link, &live.ctx);
                if let Some(reason) = closed {
                    self.end(conn, reason, closes);
                }
                HaOpResult::Reported { conn, acked }
            }
            HaOp::Flush { conn } => {
                let max = self.max_offset;
                let Some(Slot::Running(live)) = self.slots.get_mut(&conn) else {
                    return self.ignored(conn);
                };
                // The writer's step `net::ha::write_transfers` takes, until nothing is due.
                let mut closed = None;
                let mut due = Vec::new();
                loop {
                    due.clear();
                    let step = live.ctx.due_transfers(
                        &mut live.link,
                        max,
                        live.now,
                        usize::MAX,
                        &mut due,
                        |_| {},
                    );
                    if let Err(why) = step {
                        closed = Some(close_reason(&why));
                        break;
                    }
                    if due.is_empty() {
                        break;
                    }
                }
                let sent = live.link.next_offset();
                if let Some(reason) = closed {
                    self.end(conn, reason, closes);
                }
                HaOpResult::Flushed { conn, sent }
            }
            HaOp::Append { len } => {
                self.max_offset = self.max_offset.saturating_add(len);
                // The writers wake on the log growing and refresh their link's log end.
                for slot in self.slots.values_mut() {
                    if let Slot::Running(live) = slot {
                        live.link.handle_local_max(self.max_offset);
                    }
                }
                HaOpResult::Appended {
                    max_offset: self.max_offset,
                }
            }
            HaOp::PeerClose { conn } => {
                if !matches!(self.slots.get(&conn), Some(Slot::Running(_))) {
                    return self.ignored(conn);
                }
                if self.faults.forget_on_peer_close {
                    // Noted as closed, but its task never hears of it: the acceptor keeps it.
                    self.slots.insert(conn, Slot::Closed);
                    closes.push((conn, HaCloseReason::PeerClosed));
                    return HaOpResult::Closed { conn };
                }
                self.end(conn, HaCloseReason::PeerClosed, closes);
                HaOpResult::Closed { conn }
            }
            HaOp::IdleTimeout { conn } => {
                let Some(Slot::Running(live)) = self.slots.get_mut(&conn) else {
                    return self.ignored(conn);
                };
                live.now = Millis(live.now.0 + link_config().housekeeping_ms + 1);
                live.link.handle_timeout(live.now);
                match drain(&mut live.link, &live.ctx) {
                    (_, Some(reason)) => {
                        self.end(conn, reason, closes);
                        HaOpResult::Closed { conn }
                    }
                    _ => self.ignored(conn),
                }
            }
            HaOp::TaskFail { conn } => {
                let Some(Slot::Running(live)) = self.slots.get(&conn) else {
                    return self.ignored(conn);
                };
                let writer = live.writer_task;
                // The writer panics: unwinding drops its future mid-flight, its guard raises the
                // stop signal and removes the row; the reader then stops; the accept loop reaps
                // the handle.
                self.spawner.unwind(writer);
                self.spawner.run();
                self.reap(conn);
                closes.push((conn, HaCloseReason::TaskFailed));
                HaOpResult::Closed { conn }
            }
            HaOp::Close { conn } => {
                let reason = CloseReason::Local;
                match self.slots.insert(conn, Slot::Closed) {
                    Some(Slot::Init(c)) => drop(c.close(reason)),
                    Some(Slot::Registered(c)) => drop(c.close(reason)),
                    Some(Slot::Running(live)) => {
                        assert!(
                            self.acceptor.close(live.id, reason),
                            "the acceptor holds it"
                        );
                        self.spawner.run();
                    }
                    other => {
                        match other {
                            Some(slot) => self.slots.insert(conn, slot),
                            None => self.slots.remove(&conn),
                        };
                        return self.ignored(conn);
                    }
                }
                closes.push((conn, HaCloseReason::Local));
                HaOpResult::Closed { conn }
            }
            HaOp::Shutdown => {
                // `HaMaster::shutdown`: close every stored (running) connection, then the
                // acceptor's shutdown (`close_all`), which also removes what is registered but
                // not yet running; those handles are closed after it.
                let running: Vec<HaConn> = self
                    .slots
                    .iter()
                    .filter(|(_, s)| matches!(s, Slot::Running(_)))
                    .map(|(c, _)| *c)
                    .collect();
                let held = self.acceptor.shutdown();
                assert_eq!(
                    held,
                    running.len(),
                    "the acceptor held the running connections"
                );
                let mut closed = Vec::new();
                for conn in running {
                    self.slots.insert(conn, Slot::Closed);
                    closes.push((conn, HaCloseReason::Shutdown));
                    closed.push(conn);
                }
                let registered: Vec<HaConn> = self
                    .slots
                    .iter()
                    .filter(|(_, s)| matches!(s, Slot::Registered(_)))
                    .map(|(c, _)| *c)
                    .collect();
                for conn in registered {
                    if let Some(Slot::Registered(c)) = self.slots.insert(conn, Slot::Closed) {
                        drop(c.close(CloseReason::Shutdown));
                        closes.push((conn, HaCloseReason::Shutdown));
                        closed.push(conn);
                    }
                }
                closed.sort();
                HaOpResult::ShutDown { closed }
            }
        }
    }

    /// The reader returns `reason`: its guard stops the writer and removes the row; the accept
    /// loop reaps the handle.
    fn end(
        &mut self,
        conn: HaConn,
        reason: HaCloseReason,
        closes: &mut Vec<(HaConn, HaCloseReason)>,
    ) {
        if let Some(Slot::Running(live)) = self.slots.get(&conn) {
            let why = match reason {
                HaCloseReason::PeerClosed => CloseReason::PeerClosed,
                HaCloseReason::IdleTimeout => CloseReason::IdleTimeout,
                other => CloseReason::ProtocolError(format!("{other:?}")),
            };
            *live.reader.lock().unwrap() = Some(why);
        }
        self.spawner.run();
        self.reap(conn);
        closes.push((conn, reason));
    }

    /// Its tasks ended: the acceptor reaped the connection (it holds it no more).
    fn reap(&mut self, conn: HaConn) {
        self.spawner.run();
        if let Some(Slot::Running(live)) = self.slots.insert(conn, Slot::Closed) {
            drop(live);
        }
    }

    /// What the real code shows now.
    pub(crate) fn observe(&self) -> HaObserved {
        let max = self.max_offset;
        let table: Vec<HaRow> = self
            .registry
            .entries()
            .into_iter()
            .map(|e| {
                let conn = self.ids.get(&e.id).copied().unwrap_or(HaConn(u64::MAX));
                let (state, sent) = match self.slots.get(&conn) {
                    Some(Slot::Running(live)) => (live.link.state(), live.link.next_offset()),
                    Some(Slot::Registered(_)) => (rmq_lifecycle::core::ha::HaState::Ready, 0),
                    _ => (rmq_lifecycle::core::ha::HaState::Shutdown, 0),
                };
                HaRow {
                    conn,
                    state,
                    ack: e.ack,
                    sent,
                }
            })
            .collect();
        let mut table = table;
        table.sort_by_key(|r| r.conn);
        HaObserved {
            table,
            live: self
                .slots
                .iter()
                .filter(|(_, s)| s.phase() != HaPhase::Closed)
                .map(|(conn, s)| HaLive {
                    conn: *conn,
                    phase: s.phase(),
                })
                .collect(),
            count: self.registry.count(),
            reported: self.registry.acked_at_least(0),
            acked_max: self.registry.acked_at_least(max),
            in_sync: self.registry.in_sync(max, self.config.max_gap),
            max_offset: max,
            shut_down: self.registry.is_closed(),
            accepted_total: self.registry.accepted_total(),
            closed_total: self.registry.closed_total(),
            events: self.events.clone(),
        }
    }

    /// `NoRunningUnregistered` on the tasks themselves: a task still alive belongs to a running
    /// connection whose row is in the table.
    pub(crate) fn check_tasks(&self) -> Result<(), Violation> {
        let rows = self.rows();
        let mut owners = BTreeMap::new();
        for (conn, slot) in &self.slots {
            if let Slot::Running(live) = slot {
                owners.insert(live.writer_task - 1, (*conn, live.id));
                owners.insert(live.writer_task, (*conn, live.id));
            }
        }
        let running = self
            .slots
            .values()
            .filter(|s| matches!(s, Slot::Running(_)))
            .count();
        if self.acceptor.open() != running {
            return Err(Violation {
                invariant: "NoLeakAtQuiescence",
                detail: format!(
                    "the acceptor holds {} connection(s), {running} are running",
                    self.acceptor.open()
                ),
            });
        }
        for task in self.spawner.alive() {
            let owner = owners.get(&task);
            if !owner.is_some_and(|(_, id)| rows.contains(id)) {
                return Err(Violation {
                    invariant: "NoRunningUnregistered",
                    detail: format!("task {task} is alive, owner {owner:?} has no row"),
                });
            }
        }
        Ok(())
    }
}

/// The link's pending events, applied by the shipped step `net::ha` uses: valid reports go to the
/// table; a close is returned.
fn drain(link: &mut MasterLink, ctx: &HaTaskContext) -> (Vec<u64>, Option<HaCloseReason>) {
    let mut acked = Vec::new();
    let closed = ctx.apply_link_events(link, |ack| acked.push(ack.offset));
    (acked, closed.map(|why| close_reason(&why)))
}

/// The model's name for a link's close. Protocol errors are told apart by the clause their
/// message names; a message no clause matches is reported as is, and fails the comparison.
fn close_reason(why: &HaClose) -> HaCloseReason {
    match why {
        HaClose::Idle => HaCloseReason::IdleTimeout,
        HaClose::Shutdown => HaCloseReason::Shutdown,
        HaClose::Protocol(detail) => {
            let rule = if detail.starts_with("negative report") {
                ReportRule::Negative
            } else if detail.contains("beyond the master's max offset") {
                ReportRule::BeyondMax
            } else if detail.contains("went back") {
                ReportRule::WentBack
            } else if detail.contains("bytes sent") {
                ReportRule::BeyondSent
            } else {
                panic!("a protocol error the model has no rule for: {detail}")
            };
            HaCloseReason::ProtocolError { rule }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Bytes -> ops.

/// A health check's first bytes (the #8875 probe) and an HTTP probe.
const PROBES: [&[u8]; 2] = [b"2024-10-30 16:42:30\n", b"GET / HTTP/1.1\r\n\r\n"];

/// Op codes (the op byte `% 16`); the high nibble of some selects a variant.
mod code {
    pub(super) const ACCEPT: u8 = 0; // and 1
    pub(super) const REGISTER: u8 = 2; // and 3
    pub(super) const SPAWN: u8 = 4; // and 5
    pub(super) const REPORT: u8 = 6; // to 8
    pub(super) const FLUSH: u8 = 9; // and 10
    pub(super) const APPEND: u8 = 11; // and 12
    pub(super) const PEER_CLOSE: u8 = 13;
    /// High nibble % 3: idle timeout, task failure, local close.
    pub(super) const END: u8 = 14;
    /// High nibble < 4: shutdown; else a local close.
    pub(super) const SHUTDOWN: u8 = 15;
    /// Report payload kinds (the kind byte `% 7`).
    pub(super) const RAW: u8 = 4;
}

/// The phase an op acts on, so the decoder mostly picks a connection it does something to.
fn wanted(op: u8) -> Option<HaPhase> {
    match op {
        code::REGISTER => Some(HaPhase::Init),
        code::SPAWN => Some(HaPhase::Registered),
        code::REPORT | code::FLUSH | code::PEER_CLOSE | code::END => Some(HaPhase::Running),
        _ => None,
    }
}

/// Decodes ops one at a time, looking at the oracle's state (never the real code's) so that most
/// ops do something: every byte string is a valid, possibly empty, sequence.
///
/// Layout: an op byte, then its arguments. A connection is one byte: an index into the
/// connections in the phase the op acts on, or `0xff` then a byte picking any connection (one
/// past the accepted ones is a connection never accepted). A report is a kind byte, then its
/// payload: an absolute offset, an offset relative to the connection's ack, sent offset or the
/// master's end, part of one, a negative one, a probe's text or raw bytes.
pub(crate) struct OpDecoder<'a> {
    data: &'a [u8],
}

impl<'a> OpDecoder<'a> {
    /// Decodes `data`.
    pub(crate) fn new(data: &'a [u8]) -> Self {
        OpDecoder { data }
    }

    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    fn conn(&mut self, model: &HaModel, phase: Option<HaPhase>) -> Option<HaConn> {
        let b = self.byte()?;
        let candidates: Vec<HaConn> = phase.map_or_else(Vec::new, |p| model.conns_in(p).collect());
        if b != 0xff && !candidates.is_empty() {
            return Some(candidates[usize::from(b) % candidates.len()]);
        }
        let any = if b == 0xff { self.byte()? } else { b };
        Some(HaConn(u64::from(any) % (model.accepted() + 1) + 1))
    }

    /// An offset near one the connection or the master has: `delta` in -2..=2.
    fn relative(&mut self, model: &HaModel, conn: HaConn) -> Option<i64> {
        let sel = self.byte()?;
        let (ack, sent) = model.ack_and_sent(conn).unwrap_or((None, 0));
        let base = match sel % 3 {
            0 => ack.unwrap_or(0),
            1 => sent,
            _ => model.max_offset(),
        };
        let delta = i64::from((sel / 3) % 5) - 2;
        Some((base as i64).saturating_add(delta))
    }

    fn report(&mut self, model: &HaModel, conn: HaConn) -> Option<Vec<u8>> {
        let kind = self.byte()?;
        Some(match kind % 7 {
            0 => {
                let hi = self.byte()?;
                let lo = self.byte()?;
                u64::from(u16::from_be_bytes([hi, lo]))
                    .to_be_bytes()
                    .to_vec()
            }
            1 => self.relative(model, conn)?.to_be_bytes().to_vec(),
            // Two reports in one read.
            2 => [
                self.relative(model, conn)?.to_be_bytes(),
                self.relative(model, conn)?.to_be_bytes(),
            ]
            .concat(),
            // Part of a report: the first `n` bytes of one, the rest in a later read.
            3 => {
                let n = usize::from(self.byte()? % 8);
                self.relative(model, conn)?.to_be_bytes()[..n].to_vec()
            }
            code::RAW => {
                let n = usize::from(self.byte()? % 24).min(self.data.len());
                let (head, rest) = self.data.split_at(n);
                self.data = rest;
                head.to_vec()
            }
            5 => (-i64::from(self.byte()?) - 1).to_be_bytes().to_vec(),
            _ => PROBES[usize::from(kind / 7) % PROBES.len()].to_vec(),
        })
    }

    /// The next op given the oracle's state; `None` when the input is used up.
    pub(crate) fn next_op(&mut self, model: &HaModel) -> Option<HaOp> {
        let b = self.byte()?;
        let (op, variant) = (b % 16, b >> 4);
        let op = match op {
            0 | 1 => return Some(HaOp::Accept),
            11 | 12 => {
                return Some(HaOp::Append {
                    len: u64::from(self.byte()?),
                });
            }
            code::SHUTDOWN if variant < 4 => return Some(HaOp::Shutdown),
            3 => code::REGISTER,
            5 => code::SPAWN,
            7 | 8 => code::REPORT,
            10 => code::FLUSH,
            op => op,
        };
        let conn = self.conn(model, wanted(op))?;
        Some(match op {
            code::REGISTER => HaOp::Register { conn },
            code::SPAWN => HaOp::Spawn { conn },
            code::REPORT => HaOp::Report {
                conn,
                bytes: self.report(model, conn)?,
            },
            code::FLUSH => HaOp::Flush { conn },
            code::PEER_CLOSE => HaOp::PeerClose { conn },
            code::END => match variant % 3 {
                0 => HaOp::IdleTimeout { conn },
                1 => HaOp::TaskFail { conn },
                _ => HaOp::Close { conn },
            },
            _ => HaOp::Close { conn },
        })
    }
}

/// The bytes that [`OpDecoder`] decodes into `ops` (reports are written raw, in pieces of at
/// most 23 bytes), for writing seeds. Runs the oracle alongside, as the decoder does.
pub(crate) fn encode(ops: &[HaOp]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut model = HaModel::new(model_config());
    let conn = |out: &mut Vec<u8>, model: &HaModel, op: u8, c: HaConn| {
        let candidates: Vec<HaConn> =
            wanted(op).map_or_else(Vec::new, |p| model.conns_in(p).collect());
        match candidates.iter().position(|x| *x == c) {
            Some(i) if i < 0xff => out.push(i as u8),
            _ => out.extend_from_slice(&[0xff, (c.0 - 1) as u8]),
        }
    };
    for op in ops {
        match op {
            HaOp::Accept => out.push(code::ACCEPT),
            HaOp::Register { conn: c } => {
                out.push(code::REGISTER);
                conn(&mut out, &model, code::REGISTER, *c);
            }
            HaOp::Spawn { conn: c } => {
                out.push(code::SPAWN);
                conn(&mut out, &model, code::SPAWN, *c);
            }
            HaOp::Report { conn: c, bytes } => {
                for piece in bytes.chunks(23) {
                    out.push(code::REPORT);
                    conn(&mut out, &model, code::REPORT, *c);
                    out.extend_from_slice(&[code::RAW, piece.len() as u8]);
                    out.extend_from_slice(piece);
                    model.apply(&HaOp::Report {
                        conn: *c,
                        bytes: piece.to_vec(),
                    });
                }
                continue;
            }
            HaOp::Flush { conn: c } => {
                out.push(code::FLUSH);
                conn(&mut out, &model, code::FLUSH, *c);
            }
            HaOp::Append { len } => out.extend_from_slice(&[code::APPEND, (*len).min(255) as u8]),
            HaOp::PeerClose { conn: c } => {
                out.push(code::PEER_CLOSE);
                conn(&mut out, &model, code::PEER_CLOSE, *c);
            }
            HaOp::IdleTimeout { conn: c } => {
                out.push(code::END);
                conn(&mut out, &model, code::END, *c);
            }
            HaOp::TaskFail { conn: c } => {
                out.push(code::END | 1 << 4);
                conn(&mut out, &model, code::END, *c);
            }
            HaOp::Close { conn: c } => {
                out.push(code::END | 2 << 4);
                conn(&mut out, &model, code::END, *c);
            }
            HaOp::Shutdown => out.push(code::SHUTDOWN),
        }
        model.apply(op);
    }
    out
}

/// Decodes at most [`MAX_OPS`] ops (running the oracle to do so).
pub(crate) fn decode(data: &[u8]) -> Vec<HaOp> {
    let mut d = OpDecoder::new(data);
    let mut model = HaModel::new(model_config());
    std::iter::from_fn(|| {
        let op = d.next_op(&model)?;
        model.apply(&op);
        Some(op)
    })
    .take(MAX_OPS)
    .collect()
}

// ------------------------------------------------------------------------------------------------
// The property.

/// Runs `ops` on the real code (with `faults`) and on the model; the first divergence or
/// violated invariant, naming the step.
pub(crate) fn run(
    ops: &[HaOp],
    registry_faults: HaFaults,
    faults: DriverFaults,
) -> Result<(), String> {
    let config = model_config();
    let mut model = HaModel::new(config);
    let mut real = HaDriver::new(config, registry_faults, faults);
    let mut before = real.observe();
    for (i, op) in ops.iter().enumerate() {
        let expected = model.apply(op);
        let actual = real.apply(op);
        let at = |what: String| format!("step {i} {op:?}: {what}");
        let observed = real.observe();
        observed
            .check_invariants()
            .map_err(|v| at(format!("real: {v}")))?;
        observed
            .check_step(&before)
            .map_err(|v| at(format!("real: {v}")))?;
        real.check_tasks().map_err(|v| at(format!("real: {v}")))?;
        model
            .check_invariants()
            .map_err(|v| at(format!("the oracle itself: {v}")))?;
        if actual != expected {
            return Err(at(format!("result {actual:?}, oracle {expected:?}")));
        }
        let oracle = model.observe();
        if observed != oracle {
            return Err(at(format!("observed\n{observed:#?}\noracle\n{oracle:#?}")));
        }
        before = observed;
    }
    Ok(())
}

/// [`run`] on the ops `data` decodes to.
pub(crate) fn check_with(
    data: &[u8],
    registry_faults: HaFaults,
    faults: DriverFaults,
) -> Result<(), String> {
    run(&decode(data), registry_faults, faults)
}

/// The fuzz property: the real HA side matches the oracle after every op.
pub(crate) fn check(data: &[u8]) {
    if let Err(e) = check_with(data, HaFaults::default(), DriverFaults::default()) {
        panic!("{e}");
    }
}
