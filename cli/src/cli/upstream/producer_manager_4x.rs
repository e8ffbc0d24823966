//! Upstream 4.x `ProducerManager` (4.6.1 - 4.9.8 releases): one lock for the whole manager,
//! `doChannelCloseEvent` visits every group, and empty groups are never removed on close (#8673).
//!
//! Used as the baseline of `bench registry` and the "upstream" side of `replay stale-groups`.
//! Not thread-clever on purpose: that is the point.

use rmq_lifecycle::core::Millis;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A channel as 4.x's tables key it: Netty's `Channel` identity, here a number the caller picks.
pub(crate) type Channel4x = u64;

/// The 4.x manager: `groupChannelTable` behind the `synchronized` methods' single monitor.
#[derive(Debug, Default)]
pub(crate) struct ProducerManager4x {
    table: Mutex<HashMap<String, HashMap<Channel4x, Millis>>>,
    /// The table's length, kept beside it so that counting (the replay samples it) never waits
    /// on the lock it measures.
    groups: AtomicUsize,
}

impl ProducerManager4x {
    /// An empty manager.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// `registerProducer`: create the group if absent, then add or refresh the channel.
    pub(crate) fn register_producer(&self, group: &str, ch: Channel4x, now: Millis) {
        let mut table = self.table.lock().unwrap();
        match table.get_mut(group) {
            Some(members) => {
                members.insert(ch, now);
            }
            None => {
                table.insert(group.to_owned(), HashMap::from([(ch, now)]));
                self.groups.store(table.len(), Ordering::Relaxed);
            }
        }
    }

    /// `doChannelCloseEvent`: for every group, remove the channel; empty groups stay.
    pub(crate) fn channel_closed(&self, ch: Channel4x) -> usize {
        let mut removed = 0;
        self.channels_closed(ch, |r, _| {
            removed = r;
            None
        });
        removed
    }

    /// `doChannelCloseEvent` for `first`, then for each channel `then(removed, groups visited)`
    /// returns, without letting the lock go in between: the replay's event thread re-entering
    /// the monitor for its next queued close before a woken heartbeat thread runs. `then` is also
    /// where the replay's model of the JVM's slower scan waits, under the lock, as the scan did.
    pub(crate) fn channels_closed(
        &self,
        first: Channel4x,
        mut then: impl FnMut(usize, usize) -> Option<Channel4x>,
    ) {
        let mut table = self.table.lock().unwrap();
        let mut next = Some(first);
        while let Some(ch) = next {
            let mut removed = 0;
            for members in table.values_mut() {
                removed += usize::from(members.remove(&ch).is_some());
            }
            next = then(removed, table.len());
        }
    }

    /// Groups in the table, empty ones included; without taking the lock.
    pub(crate) fn group_count(&self) -> usize {
        self.groups.load(Ordering::Relaxed)
    }

    /// Groups with no channel left (the leak).
    #[cfg(test)]
    pub(crate) fn empty_group_count(&self) -> usize {
        self.table
            .lock()
            .unwrap()
            .values()
            .filter(|m| m.is_empty())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_empty_groups_like_upstream() {
        let m = ProducerManager4x::new();
        m.register_producer("IotRuleEngine-1", 1, Millis(0));
        assert_eq!(m.channel_closed(1), 1);
        assert_eq!(m.group_count(), 1);
        assert_eq!(m.empty_group_count(), 1);
    }
}
