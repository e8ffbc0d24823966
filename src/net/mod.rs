//! L4: the tokio driver, the only module that names tokio.
//!
//! It provides the tokio implementation of the lifecycle layer's [`Spawn`], the process
//! [`Clock`], the client-management listener (`remoting`) and the Prometheus exporter (`metrics`). It holds no protocol decisions: those live
//! in `core`, and table changes go through `lifecycle` handles.
//!
//! Sockets and timers come from the IO facade (`src/io.rs`), so the simulation of `tests/sim.rs`
//! runs this code unchanged. Every `select!` is `biased` with the stop branch first: which ready
//! branch wins is then the code's order, not a draw from the runtime's RNG, so a simulation seed
//! replays exactly and a stop is never outraced by more work.

pub mod ha;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
pub mod notify;
mod pulse;
pub mod remoting;
pub mod send;
pub mod server;

use crate::core::Millis;
use crate::io::time::Instant;
use crate::lifecycle::{BoxTask, Counted, Spawn, TaskGauge, TaskHandle};
use std::time::Duration;

/// The process clock the core's `Millis` are read from: milliseconds since the server started.
/// Built on tokio's `Instant`, so paused-time tests drive it too.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    /// The wall clock at `base`, in milliseconds since the epoch.
    wall_base: i64,
}

impl Clock {
    /// A clock whose zero is now.
    pub fn start() -> Self {
        let wall_base = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Clock {
            base: Instant::now(),
            wall_base,
        }
    }

    /// A `Millis` of this clock as wall time, milliseconds since the epoch (what upstream's
    /// timestamps on the wire are).
    pub fn wall_ms(&self, at: Millis) -> i64 {
        self.wall_base.saturating_add(at.0 as i64)
    }

    /// Now, on this clock.
    pub fn now(&self) -> Millis {
        Millis(self.base.elapsed().as_millis() as u64)
    }

    /// The instant a `Millis` of this clock stands for.
    pub fn instant_at(&self, at: Millis) -> Instant {
        self.base + Duration::from_millis(at.0)
    }
}

/// Spawns on the current runtime, counting each task in the caller's gauge and in the
/// component's own: a component's shutdown then waits for its own tasks, even when an embedder
/// shares one gauge among several components.
pub(crate) type Spawner = Counted<Counted<TokioSpawner>>;

impl Spawner {
    /// A spawner counting into `tasks`, and the component's own gauge.
    pub(crate) fn counting(tasks: TaskGauge) -> (Spawner, TaskGauge) {
        let own = TaskGauge::new();
        let inner = Counted::new(TokioSpawner::current(), own.clone());
        (Counted::new(inner, tasks), own)
    }
}

/// Spawns lifecycle tasks on the current tokio runtime.
#[derive(Debug, Clone)]
pub struct TokioSpawner {
    handle: tokio::runtime::Handle,
}

impl TokioSpawner {
    /// Spawns onto `handle`'s runtime.
    pub fn new(handle: tokio::runtime::Handle) -> Self {
        TokioSpawner { handle }
    }

    /// Spawns onto the runtime this is called from. Panics outside a runtime, like `tokio::spawn`.
    pub fn current() -> Self {
        Self::new(tokio::runtime::Handle::current())
    }
}

impl Spawn for TokioSpawner {
    fn spawn(&self, task: BoxTask) -> Box<dyn TaskHandle> {
        Box::new(self.handle.spawn(task))
    }
}

impl TaskHandle for tokio::task::JoinHandle<()> {
    fn abort(&self) {
        tokio::task::JoinHandle::abort(self);
    }

    fn is_finished(&self) -> bool {
        tokio::task::JoinHandle::is_finished(self)
    }
}
