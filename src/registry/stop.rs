//! A runtime-agnostic, one-shot stop signal: "whichever task exits first stops the other".
//! It lives in L2 because an HA row holds its connection's signal and raises it on removal.
//!
//! Hand-written rather than taken from a crate because it must be built on `crate::sync`, so
//! that loom and shuttle see its synchronization. It is one flag plus the wakers of the futures
//! waiting for it; it is not a channel and carries no value.

use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::{Arc, Mutex};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Cloneable handle to one stop flag.
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    stopped: AtomicBool,
    waiters: Mutex<Vec<Waker>>,
}

impl StopSignal {
    /// A signal not yet raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the signal and wakes every waiter. Idempotent; returns true the first time.
    pub fn stop(&self) -> bool {
        if self.0.stopped.swap(true, Ordering::AcqRel) {
            return false;
        }
        let waiters = std::mem::take(&mut *self.0.waiters.lock());
        for waker in waiters {
            waker.wake();
        }
        true
    }

    /// True once raised.
    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::Acquire)
    }

    /// Completes once the signal is raised.
    pub fn stopped(&self) -> Stopped<'_> {
        Stopped(self)
    }
}

/// The future returned by [`StopSignal::stopped`].
#[derive(Debug)]
pub struct Stopped<'a>(&'a StopSignal);

impl Future for Stopped<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let inner = &(self.0).0;
        if inner.stopped.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        let mut waiters = inner.waiters.lock();
        // Re-check under the lock: `stop` sets the flag before it takes the waiters, so either
        // it sees this waker or this check sees the flag.
        if inner.stopped.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
