//! Random op sequences applied to the concurrent `ClientRegistry` and to the sequential oracle
//! `core::tables::ClientModel`, compared after every step: the op's result, the events it emitted
//! (as a multiset: the registry visits a channel's groups in hash order), and the whole tables.
//! `check_invariants()` and `NoResurrection` are checked after every step too. The comparison is
//! `fuzz/properties/client_ops.rs`, shared with the `client_ops` fuzz target; this file generates
//! the op sequences with proptest, which shrinks a failure to a minimal one.
//!
//! The harness is also run against two deliberately broken registries (empty groups kept, as in
//! upstream #8673; heartbeats after close accepted) and must find a counterexample for each.
//!
//! `cargo test --test props`; `PROPTEST_CASES=5000 cargo test --release --test props` for more.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use rmq_lifecycle::core::HeartbeatData;
use rmq_lifecycle::core::heartbeat::{ConsumerData, MessageModel, ProducerData, SubscriptionData};
use rmq_lifecycle::registry::Faults;

#[path = "../fuzz/properties/client_ops.rs"]
mod client_ops;

use client_ops::{CONSUMER_GROUPS, PRODUCER_GROUPS, Step, TOPICS};

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
        prop::sample::select(client_ops::CLIENTS.to_vec()),
        prop::collection::vec(0..PRODUCER_GROUPS.len(), 0..4),
        prop::collection::vec(consumer(), 0..3),
        prop::sample::select(client_ops::FINGERPRINTS.to_vec()),
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
        6 => (0..client_ops::SLOTS, heartbeat()).prop_map(|(who, data)| Step::Heartbeat { who, data }),
        2 => (0..client_ops::SLOTS, prop::option::of(0..PRODUCER_GROUPS.len()), prop::option::of(0..CONSUMER_GROUPS.len()))
            .prop_map(|(who, producer, consumer)| Step::Unregister { who, producer, consumer }),
        2 => (0..client_ops::SLOTS).prop_map(|who| Step::Close { who }),
        2 => Just(Step::Scan),
        3 => (0..client_ops::MAX_ADVANCE).prop_map(Step::Advance),
    ]
}

/// Runs `steps` on both implementations; returns the first divergence or violation.
fn check(steps: &[Step], faults: Faults) -> Result<(), TestCaseError> {
    client_ops::run(steps, faults).map_err(TestCaseError::fail)
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

    /// The fuzz target's byte encoding reaches every sequence this file generates.
    #[test]
    fn fuzz_bytes_encode_every_generated_sequence(steps in steps()) {
        prop_assert_eq!(client_ops::decode(&client_ops::encode(&steps)), steps);
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
