//! `ClientChannel<P, T>`: one client connection's lifecycle around its `ClientRegistry` entry.
//!
//! ```text
//!  new(transport, peer)  register(&registry)        spawn(&spawner, task)         close(reason)
//! ─────────────────────▶ Init ─────────────▶ Registered ─────────────────▶ Running ─────────────▶ Closed
//!           │  Err(RegisterError)     │                            │
//!           │  hands Init back        └──── close(reason) ─────────┼──────────────────▶ Closed
//!           └───────────────────────────── close(reason) ─────────┴──────────────────▶ Closed
//! ```
//!
//! The handle owns the transport `T` until `spawn` moves it into the channel's task; closing or
//! dropping the handle before that drops it, and after that aborts the task, which drops it. So a
//! channel closed in the registry never keeps a live connection (no zombie that the registry
//! would refuse but the peer still talks to).
//!
//! The registration is an RAII guard held both by the handle and by the running task: whichever
//! lets go first (the task returning its [`CloseReason`], the task panicking or being aborted, the
//! owner calling `close` or dropping the handle) closes the channel in the registry, and the
//! registry's tombstone makes every later attempt a no-op. So the entry is removed exactly once on
//! every exit path, and a heartbeat already in flight cannot re-register it.
//!
//! A `Registered` handle that is leaked (`mem::forget`) leaks its transport, as forgetting a
//! socket does, but not its slot: `ClientAcceptor::scan` reclaims channels whose task never
//! started, two scans in a row.

use super::registration::{Holder, Membership, Registration};
use super::{CloseReason, Spawn, TaskHandle};
use crate::core::remoting::LanguageCode;
use crate::core::{ChannelId, ClientError, HeartbeatData, HeartbeatOutcome, Millis};
use crate::phase::{Closed, Init, Phase, Registered, Running};
use crate::registry::{ChannelRef, ClientRegistry};
use crate::sync::Arc;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;

/// Maps each phase to what a `ClientChannel` owns in it.
pub trait ChannelPhase: Phase {
    #[doc(hidden)]
    type State<T: Send + 'static>: Send;
}

impl ChannelPhase for Init {
    type State<T: Send + 'static> = state::Init<T>;
}
impl ChannelPhase for Registered {
    type State<T: Send + 'static> = state::Registered<T>;
}
impl ChannelPhase for Running {
    type State<T: Send + 'static> = state::Running<T>;
}
impl ChannelPhase for Closed {
    type State<T: Send + 'static> = state::Closed<T>;
}

#[doc(hidden)]
pub mod state {
    //! Per-phase contents of a `ClientChannel`; public only because associated types must be.
    use super::*;

    pub struct Init<T> {
        pub(super) peer: String,
        pub(super) transport: T,
    }
    pub struct Registered<T> {
        pub(super) peer: String,
        pub(super) registration: Registration<ClientRegistry>,
        pub(super) transport: T,
    }
    pub struct Running<T> {
        pub(super) peer: String,
        pub(super) registration: Registration<ClientRegistry>,
        pub(super) task: Box<dyn TaskHandle>,
        pub(super) transport: PhantomData<fn() -> T>,
    }

    impl<T> Drop for Running<T> {
        /// A dropped handle takes its task (and so its transport) with it; the registration
        /// (dropped next) closes the channel if nothing did yet.
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    pub struct Closed<T> {
        pub(super) peer: String,
        pub(super) id: Option<ChannelId>,
        pub(super) reason: CloseReason,
        /// This close removed the registry entry (false if another path already had).
        pub(super) removed: bool,
        pub(super) transport: PhantomData<fn() -> T>,
    }
}

/// A client connection in phase `P` over transport `T`.
///
/// One per accepted connection: `new(transport, peer)`, `register(&registry)`, then `spawn` its
/// task, which gets the transport and a [`ChannelHandle`] for the heartbeats it reads. However
/// the task ends, or when the owner closes the channel, its entry leaves the registry once. Here
/// the transport is a queue of heartbeats a client has sent, on a current-thread runtime:
///
/// ```
/// use rmq_lifecycle::core::{HeartbeatData, Millis};
/// use rmq_lifecycle::lifecycle::{ClientChannel, CloseReason};
/// use rmq_lifecycle::net::TokioSpawner;
/// use rmq_lifecycle::registry::ClientRegistry;
/// use rmq_lifecycle::tokio::{self, sync::mpsc};
/// use std::sync::Arc;
///
/// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let registry = Arc::new(ClientRegistry::default());
/// let (client, transport) = mpsc::unbounded_channel::<HeartbeatData>();
///
/// let channel = ClientChannel::new(transport, "10.0.0.1:50001")
///     .register(&registry)
///     .unwrap_or_else(|refused| panic!("{}", refused.error));
/// let spawner = TokioSpawner::new(runtime.handle().clone());
/// let running = channel.spawn(&spawner, |mut transport, handle| async move {
///     while let Some(heartbeat) = transport.recv().await {
///         if handle.heartbeat(&heartbeat, Millis(0)).is_err() {
///             return CloseReason::ProtocolError("heartbeat refused".into());
///         }
///     }
///     CloseReason::PeerClosed
/// });
///
/// client.send(HeartbeatData::producers("producer-1", ["OrderProducers"])).unwrap();
/// runtime.block_on(async {
///     while registry.producer_group_count() == 0 {
///         tokio::task::yield_now().await;
///     }
/// });
/// let closed = running.close(CloseReason::Shutdown); // aborts the task, drops the transport
/// assert!(closed.removed_entry());
/// assert_eq!(registry.producer_group_count(), 0);
/// registry.check_invariants().unwrap();
/// ```
pub struct ClientChannel<P: ChannelPhase, T: Send + 'static> {
    state: P::State<T>,
}

impl<P: ChannelPhase, T: Send + 'static> fmt::Debug for ClientChannel<P, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientChannel")
            .field("phase", &P::NAME)
            .finish_non_exhaustive()
    }
}

/// A refused registration; the channel, transport included, comes back so it can still be
/// closed.
#[derive(thiserror::Error)]
#[error("client channel from {} was not registered: {error}", channel.peer())]
pub struct RegisterError<T: Send + 'static> {
    /// The channel, still in `Init`.
    pub channel: ClientChannel<Init, T>,
    /// Why the registry refused it.
    pub error: ClientError,
}

impl<T: Send + 'static> fmt::Debug for RegisterError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterError")
            .field("peer", &self.channel.peer())
            .field("error", &self.error)
            .finish()
    }
}

impl<T: Send + 'static> ClientChannel<Init, T> {
    /// An accepted transport from `peer` (a label for traces, e.g. its socket address).
    pub fn new(transport: T, peer: impl Into<String>) -> Self {
        ClientChannel {
            state: state::Init {
                peer: peer.into(),
                transport,
            },
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
    ) -> Result<ClientChannel<Registered, T>, RegisterError<T>> {
        match registry.register_channel(&self.state.peer) {
            Ok(slot) => {
                let registration = Registration::new(registry.clone(), slot);
                let state::Init { peer, transport } = self.state;
                Ok(ClientChannel {
                    state: state::Registered {
                        peer,
                        registration,
                        transport,
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

    /// Takes the transport back from a channel that never registered.
    pub fn into_transport(self) -> T {
        self.state.transport
    }

    /// Closes a channel that never registered: drops the transport, nothing else to undo.
    pub fn close(self, reason: CloseReason) -> ClientChannel<Closed, T> {
        tracing::debug!(peer = %self.state.peer, ?reason, "unregistered client channel closed");
        let state::Init { peer, transport } = self.state;
        drop(transport);
        ClientChannel {
            state: state::Closed {
                peer,
                id: None,
                reason,
                removed: false,
                transport: PhantomData,
            },
        }
    }
}

impl<T: Send + 'static> ClientChannel<Registered, T> {
    /// The channel's registry id.
    pub fn id(&self) -> ChannelId {
        self.state.registration.key().id()
    }

    /// A handle for heartbeats and unregisters on this channel.
    pub fn handle(&self) -> ChannelHandle {
        handle_of(&self.state.registration)
    }

    /// Starts the channel's task. `task` gets the transport and a [`ChannelHandle`] and returns
    /// why it ended; when it returns, panics or is aborted, the channel is closed in the
    /// registry. The future is built before it is spawned, so a panic in `task` or in the
    /// spawner leaves no task and closes the channel. A channel already closed (reclaimed) never
    /// runs its task.
    pub fn spawn<S, F, Fut>(self, spawner: &S, task: F) -> ClientChannel<Running, T>
    where
        S: Spawn + ?Sized,
        F: FnOnce(T, ChannelHandle) -> Fut,
        Fut: Future<Output = CloseReason> + Send + 'static,
    {
        let state::Registered {
            peer,
            registration,
            transport,
        } = self.state;
        let mut task_guard = registration.duplicate(Holder::Task);
        let fut = task(transport, handle_of(&registration));
        let live = registration.table().mark_started(registration.key());
        let task = spawner.spawn(Box::pin(async move {
            if !live {
                task_guard.close(&CloseReason::Local);
                return;
            }
            let reason = fut.await;
            task_guard.close(&reason);
        }));
        tracing::debug!(id = registration.key().id().0, "client channel running");
        ClientChannel {
            state: state::Running {
                peer,
                registration,
                task,
                transport: PhantomData,
            },
        }
    }

    /// Closes the channel before its task was started (drops the transport).
    pub fn close(self, reason: CloseReason) -> ClientChannel<Closed, T> {
        let state::Registered {
            peer,
            mut registration,
            transport,
        } = self.state;
        let removed = registration.close(&reason);
        drop(transport);
        let id = Some(registration.key().id());
        ClientChannel {
            state: state::Closed {
                peer,
                id,
                reason,
                removed,
                transport: PhantomData,
            },
        }
    }
}

impl<T: Send + 'static> ClientChannel<Running, T> {
    /// The channel's registry id.
    pub fn id(&self) -> ChannelId {
        self.state.registration.key().id()
    }

    /// A handle for heartbeats and unregisters on this channel.
    pub fn handle(&self) -> ChannelHandle {
        handle_of(&self.state.registration)
    }

    /// True once the task has ended (its registry entry is then already closed).
    pub fn is_finished(&self) -> bool {
        self.state.task.is_finished()
    }

    /// Closes the channel in the registry, then aborts its task (dropping `self` does), which
    /// drops the transport.
    pub fn close(mut self, reason: CloseReason) -> ClientChannel<Closed, T> {
        let removed = self.state.registration.close(&reason);
        let id = Some(self.id());
        let peer = std::mem::take(&mut self.state.peer);
        ClientChannel {
            state: state::Closed {
                peer,
                id,
                reason,
                removed,
                transport: PhantomData,
            },
        }
    }
}

impl<T: Send + 'static> ClientChannel<Closed, T> {
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

    /// Whether this close removed the registry entry (false if another path, its task's end or
    /// an expiry reclaim, already had, or it never registered).
    pub fn removed_entry(&self) -> bool {
        self.state.removed
    }
}

impl Membership for ClientRegistry {
    type Key = ChannelRef;
    const KIND: &'static str = "client channel";

    fn remove(&self, key: &ChannelRef, _: Holder, _: &CloseReason) -> bool {
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

/// What a channel's task uses to talk to the registry: its own slot paired with the registry
/// that made it, so it can act on no other channel and no other registry. Cloneable; dropping it
/// closes nothing.
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

    /// `HEART_BEAT` on this channel.
    pub fn heartbeat(
        &self,
        data: &HeartbeatData,
        now: Millis,
    ) -> Result<HeartbeatOutcome, ClientError> {
        self.registry.heartbeat(&self.slot, data, None, now)
    }

    /// `HEART_BEAT` on this channel, also recording the language and version of the request's
    /// header (what the admin queries show for the channel, as upstream keeps them).
    pub fn heartbeat_from(
        &self,
        language: LanguageCode,
        version: i32,
        data: &HeartbeatData,
        now: Millis,
    ) -> Result<HeartbeatOutcome, ClientError> {
        self.registry
            .heartbeat(&self.slot, data, Some((language, version)), now)
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
