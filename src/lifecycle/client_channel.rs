//! `ClientChannel<P>`: one client connection's lifecycle around its `ClientRegistry` entry.
//!
//! ```text
//!  new()      register(&registry)        spawn(&spawner, task)         close(reason)
//! ──────▶ Init ─────────────────▶ Registered ─────────────────▶ Running ─────────────▶ Closed
//!           │  Err(RegisterError)     │                            │
//!           │  hands Init back        └──── close(reason) ─────────┼──────────────────▶ Closed
//!           └───────────────────────────── close(reason) ─────────┴──────────────────▶ Closed
//! ```
//!
//! The registration is an RAII guard held both by the handle and by the running task: whichever
//! lets go first (the task returning its [`CloseReason`], the task panicking or being aborted, the
//! owner calling `close` or dropping the handle) closes the channel in the registry, and the
//! registry's tombstone makes every later attempt a no-op. So the entry is removed exactly once on
//! every exit path, and a heartbeat already in flight cannot re-register it.

use super::registration::{Membership, Registration};
use super::{CloseReason, Spawn, TaskHandle};
use crate::core::{ChannelId, ClientError, HeartbeatData, HeartbeatOutcome, Millis};
use crate::phase::{Closed, Init, Phase, Registered, Running};
use crate::registry::{ChannelRef, ClientRegistry};
use crate::sync::Arc;
use std::fmt;
use std::future::Future;

/// Maps each phase to what a `ClientChannel` owns in it.
pub trait ChannelPhase: Phase {
    #[doc(hidden)]
    type State: Send;
}

impl ChannelPhase for Init {
    type State = state::Init;
}
impl ChannelPhase for Registered {
    type State = state::Registered;
}
impl ChannelPhase for Running {
    type State = state::Running;
}
impl ChannelPhase for Closed {
    type State = state::Closed;
}

#[doc(hidden)]
pub mod state {
    //! Per-phase contents of a `ClientChannel`; public only because associated types must be.
    use super::*;

    pub struct Init {
        pub(super) peer: String,
    }
    pub struct Registered {
        pub(super) peer: String,
        pub(super) registration: Registration<ClientRegistry>,
    }
    pub struct Running {
        pub(super) peer: String,
        pub(super) registration: Registration<ClientRegistry>,
        pub(super) task: Box<dyn TaskHandle>,
    }

    impl Drop for Running {
        /// A dropped handle takes its task with it; the registration (dropped next) closes the
        /// channel if nothing did yet.
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    pub struct Closed {
        pub(super) peer: String,
        pub(super) id: Option<ChannelId>,
        pub(super) reason: CloseReason,
    }
}

/// A client connection in phase `P`.
pub struct ClientChannel<P: ChannelPhase> {
    state: P::State,
}

impl<P: ChannelPhase> fmt::Debug for ClientChannel<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientChannel")
            .field("phase", &P::NAME)
            .finish_non_exhaustive()
    }
}

/// A refused registration; the channel comes back so it can still be closed.
#[derive(Debug, thiserror::Error)]
#[error("client channel from {} was not registered: {error}", channel.peer())]
pub struct RegisterError {
    /// The channel, still in `Init`.
    pub channel: ClientChannel<Init>,
    /// Why the registry refused it.
    pub error: ClientError,
}

impl ClientChannel<Init> {
    /// An accepted connection from `peer` (a label for traces, e.g. its socket address).
    pub fn new(peer: impl Into<String>) -> Self {
        ClientChannel {
            state: state::Init { peer: peer.into() },
        }
    }

    /// The peer label.
    pub fn peer(&self) -> &str {
        &self.state.peer
    }

    /// Adds the channel to the registry. On refusal (a cap) the channel is handed back.
    pub fn register(
        self,
        registry: &Arc<ClientRegistry>,
    ) -> Result<ClientChannel<Registered>, RegisterError> {
        match registry.register_channel() {
            Ok(slot) => {
                let registration = Registration::new(registry.clone(), slot);
                Ok(ClientChannel {
                    state: state::Registered {
                        peer: self.state.peer,
                        registration,
                    },
                })
            }
            Err(error) => {
                tracing::warn!(peer = %self.state.peer, %error, "client channel refused");
                Err(RegisterError {
                    channel: self,
                    error,
                })
            }
        }
    }

    /// Closes a channel that never registered: nothing to undo.
    pub fn close(self, reason: CloseReason) -> ClientChannel<Closed> {
        tracing::debug!(peer = %self.state.peer, ?reason, "unregistered client channel closed");
        ClientChannel {
            state: state::Closed {
                peer: self.state.peer,
                id: None,
                reason,
            },
        }
    }
}

impl ClientChannel<Registered> {
    /// The channel's registry id.
    pub fn id(&self) -> ChannelId {
        self.state.registration.key().id()
    }

    /// A handle for heartbeats and unregisters.
    pub fn handle(&self) -> ChannelHandle {
        handle_of(&self.state.registration)
    }

    /// Starts the channel's task. `task` gets a [`ChannelHandle`] and returns why it ended; when
    /// it returns, panics or is aborted, the channel is closed in the registry.
    pub fn spawn<S, F, Fut>(self, spawner: &S, task: F) -> ClientChannel<Running>
    where
        S: Spawn + ?Sized,
        F: FnOnce(ChannelHandle) -> Fut,
        Fut: Future<Output = CloseReason> + Send + 'static,
    {
        let state::Registered { peer, registration } = self.state;
        let mut task_guard = registration.duplicate();
        let fut = task(handle_of(&registration));
        let task = spawner.spawn(Box::pin(async move {
            let reason = fut.await;
            task_guard.close(&reason);
        }));
        tracing::debug!(id = registration.key().id().0, "client channel running");
        ClientChannel {
            state: state::Running {
                peer,
                registration,
                task,
            },
        }
    }

    /// Closes the channel before its task was started.
    pub fn close(mut self, reason: CloseReason) -> ClientChannel<Closed> {
        self.state.registration.close(&reason);
        let id = Some(self.id());
        ClientChannel {
            state: state::Closed {
                peer: self.state.peer,
                id,
                reason,
            },
        }
    }
}

impl ClientChannel<Running> {
    /// The channel's registry id.
    pub fn id(&self) -> ChannelId {
        self.state.registration.key().id()
    }

    /// A handle for heartbeats and unregisters.
    pub fn handle(&self) -> ChannelHandle {
        handle_of(&self.state.registration)
    }

    /// True once the task has ended (its registry entry is then already closed).
    pub fn is_finished(&self) -> bool {
        self.state.task.is_finished()
    }

    /// Closes the channel in the registry, then aborts its task (dropping `self` does).
    pub fn close(mut self, reason: CloseReason) -> ClientChannel<Closed> {
        self.state.registration.close(&reason);
        let id = Some(self.id());
        let peer = std::mem::take(&mut self.state.peer);
        ClientChannel {
            state: state::Closed { peer, id, reason },
        }
    }
}

impl ClientChannel<Closed> {
    /// The registry id it had, if it was ever registered.
    pub fn id(&self) -> Option<ChannelId> {
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

impl Membership for ClientRegistry {
    type Key = ChannelRef;
    const KIND: &'static str = "client channel";

    fn remove(&self, key: &ChannelRef) -> bool {
        self.channel_closed(key)
    }

    fn trace_id(key: &ChannelRef) -> u64 {
        key.id().0
    }
}

fn handle_of(registration: &Registration<ClientRegistry>) -> ChannelHandle {
    ChannelHandle {
        registry: registration.table().clone(),
        slot: registration.key().clone(),
    }
}

/// What a channel's task uses to talk to the registry. Cloneable; dropping it closes nothing.
#[derive(Clone)]
pub struct ChannelHandle {
    registry: Arc<ClientRegistry>,
    slot: ChannelRef,
}

impl fmt::Debug for ChannelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelHandle")
            .field("id", &self.slot.id())
            .finish()
    }
}

impl ChannelHandle {
    /// The channel's registry id.
    pub fn id(&self) -> ChannelId {
        self.slot.id()
    }

    /// True once the channel is closed.
    pub fn is_closed(&self) -> bool {
        self.slot.is_closed()
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<ClientRegistry> {
        &self.registry
    }

    /// `HEART_BEAT` on this channel.
    pub fn heartbeat(
        &self,
        data: &HeartbeatData,
        now: Millis,
    ) -> Result<HeartbeatOutcome, ClientError> {
        self.registry.heartbeat(&self.slot, data, now)
    }

    /// `UNREGISTER_CLIENT` on this channel.
    pub fn unregister(
        &self,
        client_id: &str,
        producer_group: Option<&str>,
        consumer_group: Option<&str>,
    ) -> Result<(), ClientError> {
        self.registry
            .unregister(&self.slot, client_id, producer_group, consumer_group)
    }
}
