//! A shard's event outbox: the FIFO that fixes the order in which a group's events reach the
//! listener.
//!
//! An operation pushes an event while it holds the lock of the shard whose table the event
//! describes, so within one shard the outbox holds events in the order the table changed. After
//! the operation has released all its locks it drains every outbox it pushed into. One thread at
//! a time delivers from an outbox (the `delivering` flag, under the outbox's own mutex): a
//! thread that finds the flag set only leaves its events queued, and the deliverer takes the
//! queue again after each batch and clears the flag only when it finds the queue empty, under the
//! same lock, so no event is stranded and none overtakes an earlier one.
//!
//! The listener is called with no lock held (a listener may query the registry, or run another
//! operation whose events it then finds queued behind its own call). A panic that escapes the
//! delivery callback drops the rest of its batch and releases the flag, so later operations
//! deliver again.
//!
//! Lock order: a shard lock, then its outbox's mutex (push); the outbox's mutex alone (drain).

use crate::sync::Mutex;

pub(crate) struct Outbox<E>(Mutex<State<E>>);

struct State<E> {
    queue: Vec<E>,
    /// Some thread is between taking a batch and finding the queue empty.
    delivering: bool,
}

impl<E> Default for Outbox<E> {
    fn default() -> Self {
        Outbox(Mutex::new(State {
            queue: Vec::new(),
            delivering: false,
        }))
    }
}

impl<E> Outbox<E> {
    /// Queues an event. Call under the lock of the shard the event describes: that lock orders
    /// it against the group's other changes.
    pub(crate) fn push(&self, event: E) {
        self.0.lock().queue.push(event);
    }

    /// Delivers queued events, oldest first, until the queue is empty; returns at once if another
    /// thread is delivering (it delivers these too). Call with no lock held.
    pub(crate) fn drain(&self, mut deliver: impl FnMut(&E)) {
        let mut batch = {
            let mut st = self.0.lock();
            if st.delivering || st.queue.is_empty() {
                return;
            }
            st.delivering = true;
            std::mem::take(&mut st.queue)
        };
        let flag = Delivering(self);
        loop {
            for event in batch.drain(..) {
                deliver(&event);
            }
            let mut st = self.0.lock();
            if st.queue.is_empty() {
                st.delivering = false;
                // Hand the (empty) buffer back so that the next push does not allocate.
                if st.queue.capacity() == 0 {
                    st.queue = batch;
                }
                drop(st);
                std::mem::forget(flag);
                return;
            }
            std::mem::swap(&mut st.queue, &mut batch);
        }
    }
}

/// Releases the `delivering` flag if delivery unwinds (the normal exit clears it itself, under
/// the lock that finds the queue empty, and forgets this guard).
struct Delivering<'a, E>(&'a Outbox<E>);

impl<E> Drop for Delivering<'_, E> {
    fn drop(&mut self) {
        self.0.0.lock().delivering = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn delivers_in_push_order_including_pushes_made_while_delivering() {
        let outbox = Outbox::default();
        outbox.push(1);
        outbox.push(2);
        let heard = RefCell::new(Vec::new());
        outbox.drain(|e: &u32| {
            heard.borrow_mut().push(*e);
            if *e == 1 {
                // Another operation pushes and tries to deliver while this call delivers: it
                // finds the flag set and leaves its event to this call.
                outbox.push(3);
                outbox.drain(|_| panic!("a second deliverer"));
            }
        });
        assert_eq!(heard.into_inner(), [1, 2, 3]);
        let st = outbox.0.lock();
        assert!(st.queue.is_empty() && !st.delivering);
    }

    #[test]
    fn a_panic_in_delivery_releases_the_flag() {
        let outbox = Outbox::default();
        outbox.push(1);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            outbox.drain(|_: &u32| panic!("escaped the listener's catch"));
        }));
        assert!(unwound.is_err());
        outbox.push(2);
        let mut heard = Vec::new();
        outbox.drain(|e| heard.push(*e));
        assert_eq!(
            heard,
            [2],
            "the panicking batch is dropped; later events are delivered"
        );
    }
}
