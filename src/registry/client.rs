//! `ClientRegistry`: the broker's producer and consumer group tables (upstream `ProducerManager`,
//! `ConsumerManager` and the expiry half of `ClientHousekeepingService`) as one concurrent value.
//!
//! # Structure
//!
//! * `producers`, `consumers`: group name -> members (channel -> last seen), sharded.
//! * each channel's `ChannelSlot`: its tombstone flag, client id and the set of its groups
//!   (the inverse index), behind the channel's own mutex.
//! * `clients`: client id -> live channels with that id; `channels`: id -> slot.
//!
//! # Locking, and why it gives the invariants
//!
//! Lock order: a channel's mutex, then at most one shard lock at a time; never the reverse and
//! never two shards (a group shard's outbox mutex is taken alone or innermost). Every operation
//! that changes a channel's memberships holds that channel's mutex for its whole duration, so:
//!
//! * `NoResurrection`: `channel_closed` sets the tombstone under the channel mutex; a heartbeat
//!   checks it under the same mutex before touching any group, so a heartbeat in flight either
//!   completes before the close (and the close then removes what it added) or sees the tombstone.
//! * `NoEmptyGroup` / `NoLostRegistration`: a member is removed and the emptied group unlinked in
//!   one shard critical section, and a member is added (creating the group if needed) in one
//!   critical section of the same shard, so a registration lands in the live group or creates a
//!   fresh one, never in a detached one (upstream #10698).
//! * `IndexesConsistent`: a group's member set and the member's index change under the member's
//!   channel mutex, so no other operation on that channel observes them out of step.
//! * Close cost: the channel's own index lists its groups, so `channel_closed` is O(its groups),
//!   and it holds one shard lock at a time for O(1) work each.
//! * Event order (`EventsInTableOrder`): an event is queued in its shard's outbox under the shard
//!   lock that makes the change, and delivered from there once the operation holds no lock
//!   (`registry::outbox`), so per group the listener hears the table's order.
//!
//! This module does not read clocks (every time is a parameter), own sockets or spawn tasks.

use crate::core::admin::ClientConnection;
use crate::core::consumer::ConsumerMeta;
use crate::core::heartbeat::{ConsumerData, HeartbeatData};
use crate::core::model_trace::{self, TARGET as MODEL};
use crate::core::remoting::LanguageCode;
use crate::core::tables::{ChannelEntry, ClientTables, GroupEntry, Violation};
use crate::core::{
    ChannelId, ClientError, ClientEvent, ClientRules, GroupKind, HeartbeatOutcome, Millis,
    RemovalCause,
};
use crate::registry::members::Members;
use crate::registry::outbox::Outbox;
use crate::registry::shard::Sharded;
use crate::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use crate::sync::{Arc, Mutex, SharedStr};
use smallvec::SmallVec;
use std::collections::BTreeMap;

/// A registered channel: its identity and its own state. Only `lifecycle::ClientChannel` holds
/// one, paired with the registry that made it, so a slot cannot act on another registry.
pub(crate) struct ChannelSlot {
    id: ChannelId,
    /// The peer address, for the admin queries.
    peer: SharedStr,
    state: Mutex<ChannelState>,
}

/// The shared handle to a registered channel.
pub(crate) type ChannelRef = Arc<ChannelSlot>;

impl ChannelSlot {
    /// The channel's id.
    pub(crate) fn id(&self) -> ChannelId {
        self.id
    }

    /// True once `channel_closed` ran for it.
    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().closed
    }
}

impl std::fmt::Debug for ChannelSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelSlot")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

type NameSet = hashbrown::HashSet<SharedStr, crate::sync::HashState>;

#[derive(Default)]
struct ChannelState {
    closed: bool,
    /// Its task was started (`ClientChannel::spawn`).
    started: bool,
    /// An expiry scan found it not started once already (see `scan_inactive`).
    seen_unstarted: bool,
    client_id: Option<SharedStr>,
    /// The language and version of its last heartbeat's header (the admin queries show them).
    language: LanguageCode,
    version: i32,
    producer_groups: NameSet,
    consumer_groups: NameSet,
}

impl ChannelState {
    fn groups_mut(&mut self, kind: GroupKind) -> &mut NameSet {
        match kind {
            GroupKind::Producer => &mut self.producer_groups,
            GroupKind::Consumer => &mut self.consumer_groups,
        }
    }

    fn group_count(&self) -> usize {
        self.producer_groups.len() + self.consumer_groups.len()
    }

    /// Groups the heartbeat names that this channel is not in yet (duplicates counted once).
    fn count_new(&self, data: &HeartbeatData) -> usize {
        let mut seen: hashbrown::HashSet<(GroupKind, &str), crate::sync::HashState> =
            Default::default();
        let producers = data
            .producer_data_set
            .iter()
            .map(|p| (GroupKind::Producer, p.group_name.as_str()));
        let consumers = data
            .consumer_data_set
            .iter()
            .map(|c| (GroupKind::Consumer, c.group_name.as_str()));
        producers
            .chain(consumers)
            .filter(|(kind, name)| {
                let set = match kind {
                    GroupKind::Producer => &self.producer_groups,
                    GroupKind::Consumer => &self.consumer_groups,
                };
                !set.contains(*name) && seen.insert((*kind, *name))
            })
            .count()
    }
}

struct Group {
    members: Members,
    /// Boxed so that producer groups, the ones that leak in the incident, stay small.
    consumer: Option<Box<ConsumerMeta>>,
}

/// A listener for registry events (upstream `ProducerChangeListener` and
/// `ConsumerIdsChangeListener`).
///
/// Per group, events arrive in the order the table changed, also across concurrent operations:
/// each is queued, in the critical section that makes the change, in an outbox of the group's
/// shard, and one thread at a time delivers an outbox's events in queue order. The listener is
/// called with none of the registry's locks held, so it may query the registry (or call into it);
/// it may run on the thread of a later operation on the same shard, which returns once that
/// outbox is empty. Calls for groups of different shards may run concurrently, and the order
/// across groups is unspecified. A panic in it is caught and logged, as upstream catches listener
/// exceptions, and the delivery of the other events goes on.
pub trait ClientListener: Send + Sync + 'static {
    /// One event.
    fn on_event(&self, event: &ClientEvent);
}

impl<F: Fn(&ClientEvent) + Send + Sync + 'static> ClientListener for F {
    fn on_event(&self, event: &ClientEvent) {
        self(event)
    }
}

/// Deliberate defects, for proving that the harnesses catch them (feature `harness` only).
#[cfg(feature = "harness")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Decide that a group is empty and unlink it in two critical sections (the shape of the
    /// upstream #10698 race): a registration in between is lost with the group.
    pub split_remove_if_empty: bool,
    /// A heartbeat ignores the tombstone, so one in flight re-registers a closed channel.
    pub register_after_close: bool,
    /// Empty groups stay in the table (upstream #8673 and every 4.x close path).
    pub keep_empty_groups: bool,
    /// Events are collected per operation and delivered after its locks are released, bypassing
    /// the shard outboxes: two operations on one group can deliver out of table order.
    pub emit_after_unlock: bool,
}

/// Construction parameters.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Expiry and caps; the value model takes the same struct.
    pub rules: ClientRules,
    /// Lock shards per table (rounded up to a power of two). More shards, shorter waits behind
    /// a scan; 1024 keeps a full scan at a million groups to ~1,000 groups per critical section.
    pub shards: usize,
    /// Planted defects (feature `harness` only).
    #[cfg(feature = "harness")]
    pub faults: Faults,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            rules: ClientRules::default(),
            shards: 1024,
            #[cfg(feature = "harness")]
            faults: Faults::default(),
        }
    }
}

/// What a channel's transport says about it, for [`ClientRegistry::available_channel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelHealth {
    /// Connected and its send buffer has room.
    Writable,
    /// Connected, but its send buffer is full.
    Active,
    /// Not connected any more.
    Inactive,
}

/// What one expiry scan did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Memberships removed.
    pub expired: usize,
    /// Channels whose last membership expired in this scan, ascending. Upstream closes an expired
    /// channel; with per-membership expiry only these are candidates, and closing them is the
    /// transport's decision.
    pub orphaned: Vec<ChannelId>,
    /// Channels closed because they were registered but their task never started, two scans in
    /// a row (leaked handles). Filled by `lifecycle::ClientAcceptor::scan`, which owns the tasks.
    pub reclaimed: usize,
}

/// A group table: each shard carries the outbox of its groups' events.
type GroupTable = Sharded<(SharedStr, Group), Outbox<ClientEvent>>;

/// One operation's events: `None` unless someone listens, so the refresh path never allocates.
struct Events<'a>(Option<Pending<'a>>);

struct Pending<'a> {
    /// The outboxes this operation pushed into, to drain once its locks are released.
    touched: SmallVec<[&'a Outbox<ClientEvent>; 2]>,
    /// `Some` only under the `emit_after_unlock` fault: the events, held back until the locks
    /// are released instead of queued in their shard's outbox.
    unordered: Option<Vec<ClientEvent>>,
}

impl<'a> Events<'a> {
    /// Queues an event about a group of `table` whose key hashes to `hash`. Call under that
    /// group's shard lock: the outbox keeps the order in which that lock was taken.
    fn push(&mut self, table: &'a GroupTable, hash: u64, event: impl FnOnce() -> ClientEvent) {
        let Some(pending) = &mut self.0 else {
            return;
        };
        if let Some(unordered) = &mut pending.unordered {
            unordered.push(event());
            return;
        }
        let outbox = table.outbox(hash);
        outbox.push(event());
        if !pending
            .touched
            .last()
            .is_some_and(|o| std::ptr::eq(*o, outbox))
        {
            pending.touched.push(outbox);
        }
    }

    fn enabled(&self) -> bool {
        self.0.is_some()
    }
}

/// The producer and consumer group registry. See the module docs for the locking discipline.
///
/// It answers queries and runs the expiry scan; its entries change only through the
/// [`ClientChannel`](crate::lifecycle::ClientChannel) of each connection (or a
/// [`ClientAcceptor`](crate::lifecycle::ClientAcceptor), which makes them). A listener hears
/// every change, for the broker's own reactions (consumers told to rebalance):
///
/// ```
/// use rmq_lifecycle::core::{ClientEvent, GroupKind, HeartbeatData, Millis, RemovalCause};
/// use rmq_lifecycle::lifecycle::{ClientChannel, CloseReason};
/// use rmq_lifecycle::registry::{ClientRegistry, RegistryConfig};
/// use std::sync::{Arc, Mutex};
///
/// let events = Arc::new(Mutex::new(Vec::new()));
/// let heard = events.clone();
/// let listener = move |event: &ClientEvent| heard.lock().unwrap().push(event.clone());
/// let registry = Arc::new(ClientRegistry::with_listener(RegistryConfig::default(), listener));
///
/// let channel = ClientChannel::new((), "10.0.0.1:50001") // `()`: no transport to own here
///     .register(&registry)
///     .unwrap_or_else(|refused| panic!("{}", refused.error));
/// let producers = HeartbeatData::producers("producer-1", ["OrderProducers"]);
/// channel.handle().heartbeat(&producers, Millis(0)).unwrap();
/// assert_eq!(registry.members(GroupKind::Producer, "OrderProducers"), [channel.id()]);
/// assert_eq!(registry.find_channel("producer-1"), Some(channel.id()));
///
/// // No heartbeat within the expiry (120 s): the scan removes the membership, and the group
/// // with it, and names the channel left in no group, for the broker to close.
/// let report = registry.scan_inactive(Millis(121_000));
/// assert_eq!(report.orphaned, [channel.id()]);
/// assert!(events.lock().unwrap().contains(&ClientEvent::GroupUnregistered {
///     kind: GroupKind::Producer,
///     group: "OrderProducers".into(),
///     cause: RemovalCause::Expired,
/// }));
/// channel.close(CloseReason::IdleTimeout);
/// assert_eq!(registry.channel_count(), 0);
/// registry.check_invariants().unwrap();
/// ```
pub struct ClientRegistry {
    rules: ClientRules,
    #[cfg(feature = "harness")]
    faults: Faults,
    next_id: AtomicU64,
    live_channels: AtomicUsize,
    heartbeats: AtomicU64,
    round_robin: AtomicUsize,
    /// The next model trace sequence number (see [`model_trace`]).
    model_seq: AtomicU64,
    channels: Sharded<(ChannelId, ChannelRef)>,
    producers: GroupTable,
    consumers: GroupTable,
    clients: Sharded<(SharedStr, SmallVec<[ChannelId; 1]>)>,
    listener: Option<Box<dyn ClientListener>>,
}

impl std::fmt::Debug for ClientRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRegistry")
            .field("channels", &self.channel_count())
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl Default for ClientRegistry {
    fn default() -> Self {
        Self::new(RegistryConfig::default())
    }
}

impl ClientRegistry {
    /// An empty registry without a listener.
    pub fn new(config: RegistryConfig) -> Self {
        ClientRegistry {
            rules: config.rules,
            #[cfg(feature = "harness")]
            faults: config.faults,
            next_id: AtomicU64::new(0),
            live_channels: AtomicUsize::new(0),
            heartbeats: AtomicU64::new(0),
            round_robin: AtomicUsize::new(0),
            model_seq: AtomicU64::new(0),
            channels: Sharded::new(config.shards),
            producers: Sharded::new(config.shards),
            consumers: Sharded::new(config.shards),
            clients: Sharded::new(config.shards),
            listener: None,
        }
    }

    /// An empty registry that reports every event to `listener`.
    pub fn with_listener(config: RegistryConfig, listener: impl ClientListener) -> Self {
        ClientRegistry {
            listener: Some(Box::new(listener)),
            ..Self::new(config)
        }
    }

    /// The rules this registry enforces.
    pub fn rules(&self) -> &ClientRules {
        &self.rules
    }

    /// Adds a live channel (a connection was accepted), or refuses past `max_channels`.
    pub(crate) fn register_channel(&self, peer: &str) -> Result<ChannelRef, ClientError> {
        let max = self.rules.max_channels;
        self.live_channels
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| ClientError::TooManyChannels { max })?;
        let id = ChannelId(self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        let slot = Arc::new(ChannelSlot {
            id,
            peer: peer.into(),
            state: Mutex::new(ChannelState::default()),
        });
        let hash = self.channels.hash(&id);
        let mut shard = self.channels.lock(hash);
        self.channels
            .insert_unique(&mut shard, hash, (id, slot.clone()), |(k, _)| k);
        Ok(slot)
    }

    /// The live channel with this id.
    pub(crate) fn channel(&self, id: ChannelId) -> Option<ChannelRef> {
        let hash = self.channels.hash(&id);
        self.channels
            .lock(hash)
            .find(hash, |(k, _)| *k == id)
            .map(|(_, slot)| slot.clone())
    }

    /// `HEART_BEAT`: registers or refreshes the channel in every group the heartbeat names.
    ///
    /// Refused whole, changing nothing, if the channel is closed or the heartbeat would put it in
    /// more than `max_groups_per_channel` groups. A refresh of existing memberships takes the
    /// channel's mutex and one shard lock per group, and allocates nothing.
    ///
    /// `sender` is the request header's language and version, kept for the admin queries.
    pub(crate) fn heartbeat(
        &self,
        ch: &ChannelSlot,
        data: &HeartbeatData,
        sender: Option<(LanguageCode, i32)>,
        now: Millis,
    ) -> Result<HeartbeatOutcome, ClientError> {
        let mut events = self.events();
        let mut st = ch.state.lock();
        if st.closed && !planted!(self.faults.register_after_close) {
            self.model_step(|seq| {
                tracing::trace!(target: MODEL, seq, action = "HeartbeatRefused", ch = ch.id.0);
            });
            return Err(ClientError::ChannelClosed(ch.id));
        }
        let current = st.group_count();
        let max = self.rules.max_groups_per_channel;
        if current + data.group_count() > max {
            let would_be = current + st.count_new(data);
            if would_be > max {
                return Err(ClientError::TooManyGroups {
                    channel: ch.id,
                    would_be,
                    max,
                });
            }
        }
        self.heartbeats.fetch_add(1, Ordering::Relaxed);
        if let Some((language, version)) = sender {
            st.language = language;
            st.version = version;
        }
        if st.client_id.as_deref().unwrap_or("") != data.client_id {
            self.set_client_id(ch.id, &mut st, &data.client_id);
        }

        let mut outcome = HeartbeatOutcome {
            sub_changed: data.heartbeat_fingerprint == 0,
            joined: 0,
        };
        let mut step = JoinStep::new(data);
        for p in &data.producer_data_set {
            let joined = self.join_producer(&p.group_name, ch.id, now, &mut events, &st, &mut step);
            if let Some(name) = joined {
                tracing::debug!(channel = ch.id.0, group = %name, "producer joined group");
                st.producer_groups.insert(name);
                outcome.joined += 1;
            }
        }
        for c in &data.consumer_data_set {
            let joined = self.join_consumer(
                c,
                data,
                ch.id,
                now,
                &mut outcome,
                &mut events,
                &st,
                &mut step,
            );
            if let Some(name) = joined {
                tracing::debug!(channel = ch.id.0, group = %name, "consumer joined group");
                st.consumer_groups.insert(name);
                outcome.joined += 1;
            }
        }
        drop(st);
        self.emit(events);
        Ok(outcome)
    }

    /// `UNREGISTER_CLIENT`: removes the channel from the named groups.
    ///
    /// `client_id` is the header's `clientID`; the channel itself identifies the membership (as
    /// upstream's `ClientChannelInfo.equals` does), so the id is only recorded in the trace.
    pub(crate) fn unregister(
        &self,
        ch: &ChannelSlot,
        client_id: &str,
        producer_group: Option<&str>,
        consumer_group: Option<&str>,
    ) -> Result<(), ClientError> {
        let mut events = self.events();
        let mut st = ch.state.lock();
        if st.closed {
            return Err(ClientError::ChannelClosed(ch.id));
        }
        for (kind, group) in [
            (GroupKind::Producer, producer_group),
            (GroupKind::Consumer, consumer_group),
        ] {
            let Some(group) = group else { continue };
            if st.groups_mut(kind).remove(group) {
                tracing::debug!(
                    channel = ch.id.0,
                    client_id,
                    group,
                    ?kind,
                    "client unregistered from group"
                );
                self.leave(
                    kind,
                    group,
                    ch.id,
                    RemovalCause::Unregister,
                    LeaveStep::Unregister,
                    &st,
                    &mut events,
                );
            }
        }
        drop(st);
        self.emit(events);
        Ok(())
    }

    /// The channel closed: tombstone it and remove it from exactly the groups it is in.
    ///
    /// Returns false if it was already closed, so callers on several exit paths (the reader's
    /// EOF, a task panic, shutdown) can all call it and the removal still happens once.
    pub(crate) fn channel_closed(&self, ch: &ChannelSlot) -> bool {
        let mut events = self.events();
        let mut st = ch.state.lock();
        if st.closed {
            return false;
        }
        st.closed = true;
        let mut left_any = false;
        for kind in [GroupKind::Producer, GroupKind::Consumer] {
            let groups = std::mem::take(st.groups_mut(kind));
            for group in &groups {
                let step = if left_any {
                    LeaveStep::CloseLeave
                } else {
                    LeaveStep::CloseStart
                };
                left_any = true;
                self.leave(
                    kind,
                    group,
                    ch.id,
                    RemovalCause::ChannelClosed,
                    step,
                    &st,
                    &mut events,
                );
            }
        }
        if let Some(client_id) = st.client_id.take() {
            self.unmap_client(&client_id, ch.id);
        }
        let hash = self.channels.hash(&ch.id);
        let mut channels = self.channels.lock(hash);
        self.model_step(|seq| {
            if left_any {
                tracing::trace!(target: MODEL, seq, action = "ChannelClosedFinish", ch = ch.id.0);
            } else {
                tracing::trace!(target: MODEL, seq, action = "ChannelClosedStart", ch = ch.id.0, g = "");
            }
        });
        if let Ok(entry) = channels.find_entry(hash, |(k, _)| *k == ch.id) {
            entry.remove();
            self.live_channels.fetch_sub(1, Ordering::AcqRel);
        }
        drop(channels);
        drop(st);
        tracing::debug!(channel = ch.id.0, "client channel removed from registry");
        self.emit(events);
        true
    }

    /// Expires every (group, channel) membership not refreshed for more than `expiry_ms`.
    ///
    /// Each shard is locked once to collect candidates; each candidate is then re-checked under
    /// its channel's mutex and its shard lock, so a heartbeat that refreshed it meanwhile wins.
    ///
    /// Housekeeping, not a bypass: it removes memberships by the rules and changes no channel's
    /// lifecycle. Closing the orphaned channels is their owner's job (`ClientAcceptor::scan`
    /// does both).
    pub fn scan_inactive(&self, now: Millis) -> ScanReport {
        self.model_step(|seq| tracing::trace!(target: MODEL, seq, action = "ScanInactiveStart"));
        let mut candidates: Vec<(GroupKind, SharedStr, ChannelId)> = Vec::new();
        for kind in [GroupKind::Producer, GroupKind::Consumer] {
            self.table(kind).for_each_shard(|shard| {
                let before = candidates.len();
                for (name, group) in shard.iter() {
                    for (ch, seen) in group.members.iter() {
                        if self.expired(seen, now) {
                            candidates.push((kind, name.clone(), ch));
                        }
                    }
                }
                if shard.iter().next().is_some() {
                    self.model_step(|seq| {
                        let groups: Vec<String> = shard
                            .iter()
                            .map(|(name, _)| model_trace::group_key(kind, name))
                            .collect();
                        let cands: Vec<(String, u64)> = candidates[before..]
                            .iter()
                            .map(|(k, g, c)| (model_trace::group_key(*k, g), c.0))
                            .collect();
                        tracing::trace!(
                            target: MODEL,
                            seq,
                            action = "ScanInactiveCollect",
                            groups = %json(&groups),
                            cands = %json(&cands)
                        );
                    });
                }
            });
        }
        // Expire in (kind, group, channel) order so that the events (each `ConsumerIdsChanged`
        // lists the members left at that point) are deterministic and match the value model.
        candidates.sort_unstable();
        let mut report = ScanReport::default();
        for (kind, group, ch) in candidates {
            // A channel missing from the table was closed; its close removes the membership.
            let Some(slot) = self.channel(ch) else {
                self.model_expire_skipped(kind, &group, ch);
                continue;
            };
            // Each candidate's events are delivered before the next's, in candidate order.
            let mut events = self.events();
            let mut st = slot.state.lock();
            if st.closed {
                self.model_expire_skipped(kind, &group, ch);
                continue;
            }
            if self.leave(
                kind,
                &group,
                ch,
                RemovalCause::Expired,
                LeaveStep::Expire(now),
                &st,
                &mut events,
            ) {
                st.groups_mut(kind).remove(&group);
                tracing::debug!(channel = ch.0, group = %group, ?kind, "membership expired");
                report.expired += 1;
                if st.group_count() == 0 && !report.orphaned.contains(&ch) {
                    report.orphaned.push(ch);
                }
            }
            drop(st);
            self.emit(events);
        }
        self.model_step(|seq| tracing::trace!(target: MODEL, seq, action = "ScanInactiveEnd"));
        report.orphaned.sort_unstable();
        report
    }

    /// Notes that the channel's task is starting; false if it is already closed (reclaimed, or
    /// closed by another path), in which case the task must not run.
    pub(crate) fn mark_started(&self, ch: &ChannelSlot) -> bool {
        let mut st = ch.state.lock();
        st.started = !st.closed;
        st.started
    }

    /// Closes every channel whose task was never started and that the previous scan already
    /// found so: a `Registered` handle that was forgotten (`mem::forget`) holds its slot under
    /// `max_channels` for at most two scan periods.
    pub(crate) fn reclaim_unstarted(&self) -> usize {
        let mut slots = Vec::new();
        self.channels
            .for_each_shard(|shard| slots.extend(shard.iter().map(|(_, s)| s.clone())));
        let mut reclaimed = 0;
        for slot in slots {
            let stale = {
                let mut st = slot.state.lock();
                let stale = !st.started && !st.closed && st.seen_unstarted;
                st.seen_unstarted = true;
                stale
            };
            if stale && self.channel_closed(&slot) {
                tracing::warn!(
                    channel = slot.id.0,
                    "client channel reclaimed: registered but never started (a leaked handle)"
                );
                reclaimed += 1;
            }
        }
        reclaimed
    }

    /// A channel of the producer group for a transaction check-back (upstream
    /// `getAvailableChannel`): round-robin over the members, checking at most three; the first
    /// writable one wins, else the last active one seen, else none.
    pub fn available_channel(
        &self,
        group: &str,
        probe: impl Fn(ChannelId) -> ChannelHealth,
    ) -> Option<ChannelId> {
        let mut members = self.members(GroupKind::Producer, group);
        if members.is_empty() {
            tracing::warn!(group, "check transaction failed: the group has no channel");
            return None;
        }
        members.sort_unstable();
        let start = self.round_robin.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
        let mut fallback = None;
        for i in 0..members.len().min(3) {
            let ch = members[(start + i) % members.len()];
            match probe(ch) {
                ChannelHealth::Writable => return Some(ch),
                ChannelHealth::Active => fallback = Some(ch),
                ChannelHealth::Inactive => {}
            }
        }
        fallback
    }

    /// The most recently mapped live channel of a client id (upstream `findChannel`, used for
    /// reply messages).
    pub fn find_channel(&self, client_id: &str) -> Option<ChannelId> {
        let hash = self.clients.hash(client_id);
        self.clients
            .lock(hash)
            .find(hash, |(k, _)| &**k == client_id)
            .and_then(|(_, chans)| chans.last().copied())
    }

    /// The members of a group, unordered; empty if the group does not exist.
    pub fn members(&self, kind: GroupKind, group: &str) -> Vec<ChannelId> {
        let table = self.table(kind);
        let hash = table.hash(group);
        table
            .lock(hash)
            .find(hash, |(k, _)| &**k == group)
            .map(|(_, g)| g.members.channels().collect())
            .unwrap_or_default()
    }

    /// The channels of a group, ascending, each with what its last heartbeat said and when the
    /// membership was last refreshed (`GET_CONSUMER_LIST_BY_GROUP`, `GET_CONSUMER_CONNECTION_LIST`,
    /// `GET_PRODUCER_CONNECTION_LIST`); `None` if the group does not exist.
    ///
    /// Costs the size of the answer: one shard lock for the member list, then one channel
    /// mutex per member, never two locks at once. A channel that closes meanwhile is left out.
    pub fn connections(&self, kind: GroupKind, group: &str) -> Option<Vec<ClientConnection>> {
        let table = self.table(kind);
        let hash = table.hash(group);
        let members: Vec<(ChannelId, Millis)> = table
            .lock(hash)
            .find(hash, |(k, _)| &**k == group)
            .map(|(_, g)| g.members.iter().collect())?;
        Some(self.describe(members))
    }

    /// Every producer group with its channels, as [`connections`](Self::connections) gives them
    /// (`GET_ALL_PRODUCER_INFO`). Visits every producer group: an admin query.
    pub fn producer_connections(&self) -> BTreeMap<String, Vec<ClientConnection>> {
        let mut groups: Vec<(String, Vec<(ChannelId, Millis)>)> = Vec::new();
        self.producers.for_each_shard(|shard| {
            for (name, group) in shard.iter() {
                groups.push((name.to_string(), group.members.iter().collect()));
            }
        });
        groups
            .into_iter()
            .map(|(name, members)| (name, self.describe(members)))
            .collect()
    }

    fn describe(&self, mut members: Vec<(ChannelId, Millis)>) -> Vec<ClientConnection> {
        members.sort_unstable();
        members
            .into_iter()
            .filter_map(|(ch, seen)| {
                let slot = self.channel(ch)?;
                let st = slot.state.lock();
                (!st.closed).then(|| ClientConnection {
                    channel: ch,
                    client_id: st.client_id.as_deref().unwrap_or("").to_owned(),
                    peer: slot.peer.to_string(),
                    language: st.language,
                    version: st.version,
                    last_update: seen,
                })
            })
            .collect()
    }

    /// A consumer group's metadata (subscriptions, model, fingerprint).
    pub fn consumer_meta(&self, group: &str) -> Option<ConsumerMeta> {
        let hash = self.consumers.hash(group);
        self.consumers
            .lock(hash)
            .find(hash, |(k, _)| &**k == group)
            .and_then(|(_, g)| g.consumer.as_deref().cloned())
    }

    /// Consumer groups subscribed to a topic (upstream `queryTopicConsumeByWho`).
    ///
    /// An admin query: it visits every consumer group rather than keeping a topic index that
    /// every removal path would have to maintain (upstream #11114 is that index going stale).
    pub fn consumer_groups_of_topic(&self, topic: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.consumers.for_each_shard(|shard| {
            for (name, group) in shard.iter() {
                if group
                    .consumer
                    .as_ref()
                    .is_some_and(|m| m.subscriptions.contains_key(topic))
                {
                    out.push(name.to_string());
                }
            }
        });
        out.sort_unstable();
        out
    }

    /// Live channels.
    pub fn channel_count(&self) -> usize {
        self.live_channels.load(Ordering::Acquire)
    }

    /// Producer groups (summed shard by shard; exact at quiescence).
    pub fn producer_group_count(&self) -> usize {
        self.producers.len()
    }

    /// Consumer groups (summed shard by shard; exact at quiescence).
    pub fn consumer_group_count(&self) -> usize {
        self.consumers.len()
    }

    /// Heartbeats accepted since start.
    pub fn heartbeats_total(&self) -> u64 {
        self.heartbeats.load(Ordering::Relaxed)
    }

    /// The tables as a value. Exact only at quiescence: it visits one lock at a time.
    pub fn snapshot(&self) -> ClientTables {
        let mut tables = ClientTables::default();
        let mut slots = Vec::new();
        self.channels
            .for_each_shard(|shard| slots.extend(shard.iter().map(|(_, s)| s.clone())));
        for slot in slots {
            let st = slot.state.lock();
            let names = |set: &NameSet| set.iter().map(|n| n.to_string()).collect();
            tables.channels.insert(
                slot.id,
                ChannelEntry {
                    client_id: st.client_id.as_ref().map(|c| c.to_string()),
                    producer_groups: names(&st.producer_groups),
                    consumer_groups: names(&st.consumer_groups),
                },
            );
        }
        for kind in [GroupKind::Producer, GroupKind::Consumer] {
            let out = match kind {
                GroupKind::Producer => &mut tables.producers,
                GroupKind::Consumer => &mut tables.consumers,
            };
            self.table(kind).for_each_shard(|shard| {
                for (name, group) in shard.iter() {
                    let members: BTreeMap<_, _> = group.members.iter().collect();
                    let consumer = group.consumer.as_deref().cloned();
                    out.insert(name.to_string(), GroupEntry { members, consumer });
                }
            });
        }
        self.clients.for_each_shard(|shard| {
            for (id, chans) in shard.iter() {
                tables
                    .clients
                    .insert(id.to_string(), chans.iter().copied().collect());
            }
        });
        tables
    }

    /// `NoEmptyGroup` and `IndexesConsistent` on a snapshot, plus the live-channel count agreeing
    /// with the channel table. Meaningful at quiescence.
    pub fn check_invariants(&self) -> Result<(), Violation> {
        let tables = self.snapshot();
        tables.check_invariants()?;
        let counted = self.channel_count();
        if counted != tables.channels.len() {
            return Err(Violation {
                invariant: "IndexesConsistent",
                detail: format!(
                    "{counted} channels counted, {} in the table",
                    tables.channels.len()
                ),
            });
        }
        Ok(())
    }

    /// Whether a membership last seen at `seen` has expired at `now`: the one expiry rule of the
    /// scan's collect and of its re-check under the shard lock.
    fn expired(&self, seen: Millis, now: Millis) -> bool {
        now.since(seen) > self.rules.expiry_ms
    }

    /// Records a model action (see [`model_trace`]) with the next sequence number: call it
    /// inside the critical section that makes the action take effect.
    fn model_step(&self, record: impl FnOnce(u64)) {
        if model_trace::enabled() {
            record(self.model_seq.fetch_add(1, Ordering::Relaxed));
        }
    }

    /// The scan skipped a candidate whose channel is gone or closed.
    fn model_expire_skipped(&self, kind: GroupKind, group: &str, ch: ChannelId) {
        self.model_step(|seq| {
            let g = model_trace::group_key(kind, group);
            tracing::trace!(target: MODEL, seq, action = "ScanInactiveExpire", g, ch = ch.0, expired = false);
        });
    }

    fn table(&self, kind: GroupKind) -> &GroupTable {
        match kind {
            GroupKind::Producer => &self.producers,
            GroupKind::Consumer => &self.consumers,
        }
    }

    fn events(&self) -> Events<'_> {
        Events(self.listener.is_some().then(|| Pending {
            touched: SmallVec::new(),
            unordered: planted!(self.faults.emit_after_unlock).then(Vec::new),
        }))
    }

    /// Delivers an operation's events: drains every outbox it pushed into, in the order it first
    /// pushed into them (so that, absent another deliverer, a heartbeat's producer events precede
    /// its consumer events). Call with no lock held.
    fn emit(&self, events: Events<'_>) {
        let (Some(listener), Some(pending)) = (&self.listener, events.0) else {
            return;
        };
        let deliver = |event: &ClientEvent| {
            let delivered =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| listener.on_event(event)));
            if delivered.is_err() {
                tracing::error!(?event, "client listener panicked; event dropped");
            }
        };
        for event in pending.unordered.iter().flatten() {
            deliver(event);
        }
        // An outbox listed twice (pushed into, then another, then it again) is found empty or
        // being delivered the second time: a lock and nothing more.
        for outbox in pending.touched {
            outbox.drain(deliver);
        }
    }

    /// Adds or refreshes a producer membership in one shard critical section, queueing its event
    /// there. Returns the shared group name if the membership is new.
    fn join_producer<'a>(
        &'a self,
        group: &str,
        ch: ChannelId,
        now: Millis,
        events: &mut Events<'a>,
        st: &ChannelState,
        step: &mut JoinStep,
    ) -> Option<SharedStr> {
        let hash = self.producers.hash(group);
        let mut shard = self.producers.lock(hash);
        self.model_step(|seq| step.record(seq, ch, GroupKind::Producer, group));
        if let Some((name, g)) = shard.find_mut(hash, |(k, _)| &**k == group) {
            if g.members.insert(ch, now).is_some() {
                return None;
            }
            let name = name.clone();
            events.push(&self.producers, hash, || {
                joined_event(GroupKind::Producer, &name, ch, st)
            });
            return Some(name);
        }
        let name: SharedStr = group.into();
        let mut members = Members::default();
        members.insert(ch, now);
        let entry = (
            name.clone(),
            Group {
                members,
                consumer: None,
            },
        );
        self.producers
            .insert_unique(&mut shard, hash, entry, |(k, _)| &**k);
        events.push(&self.producers, hash, || {
            joined_event(GroupKind::Producer, &name, ch, st)
        });
        Some(name)
    }

    /// Adds or refreshes a consumer membership and applies the group metadata, in one shard
    /// critical section. Returns the shared group name if the membership is new.
    #[allow(clippy::too_many_arguments)]
    fn join_consumer<'a>(
        &'a self,
        c: &ConsumerData,
        data: &HeartbeatData,
        ch: ChannelId,
        now: Millis,
        outcome: &mut HeartbeatOutcome,
        events: &mut Events<'a>,
        st: &ChannelState,
        step: &mut JoinStep,
    ) -> Option<SharedStr> {
        let group = c.group_name.as_str();
        let hash = self.consumers.hash(group);
        let mut shard = self.consumers.lock(hash);
        self.model_step(|seq| step.record(seq, ch, GroupKind::Consumer, group));
        let (name, g) = match shard.find_mut(hash, |(k, _)| &**k == group) {
            Some((name, g)) => (name.clone(), g),
            None => {
                let name: SharedStr = group.into();
                let entry = (
                    name.clone(),
                    Group {
                        members: Members::default(),
                        consumer: Some(Box::default()),
                    },
                );
                self.consumers
                    .insert_unique(&mut shard, hash, entry, |(k, _)| &**k);
                let (_, g) = shard
                    .find_mut(hash, |(k, _)| &**k == group)
                    .expect("inserted above");
                (name, g)
            }
        };
        let joined = g.members.insert(ch, now).is_none();
        if joined {
            events.push(&self.consumers, hash, || {
                joined_event(GroupKind::Consumer, &name, ch, st)
            });
        }
        let meta = g.consumer.get_or_insert_with(Box::default);
        let update = meta.apply(c, data.heartbeat_fingerprint, data.without_sub);
        outcome.sub_changed |= update.fingerprint_differs;
        if (joined || update.subscriptions_changed) && meta.announces_changes() && events.enabled()
        {
            let channels = sorted(&g.members);
            events.push(&self.consumers, hash, || ClientEvent::ConsumerIdsChanged {
                group: name.to_string(),
                channels,
            });
        }
        joined.then_some(name)
    }

    /// Removes one membership, and the group with it if it is now empty, in one critical section
    /// (unless the `split_remove_if_empty` fault is set). An expiry (`LeaveStep::Expire(now)`)
    /// removes it only if it is still expired at `now`. Returns whether a membership was removed.
    #[allow(clippy::too_many_arguments)]
    fn leave<'a>(
        &'a self,
        kind: GroupKind,
        group: &str,
        ch: ChannelId,
        cause: RemovalCause,
        step: LeaveStep,
        st: &ChannelState,
        events: &mut Events<'a>,
    ) -> bool {
        let expired_at = match step {
            LeaveStep::Expire(now) => Some(now),
            _ => None,
        };
        let table = self.table(kind);
        let hash = table.hash(group);
        let mut shard = table.lock(hash);
        self.model_step(|seq| {
            let g = model_trace::group_key(kind, group);
            let ch = ch.0;
            match step {
                LeaveStep::Unregister => {
                    tracing::trace!(target: MODEL, seq, action = "Unregister", ch, g);
                }
                LeaveStep::CloseStart => {
                    tracing::trace!(target: MODEL, seq, action = "ChannelClosedStart", ch, g);
                }
                LeaveStep::CloseLeave => {
                    tracing::trace!(target: MODEL, seq, action = "ChannelClosedLeave", ch, g);
                }
                LeaveStep::Expire(now) => {
                    let expired = shard
                        .find(hash, |(k, _)| &**k == group)
                        .and_then(|(_, grp)| grp.members.get(ChannelId(ch)))
                        .is_some_and(|seen| self.expired(seen, now));
                    tracing::trace!(target: MODEL, seq, action = "ScanInactiveExpire", g, ch, expired);
                }
            }
        });
        let Ok(mut entry) = shard.find_entry(hash, |(k, _)| &**k == group) else {
            return false;
        };
        let g = &mut entry.get_mut().1;
        if let Some(now) = expired_at {
            match g.members.get(ch) {
                Some(seen) if self.expired(seen, now) => {}
                _ => return false,
            }
        }
        if g.members.remove(ch).is_none() {
            return false;
        }
        let client_id = || st.client_id.as_deref().unwrap_or("").to_owned();
        events.push(table, hash, || ClientEvent::ClientUnregistered {
            kind,
            group: group.to_owned(),
            channel: ch,
            client_id: client_id(),
            cause,
        });
        if !g.members.is_empty() {
            if g.consumer.as_ref().is_some_and(|m| m.announces_changes()) && events.enabled() {
                let channels = sorted(&g.members);
                events.push(table, hash, || ClientEvent::ConsumerIdsChanged {
                    group: group.to_owned(),
                    channels,
                });
            }
            return true;
        }
        if planted!(self.faults.keep_empty_groups) {
            return true;
        }
        let unregistered = || ClientEvent::GroupUnregistered {
            kind,
            group: group.to_owned(),
            cause,
        };
        if planted!(self.faults.split_remove_if_empty) {
            // The defect under test: the emptiness seen above is acted on in a later critical
            // section, which removes whatever the group holds by then.
            drop(shard);
            let mut shard = table.lock(hash);
            self.model_step(|seq| match step {
                LeaveStep::Unregister => {
                    tracing::trace!(target: MODEL, seq, action = "UnregisterFinish", ch = ch.0);
                }
                LeaveStep::CloseStart | LeaveStep::CloseLeave => {
                    tracing::trace!(target: MODEL, seq, action = "ChannelClosedLeaveFinish", ch = ch.0);
                }
                LeaveStep::Expire(_) => {
                    tracing::trace!(target: MODEL, seq, action = "ScanInactiveExpireFinish");
                }
            });
            if let Ok(entry) = shard.find_entry(hash, |(k, _)| &**k == group) {
                entry.remove();
            }
            events.push(table, hash, unregistered);
        } else {
            entry.remove();
            events.push(table, hash, unregistered);
        }
        tracing::debug!(
            channel = ch.0,
            group,
            ?kind,
            ?cause,
            "group removed: its last member left"
        );
        true
    }

    /// Moves the channel's entry in the clients index from its old client id to `client_id`
    /// ("" means none). Called under the channel's mutex.
    fn set_client_id(&self, ch: ChannelId, st: &mut ChannelState, client_id: &str) {
        if let Some(old) = st.client_id.take() {
            self.unmap_client(&old, ch);
        }
        if client_id.is_empty() {
            return;
        }
        let hash = self.clients.hash(client_id);
        let mut shard = self.clients.lock(hash);
        let name = match shard.find_mut(hash, |(k, _)| &**k == client_id) {
            Some((name, chans)) => {
                chans.push(ch);
                name.clone()
            }
            None => {
                let name: SharedStr = client_id.into();
                let entry = (name.clone(), SmallVec::from_elem(ch, 1));
                self.clients
                    .insert_unique(&mut shard, hash, entry, |(k, _)| &**k);
                name
            }
        };
        st.client_id = Some(name);
    }

    /// Removes `ch` from the client id's live channels; the id goes when its last channel does.
    /// Guarded by channel identity, so a reconnecting client's new channel stays mapped (#6810).
    fn unmap_client(&self, client_id: &str, ch: ChannelId) {
        let hash = self.clients.hash(client_id);
        let mut shard = self.clients.lock(hash);
        if let Ok(mut entry) = shard.find_entry(hash, |(k, _)| &**k == client_id) {
            let chans = &mut entry.get_mut().1;
            chans.retain(|c| *c != ch);
            if chans.is_empty() {
                entry.remove();
            }
        }
    }
}

/// Which model action a `leave` critical section is (models/ClientRegistry.tla).
#[derive(Debug, Clone, Copy)]
enum LeaveStep {
    Unregister,
    /// The first group a close leaves.
    CloseStart,
    CloseLeave,
    /// An expiry at this scan time.
    Expire(Millis),
}

/// A heartbeat's joins as model actions: the first is `HeartbeatStart` (with every group the
/// heartbeat names), each further group `HeartbeatJoin`. A group the heartbeat names twice is
/// recorded once: its second join only refreshes the membership the first made.
struct JoinStep {
    /// The heartbeat's group keys as JSON, once recording (see [`model_trace`]).
    all: Option<String>,
    /// The keys recorded so far.
    done: Vec<String>,
}

impl JoinStep {
    fn new(data: &HeartbeatData) -> Self {
        let all = model_trace::enabled().then(|| {
            let mut keys: Vec<String> = Vec::new();
            let named = data
                .producer_data_set
                .iter()
                .map(|p| model_trace::group_key(GroupKind::Producer, &p.group_name))
                .chain(
                    data.consumer_data_set
                        .iter()
                        .map(|c| model_trace::group_key(GroupKind::Consumer, &c.group_name)),
                );
            for key in named {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            json(&keys)
        });
        JoinStep {
            all,
            done: Vec::new(),
        }
    }

    fn record(&mut self, seq: u64, ch: ChannelId, kind: GroupKind, group: &str) {
        let g = model_trace::group_key(kind, group);
        if self.done.contains(&g) {
            return;
        }
        if self.done.is_empty() {
            let all = self.all.as_deref().unwrap_or("[]");
            tracing::trace!(target: MODEL, seq, action = "HeartbeatStart", ch = ch.0, G = all, g);
        } else {
            tracing::trace!(target: MODEL, seq, action = "HeartbeatJoin", ch = ch.0, g);
        }
        self.done.push(g);
    }
}

/// JSON text of a trace event's list field.
fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn joined_event(kind: GroupKind, group: &str, ch: ChannelId, st: &ChannelState) -> ClientEvent {
    let client_id = st.client_id.as_deref().unwrap_or("").to_owned();
    ClientEvent::ClientRegistered {
        kind,
        group: group.to_owned(),
        channel: ch,
        client_id,
    }
}

fn sorted(members: &Members) -> Vec<ChannelId> {
    let mut v: Vec<_> = members.channels().collect();
    v.sort_unstable();
    v
}
