//! A broker with its own transport embedding `ClientRegistry`: it hands the registry the channel
//! of each connection it accepts, applies heartbeats and unregisters, and reports closes. The
//! registry needs no runtime; here the "transport" is a loop over scripted events.
//!
//! `cargo run --example embed_registry`

use rmq_lifecycle::core::heartbeat::{ConsumerData, SubscriptionData};
use rmq_lifecycle::core::{ClientEvent, HeartbeatData, Millis};
use rmq_lifecycle::registry::{ChannelHealth, ClientRegistry, RegistryConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn main() {
    // The broker's own reaction to registry events, e.g. telling consumers to rebalance.
    let rebalances = Arc::new(AtomicUsize::new(0));
    let seen = rebalances.clone();
    let registry =
        ClientRegistry::with_listener(RegistryConfig::default(), move |event: &ClientEvent| {
            if let ClientEvent::ConsumerIdsChanged { group, channels } = event {
                seen.fetch_add(1, Ordering::Relaxed);
                println!(
                    "notify {} channel(s) of {group} to rebalance",
                    channels.len()
                );
            }
        });

    // Two connections accepted by the broker's transport.
    let producer = registry.register_channel().expect("under the channel cap");
    let consumer = registry.register_channel().expect("under the channel cap");

    // Their heartbeats (the broker decoded them from its own wire format).
    registry
        .heartbeat(
            &producer,
            &HeartbeatData::producers("producer-1", ["OrderProducers"]),
            Millis(0),
        )
        .unwrap();
    let subscribe = HeartbeatData {
        client_id: "consumer-1".into(),
        consumer_data_set: vec![ConsumerData {
            group_name: "OrderConsumers".into(),
            subscription_data_set: vec![SubscriptionData {
                topic: "Orders".into(),
                sub_string: "*".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    registry
        .heartbeat(&consumer, &subscribe, Millis(0))
        .unwrap();
    println!(
        "groups: {} producer, {} consumer",
        registry.producer_group_count(),
        registry.consumer_group_count()
    );

    // A transaction check-back picks a live producer channel.
    let picked = registry.available_channel("OrderProducers", |_| ChannelHealth::Writable);
    assert_eq!(picked, Some(producer.id()));

    // The producer's connection drops: its group goes with it, exactly once.
    assert!(registry.channel_closed(&producer));
    assert!(!registry.channel_closed(&producer));
    // The consumer stops heartbeating: the broker's periodic scan expires it after 120 s.
    let report = registry.scan_inactive(Millis(121_000));
    println!(
        "expired {} membership(s); channels to close: {:?}",
        report.expired, report.orphaned
    );
    assert_eq!(report.orphaned, [consumer.id()]);
    registry.channel_closed(&consumer);

    registry
        .check_invariants()
        .expect("the tables are consistent");
    assert!(registry.snapshot().is_empty());
    assert!(rebalances.load(Ordering::Relaxed) >= 1);
    println!("all groups gone; invariants hold");
}

#[cfg(test)]
mod tests {
    #[test]
    fn example_runs() {
        super::main();
    }
}
