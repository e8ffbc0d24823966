//! `HaConnection<P>`: one accepted HA socket's lifecycle around its `HaRegistry` row.
//!
//! ```text
//!  new(peer)   register(&registry)            spawn(&spawner, reader, writer)      close(reason)
//! ──────────▶ Init ───────────────▶ Registered ──────────────────────────▶ Running ─────────────▶ Closed
//! ```
//!
//! `spawn` exists only on `Registered`: starting the reader and writer before the row exists is
//! what leaked connections in RocketMQ 5.1.4 (#8875), and here it does not compile. Each task and
//! the handle hold a registration guard and share a [`StopSignal`]; whichever task ends first
//! raises the signal (so the other stops) and removes the row; a panic or an abort drops the
//! task's guard, which removes it too. The signal is always raised before the row is removed, so a
//! task that is still running is either registered or already told to stop
//! (`NoRunningUnregistered`).

use super::registration::{Membership, Registration};
use super::stop::StopSignal;
use super::{CloseReason, Spawn, TaskHandle};
use crate::phase::{Closed, Init, Phase, Registered, Running};
use crate::registry::{ConnId, HaRegisterError, HaRegistry};
use crate::sync::Arc;
use std::fmt;
use std::future::Future;

/// Maps each phase to what an `HaConnection` owns in it.
pub trait HaPhase: Phase {
    #[doc(hidden)]
    type State: Send;
}

impl HaPhase for Init {
    type State = state::Init;
}
impl HaPhase for Registered {
    type State = state::Registered;
}
impl HaPhase for Running {
    type State = state::Running;
}
impl HaPhase for Closed {
    type State = state::Closed;
}

#[doc(hidden)]
pub mod state {
    //! Per-phase contents of an `HaConnection`; public only because associated types must be.
    use super::*;

    pub struct Init {
        pub(super) peer: String,
    }
    pub struct Registered {
        pub(super) peer: String,
        pub(super) registration: Registration<HaRegistry>,
    }
    pub struct Running {
        pub(super) peer: String,
        pub(super) registration: Registration<HaRegistry>,
        pub(super) stop: StopSignal,
        pub(super) tasks: [Box<dyn TaskHandle>; 2],
    }

    impl Drop for Running {
        /// Stop first, then abort; the registration (dropped next) removes the row.
        fn drop(&mut self) {
            self.stop.stop();
            for task in &self.tasks {
                task.abort();
            }
        }
    }

    pub struct Closed {
        pub(super) peer: String,
        pub(super) id: Option<ConnId>,
        pub(super) reason: CloseReason,
    }
}

impl Membership for HaRegistry {
    type Key = ConnId;
    const KIND: &'static str = "HA connection";

    fn remove(&self, key: &ConnId) -> bool {
        self.deregister(*key)
    }

    fn trace_id(key: &ConnId) -> u64 {
        key.0
    }
}

/// An HA connection in phase `P`.
pub struct HaConnection<P: HaPhase> {
    state: P::State,
}

impl<P: HaPhase> fmt::Debug for HaConnection<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HaConnection")
            .field("phase", &P::NAME)
            .finish_non_exhaustive()
    }
}

/// A refused registration; the connection comes back so it can still be closed.
#[derive(Debug, thiserror::Error)]
#[error("HA connection from {} was not registered: {error}", connection.peer())]
pub struct HaRegisterFailed {
    /// The connection, still in `Init`.
    pub connection: HaConnection<Init>,
    /// Why the table refused it.
    pub error: HaRegisterError,
}

/// What each of a connection's tasks gets.
#[derive(Debug, Clone)]
pub struct HaTaskContext {
    /// The connection's row.
    pub id: ConnId,
    /// The table, for recording acks.
    pub registry: Arc<HaRegistry>,
    /// Raised when the other task ended or the owner closed the connection: return promptly.
    pub stop: StopSignal,
}

impl HaConnection<Init> {
    /// An accepted socket from `peer` (a label for traces and metrics).
    pub fn new(peer: impl Into<String>) -> Self {
        HaConnection {
            state: state::Init { peer: peer.into() },
        }
    }

    /// The peer label.
    pub fn peer(&self) -> &str {
        &self.state.peer
    }

    /// Adds the row. On refusal (shutdown, cap) the connection is handed back.
    pub fn register(
        self,
        registry: &Arc<HaRegistry>,
    ) -> Result<HaConnection<Registered>, HaRegisterFailed> {
        match registry.register(&self.state.peer) {
            Ok(id) => {
                let registration = Registration::new(registry.clone(), id);
                Ok(HaConnection {
                    state: state::Registered {
                        peer: self.state.peer,
                        registration,
                    },
                })
            }
            Err(error) => Err(HaRegisterFailed {
                connection: self,
                error,
            }),
        }
    }

    /// Closes a connection that never registered: nothing to undo.
    pub fn close(self, reason: CloseReason) -> HaConnection<Closed> {
        tracing::debug!(peer = %self.state.peer, ?reason, "unregistered HA connection closed");
        HaConnection {
            state: state::Closed {
                peer: self.state.peer,
                id: None,
                reason,
            },
        }
    }
}

impl HaConnection<Registered> {
    /// The row's id.
    pub fn id(&self) -> ConnId {
        *self.state.registration.key()
    }

    /// Starts the reader and the writer. Each returns why it ended; the first to end stops the
    /// other and removes the row.
    pub fn spawn<S, R, RF, W, WF>(self, spawner: &S, reader: R, writer: W) -> HaConnection<Running>
    where
        S: Spawn + ?Sized,
        R: FnOnce(HaTaskContext) -> RF,
        RF: Future<Output = CloseReason> + Send + 'static,
        W: FnOnce(HaTaskContext) -> WF,
        WF: Future<Output = CloseReason> + Send + 'static,
    {
        let state::Registered { peer, registration } = self.state;
        let stop = StopSignal::new();
        let context = HaTaskContext {
            id: *registration.key(),
            registry: registration.table().clone(),
            stop: stop.clone(),
        };
        let reader = guarded(spawner, &registration, &stop, reader(context.clone()));
        let writer = guarded(spawner, &registration, &stop, writer(context));
        tracing::debug!(id = registration.key().0, %peer, "HA connection running");
        HaConnection {
            state: state::Running {
                peer,
                registration,
                stop,
                tasks: [reader, writer],
            },
        }
    }

    /// Closes the connection before its tasks were started.
    pub fn close(mut self, reason: CloseReason) -> HaConnection<Closed> {
        self.state.registration.close(&reason);
        let id = Some(self.id());
        HaConnection {
            state: state::Closed {
                peer: self.state.peer,
                id,
                reason,
            },
        }
    }
}

/// Spawns `fut` so that, however it ends, the stop signal is raised before the row is removed.
fn guarded<S, F>(
    spawner: &S,
    registration: &Registration<HaRegistry>,
    stop: &StopSignal,
    fut: F,
) -> Box<dyn TaskHandle>
where
    S: Spawn + ?Sized,
    F: Future<Output = CloseReason> + Send + 'static,
{
    let exit = ExitGuard {
        stop: stop.clone(),
        registration: registration.duplicate(),
    };
    spawner.spawn(Box::pin(async move {
        let mut exit = exit;
        let reason = fut.await;
        exit.stop.stop();
        exit.registration.close(&reason);
    }))
}

/// Dropped with its task (completion, panic or abort): raise the signal, then deregister.
struct ExitGuard {
    stop: StopSignal,
    registration: Registration<HaRegistry>,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.stop.stop();
        self.registration.close(&CloseReason::TaskDropped);
    }
}

impl HaConnection<Running> {
    /// The row's id.
    pub fn id(&self) -> ConnId {
        *self.state.registration.key()
    }

    /// The peer label.
    pub fn peer(&self) -> &str {
        &self.state.peer
    }

    /// True once both tasks have ended.
    pub fn is_finished(&self) -> bool {
        self.state.tasks.iter().all(|t| t.is_finished())
    }

    /// The connection's stop signal (raised when a task ended or on close).
    pub fn stop_signal(&self) -> &StopSignal {
        &self.state.stop
    }

    /// Stops both tasks and removes the row.
    pub fn close(mut self, reason: CloseReason) -> HaConnection<Closed> {
        self.state.stop.stop();
        self.state.registration.close(&reason);
        let id = Some(self.id());
        let peer = std::mem::take(&mut self.state.peer);
        HaConnection {
            state: state::Closed { peer, id, reason },
        }
    }
}

impl HaConnection<Closed> {
    /// The row it had, if it was ever registered.
    pub fn id(&self) -> Option<ConnId> {
        self.state.id
    }

    /// The peer label.
    pub fn peer(&self) -> &str {
        &self.state.peer
    }

    /// Why it was closed.
    pub fn reason(&self) -> &CloseReason {
        &self.state.reason
    }
}
