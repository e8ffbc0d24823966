//! `ClientChannel` on tokio: every exit path (task returns, task panics, owner closes, owner drops,
//! refused registration) removes the registry entry exactly once and leaves no task alive.
#![cfg(feature = "net")]

use rmq_lifecycle::core::{ClientError, ClientRules, HeartbeatData, Millis};
use rmq_lifecycle::lifecycle::{ClientChannel, CloseReason, Counted, TaskGauge};
use rmq_lifecycle::net::TokioSpawner;
use rmq_lifecycle::registry::{ClientRegistry, RegistryConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

fn spawner() -> Counted<TokioSpawner> {
    Counted::new(TokioSpawner::current(), TaskGauge::new())
}

/// A finished task's future is dropped slightly after its JoinHandle resolves; poll briefly.
async fn settle(gauge: &TaskGauge, registry: &ClientRegistry) {
    for _ in 0..200 {
        if gauge.alive() == 0 && registry.channel_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "not quiescent: {} tasks alive, {} channels",
        gauge.alive(),
        registry.channel_count()
    );
}

fn assert_empty(registry: &ClientRegistry) {
    registry.check_invariants().unwrap();
    assert!(registry.snapshot().is_empty(), "{:?}", registry.snapshot());
}

#[tokio::test]
async fn task_return_closes_the_channel() {
    let registry = Arc::new(ClientRegistry::default());
    let spawner = spawner();
    let (tx, rx) = oneshot::channel();
    let registered = ClientChannel::new((), "peer").register(&registry).unwrap();
    let running = registered.spawn(&spawner, |(), handle| async move {
        handle
            .heartbeat(&HeartbeatData::producers("c", ["G"]), Millis(0))
            .unwrap();
        tx.send(()).unwrap();
        CloseReason::PeerClosed
    });
    rx.await.unwrap();
    settle(spawner.gauge(), &registry).await;
    assert!(running.is_finished());
    assert_empty(&registry);
    let closed = running.close(CloseReason::Shutdown);
    assert_eq!(closed.reason(), &CloseReason::Shutdown);
    assert_empty(&registry);
}

#[tokio::test]
async fn task_panic_closes_the_channel() {
    let registry = Arc::new(ClientRegistry::default());
    let spawner = spawner();
    let registered = ClientChannel::new((), "peer").register(&registry).unwrap();
    registered
        .handle()
        .heartbeat(&HeartbeatData::producers("c", ["G"]), Millis(0))
        .unwrap();
    let _running = registered.spawn(&spawner, |(), _handle| async move { panic!("reader bug") });
    settle(spawner.gauge(), &registry).await;
    assert_empty(&registry);
}

#[tokio::test]
async fn owner_close_aborts_the_task_and_tombstones_the_handle() {
    let registry = Arc::new(ClientRegistry::default());
    let spawner = spawner();
    let registered = ClientChannel::new((), "peer").register(&registry).unwrap();
    let handle = registered.handle();
    handle
        .heartbeat(&HeartbeatData::producers("c", ["G"]), Millis(0))
        .unwrap();
    let running = registered.spawn(&spawner, |(), _handle| std::future::pending());
    assert_eq!(spawner.gauge().alive(), 1);
    let closed = running.close(CloseReason::Shutdown);
    assert_eq!(closed.id(), Some(handle.id()));
    settle(spawner.gauge(), &registry).await;
    assert_empty(&registry);
    let late = handle.heartbeat(&HeartbeatData::producers("c", ["G"]), Millis(1));
    assert_eq!(
        late,
        Err(ClientError::ChannelClosed(handle.id())),
        "no resurrection"
    );
    assert_empty(&registry);
}

#[tokio::test]
async fn dropping_a_handle_closes_the_channel() {
    let registry = Arc::new(ClientRegistry::default());
    let registered = ClientChannel::new((), "peer").register(&registry).unwrap();
    registered
        .handle()
        .heartbeat(&HeartbeatData::producers("c", ["G"]), Millis(0))
        .unwrap();
    drop(registered);
    assert_empty(&registry);

    let spawner = spawner();
    let running = ClientChannel::new((), "peer")
        .register(&registry)
        .unwrap()
        .spawn(&spawner, |(), _h| std::future::pending());
    drop(running);
    assert_eq!(registry.channel_count(), 0);
    settle(spawner.gauge(), &registry).await;
}

#[tokio::test]
async fn refused_registration_hands_the_channel_back() {
    let rules = ClientRules {
        max_channels: 1,
        ..ClientRules::default()
    };
    let registry = Arc::new(ClientRegistry::new(RegistryConfig {
        rules,
        ..RegistryConfig::default()
    }));
    let first = ClientChannel::new((), "a").register(&registry).unwrap();
    let refused = ClientChannel::new((), "b").register(&registry).unwrap_err();
    assert_eq!(refused.error, ClientError::TooManyChannels { max: 1 });
    assert!(
        refused.to_string().contains("too many client channels"),
        "{refused}"
    );
    let closed = refused
        .channel
        .close(CloseReason::Rejected(refused.error.to_string()));
    assert_eq!(closed.peer(), "b");
    assert_eq!(closed.id(), None);
    first.close(CloseReason::Local);
    assert_empty(&registry);
}
