//! The bodies of the client-management queries a broker answers from its client registry
//! (`GET_CONSUMER_LIST_BY_GROUP` 38, `GET_CONSUMER_CONNECTION_LIST` 203,
//! `GET_PRODUCER_CONNECTION_LIST` 204, `GET_ALL_PRODUCER_INFO` 328), and the decision of
//! `CHECK_CLIENT_CONFIG` (46), and the broker's `NOTIFY_CONSUMER_IDS_CHANGED` (40) request, in
//! upstream's shapes (fastjson: camelCase keys, enums by
//! name, nulls omitted).
//!
//! What this is not: the lookups (the registry answers them in the size of the answer) or the
//! transport (`net::remoting`).

use super::ChannelId;
use super::Millis;
use super::consumer::ConsumerMeta;
use super::heartbeat::SubscriptionData;
use super::remoting::{FLAG_ONEWAY, LanguageCode, RemotingCommand, code};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One registered channel as the admin queries show it: who it says it is (its last heartbeat's
/// client id, language and version) and where it connects from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConnection {
    /// The registry's channel.
    pub channel: ChannelId,
    /// The client id of its last heartbeat (`clientID`).
    pub client_id: String,
    /// Its peer address, `ip:port`.
    pub peer: String,
    /// The language of its last heartbeat's header.
    pub language: LanguageCode,
    /// The version of its last heartbeat's header.
    pub version: i32,
    /// When the membership this row stands for was last refreshed (the registry's clock).
    pub last_update: Millis,
}

/// `GetConsumerListByGroupResponseBody`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConsumerList<'a> {
    consumer_id_list: Vec<&'a str>,
}

/// The body of a 38 answer: one client id per channel of the group, duplicates kept (two
/// channels of one client id are two entries, as upstream lists them).
pub fn consumer_list_body(connections: &[ClientConnection]) -> Vec<u8> {
    json(&ConsumerList {
        consumer_id_list: connections.iter().map(|c| c.client_id.as_str()).collect(),
    })
}

/// `Connection` (203, 204).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Connection<'a> {
    client_id: &'a str,
    client_addr: &'a str,
    language: &'static str,
    version: i32,
}

impl<'a> From<&'a ClientConnection> for Connection<'a> {
    fn from(c: &'a ClientConnection) -> Self {
        Connection {
            client_id: &c.client_id,
            client_addr: &c.peer,
            language: c.language.name(),
            version: c.version,
        }
    }
}

/// `ConsumerConnection` (203).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConsumerConnection<'a> {
    connection_set: Vec<Connection<'a>>,
    subscription_table: &'a BTreeMap<String, SubscriptionData>,
    consume_type: super::heartbeat::ConsumeType,
    message_model: super::heartbeat::MessageModel,
    consume_from_where: super::heartbeat::ConsumeFromWhere,
}

/// The body of a 203 answer: the group's channels and its metadata as the last heartbeat left
/// it.
pub fn consumer_connection_body(connections: &[ClientConnection], meta: &ConsumerMeta) -> Vec<u8> {
    json(&ConsumerConnection {
        connection_set: connections.iter().map(Connection::from).collect(),
        subscription_table: &meta.subscriptions,
        consume_type: meta.consume_type,
        message_model: meta.message_model,
        consume_from_where: meta.consume_from_where,
    })
}

/// `ProducerConnection` (204).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProducerConnection<'a> {
    connection_set: Vec<Connection<'a>>,
}

/// The body of a 204 answer.
pub fn producer_connection_body(connections: &[ClientConnection]) -> Vec<u8> {
    json(&ProducerConnection {
        connection_set: connections.iter().map(Connection::from).collect(),
    })
}

/// `ProducerInfo` (328).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProducerInfo<'a> {
    client_id: &'a str,
    #[serde(rename = "remoteIP")]
    remote_ip: String,
    language: &'static str,
    version: i32,
    last_update_timestamp: i64,
}

/// `ProducerTableInfo` (328).
#[derive(Serialize)]
struct ProducerTableInfo<'a> {
    data: BTreeMap<&'a str, Vec<ProducerInfo<'a>>>,
}

/// The body of a 328 answer: every producer group with its channels. `wall_ms` turns the
/// registry's clock into milliseconds since the epoch; `remoteIP` is Java's
/// `InetSocketAddress.toString()`, with its leading `/`.
pub fn producer_table_body(
    groups: &BTreeMap<String, Vec<ClientConnection>>,
    wall_ms: impl Fn(Millis) -> i64,
) -> Vec<u8> {
    let data = groups
        .iter()
        .filter(|(_, conns)| !conns.is_empty())
        .map(|(group, conns)| {
            let infos = conns
                .iter()
                .map(|c| ProducerInfo {
                    client_id: &c.client_id,
                    remote_ip: format!("/{}", c.peer),
                    language: c.language.name(),
                    version: c.version,
                    last_update_timestamp: wall_ms(c.last_update),
                })
                .collect();
            (group.as_str(), infos)
        })
        .collect();
    json(&ProducerTableInfo { data })
}

/// `NOTIFY_CONSUMER_IDS_CHANGED` (40) for `group`: a oneway request from the broker, header
/// `consumerGroup` only, no body.
pub fn notify_consumer_ids_changed(group: &str, opaque: i32) -> RemotingCommand {
    let mut request = RemotingCommand::request(code::NOTIFY_CONSUMER_IDS_CHANGED);
    request.flag = FLAG_ONEWAY;
    request.opaque = opaque;
    request
        .ext_fields
        .insert("consumerGroup".into(), group.to_owned());
    request
}

fn json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("admin bodies are plain data")
}

/// `CheckClientRequestBody`: only `subscriptionData` is read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CheckClientRequest {
    #[serde(default)]
    subscription_data: Option<super::lenient::Object<SubscriptionData>>,
}

/// `CHECK_CLIENT_CONFIG` (46): `Ok` for `SUCCESS`, else the response code and remark. A consumer
/// whose filter this broker cannot apply learns so at start (its `start()` fails) rather than
/// receiving unfiltered messages.
///
/// This broker has no property filtering (upstream `enablePropertyFilter`, default false), so
/// every expression type but `TAG` is refused with upstream's answer for that setting. A body
/// that is not a `CheckClientRequestBody` is a `SYSTEM_ERROR` naming the parse error.
pub fn check_client_config(body: Option<&[u8]>) -> Result<(), (i32, String)> {
    let Some(body) = body.filter(|b| !b.is_empty()) else {
        return Ok(());
    };
    let request: CheckClientRequest = serde_json::from_slice(body).map_err(|error| {
        (
            code::SYSTEM_ERROR,
            format!("invalid CheckClientRequestBody: {error}"),
        )
    })?;
    let Some(super::lenient::Object(sub)) = request.subscription_data else {
        return Ok(());
    };
    // `ExpressionType.isTagType`: absent (decoded as "TAG"), empty or exactly "TAG".
    if sub.expression_type.is_empty() || sub.expression_type == "TAG" {
        return Ok(());
    }
    Err((
        code::SYSTEM_ERROR,
        format!(
            "The broker does not support consumer to filter message by {}",
            sub.expression_type
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(ch: u64, client_id: &str, language: LanguageCode) -> ClientConnection {
        ClientConnection {
            channel: ChannelId(ch),
            client_id: client_id.into(),
            peer: format!("10.0.0.{ch}:5{ch}000"),
            language,
            version: 493,
            last_update: Millis(1_000 * ch),
        }
    }

    #[test]
    fn consumer_list_keeps_one_entry_per_channel() {
        let conns = [
            conn(1, "a@1", LanguageCode::JAVA),
            conn(2, "a@1", LanguageCode::JAVA),
        ];
        assert_eq!(
            consumer_list_body(&conns),
            br#"{"consumerIdList":["a@1","a@1"]}"#
        );
    }

    #[test]
    fn connection_bodies_have_upstreams_keys() {
        let conns = [conn(1, "c1", LanguageCode::from_name("NODE_JS").unwrap())];
        let body: serde_json::Value =
            serde_json::from_slice(&producer_connection_body(&conns)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"connectionSet": [{"clientId": "c1", "clientAddr": "10.0.0.1:51000",
                "language": "NODE_JS", "version": 493}]})
        );
        let mut meta = ConsumerMeta::default();
        meta.subscriptions.insert(
            "T".into(),
            SubscriptionData {
                topic: "T".into(),
                sub_string: "*".into(),
                ..SubscriptionData::default()
            },
        );
        let body: serde_json::Value =
            serde_json::from_slice(&consumer_connection_body(&conns, &meta)).unwrap();
        assert_eq!(body["consumeType"], "CONSUME_PASSIVELY");
        assert_eq!(body["messageModel"], "CLUSTERING");
        assert_eq!(body["consumeFromWhere"], "CONSUME_FROM_LAST_OFFSET");
        assert_eq!(body["subscriptionTable"]["T"]["subString"], "*");
        assert_eq!(body["subscriptionTable"]["T"]["expressionType"], "TAG");
        assert_eq!(body["connectionSet"][0]["clientAddr"], "10.0.0.1:51000");
    }

    #[test]
    fn producer_table_has_remote_ip_with_a_slash_and_wall_time() {
        let mut groups = BTreeMap::new();
        groups.insert("PG".to_owned(), vec![conn(2, "p", LanguageCode(1))]);
        groups.insert("EMPTY".to_owned(), vec![]);
        let body: serde_json::Value = serde_json::from_slice(&producer_table_body(&groups, |m| {
            1_700_000_000_000 + m.0 as i64
        }))
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"data": {"PG": [{"clientId": "p", "remoteIP": "/10.0.0.2:52000",
                "language": "CPP", "version": 493, "lastUpdateTimestamp": 1_700_000_002_000i64}]}})
        );
    }

    #[test]
    fn check_client_config_follows_upstreams_table() {
        assert_eq!(check_client_config(None), Ok(()));
        assert_eq!(check_client_config(Some(b"")), Ok(()));
        assert_eq!(
            check_client_config(Some(br#"{"clientId":"c","group":"g"}"#)),
            Ok(())
        );
        for tag in [
            r#"{"subscriptionData":{"topic":"T","subString":"*"}}"#,
            r#"{"subscriptionData":{"topic":"T","expressionType":null}}"#,
            r#"{"subscriptionData":{"topic":"T","expressionType":""}}"#,
            r#"{"subscriptionData":{"topic":"T","expressionType":"TAG"}}"#,
        ] {
            assert_eq!(check_client_config(Some(tag.as_bytes())), Ok(()), "{tag}");
        }
        let sql = br#"{"group":"g","subscriptionData":{"topic":"T","subString":"a > 1","expressionType":"SQL92"}}"#;
        assert_eq!(
            check_client_config(Some(sql)),
            Err((
                code::SYSTEM_ERROR,
                "The broker does not support consumer to filter message by SQL92".into()
            ))
        );
        let (code, remark) = check_client_config(Some(b"{oops")).unwrap_err();
        assert_eq!(code, code::SYSTEM_ERROR);
        assert!(
            remark.starts_with("invalid CheckClientRequestBody"),
            "{remark}"
        );
    }
}
