//! A registered client channel for single-threaded tests, built only on the public lifecycle
//! API: `ClientChannel::new((), peer).register(&registry)` keeps the `Registered` handle, its
//! `ChannelHandle` does the heartbeats and unregisters, and `close` is `ClientChannel::close`.
//! It re-implements nothing of the registry; it only saves each test from threading the
//! typestate handle through by value.
//!
//! Included with `#[path = "support/channel.rs"] mod channel;` (std's `Arc`: not for the loom or
//! shuttle models, which move their handles between threads themselves).

#![allow(dead_code)]

use rmq_lifecycle::core::{ChannelId, ClientError, HeartbeatData, HeartbeatOutcome, Millis};
use rmq_lifecycle::lifecycle::{ChannelHandle, ClientChannel, CloseReason};
use rmq_lifecycle::phase::Registered;
use rmq_lifecycle::registry::ClientRegistry;
use std::cell::RefCell;
use std::sync::Arc;

/// One accepted connection, registered, whose task is never started (the test is its task).
/// Dropping it closes the channel, as dropping a `Registered` handle does.
pub(crate) struct Channel {
    handle: ChannelHandle,
    registered: RefCell<Option<ClientChannel<Registered, ()>>>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.handle.id())
            .finish()
    }
}

impl Channel {
    /// Registers a new channel in `registry`; the registry's refusal (a cap) as its error.
    pub(crate) fn open(registry: &Arc<ClientRegistry>) -> Result<Channel, ClientError> {
        let registered = ClientChannel::new((), "test-peer")
            .register(registry)
            .map_err(|refused| refused.error)?;
        Ok(Channel {
            handle: registered.handle(),
            registered: RefCell::new(Some(registered)),
        })
    }

    /// The registry id.
    pub(crate) fn id(&self) -> ChannelId {
        self.handle.id()
    }

    /// `HEART_BEAT` through the channel's handle.
    pub(crate) fn heartbeat(
        &self,
        data: &HeartbeatData,
        now: Millis,
    ) -> Result<HeartbeatOutcome, ClientError> {
        self.handle.heartbeat(data, now)
    }

    /// `UNREGISTER_CLIENT` through the channel's handle.
    pub(crate) fn unregister(
        &self,
        client_id: &str,
        producer_group: Option<&str>,
        consumer_group: Option<&str>,
    ) -> Result<(), ClientError> {
        self.handle
            .unregister(client_id, producer_group, consumer_group)
    }

    /// Closes the channel (`ClientChannel::close`, consuming the `Registered` handle). True if
    /// this call closed it, as the registry's close answered before the API change: the handle
    /// was still held and the registry still had the channel open. A second call finds no handle
    /// and returns false.
    pub(crate) fn close(&self) -> bool {
        let Some(registered) = self.registered.borrow_mut().take() else {
            assert!(
                self.handle.is_closed(),
                "closed, but the registry disagrees"
            );
            return false;
        };
        let was_open = !self.handle.is_closed();
        let closed = registered.close(CloseReason::Local);
        assert_eq!(closed.id(), Some(self.id()));
        assert!(
            self.handle.is_closed(),
            "the registry still has {} open after its handle closed it",
            self.id()
        );
        was_open
    }

    /// True once the channel is closed in the registry.
    pub(crate) fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// A clone of the channel's handle.
    pub(crate) fn handle(&self) -> ChannelHandle {
        self.handle.clone()
    }
}
