//! `NOTIFY_CONSUMER_IDS_CHANGED` (40): the broker tells every channel of a clustering consumer
//! group that the group's membership changed, so its clients rebalance now instead of on their
//! 20 s timer.
//!
//! [`ConsumerNotifier`] is the client registry's listener: on each `ConsumerIdsChanged` event it
//! queues the group's name on each listed channel's bounded queue, without waiting, and the
//! channel's own connection task writes the oneway request between its reads. So a slow or dead
//! consumer delays no one: the registry's delivery never blocks, and a full queue drops the
//! notification (counted, logged once per connection); the client's next heartbeat-driven
//! rebalance repairs it, as upstream's 10 ms oneway-permit timeout does.
//!
//! What this is not: a retry queue, or a rebalancer.

use crate::core::ChannelId;
use crate::core::ClientEvent;
use crate::core::remoting::RemotingCommand;
use crate::registry::ClientListener;
use crate::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use crate::sync::{Arc, Mutex};
use std::collections::{BTreeSet, HashMap};
use tokio::sync::mpsc;

/// What a notifier does; the defaults are upstream's.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Consumer groups whose changes are not pushed (upstream's subscription-group switch
    /// `notifyConsumerIdsChangedEnable = false`). Unlike upstream, a silenced group is also not
    /// told of a member's close.
    pub quiet_groups: BTreeSet<String>,
    /// Notifications waiting per connection before further ones are dropped.
    pub queue: usize,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            quiet_groups: BTreeSet::new(),
            queue: 64,
        }
    }
}

/// The registry listener that pushes `NOTIFY_CONSUMER_IDS_CHANGED`; cheap to clone (shared).
#[derive(Clone)]
pub struct ConsumerNotifier(Arc<Inner>);

struct Inner {
    config: NotifyConfig,
    connections: Mutex<HashMap<ChannelId, Outlet>>,
    opaque: AtomicI32,
    queued: AtomicU64,
    dropped: AtomicU64,
}

/// One connection's queue.
struct Outlet {
    tx: mpsc::Sender<Arc<str>>,
    /// A drop on this connection was logged already.
    warned: bool,
}

impl std::fmt::Debug for ConsumerNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerNotifier")
            .field("queued", &self.queued_total())
            .field("dropped", &self.dropped_total())
            .finish_non_exhaustive()
    }
}

impl ConsumerNotifier {
    /// A notifier with no connection attached yet.
    pub fn new(config: NotifyConfig) -> Self {
        ConsumerNotifier(Arc::new(Inner {
            config,
            connections: Mutex::new(HashMap::new()),
            opaque: AtomicI32::new(0),
            queued: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }))
    }

    /// Notifications queued for a connection since start.
    pub fn queued_total(&self) -> u64 {
        self.0.queued.load(Ordering::Relaxed)
    }

    /// Notifications dropped because a connection's queue was full.
    pub fn dropped_total(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }

    /// Attaches a connection: its notifications arrive on the returned queue until it is
    /// dropped.
    pub(crate) fn attach(&self, channel: ChannelId) -> Attached {
        let (tx, rx) = mpsc::channel(self.0.config.queue.max(1));
        let outlet = Outlet { tx, warned: false };
        self.0.connections.lock().insert(channel, outlet);
        Attached {
            notifier: self.clone(),
            channel,
            rx,
        }
    }

    /// The oneway request for `group`, with the next opaque.
    pub(crate) fn request(&self, group: &str) -> RemotingCommand {
        let opaque = self.0.opaque.fetch_add(1, Ordering::Relaxed);
        crate::core::admin::notify_consumer_ids_changed(group, opaque)
    }
}

impl ClientListener for ConsumerNotifier {
    fn on_event(&self, event: &ClientEvent) {
        let ClientEvent::ConsumerIdsChanged { group, channels } = event else {
            return;
        };
        if self.0.config.quiet_groups.contains(group) {
            return;
        }
        let name: Arc<str> = group.as_str().into();
        let mut connections = self.0.connections.lock();
        for channel in channels {
            let Some(outlet) = connections.get_mut(channel) else {
                continue;
            };
            match outlet.tx.try_send(name.clone()) {
                Ok(()) => {
                    self.0.queued.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.0.dropped.fetch_add(1, Ordering::Relaxed);
                    if !std::mem::replace(&mut outlet.warned, true) {
                        tracing::warn!(
                            channel = channel.get(),
                            group = %group,
                            "consumer notification dropped: the connection is not reading (its clients rebalance on their own timer)"
                        );
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }
}

/// A connection's notification queue; detaches when dropped.
pub(crate) struct Attached {
    notifier: ConsumerNotifier,
    channel: ChannelId,
    rx: mpsc::Receiver<Arc<str>>,
}

impl Attached {
    /// The next group to notify (never completes once detached, which only drop does).
    pub(crate) async fn next(&mut self) -> Arc<str> {
        match self.rx.recv().await {
            Some(group) => group,
            None => std::future::pending().await,
        }
    }

    /// The oneway request for `group`, with the notifier's next opaque.
    pub(crate) fn request(&self, group: &str) -> RemotingCommand {
        self.notifier.request(group)
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.notifier.0.connections.lock().remove(&self.channel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(group: &str, channels: &[u64]) -> ClientEvent {
        ClientEvent::ConsumerIdsChanged {
            group: group.into(),
            channels: channels.iter().map(|&c| ChannelId(c)).collect(),
        }
    }

    /// Every attached channel of the event gets the group once; a full queue drops (counted)
    /// without blocking the others; a quiet group and a detached channel get nothing.
    #[tokio::test]
    async fn queues_without_blocking_and_drops_when_full() {
        let notifier = ConsumerNotifier::new(NotifyConfig {
            quiet_groups: ["QUIET".to_owned()].into(),
            queue: 1,
        });
        let mut a = notifier.attach(ChannelId(1));
        let mut b = notifier.attach(ChannelId(2));
        notifier.on_event(&changed("G", &[1, 2, 3]));
        assert_eq!(&*a.next().await, "G");
        // b does not read: its second notification is dropped, a's is not.
        notifier.on_event(&changed("H", &[1, 2]));
        assert_eq!((notifier.queued_total(), notifier.dropped_total()), (3, 1));
        assert_eq!(&*a.next().await, "H");
        assert_eq!(&*b.next().await, "G");
        notifier.on_event(&changed("QUIET", &[1, 2]));
        drop(b);
        notifier.on_event(&changed("K", &[2]));
        assert_eq!((notifier.queued_total(), notifier.dropped_total()), (3, 1));
        let request = a.request("G");
        assert_eq!(
            request.code,
            crate::core::remoting::code::NOTIFY_CONSUMER_IDS_CHANGED
        );
        assert!(request.is_oneway() && !request.is_response());
        assert_eq!(request.ext("consumerGroup"), Some("G"));
    }
}
