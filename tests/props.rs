//! Random op sequences applied to the concurrent `ClientRegistry` and to the sequential oracle
//! `core::tables::ClientModel`, compared after every step: the op's result, the events it emitted
//! (as a multiset: the registry visits a channel's groups in hash order), and the whole tables.
//! `check_invariants()` and `NoResurrection` are checked after every step too.
//!
//! The harness is also run against two deliberately broken registries (empty groups kept, as in
//! upstream #8673; heartbeats after close accepted) and must find a counterexample for each.
//!
//! `cargo test --test props`; `PROPTEST_CASES=5000 cargo test --release --test props` for more.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use rmq_lifecycle::core::heartbeat::{ConsumerData, MessageModel, ProducerData, SubscriptionData};
use rmq_lifecycle::core::tables::{ClientModel, ClientOp, OpResult};
use rmq_lifecycle::core::{ClientEvent, ClientRules, HeartbeatData, Millis};
use rmq_lifecycle::registry::{ChannelRef, ClientRegistry, Faults, RegistryConfig};
use std::sync::{Arc, Mutex};

const PRODUCER_GROUPS: &[&str] = &["pg0", "pg1", "pg2"];
const CONSUMER_GROUPS: &[&str] = &["cg0", "cg1"];
const TOPICS: &[&str] = &["t0", "t1"];

/// An op before channel indices are resolved against the channels registered so far.
#[derive(Debug, Clone)]
enum Step {
    Register,
    Heartbeat {
        who: usize,
        data: HeartbeatData,
    },
    Unregister {
        who: usize,
        producer: Option<usize>,
        consumer: Option<usize>,
    },
    Close {
        who: usize,
    },
    Scan,
    Advance(u64),
}

fn subscription() -> impl Strategy<Value = SubscriptionData> {
    (0..TOPICS.len(), 0i64..3).prop_map(|(t, v)| SubscriptionData {
        topic: TOPICS[t].into(),
        sub_version: v,
        ..Default::default()
    })
}

fn consumer() -> impl Strategy<Value = ConsumerData> {
    (
        0..CONSUMER_GROUPS.len(),
        any::<bool>(),
        prop::collection::vec(subscription(), 0..3),
    )
        .prop_map(|(g, broadcast, subs)| ConsumerData {
            group_name: CONSUMER_GROUPS[g].into(),
            message_model: if broadcast {
                MessageModel::Broadcasting
            } else {
                MessageModel::Clustering
            },
            subscription_data_set: subs,
            ..Default::default()
        })
}

fn heartbeat() -> impl Strategy<Value = HeartbeatData> {
    (
        prop::sample::select(vec!["", "cA", "cB"]),
        prop::collection::vec(0..PRODUCER_GROUPS.len(), 0..4),
        prop::collection::vec(consumer(), 0..3),
        prop::sample::select(vec![0i64, 7, 9]),
        any::<bool>(),
    )
        .prop_map(
            |(client, producers, consumers, fingerprint, without_sub)| HeartbeatData {
                client_id: client.into(),
                producer_data_set: producers
                    .into_iter()
                    .map(|g| ProducerData {
                        group_name: PRODUCER_GROUPS[g].into(),
                    })
                    .collect(),
                consumer_data_set: consumers,
                heartbeat_fingerprint: fingerprint,
                without_sub,
            },
        )
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => Just(Step::Register),
        6 => (0..5usize, heartbeat()).prop_map(|(who, data)| Step::Heartbeat { who, data }),
        2 => (0..5usize, prop::option::of(0..PRODUCER_GROUPS.len()), prop::option::of(0..CONSUMER_GROUPS.len()))
            .prop_map(|(who, producer, consumer)| Step::Unregister { who, producer, consumer }),
        2 => (0..5usize).prop_map(|who| Step::Close { who }),
        2 => Just(Step::Scan),
        3 => (0u64..80).prop_map(Step::Advance),
    ]
}

fn rules() -> ClientRules {
    ClientRules {
        expiry_ms: 100,
        max_channels: 4,
        max_groups_per_channel: 4,
    }
}

fn sorted(mut v: Vec<ClientEvent>) -> Vec<ClientEvent> {
    v.sort();
    v
}

/// Runs `steps` on both implementations; returns the first divergence or violation.
fn check(steps: &[Step], faults: Faults) -> Result<(), TestCaseError> {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = heard.clone();
    let config = RegistryConfig {
        rules: rules(),
        shards: 4,
        faults,
    };
    let registry = ClientRegistry::with_listener(config, move |e: &ClientEvent| {
        sink.lock().unwrap().push(e.clone())
    });
    let mut model = ClientModel::new(rules());
    let mut slots: Vec<ChannelRef> = Vec::new();
    let mut now = Millis(0);

    for (i, step) in steps.iter().enumerate() {
        let slot = |who: &usize| slots.get(*who).cloned();
        let (op, actual) = match step {
            Step::Advance(dt) => {
                now = Millis(now.0 + dt);
                continue;
            }
            Step::Register => {
                let actual = match registry.register_channel() {
                    Ok(s) => {
                        let channel = s.id();
                        slots.push(s);
                        OpResult::Registered { channel }
                    }
                    Err(e) => OpResult::Refused {
                        error: e.to_string(),
                    },
                };
                (ClientOp::RegisterChannel, actual)
            }
            Step::Heartbeat { who, data } => {
                let Some(s) = slot(who) else { continue };
                let actual = match registry.heartbeat(&s, data, now) {
                    Ok(outcome) => OpResult::Heartbeat { outcome },
                    Err(e) => OpResult::Refused {
                        error: e.to_string(),
                    },
                };
                (
                    ClientOp::Heartbeat {
                        channel: s.id(),
                        data: data.clone(),
                        now,
                    },
                    actual,
                )
            }
            Step::Unregister {
                who,
                producer,
                consumer,
            } => {
                let Some(s) = slot(who) else { continue };
                let producer_group = producer.map(|g| PRODUCER_GROUPS[g].to_owned());
                let consumer_group = consumer.map(|g| CONSUMER_GROUPS[g].to_owned());
                let actual = match registry.unregister(
                    &s,
                    "cA",
                    producer_group.as_deref(),
                    consumer_group.as_deref(),
                ) {
                    Ok(()) => OpResult::Unregistered,
                    Err(e) => OpResult::Refused {
                        error: e.to_string(),
                    },
                };
                (
                    ClientOp::Unregister {
                        channel: s.id(),
                        producer_group,
                        consumer_group,
                    },
                    actual,
                )
            }
            Step::Close { who } => {
                let Some(s) = slot(who) else { continue };
                (
                    ClientOp::Close { channel: s.id() },
                    OpResult::Closed {
                        closed: registry.channel_closed(&s),
                    },
                )
            }
            Step::Scan => {
                let report = registry.scan_inactive(now);
                (
                    ClientOp::Scan { now },
                    OpResult::Scanned {
                        orphaned: report.orphaned,
                    },
                )
            }
        };
        let mut expected_events = Vec::new();
        let expected = model.apply(&op, &mut expected_events);
        let events = std::mem::take(&mut *heard.lock().unwrap());

        let snapshot = registry.snapshot();
        let at = |what: String| TestCaseError::fail(format!("step {i} {op:?}: {what}"));
        snapshot
            .check_no_resurrection(&model.closed)
            .map_err(|v| at(v.to_string()))?;
        registry.check_invariants().map_err(|v| at(v.to_string()))?;
        model
            .check_invariants()
            .map_err(|v| at(format!("the oracle itself: {v}")))?;
        prop_assert_eq!(&actual, &expected, "step {} {:?}: result", i, op);
        prop_assert_eq!(
            sorted(events),
            sorted(expected_events),
            "step {} {:?}: events",
            i,
            op
        );
        prop_assert_eq!(&snapshot, &model.tables, "step {} {:?}: tables", i, op);
        if let Some(id) = model.tables.clients.keys().next() {
            let live = &model.tables.clients[id];
            let found = registry.find_channel(id);
            prop_assert!(
                found.is_some_and(|c| live.contains(&c)),
                "find_channel({id}) = {found:?}, live {live:?}"
            );
        }
    }
    Ok(())
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(step(), 1..60)
}

proptest! {
    #![proptest_config(Config { cases: 512, ..Config::default() })]

    #[test]
    fn registry_matches_the_oracle(steps in steps()) {
        check(&steps, Faults::default())?;
    }
}

/// Runs the harness on a broken registry and returns the failure it reports.
fn counterexample(faults: Faults) -> String {
    let mut runner = TestRunner::new(Config {
        cases: 2_000,
        failure_persistence: None,
        ..Config::default()
    });
    match runner.run(&steps(), |steps| check(&steps, faults)) {
        Err(TestError::Fail(reason, steps)) => format!("{reason} (minimal: {steps:?})"),
        Err(other) => panic!("unexpected runner error: {other}"),
        Ok(()) => panic!("the harness did not catch {faults:?}"),
    }
}

#[test]
fn catches_empty_groups_kept_on_close() {
    let found = counterexample(Faults {
        keep_empty_groups: true,
        ..Faults::default()
    });
    assert!(found.contains("NoEmptyGroup"), "{found}");
}

#[test]
fn catches_registration_after_close() {
    let found = counterexample(Faults {
        register_after_close: true,
        ..Faults::default()
    });
    // Shrinking ends at the smallest witness: a heartbeat on a closed channel that the registry
    // accepted where the oracle refuses it (before shrinking, typically a NoResurrection).
    assert!(
        found.contains("NoResurrection") || found.contains("is closed"),
        "{found}"
    );
}

#[test]
fn oracle_and_registry_agree_on_a_scripted_incident() {
    // The 4.x incident in miniature: a client makes a new group per period and abandons it.
    let mut steps = vec![Step::Register];
    for group in PRODUCER_GROUPS {
        let data = HeartbeatData::producers("iot", [*group]);
        steps.extend([
            Step::Heartbeat { who: 0, data },
            Step::Advance(60),
            Step::Scan,
        ]);
    }
    steps.extend([Step::Advance(200), Step::Scan]);
    check(&steps, Faults::default()).unwrap();
}
