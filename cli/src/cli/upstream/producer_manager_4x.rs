//! Upstream 4.x `ProducerManager` (4.6.1 - 4.9.8 releases): one lock for the whole manager,
//! `doChannelCloseEvent` visits every group, and empty groups are never removed on close (#8673).
//!
//! Used as the baseline of `bench registry` and the "upstream" side of `replay stale-groups`.
//! Not thread-clever on purpose: that is the point.

use rmq_lifecycle::core::Millis;
use std::collections::HashMap;
use std::sync::Mutex;

/// A channel as 4.x's tables key it: Netty's `Channel` identity, here a number the caller picks.
pub(crate) type Channel4x = u64;

/// The 4.x manager: `groupChannelTable` behind the `synchronized` methods' single monitor.
#[derive(Debug, Default)]
pub(crate) struct ProducerManager4x {
    table: Mutex<HashMap<String, HashMap<Channel4x, Millis>>>,
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
            }
        }
    }

    /// `doChannelCloseEvent`: for every group, remove the channel; empty groups stay.
    pub(crate) fn channel_closed(&self, ch: Channel4x) -> usize {
        let mut table = self.table.lock().unwrap();
        let mut removed = 0;
        for members in table.values_mut() {
            removed += usize::from(members.remove(&ch).is_some());
        }
        removed
    }

    /// Groups in the table, empty ones included.
    pub(crate) fn group_count(&self) -> usize {
        self.table.lock().unwrap().len()
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
