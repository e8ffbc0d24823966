//! L3: typestate handles that own a connection's transport and tie its registry entry to its
//! tasks, and the one accept/reap/shutdown logic built on them.
//!
//! A handle moves `Init -> Registered -> Running -> Closed`; each transition consumes `self`, so
//! spawning before registering, or using a handle after closing it, does not compile. The
//! handles are the only way to change the registries' tables. Tasks are started through the
//! small [`Spawn`] trait, so the same handles and acceptors run on tokio (`net`), on shuttle's
//! scheduler and on a test executor. This layer names no runtime.

pub mod acceptor;
pub mod client_channel;
pub mod ha_connection;
pub(crate) mod registration;

pub use crate::registry::{StopSignal, Stopped};
#[cfg(feature = "harness")]
pub use acceptor::AcceptorFaults;
pub use acceptor::{Acceptor, ClientAcceptor, HaAcceptor};
pub use client_channel::{ChannelHandle, ClientChannel, RegisterError};
pub use ha_connection::{AppliedAck, HaConnection, HaRegisterFailed, HaTaskContext};

use crate::sync::Arc;
use crate::sync::atomic::{AtomicUsize, Ordering};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Starts a connection's task on some executor (quinn's `Runtime` shape).
pub trait Spawn {
    /// Spawns `task`; the returned handle can abort it.
    fn spawn(&self, task: BoxTask) -> Box<dyn TaskHandle>;
}

/// A started task, seen from its owner.
pub trait TaskHandle: Send + 'static {
    /// Asks the executor to drop the task at its next await point. Idempotent.
    fn abort(&self);
    /// True once the task has completed, panicked or been aborted.
    fn is_finished(&self) -> bool;
}

/// Why a handle was closed, for the trace and the closed handle's `reason()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed the connection (EOF or reset).
    PeerClosed,
    /// The peer sent something the protocol forbids.
    ProtocolError(String),
    /// An IO error on the connection.
    Io(String),
    /// The peer was silent past the idle timeout.
    IdleTimeout,
    /// The server is shutting down.
    Shutdown,
    /// The connection never made it into the table (a cap was hit).
    Rejected(String),
    /// The owner dropped or closed it for its own reasons.
    Local,
    /// Its task was dropped before it finished: aborted, or it panicked.
    TaskDropped,
}

/// A task as the lifecycle layer hands it to an executor.
pub type BoxTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Counts the tasks started through it that have not finished yet (`rmq_tasks_alive`). A task is
/// counted from `spawn` until its future is dropped, whichever way it ends: completion, panic
/// (unwinding drops it) or abort.
#[derive(Debug, Clone, Default)]
pub struct TaskGauge(Arc<AtomicUsize>);

impl TaskGauge {
    /// A gauge at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tasks alive now.
    pub fn alive(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// A [`Spawn`] that counts what it starts in a [`TaskGauge`].
#[derive(Debug, Clone)]
pub struct Counted<S> {
    inner: S,
    gauge: TaskGauge,
}

impl<S: Spawn> Counted<S> {
    /// Wraps `inner`, counting into `gauge`.
    pub fn new(inner: S, gauge: TaskGauge) -> Self {
        Counted { inner, gauge }
    }

    /// The gauge.
    pub fn gauge(&self) -> &TaskGauge {
        &self.gauge
    }
}

impl<S: Spawn> Spawn for Counted<S> {
    fn spawn(&self, task: BoxTask) -> Box<dyn TaskHandle> {
        self.gauge.0.fetch_add(1, Ordering::AcqRel);
        self.inner.spawn(Box::pin(Tracked {
            task,
            gauge: self.gauge.0.clone(),
        }))
    }
}

/// A task counted until it is dropped.
struct Tracked {
    task: BoxTask,
    gauge: Arc<AtomicUsize>,
}

impl Future for Tracked {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.task.as_mut().poll(cx)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.gauge.fetch_sub(1, Ordering::AcqRel);
    }
}
