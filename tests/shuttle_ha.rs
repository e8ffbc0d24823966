//! Shuttle harnesses for the HA master's accept/reap/shutdown: the shipped `lifecycle::HaAcceptor`
//! (the code `src/net/ha.rs`'s accept loop calls) over `HaRegistry`, started through the `Spawn`
//! trait on shuttle's executor, without tokio.
//!
//! One accept thread takes the peers' transports in order, as the accept loop does; each
//! transport is a `StopSignal` standing for the socket (raised = the peer closed it). The peers
//! race it: a probe closes at once; a slave later, or (in a shutdown run) maybe never; a crashing
//! connection has its reader task dropped mid-flight (what tokio does to a task whose future
//! panicked: the harness aborts it, which unwinds the same guards). In the shutdown runs
//! `HaAcceptor::shutdown` (the call `HaMaster::shutdown` makes) races them all. The reader
//! records acks through its `HaTaskContext` and the writer reads the table; each ends on the peer's
//! close or its stop signal. Checked:
//!
//! * `NoRunningUnregistered` (with `StopBeforeRemove`), during the run: a task that sees its row
//!   gone (`record_ack` false, or its id missing from `entries()`) must find its stop signal
//!   raised. Recorded by the task, reported at the end.
//! * `NoLeakAtQuiescence`: once every peer is gone (or after shutdown) and every task ended, the
//!   table is empty, the `TaskGauge` of the `Counted` spawner is back to 0 and the acceptor holds
//!   no connection; right after a shutdown, the table is empty and closed.
//! * `CountIsTable`: `count()`, `entries().len()` and registered - removed agree, and the
//!   acceptor's accepted - closed equals what it holds.
//!
//! * `shuttle_ha_probe_storm_*`: two probes, a crashing connection and a slave, no shutdown.
//! * `shuttle_ha_shutdown_*`: a probe, a crashing connection and two slaves while the master
//!   shuts down.
//! * `*_finds_*`: the same harness against a planted defect (feature `harness`) must fail naming
//!   the invariant, and the failing schedule must fail again on replay: RocketMQ 5.1.4's order
//!   (`AcceptorFaults::upstream_514_order`, #8875: its tasks run before their row exists, and a
//!   probe's leaves a dead row), a reap lost when a task unwinds
//!   (`lost_reap_on_panic`), a handle stored after shutdown took the slots
//!   (`store_after_shutdown`), and a row removed without raising its stop signal
//!   (`HaFaults::remove_without_stop`: a reader's end does not stop the writer).
//!
//! Run (`--nocapture` prints schedules explored and time per test):
//!
//! ```text
//! cargo test --no-default-features --features shuttle,harness --test shuttle_ha -- --nocapture
//! ```
//!
//! `SHUTTLE_ITERATIONS=N` changes the schedules per test (default 2000); `SHUTTLE_RANDOM_SEED`
//! (shuttle's own) fixes the scheduler seed. Replay: a failing test prints its schedule and the
//! command that replays it (`SHUTTLE_REPLAY='<test name>:<schedule>'`); everything here is
//! deterministic given the schedule (the HA table's hasher is fixed, the harness's maps are
//! ordered), so one replay suffices.

#![cfg(feature = "shuttle")]

#[path = "support/ha.rs"]
mod ha;
#[path = "../cli/src/cli/model_trace.rs"]
mod model_trace;
#[path = "support/shuttle_runner.rs"]
mod runner;
mod support;

use ha::HaExpect;
use rmq_lifecycle::lifecycle::{
    AcceptorFaults, CloseReason, Counted, HaAcceptor, HaTaskContext, StopSignal, TaskGauge,
};
use rmq_lifecycle::registry::{ConnId, HaFaults, HaRegisterError, HaRegistry};
use runner::{Sched, ShuttleSpawner, check, check_finds};
use shuttle::future::yield_now;
use shuttle::rand::{Rng, thread_rng};
use shuttle::sync::{Arc, Mutex};
use shuttle::thread;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;

/// Acks a reader records (and table reads a writer makes) before it only waits.
const STEPS: u64 = 2;

/// What a connection's peer does with its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// A health check: connects and closes at once.
    Probe,
    /// A slave: closes later (a random point), or, in a shutdown run, maybe never.
    Slave,
    /// A slave whose reader task panics at a random point (its future is dropped mid-flight);
    /// the peer then closes too, or, in a shutdown run, maybe never.
    Crash,
}

#[derive(Debug, Clone, Copy)]
struct Plan {
    peers: &'static [Peer],
    shutdown: bool,
    /// The shutdown thread first yields up to this many times (a random number).
    shutdown_delay: u32,
}

const PROBE_STORM: Plan = Plan {
    peers: &[Peer::Probe, Peer::Crash, Peer::Probe, Peer::Slave],
    shutdown: false,
    shutdown_delay: 0,
};

const SHUTDOWN: Plan = Plan {
    peers: &[Peer::Probe, Peer::Crash, Peer::Slave, Peer::Slave],
    shutdown: true,
    shutdown_delay: 0,
};

/// [`SHUTDOWN`], the shutdown coming later: it then also takes stored handles and closes them.
const SHUTDOWN_LATE: Plan = Plan {
    shutdown_delay: 40,
    ..SHUTDOWN
};

/// The transport: the peer's end of the socket (raised once the peer closed it).
struct Socket(StopSignal);

type Acceptor = HaAcceptor<Socket, Counted<ShuttleSpawner>>;

/// What the tasks observed, for the checks at the end.
#[derive(Default)]
struct Observed {
    violations: Vec<String>,
    /// A task saw its row removed (with its stop raised), so the check was exercised.
    saw_removed: usize,
}

/// A task of `ctx.id()` saw its row gone while running: it must have been told to stop, since
/// every removal raises the row's stop signal before the row goes.
fn saw_row_removed(ctx: &HaTaskContext, task: &str, observed: &Mutex<Observed>) {
    let mut observed = observed.lock().unwrap();
    if ctx.is_stopped() {
        observed.saw_removed += 1;
    } else {
        observed.violations.push(format!(
            "NoRunningUnregistered violated: the {task} of {} runs after it saw its row \
             removed, and its stop signal is not raised",
            ctx.id()
        ));
    }
}

enum Woken {
    Stop,
    Peer,
}

/// Waits for the stop signal or the peer's close, whichever comes first.
async fn stop_or_peer(ctx: &HaTaskContext, peer: &StopSignal) -> Woken {
    let (mut stopped, mut closed) = (ctx.stopped(), peer.stopped());
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
async fn reader(
    ctx: HaTaskContext,
    peer: StopSignal,
    observed: Arc<Mutex<Observed>>,
) -> CloseReason {
    for offset in 1..=STEPS {
        if peer.is_stopped() {
            return CloseReason::PeerClosed;
        }
        if ctx.is_stopped() {
            return CloseReason::Shutdown;
        }
        if !ctx.record_ack(offset) {
            saw_row_removed(&ctx, "reader", &observed);
        }
        yield_now().await;
    }
    match stop_or_peer(&ctx, &peer).await {
        Woken::Stop => CloseReason::Shutdown,
        Woken::Peer => CloseReason::PeerClosed,
    }
}

/// The writer: reads the table a few times, then waits; ends on its stop signal, or on the
/// peer's close (a write to a closed socket fails), checking its row once more when it wakes.
async fn writer(
    ctx: HaTaskContext,
    registry: Arc<HaRegistry>,
    peer: StopSignal,
    observed: Arc<Mutex<Observed>>,
) -> CloseReason {
    let row_gone = |ctx: &HaTaskContext| !registry.entries().iter().any(|e| e.id == ctx.id());
    for _ in 0..STEPS {
        if ctx.is_stopped() {
            return CloseReason::Shutdown;
        }
        if row_gone(&ctx) {
            saw_row_removed(&ctx, "writer", &observed);
        }
        yield_now().await;
    }
    match stop_or_peer(&ctx, &peer).await {
        Woken::Stop => CloseReason::Shutdown,
        Woken::Peer => {
            if row_gone(&ctx) {
                saw_row_removed(&ctx, "writer", &observed);
            }
            CloseReason::Io("broken pipe".into())
        }
    }
}

/// The accept thread: takes every peer's socket in order, as the accept loop does, and publishes
/// the index of each started connection's reader task (for the crashing peer).
fn accept_all(
    acceptor: &Acceptor,
    spawner: &ShuttleSpawner,
    registry: &Arc<HaRegistry>,
    sockets: &[StopSignal],
    readers: &Mutex<Vec<Option<usize>>>,
    observed: &Arc<Mutex<Observed>>,
) -> Vec<Result<ConnId, HaRegisterError>> {
    let mut out = Vec::new();
    for (i, socket) in sockets.iter().enumerate() {
        let first_task = spawner.spawned();
        let (observed, registry) = (observed.clone(), registry.clone());
        let accepted = acceptor.accept(
            Socket(socket.clone()),
            format!("peer-{i}"),
            move |Socket(peer), rctx, wctx| {
                let r = reader(rctx, peer.clone(), observed.clone());
                let w = writer(wctx, registry, peer, observed);
                (r, w)
            },
        );
        // The reader is the first of the two tasks this accept spawned, if it spawned any.
        let started = spawner.spawned() > first_task;
        readers.lock().unwrap()[i] = started.then_some(first_task);
        out.push(accepted);
    }
    out
}

/// The peers: probes close at once; a crashing peer's reader is dropped mid-flight once it
/// exists; slaves close after a few scheduling points, or in a shutdown run maybe never.
fn peers(
    plan: Plan,
    sockets: &[StopSignal],
    spawner: &ShuttleSpawner,
    readers: &Mutex<Vec<Option<usize>>>,
    accepted: &Mutex<bool>,
) {
    let mut rng = thread_rng();
    for (kind, socket) in plan.peers.iter().zip(sockets) {
        if *kind == Peer::Probe {
            socket.stop();
        }
    }
    for (i, (kind, socket)) in plan.peers.iter().zip(sockets).enumerate() {
        if *kind == Peer::Crash {
            // Wait until the accept thread is done with this connection.
            loop {
                let published = readers.lock().unwrap()[i];
                if let Some(task) = published {
                    for _ in 0..rng.gen_range(0..3) {
                        thread::yield_now();
                    }
                    spawner.abort(task);
                    break;
                }
                if *accepted.lock().unwrap() {
                    break; // refused (shutdown): nothing to crash
                }
                thread::yield_now();
            }
        }
        if *kind != Peer::Probe {
            for _ in 0..rng.gen_range(0..3) {
                thread::yield_now();
            }
            if !plan.shutdown || rng.gen_bool(0.5) {
                socket.stop();
            }
        }
    }
}

/// What a run leaves for the checks.
struct Run {
    gauge: TaskGauge,
    registry: Arc<HaRegistry>,
    acceptor: Arc<Acceptor>,
    accepted: Vec<Result<ConnId, HaRegisterError>>,
    /// Violations seen during the run (by the tasks, and right after a shutdown).
    violations: Vec<String>,
    /// How often a running task saw its row removed.
    saw_removed: usize,
}

/// One run: the accept thread, the peers, and (if planned) a shutdown, all racing, until every
/// thread and task ended.
fn run(plan: Plan, faults: AcceptorFaults, table_faults: HaFaults) -> Run {
    {
        let gauge = TaskGauge::new();
        let spawner = ShuttleSpawner::default();
        let registry = Arc::new(HaRegistry::with_faults(usize::MAX, table_faults));
        let acceptor = Arc::new(HaAcceptor::with_faults(
            registry.clone(),
            Counted::new(spawner.clone(), gauge.clone()),
            faults,
        ));
        let sockets: Vec<StopSignal> = plan.peers.iter().map(|_| StopSignal::new()).collect();
        let readers = Arc::new(Mutex::new(vec![None; plan.peers.len()]));
        let accepted_all = Arc::new(Mutex::new(false));
        let observed = Arc::new(Mutex::new(Observed::default()));

        let accept = {
            let (acceptor, spawner, registry, sockets, readers, observed, done) = (
                acceptor.clone(),
                spawner.clone(),
                registry.clone(),
                sockets.clone(),
                readers.clone(),
                observed.clone(),
                accepted_all.clone(),
            );
            thread::spawn(move || {
                let out = accept_all(
                    &acceptor, &spawner, &registry, &sockets, &readers, &observed,
                );
                *done.lock().unwrap() = true;
                out
            })
        };
        let peer_thread = {
            let (sockets, spawner, readers, done) = (
                sockets.clone(),
                spawner.clone(),
                readers.clone(),
                accepted_all.clone(),
            );
            thread::spawn(move || peers(plan, &sockets, &spawner, &readers, &done))
        };
        let shutdown = plan.shutdown.then(|| {
            let (acceptor, registry) = (acceptor.clone(), registry.clone());
            thread::spawn(move || {
                for _ in 0..thread_rng().gen_range(0..=plan.shutdown_delay) {
                    thread::yield_now();
                }
                acceptor.shutdown();
                ha::after_close_all(&registry)
            })
        });
        let accepted = accept.join().unwrap();
        peer_thread.join().unwrap();
        let mut violations = shutdown.map(|t| t.join().unwrap()).unwrap_or_default();
        spawner.join_all();
        let mut observed = std::mem::take(&mut *observed.lock().unwrap());
        violations.append(&mut observed.violations);
        Run {
            gauge,
            registry,
            acceptor,
            accepted,
            violations,
            saw_removed: observed.saw_removed,
        }
    }
}

/// One run (see [`run`]), then the checks described at the top.
fn scenario(
    plan: Plan,
    faults: AcceptorFaults,
    table_faults: HaFaults,
    coverage: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> impl Fn() + Clone + Send + Sync {
    move || {
        let Run {
            gauge,
            registry,
            acceptor,
            accepted,
            mut violations,
            saw_removed,
        } = run(plan, faults, table_faults);
        // Quiescence: every peer closed or shut down, every task ended.
        coverage.fetch_add(saw_removed, std::sync::atomic::Ordering::Relaxed);
        let (held, in_total, out_total) = (
            acceptor.open(),
            acceptor.accepted_total(),
            acceptor.closed_total(),
        );
        if held != 0 {
            violations.push(format!(
                "NoLeakAtQuiescence violated: every task ended, but the acceptor still holds \
                 {held} connection(s)"
            ));
        }
        if in_total.checked_sub(out_total) != Some(held as u64) {
            violations.push(format!(
                "CountIsTable violated: the acceptor counts {in_total} accepted - {out_total} \
                 closed, but holds {held}"
            ));
        }
        let expect = HaExpect {
            tasks_alive: Some(gauge.alive()),
            observed: violations,
            ..HaExpect::default()
        };
        ha::check(&registry, &expect);
        for a in &accepted {
            if let Err(error) = a {
                assert!(plan.shutdown, "refused without a shutdown: {error}");
                assert_eq!(*error, HaRegisterError::ShuttingDown);
            }
        }
        assert_eq!(registry.is_closed(), plan.shutdown);
    }
}

/// Explores the shipped acceptor under `plan`, then shows that tasks did see their rows removed.
fn check_lifecycle(test: &str, sched: Sched, plan: Plan) {
    let coverage = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let f = scenario(
        plan,
        AcceptorFaults::default(),
        HaFaults::default(),
        coverage.clone(),
    );
    check(test, sched, f);
    let seen = coverage.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "shuttle {test}: a running task saw its row removed {seen} times, stop raised each time"
    );
    if runner::replay_request(test).is_none() {
        assert!(seen > 0, "{test}: no task ever saw its row removed");
    }
}

fn finds(test: &str, plan: Plan, invariant: &str, faults: AcceptorFaults, table: HaFaults) {
    check_finds(
        test,
        Sched::Random,
        invariant,
        scenario(plan, faults, table, Default::default()),
    );
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
fn shuttle_ha_shutdown_random() {
    check_lifecycle("shuttle_ha_shutdown_random", Sched::Random, SHUTDOWN);
}

#[test]
fn shuttle_ha_shutdown_pct() {
    check_lifecycle("shuttle_ha_shutdown_pct", Sched::Pct, SHUTDOWN);
}

#[test]
fn shuttle_ha_probe_storm_finds_upstream_514_order() {
    finds(
        "shuttle_ha_probe_storm_finds_upstream_514_order",
        PROBE_STORM,
        "NoRunningUnregistered",
        AcceptorFaults {
            upstream_514_order: true,
            ..AcceptorFaults::default()
        },
        HaFaults::default(),
    );
}

#[test]
fn shuttle_ha_probe_storm_finds_lost_reap_on_panic() {
    finds(
        "shuttle_ha_probe_storm_finds_lost_reap_on_panic",
        PROBE_STORM,
        "NoLeakAtQuiescence",
        AcceptorFaults {
            lost_reap_on_panic: true,
            ..AcceptorFaults::default()
        },
        HaFaults::default(),
    );
}

#[test]
fn shuttle_ha_probe_storm_finds_remove_without_stop() {
    finds(
        "shuttle_ha_probe_storm_finds_remove_without_stop",
        PROBE_STORM,
        "NoRunningUnregistered",
        AcceptorFaults::default(),
        HaFaults {
            remove_without_stop: true,
            ..HaFaults::default()
        },
    );
}

#[test]
fn shuttle_ha_shutdown_finds_store_after_shutdown() {
    finds(
        "shuttle_ha_shutdown_finds_store_after_shutdown",
        SHUTDOWN,
        "CountIsTable",
        AcceptorFaults {
            store_after_shutdown: true,
            ..AcceptorFaults::default()
        },
        HaFaults::default(),
    );
}

// ------------------------------------------------------------------------------------------------
// Model traces (models/README.md, "Trace validation"): the shipped acceptor's `HaConnection.tla`
// events under shuttle's schedules, for `.ci/traces.sh`.

/// Explores `plan` with shuttle's random scheduler and writes the model traces of up to `want`
/// schedules that `keep` selects to `target/model-traces/ha/<sub>/`; returns how many were
/// written.
fn record_ha_traces(
    sub: &str,
    plan: Plan,
    faults: AcceptorFaults,
    table_faults: HaFaults,
    want: usize,
    keep: fn(&[serde_json::Value]) -> bool,
) -> usize {
    // HA_MODEL_TRACES=n keeps up to n traces per set (a soak: with SHUTTLE_ITERATIONS).
    let want = std::env::var("HA_MODEL_TRACES").map_or(want, |v| v.parse().unwrap());
    let dir = model_trace::dir(&format!("ha/{sub}"));
    let program = move || drop(run(plan, faults, table_faults));
    runner::record_traces(&dir, model_trace::Recorder::ha(), program, 500, want, keep)
}

fn action(line: &serde_json::Value) -> &str {
    line["action"].as_str().unwrap_or_default()
}

/// Shutdown took a stored handle from the slots.
fn drain_took(lines: &[serde_json::Value]) -> bool {
    lines
        .iter()
        .any(|l| action(l) == "Drain" && l["taken"].as_array().is_some_and(|t| !t.is_empty()))
}

/// A row was removed without its stop signal raised (the fault `remove_without_stop` showed).
fn removed_without_stop(lines: &[serde_json::Value]) -> bool {
    lines
        .iter()
        .any(|l| l["removed"] == true && l["stopped"] == false)
}

/// A handle was stored after shutdown drained the slots (the fault `store_after_shutdown`).
fn stored_after_drain(lines: &[serde_json::Value]) -> bool {
    let drain = lines.iter().position(|l| action(l) == "Drain");
    drain.is_some_and(|d| {
        lines[d..]
            .iter()
            .any(|l| action(l) == "Store" && l["held"] == true)
    })
}

/// A connection's slot was opened and never reaped (the fault `lost_reap_on_panic`).
fn slot_never_reaped(lines: &[serde_json::Value]) -> bool {
    let of = |a: &str| -> std::collections::BTreeSet<u64> {
        lines
            .iter()
            .filter(|l| action(l) == a && (a != "Begin" || l["open"] == true))
            .filter_map(|l| l["c"].as_u64())
            .collect()
    };
    of("Begin") != of("Reap")
}

/// Model traces of the shipped HA acceptor under shuttle's schedules: the probe storm and the
/// shutdown race (which `HaConnection.tla` must accept), and the planted faults where they show
/// (which it must reject): RocketMQ 5.1.4's order (`upstream_514_order`), a removal without
/// stop (`remove_without_stop`), a handle stored after shutdown (`store_after_shutdown`) and a
/// reap lost to an unwinding task (`lost_reap_on_panic`).
#[test]
fn shuttle_ha_model_traces() {
    let none = AcceptorFaults::default();
    let table = HaFaults::default();
    let storm = record_ha_traces("ok-storm", PROBE_STORM, none, table, 30, |_| true);
    let shutdown = record_ha_traces("ok-shutdown", SHUTDOWN, none, table, 20, |_| true);
    // Shutdown taking stored handles and closing them (most schedules shut down first).
    let taken = record_ha_traces(
        "ok-shutdown-taken",
        SHUTDOWN_LATE,
        none,
        table,
        20,
        drain_took,
    );
    assert!(
        storm >= 10 && shutdown >= 10 && taken >= 5,
        "only {storm} + {shutdown} + {taken} distinct traces"
    );
    let order = AcceptorFaults {
        upstream_514_order: true,
        ..none
    };
    assert!(record_ha_traces("fault-514", PROBE_STORM, order, table, 5, |_| true) > 0);
    let nostop = HaFaults {
        remove_without_stop: true,
        ..table
    };
    let nostop = record_ha_traces(
        "fault-nostop",
        PROBE_STORM,
        none,
        nostop,
        5,
        removed_without_stop,
    );
    assert!(nostop > 0);
    let late = AcceptorFaults {
        store_after_shutdown: true,
        ..none
    };
    assert!(
        record_ha_traces(
            "fault-late-store",
            SHUTDOWN,
            late,
            table,
            5,
            stored_after_drain
        ) > 0
    );
    let lost = AcceptorFaults {
        lost_reap_on_panic: true,
        ..none
    };
    assert!(
        record_ha_traces(
            "fault-lost-reap",
            PROBE_STORM,
            lost,
            table,
            5,
            slot_never_reaped
        ) > 0
    );
}
