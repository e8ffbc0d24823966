//! The accept/reap/shutdown logic, written once and runtime-free: [`HaAcceptor`] and
//! [`ClientAcceptor`] turn accepted transports into running connections and own their `Running`
//! handles until the connection ends.
//!
//! Per connection: register (a refused one is closed with the reason), open a slot, spawn its
//! tasks, store the `Running` handle in the slot unless shutdown began (then close it here), and
//! reap the slot when its last task ends, however it ends (return, panic, abort). Shutdown marks
//! the acceptor shut and takes every slot in one critical section, then closes each handle, so a
//! connection accepted concurrently is either taken by the shutdown or closed by its own accept,
//! never left running. The client acceptor also runs the expiry scan and closes the channels it
//! orphans.
//!
//! Both `net` accept loops are a `select!` around these calls, and the shuttle, fuzz and vector
//! harnesses drive the same calls with their own transports and spawners (the way quinn keeps
//! protocol logic out of its tokio driver). What this module does not do: IO, timers, spawning
//! by itself (it uses the [`Spawn`] it is given).
//!
//! Counting is exact at quiescence: every accepted connection is counted closed exactly once,
//! where it leaves (refused, taken by reap, expiry, an owner's close or shutdown), so
//! `accepted_total() - closed_total()` is the number of connections held.

#[cfg(feature = "harness")]
use super::registration::Holder;
use super::{ChannelHandle, ClientChannel, CloseReason, HaConnection, HaTaskContext, Spawn};
use crate::core::model_trace::HA_TARGET as MODEL;
use crate::core::{ChannelId, ClientError, Millis};
use crate::phase::{Registered, Running};
use crate::registry::{ClientRegistry, ConnId, HaRegisterError, HaRegistry, ScanReport};
use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crate::sync::{Arc, Mutex};
use std::collections::BTreeMap;
use std::future::Future;

/// Deliberate defects in the accept/reap/shutdown path, for proving that the harnesses catch them
/// (feature `harness` only).
#[cfg(feature = "harness")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AcceptorFaults {
    /// RocketMQ 5.1.4's order (#8875): an HA connection's tasks start before its row is added;
    /// a task that ends first removes nothing, and the later add leaves a dead row.
    pub upstream_514_order: bool,
    /// A task that panics (or is aborted) does not reap its slot: the shell stays forever.
    pub lost_reap_on_panic: bool,
    /// The handle is stored even after shutdown took the slots, where nothing will close it.
    pub store_after_shutdown: bool,
}

/// A build without the `harness` feature has no switches (see `planted!`).
#[cfg(not(feature = "harness"))]
#[derive(Debug, Clone, Copy, Default)]
struct AcceptorFaults;

/// The slots of one acceptor: id -> `Running` handle (`None` while its tasks are being started).
struct Slots<Id, R> {
    state: Mutex<SlotState<Id, R>>,
    accepted: AtomicU64,
    closed: AtomicU64,
    #[cfg_attr(not(feature = "harness"), allow(dead_code))]
    faults: AcceptorFaults,
    /// Where the slots' model events are numbered, and an id's number in them (HA only: the
    /// client registry's model has no slots).
    model: Option<ModelTrace<Id>>,
}

type ModelTrace<Id> = (Arc<HaRegistry>, fn(Id) -> u64);

struct SlotState<Id, R> {
    shut_down: bool,
    open: BTreeMap<Id, Option<R>>,
}

impl<Id: Ord + Copy + std::fmt::Debug, R: Send + 'static> Slots<Id, R> {
    fn new(faults: AcceptorFaults, model: Option<ModelTrace<Id>>) -> Self {
        Slots {
            state: Mutex::new(SlotState {
                shut_down: false,
                open: BTreeMap::new(),
            }),
            accepted: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            faults,
            model,
        }
    }

    /// Records a model event about `id` (see `core::model_trace`): call it under the slots' lock.
    fn model_step(&self, id: Id, record: impl FnOnce(u64, u64)) {
        if let Some((table, number)) = &self.model {
            table.model_step(|seq| record(seq, number(id)));
        }
    }

    fn count_accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    fn count_closed(&self, n: usize) {
        self.closed.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Opens a slot for a registered connection about to start; false (and counted closed) if
    /// shutdown began, in which case the caller closes it.
    fn begin(&self, id: Id) -> bool {
        let mut st = self.state.lock();
        let open = !st.shut_down;
        self.model_step(
            id,
            |seq, c| tracing::trace!(target: MODEL, seq, action = "Begin", c, open),
        );
        if !open {
            drop(st);
            self.count_closed(1);
            return false;
        }
        st.open.insert(id, None);
        true
    }

    /// Puts the started handle in its slot. Hands it back if the slot is gone (its tasks already
    /// ended and reaped it, or shutdown took it): the caller closes it, nothing else will.
    fn store(&self, id: Id, running: R) -> Option<R> {
        let mut st = self.state.lock();
        let late = if planted!(self.faults.store_after_shutdown) && st.shut_down {
            st.open.insert(id, Some(running));
            None
        } else {
            match st.open.get_mut(&id) {
                Some(slot @ None) => {
                    *slot = Some(running);
                    None
                }
                _ => Some(running),
            }
        };
        let held = late.is_none();
        self.model_step(
            id,
            |seq, c| tracing::trace!(target: MODEL, seq, action = "Store", c, held),
        );
        late
    }

    /// Removes a slot (reap, expiry, an owner's close); the handle, if it was stored.
    fn take(&self, id: Id) -> Option<Option<R>> {
        let taken = self.state.lock().open.remove(&id);
        if taken.is_some() {
            self.count_closed(1);
        }
        taken
    }

    /// [`take`](Self::take) by the connection's [`Reaper`], its last task gone.
    fn reap(&self, id: Id) -> Option<Option<R>> {
        let mut st = self.state.lock();
        let taken = st.open.remove(&id);
        let (found, held) = (taken.is_some(), matches!(taken, Some(Some(_))));
        self.model_step(
            id,
            |seq, c| tracing::trace!(target: MODEL, seq, action = "Reap", c, found, held),
        );
        drop(st);
        if found {
            self.count_closed(1);
        }
        taken
    }

    /// Shutdown: no slot opens from now on, and every open one is taken.
    fn drain(&self) -> Vec<R> {
        let mut st = self.state.lock();
        st.shut_down = true;
        let open = std::mem::take(&mut st.open);
        if let Some((table, number)) = &self.model {
            table.model_step(|seq| {
                let held = open.iter().filter(|(_, r)| r.is_some());
                let taken: Vec<u64> = held.map(|(id, _)| number(*id)).collect();
                let taken = format!("{taken:?}");
                tracing::trace!(target: MODEL, seq, action = "Drain", taken);
            });
        }
        drop(st);
        self.count_closed(open.len());
        open.into_values().flatten().collect()
    }

    fn open(&self) -> usize {
        self.state.lock().open.len()
    }
}

/// Reaps a connection's slot once every task holding it is gone, however they ended.
struct Reaper<Id: Ord + Copy + std::fmt::Debug, R: Send + 'static> {
    slots: Arc<Slots<Id, R>>,
    id: Id,
    /// A task holding it was dropped before returning (panic or abort).
    unwound: AtomicBool,
}

impl<Id: Ord + Copy + std::fmt::Debug, R: Send + 'static> Drop for Reaper<Id, R> {
    fn drop(&mut self) {
        if planted!(self.slots.faults.lost_reap_on_panic) && self.unwound.load(Ordering::Acquire) {
            return;
        }
        // The handle is dropped outside the slots' lock: dropping it aborts tasks and removes
        // its row (already removed by the task's own guard; a no-op then).
        if let Some(Some(shell)) = self.slots.reap(self.id) {
            drop(shell);
        }
    }
}

/// Runs `fut` holding `reaper`, noting whether it returned or was dropped mid-flight.
fn reaped<Id, R, F>(
    reaper: Arc<Reaper<Id, R>>,
    fut: F,
) -> impl Future<Output = CloseReason> + Send + 'static
where
    Id: Ord + Copy + std::fmt::Debug + Send + Sync + 'static,
    R: Send + 'static,
    F: Future<Output = CloseReason> + Send + 'static,
{
    struct Unwinding<Id: Ord + Copy + std::fmt::Debug, R: Send + 'static>(
        Option<Arc<Reaper<Id, R>>>,
    );
    impl<Id: Ord + Copy + std::fmt::Debug, R: Send + 'static> Drop for Unwinding<Id, R> {
        fn drop(&mut self) {
            if let Some(reaper) = &self.0 {
                reaper.unwound.store(true, Ordering::Release);
            }
        }
    }
    async move {
        let mut guard = Unwinding(Some(reaper));
        let reason = fut.await;
        // Returned: drop the reaper without marking it unwound.
        let reaper = guard.0.take();
        drop(reaper);
        reason
    }
}

// ------------------------------------------------------------------------------------------------

/// Which lifecycle an [`Acceptor`] runs: its table, its ids, its `Running` handle, and what its
/// shutdown does after closing the handles. Sealed: [`Ha`] and [`Client`].
pub trait Kind: sealed::Sealed + Send + Sync + 'static {
    #[doc(hidden)]
    type Table: Send + Sync + 'static;
    #[doc(hidden)]
    type Id: Ord + Copy + std::fmt::Debug + Send + Sync + 'static;
    #[doc(hidden)]
    type Running<T: Send + 'static>: Send + 'static;
    #[doc(hidden)]
    fn close<T: Send + 'static>(running: Self::Running<T>, reason: CloseReason);
    #[doc(hidden)]
    fn after_shutdown(table: &Self::Table);
    #[doc(hidden)]
    fn model(table: &Arc<Self::Table>) -> Option<ModelTrace<Self::Id>>;
}

mod sealed {
    pub trait Sealed {}
}

/// HA master connections ([`HaAcceptor`]).
#[derive(Debug)]
pub enum Ha {}
/// Client channels ([`ClientAcceptor`]).
#[derive(Debug)]
pub enum Client {}
impl sealed::Sealed for Ha {}
impl sealed::Sealed for Client {}

impl Kind for Ha {
    type Table = HaRegistry;
    type Id = ConnId;
    type Running<T: Send + 'static> = HaConnection<Running, T>;

    fn close<T: Send + 'static>(running: Self::Running<T>, reason: CloseReason) {
        running.close(reason);
    }

    /// Refuses registrations still in flight and removes any row left, stop first.
    fn after_shutdown(table: &HaRegistry) {
        table.close_all();
    }

    fn model(table: &Arc<HaRegistry>) -> Option<ModelTrace<ConnId>> {
        Some((table.clone(), ConnId::get))
    }
}

impl Kind for Client {
    type Table = ClientRegistry;
    type Id = ChannelId;
    type Running<T: Send + 'static> = ClientChannel<Running, T>;

    fn close<T: Send + 'static>(running: Self::Running<T>, reason: CloseReason) {
        running.close(reason);
    }

    fn after_shutdown(_table: &ClientRegistry) {}

    fn model(_table: &Arc<ClientRegistry>) -> Option<ModelTrace<ChannelId>> {
        None
    }
}

/// The accept/reap/shutdown of one listener: owns the `Running` handles of its connections.
pub struct Acceptor<K: Kind, T: Send + 'static, S> {
    table: Arc<K::Table>,
    spawner: S,
    slots: Arc<Slots<K::Id, K::Running<T>>>,
}

/// The HA master's acceptor.
///
/// Each accepted transport is registered, gets its reader and writer, and is held until both
/// end; shutdown closes every held connection, then the table:
///
/// ```
/// use rmq_lifecycle::lifecycle::{CloseReason, HaAcceptor, HaTaskContext};
/// use rmq_lifecycle::net::TokioSpawner;
/// use rmq_lifecycle::registry::{HaRegisterError, HaRegistry};
/// use rmq_lifecycle::tokio;
/// use std::sync::Arc;
///
/// async fn until_stopped(task: HaTaskContext) -> CloseReason {
///     task.stopped().await;
///     CloseReason::Shutdown
/// }
/// let waits = |_socket: &str, reader, writer| (until_stopped(reader), until_stopped(writer));
///
/// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let spawner = TokioSpawner::new(runtime.handle().clone());
/// let acceptor = HaAcceptor::new(Arc::new(HaRegistry::new(16)), spawner);
/// acceptor.accept("socket", "10.0.0.2:41000", waits).unwrap();
/// assert_eq!(acceptor.registry().count(), 1);
///
/// assert_eq!(acceptor.shutdown(), 1); // stop raised, then the row removed
/// assert_eq!(acceptor.registry().count(), 0);
/// let late = acceptor.accept("socket", "10.0.0.3:41000", waits);
/// assert_eq!(late, Err(HaRegisterError::ShuttingDown));
/// assert_eq!(acceptor.accepted_total(), acceptor.closed_total());
/// ```
pub type HaAcceptor<T, S> = Acceptor<Ha, T, S>;
/// The client-management listener's acceptor.
///
/// Each accepted transport becomes a registered [`ClientChannel`] whose task gets the transport
/// and a [`ChannelHandle`]; the acceptor holds it until the task ends, closes the channels the
/// expiry [`scan`](Acceptor::scan) orphans, and closes every held one at shutdown:
///
/// ```
/// use rmq_lifecycle::core::{HeartbeatData, Millis};
/// use rmq_lifecycle::lifecycle::{ClientAcceptor, CloseReason};
/// use rmq_lifecycle::net::TokioSpawner;
/// use rmq_lifecycle::registry::ClientRegistry;
/// use rmq_lifecycle::tokio::{self, sync::mpsc};
/// use std::sync::Arc;
///
/// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let spawner = TokioSpawner::new(runtime.handle().clone());
/// let acceptor = ClientAcceptor::new(Arc::new(ClientRegistry::default()), spawner);
///
/// let (client, transport) = mpsc::unbounded_channel::<HeartbeatData>();
/// let id = acceptor
///     .accept(transport, "10.0.0.1:50001", |mut transport, handle| async move {
///         while let Some(heartbeat) = transport.recv().await {
///             let _ = handle.heartbeat(&heartbeat, Millis(0));
///         }
///         CloseReason::PeerClosed
///     })
///     .unwrap();
/// client.send(HeartbeatData::producers("producer-1", ["OrderProducers"])).unwrap();
/// runtime.block_on(async {
///     while acceptor.registry().find_channel("producer-1") != Some(id) {
///         tokio::task::yield_now().await;
///     }
/// });
///
/// assert_eq!(acceptor.shutdown(), 1);
/// assert_eq!(acceptor.registry().producer_group_count(), 0);
/// assert_eq!((acceptor.accepted_total(), acceptor.closed_total()), (1, 1));
/// ```
pub type ClientAcceptor<T, S> = Acceptor<Client, T, S>;

type KindReaper<K, T> = Reaper<<K as Kind>::Id, <K as Kind>::Running<T>>;

impl<K: Kind, T: Send + 'static, S> std::fmt::Debug for Acceptor<K, T, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("open", &self.slots.open())
            .finish_non_exhaustive()
    }
}

impl<K: Kind, T: Send + 'static, S: Spawn> Acceptor<K, T, S> {
    /// An acceptor registering into `table` and starting tasks with `spawner`.
    pub fn new(table: Arc<K::Table>, spawner: S) -> Self {
        #[allow(clippy::default_constructed_unit_structs)] // a struct of switches with `harness`
        let faults = AcceptorFaults::default();
        Self::build(table, spawner, faults)
    }

    /// An acceptor with planted defects, for the harnesses.
    #[cfg(feature = "harness")]
    pub fn with_faults(table: Arc<K::Table>, spawner: S, faults: AcceptorFaults) -> Self {
        Self::build(table, spawner, faults)
    }

    fn build(table: Arc<K::Table>, spawner: S, faults: AcceptorFaults) -> Self {
        let model = K::model(&table);
        Acceptor {
            table,
            spawner,
            slots: Arc::new(Slots::new(faults, model)),
        }
    }

    /// The table (read-only queries: its entries change only through the connections).
    pub fn registry(&self) -> &Arc<K::Table> {
        &self.table
    }

    /// Opens a slot for a registered connection about to start, and the reaper its tasks hold;
    /// `None` (and the connection counted closed) if shutdown began: the caller closes it.
    fn begin(&self, id: K::Id) -> Option<Arc<KindReaper<K, T>>> {
        self.slots.begin(id).then(|| {
            Arc::new(Reaper {
                slots: self.slots.clone(),
                id,
                unwound: AtomicBool::new(false),
            })
        })
    }

    /// Stores a started connection's handle, or closes it if its slot is gone (its tasks already
    /// ended, or shutdown took the slot): then nothing else would.
    fn store(&self, id: K::Id, running: K::Running<T>) {
        if let Some(late) = self.slots.store(id, running) {
            K::close(late, CloseReason::Shutdown);
        }
    }

    /// Closes one held connection (an operator's kick, or expiry): its entry and its transport go
    /// together. False if it is not held (already ended).
    pub fn close(&self, id: K::Id, reason: CloseReason) -> bool {
        match self.slots.take(id) {
            Some(Some(running)) => {
                K::close(running, reason);
                true
            }
            // Still starting: its accept stores nothing now and closes it.
            Some(None) => true,
            None => false,
        }
    }

    /// Shutdown: no connection is stored from now on; every held one is closed (for HA, its stop
    /// signal raised before its row is removed; then the table is closed to late registrations
    /// and emptied, stop first too). Returns the connections this closed. Their tasks end at their
    /// next await; the caller waits for them on its task gauge.
    pub fn shutdown(&self) -> usize {
        let open = self.slots.drain();
        let closed = open.len();
        for running in open {
            K::close(running, CloseReason::Shutdown);
        }
        K::after_shutdown(&self.table);
        closed
    }

    /// Connections held (starting or running).
    pub fn open(&self) -> usize {
        self.slots.open()
    }

    /// Connections accepted since start (refused ones included).
    pub fn accepted_total(&self) -> u64 {
        self.slots.accepted.load(Ordering::Relaxed)
    }

    /// Connections closed since start (refused ones included), each counted once.
    pub fn closed_total(&self) -> u64 {
        self.slots.closed.load(Ordering::Relaxed)
    }
}

impl<T: Send + 'static, S: Spawn> Acceptor<Ha, T, S> {
    /// Takes an accepted transport: registers it, starts its reader and writer (`start` builds
    /// both futures, as in [`HaConnection::spawn`]) and keeps its handle until both end. A refused
    /// connection (cap, shutdown) is closed here, transport dropped, and the error returned.
    pub fn accept<F, RF, WF>(
        &self,
        transport: T,
        peer: impl Into<String>,
        start: F,
    ) -> Result<ConnId, HaRegisterError>
    where
        F: FnOnce(T, HaTaskContext, HaTaskContext) -> (RF, WF),
        RF: Future<Output = CloseReason> + Send + 'static,
        WF: Future<Output = CloseReason> + Send + 'static,
    {
        self.slots.count_accepted();
        #[cfg(feature = "harness")]
        if self.slots.faults.upstream_514_order {
            return self.accept_514(transport, peer.into(), start);
        }
        let registered = match HaConnection::new(transport, peer).register(&self.table) {
            Ok(registered) => registered,
            Err(refused) => {
                let error = refused.error;
                tracing::warn!(peer = refused.connection.peer(), %error, "HA connection refused");
                self.slots.count_closed(1);
                refused
                    .connection
                    .close(CloseReason::Rejected(error.to_string()));
                return Err(error);
            }
        };
        self.start_ha(registered, start)
    }

    /// The second half of [`accept`](Self::accept), for a connection its caller registered
    /// itself: starts its tasks and keeps its handle until both end, or closes it if shutdown
    /// began. Counted as accepted here. For the harnesses that drive registration and start as
    /// separate steps (feature `harness`); a broker uses `accept`, which cannot be handed a
    /// connection of another registry.
    ///
    /// # Panics
    ///
    /// If `registered` belongs to another registry than this acceptor's: its id would name
    /// another connection here.
    #[cfg(feature = "harness")]
    pub fn start_registered<F, RF, WF>(
        &self,
        registered: HaConnection<Registered, T>,
        start: F,
    ) -> Result<ConnId, HaRegisterError>
    where
        F: FnOnce(T, HaTaskContext, HaTaskContext) -> (RF, WF),
        RF: Future<Output = CloseReason> + Send + 'static,
        WF: Future<Output = CloseReason> + Send + 'static,
    {
        assert!(
            registered.is_of(&self.table),
            "start_registered: the connection belongs to another HA registry"
        );
        self.slots.count_accepted();
        self.start_ha(registered, start)
    }

    fn start_ha<F, RF, WF>(
        &self,
        registered: HaConnection<Registered, T>,
        start: F,
    ) -> Result<ConnId, HaRegisterError>
    where
        F: FnOnce(T, HaTaskContext, HaTaskContext) -> (RF, WF),
        RF: Future<Output = CloseReason> + Send + 'static,
        WF: Future<Output = CloseReason> + Send + 'static,
    {
        let id = registered.id();
        let Some(reaper) = self.begin(id) else {
            registered.close(CloseReason::Shutdown);
            return Err(HaRegisterError::ShuttingDown);
        };
        let running = registered.spawn(&self.spawner, move |transport, rc, wc| {
            let (reader, writer) = start(transport, rc, wc);
            (reaped(reaper.clone(), reader), reaped(reaper, writer))
        });
        self.store(id, running);
        Ok(id)
    }

    /// RocketMQ 5.1.4's order, planted (`AcceptorFaults::upstream_514_order`): the tasks start
    /// on a row that does not exist yet, and the row is added after; a task's end removes the
    /// row only if the add already happened.
    #[cfg(feature = "harness")]
    fn accept_514<F, RF, WF>(
        &self,
        transport: T,
        peer: String,
        start: F,
    ) -> Result<ConnId, HaRegisterError>
    where
        F: FnOnce(T, HaTaskContext, HaTaskContext) -> (RF, WF),
        RF: Future<Output = CloseReason> + Send + 'static,
        WF: Future<Output = CloseReason> + Send + 'static,
    {
        use crate::registry::StopSignal;
        let stop = StopSignal::new();
        let row: Arc<Mutex<Option<ConnId>>> = Arc::new(Mutex::new(None));
        let context = || HaTaskContext {
            id: ConnId(0),
            registry: self.table.clone(),
            stop: stop.clone(),
        };
        let (reader, writer) = start(transport, context(), context());
        type Task = std::pin::Pin<Box<dyn Future<Output = CloseReason> + Send>>;
        // The model trace names the connection by the id its row will get.
        let c = self.table.next_id().get();
        for (fut, task, action) in [
            (Box::pin(reader) as Task, Holder::Reader, "SpawnReader"),
            (Box::pin(writer), Holder::Writer, "SpawnWriter"),
        ] {
            let (registry, stop, row) = (self.table.clone(), stop.clone(), row.clone());
            self.table
                .model_step(|seq| tracing::trace!(target: MODEL, seq, action, c));
            // `removeConnection(this)` on the way out: finds the row only if the add happened.
            let _detached = self.spawner.spawn(Box::pin(async move {
                let reason = fut.await;
                stop.stop();
                let added = *row.lock();
                if let Some(id) = added {
                    registry.deregister(id, task, &reason);
                }
            }));
        }
        let mut added = row.lock();
        let id = self.table.register(&peer, stop.clone())?;
        self.table.mark_started(id);
        *added = Some(id);
        Ok(id)
    }

    /// Housekeeping (every HA housekeeping interval): reclaims rows whose tasks never started,
    /// two calls in a row (leaked `Registered` handles). Returns the rows reclaimed.
    pub fn housekeeping(&self) -> usize {
        self.table.reclaim_unstarted()
    }
}

impl<T: Send + 'static, S: Spawn> Acceptor<Client, T, S> {
    /// Takes an accepted transport: registers it, starts its task (`task` gets the transport and
    /// the channel's [`ChannelHandle`]) and keeps its handle until the task ends. A refused
    /// channel (cap, shutdown) is closed here, transport dropped, and the error returned.
    pub fn accept<F, Fut>(
        &self,
        transport: T,
        peer: impl Into<String>,
        task: F,
    ) -> Result<ChannelId, ClientError>
    where
        F: FnOnce(T, ChannelHandle) -> Fut,
        Fut: Future<Output = CloseReason> + Send + 'static,
    {
        self.slots.count_accepted();
        let registered = match ClientChannel::new(transport, peer).register(&self.table) {
            Ok(registered) => registered,
            Err(refused) => {
                // No request was read, so there is nothing to answer: close with the reason.
                let error = refused.error;
                self.slots.count_closed(1);
                refused
                    .channel
                    .close(CloseReason::Rejected(error.to_string()));
                return Err(error);
            }
        };
        let id = registered.id();
        let Some(reaper) = self.begin(id) else {
            registered.close(CloseReason::Shutdown);
            return Err(ClientError::ShuttingDown);
        };
        let running = registered.spawn(&self.spawner, move |transport, handle| {
            reaped(reaper, task(transport, handle))
        });
        self.store(id, running);
        Ok(id)
    }

    /// The periodic expiry scan (upstream `ClientHousekeepingService`): expires memberships,
    /// closes the channels whose last membership expired (upstream closes expired channels), and
    /// reclaims channels whose task never started, two scans in a row (leaked handles).
    pub fn scan(&self, now: Millis) -> ScanReport {
        let mut report = self.table.scan_inactive(now);
        for id in &report.orphaned {
            self.close(*id, CloseReason::IdleTimeout);
        }
        report.reclaimed = self.table.reclaim_unstarted();
        report
    }
}
