//! The client tables as a plain value: the specification of the registry.
//!
//! [`ClientTables`] is what the concurrent `registry::ClientRegistry` must look like at every
//! quiescent point (it produces one with `snapshot()`), and `check_invariants()` states the
//! invariants of docs/SPEC.md (section 4) on it. [`ClientModel`] applies [`ClientOp`]s to a `ClientTables`
//! sequentially with ordered maps and no cleverness: it is the oracle the property tests, the fuzz
//! targets and the conformance traces compare the registry against. It is not fast and does not
//! try to be.

use super::Millis;
use super::client::{
    ChannelId, ClientError, ClientEvent, ClientRules, GroupKind, HeartbeatOutcome, RemovalCause,
};
use super::consumer::ConsumerMeta;
use super::heartbeat::HeartbeatData;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One group: its members with their own last-seen time (per membership, upstream #10435).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "harness", derive(serde::Deserialize))]
pub struct GroupEntry {
    /// Channel -> when this (group, channel) membership was last refreshed.
    pub members: BTreeMap<ChannelId, Millis>,
    /// Consumer metadata; `None` for producer groups.
    pub consumer: Option<ConsumerMeta>,
}

/// One live channel: the inverse index, so a close visits only the channel's own groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "harness", derive(serde::Deserialize))]
pub struct ChannelEntry {
    /// The client id of the channel's last heartbeat; `None` before its first.
    pub client_id: Option<String>,
    /// Producer groups this channel is a member of.
    pub producer_groups: BTreeSet<String>,
    /// Consumer groups this channel is a member of.
    pub consumer_groups: BTreeSet<String>,
}

impl ChannelEntry {
    /// The channel's groups of one kind.
    pub fn groups(&self, kind: GroupKind) -> &BTreeSet<String> {
        match kind {
            GroupKind::Producer => &self.producer_groups,
            GroupKind::Consumer => &self.consumer_groups,
        }
    }

    fn groups_mut(&mut self, kind: GroupKind) -> &mut BTreeSet<String> {
        match kind {
            GroupKind::Producer => &mut self.producer_groups,
            GroupKind::Consumer => &mut self.consumer_groups,
        }
    }

    /// Producer plus consumer groups.
    pub fn group_count(&self) -> usize {
        self.producer_groups.len() + self.consumer_groups.len()
    }
}

/// The whole observable state of the client registry.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "harness", derive(serde::Deserialize))]
pub struct ClientTables {
    /// Producer group -> members (`ProducerManager.groupChannelTable`).
    pub producers: BTreeMap<String, GroupEntry>,
    /// Consumer group -> members and metadata (`ConsumerManager.consumerTable`).
    pub consumers: BTreeMap<String, GroupEntry>,
    /// Live channel -> its groups (the index upstream lacks; 5.3.3's channel attribute).
    pub channels: BTreeMap<ChannelId, ChannelEntry>,
    /// Client id -> its live channels (`clientChannelTable`, as a set so a reconnecting client's
    /// old channel leaving never unmaps its new one, upstream #6810).
    pub clients: BTreeMap<String, BTreeSet<ChannelId>>,
}

/// An invariant of docs/SPEC.md (section 4) that does not hold, with the offending detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's name as in docs/SPEC.md (section 4) and `models/`.
    pub invariant: &'static str,
    /// What was found.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} violated: {}", self.invariant, self.detail)
    }
}

impl std::error::Error for Violation {}

fn violation(invariant: &'static str, detail: String) -> Result<(), Violation> {
    Err(Violation { invariant, detail })
}

impl ClientTables {
    /// The groups of one kind.
    pub fn groups(&self, kind: GroupKind) -> &BTreeMap<String, GroupEntry> {
        match kind {
            GroupKind::Producer => &self.producers,
            GroupKind::Consumer => &self.consumers,
        }
    }

    fn groups_mut(&mut self, kind: GroupKind) -> &mut BTreeMap<String, GroupEntry> {
        match kind {
            GroupKind::Producer => &mut self.producers,
            GroupKind::Consumer => &mut self.consumers,
        }
    }

    /// True if nothing is registered at all.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
            && self.consumers.is_empty()
            && self.channels.is_empty()
            && self.clients.is_empty()
    }

    /// Checks `NoEmptyGroup` and `IndexesConsistent`.
    ///
    /// `NoResurrection` and `NoLostRegistration` are about histories, not states; the model and
    /// the harnesses check them with [`ClientTables::check_no_resurrection`] and by replaying what
    /// completed.
    pub fn check_invariants(&self) -> Result<(), Violation> {
        for kind in [GroupKind::Producer, GroupKind::Consumer] {
            for (name, group) in self.groups(kind) {
                if group.members.is_empty() {
                    return violation(
                        "NoEmptyGroup",
                        format!("{kind:?} group {name:?} has no members"),
                    );
                }
                if group.consumer.is_some() != (kind == GroupKind::Consumer) {
                    return violation(
                        "IndexesConsistent",
                        format!("{kind:?} group {name:?} has the wrong kind of metadata"),
                    );
                }
                for ch in group.members.keys() {
                    let listed = self
                        .channels
                        .get(ch)
                        .is_some_and(|c| c.groups(kind).contains(name));
                    if !listed {
                        return violation(
                            "IndexesConsistent",
                            format!(
                                "{kind:?} group {name:?} lists {ch}, whose index lacks the group"
                            ),
                        );
                    }
                }
            }
        }
        for (ch, entry) in &self.channels {
            for kind in [GroupKind::Producer, GroupKind::Consumer] {
                for name in entry.groups(kind) {
                    let member = self
                        .groups(kind)
                        .get(name)
                        .is_some_and(|g| g.members.contains_key(ch));
                    if !member {
                        return violation(
                            "IndexesConsistent",
                            format!("{ch} indexes {kind:?} group {name:?}, which does not list it"),
                        );
                    }
                }
            }
            if let Some(id) = &entry.client_id {
                if !self.clients.get(id).is_some_and(|set| set.contains(ch)) {
                    return violation(
                        "IndexesConsistent",
                        format!("{ch} has client id {id:?} but is not mapped"),
                    );
                }
            }
        }
        for (id, set) in &self.clients {
            if set.is_empty() {
                return violation(
                    "IndexesConsistent",
                    format!("client id {id:?} maps to no channel"),
                );
            }
            for ch in set {
                match self.channels.get(ch) {
                    Some(entry) if entry.client_id.as_deref() == Some(id) => {}
                    Some(_) => {
                        return violation(
                            "IndexesConsistent",
                            format!("client id {id:?} maps to {ch}, which has another id"),
                        );
                    }
                    None => {
                        return violation(
                            "IndexesConsistent",
                            format!("client id {id:?} maps to {ch}, which is not live"),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// `NoResurrection`: no closed channel appears anywhere.
    pub fn check_no_resurrection<'a>(
        &self,
        closed: impl IntoIterator<Item = &'a ChannelId>,
    ) -> Result<(), Violation> {
        for ch in closed {
            if self.channels.contains_key(ch) {
                return violation(
                    "NoResurrection",
                    format!("closed {ch} is still a live channel"),
                );
            }
            for kind in [GroupKind::Producer, GroupKind::Consumer] {
                if let Some((name, _)) = self
                    .groups(kind)
                    .iter()
                    .find(|(_, g)| g.members.contains_key(ch))
                {
                    return violation(
                        "NoResurrection",
                        format!("closed {ch} is in {kind:?} group {name:?}"),
                    );
                }
            }
            if let Some((id, _)) = self.clients.iter().find(|(_, set)| set.contains(ch)) {
                return violation(
                    "NoResurrection",
                    format!("closed {ch} is mapped from client id {id:?}"),
                );
            }
        }
        Ok(())
    }
}

/// One operation on the client tables, as the harnesses and the conformance traces spell it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "harness", derive(serde::Deserialize))]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ClientOp {
    /// A connection was accepted; the model hands out the next id (1, 2, ...).
    RegisterChannel,
    /// `HEART_BEAT` on a channel.
    Heartbeat {
        /// The channel.
        channel: ChannelId,
        /// The body.
        data: HeartbeatData,
        /// The caller's clock.
        now: Millis,
    },
    /// `UNREGISTER_CLIENT` on a channel.
    Unregister {
        /// The channel.
        channel: ChannelId,
        /// The header's producer group, if any.
        producer_group: Option<String>,
        /// The header's consumer group, if any.
        consumer_group: Option<String>,
    },
    /// The connection closed.
    Close {
        /// The channel.
        channel: ChannelId,
    },
    /// The periodic expiry scan.
    Scan {
        /// The caller's clock.
        now: Millis,
    },
}

/// What an operation returned, for comparing implementations.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "harness", derive(serde::Deserialize))]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum OpResult {
    /// `RegisterChannel` succeeded with this id.
    Registered {
        /// The new channel's id.
        channel: ChannelId,
    },
    /// `Heartbeat` succeeded.
    Heartbeat {
        /// Its outcome.
        outcome: HeartbeatOutcome,
    },
    /// `Unregister` ran.
    Unregistered,
    /// `Close` ran; `closed` is false if the channel was already closed (exactly-once).
    Closed {
        /// Whether this call did the close.
        closed: bool,
    },
    /// `Scan` ran.
    Scanned {
        /// Channels whose last membership expired in this scan (the transport may close them).
        orphaned: Vec<ChannelId>,
    },
    /// The operation was refused and changed nothing.
    Refused {
        /// Why.
        error: String,
    },
}

/// The sequential reference implementation: [`ClientTables`] plus tombstones and an id counter.
#[derive(Debug, Clone, Default)]
pub struct ClientModel {
    /// The tables.
    pub tables: ClientTables,
    /// Every channel ever closed.
    pub closed: BTreeSet<ChannelId>,
    /// The rules (expiry, caps).
    pub rules: ClientRules,
    next_id: u64,
}

impl ClientModel {
    /// An empty model with the given rules.
    pub fn new(rules: ClientRules) -> Self {
        ClientModel {
            rules,
            ..ClientModel::default()
        }
    }

    /// The admin queries' view of a group (`ClientRegistry::connections`): each member channel,
    /// ascending, with its client id and the membership's last refresh; `None` if the group does
    /// not exist.
    pub fn connections(
        &self,
        kind: GroupKind,
        group: &str,
    ) -> Option<Vec<(ChannelId, String, Millis)>> {
        let entry = self.tables.groups(kind).get(group)?;
        Some(
            entry
                .members
                .iter()
                .map(|(ch, seen)| {
                    let client_id = self.tables.channels[ch].client_id.clone();
                    (*ch, client_id.unwrap_or_default(), *seen)
                })
                .collect(),
        )
    }

    /// Structural invariants plus `NoResurrection`.
    pub fn check_invariants(&self) -> Result<(), Violation> {
        self.tables.check_invariants()?;
        self.tables.check_no_resurrection(&self.closed)
    }

    /// Applies one operation, appending the events it emits to `events`.
    pub fn apply(&mut self, op: &ClientOp, events: &mut Vec<ClientEvent>) -> OpResult {
        let refused = |e: ClientError| OpResult::Refused {
            error: e.to_string(),
        };
        match op {
            ClientOp::RegisterChannel => match self.register_channel() {
                Ok(channel) => OpResult::Registered { channel },
                Err(e) => refused(e),
            },
            ClientOp::Heartbeat { channel, data, now } => {
                match self.heartbeat(*channel, data, *now, events) {
                    Ok(outcome) => OpResult::Heartbeat { outcome },
                    Err(e) => refused(e),
                }
            }
            ClientOp::Unregister {
                channel,
                producer_group,
                consumer_group,
            } => {
                match self.unregister(
                    *channel,
                    producer_group.as_deref(),
                    consumer_group.as_deref(),
                    events,
                ) {
                    Ok(()) => OpResult::Unregistered,
                    Err(e) => refused(e),
                }
            }
            ClientOp::Close { channel } => OpResult::Closed {
                closed: self.close(*channel, events),
            },
            ClientOp::Scan { now } => OpResult::Scanned {
                orphaned: self.scan(*now, events),
            },
        }
    }

    /// Registers a new live channel.
    pub fn register_channel(&mut self) -> Result<ChannelId, ClientError> {
        if self.tables.channels.len() >= self.rules.max_channels {
            return Err(ClientError::TooManyChannels {
                max: self.rules.max_channels,
            });
        }
        self.next_id += 1;
        let id = ChannelId(self.next_id);
        self.tables.channels.insert(id, ChannelEntry::default());
        Ok(id)
    }

    /// Registers the channel into every group the heartbeat names, or refuses it whole.
    pub fn heartbeat(
        &mut self,
        ch: ChannelId,
        data: &HeartbeatData,
        now: Millis,
        events: &mut Vec<ClientEvent>,
    ) -> Result<HeartbeatOutcome, ClientError> {
        let Some(entry) = self.tables.channels.get(&ch) else {
            return Err(ClientError::ChannelClosed(ch));
        };
        let mut new_groups = BTreeSet::new();
        for p in &data.producer_data_set {
            if !entry.producer_groups.contains(&p.group_name) {
                new_groups.insert((GroupKind::Producer, p.group_name.as_str()));
            }
        }
        for c in &data.consumer_data_set {
            if !entry.consumer_groups.contains(&c.group_name) {
                new_groups.insert((GroupKind::Consumer, c.group_name.as_str()));
            }
        }
        let would_be = entry.group_count() + new_groups.len();
        if would_be > self.rules.max_groups_per_channel {
            return Err(ClientError::TooManyGroups {
                channel: ch,
                would_be,
                max: self.rules.max_groups_per_channel,
            });
        }

        self.set_client_id(ch, &data.client_id);
        let mut outcome = HeartbeatOutcome {
            sub_changed: data.heartbeat_fingerprint == 0,
            joined: 0,
        };
        for p in &data.producer_data_set {
            if self.join(
                GroupKind::Producer,
                &p.group_name,
                ch,
                now,
                &data.client_id,
                events,
            ) {
                outcome.joined += 1;
            }
        }
        for c in &data.consumer_data_set {
            let joined = self.join(
                GroupKind::Consumer,
                &c.group_name,
                ch,
                now,
                &data.client_id,
                events,
            );
            outcome.joined += usize::from(joined);
            let group = self
                .tables
                .consumers
                .get_mut(&c.group_name)
                .expect("joined above");
            let meta = group.consumer.get_or_insert_with(ConsumerMeta::default);
            let update = meta.apply(c, data.heartbeat_fingerprint, data.without_sub);
            outcome.sub_changed |= update.fingerprint_differs;
            if (joined || update.subscriptions_changed) && meta.announces_changes() {
                let channels = group.members.keys().copied().collect();
                events.push(ClientEvent::ConsumerIdsChanged {
                    group: c.group_name.clone(),
                    channels,
                });
            }
        }
        Ok(outcome)
    }

    /// Removes the channel from the named groups; a closed channel is refused.
    pub fn unregister(
        &mut self,
        ch: ChannelId,
        producer_group: Option<&str>,
        consumer_group: Option<&str>,
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), ClientError> {
        if !self.tables.channels.contains_key(&ch) {
            return Err(ClientError::ChannelClosed(ch));
        }
        let named = [
            (GroupKind::Producer, producer_group),
            (GroupKind::Consumer, consumer_group),
        ];
        for (kind, group) in named {
            if let Some(group) = group {
                self.leave(kind, group, ch, RemovalCause::Unregister, events);
            }
        }
        Ok(())
    }

    /// Closes the channel: tombstones it and removes it from exactly its groups. Returns false if
    /// it was already closed (or never registered).
    pub fn close(&mut self, ch: ChannelId, events: &mut Vec<ClientEvent>) -> bool {
        let Some(entry) = self.tables.channels.get(&ch).cloned() else {
            return false;
        };
        for kind in [GroupKind::Producer, GroupKind::Consumer] {
            for group in entry.groups(kind) {
                self.leave(kind, group, ch, RemovalCause::ChannelClosed, events);
            }
        }
        self.set_client_id(ch, "");
        self.tables.channels.remove(&ch);
        self.closed.insert(ch);
        true
    }

    /// Expires every membership idle for longer than `rules.expiry_ms`.
    pub fn scan(&mut self, now: Millis, events: &mut Vec<ClientEvent>) -> Vec<ChannelId> {
        let mut expired = Vec::new();
        for kind in [GroupKind::Producer, GroupKind::Consumer] {
            for (name, group) in self.tables.groups(kind) {
                for (ch, seen) in &group.members {
                    if now.since(*seen) > self.rules.expiry_ms {
                        expired.push((kind, name.clone(), *ch));
                    }
                }
            }
        }
        let mut orphaned = Vec::new();
        for (kind, group, ch) in expired {
            self.leave(kind, &group, ch, RemovalCause::Expired, events);
            if self
                .tables
                .channels
                .get(&ch)
                .is_some_and(|e| e.group_count() == 0)
                && !orphaned.contains(&ch)
            {
                orphaned.push(ch);
            }
        }
        orphaned.sort();
        orphaned
    }

    /// Adds or refreshes one membership; returns true if it was created.
    fn join(
        &mut self,
        kind: GroupKind,
        group: &str,
        ch: ChannelId,
        now: Millis,
        client_id: &str,
        events: &mut Vec<ClientEvent>,
    ) -> bool {
        let entry = self
            .tables
            .groups_mut(kind)
            .entry(group.to_owned())
            .or_insert_with(|| GroupEntry {
                members: BTreeMap::new(),
                consumer: (kind == GroupKind::Consumer).then(ConsumerMeta::default),
            });
        let created = entry.members.insert(ch, now).is_none();
        if created {
            let chan = self.tables.channels.get_mut(&ch).expect("live channel");
            chan.groups_mut(kind).insert(group.to_owned());
            events.push(ClientEvent::ClientRegistered {
                kind,
                group: group.to_owned(),
                channel: ch,
                client_id: client_id.to_owned(),
            });
        }
        created
    }

    /// Removes one membership if present, with the events of every removal path.
    fn leave(
        &mut self,
        kind: GroupKind,
        group: &str,
        ch: ChannelId,
        cause: RemovalCause,
        events: &mut Vec<ClientEvent>,
    ) {
        let Some(chan) = self.tables.channels.get_mut(&ch) else {
            return;
        };
        if !chan.groups_mut(kind).remove(group) {
            return;
        }
        let client_id = chan.client_id.clone().unwrap_or_default();
        let groups = self.tables.groups_mut(kind);
        let entry = groups
            .get_mut(group)
            .expect("the channel's index lists the group");
        entry.members.remove(&ch);
        events.push(ClientEvent::ClientUnregistered {
            kind,
            group: group.to_owned(),
            channel: ch,
            client_id,
            cause,
        });
        if entry.members.is_empty() {
            groups.remove(group);
            events.push(ClientEvent::GroupUnregistered {
                kind,
                group: group.to_owned(),
                cause,
            });
        } else if entry
            .consumer
            .as_ref()
            .is_some_and(ConsumerMeta::announces_changes)
        {
            let channels = entry.members.keys().copied().collect();
            events.push(ClientEvent::ConsumerIdsChanged {
                group: group.to_owned(),
                channels,
            });
        }
    }

    /// Points the channel at `client_id` ("" clears it) and keeps the clients index in step.
    fn set_client_id(&mut self, ch: ChannelId, client_id: &str) {
        let entry = self.tables.channels.get_mut(&ch).expect("live channel");
        let new = (!client_id.is_empty()).then(|| client_id.to_owned());
        if entry.client_id == new {
            return;
        }
        let old = std::mem::replace(&mut entry.client_id, new.clone());
        if let Some(old) = old {
            self.unmap_client(&old, ch);
        }
        if let Some(new) = new {
            self.tables.clients.entry(new).or_default().insert(ch);
        }
    }

    fn unmap_client(&mut self, client_id: &str, ch: ChannelId) {
        if let Some(set) = self.tables.clients.get_mut(client_id) {
            set.remove(&ch);
            if set.is_empty() {
                self.tables.clients.remove(client_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(client: &str, groups: &[&str]) -> HeartbeatData {
        HeartbeatData::producers(client, groups.iter().copied())
    }

    #[test]
    fn close_removes_exactly_the_channels_groups() {
        let mut m = ClientModel::new(ClientRules::default());
        let a = m.register_channel().unwrap();
        let b = m.register_channel().unwrap();
        let mut ev = Vec::new();
        m.heartbeat(a, &hb("ca", &["g1", "g2"]), Millis(0), &mut ev)
            .unwrap();
        m.heartbeat(b, &hb("cb", &["g2"]), Millis(0), &mut ev)
            .unwrap();
        ev.clear();
        assert!(m.close(a, &mut ev));
        assert!(!m.close(a, &mut ev), "close is exactly-once");
        assert_eq!(m.tables.producers.keys().collect::<Vec<_>>(), ["g2"]);
        assert!(ev.contains(&ClientEvent::GroupUnregistered {
            kind: GroupKind::Producer,
            group: "g1".into(),
            cause: RemovalCause::ChannelClosed
        }));
        m.check_invariants().unwrap();
        assert_eq!(
            m.heartbeat(a, &hb("ca", &["g3"]), Millis(1), &mut ev),
            Err(ClientError::ChannelClosed(a))
        );
    }

    #[test]
    fn caps_refuse_whole_and_change_nothing() {
        let rules = ClientRules {
            max_channels: 1,
            max_groups_per_channel: 2,
            ..ClientRules::default()
        };
        let mut m = ClientModel::new(rules);
        let a = m.register_channel().unwrap();
        assert_eq!(
            m.register_channel(),
            Err(ClientError::TooManyChannels { max: 1 })
        );
        let mut ev = Vec::new();
        m.heartbeat(a, &hb("c", &["g1"]), Millis(0), &mut ev)
            .unwrap();
        let before = m.tables.clone();
        let err = m
            .heartbeat(a, &hb("other", &["g1", "g2", "g3"]), Millis(1), &mut ev)
            .unwrap_err();
        assert_eq!(
            err,
            ClientError::TooManyGroups {
                channel: a,
                would_be: 3,
                max: 2
            }
        );
        assert_eq!(m.tables, before);
    }

    #[test]
    fn expiry_is_per_membership() {
        let mut m = ClientModel::new(ClientRules::default());
        let a = m.register_channel().unwrap();
        let mut ev = Vec::new();
        m.heartbeat(a, &hb("c", &["old", "live"]), Millis(0), &mut ev)
            .unwrap();
        m.heartbeat(a, &hb("c", &["live"]), Millis(100_000), &mut ev)
            .unwrap();
        assert_eq!(m.scan(Millis(130_000), &mut ev), Vec::<ChannelId>::new());
        assert_eq!(m.tables.producers.keys().collect::<Vec<_>>(), ["live"]);
        assert_eq!(
            m.scan(Millis(230_001), &mut ev),
            vec![a],
            "last membership gone: orphaned"
        );
        m.check_invariants().unwrap();
    }

    #[test]
    fn invariants_catch_corruption() {
        let mut m = ClientModel::new(ClientRules::default());
        let a = m.register_channel().unwrap();
        let mut ev = Vec::new();
        m.heartbeat(a, &hb("c", &["g"]), Millis(0), &mut ev)
            .unwrap();
        let mut t = m.tables.clone();
        t.producers.get_mut("g").unwrap().members.clear();
        assert_eq!(t.check_invariants().unwrap_err().invariant, "NoEmptyGroup");
        let mut t = m.tables.clone();
        t.channels.get_mut(&a).unwrap().producer_groups.clear();
        assert_eq!(
            t.check_invariants().unwrap_err().invariant,
            "IndexesConsistent"
        );
        let mut t = m.tables.clone();
        t.clients.insert("ghost".into(), [ChannelId(99)].into());
        assert_eq!(
            t.check_invariants().unwrap_err().invariant,
            "IndexesConsistent"
        );
        assert_eq!(
            m.tables.check_no_resurrection(&[a]).unwrap_err().invariant,
            "NoResurrection"
        );
    }
}
