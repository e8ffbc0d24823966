//! `HeartbeatData`, the JSON body of `HEART_BEAT` (request code 34), as the Java client sends it.
//!
//! Field names follow fastjson's getter naming; keys serialize in sorted order as fastjson writes
//! them. Parsing is liberal where the Java broker is (see `lenient`): missing fields and `null`
//! take their defaults, unknown fields are ignored, numbers and booleans may arrive as strings,
//! enums by name or ordinal. This module does not compute the v2 fingerprint: the broker treats
//! it as opaque and only compares it per consumer group.

use super::lenient::{self, java_enum};
use serde::{Deserialize, Serialize};

/// The heartbeat a client sends to every broker every 30 s.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HeartbeatData {
    /// The client instance id, e.g. `10.0.0.1@12345#...`.
    #[serde(rename = "clientID", deserialize_with = "lenient::string")]
    pub client_id: String,
    /// The consumer groups this client runs.
    #[serde(deserialize_with = "lenient::object_list")]
    pub consumer_data_set: Vec<ConsumerData>,
    /// Heartbeat v2 (RIP-64): a hash of the subscriptions; 0 means v1 semantics.
    #[serde(deserialize_with = "lenient::i64")]
    pub heartbeat_fingerprint: i64,
    /// The producer groups this client runs.
    #[serde(deserialize_with = "lenient::object_list")]
    pub producer_data_set: Vec<ProducerData>,
    /// Heartbeat v2: the subscription sets were left out because the fingerprint is unchanged.
    #[serde(alias = "isWithoutSub", deserialize_with = "lenient::bool")]
    pub without_sub: bool,
}

impl HeartbeatData {
    /// Parses a `HEART_BEAT` body: a JSON object (docs/SPEC.md 5.6 says how leniently).
    pub fn from_json(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice::<lenient::Object<Self>>(body).map(|o| o.0)
    }

    /// Serializes as the Java client does (sorted keys).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("HeartbeatData serializes to JSON infallibly")
    }

    /// A heartbeat naming producer groups only.
    pub fn producers<I, S>(client_id: impl Into<String>, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        HeartbeatData {
            client_id: client_id.into(),
            producer_data_set: groups
                .into_iter()
                .map(|g| ProducerData {
                    group_name: g.into(),
                })
                .collect(),
            ..HeartbeatData::default()
        }
    }

    /// Number of groups (producer plus consumer) this heartbeat names, duplicates included.
    pub fn group_count(&self) -> usize {
        self.producer_data_set.len() + self.consumer_data_set.len()
    }
}

/// One producer group of a client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerData {
    /// The producer group's name.
    #[serde(deserialize_with = "lenient::string")]
    pub group_name: String,
}

/// One consumer group of a client, with its subscriptions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerData {
    /// Where a new consumer starts.
    pub consume_from_where: ConsumeFromWhere,
    /// Push, pull or pop.
    pub consume_type: ConsumeType,
    /// The consumer group's name.
    #[serde(deserialize_with = "lenient::string")]
    pub group_name: String,
    /// Clustering (rebalanced) or broadcasting.
    pub message_model: MessageModel,
    /// One entry per subscribed topic.
    #[serde(deserialize_with = "lenient::object_list")]
    pub subscription_data_set: Vec<SubscriptionData>,
    /// Unit mode (a deprecated multi-tenant flag, kept for round trips).
    #[serde(deserialize_with = "lenient::bool")]
    pub unit_mode: bool,
}

/// A consumer's subscription to one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionData {
    /// Deprecated class filter flag.
    #[serde(deserialize_with = "lenient::bool")]
    pub class_filter_mode: bool,
    /// Hash codes of the tags.
    #[serde(deserialize_with = "lenient::i32_list")]
    pub code_set: Vec<i32>,
    /// `TAG` or `SQL92`; `null` or absent means `TAG`.
    #[serde(deserialize_with = "lenient::expression_type")]
    pub expression_type: String,
    /// The filter expression, `*` for all.
    #[serde(deserialize_with = "lenient::string")]
    pub sub_string: String,
    /// The subscription's version (its creation time in ms); a higher one replaces a lower one.
    #[serde(deserialize_with = "lenient::i64")]
    pub sub_version: i64,
    /// The tags of a TAG expression.
    #[serde(deserialize_with = "lenient::string_list")]
    pub tags_set: Vec<String>,
    /// The subscribed topic.
    #[serde(deserialize_with = "lenient::string")]
    pub topic: String,
}

impl Default for SubscriptionData {
    fn default() -> Self {
        SubscriptionData {
            class_filter_mode: false,
            code_set: Vec::new(),
            expression_type: "TAG".to_owned(),
            sub_string: String::new(),
            sub_version: 0,
            tags_set: Vec::new(),
            topic: String::new(),
        }
    }
}

java_enum! {
    /// How a consumer gets messages (Java `ConsumeType`).
    ConsumeType default ConsumePassively {
        /// Pull consumer.
        ConsumeActively = "CONSUME_ACTIVELY",
        /// Push consumer.
        ConsumePassively = "CONSUME_PASSIVELY",
        /// Pop consumer.
        ConsumePop = "CONSUME_POP",
    }
}

java_enum! {
    /// Clustering or broadcasting (Java `MessageModel`). Broadcasting groups never fire `CHANGE`.
    MessageModel default Clustering {
        /// Every consumer gets every message.
        Broadcasting = "BROADCASTING",
        /// Messages are shared out by rebalancing.
        Clustering = "CLUSTERING",
    }
}

java_enum! {
    /// Where a new consumer group starts (Java `ConsumeFromWhere`).
    ConsumeFromWhere default ConsumeFromLastOffset {
        /// The latest offset.
        ConsumeFromLastOffset = "CONSUME_FROM_LAST_OFFSET",
        /// Deprecated.
        ConsumeFromLastOffsetAndFromMinWhenBootFirst = "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
        /// Deprecated.
        ConsumeFromMinOffset = "CONSUME_FROM_MIN_OFFSET",
        /// Deprecated.
        ConsumeFromMaxOffset = "CONSUME_FROM_MAX_OFFSET",
        /// The earliest offset.
        ConsumeFromFirstOffset = "CONSUME_FROM_FIRST_OFFSET",
        /// A timestamp.
        ConsumeFromTimestamp = "CONSUME_FROM_TIMESTAMP",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_fact_sheet_example() {
        let body = br#"{
          "clientID": "10.0.0.1@12345#1",
          "consumerDataSet": [{
              "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET",
              "consumeType": "CONSUME_PASSIVELY",
              "groupName": "cg1",
              "messageModel": "CLUSTERING",
              "subscriptionDataSet": [{
                  "classFilterMode": false, "codeSet": [42], "expressionType": "TAG",
                  "subString": "*", "subVersion": 1700000000000, "tagsSet": ["*"], "topic": "T1" }],
              "unitMode": false }],
          "heartbeatFingerprint": 0,
          "producerDataSet": [{ "groupName": "pg1" }, { "groupName": "CLIENT_INNER_PRODUCER" }],
          "withoutSub": false
        }"#;
        let hb = HeartbeatData::from_json(body).unwrap();
        assert_eq!(hb.client_id, "10.0.0.1@12345#1");
        assert_eq!(hb.producer_data_set.len(), 2);
        let c = &hb.consumer_data_set[0];
        assert_eq!(c.consume_type, ConsumeType::ConsumePassively);
        assert_eq!(c.message_model, MessageModel::Clustering);
        assert_eq!(c.subscription_data_set[0].sub_version, 1_700_000_000_000);
        assert_eq!(c.subscription_data_set[0].code_set, vec![42]);
    }

    #[test]
    fn accepts_what_fastjson_accepts() {
        let body = br#"{"clientID": 7, "producerDataSet": null, "heartbeatFingerprint": "-12",
            "isWithoutSub": "true", "unknownField": {"x": 1},
            "consumerDataSet": [{"groupName": "g", "consumeType": 0, "messageModel": null,
               "unitMode": 1, "subscriptionDataSet": [{"topic": "t", "subVersion": "5",
               "codeSet": ["3"], "tagsSet": null}]}]}"#;
        let hb = HeartbeatData::from_json(body).unwrap();
        assert_eq!(hb.client_id, "7");
        assert!(hb.producer_data_set.is_empty());
        assert_eq!(hb.heartbeat_fingerprint, -12);
        assert!(hb.without_sub);
        let c = &hb.consumer_data_set[0];
        assert_eq!(c.consume_type, ConsumeType::ConsumeActively);
        assert_eq!(c.message_model, MessageModel::Clustering);
        assert!(c.unit_mode);
        assert_eq!(c.subscription_data_set[0].sub_version, 5);
        assert_eq!(c.subscription_data_set[0].code_set, vec![3]);
        assert_eq!(c.subscription_data_set[0].expression_type, "TAG");
        assert_eq!(
            HeartbeatData::from_json(b"{}").unwrap(),
            HeartbeatData::default()
        );
    }

    #[test]
    fn rejects_with_a_clear_error() {
        for (body, needle) in [
            (
                &br#"{"consumerDataSet":[{"consumeType":"SIDEWAYS"}]}"#[..],
                "unknown ConsumeType",
            ),
            (br#"{"heartbeatFingerprint":"abc"}"#, "not an integer"),
            (br#"{"withoutSub":"maybe"}"#, "not a boolean"),
            (
                br#"{"consumerDataSet":[{"messageModel":9}]}"#,
                "ordinal 9 out of range",
            ),
            (br#"[1,2]"#, "invalid type"),
            (br#"{"clientID":"a""#, "EOF"),
        ] {
            let err = HeartbeatData::from_json(body).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
    }

    #[test]
    fn round_trips_with_sorted_keys() {
        let mut hb = HeartbeatData::producers("c1", ["pg"]);
        hb.consumer_data_set.push(ConsumerData {
            group_name: "cg".into(),
            subscription_data_set: vec![SubscriptionData {
                topic: "t".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        let json = String::from_utf8(hb.to_json()).unwrap();
        assert!(json.starts_with(r#"{"clientID":"c1","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"cg","messageModel":"CLUSTERING""#), "{json}");
        assert_eq!(HeartbeatData::from_json(json.as_bytes()).unwrap(), hb);
    }
}
