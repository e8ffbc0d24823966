//! The bodies of the client-management queries a broker answers from its client registry
//! (`GET_CONSUMER_LIST_BY_GROUP` 38, `GET_CONSUMER_CONNECTION_LIST` 203,
//! `GET_PRODUCER_CONNECTION_LIST` 204, `GET_ALL_PRODUCER_INFO` 328), and the decision of
//! `CHECK_CLIENT_CONFIG` (46), and the broker's `NOTIFY_CONSUMER_IDS_CHANGED` (40) request, in
//! upstream's shapes (fastjson: camelCase keys, enums by
//! name, nulls omitted); and `GET_BROKER_CONFIG` (26), which a slave asks its master before each
//! HA connect to compare segment sizes (neither HA protocol carries one).
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
    request.ext_fields.insert("consumerGroup", group);
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

/// `GET_BROKER_CONFIG`: upstream's request for a broker's configuration (no header, no body).
pub const GET_BROKER_CONFIG: i32 = 26;

/// Upstream's name of the commit log's segment size (`MessageStoreConfig`), the key a slave
/// reads in a 26 answer and sends, as an ext field of its 26 request, for its own.
pub const SEGMENT_SIZE_KEY: &str = "mappedFileSizeCommitLog";

/// Upstream's `BrokerRole`, spelled as in its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerRole {
    /// Sends are answered without waiting for a slave.
    AsyncMaster,
    /// Sends wait for slaves (ours: `inSyncReplicas` above 1).
    SyncMaster,
    /// A replica.
    Slave,
}

impl BrokerRole {
    /// Upstream's spelling.
    pub fn name(self) -> &'static str {
        match self {
            BrokerRole::AsyncMaster => "ASYNC_MASTER",
            BrokerRole::SyncMaster => "SYNC_MASTER",
            BrokerRole::Slave => "SLAVE",
        }
    }
}

/// What a broker answers to `GET_BROKER_CONFIG` (26): the keys of upstream's configuration that
/// this broker really has, with upstream's names and spellings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// `listenPort`: the client (remoting) port.
    pub listen_port: u16,
    /// `haListenPort`: the HA port.
    pub ha_listen_port: u16,
    /// `mappedFileSizeCommitLog`: bytes per commit-log segment.
    pub segment_size: u64,
    /// `brokerRole`.
    pub role: BrokerRole,
    /// When this configuration was made, in ms since the epoch (the `timestamp` of the answer's
    /// `version`, upstream's `DataVersion`; it never changes while the broker runs).
    pub since_ms: i64,
}

impl BrokerConfig {
    /// The body of a 26 answer: `key=value` lines, sorted by key, UTF-8 (upstream's
    /// `MixAll.properties2String`).
    pub fn properties(&self) -> String {
        format!(
            "brokerRole={}\nhaListenPort={}\nlistenPort={}\n{SEGMENT_SIZE_KEY}={}\n",
            self.role.name(),
            self.ha_listen_port,
            self.listen_port,
            self.segment_size
        )
    }

    /// The answer's `version` header field: upstream's `DataVersion` as fastjson writes it.
    pub fn data_version(&self) -> String {
        format!(
            r#"{{"counter":0,"stateVersion":0,"timestamp":{}}}"#,
            self.since_ms
        )
    }
}

/// A slave's 26 request. It carries the slave's own segment size as an ext field, which an
/// upstream broker ignores (26 has no request header) and ours compares with its own, so a
/// mismatch is named on the master too.
pub fn broker_config_request(opaque: i32, own_segment_size: u64) -> RemotingCommand {
    let mut request = RemotingCommand::request(GET_BROKER_CONFIG);
    request.opaque = opaque;
    request.ext_fields = [(SEGMENT_SIZE_KEY.to_owned(), own_segment_size.to_string())].into();
    request
}

/// The answer to a 26 request: `SUCCESS`, header `version`, the properties as the body.
pub fn broker_config_response(request: &RemotingCommand, config: &BrokerConfig) -> RemotingCommand {
    let mut response = RemotingCommand::response_to(request, code::SUCCESS, None);
    response.ext_fields = [("version".to_owned(), config.data_version())].into();
    response.body = Some(config.properties().into_bytes().into());
    response
}

/// The segment size the asker of a 26 request says it has, if it says.
pub fn asker_segment_size(request: &RemotingCommand) -> Option<u64> {
    request.ext(SEGMENT_SIZE_KEY)?.trim().parse().ok()
}

/// `key=value` (or `key:value`) lines, as Java's `Properties.load` reads the simple ones:
/// blank lines and `#` or `!` comments skipped, key and value trimmed. Escapes and continued
/// lines are not interpreted (no key this crate reads uses them).
pub fn parse_properties(text: &str) -> BTreeMap<&str, &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| {
            let at = l.find(['=', ':'])?;
            Some((l[..at].trim(), l[at + 1..].trim()))
        })
        .collect()
}

/// The segment size in a 26 answer, or why there is none: an error response (a broker that does
/// not answer 26 says `REQUEST_CODE_NOT_SUPPORTED`), a body that is not UTF-8, or no number under
/// [`SEGMENT_SIZE_KEY`].
pub fn segment_size_in(response: &RemotingCommand) -> Result<u64, String> {
    if response.code != code::SUCCESS {
        return Err(format!(
            "answered code {}{}",
            response.code,
            response
                .remark
                .as_deref()
                .map(|r| format!(" ({})", r.trim()))
                .unwrap_or_default()
        ));
    }
    let body = response.body.as_deref().unwrap_or_default();
    let text = std::str::from_utf8(body).map_err(|e| format!("the body is not UTF-8: {e}"))?;
    let value = parse_properties(text)
        .get(SEGMENT_SIZE_KEY)
        .copied()
        .ok_or_else(|| format!("the answer has no {SEGMENT_SIZE_KEY}"))?;
    value
        .parse()
        .map_err(|_| format!("{SEGMENT_SIZE_KEY}={value} is not a size"))
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

    #[test]
    fn broker_config_round_trips_through_its_request_and_answer() {
        let config = BrokerConfig {
            listen_port: 10911,
            ha_listen_port: 10912,
            segment_size: 1 << 30,
            role: BrokerRole::SyncMaster,
            since_ms: 1_700_000_000_000,
        };
        let request = broker_config_request(7, 65536);
        assert_eq!(request.code, 26);
        assert_eq!(asker_segment_size(&request), Some(65536));
        let response = broker_config_response(&request, &config);
        assert_eq!(response.opaque, 7);
        assert_eq!(
            response.ext("version"),
            Some(r#"{"counter":0,"stateVersion":0,"timestamp":1700000000000}"#)
        );
        assert_eq!(
            response.body.as_deref(),
            Some(
                &b"brokerRole=SYNC_MASTER\nhaListenPort=10912\nlistenPort=10911\nmappedFileSizeCommitLog=1073741824\n"[..]
            )
        );
        assert_eq!(segment_size_in(&response), Ok(1 << 30));
    }

    #[test]
    fn a_segment_size_is_read_only_from_a_successful_answer_that_has_one() {
        let request = RemotingCommand::request(GET_BROKER_CONFIG);
        assert_eq!(asker_segment_size(&request), None);
        let mut ok = RemotingCommand::response_to(&request, code::SUCCESS, None);
        // Java's Properties text: comments, spaces around the separator, ':' as a separator.
        ok.body = Some(
            b"#Sat Dec 05\r\nbrokerName = b1\r\nmappedFileSizeCommitLog : 65536\r\n"[..].into(),
        );
        assert_eq!(segment_size_in(&ok), Ok(65536));
        let refused = RemotingCommand::response_to(
            &request,
            code::REQUEST_CODE_NOT_SUPPORTED,
            Some(" request type 26 not supported".into()),
        );
        let why = segment_size_in(&refused).unwrap_err();
        assert!(
            why.contains("code 3") && why.contains("not supported"),
            "{why}"
        );
        ok.body = Some(b"mappedFileSizeCommitLog=big\n"[..].into());
        assert!(segment_size_in(&ok).unwrap_err().contains("not a size"));
        ok.body = Some(b"listenPort=10911\n"[..].into());
        assert!(
            segment_size_in(&ok)
                .unwrap_err()
                .contains("no mappedFileSizeCommitLog")
        );
        ok.body = None;
        assert!(segment_size_in(&ok).is_err());
    }
}
