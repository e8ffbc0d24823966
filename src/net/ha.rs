//! HA replication on tokio: the master's accept loop with a reader and a writer task per slave
//! connection, and the slave's connect-replicate-reconnect loop.
//!
//! Every accepted socket becomes an `HaConnection`: registered in the `HaRegistry` before its
//! tasks start, removed exactly once when either task ends. The protocol decisions (what a valid
//! report is, what to send, when to heartbeat or give up) are the core's `MasterLink` and
//! `SlaveLink`; this module moves bytes, reads the log and sleeps until the core's deadlines.

use super::pulse::Pulse;
use super::{Clock, Spawner};
use crate::core::ChannelId;
use crate::core::admin::{self, BrokerConfig};
use crate::core::autoswitch::SlaveHello;
use crate::core::ha::{
    HaClose, HaConfig, HaMode, HaState, Head, MasterLink, SlaveAppend, SlaveEvent, SlaveLink,
    Transmit,
};
use crate::core::isr::{InSyncSet, Member};
use crate::core::model_trace::{REPLICATION_TARGET as MODEL, replication_step as model_step};
use crate::core::remoting::{FrameDecoder, RemotingCommand, code};
use crate::io::net::{self as io_net, OwnedReadHalf, OwnedWriteHalf, TcpListener, TcpStream};
use crate::io::time;
use crate::lifecycle::{AppliedAck, CloseReason, HaAcceptor, HaTaskContext, TaskGauge};
use crate::registry::HaRegistry;
use crate::store::{Appended, CommitLog};
use crate::sync::Arc;
use crate::sync::Mutex;
use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Master settings.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// The HA port (upstream `haListenPort`, 10912).
    pub listen: SocketAddr,
    /// Protocol timing and sizes.
    pub ha: HaConfig,
    /// The protocol.
    pub mode: HaMode,
    /// Auto-switch: the epoch this master begins when it starts, above every epoch of its log
    /// (default: one above its log's last). Every start of a master is a new epoch, so bytes a
    /// crash took from it can never be mistaken for the ones it writes next. Where several
    /// replicas may become master, whoever elects one (a controller, an operator) must give
    /// an epoch above every replica's: two masters of one epoch are not told apart.
    pub epoch: Option<u32>,
    /// Auto-switch: a slave that has not caught up with the master for this long leaves the
    /// in-sync set (upstream `haMaxTimeSlaveNotCatchup`, 15 s).
    pub max_not_catchup_ms: u64,
    /// Connections at most; more are closed on accept.
    pub max_connections: usize,
    /// Planted defects in the shipped master (feature `harness` only).
    #[cfg(feature = "harness")]
    pub faults: MasterFaults,
}

/// Deliberate defects of the HA master, each a switch in the code path that ships, for proving
/// that the harnesses driving that path catch them (feature `harness` only).
#[cfg(feature = "harness")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MasterFaults {
    /// The connection table's planted defects.
    pub table: crate::registry::HaFaults,
    /// The accept/reap/shutdown path's planted defects (including RocketMQ 5.1.4's order).
    pub acceptor: crate::lifecycle::AcceptorFaults,
    /// Reports are recorded without the `ack <= max` check
    /// ([`MasterLink::with_unchecked_acks`](crate::core::ha::MasterLink::with_unchecked_acks)).
    pub unchecked_acks: bool,
    /// Slaves are sent bytes the master has not synced, as upstream's classic master does: a
    /// master crash can then leave slaves holding bytes the master lost.
    pub send_unsynced: bool,
}

/// Deliberate defects of the HA slave (feature `harness` only), like [`MasterFaults`].
#[cfg(feature = "harness")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlaveFaults {
    /// The auto-switch handshake keeps the whole log
    /// ([`SlaveLink::with_skipped_truncation`](crate::core::ha::SlaveLink::with_skipped_truncation)).
    pub skip_truncation: bool,
    /// The segment size is not asked at connect (`GET_BROKER_CONFIG`), as before this check:
    /// a mismatch shows only at a segment end, after bytes were appended.
    pub skip_segment_size_check: bool,
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 10912)),
            ha: HaConfig::default(),
            mode: HaMode::Classic,
            epoch: None,
            max_not_catchup_ms: 15_000,
            max_connections: 1024,
            #[cfg(feature = "harness")]
            faults: MasterFaults::default(),
        }
    }
}

/// `wait_for_replication` gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "replication of offset {offset} to {needed} slave(s) timed out after {waited:?} ({acked} acked)"
)]
pub struct ReplicationTimeout {
    /// The offset waited for.
    pub offset: u64,
    /// Slaves required.
    pub needed: usize,
    /// Slaves that had acked it at the deadline.
    pub acked: usize,
    /// How long it waited.
    pub waited: Duration,
}

/// What the master's owner can watch and wait on, shared with its tasks.
struct MasterShared {
    config: MasterConfig,
    log: Arc<CommitLog>,
    clock: Clock,
    /// Bumped after each append, for the writers.
    grown: Pulse,
    /// Bumped on every valid report, for replication waiters.
    acked: Pulse,
    /// Auto-switch: the in-sync set, by broker id.
    isr: Mutex<InSyncSet>,
    /// Auto-switch: where this master's epoch began (a slave joins the set only past it).
    epoch_start: u64,
    /// Slaves that left with bytes unacknowledged: by broker id (auto-switch) or IP address, the
    /// offset they left at and how many connections in a row did.
    stalls: Mutex<HashMap<String, (u64, u32)>>,
}

/// A slave that keeps closing its connection at one offset without acknowledging the bytes sent
/// after it: it refuses them (a framing error, most often another segment size, or its disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StalledSlave {
    /// `broker id N` (auto-switch) or the slave's IP address (classic).
    pub slave: String,
    /// Its last acknowledged offset, where it stops each time.
    pub offset: u64,
    /// Connections in a row that ended there.
    pub times: u32,
    /// What to suspect: this master's segment size and where its next segment ends.
    pub hint: String,
}

/// Distinct slaves remembered in [`MasterShared::stalls`]; past it the memory starts over.
const STALLS_MAX: usize = 1024;

/// One slave connection's state, shared by its reader and writer tasks.
struct Peer {
    link: Mutex<MasterLink>,
    /// Wakes the writer (a report arrived).
    wake: Notify,
    /// The connection joined the in-sync bookkeeping (its first report, after a handshake).
    joined: AtomicBool,
}

type Acceptor = HaAcceptor<TcpStream, Spawner>;

/// A running HA master: it accepts slaves on its HA port and sends each the log it serves.
///
/// Start it with [`HaMaster::bind`] inside a tokio runtime, append through it (or a
/// [`MasterHandle`]), wait for slaves with [`HaMaster::wait_for_replication`], and end it with
/// [`HaMaster::shutdown`], which closes every connection through its lifecycle.
///
/// ```
/// use rmq_lifecycle::core::ha::HaConfig;
/// use rmq_lifecycle::lifecycle::TaskGauge;
/// use rmq_lifecycle::net::Clock;
/// use rmq_lifecycle::net::ha::{HaMaster, HaSlave, MasterConfig, SlaveConfig};
/// use rmq_lifecycle::store::{CommitLog, FlushPolicy, StoreConfig};
/// use rmq_lifecycle::tokio;
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// const SEGMENT: u64 = 64 * 1024; // the store's and the HA config's: one value
/// let open = |dir: &std::path::Path| {
///     let flush = FlushPolicy::Manual;
///     let config = StoreConfig { segment_size: SEGMENT, flush, ..StoreConfig::new(dir) };
///     Arc::new(CommitLog::open(config).unwrap())
/// };
/// let ha = HaConfig { segment_size: SEGMENT, ..HaConfig::default() };
/// let (master_dir, slave_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
///
/// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// runtime.block_on(async {
///     let listen = ([127, 0, 0, 1], 0).into();
///     let config = MasterConfig { listen, ha, ..MasterConfig::default() };
///     let log = open(master_dir.path());
///     let master = HaMaster::bind(config, log, Clock::start(), TaskGauge::new()).await.unwrap();
///     let end = master.append(b"hello").unwrap().end;
///
///     let slave_log = open(slave_dir.path());
///     let config = SlaveConfig { ha, ..SlaveConfig::new(master.local_addr()) };
///     let slave = HaSlave::start(config, slave_log.clone(), Clock::start(), TaskGauge::new());
///     master.wait_for_replication(end, 1, Duration::from_secs(10)).await.unwrap();
///     assert_eq!(slave_log.digest(0, end).unwrap(), master.log().digest(0, end).unwrap());
///
///     assert_eq!(slave.shutdown(Duration::from_secs(5)).await, 0); // tasks left
///     assert_eq!(master.shutdown(Duration::from_secs(5)).await, 0);
/// });
/// ```
pub struct HaMaster {
    handle: MasterHandle,
    local_addr: SocketAddr,
    cancel: CancellationToken,
    tasks: TaskGauge,
}

/// What a running master's users share: appending, waiting for replication, reading the table.
/// Cloned freely; it does not keep the master running (the [`HaMaster`] owner shuts it down).
#[derive(Clone)]
pub struct MasterHandle {
    shared: Arc<MasterShared>,
    acceptor: Arc<Acceptor>,
}

impl std::fmt::Debug for MasterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterHandle").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for HaMaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaMaster")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl HaMaster {
    /// Binds the HA port and starts accepting; every task is counted in `tasks`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `log`'s segment size is not `config.ha.segment_size` (checked before
    /// binding), or if the auto-switch epochs are used up; otherwise the bind's error.
    ///
    /// ```
    /// # use rmq_lifecycle::{lifecycle::TaskGauge, net::Clock, tokio};
    /// # use rmq_lifecycle::net::ha::{HaMaster, MasterConfig};
    /// # use rmq_lifecycle::store::{CommitLog, StoreConfig};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = StoreConfig { segment_size: 64 * 1024, ..StoreConfig::new(dir.path()) };
    /// let log = std::sync::Arc::new(CommitLog::open(store).unwrap());
    /// let config = MasterConfig { listen: ([127, 0, 0, 1], 0).into(), ..MasterConfig::default() };
    /// assert_ne!(config.ha.segment_size, 64 * 1024);
    ///
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// let refused = runtime.block_on(HaMaster::bind(config, log, Clock::start(), TaskGauge::new()));
    /// let error = refused.unwrap_err();
    /// assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    /// assert!(error.to_string().contains("segment size"), "{error}");
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the accept loop is spawned on the current one).
    pub async fn bind(
        config: MasterConfig,
        log: Arc<CommitLog>,
        clock: Clock,
        tasks: TaskGauge,
    ) -> io::Result<HaMaster> {
        check_segment_size(&log, &config.ha)?;
        let listener = TcpListener::bind(config.listen).await?;
        HaMaster::listen(listener, config, log, clock, tasks)
    }

    /// Starts accepting on a bound listener (a broker binds every port before it opens its
    /// store, so a port in use leaves no store behind).
    pub(crate) fn listen(
        listener: TcpListener,
        config: MasterConfig,
        log: Arc<CommitLog>,
        clock: Clock,
        tasks: TaskGauge,
    ) -> io::Result<HaMaster> {
        let mut epoch_start = 0;
        if config.mode == HaMode::AutoSwitch {
            let last = log.epochs().last().map(|e| e.epoch);
            let epoch = match (config.epoch, last) {
                (Some(epoch), _) => epoch,
                (None, Some(last)) => last.checked_add(1).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "epoch numbers are used up")
                })?,
                (None, None) => 1,
            };
            let entry = log.begin_epoch(epoch)?;
            epoch_start = entry.start;
            tracing::info!(
                epoch = entry.epoch,
                start = entry.start,
                "HA master began an epoch"
            );
        }
        let local_addr = listener.local_addr()?;
        let (spawner, own) = Spawner::counting(tasks);
        #[cfg(not(feature = "harness"))]
        let acceptor = HaAcceptor::new(
            Arc::new(HaRegistry::new(config.max_connections)),
            spawner.clone(),
        );
        #[cfg(feature = "harness")]
        let acceptor = HaAcceptor::with_faults(
            Arc::new(HaRegistry::with_faults(
                config.max_connections,
                config.faults.table,
            )),
            spawner.clone(),
            config.faults.acceptor,
        );
        let acceptor = Arc::new(acceptor);
        let shared = Arc::new(MasterShared {
            grown: Pulse::default(),
            acked: Pulse::default(),
            isr: Mutex::new(InSyncSet::new(config.max_not_catchup_ms)),
            epoch_start,
            stalls: Mutex::new(HashMap::new()),
            config,
            log,
            clock,
        });
        let cancel = CancellationToken::new();
        let accept = accept_loop(listener, shared.clone(), acceptor.clone(), cancel.clone());
        crate::lifecycle::Spawn::spawn(&spawner, Box::pin(accept));
        tracing::info!(%local_addr, "HA master listening");
        Ok(HaMaster {
            handle: MasterHandle { shared, acceptor },
            local_addr,
            cancel,
            tasks: own,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle for appending and waiting that others can hold.
    pub fn handle(&self) -> &MasterHandle {
        &self.handle
    }

    /// See [`MasterHandle::registry`].
    pub fn registry(&self) -> &Arc<HaRegistry> {
        self.handle.registry()
    }

    /// See [`MasterHandle::log`].
    pub fn log(&self) -> &Arc<CommitLog> {
        self.handle.log()
    }

    /// See [`MasterHandle::append`].
    pub fn append(&self, payload: &[u8]) -> io::Result<Appended> {
        self.handle.append(payload)
    }

    /// See [`MasterHandle::wait_for_replication`].
    pub async fn wait_for_replication(
        &self,
        offset: u64,
        needed: usize,
        timeout: Duration,
    ) -> Result<(), ReplicationTimeout> {
        self.handle
            .wait_for_replication(offset, needed, timeout)
            .await
    }

    /// Stops accepting, closes every connection through its lifecycle and waits (up to
    /// `grace`) for the master's own tasks to end (not for others counted in the same gauge).
    /// Returns its tasks still alive (0 when clean).
    pub async fn shutdown(self, grace: Duration) -> usize {
        // Stop accepting; the acceptor closes every connection it holds (stop before removal)
        // and closes the table to any registration still in flight.
        self.cancel.cancel();
        let closed = self.handle.acceptor.shutdown();
        tracing::debug!(closed, "HA master: connections closed for shutdown");
        let deadline = time::Instant::now() + grace;
        while self.tasks.alive() > 0 && time::Instant::now() < deadline {
            time::sleep(Duration::from_millis(5)).await;
        }
        self.tasks.alive()
    }
}

impl MasterHandle {
    /// The connection table (read-only: its rows change only through the acceptor's
    /// connections).
    pub fn registry(&self) -> &Arc<HaRegistry> {
        self.acceptor.registry()
    }

    /// The replicated log.
    pub fn log(&self) -> &Arc<CommitLog> {
        &self.shared.log
    }

    /// Appends one record and wakes the connections' writers.
    pub fn append(&self, payload: &[u8]) -> io::Result<Appended> {
        let appended = self.shared.log.append(payload)?;
        self.published();
        Ok(appended)
    }

    /// Wakes the connections' writers: something appended to the log through another path (the
    /// send path's `MessageLog`).
    pub(crate) fn published(&self) {
        self.shared.grown.bump();
    }

    /// Slaves that closed their connection at the same offset more than once in a row without
    /// acknowledging the bytes sent after it: they refuse those bytes (see each `hint`).
    pub fn stalled_slaves(&self) -> Vec<StalledSlave> {
        let stalls = self.shared.stalls.lock();
        let mut out: Vec<StalledSlave> = stalls
            .iter()
            .filter(|(_, (_, times))| *times >= 2)
            .map(|(slave, &(offset, times))| StalledSlave {
                slave: slave.clone(),
                offset,
                times,
                hint: self.shared.hint_at(offset),
            })
            .collect();
        out.sort_by(|a, b| a.slave.cmp(&b.slave));
        out
    }

    /// The slaves that reported, by broker id, and whether each is in the in-sync set
    /// (auto-switch; empty in classic mode).
    pub fn in_sync_set(&self) -> Vec<Member> {
        let mut isr = self.shared.isr.lock();
        isr.tick(self.shared.clock.now());
        isr.members()
    }

    /// How many slaves could acknowledge `offset` soon: those whose acknowledged offset is within
    /// `gap` bytes of it (upstream 4's `isSlaveOK` with `haSlaveFallbehindMax`).
    pub(crate) fn slaves_within(&self, offset: u64, gap: u64) -> usize {
        self.acked_at_least(offset.saturating_sub(gap))
    }

    /// The highest offset at least `needed` slaves hold (0 if fewer than `needed` reported).
    pub(crate) fn replicated_to(&self, needed: usize) -> u64 {
        // acked_at_least is monotonic in the offset: binary search the largest offset it keeps.
        let (mut lo, mut hi) = (0u64, self.shared.log.max_offset());
        if self.acked_at_least(lo) < needed {
            return 0;
        }
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if self.acked_at_least(mid) >= needed {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }

    /// How many slaves hold `offset`: in classic mode the connections whose last report reached
    /// it, in auto-switch mode the in-sync slaves (by broker id) whose report did.
    fn acked_at_least(&self, offset: u64) -> usize {
        match self.shared.config.mode {
            HaMode::Classic => self.registry().acked_at_least(offset),
            HaMode::AutoSwitch => {
                let mut isr = self.shared.isr.lock();
                isr.tick(self.shared.clock.now());
                isr.count_at_least(offset)
            }
        }
    }

    /// Completes once `needed` slaves hold `offset` (upstream GroupTransferService with
    /// `inSyncReplicas = needed + 1`): in classic mode connections, each counted after its first
    /// valid report; in auto-switch mode in-sync slaves, each broker id once.
    pub async fn wait_for_replication(
        &self,
        offset: u64,
        needed: usize,
        timeout: Duration,
    ) -> Result<(), ReplicationTimeout> {
        let started = time::Instant::now();
        let mut acks = self.shared.acked.seen();
        loop {
            let acked = self.acked_at_least(offset);
            if acked >= needed {
                model_step(
                    |seq| tracing::trace!(target: MODEL, seq, action = "Confirm", o = offset),
                );
                return Ok(());
            }
            let waited = started.elapsed();
            let Some(left) = timeout.checked_sub(waited) else {
                return Err(ReplicationTimeout {
                    offset,
                    needed,
                    acked,
                    waited,
                });
            };
            if time::timeout(left, self.shared.acked.changed(&mut acks))
                .await
                .is_err()
            {
                let acked = self.acked_at_least(offset);
                if acked >= needed {
                    return Ok(());
                }
                return Err(ReplicationTimeout {
                    offset,
                    needed,
                    acked,
                    waited: started.elapsed(),
                });
            }
        }
    }
}

impl Drop for HaMaster {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<MasterShared>,
    acceptor: Arc<Acceptor>,
    cancel: CancellationToken,
) {
    let period = Duration::from_millis(shared.config.ha.housekeeping_ms.max(1));
    let mut housekeeping = time::interval(period);
    housekeeping.set_missed_tick_behavior(time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = housekeeping.tick() => {
                acceptor.housekeeping();
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(ok) => ok,
            Err(error) => {
                tracing::warn!(%error, "HA accept failed");
                time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Bounded by what is durable: that is all a slave is ever sent.
        let (min, durable) = (shared.log.min_offset(), shared.log.durable_offset());
        let link = match shared.config.mode {
            HaMode::Classic => MasterLink::new(shared.config.ha, min, durable),
            HaMode::AutoSwitch => {
                MasterLink::auto_switch(shared.config.ha, min, durable, shared.log.epochs())
            }
        };
        #[cfg(feature = "harness")]
        let link = if shared.config.faults.unchecked_acks {
            link.with_unchecked_acks()
        } else {
            link
        };
        let state = Arc::new(Peer {
            link: Mutex::new(link),
            wake: Notify::new(),
            joined: AtomicBool::new(false),
        });
        state.link.lock().handle_start(shared.clock.now());
        let shared = shared.clone();
        let _ = acceptor.accept(stream, peer.to_string(), move |stream, rctx, wctx| {
            let (rd, wr) = stream.into_split();
            let (s1, p1) = (shared.clone(), state.clone());
            let reader = async move {
                let reason = read_reports(rd, &rctx, &s1, &p1).await;
                if matches!(reason, CloseReason::PeerClosed) {
                    s1.note_departure(&p1.link.lock(), peer);
                }
                // Every report was applied by this task: the connection leaves the set now.
                if p1.joined.load(Ordering::Acquire) {
                    if let Some(hello) = p1.link.lock().slave_hello() {
                        s1.isr.lock().disconnected(hello.broker_id);
                    }
                }
                tracing::debug!(id = rctx.id().get(), %peer, ?reason, "HA reader ended");
                reason
            };
            let writer = async move {
                let reason = write_transfers(wr, &wctx, &shared, &state).await;
                tracing::debug!(id = wctx.id().get(), %peer, ?reason, "HA writer ended");
                reason
            };
            (reader, writer)
        });
    }
    tracing::info!("HA master stopped accepting");
}

impl MasterShared {
    /// A slave closed its connection: if it left bytes unacknowledged at the same offset as
    /// the last time, it refuses them; say so, with what lies there.
    fn note_departure(&self, link: &MasterLink, peer: SocketAddr) {
        let Some(ack) = link.ack() else {
            return; // a probe, or a slave gone before its first report
        };
        let slave = match link.slave_hello() {
            Some(hello) => format!("broker id {}", hello.broker_id),
            None => peer.ip().to_string(),
        };
        let mut stalls = self.stalls.lock();
        if link.next_offset() <= ack {
            stalls.remove(&slave);
            return;
        }
        if stalls.len() >= STALLS_MAX && !stalls.contains_key(&slave) {
            stalls.clear();
        }
        let stall = stalls.entry(slave.clone()).or_insert((ack, 0));
        if stall.0 != ack {
            *stall = (ack, 0);
        }
        stall.1 += 1;
        if stall.1 >= 2 {
            tracing::warn!(
                %slave,
                offset = ack,
                times = stall.1,
                hint = %self.hint_at(ack),
                "HA slave keeps leaving at one offset without acknowledging what follows: it refuses those bytes"
            );
        }
    }

    /// What to suspect when a slave stops at `offset`.
    fn hint_at(&self, offset: u64) -> String {
        let size = self.log.segment_size();
        let end = (offset / size + 1) * size;
        format!(
            "our segments are {size} bytes (the next ends at {end}): a slave with another \
             segment size refuses the bytes where the two disagree, and a slave whose disk fails \
             refuses any; the slave's log names the offset and the cause"
        )
    }
}

fn close_reason(why: HaClose) -> CloseReason {
    match why {
        HaClose::Protocol(why) => CloseReason::ProtocolError(why),
        HaClose::Idle => CloseReason::IdleTimeout,
        HaClose::Shutdown => CloseReason::Shutdown,
    }
}

/// What this driver adds to an applied ack: the in-sync set (auto-switch, by the broker id of
/// the slave's handshake), waking replication waiters, and a line when a slave's first valid
/// report arrives.
fn on_ack<'a>(
    ctx: &'a HaTaskContext,
    shared: &'a MasterShared,
    hello: Option<SlaveHello>,
    joined: &'a AtomicBool,
) -> impl FnMut(AppliedAck) + 'a {
    move |ack| {
        if ack.recorded {
            if let Some(hello) = hello {
                let now = shared.clock.now();
                let mut isr = shared.isr.lock();
                if ack.first {
                    isr.connected(hello.broker_id, now);
                    joined.store(true, Ordering::Release);
                }
                isr.acked(
                    hello.broker_id,
                    ack.offset,
                    now,
                    shared.log.durable_offset(),
                    shared.epoch_start,
                    hello.async_learner,
                );
            }
            shared.acked.bump();
        }
        if ack.first {
            tracing::info!(
                id = ctx.id().get(),
                offset = ack.offset,
                "HA slave reported; replicating"
            );
        }
    }
}

/// Applies the link's events (acks to the table, waking waiters); a close ends the task.
fn drain_events(
    link: &mut MasterLink,
    ctx: &HaTaskContext,
    shared: &MasterShared,
    joined: &AtomicBool,
) -> Option<CloseReason> {
    let hello = link.slave_hello();
    ctx.apply_link_events(link, on_ack(ctx, shared, hello, joined))
        .map(close_reason)
}

async fn read_reports(
    mut rd: OwnedReadHalf,
    ctx: &HaTaskContext,
    shared: &MasterShared,
    peer: &Peer,
) -> CloseReason {
    let (link, wake) = (&peer.link, &peer.wake);
    let mut buf = [0u8; 256];
    loop {
        let deadline = match link.lock().poll_timeout() {
            Some(at) => shared.clock.instant_at(at),
            None => return CloseReason::Shutdown,
        };
        tokio::select! {
            biased;
            _ = ctx.stopped() => return CloseReason::Shutdown,
            read = rd.read(&mut buf) => {
                let n = match read {
                    Ok(0) => return CloseReason::PeerClosed,
                    Ok(n) => n,
                    Err(error) => return CloseReason::Io(error.to_string()),
                };
                let mut l = link.lock();
                l.handle_bytes(shared.clock.now(), &buf[..n]);
                if let Some(reason) = drain_events(&mut l, ctx, shared, &peer.joined) {
                    return reason;
                }
                drop(l);
                wake.notify_one();
            }
            _ = time::sleep_until(deadline) => {
                let mut l = link.lock();
                l.handle_timeout(shared.clock.now());
                if let Some(reason) = drain_events(&mut l, ctx, shared, &peer.joined) {
                    return reason;
                }
            }
        }
    }
}

/// Transfer bytes (headers and bodies) the writer gathers into one socket write while the slave
/// is behind. Each transfer stays a separate frame of at most `batch_max` bytes; only the send is
/// shared: a `pread` per body and one `send` per gather cost less CPU than the header send
/// (`MSG_MORE`) plus `sendfile` per 32 KiB transfer that this replaced. Of 64 KiB, 256 KiB and
/// 512 KiB (with the slave reading 0.5 or 1 MiB), 512 KiB made the 1 GiB catch-up fastest.
const WRITE_GATHER: usize = 512 * 1024;

async fn write_transfers(
    mut wr: OwnedWriteHalf,
    ctx: &HaTaskContext,
    shared: &MasterShared,
    peer: &Peer,
) -> CloseReason {
    let (link, wake) = (&peer.link, &peer.wake);
    let mut grown = shared.grown.seen();
    // Allocated on the first data transfer and released whenever the slave has caught up: a
    // probe or an idle slave never holds a batch buffer.
    let mut buf = Vec::new();
    let mut batch = Vec::new();
    loop {
        loop {
            batch.clear();
            // Only durable bytes go out (see `CommitLog::durable_offset`).
            let durable = shared.log.durable_offset();
            #[cfg(feature = "harness")]
            let durable = if shared.config.faults.send_unsynced {
                shared.log.max_offset()
            } else {
                durable
            };
            let due = {
                let mut l = link.lock();
                let hello = l.slave_hello();
                ctx.due_transfers(
                    &mut l,
                    durable,
                    shared.clock.now(),
                    WRITE_GATHER,
                    &mut batch,
                    on_ack(ctx, shared, hello, &peer.joined),
                )
            };
            if let Err(why) = due {
                return close_reason(why);
            }
            if batch.is_empty() {
                let waiting = {
                    let l = link.lock();
                    l.ack().is_some() && l.next_offset() >= durable
                };
                if waiting && durable < shared.log.max_offset() {
                    // Caught up with what is synced: sync the rest (one sync covers every
                    // append so far, and every slave's writer), then go on sending.
                    if let Err(error) = shared.log.flush() {
                        return CloseReason::Io(format!("log flush before a transfer: {error}"));
                    }
                    continue;
                }
                break;
            }
            let frames = match gather(&shared.log, link, &batch, &mut buf) {
                Ok(frames) => frames,
                Err(reason) => return reason,
            };
            tokio::select! {
                biased;
                _ = ctx.stopped() => return CloseReason::Shutdown,
                sent = wr.write_all(frames) => if let Err(error) = sent {
                    return CloseReason::Io(error.to_string());
                },
            }
        }
        buf = Vec::new();
        let deadline = match link.lock().poll_timeout() {
            Some(at) => shared.clock.instant_at(at),
            None => return CloseReason::Shutdown,
        };
        tokio::select! {
            biased;
            _ = ctx.stopped() => {
                farewell(&mut wr, link).await;
                return CloseReason::Shutdown;
            }
            _ = shared.grown.changed(&mut grown) => {}
            _ = wake.notified() => {}
            _ = time::sleep_until(deadline) => {}
        }
    }
}

/// Sends the link's [`MasterLink::farewell`], if it has one: best effort, for at most a second
/// (the peer may be a probe that is already gone).
async fn farewell(wr: &mut OwnedWriteHalf, link: &Mutex<MasterLink>) {
    let header = link.lock().farewell().and_then(|t| t.header());
    if let Some(header) = header {
        let _ = time::timeout(Duration::from_secs(1), wr.write_all(&header)).await;
    }
}

/// Lays out `batch`'s frames (header, then body read from the log) in `buf` and returns them.
/// `buf` only grows while the slave is behind, so it is zeroed once per catch-up, not per gather.
fn gather<'b>(
    log: &CommitLog,
    link: &Mutex<MasterLink>,
    batch: &[Transmit],
    buf: &'b mut Vec<u8>,
) -> Result<&'b [u8], CloseReason> {
    use std::os::unix::fs::FileExt;
    let entries = link.lock().epoch_count();
    let total: usize = batch
        .iter()
        .map(|t| t.header_len(entries) + t.len as usize)
        .sum();
    if buf.len() < total {
        buf.resize(total, 0);
    }
    let mut at = 0;
    for t in batch {
        let header = match t.header() {
            Some(header) => header,
            None => {
                debug_assert_eq!(t.head, Head::Handshake);
                link.lock().handshake_frame().into()
            }
        };
        buf[at..at + header.len()].copy_from_slice(&header);
        at += header.len();
        let want = t.len as usize;
        if want == 0 {
            continue;
        }
        let range = match log.file_range(t.offset, want) {
            Ok(Some(range)) if range.len == want => range,
            Ok(range) => {
                return Err(CloseReason::Io(format!(
                    "log read {} of {want} bytes at {}",
                    range.map_or(0, |r| r.len),
                    t.offset
                )));
            }
            Err(error) => {
                if error.kind() == io::ErrorKind::InvalidData {
                    // Damage in the log: this slave (and every other) stops there until an
                    // operator repairs the store; say so each time.
                    tracing::error!(offset = t.offset, %error, "HA master: not sending damaged log bytes");
                }
                return Err(CloseReason::Io(format!(
                    "log read at {}: {error}",
                    t.offset
                )));
            }
        };
        range
            .file
            .read_exact_at(&mut buf[at..at + want], range.pos)
            .map_err(|e| CloseReason::Io(format!("log read at {}: {e}", t.offset)))?;
        at += want;
    }
    Ok(&buf[..at])
}

/// Slave settings.
#[derive(Debug, Clone)]
pub struct SlaveConfig {
    /// The master's HA address.
    pub master: SocketAddr,
    /// Protocol timing and sizes (the segment size must be the master's).
    pub ha: HaConfig,
    /// The protocol (the master's).
    pub mode: HaMode,
    /// What an auto-switch slave says about itself (its broker id keys the master's in-sync set).
    pub hello: SlaveHello,
    /// Planted defects in the shipped slave (feature `harness` only).
    #[cfg(feature = "harness")]
    pub faults: SlaveFaults,
    /// Connect timeout (upstream 5 s).
    pub connect_timeout: Duration,
    /// First reconnect delay; doubled after each failure up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest reconnect delay (upstream waits 5 s).
    pub backoff_max: Duration,
    /// The master's client (remoting) address, asked `GET_BROKER_CONFIG` (26) before each HA
    /// connect: a master whose segment size is not ours is refused there, before a byte is
    /// appended. `None`, or a broker that does not answer, leaves the check to the first segment
    /// end the two disagree on.
    pub master_broker: Option<SocketAddr>,
}

/// Upstream's default layout: the HA port is the client port + 1 (`haListenPort`), so the
/// master's client address is its HA address with the port below.
pub fn default_master_broker(ha: SocketAddr) -> Option<SocketAddr> {
    let port = ha.port().checked_sub(1).filter(|p| *p > 0)?;
    Some(SocketAddr::new(ha.ip(), port))
}

impl SlaveConfig {
    /// Upstream's timings against `master`, whose client port is the one below its HA port.
    pub fn new(master: SocketAddr) -> Self {
        SlaveConfig {
            master_broker: default_master_broker(master),
            master,
            ha: HaConfig::default(),
            mode: HaMode::Classic,
            hello: SlaveHello::default(),
            #[cfg(feature = "harness")]
            faults: SlaveFaults::default(),
            connect_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// What the slave is doing, for tests, metrics and the CLI.
#[derive(Debug, Default)]
pub struct SlaveStatus {
    /// Connected to the master now.
    pub connected: AtomicBool,
    /// Sessions started (first connect included).
    pub sessions: AtomicU64,
    /// Bytes appended since start.
    pub appended: AtomicU64,
    refusal: Mutex<Option<String>>,
}

impl SlaveStatus {
    /// Why the slave is not replicating from this master, while that lasts: its segment size,
    /// asked at connect ([`SlaveConfig::master_broker`]), is not ours, its log cannot be
    /// reconciled with ours, or its bytes do not frame in our log (cleared by the next append);
    /// or, for good, our log's segment size is not the HA config's (see [`HaSlave::start`]).
    pub fn refusal(&self) -> Option<String> {
        self.refusal.lock().clone()
    }
}

/// The log's segment size is set twice, in its `StoreConfig` (the files) and in `HaConfig` (where
/// a transfer ends); they must be one value. Why not, if they differ (also `net::server`'s check).
pub(crate) fn segment_sizes_differ(store: u64, ha: u64) -> Option<String> {
    (store != ha).then(|| {
        format!(
            "the store's segment size ({store}) and the HA segment size ({ha}) differ; they must be one value"
        )
    })
}

/// The answer to `GET_BROKER_CONFIG` (26) on the client port: `config`, or
/// `REQUEST_CODE_NOT_SUPPORTED` without one. A slave of ours says its own segment size in the
/// request; one that differs from ours is logged here, so the master names the mismatch too.
pub(crate) fn answer_broker_config(
    request: &RemotingCommand,
    config: Option<&BrokerConfig>,
    channel: ChannelId,
) -> RemotingCommand {
    let Some(config) = config else {
        return RemotingCommand::response_to(
            request,
            code::REQUEST_CODE_NOT_SUPPORTED,
            Some(format!(" request type {} not supported", request.code)),
        );
    };
    if let Some(theirs) =
        admin::asker_segment_size(request).filter(|theirs| *theirs != config.segment_size)
    {
        tracing::warn!(
            channel = channel.get(),
            ours = config.segment_size,
            theirs,
            "a slave asked for this broker's config with another segment size ({theirs} bytes, ours \
             {}): it will refuse to replicate; give both stores one --segment-size",
            config.segment_size
        );
    }
    admin::broker_config_response(request, config)
}

/// Asks the broker at `addr` for its configuration (`GET_BROKER_CONFIG`), saying ours, and
/// returns its segment size; `Err` says why there is none (no answer within `within`, a closed
/// connection, a broker that does not answer 26).
async fn ask_segment_size(addr: SocketAddr, own: u64, within: Duration) -> Result<u64, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let request = admin::broker_config_request(1, own);
        let mut out = bytes::BytesMut::new();
        request
            .encode(&mut out)
            .map_err(|e| format!("encode: {e}"))?;
        stream
            .write_all(&out)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut decoder = FrameDecoder::with_max_frame(1 << 20);
        let mut buf = bytes::BytesMut::with_capacity(4096);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(response)) if response.is_response() && response.opaque == 1 => {
                    return admin::segment_size_in(&response);
                }
                Ok(Some(_)) => continue, // a request of the broker's own: not ours to answer
                Ok(None) => {}
                Err(error) => return Err(format!("not a remoting answer: {error}")),
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) => return Err("the peer closed the connection without an answer".into()),
                Ok(_) => {}
                Err(error) => return Err(format!("read: {error}")),
            }
        }
    };
    time::timeout(within, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer in {within:?}")))
}

/// Why a slave does not replicate from a master whose segment size (asked at `broker`) is not
/// its own: both sizes, both of the master's addresses and what to do.
fn segment_size_refusal(master: SocketAddr, broker: SocketAddr, theirs: u64, ours: u64) -> String {
    format!(
        "segment sizes differ: the master at {broker} (HA {master}) has {theirs}-byte segments \
         ({key}), this slave's store {ours}-byte ones; a slave must use its master's segment size, \
         so nothing is replicated (use a store made with --segment-size {theirs})",
        key = admin::SEGMENT_SIZE_KEY
    )
}

fn check_segment_size(log: &CommitLog, ha: &HaConfig) -> io::Result<()> {
    match segment_sizes_differ(log.segment_size(), ha.segment_size) {
        None => Ok(()),
        Some(why) => Err(io::Error::new(io::ErrorKind::InvalidInput, why)),
    }
}

/// A running slave: it connects to its master, appends what the master sends to its own log and
/// reconnects after any failure, until [`HaSlave::shutdown`] (or drop).
///
/// [`HaMaster`]'s example runs one against a master. `status()` says what it is doing; here it
/// refuses a log whose segment size is not the HA config's:
///
/// ```
/// use rmq_lifecycle::core::ha::HaConfig;
/// use rmq_lifecycle::lifecycle::TaskGauge;
/// use rmq_lifecycle::net::Clock;
/// use rmq_lifecycle::net::ha::{HaSlave, SlaveConfig};
/// use rmq_lifecycle::store::{CommitLog, StoreConfig};
/// use rmq_lifecycle::tokio;
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = StoreConfig { segment_size: 64 * 1024, ..StoreConfig::new(dir.path()) };
/// let log = Arc::new(CommitLog::open(store).unwrap());
/// let config = SlaveConfig {
///     ha: HaConfig { segment_size: 1 << 20, ..HaConfig::default() }, // not the store's
///     ..SlaveConfig::new(([127, 0, 0, 1], 10912).into())
/// };
///
/// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// runtime.block_on(async {
///     let slave = HaSlave::start(config, log, Clock::start(), TaskGauge::new());
///     let why = slave.status().refusal().expect("refused at start");
///     assert!(why.contains("segment size"), "{why}");
///     assert_eq!(slave.status().sessions.load(std::sync::atomic::Ordering::Relaxed), 0);
///     assert_eq!(slave.shutdown(Duration::from_secs(1)).await, 0);
/// });
/// ```
#[derive(Debug)]
pub struct HaSlave {
    status: Arc<SlaveStatus>,
    cancel: CancellationToken,
    tasks: TaskGauge,
}

impl HaSlave {
    /// Starts replicating from `config.master` into `log`, counted in `tasks`.
    ///
    /// A transfer ends at the HA config's segment ends and a record must not cross the log's,
    /// so a `log` whose segment size is not `config.ha.segment_size` is refused here: the slave
    /// never connects, and [`SlaveStatus::refusal`] says why. (`net::server::Replica::start`
    /// returns the same refusal as an error, before it opens the store.)
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the replication task is spawned on the current one).
    pub fn start(
        config: SlaveConfig,
        log: Arc<CommitLog>,
        clock: Clock,
        tasks: TaskGauge,
    ) -> HaSlave {
        let status = Arc::new(SlaveStatus::default());
        let cancel = CancellationToken::new();
        if let Err(why) = check_segment_size(&log, &config.ha) {
            tracing::error!(master = %config.master, %why, "HA slave not started");
            *status.refusal.lock() = Some(why.to_string());
            return HaSlave {
                status,
                cancel,
                tasks: TaskGauge::new(),
            };
        }
        let (spawner, own) = Spawner::counting(tasks);
        let run = replicate(config, log, clock, status.clone(), cancel.clone());
        crate::lifecycle::Spawn::spawn(&spawner, Box::pin(run));
        HaSlave {
            status,
            cancel,
            tasks: own,
        }
    }

    /// Its status.
    pub fn status(&self) -> &Arc<SlaveStatus> {
        &self.status
    }

    /// Stops and waits (up to `grace`) for its own task (not for others counted in the same
    /// gauge); returns its tasks still alive.
    pub async fn shutdown(self, grace: Duration) -> usize {
        self.cancel.cancel();
        let deadline = time::Instant::now() + grace;
        while self.tasks.alive() > 0 && time::Instant::now() < deadline {
            time::sleep(Duration::from_millis(5)).await;
        }
        self.tasks.alive()
    }
}

impl Drop for HaSlave {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn replicate(
    config: SlaveConfig,
    log: Arc<CommitLog>,
    clock: Clock,
    status: Arc<SlaveStatus>,
    cancel: CancellationToken,
) {
    let link = match config.mode {
        HaMode::Classic => SlaveLink::new(config.ha),
        HaMode::AutoSwitch => SlaveLink::auto_switch(config.ha, config.hello),
    };
    #[cfg(feature = "harness")]
    let link = if config.faults.skip_truncation {
        link.with_skipped_truncation()
    } else {
        link
    };
    let mut link = link;
    let mut backoff = config.backoff_min;
    let mut failures: u32 = 0;
    // The last check at connect could not be made (said once until one succeeds).
    let mut unchecked = false;
    while !cancel.is_cancelled() {
        let check = config
            .master_broker
            .filter(|_| !planted!(config.faults.skip_segment_size_check));
        if let Some(broker) = check {
            let ours = config.ha.segment_size;
            let asked = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                asked = ask_segment_size(broker, ours, config.connect_timeout) => asked,
            };
            match asked {
                Ok(theirs) if theirs == ours => {
                    unchecked = false;
                    tracing::debug!(master_broker = %broker, segment_size = ours, "HA slave: the master's segment size is ours");
                }
                Ok(theirs) => {
                    let why = segment_size_refusal(config.master, broker, theirs, ours);
                    tracing::error!(master = %config.master, master_broker = %broker, %why, "HA slave: not replicating from this master");
                    *status.refusal.lock() = Some(why);
                    backoff = config.backoff_max;
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => break,
                        _ = time::sleep(backoff) => {}
                    }
                    continue;
                }
                Err(why) if !unchecked => {
                    unchecked = true;
                    tracing::warn!(master = %config.master, master_broker = %broker, %why, "HA slave: could not check the master's segment size at connect (GET_BROKER_CONFIG); a mismatch will be found at the first segment end the two disagree on");
                }
                Err(why) => {
                    tracing::debug!(master_broker = %broker, %why, "HA slave: segment size still not checked at connect");
                }
            }
        }
        let connect = time::timeout(config.connect_timeout, TcpStream::connect(config.master));
        let outcome = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            connected = connect => match connected {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    status.connected.store(true, Ordering::Release);
                    status.sessions.fetch_add(1, Ordering::Relaxed);
                    let before = log.max_offset();
                    let mut refused = false;
                    let end = session(stream, &mut link, &log, &clock, &status, &cancel, &mut refused).await;
                    status.connected.store(false, Ordering::Release);
                    if link.state() == HaState::Suspend || refused {
                        // Not a network failure: this master's log cannot be reconciled with
                        // ours, or what it sends does not frame in our log (another segment
                        // size, say). Say so every time; try again only at the slowest pace.
                        if let Err(why) = &end {
                            tracing::error!(master = %config.master, %why, "HA slave: not replicating from this master");
                            *status.refusal.lock() = Some(why.clone());
                        }
                        backoff = config.backoff_max;
                    }
                    link.handle_disconnected();
                    if log.max_offset() > before {
                        backoff = config.backoff_min;
                        *status.refusal.lock() = None;
                    }
                    end
                }
                Ok(Err(error)) => Err(format!("connect to {}: {error}", config.master)),
                Err(_) => Err(format!("connect to {} timed out", config.master)),
            },
        };
        match outcome {
            Ok(()) => break,
            Err(why) => {
                // A slave that cannot replicate says so at once and then every tenth attempt, so
                // a wrong address (a closed port, the client port) is seen without a flood.
                if backoff == config.backoff_min {
                    failures = 0;
                }
                failures += 1;
                if failures == 1 || failures % 10 == 0 {
                    tracing::warn!(master = %config.master, %why, attempts = failures, retry_in = ?backoff, "HA slave not replicating; retrying");
                } else {
                    tracing::debug!(master = %config.master, %why, attempts = failures, retry_in = ?backoff, "HA slave disconnected");
                }
            }
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(config.backoff_max);
    }
    link.handle_shutdown();
    if let Err(error) = log.flush() {
        tracing::warn!(%error, "HA slave: final flush failed");
    }
}

/// Bytes the slave reads at once while the master streams (upstream's slave holds two 4 MiB
/// buffers for good). Fewer, larger reads mean fewer wakeups and appends: 1 MiB cut the slave's
/// CPU per GiB by 10-20 % against 256 KiB. The buffer is freed whenever a read drains the socket,
/// so an idle slave holds none.
const SLAVE_READ: usize = 1024 * 1024;

/// When the slave sends the report its `SlaveLink` has made due.
///
/// The link makes one due after every append. While reads keep filling the buffer (more bytes are
/// already waiting: the master streams faster than the slave appends) a due report is held until
/// [`REPORT_WHILE_STREAMING`] bytes have been appended since the last one: each report is a send
/// the master must also receive, and sent per read they cost each side about a tenth of its CPU
/// on loopback. A read that does not fill the buffer, or finds nothing, releases it at once, so
/// a sync waiter is not held by this: its small append arrives in a read that drains the socket.
#[derive(Debug, Default)]
struct ReportPacer {
    /// Bytes appended since the last report went out.
    unreported: u64,
    /// The last read filled the buffer.
    streaming: bool,
}

/// See [`ReportPacer`].
const REPORT_WHILE_STREAMING: u64 = 1 << 20;

impl ReportPacer {
    /// A read returned `n` bytes into a buffer of `capacity` (0 for one that found nothing).
    fn read(&mut self, n: usize, capacity: usize) {
        self.streaming = n > 0 && n == capacity;
    }

    fn appended(&mut self, bytes: u64) {
        self.unreported += bytes;
    }

    /// Whether a due report goes out now.
    fn may_report(&self) -> bool {
        !self.streaming || self.unreported >= REPORT_WHILE_STREAMING
    }

    fn reported(&mut self) {
        self.unreported = 0;
    }
}

/// One connection's life; `Ok(())` only when cancelled.
async fn session(
    stream: TcpStream,
    link: &mut SlaveLink,
    log: &CommitLog,
    clock: &Clock,
    status: &SlaveStatus,
    cancel: &CancellationToken,
    refused: &mut bool,
) -> Result<(), String> {
    let (mut rd, mut wr) = stream.into_split();
    link.handle_local_epochs(log.min_offset(), log.epochs());
    link.handle_connected(clock.now(), log.max_offset());
    if let Some(hello) = link.poll_handshake() {
        wr.write_all(&hello)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
    }
    // Allocated while the master streams, released when a read drains the socket: an idle,
    // caught-up slave holds no read buffer between heartbeats.
    let mut buf: Vec<u8> = Vec::new();
    let mut appends: Vec<SlaveAppend> = Vec::new();
    let mut pacer = ReportPacer::default();
    // The next report is the first after the handshake's truncation (the model trace's
    // ReportOffset; later reports are its Ack).
    let mut first_report = false;
    loop {
        if pacer.may_report() {
            while let Some(report) = link.poll_transmit(clock.now()) {
                wr.write_all(&link.encode_report(report))
                    .await
                    .map_err(|e| format!("report: {e}"))?;
                let first = std::mem::take(&mut first_report);
                model_step(|seq| {
                    tracing::trace!(target: MODEL, seq, action = "Report", o = report, first);
                });
                pacer.reported();
            }
        }
        let deadline = link.poll_timeout().map(|at| clock.instant_at(at));
        let Some(deadline) = deadline else {
            return Err("link left TRANSFER".into());
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
            readable = io_net::readable(&mut rd) => {
                if let Err(error) = readable {
                    return Err(format!("read: {error}"));
                }
                // Read into spare capacity: nothing is zeroed, and a heartbeat's read touches one
                // page of the buffer.
                if buf.capacity() == 0 {
                    buf = Vec::with_capacity(SLAVE_READ);
                }
                buf.clear();
                let n = match io_net::try_read_buf(&mut rd, &mut buf) {
                    Ok(0) => return Err("master closed the connection".into()),
                    Ok(n) => n,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        buf = Vec::new();
                        pacer.read(0, SLAVE_READ);
                        continue;
                    }
                    Err(error) => return Err(format!("read: {error}")),
                };
                link.handle_bytes(clock.now(), &buf[..n], &mut appends);
                let mut closed = None;
                while let Some(event) = link.poll_event() {
                    match event {
                        SlaveEvent::Rebase(offset) => log.reset_base(offset).map_err(|e| format!("rebase to {offset}: {e}"))?,
                        SlaveEvent::Truncate(point) => {
                            let max = log.max_offset();
                            log.truncate(point).map_err(|e| format!("truncate to {point}: {e}"))?;
                            first_report = true;
                            if point < max {
                                tracing::warn!(point, cut = max - point, "HA slave: cut the log back to the consistent point with the master (the cut bytes are in the store's quarantine)");
                            }
                        }
                        SlaveEvent::Closed(why) => closed = Some(why),
                    }
                }
                // The bodies of one read are consecutive in the log: one append for all of them,
                // or one per epoch, each new epoch recorded before its first byte.
                let mut rest = &appends[..];
                while let Some(first) = rest.first() {
                    debug_assert!(rest.windows(2).all(|w| w[0].offset + w[0].range.len() as u64 == w[1].offset));
                    if let Some(epoch) = first.epoch {
                        log.append_epoch(epoch).map_err(|e| format!("epoch {epoch}: {e}"))?;
                    }
                    let n = 1 + rest[1..].iter().take_while(|a| a.epoch.is_none()).count();
                    let pieces: smallvec::SmallVec<[&[u8]; 32]> = rest[..n].iter().map(|a| &buf[a.range.clone()]).collect();
                    let new_max = log.append_raw_vectored(first.offset, &pieces).map_err(|e| {
                        *refused = e.kind() == io::ErrorKind::InvalidData;
                        format!("append at {}: {e}", first.offset)
                    })?;
                    status.appended.fetch_add(new_max - first.offset, Ordering::Relaxed);
                    pacer.appended(new_max - first.offset);
                    link.handle_appended(new_max);
                    rest = &rest[n..];
                }
                let full = n == buf.capacity();
                pacer.read(n, buf.capacity());
                if !full {
                    buf = Vec::new();
                }
                if let Some(why) = closed {
                    return Err(why.to_string());
                }
            }
            _ = time::sleep_until(deadline) => {
                link.handle_timeout(clock.now());
                if let Some(SlaveEvent::Closed(why)) = link.poll_event() {
                    return Err(why.to_string());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{REPORT_WHILE_STREAMING, ReportPacer};

    #[test]
    fn a_streaming_slave_reports_once_per_mib_and_at_once_when_drained() {
        let mut p = ReportPacer::default();
        assert!(p.may_report(), "the report due on connect goes out");
        let read = 256 * 1024;
        let mut reports = 0;
        for _ in 0..16 {
            p.read(read, read);
            p.appended(read as u64);
            if p.may_report() {
                p.reported();
                reports += 1;
            }
        }
        assert_eq!(reports as u64, 16 * read as u64 / REPORT_WHILE_STREAMING);
        // A small append in a read that drains the socket (a sync waiter's) reports at once.
        p.read(100, read);
        p.appended(100);
        assert!(p.may_report());
        // So does a read that finds nothing after a full one.
        p.reported();
        p.read(read, read);
        p.appended(read as u64);
        assert!(!p.may_report());
        p.read(0, read);
        assert!(p.may_report());
    }
}
