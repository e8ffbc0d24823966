//! A broker with its own transport embedding `ClientRegistry`. Each connection it accepts becomes
//! a `ClientChannel`: registering it adds the channel to the registry, its `ChannelHandle`
//! applies heartbeats and unregisters, and closing the handle (or dropping it) removes the
//! channel from every group, exactly once. The handles are the only way to change the tables;
//! the registry itself answers queries and runs the expiry scan. No runtime is needed: here the
//! "transport" is a loop over scripted events, and each channel's task is never started (a
//! broker with a task per connection would `spawn` it, or hand the transport to a
//! `lifecycle::ClientAcceptor`).
//!
//! `cargo run --example embed_registry`

use rmq_lifecycle::core::heartbeat::{ConsumerData, SubscriptionData};
use rmq_lifecycle::core::{ClientError, ClientEvent, HeartbeatData, Millis};
use rmq_lifecycle::lifecycle::{ClientChannel, CloseReason};
use rmq_lifecycle::registry::{ChannelHealth, ClientRegistry, RegistryConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Stands in for the broker's own connection type (its socket); the channel owns it until the
/// channel is closed, so a closed channel never keeps a live connection.
struct Connection;

fn main() {
    // The broker's own reaction to registry events, e.g. telling consumers to rebalance.
    let rebalances = Arc::new(AtomicUsize::new(0));
    let seen = rebalances.clone();
    let registry = Arc::new(ClientRegistry::with_listener(
        RegistryConfig::default(),
        move |event: &ClientEvent| {
            if let ClientEvent::ConsumerIdsChanged { group, channels } = event {
                seen.fetch_add(1, Ordering::Relaxed);
                println!(
                    "notify {} channel(s) of {group} to rebalance",
                    channels.len()
                );
            }
        },
    ));

    // Two connections accepted by the broker's transport, each registered as a channel. A
    // refusal (`max_channels`) hands the channel back in the error, to be closed with a reason.
    let accept = |peer: &'static str| {
        ClientChannel::new(Connection, peer)
            .register(&registry)
            .unwrap_or_else(|refused| panic!("{}", refused.error))
    };
    let producer = accept("10.0.0.1:50001");
    let consumer = accept("10.0.0.2:50002");

    // Their heartbeats (the broker decoded them from its own wire format), applied through each
    // channel's handle. A handle is `Clone + Send`: the part of the broker that reads requests
    // keeps one per connection.
    let producer_handle = producer.handle();
    let consumer_handle = consumer.handle();
    producer_handle
        .heartbeat(
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
    consumer_handle.heartbeat(&subscribe, Millis(0)).unwrap();
    println!(
        "groups: {} producer, {} consumer",
        registry.producer_group_count(),
        registry.consumer_group_count()
    );

    // A transaction check-back picks a live producer channel.
    let picked = registry.available_channel("OrderProducers", |_| ChannelHealth::Writable);
    assert_eq!(picked, Some(producer.id()));

    // The producer's connection drops: closing its channel consumes the handle (a second close
    // does not compile), drops the connection and removes its group with it.
    let closed = producer.close(CloseReason::PeerClosed);
    assert_eq!(closed.id(), Some(producer_handle.id()));
    assert!(producer_handle.is_closed());
    assert_eq!(registry.producer_group_count(), 0);
    // A heartbeat that was already in flight on that connection cannot bring it back.
    let late = producer_handle.heartbeat(
        &HeartbeatData::producers("producer-1", ["OrderProducers"]),
        Millis(1),
    );
    assert_eq!(late, Err(ClientError::ChannelClosed(producer_handle.id())));
    assert_eq!(registry.producer_group_count(), 0);

    // The consumer stops heartbeating: the broker's periodic scan expires it after 120 s and
    // names the channels left in no group; the broker closes their connections.
    let report = registry.scan_inactive(Millis(121_000));
    println!(
        "expired {} membership(s); channels to close: {:?}",
        report.expired, report.orphaned
    );
    assert_eq!(report.orphaned, [consumer.id()]);
    let closed = consumer.close(CloseReason::IdleTimeout);
    println!("closed {} ({:?})", closed.peer(), closed.reason());

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
