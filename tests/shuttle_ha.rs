//! Shuttle harnesses for the HA connection lifecycle (`HaConnection<P>` over `HaRegistry`),
//! started through the `Spawn` trait on shuttle's executor, without tokio.
//!
//! Each connection has an accept thread (`HaConnection::new -> register -> spawn(reader,
//! writer)`, then it stores the `Running` handle as `src/net/ha.rs`'s accept loop does), a peer
//! (a `StopSignal` standing for the socket: a probe closes it at once, a slave later or never),
//! and, in the shutdown runs, a server shutdown racing them all (cancel, take the stored handles
//! and close each, then `HaRegistry::close_all`, as `HaMaster::shutdown` does). The reader records acks and the
//! writer reads the table until the peer closes or the stop signal is raised. Checked:
//!
//! * `NoRunningUnregistered`, during the run: a task that sees its row gone (`record_ack` false,
//!   or its id missing from `entries()`) must find its stop signal raised, unless shutdown has
//!   begun and the server holds the handle and will close it (the `ShutdownWillStop` clause of
//!   `models/HaConnection.tla`: an accept thread that registered just before the cancel may see
//!   its row go in `close_all` before it closes the handle itself).
//!   Recorded by the task, reported at the end. Once the accept and shutdown threads are done,
//!   every connection whose row is gone has its stop signal raised.
//! * `NoLeakAtQuiescence`: with every peer gone (or after shutdown) and every task ended, the
//!   table is empty and the `TaskGauge` of the `Counted` spawner is back to 0; right after
//!   `close_all` returns, the table is empty.
//! * `CountIsTable`: `count()`, `entries().len()` and registered - removed agree (and, in the
//!   upstream emulation, upstream's separate `connectionCount`).
//!
//! * `shuttle_ha_probe_storm_*`: two probes and a slave, no shutdown: every row must go with its
//!   tasks.
//! * `shuttle_ha_shutdown_*`: a probe and two slaves while the master shuts down.
//! * `*_finds_*`: the same harness against a planted defect must fail naming the invariant, and
//!   the failing schedule must fail again on replay: `Upstream514` (the tasks start before the
//!   row is added, as in RocketMQ 5.1.4, #8875), `HaFaults::split_close_all`, and
//!   `NetAcceptLoop` (`src/net/ha.rs`'s accept loop stores a handle even after shutdown drained
//!   its map).
//!
//! Run (release, own target dir; `--nocapture` prints schedules explored and time per test):
//!
//! ```text
//! CARGO_TARGET_DIR=target/shuttle cargo test --release --no-default-features \
//!     --features shuttle --test shuttle_ha -- --nocapture
//! ```
//!
//! `SHUTTLE_ITERATIONS=N` changes the schedules per test (default 2000); `SHUTTLE_RANDOM_SEED`
//! (shuttle's own) fixes the scheduler seed. Replay: a failing test prints its schedule and the
//! command that replays it,
//!
//! ```text
//! SHUTTLE_REPLAY='<test name>:<schedule>' CARGO_TARGET_DIR=target/shuttle cargo test --release \
//!     --no-default-features --features shuttle --test shuttle_ha -- <test name> --exact --nocapture
//! ```
//!
//! With `SHUTTLE_REPLAY` set, the named test replays that one schedule instead of exploring (a
//! bare `SHUTTLE_REPLAY='<schedule>'` applies to every test that runs). Everything here is
//! deterministic given the schedule (the HA table's hasher is fixed, the harness's maps are
//! ordered), so one replay suffices.

#![cfg(feature = "shuttle")]

#[path = "support/ha.rs"]
mod ha;
#[path = "support/shuttle_runner.rs"]
mod runner;
mod support;

use ha::HaExpect;
use rmq_lifecycle::lifecycle::{
    CloseReason, Counted, HaConnection, HaTaskContext, Spawn, StopSignal, TaskGauge,
};
use rmq_lifecycle::phase::Running;
use rmq_lifecycle::registry::ha::HaFaults;
use rmq_lifecycle::registry::{ConnId, HaRegisterError, HaRegistry};
use runner::{Sched, ShuttleSpawner, check, check_finds, replay_request};
use shuttle::future::yield_now;
use shuttle::rand::{Rng, thread_rng};
use shuttle::sync::atomic::{AtomicI64, Ordering};
use shuttle::sync::{Arc, Mutex};
use shuttle::thread;
use std::collections::{BTreeMap, BTreeSet};
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::task::Poll;

/// Acks a reader records (and table reads a writer makes) before it only waits.
const STEPS: u64 = 2;

// ---------------------------------------------------------------------------------------------
// The server: accept side, tasks, shutdown
// ---------------------------------------------------------------------------------------------

/// How the accept side starts a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// Register, spawn, store the handle; a connection started after shutdown began is closed
    /// by the accept side itself, under the lock shutdown drains with (the fix proposed for
    /// `src/net/ha.rs`).
    Lifecycle,
    /// `src/net/ha.rs`'s accept loop today: the handle is stored whatever shutdown did, so one
    /// registered before `close_all` and stored after the drain is never closed by shutdown.
    NetAcceptLoop,
    /// RocketMQ 5.1.4 (#8875): `conn.start()` then `addConnection(conn)`. The tasks are spawned
    /// with the raw spawner (the typestate forbids it), the row is added after, and a task's
    /// exit removes the row only if the add already happened; `connectionCount` is kept apart.
    Upstream514,
}

/// What a connection's peer does with its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// A health check: connects and closes at once.
    Probe,
    /// A slave: closes later (a random point), or, in a shutdown run, maybe never.
    Slave,
}

#[derive(Debug, Clone, Copy)]
struct Plan {
    peers: &'static [Peer],
    shutdown: bool,
}

const PROBE_STORM: Plan = Plan {
    peers: &[Peer::Probe, Peer::Probe, Peer::Slave],
    shutdown: false,
};

const SHUTDOWN: Plan = Plan {
    peers: &[Peer::Probe, Peer::Slave, Peer::Slave],
    shutdown: true,
};

/// The server's bookkeeping (the accept loop's `connections` map and `HaMaster::shutdown`'s
/// progress), under one lock.
#[derive(Default)]
struct State {
    /// Shutdown began (`HaMaster::shutdown`'s `cancel`), before `close_all`.
    cancelled: bool,
    /// Shutdown took the map.
    drained: bool,
    /// The stored `Running` handles.
    map: BTreeMap<ConnId, HaConnection<Running>>,
    /// Registered by an accept thread that has not stored or closed the handle yet.
    accepting: BTreeSet<ConnId>,
    /// Taken by shutdown, not closed yet.
    closing: BTreeSet<ConnId>,
    /// Every connection whose tasks were started, with its stop signal.
    started: Vec<(ConnId, StopSignal)>,
    /// What the tasks' checks found.
    violations: Vec<String>,
}

/// How often a task saw its row removed and the check passed, counted outside the model (std
/// atomics), so that a passing run shows the `NoRunningUnregistered` check was exercised.
#[derive(Debug, Default)]
struct Coverage {
    /// Its stop signal was raised.
    stopped: AtomicUsize,
    /// Not yet, but shutdown held its handle.
    held: AtomicUsize,
}

struct Server {
    order: Order,
    coverage: std::sync::Arc<Coverage>,
    registry: Arc<HaRegistry>,
    spawner: Counted<ShuttleSpawner>,
    state: Mutex<State>,
    /// Upstream's `connectionCount` (only `Upstream514` keeps one).
    upstream_count: AtomicI64,
}

/// What an accept thread did with its connection.
#[derive(Debug)]
enum Accepted {
    /// Its tasks were started on this row.
    Started(ConnId),
    /// The table refused it.
    Refused(HaRegisterError),
}

impl Server {
    fn state(&self) -> shuttle::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// A task of `ctx.id` saw its row gone while running: it must have been told to stop.
    fn saw_row_removed(&self, ctx: &HaTaskContext, task: &str) {
        // The server's hold first, then the signal: a handle leaves `closing` (or `accepting`)
        // only after its close raised the signal, so this order has no false alarm.
        let held = {
            let st = self.state();
            st.cancelled
                && (st.accepting.contains(&ctx.id)
                    || (!st.drained && st.map.contains_key(&ctx.id))
                    || st.closing.contains(&ctx.id))
        };
        let counter = if ctx.stop.is_stopped() {
            &self.coverage.stopped
        } else if held {
            &self.coverage.held
        } else {
            // Reported by the main thread at the end (a panic in a task would end the run
            // with a schedule that `SHUTTLE_REPLAY` cannot replay to the end).
            self.state().violations.push(format!(
                "NoRunningUnregistered violated: the {task} of {} runs after it saw its row \
                 removed, its stop signal is not raised, and shutdown does not hold its handle",
                ctx.id
            ));
            return;
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The accept thread of connection `i`.
    fn accept(self: &Arc<Self>, i: usize, peer: StopSignal) -> Accepted {
        let label = format!("peer-{i}");
        if self.order == Order::Upstream514 {
            return self.accept_514(&label, peer);
        }
        let registered = match HaConnection::new(label).register(&self.registry) {
            Ok(registered) => registered,
            Err(refused) => {
                let error = refused.error.clone();
                let closed = refused
                    .connection
                    .close(CloseReason::Rejected(error.to_string()));
                assert_eq!(closed.id(), None);
                return Accepted::Refused(error);
            }
        };
        let id = registered.id();
        self.state().accepting.insert(id);
        let (s1, s2) = (self.clone(), self.clone());
        let running = registered.spawn(
            &self.spawner,
            move |ctx| reader(ctx, s1, peer),
            move |ctx| writer(ctx, s2),
        );
        let mut st = self.state();
        st.accepting.remove(&id);
        st.started.push((id, running.stop_signal().clone()));
        if st.cancelled && self.order == Order::Lifecycle {
            // Shutdown began and may have drained the map already: close it here, under the
            // lock, so no task sees itself neither held nor stopped.
            let closed = running.close(CloseReason::Shutdown);
            assert_eq!(closed.id(), Some(id));
        } else {
            st.map.insert(id, running);
        }
        Accepted::Started(id)
    }

    /// Upstream 5.1.4's `AcceptSocketService.run`: `createConnection` (count++), `start()`,
    /// `addConnection`.
    fn accept_514(self: &Arc<Self>, label: &str, peer: StopSignal) -> Accepted {
        self.upstream_count.fetch_add(1, Ordering::SeqCst);
        let stop = StopSignal::new();
        // The row the tasks' `removeConnection` can find: none until the add.
        let row: Arc<Mutex<Option<ConnId>>> = Arc::default();
        let reader = reader_514(self.clone(), stop.clone(), peer, row.clone());
        let writer = writer_514(self.clone(), stop.clone(), row.clone());
        self.spawner.spawn(Box::pin(reader));
        self.spawner.spawn(Box::pin(writer));
        let id = {
            let mut row = row.lock().unwrap();
            let id = self
                .registry
                .register(label)
                .expect("no cap and no shutdown in the upstream runs");
            *row = Some(id);
            id
        };
        self.state().started.push((id, stop));
        Accepted::Started(id)
    }

    /// `HaMaster::shutdown`: cancel, drain the map, close each handle, then `close_all`.
    /// Returns what it saw right after `close_all`.
    fn shutdown(&self) -> Vec<String> {
        self.state().cancelled = true;
        let open = {
            let mut st = self.state();
            st.drained = true;
            let open = std::mem::take(&mut st.map);
            st.closing = open.keys().copied().collect();
            open
        };
        for (id, connection) in open {
            let closed = connection.close(CloseReason::Shutdown);
            assert_eq!(closed.id(), Some(id));
            self.state().closing.remove(&id);
        }
        self.registry.close_all();
        ha::after_close_all(&self.registry)
    }
}

enum Woken {
    Stop,
    Peer,
}

/// Waits for the stop signal or the peer's close, whichever comes first.
async fn stop_or_peer(stop: &StopSignal, peer: &StopSignal) -> Woken {
    let (mut stopped, mut closed) = (stop.stopped(), peer.stopped());
    poll_fn(|cx| {
        if Pin::new(&mut stopped).poll(cx).is_ready() {
            Poll::Ready(Woken::Stop)
        } else if Pin::new(&mut closed).poll(cx).is_ready() {
            Poll::Ready(Woken::Peer)
        } else {
            Poll::Pending
        }
    })
    .await
}

/// The reader: records a few acks, then waits; ends on the peer's close or the stop signal.
async fn reader(ctx: HaTaskContext, server: Arc<Server>, peer: StopSignal) -> CloseReason {
    for offset in 1..=STEPS {
        if peer.is_stopped() {
            return CloseReason::PeerClosed;
        }
        if ctx.stop.is_stopped() {
            return CloseReason::Shutdown;
        }
        if !ctx.registry.record_ack(ctx.id, offset) {
            server.saw_row_removed(&ctx, "reader");
        }
        yield_now().await;
    }
    match stop_or_peer(&ctx.stop, &peer).await {
        Woken::Stop => CloseReason::Shutdown,
        Woken::Peer => CloseReason::PeerClosed,
    }
}

/// The writer: reads the table a few times, then waits for the stop signal.
async fn writer(ctx: HaTaskContext, server: Arc<Server>) -> CloseReason {
    for _ in 0..STEPS {
        if ctx.stop.is_stopped() {
            return CloseReason::Shutdown;
        }
        if !ctx.registry.entries().iter().any(|e| e.id == ctx.id) {
            server.saw_row_removed(&ctx, "writer");
        }
        yield_now().await;
    }
    ctx.stop.stopped().await;
    CloseReason::Shutdown
}

/// Upstream's `removeConnection(this)`: removes the row if the accept thread added it already.
fn remove_514(server: &Server, row: &Mutex<Option<ConnId>>) {
    if let Some(id) = *row.lock().unwrap() {
        server.registry.deregister(id);
    }
}

/// Upstream's `ReadSocketService`: on EOF (or stop), stop itself and the writer, remove the
/// connection, decrement `connectionCount`.
async fn reader_514(
    server: Arc<Server>,
    stop: StopSignal,
    peer: StopSignal,
    row: Arc<Mutex<Option<ConnId>>>,
) {
    stop_or_peer(&stop, &peer).await;
    stop.stop();
    remove_514(&server, &row);
    server.upstream_count.fetch_sub(1, Ordering::SeqCst);
}

/// Upstream's `WriteSocketService`: runs until stopped, then removes the connection.
async fn writer_514(server: Arc<Server>, stop: StopSignal, row: Arc<Mutex<Option<ConnId>>>) {
    stop.stopped().await;
    remove_514(&server, &row);
}

/// The peers: probes close at once; slaves after a few scheduling points, and in a shutdown run
/// each slave stays connected with probability 1/2 (only the shutdown can end it).
fn close_peers(plan: Plan, sockets: &[StopSignal]) {
    let mut rng = thread_rng();
    for (kind, socket) in plan.peers.iter().zip(sockets) {
        if *kind == Peer::Probe {
            socket.stop();
        }
    }
    for (kind, socket) in plan.peers.iter().zip(sockets) {
        if *kind == Peer::Slave {
            for _ in 0..rng.gen_range(0..3) {
                thread::yield_now();
            }
            if !plan.shutdown || rng.gen_bool(0.5) {
                socket.stop();
            }
        }
    }
}

/// One run: an accept thread per peer, the peers, and (if planned) a shutdown, all racing; then
/// the checks described at the top.
fn scenario(
    order: Order,
    plan: Plan,
    faults: HaFaults,
    coverage: std::sync::Arc<Coverage>,
) -> impl Fn() + Clone + Send + Sync {
    assert!(
        !(order == Order::Upstream514 && plan.shutdown),
        "the upstream emulation has no shutdown"
    );
    move || {
        let gauge = TaskGauge::new();
        let spawner = ShuttleSpawner::default();
        let server = Arc::new(Server {
            order,
            coverage: coverage.clone(),
            registry: Arc::new(HaRegistry::with_faults(usize::MAX, faults)),
            spawner: Counted::new(spawner.clone(), gauge.clone()),
            state: Mutex::default(),
            upstream_count: AtomicI64::new(0),
        });
        let sockets: Vec<StopSignal> = plan.peers.iter().map(|_| StopSignal::new()).collect();

        let accepts: Vec<_> = sockets
            .iter()
            .enumerate()
            .map(|(i, socket)| {
                let (server, socket) = (server.clone(), socket.clone());
                thread::spawn(move || server.accept(i, socket))
            })
            .collect();
        let peers = {
            let sockets = sockets.clone();
            thread::spawn(move || close_peers(plan, &sockets))
        };
        let shutdown = plan.shutdown.then(|| {
            let server = server.clone();
            thread::spawn(move || server.shutdown())
        });
        let accepted: Vec<Accepted> = accepts.into_iter().map(|t| t.join().unwrap()).collect();
        peers.join().unwrap();
        let mut observed = shutdown.map(|t| t.join().unwrap()).unwrap_or_default();

        // The server side is done: a connection whose row is gone must have been told to stop
        // (its tasks may still be running).
        let rows: Vec<ConnId> = server.registry.entries().iter().map(|e| e.id).collect();
        for (id, stop) in &server.state().started {
            if !rows.contains(id) && !stop.is_stopped() {
                observed.push(format!(
                    "NoRunningUnregistered violated: {id}'s row is gone, but its stop signal was \
                     never raised after the server side finished (its tasks run unregistered)"
                ));
            }
        }
        if plan.shutdown {
            // The master and its accept loop are gone: whatever is left in the map is dropped
            // (stop, abort, deregister), as in `src/net/ha.rs` once both `Arc`s are dropped.
            let left = std::mem::take(&mut server.state().map);
            drop(left);
        }
        spawner.join_all();
        observed.append(&mut server.state().violations);

        // Quiescence: every peer closed or shut down, every task ended. The handles of a run
        // without shutdown are still stored: the rows went with the tasks, not the handles.
        let expect = HaExpect {
            tasks_alive: Some(gauge.alive()),
            reported_count: (order == Order::Upstream514)
                .then(|| server.upstream_count.load(Ordering::SeqCst)),
            observed,
            ..HaExpect::default()
        };
        ha::check(&server.registry, &expect);
        drop(std::mem::take(&mut server.state().map));
        for a in &accepted {
            if let Accepted::Refused(error) = a {
                assert!(plan.shutdown, "refused without a shutdown: {error}");
                assert_eq!(*error, HaRegisterError::ShuttingDown);
            }
        }
        let started: BTreeSet<ConnId> = accepted
            .iter()
            .filter_map(|a| match a {
                Accepted::Started(id) => Some(*id),
                Accepted::Refused(_) => None,
            })
            .collect();
        assert_eq!(server.registry.accepted_total(), started.len() as u64);
        assert_eq!(server.registry.is_closed(), plan.shutdown);
    }
}

/// Explores the lifecycle under `plan`, then shows that tasks did see their rows removed.
fn check_lifecycle(test: &str, sched: Sched, plan: Plan) {
    let coverage = std::sync::Arc::new(Coverage::default());
    let f = scenario(
        Order::Lifecycle,
        plan,
        HaFaults::default(),
        coverage.clone(),
    );
    check(test, sched, f);
    let stopped = coverage.stopped.load(std::sync::atomic::Ordering::Relaxed);
    let held = coverage.held.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "shuttle {test}: a running task saw its row removed {} times: {stopped} with its stop \
         signal raised, {held} with its handle held by shutdown",
        stopped + held
    );
    if replay_request(test).is_none() && plan.shutdown {
        assert!(held > 0, "{test}: no task saw close_all remove its row");
    }
}

#[test]
fn shuttle_ha_probe_storm_random() {
    check_lifecycle("shuttle_ha_probe_storm_random", Sched::Random, PROBE_STORM);
}

#[test]
fn shuttle_ha_probe_storm_pct() {
    check_lifecycle("shuttle_ha_probe_storm_pct", Sched::Pct, PROBE_STORM);
}

#[test]
fn shuttle_ha_probe_storm_finds_upstream_514_leak() {
    check_finds(
        "shuttle_ha_probe_storm_finds_upstream_514_leak",
        Sched::Random,
        "NoLeakAtQuiescence",
        scenario(
            Order::Upstream514,
            PROBE_STORM,
            HaFaults::default(),
            Default::default(),
        ),
    );
}

#[test]
fn shuttle_ha_shutdown_random() {
    check_lifecycle("shuttle_ha_shutdown_random", Sched::Random, SHUTDOWN);
}

#[test]
fn shuttle_ha_shutdown_pct() {
    check_lifecycle("shuttle_ha_shutdown_pct", Sched::Pct, SHUTDOWN);
}

#[test]
fn shuttle_ha_shutdown_finds_split_close_all() {
    check_finds(
        "shuttle_ha_shutdown_finds_split_close_all",
        Sched::Random,
        "NoLeakAtQuiescence",
        scenario(
            Order::Lifecycle,
            SHUTDOWN,
            HaFaults {
                split_close_all: true,
            },
            Default::default(),
        ),
    );
}

#[test]
fn shuttle_ha_shutdown_finds_net_accept_loop_race() {
    check_finds(
        "shuttle_ha_shutdown_finds_net_accept_loop_race",
        Sched::Random,
        "NoRunningUnregistered",
        scenario(
            Order::NetAcceptLoop,
            SHUTDOWN,
            HaFaults::default(),
            Default::default(),
        ),
    );
}
