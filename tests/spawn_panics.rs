//! `spawn` is panic-safe: a panic anywhere in it (the closure that builds the futures, or the
//! spawner on either task) leaves no task running the connection's futures and no row, and the
//! stop signal is raised before the row goes. Also: a connection's row cannot outlive its handle
//! by `mem::forget` past housekeeping.

use rmq_lifecycle::lifecycle::{
    BoxTask, ClientAcceptor, ClientChannel, CloseReason, HaAcceptor, HaConnection, HaTaskContext,
    Spawn, TaskHandle,
};
use rmq_lifecycle::registry::{ClientRegistry, HaRegisterError, HaRegistry, RegistryConfig};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Keeps the tasks it is given, polls them only when told, and panics on its `panic_on`-th spawn.
#[derive(Clone, Default)]
struct Manual {
    tasks: Arc<Mutex<Vec<Option<BoxTask>>>>,
    calls: Arc<AtomicUsize>,
    panic_on: Option<usize>,
}

struct Handle;

impl TaskHandle for Handle {
    fn abort(&self) {}
    fn is_finished(&self) -> bool {
        false
    }
}

impl Spawn for Manual {
    fn spawn(&self, task: BoxTask) -> Box<dyn TaskHandle> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.tasks.lock().unwrap().push(Some(task));
        if self.panic_on == Some(call) {
            panic!("the spawner fails on spawn #{call}");
        }
        Box::new(Handle)
    }
}

impl Manual {
    /// Polls every task once more; returns how many are still pending.
    fn run(&self) -> usize {
        let mut pending = 0;
        let mut tasks = self.tasks.lock().unwrap();
        for slot in tasks.iter_mut() {
            if let Some(task) = slot {
                match task.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                    Poll::Ready(()) => *slot = None,
                    Poll::Pending => pending += 1,
                }
            }
        }
        pending
    }
}

/// A future that records being polled and never completes.
fn watched(polled: &Arc<AtomicBool>) -> impl Future<Output = CloseReason> + Send + 'static {
    let polled = polled.clone();
    std::future::poll_fn(move |_| {
        polled.store(true, Ordering::SeqCst);
        Poll::Pending
    })
}

/// A task that runs until its connection is told to stop.
fn until_stopped(
    ctx: HaTaskContext,
    polled: &Arc<AtomicBool>,
) -> impl Future<Output = CloseReason> + Send + 'static {
    let polled = polled.clone();
    std::future::poll_fn(move |_| {
        polled.store(true, Ordering::SeqCst);
        if ctx.is_stopped() {
            Poll::Ready(CloseReason::Shutdown)
        } else {
            Poll::Pending
        }
    })
}

fn quiet<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    catch_unwind(AssertUnwindSafe(f))
}

#[test]
fn a_panic_building_the_futures_leaves_no_task_and_no_row() {
    type Never = std::future::Pending<CloseReason>;
    let registry = Arc::new(HaRegistry::new(4));
    let spawner = Manual::default();
    let registered = HaConnection::new((), "probe").register(&registry).unwrap();
    let result = quiet(|| {
        registered.spawn(&spawner, |(), _r, _w| -> (Never, Never) {
            panic!("the closure fails")
        })
    });
    assert!(result.is_err());
    assert_eq!(
        spawner.calls.load(Ordering::SeqCst),
        0,
        "nothing was spawned"
    );
    assert_eq!(registry.count(), 0, "the row went with the handle");
    assert_eq!(registry.closed_total(), 1);
}

#[test]
fn a_panic_in_the_spawner_leaves_no_future_running_and_no_row() {
    for panic_on in [1, 2] {
        let registry = Arc::new(HaRegistry::new(4));
        let spawner = Manual {
            panic_on: Some(panic_on),
            ..Manual::default()
        };
        let (reader_polled, writer_polled) = (Arc::default(), Arc::default());
        let registered = HaConnection::new((), "slave").register(&registry).unwrap();
        let result = quiet(|| {
            registered.spawn(&spawner, |(), _r, _w| {
                (watched(&reader_polled), watched(&writer_polled))
            })
        });
        assert!(result.is_err(), "spawn #{panic_on} panicked");
        assert_eq!(registry.count(), 0, "spawn #{panic_on}: the row is gone");
        // What was started ends without ever polling the connection's futures: the gate never
        // opened, and the stop signal it also waits on was raised.
        assert_eq!(spawner.run(), 0, "spawn #{panic_on}: a task still runs");
        assert!(!reader_polled.load(Ordering::SeqCst) && !writer_polled.load(Ordering::SeqCst));
    }
}

#[test]
fn both_futures_run_only_once_both_tasks_are_spawned() {
    let registry = Arc::new(HaRegistry::new(4));
    let spawner = Manual::default();
    let (reader_polled, writer_polled) = (Arc::default(), Arc::default());
    let running = HaConnection::new((), "slave")
        .register(&registry)
        .unwrap()
        .spawn(&spawner, |(), r, w| {
            (
                until_stopped(r, &reader_polled),
                until_stopped(w, &writer_polled),
            )
        });
    assert!(
        !reader_polled.load(Ordering::SeqCst),
        "nothing polled before the executor runs"
    );
    assert_eq!(spawner.run(), 2);
    assert!(reader_polled.load(Ordering::SeqCst) && writer_polled.load(Ordering::SeqCst));
    assert_eq!(registry.count(), 1);
    let closed = running.close(CloseReason::Local);
    assert!(closed.removed_row());
    assert_eq!(
        spawner.run(),
        0,
        "closing raised the stop signal; the gate's tasks end"
    );
}

#[test]
fn a_panic_in_a_client_task_closure_or_spawner_closes_the_channel() {
    let registry = Arc::new(ClientRegistry::default());
    let registered = ClientChannel::new((), "c").register(&registry).unwrap();
    let result = quiet(|| {
        registered.spawn(
            &Manual::default(),
            |(), _h| -> std::future::Ready<CloseReason> { panic!("the closure fails") },
        )
    });
    assert!(result.is_err());
    assert_eq!(registry.channel_count(), 0);

    let spawner = Manual {
        panic_on: Some(1),
        ..Manual::default()
    };
    let polled = Arc::default();
    let registered = ClientChannel::new((), "c").register(&registry).unwrap();
    assert!(quiet(|| registered.spawn(&spawner, |(), _h| watched(&polled))).is_err());
    assert_eq!(registry.channel_count(), 0);
    registry.check_invariants().unwrap();
}

#[test]
fn a_forgotten_registered_ha_handle_is_reclaimed_by_housekeeping() {
    let registry = Arc::new(HaRegistry::new(2));
    let acceptor = HaAcceptor::<(), _>::new(registry.clone(), Manual::default());
    std::mem::forget(HaConnection::new((), "leaked").register(&registry).unwrap());
    let _live = HaConnection::new((), "live").register(&registry).unwrap();
    assert_eq!(
        HaConnection::new((), "third")
            .register(&registry)
            .unwrap_err()
            .error,
        HaRegisterError::TooManyConnections { max: 2 },
        "the leaked row holds a cap slot"
    );
    assert_eq!(acceptor.housekeeping(), 0, "first sighting: marked only");
    // `_live` is also unstarted: housekeeping cannot tell it from a leak, and reclaims it too.
    assert_eq!(acceptor.housekeeping(), 2);
    assert!(HaConnection::new((), "next").register(&registry).is_ok());
}

#[test]
fn a_forgotten_registered_client_handle_is_reclaimed_by_the_scan() {
    let registry = Arc::new(ClientRegistry::new(RegistryConfig {
        rules: rmq_lifecycle::core::ClientRules {
            max_channels: 1,
            ..Default::default()
        },
        ..RegistryConfig::default()
    }));
    let acceptor = ClientAcceptor::<(), _>::new(registry.clone(), Manual::default());
    std::mem::forget(
        ClientChannel::new((), "leaked")
            .register(&registry)
            .unwrap(),
    );
    assert!(ClientChannel::new((), "next").register(&registry).is_err());
    let now = rmq_lifecycle::core::Millis(0);
    assert_eq!(acceptor.scan(now).reclaimed, 0);
    assert_eq!(acceptor.scan(now).reclaimed, 1);
    assert!(ClientChannel::new((), "next").register(&registry).is_ok());
    registry.check_invariants().unwrap();
}
