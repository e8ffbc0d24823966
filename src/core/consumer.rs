//! Per consumer group metadata and the pure rules for updating it from a heartbeat: the part of
//! upstream's `ConsumerGroupInfo` that is not about which channels are members.
//!
//! Both the value model and the concurrent registry call these functions, so the subtle rules
//! (when subscriptions count as changed, when the v2 fingerprint differs) exist once.

use super::heartbeat::{
    ConsumeFromWhere, ConsumeType, ConsumerData, MessageModel, SubscriptionData,
};
use std::collections::BTreeMap;

/// A consumer group's metadata, overwritten by each member's heartbeat as upstream does.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsumerMeta {
    /// The last heartbeat's consume type.
    pub consume_type: ConsumeType,
    /// The last heartbeat's message model; broadcasting groups never fire `CHANGE`.
    pub message_model: MessageModel,
    /// The last heartbeat's start position.
    pub consume_from_where: ConsumeFromWhere,
    /// Topic -> subscription.
    pub subscriptions: BTreeMap<String, SubscriptionData>,
    /// The last v2 fingerprint seen for this group. Upstream keeps these in a table that is never
    /// cleaned; here it lives and dies with the group.
    pub fingerprint: Option<i64>,
}

/// What one heartbeat changed in a group's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetaUpdate {
    /// A topic was added or removed (upstream `updateSubscription` returning true).
    pub subscriptions_changed: bool,
    /// The group held a fingerprint and this heartbeat's differs (`IS_SUB_CHANGE` for v2).
    pub fingerprint_differs: bool,
}

impl ConsumerMeta {
    /// Applies one consumer entry of a heartbeat with the given v2 fields.
    ///
    /// A v2 heartbeat sent `withoutSub` leaves the subscriptions alone; otherwise the subscription
    /// table is replaced the way `ConsumerGroupInfo.updateSubscription` does it: new topics are
    /// added, a higher `subVersion` replaces (without counting as a change: rebalancing depends on
    /// topics, not expressions), and topics no longer sent are removed.
    pub fn apply(
        &mut self,
        data: &ConsumerData,
        fingerprint: i64,
        without_sub: bool,
    ) -> MetaUpdate {
        self.consume_type = data.consume_type;
        self.message_model = data.message_model;
        self.consume_from_where = data.consume_from_where;
        let mut update = MetaUpdate::default();
        if fingerprint != 0 {
            update.fingerprint_differs = self.fingerprint.is_some_and(|old| old != fingerprint);
            self.fingerprint = Some(fingerprint);
        }
        if !(fingerprint != 0 && without_sub) {
            update.subscriptions_changed = self.update_subscriptions(&data.subscription_data_set);
        }
        update
    }

    fn update_subscriptions(&mut self, incoming: &[SubscriptionData]) -> bool {
        let mut changed = false;
        for sub in incoming {
            match self.subscriptions.get_mut(&sub.topic) {
                None => {
                    self.subscriptions.insert(sub.topic.clone(), sub.clone());
                    changed = true;
                }
                Some(old) if sub.sub_version > old.sub_version => *old = sub.clone(),
                Some(_) => {}
            }
        }
        let before = self.subscriptions.len();
        self.subscriptions
            .retain(|topic, _| incoming.iter().any(|s| &s.topic == topic));
        changed | (self.subscriptions.len() != before)
    }

    /// Whether a membership change in this group is announced with `ConsumerIdsChanged`.
    pub fn announces_changes(&self) -> bool {
        self.message_model != MessageModel::Broadcasting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(topics: &[(&str, i64)]) -> ConsumerData {
        ConsumerData {
            group_name: "g".into(),
            subscription_data_set: topics
                .iter()
                .map(|(t, v)| SubscriptionData {
                    topic: (*t).into(),
                    sub_version: *v,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Upstream `ClientManageProcessorTest.processRequest_heartbeat`: full, withoutSub, new
    /// fingerprint, withoutSub again -> IS_SUB_CHANGE false, false, true, false.
    #[test]
    fn v2_fingerprint_sequence_matches_upstream() {
        let mut m = ConsumerMeta::default();
        let a = m.apply(&data(&[("topicA", 1)]), 111, false);
        assert!(!a.fingerprint_differs);
        assert!(a.subscriptions_changed);
        let b = m.apply(&data(&[]), 111, true);
        assert!(!b.fingerprint_differs && !b.subscriptions_changed);
        assert_eq!(
            m.subscriptions.keys().collect::<Vec<_>>(),
            ["topicA"],
            "withoutSub keeps subs"
        );
        let c = m.apply(&data(&[("topicB", 2)]), 222, false);
        assert!(c.fingerprint_differs && c.subscriptions_changed);
        assert_eq!(m.subscriptions.keys().collect::<Vec<_>>(), ["topicB"]);
        let d = m.apply(&data(&[]), 222, true);
        assert!(!d.fingerprint_differs);
    }

    /// A topic listed twice in one heartbeat: its entries apply in order (docs/SPEC.md 2.5).
    #[test]
    fn a_topic_listed_twice_applies_in_order() {
        let mut m = ConsumerMeta::default();
        assert!(
            m.apply(&data(&[("T", 2), ("T", 1)]), 0, false)
                .subscriptions_changed
        );
        assert_eq!(
            m.subscriptions["T"].sub_version, 2,
            "the lower second entry loses"
        );
        let mut m = ConsumerMeta::default();
        m.apply(&data(&[("T", 1), ("T", 2)]), 0, false);
        assert_eq!(
            m.subscriptions["T"].sub_version, 2,
            "the higher second entry wins"
        );
        let again = m.apply(&data(&[("T", 3), ("T", 3)]), 0, false);
        assert_eq!(m.subscriptions["T"].sub_version, 3);
        assert!(
            !again.subscriptions_changed,
            "a replacement is not a change"
        );
    }

    #[test]
    fn higher_sub_version_replaces_without_a_change() {
        let mut m = ConsumerMeta::default();
        m.apply(&data(&[("t", 1)]), 0, false);
        let mut newer = data(&[("t", 5)]);
        newer.subscription_data_set[0].sub_string = "a || b".into();
        assert!(!m.apply(&newer, 0, false).subscriptions_changed);
        assert_eq!(m.subscriptions["t"].sub_string, "a || b");
        let mut older = data(&[("t", 3)]);
        older.subscription_data_set[0].sub_string = "old".into();
        m.apply(&older, 0, false);
        assert_eq!(
            m.subscriptions["t"].sub_string, "a || b",
            "a lower subVersion never replaces"
        );
    }

    #[test]
    fn v1_ignores_without_sub() {
        let mut m = ConsumerMeta::default();
        m.apply(&data(&[("t", 1)]), 0, false);
        let u = m.apply(&data(&[]), 0, true);
        assert!(
            u.subscriptions_changed,
            "fingerprint 0 means v1: withoutSub is meaningless"
        );
        assert!(m.subscriptions.is_empty());
    }
}
