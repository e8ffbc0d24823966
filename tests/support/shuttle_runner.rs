//! The shuttle runner shared by `tests/shuttle.rs` and `tests/shuttle_ha.rs`: explore a program
//! with the random or the PCT scheduler, replay a `SHUTTLE_REPLAY` schedule, require a planted
//! defect to be found and its failing schedule to fail the same way on replay, and a `Spawn`
//! implementation on shuttle's executor; and the recording of model traces under the random
//! scheduler.
//!
//! Included with `#[path = "support/shuttle_runner.rs"] mod runner;` beside `mod support;`.
//! One replay of a schedule suffices: the registry's hashers are fixed under shuttle
//! (`sync::HashState`), so a schedule determines the whole run.

#![allow(dead_code)]

use crate::support::panic_message;
use rmq_lifecycle::lifecycle::{BoxTask, Spawn, TaskHandle};
use shuttle::scheduler::{
    PctScheduler, RandomScheduler, ReplayScheduler, Schedule, Scheduler, Task, TaskId,
};
use shuttle::{FailurePersistence, Runner};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The PCT scheduler's bug depth.
const PCT_DEPTH: usize = 3;
/// The test binary, for the replay command a failure prints.
const BINARY: &str = env!("CARGO_CRATE_NAME");

#[derive(Debug, Clone, Copy)]
pub(crate) enum Sched {
    Random,
    Pct,
}

/// Schedules per exploration: `SHUTTLE_ITERATIONS`, default 2000.
fn iterations() -> usize {
    std::env::var("SHUTTLE_ITERATIONS")
        .map(|v| v.parse().expect("SHUTTLE_ITERATIONS is a number"))
        .unwrap_or(2_000)
}

/// The schedule `SHUTTLE_REPLAY` asks this test to replay, if any. Shuttle prints a schedule
/// wrapped over several lines between quotes; whitespace and quotes are ignored.
pub(crate) fn replay_request(test: &str) -> Option<String> {
    let value = std::env::var("SHUTTLE_REPLAY").ok()?;
    let schedule = match value.split_once(':') {
        Some((name, schedule)) if name.trim() == test => schedule,
        Some(_) => return None,
        None => &value,
    };
    Some(schedule.chars().filter(char::is_ascii_hexdigit).collect())
}

fn config() -> shuttle::Config {
    let mut config = shuttle::Config::new();
    config.stack_size = 0x4_0000;
    // Shuttle prints the failing schedule (its panic hook is process-wide, so per-test files
    // would not work); `explore` adds the replay command.
    config.failure_persistence = FailurePersistence::Print;
    config
}

/// Wraps a scheduler and keeps the schedule of the current execution, as shuttle records it, so
/// a broken-variant test can replay the failing schedule and check that it fails again.
#[derive(Debug)]
struct Recording<S> {
    inner: S,
    current: std::sync::Arc<std::sync::Mutex<Schedule>>,
}

impl<S: Scheduler> Scheduler for Recording<S> {
    fn new_execution(&mut self) -> Option<Schedule> {
        let schedule = self.inner.new_execution()?;
        *self.current.lock().unwrap() = schedule.clone();
        Some(schedule)
    }

    fn next_task(
        &mut self,
        runnable: &[&Task],
        current: Option<TaskId>,
        is_yielding: bool,
    ) -> Option<TaskId> {
        let next = self.inner.next_task(runnable, current, is_yielding)?;
        self.current.lock().unwrap().push_task(next);
        Some(next)
    }

    fn next_u64(&mut self) -> u64 {
        self.current.lock().unwrap().push_random();
        self.inner.next_u64()
    }
}

/// A failed exploration: the panic and the failing schedule (`None` when it was a replay).
struct Failure {
    payload: Box<dyn std::any::Any + Send>,
    schedule: Option<Schedule>,
}

/// Explores `f` with the scheduler (or replays `SHUTTLE_REPLAY`) and returns the schedules run.
fn explore<F>(test: &str, sched: Sched, f: F) -> Result<usize, Failure>
where
    F: Fn() + Send + Sync + 'static,
{
    if let Some(schedule) = replay_request(test) {
        eprintln!("shuttle {test}: replaying the SHUTTLE_REPLAY schedule");
        let runner = Runner::new(ReplayScheduler::new_from_encoded(&schedule), config());
        return match catch_unwind(AssertUnwindSafe(|| runner.run(f))) {
            Ok(runs) => Ok(runs),
            Err(payload) => Err(Failure {
                payload,
                schedule: None,
            }),
        };
    }
    let n = iterations();
    let current = std::sync::Arc::new(std::sync::Mutex::new(Schedule::new(0)));
    // Counts schedules from outside the model (a std atomic, not itself modelled).
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let f = {
        let runs = runs.clone();
        move || {
            runs.fetch_add(1, Ordering::Relaxed);
            f();
        }
    };
    let start = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let inner: Box<dyn Scheduler + Send> = match sched {
            Sched::Random => Box::new(RandomScheduler::new(n)),
            Sched::Pct => Box::new(PctScheduler::new(PCT_DEPTH, n)),
        };
        let recording = Recording {
            inner,
            current: current.clone(),
        };
        Runner::new(recording, config()).run(f)
    }));
    match result {
        Ok(runs) => {
            eprintln!(
                "shuttle {test}: {runs} {sched:?} schedules in {:.2?}",
                start.elapsed()
            );
            Ok(runs)
        }
        Err(payload) => {
            eprintln!(
                "shuttle {test}: failed at {sched:?} schedule {} after {:.2?}; replay the failing \
                 schedule printed above with\n  SHUTTLE_REPLAY='{test}:<schedule>' \
                 CARGO_TARGET_DIR=target/shuttle cargo test --release --no-default-features \
                 --features shuttle,harness --test {BINARY} -- {test} --exact --nocapture",
                runs.load(Ordering::Relaxed),
                start.elapsed()
            );
            let schedule = current.lock().unwrap().clone();
            Err(Failure {
                payload,
                schedule: Some(schedule),
            })
        }
    }
}

/// Explores a correct program: any failure fails the test (after printing how to replay it).
pub(crate) fn check<F>(test: &str, sched: Sched, f: F)
where
    F: Fn() + Send + Sync + 'static,
{
    if let Err(failure) = explore(test, sched, f) {
        resume_unwind(failure.payload);
    }
}

/// Explores a broken program: shuttle must find a violation of `invariant`, and replaying the
/// failing schedule must fail the same way.
pub(crate) fn check_finds<F>(test: &str, sched: Sched, invariant: &str, f: F)
where
    F: Fn() + Clone + Send + Sync + 'static,
{
    let expected = format!("{invariant} violated");
    let failure = match explore(test, sched, f.clone()) {
        Ok(runs) => panic!("{test}: {runs} schedules found no violation of {invariant}"),
        Err(failure) => failure,
    };
    let msg = panic_message(&*failure.payload);
    assert!(
        msg.contains(&expected),
        "{test}: failed, but not with {invariant}: {msg}"
    );
    let line = msg.lines().find(|l| l.contains(&expected)).unwrap_or(&msg);
    eprintln!("shuttle {test}: found as expected: {}", line.trim());
    let Some(schedule) = failure.schedule else {
        return;
    };
    let runner = Runner::new(ReplayScheduler::new_from_schedule(schedule), config());
    let again = match catch_unwind(AssertUnwindSafe(|| runner.run(f))) {
        Ok(_) => panic!("{test}: the failing schedule passed on replay"),
        Err(payload) => panic_message(&*payload),
    };
    assert!(
        again.contains(&expected),
        "{test}: the failing schedule failed differently on replay: {again}"
    );
    eprintln!("shuttle {test}: the failing schedule fails the same way on replay");
}

/// Spawns on shuttle's executor. Keeps each task's `JoinHandle` so the test can wait for every
/// task to be dropped (shuttle drops a task's future before it publishes the result).
#[derive(Clone, Default)]
pub(crate) struct ShuttleSpawner {
    joins: std::sync::Arc<std::sync::Mutex<Vec<shuttle::future::JoinHandle<()>>>>,
    aborts: std::sync::Arc<std::sync::Mutex<Vec<shuttle::future::AbortHandle>>>,
}

impl ShuttleSpawner {
    /// Tasks spawned so far.
    pub(crate) fn spawned(&self) -> usize {
        self.aborts.lock().unwrap().len()
    }

    /// Aborts the `i`-th task spawned: its future is dropped at its next await, mid-flight, as
    /// tokio drops a task's future when it catches the task's panic.
    pub(crate) fn abort(&self, i: usize) {
        // Cloned out first: `abort` is a scheduling point, and this std mutex must not be held
        // across one (every shuttle task runs on this one OS thread).
        let handle = self.aborts.lock().unwrap()[i].clone();
        handle.abort();
    }

    /// Waits until every task spawned so far has completed or been aborted.
    pub(crate) fn join_all(&self) {
        let joins = std::mem::take(&mut *self.joins.lock().unwrap());
        for join in joins {
            // Err(Cancelled) is an aborted task: gone either way.
            let _ = shuttle::future::block_on(join);
        }
    }
}

struct ShuttleTask(shuttle::future::AbortHandle);

impl TaskHandle for ShuttleTask {
    fn abort(&self) {
        self.0.abort();
    }

    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl Spawn for ShuttleSpawner {
    fn spawn(&self, task: BoxTask) -> Box<dyn TaskHandle> {
        let join = shuttle::future::spawn(task);
        let abort = join.abort_handle();
        self.joins.lock().unwrap().push(join);
        self.aborts.lock().unwrap().push(abort.clone());
        Box::new(ShuttleTask(abort))
    }
}

/// Explores `program` with shuttle's random scheduler (`SHUTTLE_ITERATIONS` schedules, or
/// `iterations`) while `recorder` records its model events, and writes the traces of up to
/// `want` schedules that `keep` selects (distinct, whole traces only: `model_trace::complete`)
/// to `dir`, as `0001.jsonl`, ...; returns how many were written.
pub(crate) fn record_traces(
    dir: &std::path::Path,
    recorder: crate::model_trace::Recorder,
    program: impl Fn() + Send + Sync + 'static,
    iterations: usize,
    want: usize,
    keep: fn(&[serde_json::Value]) -> bool,
) -> usize {
    use crate::model_trace;
    model_trace::clear(dir);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let body = {
        let (recorder, seen, dir) = (recorder.clone(), seen.clone(), dir.to_path_buf());
        move || {
            recorder.begin();
            program();
            let lines = recorder.take();
            let mut seen = seen.lock().unwrap();
            let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            if seen.len() < want
                && model_trace::complete(&lines)
                && keep(&lines)
                && seen.insert(text)
            {
                model_trace::write(&dir, &format!("{:04}", seen.len()), &lines);
            }
        }
    };
    let iterations = std::env::var("SHUTTLE_ITERATIONS").map_or(iterations, |v| v.parse().unwrap());
    recorder.run(|| shuttle::check_random(body, iterations));
    let written = seen.lock().unwrap().len();
    eprintln!("{written} model traces in {}", dir.display());
    written
}
