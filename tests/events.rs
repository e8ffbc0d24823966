//! Listener delivery on std threads: per group, events arrive in table order
//! (`EventsInTableOrder`, checked by `support::EventModel` as in `tests/shuttle.rs`), the
//! listener runs with no registry lock held (it may query the registry or call into it), and a
//! panicking listener neither breaks the registry nor stops the delivery of later events.

mod support;

use rmq_lifecycle::core::{ClientEvent, GroupKind, Millis};
use rmq_lifecycle::lifecycle::{ChannelHandle, ClientChannel, CloseReason};
use rmq_lifecycle::phase::Registered;
use rmq_lifecycle::registry::{ClientRegistry, RegistryConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;
use support::{close, heartbeat, listened, producers};

/// A registered channel over no transport.
fn open(reg: &Arc<ClientRegistry>) -> ClientChannel<Registered, ()> {
    ClientChannel::new((), "c").register(reg).unwrap()
}

/// Runs `f` on its own thread and fails if it does not finish in time: a listener called under
/// a registry lock that it then takes again would hang the test instead of failing it.
fn within_deadline(f: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let worker = thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    match finished.recv_timeout(Duration::from_secs(60)) {
        Ok(()) => worker.join().unwrap(),
        // The sender was dropped without sending: `f` panicked; report its panic.
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("deadlock: the registry did not return within 60 s")
        }
    }
}

fn config(shards: usize) -> RegistryConfig {
    RegistryConfig {
        shards,
        ..RegistryConfig::default()
    }
}

#[test]
fn a_listener_may_query_the_group_it_hears_about() {
    within_deadline(|| {
        // One shard: the listener's `members` takes the very lock the change was made under.
        let (reg, model) = listened(config(1));
        let (a, b) = (open(&reg), open(&reg));
        let hb = |ch: &ClientChannel<Registered, ()>, client: &str| {
            ch.handle()
                .heartbeat(&heartbeat(client, &["P"], &["C"]), Millis(0))
                .unwrap();
        };
        hb(&a, "client-a");
        hb(&b, "client-b");
        a.handle()
            .unregister("client-a", Some("P"), Some("C"))
            .unwrap();
        assert!(close(b, CloseReason::PeerClosed));
        let model = model.lock().unwrap();
        model.check(&reg);
        assert!(model.groups.is_empty(), "{:?}", model.groups);
    });
}

#[test]
fn a_listener_may_call_into_the_registry() {
    within_deadline(|| {
        // When A joins G, the listener joins B to G too: B's events are queued behind the call
        // that is delivering A's and must still come, in order, before the outer call returns.
        let b_slot: Arc<OnceLock<ChannelHandle>> = Arc::default();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let listener = {
            let (b_slot, heard) = (b_slot.clone(), heard.clone());
            move |e: &ClientEvent| {
                heard.lock().unwrap().push(e.clone());
                let ClientEvent::ClientRegistered { client_id, .. } = e else {
                    return;
                };
                if client_id == "client-a" {
                    let b = b_slot.get().unwrap();
                    b.heartbeat(&producers("client-b", &["G"]), Millis(1))
                        .unwrap();
                }
            }
        };
        let reg = Arc::new(ClientRegistry::with_listener(config(1), listener));
        let (a, b) = (open(&reg), open(&reg));
        b_slot.set(b.handle()).unwrap();
        a.handle()
            .heartbeat(&producers("client-a", &["G"]), Millis(0))
            .unwrap();
        let clients: Vec<String> = heard
            .lock()
            .unwrap()
            .iter()
            .map(|e| match e {
                ClientEvent::ClientRegistered { client_id, .. } => client_id.clone(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(clients, ["client-a", "client-b"]);
        assert_eq!(reg.members(GroupKind::Producer, "G").len(), 2);
        drop((a, b));
    });
}

#[test]
fn a_panicking_listener_does_not_stop_later_events() {
    let panicked = Arc::new(AtomicBool::new(false));
    let heard = Arc::new(Mutex::new(Vec::new()));
    let listener = {
        let (panicked, heard) = (panicked.clone(), heard.clone());
        move |e: &ClientEvent| {
            if !panicked.swap(true, Ordering::Relaxed) {
                panic!("listener bug");
            }
            heard.lock().unwrap().push(e.clone());
        }
    };
    let reg = Arc::new(ClientRegistry::with_listener(config(1), listener));
    let (a, b) = (open(&reg), open(&reg));
    a.handle()
        .heartbeat(&producers("client-a", &["G"]), Millis(0))
        .unwrap();
    b.handle()
        .heartbeat(&producers("client-b", &["G"]), Millis(0))
        .unwrap();
    assert!(close(a, CloseReason::PeerClosed));
    assert!(close(b, CloseReason::PeerClosed));
    let heard = heard.lock().unwrap();
    // Five events; the first (A's registration) was lost to the panic.
    assert_eq!(heard.len(), 4, "all but the first event: {heard:?}");
    assert!(
        matches!(heard[3], ClientEvent::GroupUnregistered { .. }),
        "{heard:?}"
    );
    reg.check_invariants().unwrap();
}

/// Threads join, leave and close in two shared groups of each kind, std scheduling: the listener
/// must hear every group's events in table order.
fn std_threads_keep_table_order(shards: usize) {
    const THREADS: usize = 4;
    const ROUNDS: usize = 500;
    let (reg, model) = listened(config(shards));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let reg = reg.clone();
            thread::spawn(move || {
                let client = format!("client-{t}");
                for round in 0..ROUNDS {
                    let ch = open(&reg);
                    let (p, c) = if (t + round) % 2 == 0 {
                        ("P1", "C1")
                    } else {
                        ("P2", "C2")
                    };
                    let now = Millis(round as u64);
                    let handle = ch.handle();
                    handle
                        .heartbeat(&heartbeat(&client, &[p, "P1"], &[c]), now)
                        .unwrap();
                    if round % 3 == 0 {
                        handle.unregister(&client, Some(p), Some(c)).unwrap();
                    }
                    assert!(close(ch, CloseReason::PeerClosed));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    model.lock().unwrap().check(&reg);
    assert_eq!(reg.producer_group_count() + reg.consumer_group_count(), 0);
}

#[test]
fn std_threads_keep_table_order_one_shard() {
    std_threads_keep_table_order(1);
}

#[test]
fn std_threads_keep_table_order_sharded() {
    std_threads_keep_table_order(64);
}
