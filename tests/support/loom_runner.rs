//! The loom runner shared by `tests/loom.rs` and `tests/loom_ha.rs`: explore a model up to a
//! preemption bound and report the executions, or require a planted defect to be found.
//!
//! Included with `#[path = "support/loom_runner.rs"] mod runner;` beside `mod support;`.

#![allow(dead_code)]

use crate::support::panic_message;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The preemption bound of the three-thread models when `LOOM_MAX_PREEMPTIONS` is unset (bound
/// 3: ~4k executions, under a second each; bound 4: ~20k, ~4 s; bound 6: ~300k, ~45 s). The
/// two-thread models are small enough to explore without a bound.
pub(crate) const THREE_THREAD_PREEMPTIONS: Option<usize> = Some(3);
/// No bound: every interleaving.
pub(crate) const EXHAUSTIVE: Option<usize> = None;

/// The bound of the models that run a connection's two tasks beside a third thread, whatever
/// `LOOM_MAX_PREEMPTIONS` says: every await and lock of the tasks is a branch point, and bound 2
/// is ~31k executions (about a minute on a shared 2-core machine), bound 3 ten times that.
pub(crate) const TASK_MODEL_PREEMPTIONS: Bound = Bound::Fixed(2);

/// A model's preemption bound.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Bound {
    /// `LOOM_MAX_PREEMPTIONS` if set, else this (`None`: every interleaving).
    Default(Option<usize>),
    /// This, whatever the environment says.
    Fixed(usize),
}

impl From<Option<usize>> for Bound {
    fn from(bound: Option<usize>) -> Self {
        Bound::Default(bound)
    }
}

/// Explores `f` with loom, with `LOOM_MAX_PREEMPTIONS` if set and `bound` otherwise (unless the
/// bound is fixed), and reports how many executions it took.
pub(crate) fn model(name: &str, bound: impl Into<Bound>, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    match bound.into() {
        Bound::Fixed(n) => builder.preemption_bound = Some(n),
        Bound::Default(bound) => {
            if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
                builder.preemption_bound = bound;
            }
        }
    }
    // A std atomic: it counts executions from outside the model and is not itself modelled.
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let start = Instant::now();
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    eprintln!(
        "loom {name}: {} executions, preemption bound {:?}, {:.2?}",
        runs.load(Ordering::Relaxed),
        builder.preemption_bound,
        start.elapsed()
    );
}

/// Runs a model of a broken variant and asserts that loom finds a violation of `invariant`.
pub(crate) fn model_finds(
    name: &str,
    bound: impl Into<Bound>,
    invariant: &str,
    f: impl Fn() + Sync + Send + 'static,
) {
    let payload = match catch_unwind(AssertUnwindSafe(|| model(name, bound, f))) {
        Ok(()) => panic!("{name}: loom explored every execution and found no violation"),
        Err(payload) => payload,
    };
    let msg = panic_message(&*payload);
    let expected = format!("{invariant} violated");
    assert!(
        msg.contains(&expected),
        "{name}: the model failed, but not with {invariant}: {msg}"
    );
    let line = msg.lines().find(|l| l.contains(&expected)).unwrap_or(&msg);
    eprintln!("loom {name}: found as expected: {}", line.trim());
}
