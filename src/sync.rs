//! The one place that names `std::sync`, `loom` or `shuttle`.
//!
//! Every lock, atomic and shared pointer in L2 and L3 comes from here, so the same registry code
//! runs on std in production, on loom's exhaustive scheduler under `--cfg rmq_loom`, and on
//! shuttle's randomized scheduler under `--features shuttle`. The cfg name is crate-specific on
//! purpose: tokio reacts to a plain `--cfg loom` by dropping `tokio::net`.
//!
//! The surface is kept minimal (`Arc`, a poison-free `Mutex`, atomics): fewer primitives make the
//! models more faithful. This module does not offer `Weak`, `Condvar` or `RwLock`.

#[cfg(all(rmq_loom, feature = "shuttle"))]
compile_error!("`--cfg rmq_loom` and feature `shuttle` are mutually exclusive");

#[cfg(not(any(rmq_loom, feature = "shuttle")))]
mod imp {
    pub(crate) use std::sync::Arc;
    pub(crate) use std::sync::atomic;
    pub(crate) use std::sync::{Mutex as RawMutex, MutexGuard};

    pub(crate) fn lock<T>(m: &RawMutex<T>) -> MutexGuard<'_, T> {
        // A panic while holding a registry lock leaves tables that were consistent at every
        // await-free step; recovering the guard keeps the broker serving instead of cascading.
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(rmq_loom)]
mod imp {
    pub(crate) use loom::sync::Arc;
    pub(crate) use loom::sync::atomic;
    pub(crate) use loom::sync::{Mutex as RawMutex, MutexGuard};

    pub(crate) fn lock<T>(m: &RawMutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(all(feature = "shuttle", not(rmq_loom)))]
mod imp {
    pub(crate) use shuttle::sync::Arc;
    pub(crate) use shuttle::sync::atomic;
    pub(crate) use shuttle::sync::{Mutex as RawMutex, MutexGuard};

    pub(crate) fn lock<T>(m: &RawMutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) use imp::{Arc, MutexGuard, atomic};

/// A poison-free mutex over the facade's primitive.
///
/// `lock` never returns an error: see the std arm for why a poisoned registry lock is recovered.
#[derive(Debug, Default)]
pub(crate) struct Mutex<T>(imp::RawMutex<T>);

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(imp::RawMutex::new(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        imp::lock(&self.0)
    }
}

/// An immutable shared string (group names, client ids).
///
/// It is never a synchronization point (its contents cannot change), so it is std's `Arc<str>`
/// in every arm: loom's `Arc` cannot hold an unsized `str`, and modelling an immutable refcount
/// adds nothing to the schedules explored.
pub(crate) type SharedStr = std::sync::Arc<str>;

/// The hasher of the registry's tables of client-chosen keys (group names, client ids).
///
/// Randomly seeded in production (client-chosen names must not be able to pick colliding
/// hashes); fixed under loom, shuttle and the simulation, where a replayed schedule or seed must
/// visit a channel's groups in the same order as the run that found it.
#[cfg(not(any(rmq_loom, feature = "shuttle", feature = "sim")))]
pub(crate) type HashState = foldhash::fast::RandomState;
/// See the std arm.
#[cfg(any(rmq_loom, feature = "shuttle", feature = "sim"))]
pub(crate) type HashState = foldhash::fast::FixedState;
