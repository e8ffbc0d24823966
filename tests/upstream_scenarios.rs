//! Upstream's `ProducerManagerTest`, `ConsumerManagerTest`, `ConsumerManagerScannerTest` and the
//! heartbeat part of `ClientManageProcessorTest` (RocketMQ's broker module tests), plus the regressions of
//! the upstream bugs this registry exists to avoid (#8673, #10698, #10435, #6810, #11114).
//! Where our semantics deliberately differ from upstream's, the test says so and why.
//!
//! Channels are opened, fed and closed through the public lifecycle API (`ClientChannel`
//! handles, via `support/channel.rs`), as a broker embedding the registry does.

#[path = "support/channel.rs"]
mod channel;

use channel::Channel;
use rmq_lifecycle::core::heartbeat::{ConsumerData, MessageModel, SubscriptionData};
use rmq_lifecycle::core::{ChannelId, ClientEvent, GroupKind, HeartbeatData, Millis, RemovalCause};
use rmq_lifecycle::registry::{ChannelHealth, ClientRegistry, RegistryConfig};
use std::sync::{Arc, Mutex};

const EXPIRY: u64 = 120_000;

struct Fixture {
    registry: Arc<ClientRegistry>,
    events: Arc<Mutex<Vec<ClientEvent>>>,
}

impl Fixture {
    fn new() -> Self {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let registry = Arc::new(ClientRegistry::with_listener(
            RegistryConfig::default(),
            move |e: &ClientEvent| sink.lock().unwrap().push(e.clone()),
        ));
        Fixture { registry, events }
    }

    fn take(&self) -> Vec<ClientEvent> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

fn producer(client: &str, group: &str) -> HeartbeatData {
    HeartbeatData::producers(client, [group])
}

fn consumer(client: &str, group: &str, model: MessageModel, topics: &[&str]) -> HeartbeatData {
    HeartbeatData {
        client_id: client.into(),
        consumer_data_set: vec![ConsumerData {
            group_name: group.into(),
            message_model: model,
            subscription_data_set: topics
                .iter()
                .map(|t| SubscriptionData {
                    topic: (*t).into(),
                    sub_string: "*".into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn unregistered(
    kind: GroupKind,
    group: &str,
    ch: ChannelId,
    client: &str,
    cause: RemovalCause,
) -> ClientEvent {
    ClientEvent::ClientUnregistered {
        kind,
        group: group.into(),
        channel: ch,
        client_id: client.into(),
        cause,
    }
}

fn group_gone(kind: GroupKind, group: &str, cause: RemovalCause) -> ClientEvent {
    ClientEvent::GroupUnregistered {
        kind,
        group: group.into(),
        cause,
    }
}

// ---- ProducerManagerTest ----

#[test]
fn producer_scan_not_active_channel() {
    let f = Fixture::new();
    let ch = Channel::open(&f.registry).unwrap();
    ch.heartbeat(&producer("clientId", "FooBar"), Millis(0))
        .unwrap();
    f.take();
    let report = f.registry.scan_inactive(Millis(EXPIRY + 10));
    assert_eq!(report.expired, 1);
    assert_eq!(f.registry.producer_group_count(), 0, "group map removed");
    assert_eq!(
        f.take(),
        [
            unregistered(
                GroupKind::Producer,
                "FooBar",
                ch.id(),
                "clientId",
                RemovalCause::Expired
            ),
            group_gone(GroupKind::Producer, "FooBar", RemovalCause::Expired),
        ]
    );
    assert_eq!(
        report.orphaned,
        [ch.id()],
        "upstream closes such a channel; we report it to the transport"
    );
    // Deviation: upstream also drops findChannel("clientId"). The connection is still open here
    // (expiry is per membership), so it stays findable until it closes.
    assert_eq!(f.registry.find_channel("clientId"), Some(ch.id()));
    f.registry.check_invariants().unwrap();
}

#[test]
fn producer_scan_with_same_client_id_keeps_the_new_channel() {
    // #6810: the same client reconnects on B; expiring A must not unmap B.
    let f = Fixture::new();
    let a = Channel::open(&f.registry).unwrap();
    let b = Channel::open(&f.registry).unwrap();
    a.heartbeat(&producer("clientId", "FooBar"), Millis(0))
        .unwrap();
    b.heartbeat(&producer("clientId", "FooBar"), Millis(EXPIRY))
        .unwrap();
    f.registry.scan_inactive(Millis(EXPIRY + 10));
    assert_eq!(f.registry.members(GroupKind::Producer, "FooBar"), [b.id()]);
    a.close();
    assert_eq!(f.registry.find_channel("clientId"), Some(b.id()));
    f.registry.check_invariants().unwrap();
}

#[test]
fn producer_do_channel_close_event() {
    let f = Fixture::new();
    let ch = Channel::open(&f.registry).unwrap();
    ch.heartbeat(&producer("clientId", "FooBar"), Millis(0))
        .unwrap();
    f.take();
    assert!(ch.close());
    assert_eq!(
        f.registry.producer_group_count(),
        0,
        "5.x removes the empty group on close (#8673)"
    );
    assert_eq!(
        f.take(),
        [
            unregistered(
                GroupKind::Producer,
                "FooBar",
                ch.id(),
                "clientId",
                RemovalCause::ChannelClosed
            ),
            group_gone(GroupKind::Producer, "FooBar", RemovalCause::ChannelClosed),
        ]
    );
    assert_eq!(f.registry.find_channel("clientId"), None);
    assert_eq!(f.registry.channel_count(), 0);
}

#[test]
fn producer_unregister() {
    let f = Fixture::new();
    let ch = Channel::open(&f.registry).unwrap();
    ch.heartbeat(&producer("clientId", "FooBar"), Millis(0))
        .unwrap();
    f.take();
    ch.unregister("clientId", Some("FooBar"), None).unwrap();
    assert_eq!(
        f.take(),
        [
            unregistered(
                GroupKind::Producer,
                "FooBar",
                ch.id(),
                "clientId",
                RemovalCause::Unregister
            ),
            group_gone(GroupKind::Producer, "FooBar", RemovalCause::Unregister),
        ]
    );
    // testGetGroupChannelTable: the group's channel set is empty (here: gone) after unregister.
    assert!(f.registry.members(GroupKind::Producer, "FooBar").is_empty());
    f.registry.check_invariants().unwrap();
}

#[test]
fn producer_get_available_channel() {
    let f = Fixture::new();
    let ch = Channel::open(&f.registry).unwrap();
    ch.heartbeat(&producer("clientId", "FooBar"), Millis(0))
        .unwrap();
    assert_eq!(
        f.registry
            .available_channel("FooBar", |_| ChannelHealth::Writable),
        Some(ch.id())
    );
    assert_eq!(
        f.registry
            .available_channel("FooBar", |_| ChannelHealth::Active),
        Some(ch.id()),
        "fallback"
    );
    assert_eq!(
        f.registry
            .available_channel("FooBar", |_| ChannelHealth::Inactive),
        None
    );
    assert_eq!(
        f.registry
            .available_channel("NoSuchGroup", |_| ChannelHealth::Writable),
        None
    );
}

#[test]
fn available_channel_round_robins_and_checks_at_most_three() {
    let f = Fixture::new();
    let chans: Vec<_> = (0..5)
        .map(|_| Channel::open(&f.registry).unwrap())
        .collect();
    for ch in &chans {
        ch.heartbeat(&producer("c", "G"), Millis(0)).unwrap();
    }
    let picks: Vec<_> = (0..5)
        .map(|_| {
            f.registry
                .available_channel("G", |_| ChannelHealth::Writable)
                .unwrap()
        })
        .collect();
    let mut distinct = picks.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        5,
        "five calls visit five members: {picks:?}"
    );
    let probes = std::cell::Cell::new(0);
    let pick = f.registry.available_channel("G", |_| {
        probes.set(probes.get() + 1);
        ChannelHealth::Active
    });
    assert!(pick.is_some());
    assert_eq!(probes.get(), 3);
}

// ---- ConsumerManagerTest / ConsumerManagerScannerTest ----

#[test]
fn consumer_broadcasting_register_and_unregister_never_fire_change() {
    let f = Fixture::new();
    let ch = Channel::open(&f.registry).unwrap();
    let hb = consumer(
        "c",
        "DEFAULT_GROUP",
        MessageModel::Broadcasting,
        &["DEFAULT_TOPIC"],
    );
    ch.heartbeat(&hb, Millis(0)).unwrap();
    assert_eq!(f.registry.consumer_group_count(), 1);
    assert_eq!(
        f.registry.consumer_groups_of_topic("DEFAULT_TOPIC"),
        ["DEFAULT_GROUP"]
    );
    ch.unregister("c", None, Some("DEFAULT_GROUP")).unwrap();
    assert_eq!(f.registry.consumer_group_count(), 0);
    assert!(
        !f.take()
            .iter()
            .any(|e| matches!(e, ClientEvent::ConsumerIdsChanged { .. }))
    );
}

#[test]
fn consumer_clustering_changes_are_announced() {
    let f = Fixture::new();
    let a = Channel::open(&f.registry).unwrap();
    let b = Channel::open(&f.registry).unwrap();
    let hb = consumer("c", "G", MessageModel::Clustering, &["T"]);
    a.heartbeat(&hb, Millis(0)).unwrap();
    b.heartbeat(&hb, Millis(0)).unwrap();
    f.take();
    a.heartbeat(&hb, Millis(1)).unwrap();
    assert_eq!(f.take(), [], "a refresh changes nothing");
    a.close();
    assert_eq!(
        f.take(),
        [
            unregistered(
                GroupKind::Consumer,
                "G",
                a.id(),
                "c",
                RemovalCause::ChannelClosed
            ),
            ClientEvent::ConsumerIdsChanged {
                group: "G".into(),
                channels: vec![b.id()]
            },
        ]
    );
}

#[test]
fn consumer_lookups_after_register() {
    let f = Fixture::new();
    let ch = Channel::open(&f.registry).unwrap();
    ch.heartbeat(
        &consumer("c", "G", MessageModel::Clustering, &["T"]),
        Millis(0),
    )
    .unwrap();
    assert_eq!(f.registry.members(GroupKind::Consumer, "G"), [ch.id()]);
    let meta = f.registry.consumer_meta("G").unwrap();
    assert_eq!(meta.subscriptions.len(), 1);
    assert_eq!(meta.subscriptions["T"].sub_string, "*");
    assert_eq!(
        f.registry.consumer_groups_of_topic("T"),
        ["G"],
        "queryTopicConsumeByWho"
    );
}

#[test]
fn consumer_scan_on_empty_registry_and_close_of_unknown_channel() {
    let f = Fixture::new();
    assert_eq!(f.registry.scan_inactive(Millis(1_000_000)).expired, 0);
    let ch = Channel::open(&f.registry).unwrap();
    assert!(ch.close());
    assert_eq!(f.take(), [], "a channel in no group: no event");
    assert_eq!(f.registry.consumer_group_count(), 0);
}

#[test]
fn consumer_register_without_sub_keeps_the_topic_index() {
    let f = Fixture::new();
    let ch = Channel::open(&f.registry).unwrap();
    let mut full = consumer("c", "G", MessageModel::Clustering, &["T"]);
    full.heartbeat_fingerprint = 42;
    ch.heartbeat(&full, Millis(0)).unwrap();
    let mut lean = consumer("c", "G", MessageModel::Clustering, &[]);
    lean.heartbeat_fingerprint = 42;
    lean.without_sub = true;
    let outcome = ch.heartbeat(&lean, Millis(1)).unwrap();
    assert!(!outcome.sub_changed);
    assert_eq!(f.registry.consumer_groups_of_topic("T"), ["G"]);
}

/// `ConsumerManagerScannerTest`: exactly one CLIENT_UNREGISTER on each removal path.
#[test]
fn consumer_client_unregister_event_on_every_path() {
    for cause in [
        RemovalCause::ChannelClosed,
        RemovalCause::Unregister,
        RemovalCause::Expired,
    ] {
        let f = Fixture::new();
        let ch = Channel::open(&f.registry).unwrap();
        ch.heartbeat(
            &consumer("c", "G", MessageModel::Clustering, &[]),
            Millis(0),
        )
        .unwrap();
        f.take();
        match cause {
            RemovalCause::ChannelClosed => assert!(ch.close()),
            RemovalCause::Unregister => ch.unregister("c", None, Some("G")).unwrap(),
            RemovalCause::Expired => {
                assert_eq!(f.registry.scan_inactive(Millis(EXPIRY + 1)).expired, 1)
            }
        }
        // #11114: the scan path fires UNREGISTER for the emptied group like the others.
        assert_eq!(
            f.take(),
            [
                unregistered(GroupKind::Consumer, "G", ch.id(), "c", cause),
                group_gone(GroupKind::Consumer, "G", cause)
            ],
            "{cause:?}"
        );
        assert_eq!(
            f.registry.consumer_groups_of_topic("T"),
            Vec::<String>::new()
        );
    }
}

// ---- ClientManageProcessorTest.processRequest_heartbeat (v2) ----

#[test]
fn heartbeat_v2_sub_change_sequence() {
    let f = Fixture::new();
    let ch = Channel::open(&f.registry).unwrap();
    let v2 = |topics: &[&str], fingerprint, without_sub| {
        let mut hb = consumer("c", "FooBarGroup", MessageModel::Clustering, topics);
        hb.heartbeat_fingerprint = fingerprint;
        hb.without_sub = without_sub;
        hb
    };
    let seq = [
        (v2(&["topicA"], 1, false), false),
        (v2(&[], 1, true), false),
        (v2(&["topicB"], 2, false), true),
        (v2(&[], 2, true), false),
    ];
    for (i, (hb, expect)) in seq.iter().enumerate() {
        let outcome = ch.heartbeat(hb, Millis(i as u64)).unwrap();
        assert_eq!(outcome.sub_changed, *expect, "heartbeat {i}");
    }
    assert_eq!(
        f.registry.consumer_groups_of_topic("topicB"),
        ["FooBarGroup"]
    );
    let v1 = ch
        .heartbeat(
            &consumer("c", "FooBarGroup", MessageModel::Clustering, &[]),
            Millis(9),
        )
        .unwrap();
    assert!(v1.sub_changed, "v1 always answers IS_SUB_CHANGE=true");
}

// ---- upstream bugs ----

/// #8673: 15,000 abandoned `IotRuleEngine-<ts>` producer groups; every close removes its group.
#[test]
fn abandoned_groups_do_not_accumulate() {
    let f = Fixture::new();
    for ts in 0..15_000u64 {
        let ch = Channel::open(&f.registry).unwrap();
        ch.heartbeat(&producer("iot", &format!("IotRuleEngine-{ts}")), Millis(ts))
            .unwrap();
        ch.close();
    }
    assert_eq!(f.registry.producer_group_count(), 0);
    assert_eq!(f.registry.channel_count(), 0);
    assert!(f.registry.snapshot().is_empty());
}

/// #10435: expiry is per (group, channel); refreshing one group does not keep another alive.
#[test]
fn expiry_is_per_membership() {
    let f = Fixture::new();
    let ch = Channel::open(&f.registry).unwrap();
    let both = HeartbeatData::producers("c", ["A", "B"]);
    ch.heartbeat(&both, Millis(0)).unwrap();
    for t in (30_000..=150_000).step_by(30_000) {
        ch.heartbeat(&producer("c", "A"), Millis(t)).unwrap();
    }
    let report = f.registry.scan_inactive(Millis(150_000));
    assert_eq!(report.expired, 1);
    assert!(report.orphaned.is_empty());
    assert_eq!(f.registry.members(GroupKind::Producer, "A"), [ch.id()]);
    assert!(f.registry.members(GroupKind::Producer, "B").is_empty());
}

/// #10698's interleaving, run sequentially: registering into a group right after its last member
/// left lands in a fresh group, never in the removed one.
#[test]
fn registration_after_group_removal_creates_a_fresh_group() {
    let f = Fixture::new();
    let a = Channel::open(&f.registry).unwrap();
    let b = Channel::open(&f.registry).unwrap();
    a.heartbeat(&producer("a", "G"), Millis(0)).unwrap();
    a.close();
    b.heartbeat(&producer("b", "G"), Millis(1)).unwrap();
    assert_eq!(f.registry.members(GroupKind::Producer, "G"), [b.id()]);
    f.registry.check_invariants().unwrap();
}

#[test]
fn caps_refuse_with_a_clear_error_and_change_nothing() {
    let config = RegistryConfig {
        rules: rmq_lifecycle::core::ClientRules {
            max_channels: 2,
            max_groups_per_channel: 3,
            ..Default::default()
        },
        ..RegistryConfig::default()
    };
    let registry = Arc::new(ClientRegistry::new(config));
    let a = Channel::open(&registry).unwrap();
    let _b = Channel::open(&registry).unwrap();
    let err = Channel::open(&registry).unwrap_err();
    assert_eq!(err.to_string(), "too many client channels (limit 2)");
    a.heartbeat(&HeartbeatData::producers("c", ["g1", "g2"]), Millis(0))
        .unwrap();
    let before = registry.snapshot();
    let err = a
        .heartbeat(
            &HeartbeatData::producers("c", ["g1", "g3", "g4", "g4"]),
            Millis(1),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{} would be in 4 groups (limit 3)", a.id())
    );
    assert_eq!(registry.snapshot(), before);
    a.close();
    assert!(
        Channel::open(&registry).is_ok(),
        "a closed channel frees its slot"
    );
}

#[test]
fn a_panicking_listener_does_not_break_the_registry() {
    let registry = Arc::new(ClientRegistry::with_listener(
        RegistryConfig::default(),
        |_: &ClientEvent| panic!("listener bug"),
    ));
    let ch = Channel::open(&registry).unwrap();
    ch.heartbeat(&producer("c", "G"), Millis(0)).unwrap();
    assert!(ch.close());
    assert_eq!(registry.producer_group_count(), 0);
    registry.check_invariants().unwrap();
}
