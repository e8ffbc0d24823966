//! Loom models of `HaRegistry`: `register`, `deregister` and `close_all` racing each other, every
//! interleaving up to the preemption bound. Each model checks, at quiescence (see
//! `tests/support/ha.rs`):
//!
//! * `NoLeakAtQuiescence`: once `close_all` has run, the table is empty: a `register` racing it
//!   either fails with `ShuttingDown` or its row is in `close_all`'s list. Also checked right
//!   after `close_all` returns, in the closing thread (the table cannot change after it).
//! * `CountIsTable`: `count()` equals `entries().len()`, and registered - removed equals both.
//! * `RemovedOnce`: every row is removed by exactly one caller, counting a `deregister` that
//!   returned true and `close_all`'s list, and a row stays gone once a `deregister` of it
//!   returned (ids are never reused).
//!
//! * `loom_ha_register_vs_close_all`: a registration races the shutdown.
//! * `loom_ha_owner_vs_close_all`: an owner registers, then deregisters its row and another,
//!   racing the shutdown (the RAII guard's path).
//! * `loom_ha_deregisters_vs_close_all`: three threads remove the same rows.
//! * `loom_ha_registers_vs_close_all_at_cap`: two registrations race the shutdown with room for
//!   one (`TooManyConnections`).
//! * `*_finds_split_close_all`: the planted `HaFaults::split_close_all` (the table is emptied and
//!   closed in two critical sections) must fail with `NoLeakAtQuiescence`.
//!
//! Run (release, own target dir; `--nocapture` prints the executions explored per model):
//!
//! ```text
//! CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg rmq_loom" LOOM_MAX_PREEMPTIONS=3 \
//!     cargo test --release --no-default-features --test loom_ha -- --nocapture
//! ```
//!
//! Without `LOOM_MAX_PREEMPTIONS` the two-thread models are exhaustive and the three-thread ones
//! use bound 3. Loom is exhaustive, so a failure reproduces on every run; to see the failing
//! interleaving, rerun the one test with `LOOM_LOG=trace LOOM_LOCATION=1 ... -- <test> --exact`.

#![cfg(rmq_loom)]

#[path = "support/ha.rs"]
mod ha;
#[path = "support/loom_runner.rs"]
mod runner;
mod support;

use ha::{HaExpect, times};
use loom::sync::Arc;
use loom::thread;
use rmq_lifecycle::registry::ha::HaFaults;
use rmq_lifecycle::registry::{ConnId, HaRegisterError, HaRegistry};
use runner::{EXHAUSTIVE, THREE_THREAD_PREEMPTIONS, model, model_finds};

const SPLIT: HaFaults = HaFaults {
    split_close_all: true,
};

fn registry(max: usize, faults: HaFaults) -> Arc<HaRegistry> {
    Arc::new(HaRegistry::with_faults(max, faults))
}

/// What the closing thread saw: `close_all`'s list, the table right after it, and a later
/// registration's result.
struct Shutdown {
    removed: Vec<ConnId>,
    after: Vec<String>,
    late: Result<ConnId, HaRegisterError>,
}

fn shutdown(reg: &HaRegistry) -> Shutdown {
    let removed = reg.close_all();
    let after = ha::after_close_all(reg);
    let late = reg.register("late");
    Shutdown {
        removed,
        after,
        late,
    }
}

impl Shutdown {
    /// Whether `close_all` removed `id`.
    fn removed(&self, id: ConnId) -> bool {
        self.removed.contains(&id)
    }

    /// The violations it saw, plus a wrong answer to the late registration.
    fn observed(&self) -> Vec<String> {
        let mut out = self.after.clone();
        if self.late != Err(HaRegisterError::ShuttingDown) {
            out.push(format!(
                "NoLeakAtQuiescence violated: a register after close_all returned {:?}",
                self.late
            ));
        }
        out
    }
}

/// A registration that lost to the shutdown must say so.
fn refused_for_shutdown(r: &Result<ConnId, HaRegisterError>) -> Option<String> {
    match r {
        Ok(_) | Err(HaRegisterError::ShuttingDown) => None,
        Err(e) => Some(format!("register refused for the wrong reason: {e}")),
    }
}

/// P is registered; A registers while the master shuts down. A is either refused with
/// `ShuttingDown` or in `close_all`'s list; nothing is left.
fn register_vs_close_all(faults: HaFaults) -> impl Fn() + Sync + Send + 'static {
    move || {
        let reg = registry(usize::MAX, faults);
        let p = reg.register("slave-p").unwrap();
        let accept = {
            let reg = reg.clone();
            thread::spawn(move || reg.register("probe-a"))
        };
        let closer = {
            let reg = reg.clone();
            thread::spawn(move || shutdown(&reg))
        };
        let a = accept.join().unwrap();
        let sd = closer.join().unwrap();

        let mut expect = HaExpect {
            observed: sd.observed(),
            removals: vec![(p, times([sd.removed(p)]))],
            ..HaExpect::default()
        };
        expect.observed.extend(refused_for_shutdown(&a));
        if let Ok(a) = a {
            expect.removals.push((a, times([sd.removed(a)])));
        }
        ha::check(&reg, &expect);
        assert_eq!(
            sd.removed.len(),
            1 + usize::from(a.is_ok()),
            "{:?}",
            sd.removed
        );
    }
}

/// P is registered; an owner registers A, then deregisters A and P (its guard's removal, and a
/// task's), while the master shuts down. Each row is removed once, by the owner or by
/// `close_all`; after a `deregister` returned, its row is gone for good.
fn owner_vs_close_all(faults: HaFaults) -> impl Fn() + Sync + Send + 'static {
    move || {
        let reg = registry(usize::MAX, faults);
        let p = reg.register("slave-p").unwrap();
        let owner = {
            let reg = reg.clone();
            thread::spawn(move || {
                let a = reg.register("slave-a");
                let removed_a = a.as_ref().ok().map(|a| reg.deregister(*a));
                let removed_p = reg.deregister(p);
                let p_back = reg.entries().iter().any(|e| e.id == p);
                (a, removed_a, removed_p, p_back)
            })
        };
        let closer = {
            let reg = reg.clone();
            thread::spawn(move || shutdown(&reg))
        };
        let (a, removed_a, removed_p, p_back) = owner.join().unwrap();
        let sd = closer.join().unwrap();

        let mut expect = HaExpect {
            observed: sd.observed(),
            removals: vec![(p, times([removed_p, sd.removed(p)]))],
            ..HaExpect::default()
        };
        expect.observed.extend(refused_for_shutdown(&a));
        if p_back {
            expect.observed.push(format!(
                "RemovedOnce violated: {p} was in the table after deregister({p}) returned"
            ));
        }
        if let (Ok(a), Some(removed_a)) = (a, removed_a) {
            expect.removals.push((a, times([removed_a, sd.removed(a)])));
        }
        ha::check(&reg, &expect);
    }
}

/// Three threads: P and Q are registered; two callers deregister P (one also Q) while the master
/// shuts down. Exactly one caller removes each.
fn deregisters_vs_close_all(faults: HaFaults) -> impl Fn() + Sync + Send + 'static {
    move || {
        let reg = registry(usize::MAX, faults);
        let p = reg.register("slave-p").unwrap();
        let q = reg.register("slave-q").unwrap();
        let reader = {
            let reg = reg.clone();
            thread::spawn(move || reg.deregister(p))
        };
        let writer = {
            let reg = reg.clone();
            thread::spawn(move || (reg.deregister(p), reg.deregister(q)))
        };
        let closer = {
            let reg = reg.clone();
            thread::spawn(move || shutdown(&reg))
        };
        let p1 = reader.join().unwrap();
        let (p2, q2) = writer.join().unwrap();
        let sd = closer.join().unwrap();

        let expect = HaExpect {
            observed: sd.observed(),
            removals: vec![
                (p, times([p1, p2, sd.removed(p)])),
                (q, times([q2, sd.removed(q)])),
            ],
            ..HaExpect::default()
        };
        ha::check(&reg, &expect);
    }
}

/// Three threads, a cap of 2 with P registered: A and B register while the master shuts down.
/// A registration refused for the cap saw the other one's row; every row that made it in is in
/// `close_all`'s list.
fn registers_vs_close_all_at_cap(faults: HaFaults) -> impl Fn() + Sync + Send + 'static {
    move || {
        let reg = registry(2, faults);
        let p = reg.register("slave-p").unwrap();
        let a = {
            let reg = reg.clone();
            thread::spawn(move || reg.register("slave-a"))
        };
        let b = {
            let reg = reg.clone();
            thread::spawn(move || reg.register("slave-b"))
        };
        let closer = {
            let reg = reg.clone();
            thread::spawn(move || shutdown(&reg))
        };
        let a = a.join().unwrap();
        let b = b.join().unwrap();
        let sd = closer.join().unwrap();

        let mut expect = HaExpect {
            observed: sd.observed(),
            removals: vec![(p, times([sd.removed(p)]))],
            ..HaExpect::default()
        };
        let full = Err(HaRegisterError::TooManyConnections { max: 2 });
        for (mine, other) in [(&a, &b), (&b, &a)] {
            match mine {
                Ok(id) => expect.removals.push((*id, times([sd.removed(*id)]))),
                Err(HaRegisterError::ShuttingDown) => {}
                Err(HaRegisterError::TooManyConnections { .. }) if other.is_ok() => {}
                Err(e) => expect.observed.push(format!(
                    "CountIsTable violated: register refused with {e}, but the table held only \
                     P (the other registration: {other:?})"
                )),
            }
        }
        ha::check(&reg, &expect);
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
fn loom_ha_deregisters_vs_close_all() {
    model(
        "deregisters_vs_close_all",
        THREE_THREAD_PREEMPTIONS,
        deregisters_vs_close_all(HaFaults::default()),
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
