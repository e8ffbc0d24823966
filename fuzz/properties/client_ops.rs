//! The `client_ops` fuzz property: op sequences applied to the concurrent `ClientRegistry` and to
//! the sequential oracle `core::tables::ClientModel`, compared after every op: the op's result,
//! the events it emitted (as a multiset: the registry visits a channel's groups in hash order)
//! and the whole tables; `check_invariants()` and `NoResurrection` are checked on both.
//!
//! The registry is driven through the public lifecycle API only, one call per op: `Register` is
//! `ClientChannel::new((), ..).register(&registry)`, heartbeats and unregisters go through the
//! channel's `ChannelHandle`, `Close` consumes its `Registered` handle (`ClientChannel::close`),
//! and `Scan` is the housekeeping `scan_inactive`. Needs the crate's `harness` feature (`Faults`,
//! the model's ops).
//!
//! Shared by the fuzz target (bytes -> [`Step`]s through [`decode`]), `tests/props.rs` (proptest
//! strategies -> `Step`s) and `tests/fuzz_corpus.rs`, all through `#[path]`. Single-threaded:
//! races (`Faults::split_remove_if_empty`) are for loom, shuttle and TLC.

#![allow(dead_code)] // Each includer uses a different part.

use rmq_lifecycle::core::heartbeat::{ConsumerData, MessageModel, ProducerData, SubscriptionData};
use rmq_lifecycle::core::tables::{ClientModel, ClientOp, OpResult};
use rmq_lifecycle::core::{ClientEvent, ClientRules, GroupKind, HeartbeatData, Millis};
use rmq_lifecycle::lifecycle::{ChannelHandle, ClientChannel, CloseReason};
use rmq_lifecycle::phase::Registered;
use rmq_lifecycle::registry::{ClientRegistry, Faults, RegistryConfig};
use std::sync::{Arc, Mutex};

/// Producer group names the ops pick from.
pub(crate) const PRODUCER_GROUPS: &[&str] = &["pg0", "pg1", "pg2"];
/// Consumer group names the ops pick from.
pub(crate) const CONSUMER_GROUPS: &[&str] = &["cg0", "cg1"];
/// Topics the subscriptions pick from.
pub(crate) const TOPICS: &[&str] = &["t0", "t1"];
/// Client ids the heartbeats pick from ("" is a heartbeat without one).
pub(crate) const CLIENTS: &[&str] = &["", "cA", "cB"];
/// Heartbeat fingerprints (0: the client does not send one).
pub(crate) const FINGERPRINTS: &[i64] = &[0, 7, 9];
/// Channel slots the ops address (an index past the registered ones skips the op).
pub(crate) const SLOTS: usize = 5;
/// Largest clock step.
pub(crate) const MAX_ADVANCE: u64 = 80;
/// Ops per input at most.
pub(crate) const MAX_OPS: usize = 64;

/// An op before channel indices are resolved against the channels registered so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// A connection is accepted.
    Register,
    /// `HEART_BEAT` on the `who`-th channel registered.
    Heartbeat {
        /// Channel index.
        who: usize,
        /// The body.
        data: HeartbeatData,
    },
    /// `UNREGISTER_CLIENT`, naming groups by index.
    Unregister {
        /// Channel index.
        who: usize,
        /// Index into [`PRODUCER_GROUPS`].
        producer: Option<usize>,
        /// Index into [`CONSUMER_GROUPS`].
        consumer: Option<usize>,
    },
    /// The connection closes.
    Close {
        /// Channel index.
        who: usize,
    },
    /// The expiry scan.
    Scan,
    /// The clock moves on.
    Advance(u64),
}

/// The rules both sides run with: small caps and a short expiry, so the edges are reachable.
pub(crate) fn rules() -> ClientRules {
    ClientRules {
        expiry_ms: 100,
        max_channels: 4,
        max_groups_per_channel: 4,
    }
}

/// One registered channel as the driver holds it: its handle for heartbeats and unregisters,
/// and the `Registered` handle until a `Close` step consumes it.
struct Slot {
    handle: ChannelHandle,
    open: Option<ClientChannel<Registered, ()>>,
}

fn sorted(mut v: Vec<ClientEvent>) -> Vec<ClientEvent> {
    v.sort();
    v
}

/// Runs `steps` on both implementations; the first divergence or violation, naming the step.
pub(crate) fn run(steps: &[Step], faults: Faults) -> Result<(), String> {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = heard.clone();
    let config = RegistryConfig {
        rules: rules(),
        shards: 4,
        faults,
    };
    let registry = Arc::new(ClientRegistry::with_listener(
        config,
        move |e: &ClientEvent| sink.lock().unwrap().push(e.clone()),
    ));
    let mut model = ClientModel::new(rules());
    // Every channel registered so far, in order; the ops reach the registry only through these
    // handles (the public lifecycle API), never through the registry's own mutators.
    let mut slots: Vec<Slot> = Vec::new();
    let mut now = Millis(0);

    for (i, step) in steps.iter().enumerate() {
        let slot = |who: &usize| slots.get(*who).map(|s| s.handle.clone());
        let (op, actual) = match step {
            Step::Advance(dt) => {
                now = Millis(now.0 + dt);
                continue;
            }
            Step::Register => {
                let actual = match ClientChannel::new((), "fuzz").register(&registry) {
                    Ok(registered) => {
                        let channel = registered.id();
                        slots.push(Slot {
                            handle: registered.handle(),
                            open: Some(registered),
                        });
                        OpResult::Registered { channel }
                    }
                    Err(refused) => OpResult::Refused {
                        error: refused.error.to_string(),
                    },
                };
                (ClientOp::RegisterChannel, actual)
            }
            Step::Heartbeat { who, data } => {
                let Some(s) = slot(who) else { continue };
                let actual = match s.heartbeat(data, now) {
                    Ok(outcome) => OpResult::Heartbeat { outcome },
                    Err(e) => OpResult::Refused {
                        error: e.to_string(),
                    },
                };
                let channel = s.id();
                let data = data.clone();
                (ClientOp::Heartbeat { channel, data, now }, actual)
            }
            Step::Unregister {
                who,
                producer,
                consumer,
            } => {
                let Some(s) = slot(who) else { continue };
                let producer_group = producer.map(|g| PRODUCER_GROUPS[g].to_owned());
                let consumer_group = consumer.map(|g| CONSUMER_GROUPS[g].to_owned());
                let actual = match s.unregister(
                    "cA",
                    producer_group.as_deref(),
                    consumer_group.as_deref(),
                ) {
                    Ok(()) => OpResult::Unregistered,
                    Err(e) => OpResult::Refused {
                        error: e.to_string(),
                    },
                };
                let channel = s.id();
                let op = ClientOp::Unregister {
                    channel,
                    producer_group,
                    consumer_group,
                };
                (op, actual)
            }
            Step::Close { who } => {
                let Some(s) = slots.get_mut(*who) else {
                    continue;
                };
                let channel = s.handle.id();
                let at = |what: &str| format!("step {i} close of {channel}: {what}");
                // The first close consumes the `Registered` handle; a later one finds none and
                // closes nothing, which is what the registry's own close used to answer. The
                // registry must agree: open until the handle closes it, closed after.
                let closed = match s.open.take() {
                    Some(registered) => {
                        if s.handle.is_closed() {
                            return Err(at("closed in the registry while its handle is held"));
                        }
                        registered.close(CloseReason::PeerClosed);
                        if !s.handle.is_closed() {
                            return Err(at("still open in the registry after its handle closed"));
                        }
                        true
                    }
                    None => {
                        if !s.handle.is_closed() {
                            return Err(at("its handle was closed, but the registry has it open"));
                        }
                        false
                    }
                };
                (ClientOp::Close { channel }, OpResult::Closed { closed })
            }
            Step::Scan => {
                let orphaned = registry.scan_inactive(now).orphaned;
                (ClientOp::Scan { now }, OpResult::Scanned { orphaned })
            }
        };
        let mut expected_events = Vec::new();
        let expected = model.apply(&op, &mut expected_events);
        let events = std::mem::take(&mut *heard.lock().unwrap());

        let snapshot = registry.snapshot();
        let at = |what: String| format!("step {i} {op:?}: {what}");
        snapshot
            .check_no_resurrection(&model.closed)
            .map_err(|v| at(v.to_string()))?;
        registry.check_invariants().map_err(|v| at(v.to_string()))?;
        model
            .check_invariants()
            .map_err(|v| at(format!("the oracle itself: {v}")))?;
        if actual != expected {
            return Err(at(format!("result {actual:?}, oracle {expected:?}")));
        }
        let (events, expected_events) = (sorted(events), sorted(expected_events));
        if events != expected_events {
            return Err(at(format!("events {events:?}, oracle {expected_events:?}")));
        }
        if snapshot != model.tables {
            return Err(at(format!(
                "tables\n{snapshot:#?}\noracle\n{:#?}",
                model.tables
            )));
        }
        for kind in [GroupKind::Producer, GroupKind::Consumer] {
            let names = model.tables.groups(kind).keys().map(String::as_str);
            for group in names.chain(["no-such-group"]) {
                let found = registry.connections(kind, group).map(|conns| {
                    conns
                        .into_iter()
                        .map(|c| (c.channel, c.client_id, c.last_update))
                        .collect::<Vec<_>>()
                });
                let expected = model.connections(kind, group);
                if found != expected {
                    return Err(at(format!(
                        "connections({kind:?}, {group}) = {found:?}, oracle {expected:?}"
                    )));
                }
            }
        }
        let producers = registry.producer_connections();
        if !producers.keys().eq(model.tables.producers.keys()) {
            return Err(at(format!(
                "producer_connections lists {:?}, oracle {:?}",
                producers.keys().collect::<Vec<_>>(),
                model.tables.producers.keys().collect::<Vec<_>>()
            )));
        }
        if let Some(id) = model.tables.clients.keys().next() {
            let live = &model.tables.clients[id];
            let found = registry.find_channel(id);
            if !found.is_some_and(|c| live.contains(&c)) {
                return Err(at(format!("find_channel({id}) = {found:?}, live {live:?}")));
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Bytes <-> steps. Every byte string decodes to a (possibly empty) sequence; `encode` is its
// inverse on the steps the strategies of `tests/props.rs` generate, for writing seeds.

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
}

fn decode_heartbeat(b: &mut Bytes<'_>) -> Option<HeartbeatData> {
    // client id (2 bits), fingerprint (2 bits), without_sub (1 bit), producer count (2 bits)
    let head = b.byte()?;
    let producers = (0..(head >> 5) & 3)
        .map(|_| {
            let g = usize::from(b.byte()?) % PRODUCER_GROUPS.len();
            Some(ProducerData {
                group_name: PRODUCER_GROUPS[g].into(),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let consumers = (0..b.byte()? % 3)
        .map(|_| {
            // group (1 bit), broadcast (1 bit), subscription count (2 bits)
            let c = b.byte()?;
            let subs = (0..((c >> 2) & 3) % 3)
                .map(|_| {
                    // topic (1 bit), version (the rest)
                    let s = b.byte()?;
                    Some(SubscriptionData {
                        topic: TOPICS[usize::from(s & 1)].into(),
                        sub_version: i64::from((s >> 1) % 3),
                        ..Default::default()
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            Some(ConsumerData {
                group_name: CONSUMER_GROUPS[usize::from(c & 1)].into(),
                message_model: if c & 2 != 0 {
                    MessageModel::Broadcasting
                } else {
                    MessageModel::Clustering
                },
                subscription_data_set: subs,
                ..Default::default()
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(HeartbeatData {
        client_id: CLIENTS[usize::from(head & 3) % CLIENTS.len()].into(),
        producer_data_set: producers,
        consumer_data_set: consumers,
        heartbeat_fingerprint: FINGERPRINTS[usize::from((head >> 2) & 3) % FINGERPRINTS.len()],
        without_sub: head & 0x10 != 0,
    })
}

fn decode_step(b: &mut Bytes<'_>) -> Option<Step> {
    let who = |b: &mut Bytes<'_>| Some(usize::from(b.byte()?) % SLOTS);
    Some(match b.byte()? % 8 {
        0 => Step::Register,
        1 | 2 => Step::Heartbeat {
            who: who(b)?,
            data: decode_heartbeat(b)?,
        },
        3 => {
            let who = who(b)?;
            let p = b.byte()?;
            let producer = usize::from(p & 3);
            let consumer = usize::from((p >> 2) & 3) % 3;
            Step::Unregister {
                who,
                producer: producer.checked_sub(1),
                consumer: consumer.checked_sub(1),
            }
        }
        4 => Step::Close { who: who(b)? },
        5 => Step::Scan,
        _ => Step::Advance(u64::from(b.byte()?) % MAX_ADVANCE),
    })
}

/// Decodes at most [`MAX_OPS`] steps.
pub(crate) fn decode(data: &[u8]) -> Vec<Step> {
    let mut b = Bytes(data);
    std::iter::from_fn(|| decode_step(&mut b))
        .take(MAX_OPS)
        .collect()
}

fn index_of<T: PartialEq + ?Sized>(all: &[&T], x: &T) -> u8 {
    all.iter().position(|a| *a == x).unwrap_or(0) as u8
}

/// The bytes [`decode`] turns into `steps` (names outside the fixed lists become the first one).
pub(crate) fn encode(steps: &[Step]) -> Vec<u8> {
    let mut out = Vec::new();
    for step in steps {
        match step {
            Step::Register => out.push(0),
            Step::Heartbeat { who, data } => {
                out.extend_from_slice(&[1, *who as u8]);
                let fp = FINGERPRINTS
                    .iter()
                    .position(|f| *f == data.heartbeat_fingerprint)
                    .unwrap_or(0) as u8;
                let producers = data.producer_data_set.len().min(3) as u8;
                out.push(
                    index_of(CLIENTS, data.client_id.as_str())
                        | fp << 2
                        | u8::from(data.without_sub) << 4
                        | producers << 5,
                );
                for p in data.producer_data_set.iter().take(3) {
                    out.push(index_of(PRODUCER_GROUPS, p.group_name.as_str()));
                }
                out.push(data.consumer_data_set.len().min(2) as u8);
                for c in data.consumer_data_set.iter().take(2) {
                    let subs = c.subscription_data_set.len().min(2) as u8;
                    let broadcast = c.message_model == MessageModel::Broadcasting;
                    out.push(
                        index_of(CONSUMER_GROUPS, c.group_name.as_str())
                            | u8::from(broadcast) << 1
                            | subs << 2,
                    );
                    for s in c.subscription_data_set.iter().take(2) {
                        let version = s.sub_version.clamp(0, 2) as u8;
                        out.push(index_of(TOPICS, s.topic.as_str()) | version << 1);
                    }
                }
            }
            Step::Unregister {
                who,
                producer,
                consumer,
            } => {
                let p = producer.map_or(0, |g| g as u8 + 1);
                let c = consumer.map_or(0, |g| g as u8 + 1);
                out.extend_from_slice(&[3, *who as u8, p | c << 2]);
            }
            Step::Close { who } => out.extend_from_slice(&[4, *who as u8]),
            Step::Scan => out.push(5),
            Step::Advance(dt) => out.extend_from_slice(&[6, (*dt % MAX_ADVANCE) as u8]),
        }
    }
    out
}

/// [`run`] on the steps `data` decodes to.
pub(crate) fn check_with(data: &[u8], faults: Faults) -> Result<(), String> {
    run(&decode(data), faults)
}

/// The fuzz property: the registry matches the oracle after every op.
pub(crate) fn check(data: &[u8]) {
    if let Err(e) = check_with(data, Faults::default()) {
        panic!("{e}");
    }
}
