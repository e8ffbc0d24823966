//! Shuttle harnesses for `ClientRegistry` and the `ClientChannel` lifecycle: many threads and
//! tasks doing heartbeats, unregisters, closes and expiry scans with advancing time, explored
//! under shuttle's random and PCT schedulers. At quiescence every run checks
//! `check_invariants()` (`NoEmptyGroup`, `IndexesConsistent`), `NoResurrection` for every closed
//! channel and `NoLostRegistration` (every heartbeat that returned Ok, from a channel not closed,
//! unregistered from that group or expired since, is in the table with its time); see
//! `tests/support`. Scans run at times when only the memberships seeded stale at time 0 can
//! expire, so what must be in the table is known exactly.
//!
//! * `shuttle_registry_mixed_*`: a fixed program of 5 channels, 2 producer groups and 1 consumer
//!   group, designed so that every removal path (unregister, close, expiry) can empty a group
//!   while another channel joins it, and a close can race its own channel's heartbeats.
//! * `shuttle_registry_random_ops_*`: the same kinds of operations drawn at random
//!   (`shuttle::rand`, so replayable); each owner thread checks its own results.
//! * `shuttle_lifecycle_*`: a `ClientChannel` spawned on shuttle's executor with a heartbeating
//!   task, closed from another thread while it runs; the task gauge must return to 0.
//! * `shuttle_events_*`: channels joining, leaving and closing in a few shared groups, with a
//!   listener that rebuilds the groups from the events (`support::EventModel`): every event must
//!   fit the groups as the events before it left them, and at quiescence the rebuilt groups must
//!   be the table's (`EventsInTableOrder`). The listener queries the registry as it runs.
//! * `*_finds_*`: the same programs against a planted defect (`Faults`); shuttle must find it,
//!   the panic must name the invariant, and replaying the failing schedule must fail again.
//!
//! Channels are registered, fed and closed only through the public lifecycle API:
//! `ClientChannel::new((), ..).register(&reg)`, `ChannelHandle` clones for the threads that
//! heartbeat and unregister, and the `Registered` handle moved into the thread that closes it
//! (closing consumes it). Where two threads may close the same channel (`random_ops`), the handle
//! sits in a shared slot and whichever thread takes it closes the channel.
//!
//! Run (release, own target dir; `--nocapture` prints schedules explored and time per test;
//! `harness` brings in the planted `Faults`):
//!
//! ```text
//! CARGO_TARGET_DIR=target/shuttle cargo test --release --no-default-features \
//!     --features shuttle,harness --test shuttle -- --nocapture
//! ```
//!
//! `SHUTTLE_ITERATIONS=N` changes the schedules per test (default 2000); `SHUTTLE_RANDOM_SEED`
//! (shuttle's own) fixes the scheduler seed.
//!
//! Replay: a failing test prints its schedule and the command that replays it, of the form
//!
//! ```text
//! SHUTTLE_REPLAY='<test name>:<schedule>' CARGO_TARGET_DIR=target/shuttle cargo test --release \
//!     --no-default-features --features shuttle,harness --test shuttle -- <test name> --exact \
//!     --nocapture
//! ```
//!
//! Paste the schedule shuttle printed between the quotes (line breaks are ignored). With
//! `SHUTTLE_REPLAY` set, the named test replays that one schedule instead of exploring (a bare
//! `SHUTTLE_REPLAY='<schedule>'` applies to every test that runs). The registry's hashers are
//! fixed under shuttle (`sync::HashState`), so one replay reproduces a run. The runner is
//! `tests/support/shuttle_runner.rs`, shared with `tests/shuttle_ha.rs`.

#![cfg(feature = "shuttle")]

#[path = "../cli/src/cli/model_trace.rs"]
mod model_trace;
#[path = "support/shuttle_runner.rs"]
mod runner;
mod support;

use rmq_lifecycle::core::{ChannelId, ClientError, ClientRules, GroupKind, Millis};
use rmq_lifecycle::lifecycle::{ChannelHandle, ClientChannel, CloseReason, Counted, TaskGauge};
use rmq_lifecycle::phase::Registered;
use rmq_lifecycle::registry::{ClientRegistry, Faults, RegistryConfig};
use runner::{Sched, ShuttleSpawner, check, check_finds};
use shuttle::rand::{Rng, thread_rng};
use shuttle::sync::{Arc, Mutex};
use shuttle::thread;
use std::collections::BTreeMap;
use support::{Expect, Key, close, heartbeat, listened, producers};

const EXPIRY_MS: u64 = 1_000;
/// Memberships seeded here are stale at every scan.
const STALE: Millis = Millis(0);
/// Worker heartbeats happen at 1_000.. and scans at 1_500..1_900: a worker's membership is never
/// older than `EXPIRY_MS` at a scan, a seeded one always is.
const WORK: u64 = 1_000;
const SCANS: [Millis; 2] = [Millis(1_500), Millis(1_900)];
const P1: &str = "P1";
const P2: &str = "P2";
const C1: &str = "C1";

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

/// Registers a channel whose task is never started: the program's threads act for it.
fn open(reg: &Arc<ClientRegistry>) -> ClientChannel<Registered, ()> {
    ClientChannel::new((), "peer")
        .register(reg)
        .expect("under the channel cap")
}

fn key(kind: GroupKind, group: &str) -> Key {
    (kind, group.to_owned())
}

/// Tracks one channel's results in program order: once an operation saw the channel closed, no
/// later operation may succeed (the tombstone is permanent).
#[derive(Default)]
struct Owner {
    saw_closed: bool,
}

impl Owner {
    /// Records a result; returns true if it succeeded.
    fn record<T: std::fmt::Debug>(
        &mut self,
        ch: ChannelId,
        op: &str,
        r: Result<T, ClientError>,
    ) -> bool {
        match r {
            Ok(_) => {
                assert!(
                    !self.saw_closed,
                    "NoResurrection violated: {op} on {ch} succeeded after the channel was seen closed"
                );
                true
            }
            Err(ClientError::ChannelClosed(c)) if c == ch => {
                self.saw_closed = true;
                false
            }
            Err(e) => panic!("{op} on {ch}: unexpected refusal {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The fixed program
// ---------------------------------------------------------------------------------------------

/// Five channels, P1, P2 (producer) and C1 (consumer), five threads:
///
/// * seeds: c3 in P1 and c4 in P2 and C1 stale (time 0); c5 in P2 fresh.
/// * w1 (c1): joins P1 and C1, unregisters P1, joins P1 again, joins P2. Never closed.
/// * w2 (c2): joins P1, then P1 and C1, then unregisters C1, while `closer` closes c2.
/// * w3 (c3): refreshes its stale P1 membership (racing its expiry), joins C1.
/// * closer: closes c2 and c5 (c5's close can empty P2 as w1 joins it).
/// * scanner: scans twice with advancing time; expires c4 (emptying P2 and C1 as others join).
fn mixed(faults: Faults) -> impl Fn() + Clone + Send + Sync + 'static {
    move || {
        let reg = registry(faults);
        // The `Registered` handles: c2's and c5's move into `closer`, the others stay here (alive,
        // so open) until the checks are done. Every other thread uses `ChannelHandle` clones.
        let [r1, r2, r3, r4, r5] = std::array::from_fn(|_| open(&reg));
        let [c1, c2, c3, c4, c5] = [&r1, &r2, &r3, &r4, &r5].map(|r| r.handle());
        c3.heartbeat(&producers("client-3", &[P1]), STALE).unwrap();
        c4.heartbeat(&heartbeat("client-4", &[P2], &[C1]), STALE)
            .unwrap();
        c5.heartbeat(&producers("client-5", &[P2]), Millis(WORK))
            .unwrap();

        let w1 = {
            let c = c1.clone();
            thread::spawn(move || {
                c.heartbeat(&heartbeat("client-1", &[P1], &[C1]), Millis(WORK))
                    .unwrap();
                c.unregister("client-1", Some(P1), None).unwrap();
                c.heartbeat(&producers("client-1", &[P1]), Millis(WORK + 10))
                    .unwrap();
                c.heartbeat(&producers("client-1", &[P2]), Millis(WORK + 20))
                    .unwrap();
            })
        };
        let w2 = {
            let c = c2.clone();
            thread::spawn(move || {
                let mut owner = Owner::default();
                let id = c.id();
                let r = c.heartbeat(&producers("client-2", &[P1]), Millis(WORK));
                owner.record(id, "heartbeat", r);
                let r = c.heartbeat(&heartbeat("client-2", &[P1], &[C1]), Millis(WORK + 10));
                owner.record(id, "heartbeat", r);
                let r = c.unregister("client-2", None, Some(C1));
                owner.record(id, "unregister", r);
            })
        };
        let w3 = {
            let c = c3.clone();
            thread::spawn(move || {
                c.heartbeat(&producers("client-3", &[P1]), Millis(WORK + 5))
                    .unwrap();
                c.heartbeat(&heartbeat("client-3", &[], &[C1]), Millis(WORK + 15))
                    .unwrap();
            })
        };
        let closer = thread::spawn(move || {
            assert!(
                close(r2, CloseReason::PeerClosed),
                "c2 is closed once, here"
            );
            assert!(
                close(r5, CloseReason::PeerClosed),
                "c5 is closed once, here"
            );
        });
        let scanner = {
            let reg = reg.clone();
            thread::spawn(move || SCANS.map(|now| reg.scan_inactive(now)))
        };
        for t in [w1, w2, w3, closer] {
            t.join().unwrap();
        }
        let reports = scanner.join().unwrap();

        let exact = |items: &[(GroupKind, &str, u64)]| -> BTreeMap<Key, Millis> {
            items
                .iter()
                .map(|(k, g, t)| (key(*k, g), Millis(*t)))
                .collect()
        };
        use GroupKind::{Consumer, Producer};
        let expect = Expect {
            closed: vec![c2.id(), c5.id()],
            exact: vec![
                (
                    c1.id(),
                    exact(&[
                        (Producer, P1, WORK + 10),
                        (Consumer, C1, WORK),
                        (Producer, P2, WORK + 20),
                    ]),
                ),
                (
                    c3.id(),
                    exact(&[(Producer, P1, WORK + 5), (Consumer, C1, WORK + 15)]),
                ),
                (c4.id(), BTreeMap::new()),
            ],
            ..Expect::default()
        };
        support::check(&reg, &expect);
        // c4's two memberships always expire (emptying it); c3's only if the scan beat w3.
        let expired: usize = reports.iter().map(|r| r.expired).sum();
        let orphaned: Vec<ChannelId> = reports.iter().flat_map(|r| r.orphaned.clone()).collect();
        assert!((2..=3).contains(&expired), "{reports:?}");
        assert!(orphaned.contains(&c4.id()), "{reports:?}");
        assert!(
            orphaned.iter().all(|c| [c3.id(), c4.id()].contains(c)),
            "{reports:?}"
        );
        assert_eq!(reg.channel_count(), 3);
        assert_eq!(reg.find_channel("client-1"), Some(c1.id()));
        assert_eq!(reg.find_channel("client-2"), None);
        assert!(c2.is_closed() && c5.is_closed());
        assert!(![&c1, &c3, &c4].iter().any(|c| c.is_closed()));
        drop((r1, r3, r4));
    }
}

#[test]
fn shuttle_registry_mixed_random() {
    check(
        "shuttle_registry_mixed_random",
        Sched::Random,
        mixed(Faults::default()),
    );
}

#[test]
fn shuttle_registry_mixed_pct() {
    check(
        "shuttle_registry_mixed_pct",
        Sched::Pct,
        mixed(Faults::default()),
    );
}

#[test]
fn shuttle_registry_mixed_finds_split_remove_if_empty() {
    let faults = Faults {
        split_remove_if_empty: true,
        ..Faults::default()
    };
    check_finds(
        "shuttle_registry_mixed_finds_split_remove_if_empty",
        Sched::Pct,
        "NoLostRegistration",
        mixed(faults),
    );
}

#[test]
fn shuttle_registry_mixed_finds_register_after_close() {
    let faults = Faults {
        register_after_close: true,
        ..Faults::default()
    };
    check_finds(
        "shuttle_registry_mixed_finds_register_after_close",
        Sched::Pct,
        "NoResurrection",
        mixed(faults),
    );
}

// ---------------------------------------------------------------------------------------------
// Random operations
// ---------------------------------------------------------------------------------------------

const OWNERS: usize = 3;
const OPS_PER_OWNER: u64 = 5;
const GROUPS: [(GroupKind, &str); 3] = [
    (GroupKind::Producer, P1),
    (GroupKind::Producer, P2),
    (GroupKind::Consumer, C1),
];

/// What one owner thread knows at the end: its channel's memberships, and whether it closed it.
struct OwnerModel {
    members: BTreeMap<Key, Millis>,
    closed_self: bool,
}

/// A channel's `Registered` handle where two threads may close it (its owner and the
/// transport): whichever takes it closes the channel; the other finds the slot empty.
type Closable = Arc<Mutex<Option<ClientChannel<Registered, ()>>>>;

/// Takes the handle out of `slot` and closes the channel; true if this call closed it. The slot
/// stays locked until the close is done, so a caller that finds it empty knows the channel is
/// closed already (as the registry's own close answered after waiting on the channel's lock).
fn take_and_close(slot: &Closable, reason: CloseReason) -> bool {
    let mut slot = slot.lock().unwrap();
    let first = slot
        .take()
        .is_some_and(|registered| close(registered, reason));
    drop(slot);
    first
}

/// One owner's random program on its channel `c`: heartbeats naming a random non-empty subset of
/// the groups, unregisters of a random producer and/or consumer group, and rarely a close (of
/// the `Registered` handle in `slot`, unless the transport took it first).
fn random_owner(c: &ChannelHandle, slot: &Closable, client: &str, idx: u64) -> OwnerModel {
    let mut rng = thread_rng();
    let mut model = OwnerModel {
        members: BTreeMap::new(),
        closed_self: false,
    };
    let mut owner = Owner::default();
    for step in 0..OPS_PER_OWNER {
        let now = Millis(WORK + 10 * step + idx);
        match rng.gen_range(0..10) {
            0..=5 => {
                let mask = rng.gen_range(1..8u8);
                let picked: Vec<(GroupKind, &str)> = GROUPS
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, g)| *g)
                    .collect();
                let names = |kind| -> Vec<&str> {
                    picked
                        .iter()
                        .filter(|(k, _)| *k == kind)
                        .map(|(_, g)| *g)
                        .collect()
                };
                let data = heartbeat(
                    client,
                    &names(GroupKind::Producer),
                    &names(GroupKind::Consumer),
                );
                if owner.record(c.id(), "heartbeat", c.heartbeat(&data, now)) {
                    for (kind, g) in picked {
                        model.members.insert(key(kind, g), now);
                    }
                }
            }
            6..=8 => {
                let producer = rng.gen_bool(0.7).then(|| [P1, P2][rng.gen_range(0..2)]);
                let consumer = rng.gen_bool(0.5).then_some(C1);
                let r = c.unregister(client, producer, consumer);
                if owner.record(c.id(), "unregister", r) {
                    for (kind, g) in [
                        (GroupKind::Producer, producer),
                        (GroupKind::Consumer, consumer),
                    ] {
                        if let Some(g) = g {
                            model.members.remove(&key(kind, g));
                        }
                    }
                }
            }
            _ => {
                let first = take_and_close(slot, CloseReason::Local);
                assert!(!(first && model.closed_self), "a close is exactly-once");
                assert!(c.is_closed(), "closed, but the registry has it open");
                model.closed_self = true;
                owner.saw_closed = true;
                model.members.clear();
            }
        }
    }
    model
}

/// Three owners run random programs on their channels (each of which starts with a stale
/// membership), a transport thread closes one random channel or none, and a scanner scans with
/// advancing time. A fourth channel's stale membership, never refreshed, must be expired.
fn random_ops(faults: Faults) -> impl Fn() + Clone + Send + Sync + 'static {
    move || {
        let reg = registry(faults);
        let slots: Vec<Closable> = (0..=OWNERS)
            .map(|_| Arc::new(Mutex::new(Some(open(&reg)))))
            .collect();
        let ch: Vec<ChannelHandle> = slots
            .iter()
            .map(|s| s.lock().unwrap().as_ref().expect("registered").handle())
            .collect();
        for (i, c) in ch.iter().enumerate() {
            let (kind, g) = GROUPS[i % GROUPS.len()];
            let data = match kind {
                GroupKind::Producer => producers(&format!("client-{i}"), &[g]),
                GroupKind::Consumer => heartbeat(&format!("client-{i}"), &[], &[g]),
            };
            c.heartbeat(&data, STALE).unwrap();
        }
        let transport_closes = thread_rng().gen_range(0..=OWNERS);

        let owners: Vec<_> = (0..OWNERS)
            .map(|i| {
                let (c, slot) = (ch[i].clone(), slots[i].clone());
                thread::spawn(move || random_owner(&c, &slot, &format!("client-{i}"), i as u64))
            })
            .collect();
        let transport = {
            let victim = (transport_closes < OWNERS).then(|| slots[transport_closes].clone());
            thread::spawn(move || {
                if let Some(slot) = victim {
                    take_and_close(&slot, CloseReason::PeerClosed);
                }
            })
        };
        let scanner = {
            let reg = reg.clone();
            thread::spawn(move || {
                for now in SCANS {
                    reg.scan_inactive(now);
                }
            })
        };
        let models: Vec<OwnerModel> = owners.into_iter().map(|t| t.join().unwrap()).collect();
        transport.join().unwrap();
        scanner.join().unwrap();

        let mut expect = Expect::default();
        for (i, m) in models.into_iter().enumerate() {
            let id = ch[i].id();
            if m.closed_self || i == transport_closes {
                expect.closed.push(id);
            } else {
                expect.exact.push((id, m.members));
            }
        }
        expect.exact.push((ch[OWNERS].id(), BTreeMap::new()));
        support::check(&reg, &expect);
        for (i, c) in ch.iter().enumerate() {
            assert_eq!(
                c.is_closed(),
                expect.closed.contains(&c.id()),
                "channel {i} ({}) closed state",
                c.id()
            );
            // A channel is closed exactly when its handle was taken (and closed).
            assert_eq!(
                slots[i].lock().unwrap().is_none(),
                c.is_closed(),
                "channel {i} ({}) handle",
                c.id()
            );
        }
    }
}

#[test]
fn shuttle_registry_random_ops_random() {
    check(
        "shuttle_registry_random_ops_random",
        Sched::Random,
        random_ops(Faults::default()),
    );
}

#[test]
fn shuttle_registry_random_ops_pct() {
    check(
        "shuttle_registry_random_ops_pct",
        Sched::Pct,
        random_ops(Faults::default()),
    );
}

#[test]
fn shuttle_registry_random_ops_finds_split_remove_if_empty() {
    let faults = Faults {
        split_remove_if_empty: true,
        ..Faults::default()
    };
    check_finds(
        "shuttle_registry_random_ops_finds_split_remove_if_empty",
        Sched::Random,
        "NoLostRegistration",
        random_ops(faults),
    );
}

#[test]
fn shuttle_registry_random_ops_finds_register_after_close() {
    let faults = Faults {
        register_after_close: true,
        ..Faults::default()
    };
    check_finds(
        "shuttle_registry_random_ops_finds_register_after_close",
        Sched::Random,
        "NoResurrection",
        random_ops(faults),
    );
}

// ---------------------------------------------------------------------------------------------
// The lifecycle layer on shuttle's executor
// ---------------------------------------------------------------------------------------------

const OWN: &str = "P-own";

/// A registered channel is spawned with a task that heartbeats into G and its own group, yielding
/// in between; another thread closes the running handle while the reader side heartbeats through
/// a `ChannelHandle`. At quiescence: the channel is in no table, its own group is gone, G keeps
/// its other member, and every task is gone (gauge 0).
fn lifecycle(faults: Faults) -> impl Fn() + Clone + Send + Sync + 'static {
    move || {
        let reg = registry(faults);
        let gauge = TaskGauge::new();
        let spawner = ShuttleSpawner::default();
        let counted = Counted::new(spawner.clone(), gauge.clone());
        let other = open(&reg);
        other
            .handle()
            .heartbeat(&producers("client-other", &[P1]), Millis(WORK))
            .unwrap();

        let registered = ClientChannel::new((), "peer-a")
            .register(&reg)
            .expect("under the channel cap");
        let id = registered.id();
        let running = registered.spawn(&counted, |(), h| async move {
            for i in 0..3 {
                match h.heartbeat(&producers("client-a", &[P1, OWN]), Millis(WORK + i)) {
                    Ok(_) => {}
                    Err(ClientError::ChannelClosed(_)) => return CloseReason::PeerClosed,
                    Err(e) => panic!("unexpected refusal {e}"),
                }
                shuttle::future::yield_now().await;
            }
            CloseReason::IdleTimeout
        });
        let reader = {
            let h = running.handle();
            thread::spawn(move || {
                let mut owner = Owner::default();
                for i in 0..2 {
                    let r = h.heartbeat(&producers("client-a", &[OWN]), Millis(WORK + 10 + i));
                    owner.record(h.id(), "reader heartbeat", r);
                }
            })
        };
        let closer = thread::spawn(move || running.close(CloseReason::Local));
        let closed = closer.join().unwrap();
        reader.join().unwrap();
        spawner.join_all();

        assert_eq!(closed.id(), Some(id));
        assert_eq!(closed.reason(), &CloseReason::Local);
        let mut expect = Expect {
            closed: vec![id],
            ..Expect::default()
        };
        expect.present(GroupKind::Producer, P1, other.id(), Some(Millis(WORK)));
        expect.gone(GroupKind::Producer, OWN, id, "closed");
        support::check(&reg, &expect);
        assert_eq!(gauge.alive(), 0, "every task was dropped");
        assert_eq!(reg.channel_count(), 1);
        assert_eq!(reg.producer_group_count(), 1, "only P1 is left");
    }
}

#[test]
fn shuttle_lifecycle_close_vs_running_task_random() {
    check(
        "shuttle_lifecycle_close_vs_running_task_random",
        Sched::Random,
        lifecycle(Faults::default()),
    );
}

#[test]
fn shuttle_lifecycle_close_vs_running_task_pct() {
    check(
        "shuttle_lifecycle_close_vs_running_task_pct",
        Sched::Pct,
        lifecycle(Faults::default()),
    );
}

#[test]
fn shuttle_lifecycle_finds_register_after_close() {
    let faults = Faults {
        register_after_close: true,
        ..Faults::default()
    };
    check_finds(
        "shuttle_lifecycle_finds_register_after_close",
        Sched::Pct,
        "NoResurrection",
        lifecycle(faults),
    );
}

// ---------------------------------------------------------------------------------------------
// Event order
// ---------------------------------------------------------------------------------------------

/// Ok, or refused because the channel was closed meanwhile.
fn closed_ok<T: std::fmt::Debug>(r: Result<T, ClientError>) {
    assert!(
        matches!(r, Ok(_) | Err(ClientError::ChannelClosed(_))),
        "{r:?}"
    );
}

/// c0 is in P1, P2 and C1 (a clustering consumer group, which announces `ConsumerIdsChanged`);
/// four threads make each group empty out and come back while others join it:
///
/// * w1 (c1): joins P1 and C1, unregisters from both, joins both again.
/// * w2 (c2): joins P2, then P1 and C1 (refused once `closer` has closed c2).
/// * w3 (c3): joins P2, then unregisters from it.
/// * closer: closes c0 (possibly the last member of each of its groups), then c2.
///
/// The listener (`support::listened`) checks each event against the groups the earlier events
/// built and queries the group's shard; at quiescence its groups must be the table's.
fn events_in_order(faults: Faults, shards: usize) -> impl Fn() + Clone + Send + Sync + 'static {
    move || {
        let (reg, model) = listened(RegistryConfig {
            shards,
            faults,
            ..RegistryConfig::default()
        });
        let open = |i: usize| {
            ClientChannel::new((), format!("c{i}"))
                .register(&reg)
                .unwrap()
        };
        let [c0, c1, c2, c3] = [0, 1, 2, 3].map(open);
        let ids = [c0.id(), c1.id(), c2.id(), c3.id()];
        let now = Millis(WORK);
        c0.handle()
            .heartbeat(&heartbeat("client-0", &[P1, P2], &[C1]), now)
            .unwrap();

        let w1 = {
            let c = c1.handle();
            thread::spawn(move || {
                let data = heartbeat("client-1", &[P1], &[C1]);
                c.heartbeat(&data, now).unwrap();
                c.unregister("client-1", Some(P1), Some(C1)).unwrap();
                c.heartbeat(&data, now).unwrap();
            })
        };
        let w2 = {
            let c = c2.handle();
            thread::spawn(move || {
                closed_ok(c.heartbeat(&producers("client-2", &[P2]), now));
                closed_ok(c.heartbeat(&heartbeat("client-2", &[P1], &[C1]), now));
            })
        };
        let w3 = {
            let c = c3.handle();
            thread::spawn(move || {
                c.heartbeat(&producers("client-3", &[P2]), now).unwrap();
                c.unregister("client-3", Some(P2), None).unwrap();
            })
        };
        let closer = thread::spawn(move || {
            assert!(close(c0, CloseReason::PeerClosed));
            assert!(close(c2, CloseReason::PeerClosed));
        });
        for t in [w1, w2, w3, closer] {
            t.join().unwrap();
        }
        // c1 and c3 stay registered (their handles live to the end of the run).
        let [id0, id1, id2, _] = ids;
        model.lock().unwrap().check(&reg);
        let expect = Expect {
            closed: vec![id0, id2],
            ..Expect::default()
        };
        support::check(&reg, &expect);
        assert_eq!(
            reg.members(GroupKind::Producer, P1),
            vec![id1],
            "only c1 is left in P1"
        );
        drop((c1, c3));
    }
}

#[test]
fn shuttle_events_one_shard_random() {
    check(
        "shuttle_events_one_shard_random",
        Sched::Random,
        events_in_order(Faults::default(), 1),
    );
}

#[test]
fn shuttle_events_one_shard_pct() {
    check(
        "shuttle_events_one_shard_pct",
        Sched::Pct,
        events_in_order(Faults::default(), 1),
    );
}

#[test]
fn shuttle_events_sharded_random() {
    check(
        "shuttle_events_sharded_random",
        Sched::Random,
        events_in_order(Faults::default(), 8),
    );
}

#[test]
fn shuttle_events_sharded_pct() {
    check(
        "shuttle_events_sharded_pct",
        Sched::Pct,
        events_in_order(Faults::default(), 8),
    );
}

#[test]
fn shuttle_events_finds_emit_after_unlock() {
    let faults = Faults {
        emit_after_unlock: true,
        ..Faults::default()
    };
    check_finds(
        "shuttle_events_finds_emit_after_unlock",
        Sched::Random,
        "EventsInTableOrder",
        events_in_order(faults, 1),
    );
}

/// A consumer joins C1 while another member closes: each change is announced once, to the
/// members of that moment (what `NOTIFY_CONSUMER_IDS_CHANGED` is sent to), and the last
/// announcement lists exactly the members left. c0 stays throughout, so it hears both changes.
fn join_vs_close_notifications(faults: Faults) -> impl Fn() + Clone + Send + Sync + 'static {
    move || {
        let (reg, model) = listened(RegistryConfig {
            shards: 4,
            faults,
            ..RegistryConfig::default()
        });
        let open = |i: usize| {
            ClientChannel::new((), format!("c{i}"))
                .register(&reg)
                .unwrap()
        };
        let [c0, c1, c2] = [0, 1, 2].map(open);
        let ids = [c0.id(), c1.id(), c2.id()];
        let now = Millis(WORK);
        for (c, client) in [(&c0, "client-0"), (&c1, "client-1")] {
            c.handle()
                .heartbeat(&heartbeat(client, &[], &[C1]), now)
                .unwrap();
        }
        model.lock().unwrap().changes.clear();
        let joiner = {
            let c = c2.handle();
            thread::spawn(move || {
                c.heartbeat(&heartbeat("client-2", &[], &[C1]), now)
                    .unwrap();
            })
        };
        let closer = thread::spawn(move || assert!(close(c1, CloseReason::PeerClosed)));
        joiner.join().unwrap();
        closer.join().unwrap();
        let model = model.lock().unwrap();
        model.check(&reg);
        let [id0, _, id2] = ids;
        assert_eq!(
            model.changes.len(),
            2,
            "one announcement per change: {:?}",
            model.changes
        );
        assert_eq!(
            model.changes.last().map(|(_, chans)| chans.clone()),
            Some(vec![id0, id2]),
            "the last announcement lists the members left"
        );
        let heard = |id| {
            model
                .changes
                .iter()
                .filter(|(_, c)| c.contains(&id))
                .count()
        };
        assert_eq!(heard(id0), 2, "c0 hears each change once");
        // The listener takes the model's lock: release it before the closes below emit.
        drop(model);
        drop((c0, c2));
    }
}

#[test]
fn shuttle_notifications_join_vs_close_random() {
    check(
        "shuttle_notifications_join_vs_close_random",
        Sched::Random,
        join_vs_close_notifications(Faults::default()),
    );
}

#[test]
fn shuttle_notifications_finds_emit_after_unlock() {
    let faults = Faults {
        emit_after_unlock: true,
        ..Faults::default()
    };
    check_finds(
        "shuttle_notifications_finds_emit_after_unlock",
        Sched::Random,
        "EventsInTableOrder",
        join_vs_close_notifications(faults),
    );
}

// ---------------------------------------------------------------------------------------------
// Model traces (models/README.md, "Trace validation")
// ---------------------------------------------------------------------------------------------

/// Heartbeats, unregisters, closes and scans of four channels in P1, P2 and C1, with no checks of
/// its own: what it did is judged by validating its model trace against
/// `models/ClientRegistry.tla`. Seeds: c3 in P1 and c4 in P2 and C1 at time 0 (stale at every
/// scan); workers heartbeat at `WORK..`, scans at `SCANS`.
fn trace_program(faults: Faults) -> impl Fn() + Clone + Send + Sync + 'static {
    move || {
        let reg = registry(faults);
        let [r1, r2, r3, r4] = std::array::from_fn(|_| open(&reg));
        let [c1, c2, c3, c4] = [&r1, &r2, &r3, &r4].map(|r| r.handle());
        let _ = c3.heartbeat(&producers("client-3", &[P1]), STALE);
        let _ = c4.heartbeat(&heartbeat("client-4", &[P2], &[C1]), STALE);
        let w1 = thread::spawn(move || {
            let _ = c1.heartbeat(&heartbeat("client-1", &[P1], &[C1]), Millis(WORK));
            let _ = c1.unregister("client-1", Some(P1), None);
            let _ = c1.heartbeat(&producers("client-1", &[P2]), Millis(WORK + 20));
        });
        let w2 = thread::spawn(move || {
            let _ = c2.heartbeat(&producers("client-2", &[P1]), Millis(WORK));
            let _ = c2.heartbeat(&heartbeat("client-2", &[P1], &[C1]), Millis(WORK + 10));
        });
        let w3 = thread::spawn(move || {
            let _ = c3.heartbeat(&heartbeat("client-3", &[P1], &[C1]), Millis(WORK + 5));
        });
        let closer = thread::spawn(move || {
            close(r2, CloseReason::PeerClosed);
            close(r4, CloseReason::PeerClosed);
        });
        let scanner = {
            let reg = reg.clone();
            thread::spawn(move || SCANS.map(|now| reg.scan_inactive(now)))
        };
        for t in [w1, w2, w3, closer] {
            t.join().unwrap();
        }
        scanner.join().unwrap();
        drop((r1, r3));
    }
}

/// Explores `trace_program(faults)` with shuttle's random scheduler and writes the model traces
/// of up to `want` schedules that `keep` selects to `target/model-traces/client/<sub>/`; returns
/// how many were written.
fn record_traces(
    sub: &str,
    faults: Faults,
    want: usize,
    keep: fn(&[serde_json::Value]) -> bool,
) -> usize {
    let dir = model_trace::dir(&format!("client/{sub}"));
    let recorder = model_trace::Recorder::default();
    runner::record_traces(&dir, recorder, trace_program(faults), 2_000, want, keep)
}

/// A close of `ch` happened before a join of `ch` in the trace (the shape of a heartbeat after
/// close).
fn joins_after_close(lines: &[serde_json::Value]) -> bool {
    let mut closed = std::collections::BTreeSet::new();
    lines.iter().any(|l| {
        let ch = l["ch"].as_u64();
        match l["action"].as_str() {
            Some("ChannelClosedStart") => {
                closed.insert(ch);
                false
            }
            Some("HeartbeatStart" | "HeartbeatJoin") => closed.contains(&ch),
            _ => false,
        }
    })
}

/// The split fault's second critical section ran.
fn split_sections(lines: &[serde_json::Value]) -> bool {
    lines.iter().any(|l| {
        l["action"]
            .as_str()
            .is_some_and(|a| a.ends_with("Finish") && a != "ChannelClosedFinish")
    })
}

/// Model traces of the shipped registry under shuttle's schedules, for trace validation
/// (`.ci/run` validates them with `models/trace/validate.py`): traces of the correct registry
/// (which the model must accept), and of the planted faults `split_remove_if_empty` and
/// `register_after_close` where the fault shows (which it must reject).
#[test]
fn shuttle_registry_model_traces() {
    let ok = record_traces("ok", Faults::default(), 40, |_| true);
    assert!(ok >= 20, "only {ok} distinct traces");
    let split = Faults {
        split_remove_if_empty: true,
        ..Faults::default()
    };
    assert!(record_traces("fault-split", split, 5, split_sections) > 0);
    let resurrect = Faults {
        register_after_close: true,
        ..Faults::default()
    };
    assert!(record_traces("fault-resurrect", resurrect, 5, joins_after_close) > 0);
}
