//! Loom models of `ClientRegistry`: every interleaving (up to the preemption bound) of the three
//! races the registry's locking is designed for, each checked at quiescence against
//! `check_invariants()` (`NoEmptyGroup`, `IndexesConsistent`), `NoLostRegistration` and
//! `NoResurrection` (see `tests/support`).
//!
//! * `loom_heartbeat_vs_close_last_member`: A joins G while G's only member B closes.
//! * `loom_heartbeat_vs_scan`: A refreshes a stale membership while a scan expires it.
//! * `loom_close_vs_inflight_heartbeat`: A heartbeats into a new group while A is closed.
//! * `loom_join_vs_close_and_expiry`, `loom_close_vs_inflight_heartbeat_shared_group`: three
//!   threads each, the same races with a second removal path or a second joiner.
//! * `loom_events_close_last_member_vs_join`: the first race with a listener that rebuilds G from
//!   the events; it must hear them in table order (`EventsInTableOrder`, `support::EventModel`).
//!
//! Each scenario also runs against a planted defect (`Faults`) and must fail naming the
//! invariant it breaks, so a harness that cannot fail is itself a test failure.
//!
//! Channels are registered, fed and closed only through the public lifecycle API:
//! `ClientChannel::new((), ..).register(&reg)`, `ChannelHandle` clones for the threads that
//! heartbeat, and the `Registered` handle moved into the one thread that closes it (closing
//! consumes it). The expiry scan is the registry's housekeeping `scan_inactive`.
//!
//! Run (release, own target dir; `--nocapture` prints the executions explored per model;
//! `harness` brings in the planted `Faults`):
//!
//! ```text
//! CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg rmq_loom" \
//!     cargo test --release --no-default-features --features harness --test loom -- --nocapture
//! LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg rmq_loom" \
//!     cargo test --release --no-default-features --features harness --test loom
//! ```
//!
//! The two-thread models are explored exhaustively (no preemption bound), the three-thread ones
//! with bound 3 (`THREE_THREAD_PREEMPTIONS`); `LOOM_MAX_PREEMPTIONS=N` sets the bound of every
//! model. Loom is exhaustive, so a failure reproduces on every run; to see the failing
//! interleaving, rerun the one test with `LOOM_LOG=trace LOOM_LOCATION=1 ... -- <test> --exact`.
//!
//! `--no-default-features` leaves out the tokio layer (`net`), which the models do not use.
//!
//! Models use `shards: 1`: the shard hasher is randomly seeded per table, so with more shards the
//! shard a group lands in (and thus the locks taken) would differ between loom's executions.

#![cfg(rmq_loom)]

#[path = "support/loom_runner.rs"]
mod runner;
mod support;

use loom::sync::Arc;
use loom::thread;
use rmq_lifecycle::core::{ClientError, ClientRules, GroupKind, Millis};
use rmq_lifecycle::lifecycle::{ClientChannel, CloseReason};
use rmq_lifecycle::phase::Registered;
use rmq_lifecycle::registry::{ClientRegistry, Faults, RegistryConfig};
use runner::{EXHAUSTIVE, THREE_THREAD_PREEMPTIONS, model, model_finds};
use support::{Expect, close, listened, producers};

const EXPIRY_MS: u64 = 100;
const G: &str = "G";

fn registry(faults: Faults) -> Arc<ClientRegistry> {
    Arc::new(ClientRegistry::new(RegistryConfig {
        rules: ClientRules {
            expiry_ms: EXPIRY_MS,
            ..ClientRules::default()
        },
        shards: 1,
        faults,
    }))
}

/// Registers a channel whose task is never started: the model's threads act for it.
fn open(reg: &Arc<ClientRegistry>) -> ClientChannel<Registered, ()> {
    ClientChannel::new((), "peer")
        .register(reg)
        .expect("under the channel cap")
}

/// G's only member B closes while A heartbeats into G: A's registration must land in the live G
/// or in a fresh one, never in a G that the close unlinks (upstream #10698).
fn heartbeat_vs_close_last_member(faults: Faults) -> impl Fn() + Sync + Send + 'static {
    move || {
        let reg = registry(faults);
        let a = open(&reg);
        let b = open(&reg);
        let b_id = b.id();
        b.handle()
            .heartbeat(&producers("client-b", &[G]), Millis(0))
            .unwrap();

        let joiner = {
            let a = a.handle();
            thread::spawn(move || a.heartbeat(&producers("client-a", &[G]), Millis(10)))
        };
        let closer = thread::spawn(move || close(b, CloseReason::PeerClosed));
        let joined = joiner.join().unwrap();
        let closed = closer.join().unwrap();

        let mut expect = Expect {
            closed: vec![b_id],
            ..Expect::default()
        };
        expect.present(GroupKind::Producer, G, a.id(), Some(Millis(10)));
        support::check(&reg, &expect);
        assert_eq!(joined.map(|o| o.joined), Ok(1), "A's heartbeat joins G");
        assert!(closed, "the first close of B does the close");
        assert_eq!(reg.producer_group_count(), 1);
    }
}

/// A's only membership is stale when the scan starts; A heartbeats concurrently. The scan
/// re-checks each candidate under the channel's and the shard's locks, so a refresh is never
/// expired: either the scan expires A first and the heartbeat re-creates G, or the refresh wins.
/// B's stale membership, never refreshed, must expire either way.
fn heartbeat_vs_scan(faults: Faults) -> impl Fn() + Sync + Send + 'static {
    move || {
        let reg = registry(faults);
        let a = open(&reg);
        let b = open(&reg);
        a.handle()
            .heartbeat(&producers("client-a", &[G]), Millis(0))
            .unwrap();
        b.handle()
            .heartbeat(&producers("client-b", &[G]), Millis(0))
            .unwrap();
        let now = Millis(1_000);

        let refresher = {
            let a = a.handle();
            thread::spawn(move || a.heartbeat(&producers("client-a", &[G]), now))
        };
        let scanner = {
            let reg = reg.clone();
            thread::spawn(move || reg.scan_inactive(now))
        };
        let refreshed = refresher.join().unwrap().expect("A is open");
        let report = scanner.join().unwrap();

        let mut expect = Expect::default();
        expect.present(GroupKind::Producer, G, a.id(), Some(now));
        expect.gone(GroupKind::Producer, G, b.id(), "stale at the scan");
        support::check(&reg, &expect);
        // The scan expired A exactly when the heartbeat found A gone and re-joined.
        let a_expired = report.expired - 1;
        assert_eq!(a_expired, refreshed.joined, "scan report {report:?}");
        let mut orphaned = vec![b.id()];
        if a_expired == 1 {
            orphaned.insert(0, a.id());
        }
        assert_eq!(report.orphaned, orphaned);
    }
}

/// A heartbeats into a new group while A is closed: the heartbeat either completes first (and the
/// close removes what it added) or sees the tombstone; A ends up in no table.
fn close_vs_inflight_heartbeat(faults: Faults) -> impl Fn() + Sync + Send + 'static {
    move || {
        let reg = registry(faults);
        let a = open(&reg);
        let a_handle = a.handle();

        let beater = {
            let a = a.handle();
            thread::spawn(move || a.heartbeat(&producers("client-a", &[G]), Millis(10)))
        };
        let closer = thread::spawn(move || close(a, CloseReason::PeerClosed));
        let beat = beater.join().unwrap();
        let closed = closer.join().unwrap();

        let mut expect = Expect {
            closed: vec![a_handle.id()],
            ..Expect::default()
        };
        expect.gone(GroupKind::Producer, G, a_handle.id(), "closed");
        support::check(&reg, &expect);
        match beat {
            Ok(outcome) => assert_eq!(outcome.joined, 1),
            Err(e) => assert_eq!(e, ClientError::ChannelClosed(a_handle.id())),
        }
        assert!(closed && a_handle.is_closed());
        assert_eq!(reg.channel_count(), 0);
        assert_eq!(reg.producer_group_count(), 0, "NoEmptyGroup: G went with A");
        assert_eq!(reg.find_channel("client-a"), None);
    }
}

/// Three threads: G's members are B (fresh) and C (stale); A joins G while B closes and a scan
/// expires C, so either removal can be the one that empties G while A's registration lands.
fn join_vs_close_and_expiry(faults: Faults) -> impl Fn() + Sync + Send + 'static {
    move || {
        let reg = registry(faults);
        let a = open(&reg);
        let b = open(&reg);
        let c = open(&reg);
        let b_id = b.id();
        let now = Millis(1_000);
        c.handle()
            .heartbeat(&producers("client-c", &[G]), Millis(0))
            .unwrap();
        b.handle()
            .heartbeat(&producers("client-b", &[G]), now)
            .unwrap();

        let joiner = {
            let a = a.handle();
            thread::spawn(move || a.heartbeat(&producers("client-a", &[G]), now))
        };
        let closer = thread::spawn(move || close(b, CloseReason::PeerClosed));
        let scanner = {
            let reg = reg.clone();
            thread::spawn(move || reg.scan_inactive(now))
        };
        let joined = joiner.join().unwrap();
        let closed = closer.join().unwrap();
        let report = scanner.join().unwrap();

        let mut expect = Expect {
            closed: vec![b_id],
            ..Expect::default()
        };
        expect.present(GroupKind::Producer, G, a.id(), Some(now));
        expect.gone(GroupKind::Producer, G, c.id(), "stale at the scan");
        support::check(&reg, &expect);
        assert_eq!(joined.map(|o| o.joined), Ok(1));
        assert!(closed);
        assert_eq!(report.expired, 1, "only C was stale: {report:?}");
        assert_eq!(report.orphaned, vec![c.id()]);
    }
}

/// Three threads: A heartbeats into G while A is closed, and B joins G meanwhile. G must end up
/// holding exactly B.
fn close_vs_inflight_heartbeat_shared_group(faults: Faults) -> impl Fn() + Sync + Send + 'static {
    move || {
        let reg = registry(faults);
        let a = open(&reg);
        let b = open(&reg);
        let a_id = a.id();

        let beater = {
            let a = a.handle();
            thread::spawn(move || a.heartbeat(&producers("client-a", &[G]), Millis(10)))
        };
        let closer = thread::spawn(move || close(a, CloseReason::PeerClosed));
        let other = {
            let b = b.handle();
            thread::spawn(move || b.heartbeat(&producers("client-b", &[G]), Millis(20)))
        };
        let beat = beater.join().unwrap();
        assert!(closer.join().unwrap());
        let other = other.join().unwrap();

        let mut expect = Expect {
            closed: vec![a_id],
            ..Expect::default()
        };
        expect.gone(GroupKind::Producer, G, a_id, "closed");
        expect.present(GroupKind::Producer, G, b.id(), Some(Millis(20)));
        support::check(&reg, &expect);
        assert!(
            matches!(beat, Ok(_) | Err(ClientError::ChannelClosed(_))),
            "{beat:?}"
        );
        assert_eq!(other.map(|o| o.joined), Ok(1));
        assert_eq!(reg.members(GroupKind::Producer, G), vec![b.id()]);
    }
}

/// G's only member B closes while A joins G, and a listener rebuilds G from the events: if the
/// close empties G before A re-creates it, the listener must hear B leave and G go before A
/// joins; otherwise A joins before B leaves, and G stays.
fn events_close_last_member_vs_join(faults: Faults) -> impl Fn() + Sync + Send + 'static {
    move || {
        let (reg, model) = listened(RegistryConfig {
            shards: 1,
            faults,
            ..RegistryConfig::default()
        });
        let a = ClientChannel::new((), "a").register(&reg).unwrap();
        let b = ClientChannel::new((), "b").register(&reg).unwrap();
        b.handle()
            .heartbeat(&producers("client-b", &[G]), Millis(0))
            .unwrap();

        let joiner = {
            let a = a.handle();
            thread::spawn(move || a.heartbeat(&producers("client-a", &[G]), Millis(10)))
        };
        let closer = thread::spawn(move || close(b, CloseReason::PeerClosed));
        assert_eq!(joiner.join().unwrap().map(|o| o.joined), Ok(1));
        assert!(closer.join().unwrap());

        model.lock().unwrap().check(&reg);
        assert_eq!(reg.members(GroupKind::Producer, G), vec![a.id()]);
    }
}

#[test]
fn loom_heartbeat_vs_close_last_member() {
    model(
        "heartbeat_vs_close_last_member",
        EXHAUSTIVE,
        heartbeat_vs_close_last_member(Faults::default()),
    );
}

#[test]
fn loom_heartbeat_vs_close_last_member_finds_split_remove_if_empty() {
    let faults = Faults {
        split_remove_if_empty: true,
        ..Faults::default()
    };
    model_finds(
        "heartbeat_vs_close_last_member/split_remove_if_empty",
        EXHAUSTIVE,
        "NoLostRegistration",
        heartbeat_vs_close_last_member(faults),
    );
}

#[test]
fn loom_join_vs_close_and_expiry() {
    model(
        "join_vs_close_and_expiry",
        THREE_THREAD_PREEMPTIONS,
        join_vs_close_and_expiry(Faults::default()),
    );
}

#[test]
fn loom_join_vs_close_and_expiry_finds_split_remove_if_empty() {
    let faults = Faults {
        split_remove_if_empty: true,
        ..Faults::default()
    };
    model_finds(
        "join_vs_close_and_expiry/split_remove_if_empty",
        THREE_THREAD_PREEMPTIONS,
        "NoLostRegistration",
        join_vs_close_and_expiry(faults),
    );
}

#[test]
fn loom_heartbeat_vs_scan() {
    model(
        "heartbeat_vs_scan",
        EXHAUSTIVE,
        heartbeat_vs_scan(Faults::default()),
    );
}

#[test]
fn loom_close_vs_inflight_heartbeat() {
    model(
        "close_vs_inflight_heartbeat",
        EXHAUSTIVE,
        close_vs_inflight_heartbeat(Faults::default()),
    );
}

#[test]
fn loom_close_vs_inflight_heartbeat_finds_register_after_close() {
    let faults = Faults {
        register_after_close: true,
        ..Faults::default()
    };
    model_finds(
        "close_vs_inflight_heartbeat/register_after_close",
        EXHAUSTIVE,
        "NoResurrection",
        close_vs_inflight_heartbeat(faults),
    );
}

#[test]
fn loom_close_vs_inflight_heartbeat_shared_group() {
    model(
        "close_vs_inflight_heartbeat_shared_group",
        THREE_THREAD_PREEMPTIONS,
        close_vs_inflight_heartbeat_shared_group(Faults::default()),
    );
}

#[test]
fn loom_close_vs_inflight_heartbeat_shared_group_finds_register_after_close() {
    let faults = Faults {
        register_after_close: true,
        ..Faults::default()
    };
    model_finds(
        "close_vs_inflight_heartbeat_shared_group/register_after_close",
        THREE_THREAD_PREEMPTIONS,
        "NoResurrection",
        close_vs_inflight_heartbeat_shared_group(faults),
    );
}

#[test]
fn loom_events_close_last_member_vs_join() {
    model(
        "events_close_last_member_vs_join",
        EXHAUSTIVE,
        events_close_last_member_vs_join(Faults::default()),
    );
}

#[test]
fn loom_events_close_last_member_vs_join_finds_emit_after_unlock() {
    let faults = Faults {
        emit_after_unlock: true,
        ..Faults::default()
    };
    model_finds(
        "events_close_last_member_vs_join/emit_after_unlock",
        EXHAUSTIVE,
        "EventsInTableOrder",
        events_close_last_member_vs_join(faults),
    );
}
