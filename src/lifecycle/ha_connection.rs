//! `HaConnection<P, T>`: one accepted HA transport's lifecycle around its `HaRegistry` row.
//!
//! ```text
//!  new(transport, peer)  register(&registry)         spawn(&spawner, start)          close(reason)
//! ─────────────────────▶ Init ─────────────▶ Registered ─────────────────────▶ Running ─────────▶ Closed
//! ```
//!
//! The handle owns the transport `T` (a socket, or whatever a harness stands in for one) from
//! accept until `spawn` moves it into the tasks it starts; closing or dropping a handle before
//! that drops the transport, which closes it. `spawn` exists only on `Registered`: starting the
//! reader and writer before the row exists is what leaked connections in RocketMQ 5.1.4 (#8875),
//! and here it does not compile.
//!
//! The row holds the connection's [`StopSignal`]; every removal raises it before the row goes
//! (`StopBeforeRemove`), so a task that is still running is either registered or already told
//! to stop (`NoRunningUnregistered`). Each task holds a registration guard: whichever task ends
//! first (returns, panics or is aborted) removes the row, which stops the other.
//!
//! A `Registered` handle that is leaked (`mem::forget`) leaks its transport, as forgetting a
//! socket does, but not its row: `HaRegistry` housekeeping reclaims rows whose tasks never
//! started (see `HaAcceptor::housekeeping`).

use super::registration::{Holder, Membership, Registration};
use super::{CloseReason, Spawn, TaskHandle};
use crate::core::Millis;
use crate::core::ha::{HaClose, MasterEvent, MasterLink, Transmit};
use crate::core::model_trace::HA_TARGET as MODEL;
use crate::phase::{Closed, Init, Phase, Registered, Running};
use crate::registry::{ConnId, HaRegisterError, HaRegistry, StopSignal, Stopped};
use crate::sync::Arc;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Maps each phase to what an `HaConnection` owns in it.
pub trait HaPhase: Phase {
    #[doc(hidden)]
    type State<T: Send + 'static>: Send;
}

impl HaPhase for Init {
    type State<T: Send + 'static> = state::Init<T>;
}
impl HaPhase for Registered {
    type State<T: Send + 'static> = state::Registered<T>;
}
impl HaPhase for Running {
    type State<T: Send + 'static> = state::Running<T>;
}
impl HaPhase for Closed {
    type State<T: Send + 'static> = state::Closed<T>;
}

#[doc(hidden)]
pub mod state {
    //! Per-phase contents of an `HaConnection`; public only because associated types must be.
    use super::*;

    pub struct Init<T> {
        pub(super) peer: String,
        pub(super) transport: T,
    }
    pub struct Registered<T> {
        pub(super) peer: String,
        pub(super) registration: Registration<HaRegistry>,
        pub(super) stop: StopSignal,
        pub(super) transport: T,
    }
    pub struct Running<T> {
        pub(super) peer: String,
        pub(super) registration: Registration<HaRegistry>,
        pub(super) stop: StopSignal,
        pub(super) tasks: [Box<dyn TaskHandle>; 2],
        pub(super) transport: PhantomData<fn() -> T>,
    }

    impl<T> Drop for Running<T> {
        /// Stop first, then abort; the registration (dropped next) removes the row.
        fn drop(&mut self) {
            self.stop.stop();
            for task in &self.tasks {
                task.abort();
            }
        }
    }

    pub struct Closed<T> {
        pub(super) peer: String,
        pub(super) id: Option<ConnId>,
        pub(super) reason: CloseReason,
        /// This close removed the registry entry (false if another path already had).
        pub(super) removed: bool,
        pub(super) transport: PhantomData<fn() -> T>,
    }
}

impl Membership for HaRegistry {
    type Key = ConnId;
    const KIND: &'static str = "HA connection";

    fn remove(&self, key: &ConnId, holder: Holder, reason: &CloseReason) -> bool {
        self.deregister(*key, holder, reason)
    }

    fn trace_id(key: &ConnId) -> u64 {
        key.0
    }
}

/// An HA connection in phase `P` over transport `T`.
///
/// One per accepted slave socket: `new(transport, peer)`, `register(&registry)` (the row exists
/// before any task), then `spawn` its reader and writer, each with an [`HaTaskContext`] that
/// records acks and says when to stop. The first task to end removes the row, which stops the
/// other. Here the reader records one ack and both wait to be stopped:
///
/// ```
/// use rmq_lifecycle::lifecycle::{CloseReason, HaConnection};
/// use rmq_lifecycle::net::TokioSpawner;
/// use rmq_lifecycle::registry::HaRegistry;
/// use rmq_lifecycle::tokio;
/// use std::sync::Arc;
///
/// struct Socket; // the accepted transport: the connection owns it until its tasks take it
///
/// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let registry = Arc::new(HaRegistry::new(16));
/// let registered = HaConnection::new(Socket, "10.0.0.2:41000")
///     .register(&registry)
///     .unwrap_or_else(|refused| panic!("{}", refused.error));
/// assert_eq!(registry.count(), 1);
///
/// let spawner = TokioSpawner::new(runtime.handle().clone());
/// let running = registered.spawn(&spawner, |_socket, reader, writer| {
///     let reader = async move {
///         reader.record_ack(4096); // a report the core's `MasterLink` accepted
///         reader.stopped().await;
///         CloseReason::Shutdown
///     };
///     let writer = async move {
///         writer.stopped().await;
///         CloseReason::Shutdown
///     };
///     (reader, writer)
/// });
/// runtime.block_on(async {
///     while registry.acked_at_least(4096) == 0 {
///         tokio::task::yield_now().await;
///     }
/// });
/// let closed = running.close(CloseReason::Shutdown); // stop, then the row goes
/// assert!(closed.removed_row());
/// assert_eq!(registry.count(), 0);
/// ```
pub struct HaConnection<P: HaPhase, T: Send + 'static> {
    state: P::State<T>,
}

impl<P: HaPhase, T: Send + 'static> fmt::Debug for HaConnection<P, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HaConnection")
            .field("phase", &P::NAME)
            .finish_non_exhaustive()
    }
}

/// A refused registration; the connection, transport included, comes back so it can still be
/// closed (or told why on the wire).
#[derive(thiserror::Error)]
#[error("HA connection from {} was not registered: {error}", connection.peer())]
pub struct HaRegisterFailed<T: Send + 'static> {
    /// The connection, still in `Init`.
    pub connection: HaConnection<Init, T>,
    /// Why the table refused it.
    pub error: HaRegisterError,
}

impl<T: Send + 'static> fmt::Debug for HaRegisterFailed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HaRegisterFailed")
            .field("peer", &self.connection.peer())
            .field("error", &self.error)
            .finish()
    }
}

/// What each of a connection's two tasks gets: its row's id, acks, and the stop signal. One per
/// task, not cloneable: it cannot outlive the task it was made for in any useful way, since its
/// row goes when either task ends.
#[derive(Debug)]
pub struct HaTaskContext {
    pub(super) id: ConnId,
    pub(super) registry: Arc<HaRegistry>,
    pub(super) stop: StopSignal,
}

impl HaTaskContext {
    /// The connection's row.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Records a valid report (the core's `MasterLink` validated it); false once the row is gone.
    pub fn record_ack(&self, offset: u64) -> bool {
        self.registry.record_ack(self.id, offset)
    }

    /// True once the connection was told to stop (the other task ended, or the row went).
    pub fn is_stopped(&self) -> bool {
        self.stop.is_stopped()
    }

    /// Completes once the connection is told to stop: return promptly.
    pub fn stopped(&self) -> Stopped<'_> {
        self.stop.stopped()
    }

    /// Applies the link's pending events, the one way every driver does: each report the link
    /// accepted (`AckBounded` is the link's rule) is recorded in the row and handed to `on_ack`;
    /// a close is returned, and the task then ends with it.
    pub fn apply_link_events(
        &self,
        link: &mut MasterLink,
        mut on_ack: impl FnMut(AppliedAck),
    ) -> Option<HaClose> {
        while let Some(event) = link.poll_event() {
            match event {
                MasterEvent::Acked { offset, first } => on_ack(AppliedAck {
                    offset,
                    first,
                    recorded: self.record_ack(offset),
                }),
                MasterEvent::Closed(why) => return Some(why),
            }
        }
        None
    }

    /// The writer's step: tells the link the log's end and the time, applies its events, then
    /// collects into `out` the transfers now due, up to about `budget` bytes of frames. The
    /// writer sends them and steps again until nothing is due.
    pub fn due_transfers(
        &self,
        link: &mut MasterLink,
        local_max: u64,
        now: Millis,
        budget: usize,
        out: &mut Vec<Transmit>,
        on_ack: impl FnMut(AppliedAck),
    ) -> Result<(), HaClose> {
        link.handle_local_max(local_max);
        link.handle_timeout(now);
        if let Some(why) = self.apply_link_events(link, on_ack) {
            return Err(why);
        }
        let mut gathered = 0;
        while gathered < budget {
            let Some(t) = link.poll_transmit(now) else {
                break;
            };
            gathered += t.header_len(link.epoch_count()) + t.len as usize;
            out.push(t);
        }
        Ok(())
    }
}

/// A report the link accepted, as [`HaTaskContext::apply_link_events`] applied it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedAck {
    /// The offset the slave reported.
    pub offset: u64,
    /// Its first valid report: from now on it counts for sync replication.
    pub first: bool,
    /// The row took it (false once the row is gone).
    pub recorded: bool,
}

impl<T: Send + 'static> HaConnection<Init, T> {
    /// An accepted transport from `peer` (a label for traces and metrics).
    pub fn new(transport: T, peer: impl Into<String>) -> Self {
        HaConnection {
            state: state::Init {
                peer: peer.into(),
                transport,
            },
        }
    }

    /// The peer label.
    pub fn peer(&self) -> &str {
        &self.state.peer
    }

    /// Adds the row. On refusal (shutdown, cap) the connection is handed back.
    pub fn register(
        self,
        registry: &Arc<HaRegistry>,
    ) -> Result<HaConnection<Registered, T>, HaRegisterFailed<T>> {
        let stop = StopSignal::new();
        match registry.register(&self.state.peer, stop.clone()) {
            Ok(id) => {
                let registration = Registration::new(registry.clone(), id);
                let state::Init { peer, transport } = self.state;
                Ok(HaConnection {
                    state: state::Registered {
                        peer,
                        registration,
                        stop,
                        transport,
                    },
                })
            }
            Err(error) => Err(HaRegisterFailed {
                connection: self,
                error,
            }),
        }
    }

    /// Takes the transport back from a connection that never registered.
    pub fn into_transport(self) -> T {
        self.state.transport
    }

    /// Closes a connection that never registered: drops the transport, nothing else to undo.
    pub fn close(self, reason: CloseReason) -> HaConnection<Closed, T> {
        tracing::debug!(peer = %self.state.peer, ?reason, "unregistered HA connection closed");
        let state::Init { peer, transport } = self.state;
        drop(transport);
        HaConnection {
            state: state::Closed {
                peer,
                id: None,
                reason,
                removed: false,
                transport: PhantomData,
            },
        }
    }
}

impl<T: Send + 'static> HaConnection<Registered, T> {
    /// The row's id.
    pub fn id(&self) -> ConnId {
        *self.state.registration.key()
    }

    /// True if the row is in `registry` (ids are numbered per registry).
    #[cfg(feature = "harness")]
    pub(crate) fn is_of(&self, registry: &Arc<HaRegistry>) -> bool {
        Arc::ptr_eq(self.state.registration.table(), registry)
    }

    /// Starts the reader and the writer. `start` gets the transport and one context per task and
    /// builds both futures; each returns why it ended, and the first to end removes the row,
    /// which stops the other.
    ///
    /// Both futures are built, and both tasks spawned, before either is polled: the tasks wait
    /// on a gate that opens only once both are started. A panic anywhere in here (in `start`,
    /// or in the spawner) raises the stop signal, aborts what was started and removes the row,
    /// and neither future ever runs. A row already reclaimed or closed likewise never runs them.
    pub fn spawn<S, F, RF, WF>(self, spawner: &S, start: F) -> HaConnection<Running, T>
    where
        S: Spawn + ?Sized,
        F: FnOnce(T, HaTaskContext, HaTaskContext) -> (RF, WF),
        RF: Future<Output = CloseReason> + Send + 'static,
        WF: Future<Output = CloseReason> + Send + 'static,
    {
        let state::Registered {
            peer,
            registration,
            stop,
            transport,
        } = self.state;
        let id = *registration.key();
        let context = || HaTaskContext {
            id,
            registry: registration.table().clone(),
            stop: stop.clone(),
        };
        // Declared after `registration`, so on unwind it is dropped first: stop, then the row.
        let mut armed = Armed {
            stop: stop.clone(),
            tasks: Vec::with_capacity(2),
            armed: true,
        };
        let (reader, writer) = start(transport, context(), context());
        if !registration.table().mark_started(id) {
            // Reclaimed or closed meanwhile: its signal is raised, so the gate never opens.
            tracing::debug!(id = id.0, "HA connection gone before its tasks started");
        }
        let go = StopSignal::new();
        // Model events (SpawnReader, SpawnWriter) are numbered before the step: a task spawned
        // behind the gate can end (its stop raised) before `spawn` returns to us.
        let table = registration.table();
        let model = |action: &'static str| {
            table.model_step(|seq| tracing::trace!(target: MODEL, seq, action, c = id.0));
        };
        model("SpawnReader");
        let reader = gated(&go, &registration, Holder::Reader, &stop, reader);
        armed.tasks.push(spawner.spawn(reader));
        model("SpawnWriter");
        let writer = gated(&go, &registration, Holder::Writer, &stop, writer);
        armed.tasks.push(spawner.spawn(writer));
        let tasks = armed.disarm();
        table.open_gate(id, &go);
        tracing::debug!(id = id.0, %peer, "HA connection running");
        HaConnection {
            state: state::Running {
                peer,
                registration,
                stop,
                tasks,
                transport: PhantomData,
            },
        }
    }

    /// Closes the connection before its tasks were started (drops the transport).
    pub fn close(self, reason: CloseReason) -> HaConnection<Closed, T> {
        let state::Registered {
            peer,
            mut registration,
            stop: _,
            transport,
        } = self.state;
        let removed = registration.close(&reason);
        drop(transport);
        HaConnection {
            state: state::Closed {
                peer,
                id: Some(*registration.key()),
                reason,
                removed,
                transport: PhantomData,
            },
        }
    }
}

/// The tasks `spawn` started so far; dropped while armed (a panic), it stops and aborts them.
struct Armed {
    stop: StopSignal,
    tasks: Vec<Box<dyn TaskHandle>>,
    armed: bool,
}

impl Armed {
    fn disarm(mut self) -> [Box<dyn TaskHandle>; 2] {
        self.armed = false;
        match <[Box<dyn TaskHandle>; 2]>::try_from(std::mem::take(&mut self.tasks)) {
            Ok(tasks) => tasks,
            Err(_) => unreachable!("spawn pushes exactly two tasks"),
        }
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.stop.stop();
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Wraps `fut` so that it runs only once `go` opens (unless stopped first), and however the task
/// ends (return, panic, abort) its registration guard removes the row, which raises the stop
/// signal first.
fn gated<F>(
    go: &StopSignal,
    registration: &Registration<HaRegistry>,
    task: Holder,
    stop: &StopSignal,
    fut: F,
) -> super::BoxTask
where
    F: Future<Output = CloseReason> + Send + 'static,
{
    let exit = registration.duplicate(task);
    let (go, stop) = (go.clone(), stop.clone());
    Box::pin(async move {
        // However the task ends (its gate refuses, its future returns, or it is aborted), its
        // future goes before its registration: the acceptor's reaper, which the future holds,
        // reaps the slot before the row is removed, so no accept can store into the slot of a
        // connection whose tasks have all ended (`HaConnection.tla`'s task end; the trace
        // validation of a refused gate found the window). Declared in this order, the two are
        // dropped in the reverse one on an abort.
        let mut exit = exit;
        let fut = fut;
        if !Gate::new(&go, &stop).await {
            drop(fut);
            exit.close(&CloseReason::Shutdown);
            return;
        }
        let reason = fut.await;
        exit.close(&reason);
    })
}

/// Completes with true when `go` is raised, false if `stop` is raised first.
struct Gate<'a> {
    go: Stopped<'a>,
    stop: Stopped<'a>,
    stop_signal: &'a StopSignal,
}

impl<'a> Gate<'a> {
    fn new(go: &'a StopSignal, stop: &'a StopSignal) -> Self {
        Gate {
            go: go.stopped(),
            stop: stop.stopped(),
            stop_signal: stop,
        }
    }
}

impl Future for Gate<'_> {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        if Pin::new(&mut self.stop).poll(cx).is_ready() {
            return Poll::Ready(false);
        }
        if Pin::new(&mut self.go).poll(cx).is_ready() {
            // Stopped between the two polls: still do not run.
            return Poll::Ready(!self.stop_signal.is_stopped());
        }
        Poll::Pending
    }
}

impl<T: Send + 'static> HaConnection<Running, T> {
    /// The row's id.
    pub fn id(&self) -> ConnId {
        *self.state.registration.key()
    }

    /// The peer label.
    pub fn peer(&self) -> &str {
        &self.state.peer
    }

    /// True once both tasks have ended.
    pub fn is_finished(&self) -> bool {
        self.state.tasks.iter().all(|t| t.is_finished())
    }

    /// Removes the row (raising the stop signal first) and aborts both tasks, which drops the
    /// transport.
    pub fn close(mut self, reason: CloseReason) -> HaConnection<Closed, T> {
        let removed = self.state.registration.close(&reason);
        let id = Some(self.id());
        let peer = std::mem::take(&mut self.state.peer);
        HaConnection {
            state: state::Closed {
                peer,
                id,
                reason,
                removed,
                transport: PhantomData,
            },
        }
    }
}

impl<T: Send + 'static> HaConnection<Closed, T> {
    /// The row it had, if it was ever registered.
    pub fn id(&self) -> Option<ConnId> {
        self.state.id
    }

    /// The peer label.
    pub fn peer(&self) -> &str {
        &self.state.peer
    }

    /// Why it was closed.
    pub fn reason(&self) -> &CloseReason {
        &self.state.reason
    }

    /// Whether this close removed the row (false if another path, a task's end or shutdown,
    /// already had, or it never registered).
    pub fn removed_row(&self) -> bool {
        self.state.removed
    }
}
