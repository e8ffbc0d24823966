//! `ClientChannel` on tokio: every exit path (task returns, task panics, owner closes, owner drops,
//! refused registration) removes the registry entry exactly once and leaves no task alive.
//!
//! Also the two ways around a handle that remain visible at run time: a handle acts only on the
//! registry that made it (even where another registry has a channel with the same id), and a
//! forgotten `Registered` handle (`mem::forget`) does not hold its slot forever:
//! `ClientAcceptor::scan` reclaims it on the second scan.
#![cfg(feature = "net")]

use rmq_lifecycle::core::{ClientError, ClientRules, GroupKind, HeartbeatData, Millis};
use rmq_lifecycle::lifecycle::{ClientAcceptor, ClientChannel, CloseReason, Counted, TaskGauge};
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

/// Two registries each hand out channel id 1. A's handle heartbeats, unregisters and closes in A
/// only: B's channel with the same id stays open and in no group, B's tables do not change, and
/// B's invariants hold throughout. (No API pairs a channel's slot with another registry: the
/// handle carries the registry that made it.)
#[tokio::test]
async fn a_channel_handle_acts_only_on_its_own_registry() {
    let a = Arc::new(ClientRegistry::default());
    let b = Arc::new(ClientRegistry::default());
    let on_a = ClientChannel::new((), "a").register(&a).unwrap();
    let on_b = ClientChannel::new((), "b").register(&b).unwrap();
    assert_eq!(on_a.id(), on_b.id(), "both registries start their ids at 1");
    let (handle_a, handle_b) = (on_a.handle(), on_b.handle());
    let b_before = b.snapshot();

    handle_a
        .heartbeat(&HeartbeatData::producers("c", ["G", "H"]), Millis(0))
        .unwrap();
    assert_eq!(a.members(GroupKind::Producer, "G"), [on_a.id()]);
    assert_eq!(a.find_channel("c"), Some(on_a.id()));
    assert_eq!(a.heartbeats_total(), 1);
    assert_eq!(b.snapshot(), b_before, "A's heartbeat changed B");
    assert_eq!(b.heartbeats_total(), 0);
    assert_eq!(b.producer_group_count(), 0);
    assert_eq!(b.find_channel("c"), None);
    b.check_invariants().unwrap();

    handle_a.unregister("c", Some("H"), None).unwrap();
    assert!(a.members(GroupKind::Producer, "H").is_empty());
    assert_eq!(b.snapshot(), b_before, "A's unregister changed B");
    b.check_invariants().unwrap();

    on_a.close(CloseReason::Local);
    assert!(handle_a.is_closed());
    assert!(!handle_b.is_closed(), "closing A's ch#1 closed B's");
    assert_empty(&a);
    assert_eq!(b.channel_count(), 1);
    assert_eq!(b.snapshot(), b_before, "A's close changed B");
    b.check_invariants().unwrap();

    // B's channel works as before.
    handle_b
        .heartbeat(&HeartbeatData::producers("c", ["G"]), Millis(1))
        .unwrap();
    assert_eq!(b.members(GroupKind::Producer, "G"), [on_b.id()]);
    assert_empty(&a);
    b.check_invariants().unwrap();
    on_b.close(CloseReason::Local);
    assert_empty(&b);
}

/// A `Registered` handle that is forgotten (`mem::forget`: no drop, no close) holds its slot
/// under `max_channels` only until the acceptor's second scan: the first scan notes that its task
/// never started, the second reclaims it (closing it in the registry, its memberships with it),
/// and a new channel registers again.
#[tokio::test]
async fn a_forgotten_registered_handle_is_reclaimed_by_the_second_scan() {
    let registry = Arc::new(ClientRegistry::new(RegistryConfig {
        rules: ClientRules {
            max_channels: 1,
            ..ClientRules::default()
        },
        ..RegistryConfig::default()
    }));
    let acceptor: ClientAcceptor<(), _> = ClientAcceptor::new(registry.clone(), spawner());

    let leaked = ClientChannel::new((), "leaked")
        .register(&registry)
        .unwrap();
    let handle = leaked.handle();
    handle
        .heartbeat(&HeartbeatData::producers("c", ["G"]), Millis(0))
        .unwrap();
    std::mem::forget(leaked);
    assert_eq!(registry.channel_count(), 1);
    let refused = ClientChannel::new((), "next")
        .register(&registry)
        .unwrap_err();
    assert_eq!(refused.error, ClientError::TooManyChannels { max: 1 });

    let first = acceptor.scan(Millis(1));
    assert_eq!(first.reclaimed, 0, "one scan is not enough: {first:?}");
    assert_eq!(first.expired, 0);
    assert!(!handle.is_closed());
    assert_eq!(registry.channel_count(), 1);

    let second = acceptor.scan(Millis(2));
    assert_eq!(second.reclaimed, 1, "{second:?}");
    assert!(handle.is_closed());
    assert_eq!(registry.channel_count(), 0);
    assert_eq!(registry.producer_group_count(), 0, "its group went with it");
    assert_empty(&registry);
    let late = handle.heartbeat(&HeartbeatData::producers("c", ["G"]), Millis(3));
    assert_eq!(late, Err(ClientError::ChannelClosed(handle.id())));

    let next = ClientChannel::new((), "next")
        .register(&registry)
        .expect("the reclaimed slot is free again");
    assert_ne!(next.id(), handle.id(), "ids are never reused");
    assert_eq!(registry.channel_count(), 1);
    registry.check_invariants().unwrap();
    next.close(CloseReason::Local);
    assert_empty(&registry);
}

/// Ids are numbered per registry, so an acceptor refuses to start a connection registered on
/// another HA registry: started, it would replace this acceptor's own connection with the same
/// number. (`start_registered` exists for the harnesses only; `accept` registers on its own
/// table and cannot be handed a foreign connection.)
#[tokio::test]
#[should_panic(expected = "belongs to another HA registry")]
async fn an_ha_acceptor_refuses_a_connection_of_another_registry() {
    use rmq_lifecycle::lifecycle::{HaAcceptor, HaConnection};
    use rmq_lifecycle::registry::HaRegistry;
    let (a, b) = (Arc::new(HaRegistry::new(4)), Arc::new(HaRegistry::new(4)));
    let acceptor = HaAcceptor::new(a.clone(), spawner());
    let foreign = HaConnection::new((), "b").register(&b).unwrap();
    let _ = acceptor.start_registered(foreign, |(), _, _| {
        (
            std::future::ready(CloseReason::Local),
            std::future::ready(CloseReason::Local),
        )
    });
}
