//! The auto-switch master's in-sync set (upstream `SyncStateSet`), a value type: which slaves,
//! by broker id, hold the log closely enough to count for sync replication and to be elected.
//!
//! Rules (upstream `AutoSwitchHAService`): a slave that is not an async learner joins once its
//! ack reaches the confirm offset and the current epoch's start (`maybeExpandInSyncStateSet`);
//! it leaves when it has not caught up with the master for `max_not_catchup_ms`
//! (`haMaxTimeSlaveNotCatchup`, 15 s) or when its last connection closes. Two connections of one
//! broker id are one member, so a slave counts once however it reconnects (upstream counts
//! connections there, and notes the double count as a TODO).
//!
//! It is not the connection table (that is `registry::HaRegistry`) and it does no IO.

use std::collections::BTreeMap;

use super::Millis;

/// One slave of the set, by broker id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// The broker id from its handshake.
    pub broker_id: i64,
    /// Its last report.
    pub ack: u64,
    /// In the in-sync set now.
    pub in_sync: bool,
    /// Its live connections that reported.
    pub connections: u32,
    /// When its ack last reached what the master held at its previous ack.
    pub last_caught_up: Millis,
    /// The master's max offset at its previous ack.
    pub master_max_before: u64,
}

/// The in-sync set. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct InSyncSet {
    max_not_catchup_ms: u64,
    members: BTreeMap<i64, Member>,
}

impl InSyncSet {
    /// An empty set with upstream's `haMaxTimeSlaveNotCatchup`.
    pub fn new(max_not_catchup_ms: u64) -> Self {
        InSyncSet {
            max_not_catchup_ms,
            members: BTreeMap::new(),
        }
    }

    /// A connection of `broker_id` made its first valid report (after the handshake).
    pub fn connected(&mut self, broker_id: i64, now: Millis) {
        let m = self.members.entry(broker_id).or_insert(Member {
            broker_id,
            ack: 0,
            in_sync: false,
            connections: 0,
            last_caught_up: now,
            master_max_before: 0,
        });
        m.connections += 1;
    }

    /// A connection that [`connected`](Self::connected) closed; a broker with no connection
    /// left leaves the set (and is forgotten).
    pub fn disconnected(&mut self, broker_id: i64) {
        if let Some(m) = self.members.get_mut(&broker_id) {
            m.connections = m.connections.saturating_sub(1);
            if m.connections == 0 {
                self.members.remove(&broker_id);
            }
        }
    }

    /// A report of `ack` from `broker_id`. `master_max` is the master's (durable) max offset,
    /// `epoch_start` the start of its current epoch; a learner never joins.
    pub fn acked(
        &mut self,
        broker_id: i64,
        ack: u64,
        now: Millis,
        master_max: u64,
        epoch_start: u64,
        learner: bool,
    ) {
        let confirm = self.confirm(master_max);
        let Some(m) = self.members.get_mut(&broker_id) else {
            return;
        };
        m.ack = ack;
        // Caught up: it holds what the master held one report ago (upstream compares with the
        // master's offset when it last sent), so a slave that keeps pace under a steady load
        // stays in; one that falls further behind does not.
        if ack >= m.master_max_before.min(master_max) {
            m.last_caught_up = now;
        }
        m.master_max_before = master_max;
        if !m.in_sync && !learner && ack >= confirm && ack >= epoch_start {
            m.in_sync = true;
        }
    }

    /// Drops the members that have not caught up for too long.
    pub fn tick(&mut self, now: Millis) {
        for m in self.members.values_mut() {
            if m.in_sync && now.since(m.last_caught_up) > self.max_not_catchup_ms {
                m.in_sync = false;
            }
        }
    }

    /// The confirm offset: the smallest ack of the in-sync slaves, or `master_max` with none.
    pub fn confirm(&self, master_max: u64) -> u64 {
        self.members
            .values()
            .filter(|m| m.in_sync)
            .map(|m| m.ack)
            .fold(master_max, u64::min)
    }

    /// In-sync slaves whose ack is at least `offset`.
    pub fn count_at_least(&self, offset: u64) -> usize {
        self.members
            .values()
            .filter(|m| m.in_sync && m.ack >= offset)
            .count()
    }

    /// Every member, by broker id.
    pub fn members(&self) -> Vec<Member> {
        self.members.values().copied().collect()
    }

    /// The broker ids in the set.
    pub fn in_sync(&self) -> Vec<i64> {
        self.members
            .values()
            .filter(|m| m.in_sync)
            .map(|m| m.broker_id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slave_joins_when_it_reaches_the_confirm_offset_and_leaves_when_it_lags_or_goes() {
        let mut set = InSyncSet::new(15_000);
        set.connected(2, Millis(0));
        set.acked(2, 100, Millis(1), 500, 0, false);
        assert!(
            set.in_sync().is_empty(),
            "behind the master, which alone confirms 500"
        );
        set.acked(2, 500, Millis(2), 500, 0, false);
        assert_eq!(set.in_sync(), [2]);
        assert_eq!(set.confirm(600), 500);

        // A second slave joins at the confirm offset, not the master's max.
        set.connected(3, Millis(2));
        set.acked(3, 400, Millis(3), 600, 0, false);
        assert_eq!(set.in_sync(), [2]);
        set.acked(3, 500, Millis(4), 600, 0, false);
        assert_eq!(set.in_sync(), [2, 3]);
        assert_eq!(set.count_at_least(500), 2);
        assert_eq!(set.count_at_least(501), 0);

        // Nor before the epoch's start; and a learner never.
        set.connected(4, Millis(4));
        set.acked(4, 550, Millis(5), 600, 560, false);
        set.connected(5, Millis(4));
        set.acked(5, 600, Millis(5), 600, 0, true);
        assert_eq!(set.in_sync(), [2, 3]);

        // Slave 3 keeps up to 20 s; slave 2 stays at 500 while the master grows: it lags past
        // 15 s and leaves.
        set.acked(2, 500, Millis(5_000), 700, 0, false);
        set.acked(3, 700, Millis(20_000), 700, 0, false);
        set.acked(2, 500, Millis(20_000), 700, 0, false);
        set.tick(Millis(20_000));
        assert_eq!(
            set.in_sync(),
            [2, 3],
            "slave 2 held at 5 s what the master held before"
        );
        set.tick(Millis(20_001));
        assert_eq!(set.in_sync(), [3]);

        // Two connections of one broker are one member; it goes with the last.
        set.connected(3, Millis(20_001));
        set.disconnected(3);
        assert_eq!(set.in_sync(), [3]);
        set.disconnected(3);
        assert!(set.in_sync().is_empty());
        assert!(set.members().iter().all(|m| m.broker_id != 3));
    }
}
