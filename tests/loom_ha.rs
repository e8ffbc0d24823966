//! Loom models of the HA table through the shipped lifecycle: `HaConnection` handles
//! registering and closing, their tasks ending, and `HaAcceptor::shutdown` (which ends in
//! `HaRegistry::close_all`) racing each other, every interleaving up to the preemption bound.
//! Each model checks, at quiescence (see `tests/support/ha.rs`):
//!
//! * `NoLeakAtQuiescence`: once shutdown has run, the table is empty: a registration racing it
//!   either fails with `ShuttingDown` or its row is removed by it. Also checked right after the
//!   shutdown returns, in the closing thread (the table cannot change after it).
//! * `CountIsTable`: `count()` equals `entries().len()`, and registered - removed equals both.
//! * `RemovedOnce`: every row is removed once: a handle's close that removed it
//!   (`removed_row()`) and the shutdown's removals add up to the rows registered, and a row stays
//!   gone once a close returned.
//! * `StopBeforeRemove`: a connection's task that finds its row gone finds its stop signal
//!   raised, whichever path (the other task's end, the owner's close, shutdown) removed it.
//!
//! * `loom_ha_register_vs_close_all`: a registration races the shutdown.
//! * `loom_ha_owner_vs_close_all`: an owner registers A, then closes A and P, racing the
//!   shutdown (the RAII guard's path).
//! * `loom_ha_tasks_vs_close_all`: a running connection's reader ends while its writer watches
//!   its row, racing the shutdown.
//! * `loom_ha_registers_vs_close_all_at_cap`: two registrations race the shutdown with room for
//!   one (`TooManyConnections`).
//! * `*_finds_*`: planted defects (feature `harness`): `HaFaults::split_close_all` (the table is
//!   emptied and closed in two critical sections) must fail with `NoLeakAtQuiescence`, and
//!   `HaFaults::remove_without_stop` with `StopBeforeRemove`.
//!
//! Run (own target dir; `--nocapture` prints the executions explored per model):
//!
//! ```text
//! CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg rmq_loom" LOOM_MAX_PREEMPTIONS=3 \
//!     cargo test --no-default-features --features harness --test loom_ha -- --nocapture
//! ```
//!
//! Loom is exhaustive, so a failure reproduces on every run; to see the failing interleaving,
//! rerun the one test with `LOOM_LOG=trace LOOM_LOCATION=1 ... -- <test> --exact`.

#![cfg(rmq_loom)]

#[path = "support/ha.rs"]
mod ha;
#[path = "support/loom_runner.rs"]
mod runner;
mod support;

use ha::HaExpect;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use rmq_lifecycle::lifecycle::{
    BoxTask, CloseReason, HaAcceptor, HaConnection, HaTaskContext, Spawn, TaskHandle,
};
use rmq_lifecycle::phase::Registered;
use rmq_lifecycle::registry::{ConnId, HaFaults, HaRegisterError, HaRegistry};
use runner::{EXHAUSTIVE, TASK_MODEL_PREEMPTIONS, THREE_THREAD_PREEMPTIONS, model, model_finds};
use std::sync::Mutex;

const SPLIT: HaFaults = HaFaults {
    split_close_all: true,
    remove_without_stop: false,
};
const NO_STOP: HaFaults = HaFaults {
    split_close_all: false,
    remove_without_stop: true,
};

fn registry(max: usize, faults: HaFaults) -> Arc<HaRegistry> {
    Arc::new(HaRegistry::with_faults(max, faults))
}

/// Runs each task on its own loom thread; the model joins them before its checks.
#[derive(Clone, Default)]
struct LoomSpawner(std::sync::Arc<Mutex<Vec<thread::JoinHandle<()>>>>);

struct Finished(Arc<AtomicBool>);

impl TaskHandle for Finished {
    fn abort(&self) {}
    fn is_finished(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl Spawn for LoomSpawner {
    fn spawn(&self, task: BoxTask) -> Box<dyn TaskHandle> {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let join = thread::spawn(move || {
            loom::future::block_on(task);
            flag.store(true, Ordering::Release);
        });
        self.0.lock().unwrap().push(join);
        Box::new(Finished(done))
    }
}

impl LoomSpawner {
    fn join_all(&self) {
        let joins = std::mem::take(&mut *self.0.lock().unwrap());
        for join in joins {
            join.join().unwrap();
        }
    }
}

/// A spawner for acceptors that only shut down here.
struct NoTasks;

impl Spawn for NoTasks {
    fn spawn(&self, _task: BoxTask) -> Box<dyn TaskHandle> {
        unreachable!("these models start no task through the acceptor")
    }
}

fn open(
    reg: &Arc<HaRegistry>,
    peer: &str,
) -> Result<HaConnection<Registered, ()>, HaRegisterError> {
    HaConnection::new((), peer)
        .register(reg)
        .map_err(|e| e.error)
}

/// The master's shutdown (`HaAcceptor::shutdown`, whose last step is `close_all`), and what the
/// closing thread saw right after it, including a later registration's result.
fn shutdown(reg: &Arc<HaRegistry>) -> Vec<String> {
    HaAcceptor::<(), _>::new(reg.clone(), NoTasks).shutdown();
    let mut out = ha::after_close_all(reg);
    let late = open(reg, "late").map(|c| c.id());
    if late != Err(HaRegisterError::ShuttingDown) {
        out.push(format!(
            "NoLeakAtQuiescence violated: a register after close_all returned {late:?}"
        ));
    }
    out
}

/// A registration that lost to the shutdown must say so.
fn refused_for_shutdown<T>(r: &Result<T, HaRegisterError>) -> Option<String> {
    match r {
        Ok(_) | Err(HaRegisterError::ShuttingDown) => None,
        Err(e) => Some(format!("register refused for the wrong reason: {e}")),
    }
}

/// `RemovedOnce`: the handles' own removals plus the shutdown's are the rows registered.
fn removed_once(reg: &HaRegistry, by_handles: usize, out: &mut Vec<String>) {
    let (accepted, closed) = (reg.accepted_total(), reg.closed_total());
    if closed != accepted || (by_handles as u64) > closed {
        out.push(format!(
            "RemovedOnce violated: {accepted} rows registered, {closed} removals, {by_handles} \
             of them by their handles"
        ));
    }
}

/// P is registered; A registers while the master shuts down. A is either refused with
/// `ShuttingDown` or removed by the shutdown; nothing is left, and the handles' later closes
/// remove nothing.
fn register_vs_close_all(faults: HaFaults) -> impl Fn() + Sync + Send + 'static {
    move || {
        let reg = registry(usize::MAX, faults);
        let p = open(&reg, "slave-p").unwrap();
        let accept = {
            let reg = reg.clone();
            thread::spawn(move || open(&reg, "probe-a"))
        };
        let closer = {
            let reg = reg.clone();
            thread::spawn(move || shutdown(&reg))
        };
        let a = accept.join().unwrap();
        let mut observed = closer.join().unwrap();
        observed.extend(refused_for_shutdown(&a));
        let mut by_handles = usize::from(p.close(CloseReason::Local).removed_row());
        if let Ok(a) = a {
            by_handles += usize::from(a.close(CloseReason::Local).removed_row());
        }
        removed_once(&reg, by_handles, &mut observed);
        if by_handles != 0 {
            observed.push(format!(
                "NoLeakAtQuiescence violated: {by_handles} row(s) survived the shutdown until \
                 their handles closed them"
            ));
        }
        ha::check(
            &reg,
            &HaExpect {
                observed,
                ..HaExpect::default()
            },
        );
    }
}

/// P is registered; an owner registers A, then closes A and P (the RAII guard's path), while
/// the master shuts down. Each row is removed once, by its handle or by the shutdown; after a
/// close returned, its row is gone for good.
fn owner_vs_close_all(faults: HaFaults) -> impl Fn() + Sync + Send + 'static {
    move || {
        let reg = registry(usize::MAX, faults);
        let p = open(&reg, "slave-p").unwrap();
        let p_id = p.id();
        let owner = {
            let reg = reg.clone();
            thread::spawn(move || {
                let a = open(&reg, "slave-a");
                let refused = refused_for_shutdown(&a);
                let removed_a = a.map_or(false, |a| a.close(CloseReason::Local).removed_row());
                let removed_p = p.close(CloseReason::Local).removed_row();
                let p_back = reg.entries().iter().any(|e| e.id == p_id);
                (
                    refused,
                    usize::from(removed_a) + usize::from(removed_p),
                    p_back,
                )
            })
        };
        let closer = {
            let reg = reg.clone();
            thread::spawn(move || shutdown(&reg))
        };
        let (refused, by_handles, p_back) = owner.join().unwrap();
        let mut observed = closer.join().unwrap();
        observed.extend(refused);
        if p_back {
            observed.push(format!(
                "RemovedOnce violated: {p_id} was in the table after its close returned"
            ));
        }
        removed_once(&reg, by_handles, &mut observed);
        ha::check(
            &reg,
            &HaExpect {
                observed,
                ..HaExpect::default()
            },
        );
    }
}

/// P runs: its reader ends at once (a probe), its writer checks its row once, then waits for its
/// stop signal; the master (the main thread) shuts down meanwhile. Whoever removes P's row (the
/// reader's end or the shutdown) raises P's stop signal first, so the writer never sees its row
/// gone while not told to stop, and it always ends.
fn tasks_vs_close_all(faults: HaFaults) -> impl Fn() + Sync + Send + 'static {
    move || {
        let reg = registry(usize::MAX, faults);
        let spawner = LoomSpawner::default();
        let seen: Arc<loom::sync::Mutex<Vec<String>>> = Arc::default();
        let p = open(&reg, "slave-p").unwrap();
        let (reg2, seen2) = (reg.clone(), seen.clone());
        let running = p.spawn(&spawner, move |(), _reader: HaTaskContext, writer| {
            let reader = async { CloseReason::PeerClosed };
            let writer = async move {
                let row = reg2.entries().iter().any(|e| e.id == writer.id());
                if !row && !writer.is_stopped() {
                    seen2.lock().unwrap().push(format!(
                        "StopBeforeRemove violated: the writer of {} saw its row gone, its stop \
                         signal not raised",
                        writer.id()
                    ));
                    // Under the fault nothing would ever stop it: end the model's task.
                    return CloseReason::Local;
                }
                writer.stopped().await;
                CloseReason::Shutdown
            };
            (reader, writer)
        });
        HaAcceptor::<(), _>::new(reg.clone(), NoTasks).shutdown();
        let mut observed = ha::after_close_all(&reg);
        // The owner lets go too (as the acceptor's reap does), then the tasks are joined.
        let by_handle = usize::from(running.close(CloseReason::Local).removed_row());
        spawner.join_all();
        observed.extend(seen.lock().unwrap().drain(..));
        removed_once(&reg, by_handle, &mut observed);
        ha::check(
            &reg,
            &HaExpect {
                observed,
                ..HaExpect::default()
            },
        );
    }
}

/// Three threads, a cap of 2 with P registered: A and B register while the master shuts down.
/// A registration refused for the cap saw the other one's row; every row that made it in is
/// removed by the shutdown.
fn registers_vs_close_all_at_cap(faults: HaFaults) -> impl Fn() + Sync + Send + 'static {
    move || {
        let reg = registry(2, faults);
        let p = open(&reg, "slave-p").unwrap();
        let a = {
            let reg = reg.clone();
            thread::spawn(move || open(&reg, "slave-a"))
        };
        let b = {
            let reg = reg.clone();
            thread::spawn(move || open(&reg, "slave-b"))
        };
        let closer = {
            let reg = reg.clone();
            thread::spawn(move || shutdown(&reg))
        };
        let a: Result<ConnId, _> = a.join().unwrap().map(|c| c.id());
        let b: Result<ConnId, _> = b.join().unwrap().map(|c| c.id());
        let mut observed = closer.join().unwrap();
        for (mine, other) in [(&a, &b), (&b, &a)] {
            match mine {
                Ok(_) | Err(HaRegisterError::ShuttingDown) => {}
                Err(HaRegisterError::TooManyConnections { .. }) if other.is_ok() => {}
                Err(e) => observed.push(format!(
                    "CountIsTable violated: register refused with {e}, but the table held only \
                     P (the other registration: {other:?})"
                )),
            }
        }
        drop(p);
        ha::check(
            &reg,
            &HaExpect {
                observed,
                ..HaExpect::default()
            },
        );
        let full = Err(HaRegisterError::TooManyConnections { max: 2 });
        assert!(
            !(a == full && b == full),
            "at most one registration hits the cap"
        );
    }
}

#[test]
fn loom_ha_register_vs_close_all() {
    model(
        "register_vs_close_all",
        EXHAUSTIVE,
        register_vs_close_all(HaFaults::default()),
    );
}

#[test]
fn loom_ha_register_vs_close_all_finds_split_close_all() {
    model_finds(
        "register_vs_close_all/split_close_all",
        EXHAUSTIVE,
        "NoLeakAtQuiescence",
        register_vs_close_all(SPLIT),
    );
}

#[test]
fn loom_ha_owner_vs_close_all() {
    model(
        "owner_vs_close_all",
        EXHAUSTIVE,
        owner_vs_close_all(HaFaults::default()),
    );
}

#[test]
fn loom_ha_tasks_vs_close_all() {
    model(
        "tasks_vs_close_all",
        TASK_MODEL_PREEMPTIONS,
        tasks_vs_close_all(HaFaults::default()),
    );
}

#[test]
fn loom_ha_tasks_vs_close_all_finds_remove_without_stop() {
    model_finds(
        "tasks_vs_close_all/remove_without_stop",
        TASK_MODEL_PREEMPTIONS,
        "StopBeforeRemove",
        tasks_vs_close_all(NO_STOP),
    );
}

#[test]
fn loom_ha_registers_vs_close_all_at_cap() {
    model(
        "registers_vs_close_all_at_cap",
        THREE_THREAD_PREEMPTIONS,
        registers_vs_close_all_at_cap(HaFaults::default()),
    );
}

#[test]
fn loom_ha_registers_vs_close_all_at_cap_finds_split_close_all() {
    model_finds(
        "registers_vs_close_all_at_cap/split_close_all",
        THREE_THREAD_PREEMPTIONS,
        "NoLeakAtQuiescence",
        registers_vs_close_all_at_cap(SPLIT),
    );
}
