//! A hash table split into independently locked shards.
//!
//! A removal that must be atomic with the emptiness check ("remove the group if it has no
//! members") happens inside one shard's critical section; no lock is held across shards, so a
//! critical section is O(1) and a heartbeat for one group waits at most for one O(1) operation on
//! another group of the same shard, never for a scan of the table. Hand-written rather than
//! `dashmap` because its locks must come from `crate::sync` to be model-checked.
//!
//! Each shard may carry an outbox `O` beside its lock (the group tables' event outboxes,
//! `registry::outbox`); the other tables use `()`.

use crate::sync::{Mutex, MutexGuard};
use hashbrown::HashTable;
use std::hash::{BuildHasher, Hash};

/// One shard, aligned to its own cache line pair so neighbouring shards do not false-share.
#[repr(align(128))]
struct Shard<T, O>(Mutex<HashTable<T>>, O);

pub(crate) struct Sharded<T, O = ()> {
    shards: Box<[Shard<T, O>]>,
    hasher: crate::sync::HashState,
    mask: usize,
}

impl<T, O: Default> Sharded<T, O> {
    /// `shards` is rounded up to a power of two (at least 1).
    pub(crate) fn new(shards: usize) -> Self {
        let n = shards.max(1).next_power_of_two();
        Sharded {
            shards: (0..n)
                .map(|_| Shard(Mutex::new(HashTable::new()), O::default()))
                .collect(),
            hasher: crate::sync::HashState::default(),
            mask: n - 1,
        }
    }
}

impl<T, O> Sharded<T, O> {
    pub(crate) fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Locks the shard that holds `hash`.
    ///
    /// The shard is picked from bits 40.. of the hash: hashbrown uses the low bits for the bucket
    /// and the top 7 for its control bytes, so this keeps the three independent.
    pub(crate) fn lock(&self, hash: u64) -> MutexGuard<'_, HashTable<T>> {
        self.shard(hash).0.lock()
    }

    /// The outbox of the shard that holds `hash`.
    pub(crate) fn outbox(&self, hash: u64) -> &O {
        &self.shard(hash).1
    }

    fn shard(&self, hash: u64) -> &Shard<T, O> {
        &self.shards[(hash >> 40) as usize & self.mask]
    }

    /// Visits every shard in turn, holding one lock at a time.
    pub(crate) fn for_each_shard(&self, mut f: impl FnMut(&mut HashTable<T>)) {
        for shard in self.shards.iter() {
            f(&mut shard.0.lock());
        }
    }

    /// Entries in all shards. Not a snapshot: shards are counted one after another.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().len()).sum()
    }

    /// Inserts an entry whose key the caller knows to be absent, rehashing with this table's
    /// hasher when the shard grows.
    pub(crate) fn insert_unique<K: Hash + ?Sized>(
        &self,
        shard: &mut HashTable<T>,
        hash: u64,
        value: T,
        key: impl Fn(&T) -> &K,
    ) {
        shard.insert_unique(hash, value, |v| self.hasher.hash_one(key(v)));
    }
}
