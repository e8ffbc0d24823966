//! Shared by `tests/loom.rs`, `tests/shuttle.rs` and `tests/events.rs`: heartbeat builders, the
//! close of a `Registered` handle, the quiescent-state check that turns every invariant into one
//! panic message naming each violated invariant, and the listener-side model of the group tables
//! (`EventModel`).
//!
//! The check runs on the tables only (`snapshot()` and `check_invariants()`), so it works the same
//! on std, loom and shuttle primitives; call it after every thread and task has finished.

#![allow(dead_code)]

use rmq_lifecycle::core::heartbeat::{ConsumerData, ProducerData, SubscriptionData};
use rmq_lifecycle::core::{ChannelId, ClientEvent, GroupKind, HeartbeatData, Millis};
use rmq_lifecycle::lifecycle::{ClientChannel, CloseReason};
use rmq_lifecycle::phase::Registered;
use rmq_lifecycle::registry::{ClientRegistry, RegistryConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// A heartbeat from `client` naming these producer and consumer groups (each consumer group
/// subscribes to one topic named after it).
pub(crate) fn heartbeat(client: &str, producers: &[&str], consumers: &[&str]) -> HeartbeatData {
    HeartbeatData {
        client_id: client.to_owned(),
        producer_data_set: producers
            .iter()
            .map(|g| ProducerData {
                group_name: (*g).to_owned(),
            })
            .collect(),
        consumer_data_set: consumers
            .iter()
            .map(|g| ConsumerData {
                group_name: (*g).to_owned(),
                subscription_data_set: vec![SubscriptionData {
                    topic: format!("topic-{g}"),
                    sub_string: "*".to_owned(),
                    ..SubscriptionData::default()
                }],
                ..ConsumerData::default()
            })
            .collect(),
        ..HeartbeatData::default()
    }
}

/// Closes a registered channel through its handle (`ClientChannel::close`, which consumes it).
/// True if this call removed it from the registry (`removed_entry`), as the registry's own close
/// used to answer. The thread that closes a channel owns
/// its `Registered` handle; the other threads act on it through `ChannelHandle` clones.
pub(crate) fn close(channel: ClientChannel<Registered, ()>, reason: CloseReason) -> bool {
    let (id, handle) = (channel.id(), channel.handle());
    let closed = channel.close(reason);
    assert_eq!(closed.id(), Some(id));
    assert!(
        handle.is_closed(),
        "{id} is closed after its handle's close"
    );
    closed.removed_entry()
}

/// A producer-only heartbeat.
pub(crate) fn producers(client: &str, groups: &[&str]) -> HeartbeatData {
    heartbeat(client, groups, &[])
}

/// One (group, channel) membership: `(kind, group)`.
pub(crate) type Key = (GroupKind, String);

/// What must hold at quiescence besides `check_invariants()`.
#[derive(Debug, Default)]
pub(crate) struct Expect {
    /// Closed channels: in no table at all (`NoResurrection`).
    pub(crate) closed: Vec<ChannelId>,
    /// Memberships that must exist, with the last-seen time of the last successful heartbeat
    /// (`None`: any time) (`NoLostRegistration`).
    pub(crate) present: Vec<(GroupKind, String, ChannelId, Option<Millis>)>,
    /// Memberships that must be gone, with the reason (expired, unregistered, closed).
    pub(crate) gone: Vec<(GroupKind, String, ChannelId, &'static str)>,
    /// Live channels whose memberships must be exactly these (the owner's model of them).
    pub(crate) exact: Vec<(ChannelId, BTreeMap<Key, Millis>)>,
}

impl Expect {
    /// Adds a membership that must exist.
    pub(crate) fn present(
        &mut self,
        kind: GroupKind,
        group: &str,
        ch: ChannelId,
        seen: Option<Millis>,
    ) {
        self.present.push((kind, group.to_owned(), ch, seen));
    }

    /// Adds a membership that must be gone.
    pub(crate) fn gone(&mut self, kind: GroupKind, group: &str, ch: ChannelId, why: &'static str) {
        self.gone.push((kind, group.to_owned(), ch, why));
    }
}

/// Every violated invariant, one line each, as `"<Invariant> violated: <detail>"`.
pub(crate) fn violations(reg: &ClientRegistry, expect: &Expect) -> Vec<String> {
    let mut out = Vec::new();
    let tables = reg.snapshot();
    if let Err(v) = tables.check_no_resurrection(&expect.closed) {
        out.push(v.to_string());
    }
    // Every closed channel that is still in the channel table, not just the first (`channel(id)`
    // is crate-private now; the snapshot's channel table is the same table).
    for ch in &expect.closed {
        if tables.channels.contains_key(ch) {
            out.push(format!(
                "NoResurrection violated: closed {ch} is still registered"
            ));
        }
    }
    let seen = |kind: GroupKind, group: &str, ch: ChannelId| {
        tables
            .groups(kind)
            .get(group)
            .and_then(|g| g.members.get(&ch).copied())
    };
    for (kind, group, ch, want) in &expect.present {
        match (seen(*kind, group, *ch), want) {
            (None, _) => out.push(format!(
                "NoLostRegistration violated: {ch} completed a heartbeat into {kind:?} group \
                 {group:?} and was not removed since, but the group {}",
                if tables.groups(*kind).contains_key(group) {
                    "does not list it"
                } else {
                    "does not exist"
                }
            )),
            (Some(got), Some(want)) if got != *want => out.push(format!(
                "NoLostRegistration violated: {ch} in {kind:?} group {group:?} was last seen at \
                 {got:?}, but its last completed heartbeat was at {want:?}"
            )),
            _ => {}
        }
    }
    for (kind, group, ch, why) in &expect.gone {
        if let Some(at) = seen(*kind, group, *ch) {
            out.push(format!(
                "ExpectedRemoval violated: {ch} is still in {kind:?} group {group:?} (seen at \
                 {at:?}) although it was {why}"
            ));
        }
    }
    for (ch, want) in &expect.exact {
        let mut got = BTreeMap::new();
        for kind in [GroupKind::Producer, GroupKind::Consumer] {
            for (name, g) in tables.groups(kind) {
                if let Some(t) = g.members.get(ch) {
                    got.insert((kind, name.clone()), *t);
                }
            }
        }
        for (key, t) in want {
            match got.get(key) {
                None => out.push(format!(
                    "NoLostRegistration violated: {ch} completed a heartbeat into {key:?} at \
                     {t:?} and did not leave it since, but is not in it (its memberships: \
                     {got:?})"
                )),
                Some(g) if g != t => out.push(format!(
                    "NoLostRegistration violated: {ch} in {key:?} was last seen at {g:?}, but \
                     its last completed heartbeat was at {t:?}"
                )),
                Some(_) => {}
            }
        }
        for (key, t) in &got {
            if !want.contains_key(key) {
                out.push(format!(
                    "ExpectedRemoval violated: {ch} is in {key:?} (seen at {t:?}) although it \
                     left, expired or never joined it (expected memberships: {want:?})"
                ));
            }
        }
    }
    if let Err(v) = reg.check_invariants() {
        out.push(v.to_string());
    }
    out
}

/// Panics with every violated invariant, plus the tables, if any invariant does not hold.
pub(crate) fn check(reg: &ClientRegistry, expect: &Expect) {
    let found = violations(reg, expect);
    if !found.is_empty() {
        let mut msg = format!("{} invariant violation(s):\n", found.len());
        for v in &found {
            let _ = writeln!(msg, "  {v}");
        }
        let _ = write!(msg, "tables: {:#?}", reg.snapshot());
        panic!("{msg}");
    }
}

/// The group tables as a listener rebuilds them from events alone: group -> its channels, a key
/// per existing group. Events delivered out of table order within a group show up as an event
/// that does not fit (a registration it already has, the removal of one it does not have, a
/// group removed while it still has members, a channel list that is not its own); `apply`
/// records each as an `EventsInTableOrder` violation, since a panic in a listener is caught.
#[derive(Debug, Default)]
pub(crate) struct EventModel {
    pub(crate) groups: BTreeMap<Key, BTreeSet<ChannelId>>,
    pub(crate) violations: Vec<String>,
    /// Every `ConsumerIdsChanged` in delivery order: the notifications a broker sends.
    pub(crate) changes: Vec<(String, Vec<ChannelId>)>,
}

impl EventModel {
    /// Applies one delivered event.
    pub(crate) fn apply(&mut self, event: &ClientEvent) {
        let (kind, group) = event_group(event);
        let key = (kind, group.to_owned());
        let problem = match event {
            ClientEvent::ClientRegistered { channel, .. } => {
                let members = self.groups.entry(key).or_default();
                (!members.insert(*channel)).then(|| format!("{channel} is already a member"))
            }
            ClientEvent::ClientUnregistered { channel, .. } => match self.groups.get_mut(&key) {
                Some(members) => (!members.remove(channel))
                    .then(|| format!("{channel} is not a member (members {members:?})")),
                None => Some(format!("{channel} left a group that does not exist")),
            },
            ClientEvent::GroupUnregistered { .. } => match self.groups.remove(&key) {
                Some(members) if members.is_empty() => None,
                Some(members) => Some(format!("the group still has members {members:?}")),
                None => Some("the group does not exist".to_owned()),
            },
            ClientEvent::ConsumerIdsChanged { channels, group } => {
                self.changes.push((group.clone(), channels.clone()));
                let have: Option<Vec<ChannelId>> =
                    self.groups.get(&key).map(|m| m.iter().copied().collect());
                (have.as_ref() != Some(channels))
                    .then(|| format!("the events before it left the group at {have:?}"))
            }
        };
        if let Some(problem) = problem {
            self.violations.push(format!(
                "EventsInTableOrder violated: {event:?} delivered, but {problem}"
            ));
        }
    }

    /// Every recorded violation, plus one if the rebuilt groups differ from the tables'. Call at
    /// quiescence (every operation returned, so every event was delivered).
    pub(crate) fn violations(&self, reg: &ClientRegistry) -> Vec<String> {
        let mut out = self.violations.clone();
        let tables = reg.snapshot();
        let mut table = BTreeMap::new();
        for kind in [GroupKind::Producer, GroupKind::Consumer] {
            for (name, g) in tables.groups(kind) {
                table.insert((kind, name.clone()), g.members.keys().copied().collect());
            }
        }
        if table != self.groups {
            out.push(format!(
                "EventsInTableOrder violated: at quiescence the events say the groups are {:?}, \
                 the table has {table:?}",
                self.groups
            ));
        }
        out
    }

    /// Panics with every violation, if any.
    pub(crate) fn check(&self, reg: &ClientRegistry) {
        let found = self.violations(reg);
        if !found.is_empty() {
            let mut msg = format!("{} event order violation(s):\n", found.len());
            for v in &found {
                let _ = writeln!(msg, "  {v}");
            }
            panic!("{msg}");
        }
    }
}

/// A registry whose listener applies every event to the returned model. Before that, the
/// listener queries the event's group (`members`, which takes that group's shard lock): a
/// registry that called its listener under a shard lock would deadlock here.
///
/// The model's mutex is std's on purpose: it is never held across a modelled operation, so it is
/// never contended and adds no schedule points under loom or shuttle.
///
/// Under loom the registry lives in loom's `Arc`, which has no `Weak`: the listener then skips
/// the query (shuttle and `tests/events.rs` make it).
pub(crate) fn listened(config: RegistryConfig) -> (RegistryArc, Arc<Mutex<EventModel>>) {
    let model = Arc::new(Mutex::new(EventModel::default()));
    let this: Arc<OnceLock<Weak<ClientRegistry>>> = Arc::default();
    let listener = {
        let (model, this) = (model.clone(), this.clone());
        move |event: &ClientEvent| {
            if let Some(reg) = this.get().and_then(Weak::upgrade) {
                let (kind, group) = event_group(event);
                reg.members(kind, group);
            }
            model.lock().unwrap().apply(event);
        }
    };
    let reg = RegistryArc::new(ClientRegistry::with_listener(config, listener));
    #[cfg(not(rmq_loom))]
    this.set(Arc::downgrade(&reg)).unwrap();
    (reg, model)
}

/// The `Arc` the crate's `sync` facade uses in this build (registration takes one).
#[cfg(rmq_loom)]
pub(crate) type RegistryArc = loom::sync::Arc<ClientRegistry>;
/// See the loom arm.
#[cfg(not(rmq_loom))]
pub(crate) type RegistryArc = Arc<ClientRegistry>;

/// The group an event is about.
pub(crate) fn event_group(event: &ClientEvent) -> (GroupKind, &str) {
    match event {
        ClientEvent::ClientRegistered { kind, group, .. }
        | ClientEvent::ClientUnregistered { kind, group, .. }
        | ClientEvent::GroupUnregistered { kind, group, .. } => (*kind, group),
        ClientEvent::ConsumerIdsChanged { group, .. } => (GroupKind::Consumer, group),
    }
}

/// The text of a panic payload (`panic!` with a format string or a literal).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        "<non-string panic payload>".to_owned()
    }
}
