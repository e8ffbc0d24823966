//! RocketMQ's send path, sans-IO: the `SEND_MESSAGE` (10) and `SEND_MESSAGE_V2` (310) request
//! headers, the broker's checks in upstream's order with upstream's codes and remarks, where a
//! message goes (auto-created topics, retry to dead-letter, delay levels, transaction halves),
//! the commit-log record upstream writes, and the response header.
//!
//! It is not a store: which offset and queue offset a record gets is decided by the caller
//! (`store::messages`) under its lock. It reads no clock and knows no socket: times, addresses
//! and the queue chooser's spread are parameters. Batches (`m=true`, code 320) are refused.

use super::remoting::{RemotingCommand, code};
use bytes::Bytes;
use core::net::{IpAddr, SocketAddr};
use std::borrow::Cow;
use std::collections::HashMap;

/// Upstream's `MESSAGE_MAGIC_CODE` (-626843481): a record whose topic length is one byte.
pub const MAGIC_V1: u32 = 0xDAA3_20A7;
/// Upstream's `MESSAGE_MAGIC_CODE_V2` (-626843477): a two-byte topic length, for topics
/// longer than 127 bytes.
pub const MAGIC_V2: u32 = 0xDAA3_20AB;

/// The template topic clients name for auto-creation.
pub const AUTO_CREATE_TOPIC: &str = "TBW102";
/// Upstream `defaultTopicQueueNums`: the template topic's queues.
pub const DEFAULT_TOPIC_QUEUES: i32 = 8;
/// Upstream `maxMessageSize`: a longer body is refused.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;
/// The property string's length is a signed 16-bit field.
pub const MAX_PROPERTIES_LEN: usize = i16::MAX as usize;
/// Upstream's default retry limit of a consumer group (`retryMaxTimes`).
pub const DEFAULT_MAX_RECONSUME_TIMES: i32 = 16;
/// Upstream's delay levels (`messageDelayLevel` has 18).
pub const MAX_DELAY_LEVEL: i32 = 18;

const TOPIC_MAX_LEN: usize = 127;
const RETRY_DLQ_TOPIC_MAX_LEN: usize = 255;
const RETRY_PREFIX: &str = "%RETRY%";
const DLQ_PREFIX: &str = "%DLQ%";
const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
const HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
/// Topics a client may not send to (upstream `TopicValidator`'s not-allowed set).
const NOT_ALLOWED: [&str; 6] = [
    SCHEDULE_TOPIC,
    HALF_TOPIC,
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
];
const FAQ: &str = "\nSee https://rocketmq.apache.org/docs/bestPractice/06FAQ for further details.";

/// Property names the broker reads or writes.
pub mod property {
    /// The message's unique id, set by the client or, if absent, the broker.
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    /// The broker's cluster name.
    pub const CLUSTER: &str = "CLUSTER";
    /// Removed from every sent message (reserved for pop acknowledgements).
    pub const POP_CK: &str = "POP_CK";
    /// Delay level (1..=18).
    pub const DELAY: &str = "DELAY";
    /// `"true"`: a transaction's half message.
    pub const TRAN_MSG: &str = "TRAN_MSG";
    /// `"false"`: the producer does not wait for slaves.
    pub const WAIT: &str = "WAIT";
    /// The topic a rerouted message was sent to.
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    /// The queue a rerouted message was sent to.
    pub const REAL_QID: &str = "REAL_QID";
    /// A transaction's id (its half message's `UNIQ_KEY`).
    pub const TRANSACTION_ID: &str = "__transactionId__";
}

/// SYSFLAG bits the broker reads or sets.
mod sysflag {
    pub(super) const TRANSACTION_MASK: i32 = 0xC;
    pub(super) const TRANSACTION_PREPARED: i32 = 0x4;
    pub(super) const TRANSACTION_ROLLBACK: i32 = 0xC;
    pub(super) const BORN_HOST_V6: i32 = 0x10;
    pub(super) const STORE_HOST_V6: i32 = 0x20;
}

/// A request the send path answers with an error: upstream's code and remark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The response code.
    pub code: i32,
    /// The response remark.
    pub remark: String,
}

impl Refusal {
    fn new(code: i32, remark: impl Into<String>) -> Self {
        Refusal {
            code,
            remark: remark.into(),
        }
    }
}

/// The fields of `SendMessageRequestHeader`, from either code's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendHeader {
    /// `producerGroup` / `a`: logged only; a sender needs no registration.
    pub producer_group: String,
    /// `topic` / `b`.
    pub topic: String,
    /// `defaultTopic` / `c`: the template for auto-creation.
    pub default_topic: String,
    /// `defaultTopicQueueNums` / `d`: queues asked for on auto-creation.
    pub default_topic_queue_nums: i32,
    /// `queueId` / `e`: negative lets the broker choose.
    pub queue_id: i32,
    /// `sysFlag` / `f`.
    pub sys_flag: i32,
    /// `bornTimestamp` / `g`.
    pub born_timestamp: i64,
    /// `flag` / `h`.
    pub flag: i32,
    /// `properties` / `i`.
    pub properties: Option<String>,
    /// `reconsumeTimes` / `j` (absent: 0).
    pub reconsume_times: i32,
    /// `unitMode` / `k` (absent: false).
    pub unit_mode: bool,
    /// `maxReconsumeTimes` / `l`: the retry limit for `%RETRY%` topics.
    pub max_reconsume_times: Option<i32>,
    /// `batch` / `m` (absent: false).
    pub batch: bool,
}

/// (V1 key, V2 key) of each header field, in `SendHeader`'s order (the V2 keys are `a` to `m`).
const KEYS: [(&str, &str); 13] = [
    ("producerGroup", "a"),
    ("topic", "b"),
    ("defaultTopic", "c"),
    ("defaultTopicQueueNums", "d"),
    ("queueId", "e"),
    ("sysFlag", "f"),
    ("bornTimestamp", "g"),
    ("flag", "h"),
    ("properties", "i"),
    ("reconsumeTimes", "j"),
    ("unitMode", "k"),
    ("maxReconsumeTimes", "l"),
    ("batch", "m"),
];

impl SendHeader {
    /// Reads the header of a `SEND_MESSAGE` (long keys) or `SEND_MESSAGE_V2` (one-letter keys)
    /// request. A missing required field or a malformed number is the `SYSTEM_ERROR` upstream's
    /// decoding ends in, naming the field. The fields are read where the decoded header holds
    /// them ([`RemotingCommand::ext`]): only the four text fields are copied out.
    pub fn decode(request: &RemotingCommand) -> Result<SendHeader, Refusal> {
        let v2 = request.code != code::SEND_MESSAGE;
        // One pass over the fields rather than a lookup per key.
        let mut values: [Option<&str>; KEYS.len()] = [None; KEYS.len()];
        for (key, value) in &request.ext_fields {
            let i = if v2 {
                match key.as_bytes() {
                    [b @ b'a'..=b'm'] => Some(usize::from(b - b'a')),
                    _ => None,
                }
            } else {
                KEYS.iter().position(|(long, _)| *long == key)
            };
            if let Some(i) = i {
                values[i] = Some(value);
            }
        }
        let get = |i: usize| values[i];
        let missing = |i: usize| {
            Refusal::new(
                code::SYSTEM_ERROR,
                format!("the custom field <{}> is null", KEYS[i].0),
            )
        };
        fn number<T: core::str::FromStr>(i: usize, v: &str) -> Result<T, Refusal> {
            v.trim().parse().map_err(|_| {
                Refusal::new(
                    code::SYSTEM_ERROR,
                    format!("the custom field <{}> is not a number: {v:?}", KEYS[i].0),
                )
            })
        }
        let text = |i: usize| get(i).map(str::to_owned).ok_or_else(|| missing(i));
        let required = |i: usize| get(i).ok_or_else(|| missing(i));
        // Java's Boolean.parseBoolean: "true" in any case, anything else false.
        let boolean = |v: Option<&str>| v.is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Ok(SendHeader {
            producer_group: text(0)?,
            topic: text(1)?,
            default_topic: text(2)?,
            default_topic_queue_nums: number(3, required(3)?)?,
            queue_id: number(4, required(4)?)?,
            sys_flag: number(5, required(5)?)?,
            born_timestamp: number(6, required(6)?)?,
            flag: number(7, required(7)?)?,
            properties: get(8).map(str::to_owned),
            reconsume_times: get(9).map_or(Ok(0), |v| number(9, v))?,
            unit_mode: boolean(get(10)),
            max_reconsume_times: get(11).map(|v| number(11, v)).transpose()?,
            batch: boolean(get(12)),
        })
    }

    /// The request carrying this header: `code` is `SEND_MESSAGE` (long keys) or
    /// `SEND_MESSAGE_V2` (one-letter keys). For clients, tests and benchmarks.
    pub fn to_request(&self, code: i32, body: Bytes) -> RemotingCommand {
        let v2 = code != self::code::SEND_MESSAGE;
        let mut request = RemotingCommand::request(code);
        let mut put = |i: usize, value: &str| {
            let (long, short) = KEYS[i];
            request
                .ext_fields
                .insert(if v2 { short } else { long }, value);
        };
        put(0, &self.producer_group);
        put(1, &self.topic);
        put(2, &self.default_topic);
        put(3, &self.default_topic_queue_nums.to_string());
        put(4, &self.queue_id.to_string());
        put(5, &self.sys_flag.to_string());
        put(6, &self.born_timestamp.to_string());
        put(7, &self.flag.to_string());
        if let Some(p) = &self.properties {
            put(8, p);
        }
        put(9, &self.reconsume_times.to_string());
        put(10, &self.unit_mode.to_string());
        if let Some(m) = self.max_reconsume_times {
            put(11, &m.to_string());
        }
        put(12, &self.batch.to_string());
        request.body = Some(body);
        request
    }
}

/// A message's properties, in their order on the wire; a repeated name keeps its last value
/// (upstream parses into a map). Names and values borrow from the parsed text until set: every
/// send parses and re-formats its properties, and owned pairs cost two allocations each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> Properties<'a> {
    /// Parses `name 0x01 value 0x02 ...`: a piece is kept only if its first 0x01 is neither its
    /// first nor its last character, as upstream's parser does.
    pub fn parse(s: &'a str) -> Properties<'a> {
        let mut out = Properties(Vec::with_capacity(8));
        for piece in s.split('\u{2}') {
            if let Some(at) = piece.find('\u{1}') {
                if at > 0 && at + 1 < piece.len() {
                    out.set(&piece[..at], &piece[at + 1..]);
                }
            }
        }
        out
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }

    /// Sets `name` (replacing its value in place, or appending).
    pub fn set(&mut self, name: &'a str, value: impl Into<Cow<'a, str>>) {
        let value = value.into();
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value,
            None => self.0.push((Cow::Borrowed(name), value)),
        }
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| n != name);
    }

    /// The wire form: `name 0x01 value 0x02` per entry.
    pub fn format(&self) -> String {
        let len = self.0.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
        let mut s = String::with_capacity(len);
        for (n, v) in &self.0 {
            s.push_str(n);
            s.push('\u{1}');
            s.push_str(v);
            s.push('\u{2}');
        }
        s
    }
}

/// A topic's configuration (what the send path reads of upstream's `TopicConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicConfig {
    /// Read queues.
    pub read_queues: i32,
    /// Write queues.
    pub write_queues: i32,
    /// Permission bits: 1 inherit (a template), 2 write, 4 read.
    pub perm: u8,
}

const PERM_INHERIT: u8 = 1;
const PERM_READ_WRITE: u8 = 6;

impl TopicConfig {
    fn with_queues(n: i32) -> Self {
        TopicConfig {
            read_queues: n,
            write_queues: n,
            perm: PERM_READ_WRITE,
        }
    }

    fn describe(&self, topic: &str) -> String {
        let perm = |bit: u8, c: char| if self.perm & bit != 0 { c } else { '-' };
        format!(
            "TopicConfig [topicName={topic}, readQueueNums={}, writeQueueNums={}, perm={}{}{}, \
             topicFilterType=SINGLE_TAG, topicSysFlag=0, order=false, attributes={{}}]",
            self.read_queues,
            self.write_queues,
            perm(4, 'R'),
            perm(2, 'W'),
            perm(1, 'X'),
        )
    }
}

/// The broker's topics: the template `TBW102` and every topic sends created. In memory only: a
/// topic that a restart forgets is created again by its next send, as the template allows.
#[derive(Debug, Clone)]
pub struct Topics {
    map: HashMap<String, TopicConfig>,
}

impl Default for Topics {
    fn default() -> Self {
        let mut map = HashMap::new();
        map.insert(
            AUTO_CREATE_TOPIC.to_owned(),
            TopicConfig {
                read_queues: DEFAULT_TOPIC_QUEUES,
                write_queues: DEFAULT_TOPIC_QUEUES,
                perm: PERM_INHERIT | PERM_READ_WRITE,
            },
        );
        Topics { map }
    }
}

impl Topics {
    /// The configuration of `topic`.
    pub fn get(&self, topic: &str) -> Option<TopicConfig> {
        self.map.get(topic).copied()
    }

    /// Number of topics, the template included.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Never: the template is always there.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// `topic`'s configuration, created from `template` if it has none (upstream
    /// `createTopicInSendMessageMethod`): only a template with the inherit bit creates, with
    /// `min(asked, template's write queues)` queues and its permissions less inherit.
    fn get_or_create(&mut self, topic: &str, template: &str, asked: i32) -> Option<TopicConfig> {
        if let Some(config) = self.map.get(topic) {
            return Some(*config);
        }
        let t = self
            .map
            .get(template)
            .filter(|t| t.perm & PERM_INHERIT != 0)?;
        let queues = asked.min(t.write_queues).max(0);
        let config = TopicConfig {
            perm: t.perm & !PERM_INHERIT,
            ..TopicConfig::with_queues(queues)
        };
        self.map.insert(topic.to_owned(), config);
        Some(config)
    }

    /// A retry or dead-letter topic, created with one queue if absent.
    fn get_or_create_one_queue(&mut self, topic: &str) -> TopicConfig {
        *self
            .map
            .entry(topic.to_owned())
            .or_insert_with(|| TopicConfig::with_queues(1))
    }
}

/// Checks a topic name as upstream's `TopicValidator.validateTopic` does.
pub fn validate_topic(topic: &str) -> Result<(), Refusal> {
    let invalid = |remark: String| Err(Refusal::new(code::INVALID_PARAMETER, remark));
    if topic.trim().is_empty() {
        return invalid("The specified topic is blank.".into());
    }
    let legal = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-');
    if !topic.bytes().all(legal) {
        return invalid(format!(
            "The specified topic: {topic}, contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
        ));
    }
    if topic.starts_with(RETRY_PREFIX) || topic.starts_with(DLQ_PREFIX) {
        if topic.len() > RETRY_DLQ_TOPIC_MAX_LEN {
            return invalid(format!(
                "The specified topic is DLQ or Retry topic: {topic}, and it's longer than topic max length: {RETRY_DLQ_TOPIC_MAX_LEN}"
            ));
        }
    } else if topic.len() > TOPIC_MAX_LEN {
        return invalid(format!(
            "The specified topic: {topic}, is longer than topic max length: {TOPIC_MAX_LEN}"
        ));
    }
    Ok(())
}

/// What the broker's own configuration decides for a send.
#[derive(Debug, Clone)]
pub struct SendRules {
    /// Bodies longer than this are refused (`maxMessageSize`).
    pub max_message_size: usize,
    /// Written into every message's `CLUSTER` property (`brokerClusterName`).
    pub cluster: String,
}

impl Default for SendRules {
    fn default() -> Self {
        SendRules {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            cluster: "DefaultCluster".into(),
        }
    }
}

/// A message the checks admitted: what is stored, and what the response reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The record to write (topic and queue after any rerouting).
    pub message: Message,
    /// The queue the response names: the one asked for, or chosen (upstream reports it even
    /// when the message was rerouted).
    pub queue_id: i32,
    /// The message's `UNIQ_KEY` (the response's `transactionId`).
    pub uniq_key: String,
    /// The producer asked not to wait for slaves (`WAIT=false`).
    pub no_wait: bool,
}

/// Runs upstream's checks on a decoded send, in its order, creates the topic from its template
/// if needed, and builds the message to store: `born` is the connection's peer, `spread` picks
/// the queue when the producer lets the broker choose, and `uniq` names the message if the
/// producer did not.
pub fn admit(
    header: &SendHeader,
    body: Option<&Bytes>,
    topics: &mut Topics,
    born: SocketAddr,
    rules: &SendRules,
    spread: u32,
    uniq: impl FnOnce() -> String,
) -> Result<Admitted, Refusal> {
    if header.batch {
        return Err(Refusal::new(
            code::REQUEST_CODE_NOT_SUPPORTED,
            "batch sends (SEND_BATCH_MESSAGE, batch=true) are not supported by this broker",
        ));
    }
    let body = match body {
        Some(b) if !b.is_empty() => b.clone(),
        // Upstream dereferences the absent body and answers with the exception.
        _ => {
            return Err(Refusal::new(
                code::SYSTEM_ERROR,
                "the message has no body (java.lang.NullPointerException upstream)",
            ));
        }
    };
    let topic = header.topic.as_str();
    validate_topic(topic)?;
    if NOT_ALLOWED.contains(&topic) {
        return Err(Refusal::new(
            code::NO_PERMISSION,
            format!("Sending message to topic[{topic}] is forbidden."),
        ));
    }
    let config = if topic.starts_with(RETRY_PREFIX) {
        Some(topics.get_or_create_one_queue(topic))
    } else {
        topics.get_or_create(
            topic,
            &header.default_topic,
            header.default_topic_queue_nums,
        )
    };
    let Some(config) = config else {
        return Err(Refusal::new(
            code::TOPIC_NOT_EXIST,
            format!("topic[{topic}] not exist, apply first please!{FAQ}"),
        ));
    };
    if header.queue_id >= config.write_queues.max(config.read_queues) {
        return Err(Refusal::new(
            code::INVALID_PARAMETER,
            format!(
                "request queueId[{}] is illegal, {} Producer: {born}",
                header.queue_id,
                config.describe(topic)
            ),
        ));
    }
    let queue_id = if header.queue_id < 0 {
        if config.write_queues <= 0 {
            return Err(Refusal::new(
                code::SYSTEM_ERROR,
                format!("topic[{topic}] has no write queue to choose from"),
            ));
        }
        ((spread % 99_999_999) % config.write_queues as u32) as i32
    } else {
        header.queue_id
    };
    let mut properties = Properties::parse(header.properties.as_deref().unwrap_or(""));
    properties.remove(property::POP_CK);
    let uniq_key = match properties.get(property::UNIQ_KEY) {
        Some(k) if !k.is_empty() => k.to_owned(),
        _ => {
            let k = uniq();
            properties.set(property::UNIQ_KEY, k.clone());
            k
        }
    };
    properties.set(property::CLUSTER, rules.cluster.as_str());
    let mut message = Message {
        topic: topic.to_owned(),
        queue_id,
        flag: header.flag,
        sys_flag: header.sys_flag,
        born_timestamp: header.born_timestamp,
        born_host: born,
        reconsume_times: header.reconsume_times,
        body,
        properties: String::new(),
    };
    if let Some(group) = topic.strip_prefix(RETRY_PREFIX) {
        let max = header
            .max_reconsume_times
            .unwrap_or(DEFAULT_MAX_RECONSUME_TIMES);
        if header.reconsume_times > max {
            let dlq = format!("{DLQ_PREFIX}{group}");
            topics.get_or_create_one_queue(&dlq);
            message.topic = dlq;
            message.queue_id = 0;
            properties.set(property::DELAY, "-1");
        }
    }
    if properties.get(property::TRAN_MSG) == Some("true") {
        properties.set(property::REAL_TOPIC, message.topic.clone());
        properties.set(property::REAL_QID, message.queue_id.to_string());
        properties.set(property::TRANSACTION_ID, uniq_key.clone());
        message.sys_flag &= !sysflag::TRANSACTION_MASK;
        message.topic = HALF_TOPIC.to_owned();
        message.queue_id = 0;
    } else if let Some(level) = properties
        .get(property::DELAY)
        .and_then(|d| d.parse::<i32>().ok())
        .filter(|&d| d > 0)
    {
        let tx = message.sys_flag & sysflag::TRANSACTION_MASK;
        if tx != sysflag::TRANSACTION_PREPARED && tx != sysflag::TRANSACTION_ROLLBACK {
            let level = level.min(MAX_DELAY_LEVEL);
            properties.set(property::DELAY, level.to_string());
            properties.set(property::REAL_TOPIC, message.topic.clone());
            properties.set(property::REAL_QID, message.queue_id.to_string());
            message.topic = SCHEDULE_TOPIC.to_owned();
            message.queue_id = level - 1;
        }
    }
    message.properties = properties.format();
    let too_long = message.body.len() > rules.max_message_size
        || message.properties.len() > MAX_PROPERTIES_LEN
        || message.topic.len() > RETRY_DLQ_TOPIC_MAX_LEN;
    if too_long {
        return Err(Refusal::new(
            code::MESSAGE_ILLEGAL,
            format!(
                "the message is illegal, maybe msg body or properties length not matched. msg body \
                 length limit {}B, msg properties length limit 32KB.",
                rules.max_message_size
            ),
        ));
    }
    let no_wait = properties.get(property::WAIT) == Some("false");
    Ok(Admitted {
        message,
        queue_id,
        uniq_key,
        no_wait,
    })
}

/// One message as upstream's commit log stores it (`MessageExtEncoder`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic (UTF-8, at most 255 bytes).
    pub topic: String,
    /// Queue within the topic.
    pub queue_id: i32,
    /// The producer's flag.
    pub flag: i32,
    /// The producer's SYSFLAG; the host bits are set from the addresses when encoded.
    pub sys_flag: i32,
    /// When the producer made it (ms since the epoch).
    pub born_timestamp: i64,
    /// The producer's address as the broker saw it.
    pub born_host: SocketAddr,
    /// Delivery attempts so far.
    pub reconsume_times: i32,
    /// The body, as sent (compressed if the producer compressed it).
    pub body: Bytes,
    /// The property string.
    pub properties: String,
}

fn host_len(addr: &SocketAddr) -> usize {
    if addr.is_ipv6() { 20 } else { 8 }
}

impl Message {
    /// Whether the record takes a queue offset: transaction prepare and rollback records do not
    /// (they carry 0 and the counter does not move).
    pub fn takes_queue_offset(&self) -> bool {
        let tx = self.sys_flag & sysflag::TRANSACTION_MASK;
        tx != sysflag::TRANSACTION_PREPARED && tx != sysflag::TRANSACTION_ROLLBACK
    }

    fn topic_len_bytes(&self) -> usize {
        if self.topic.len() > TOPIC_MAX_LEN {
            2
        } else {
            1
        }
    }

    /// The record's length when stored by a broker at `store_host`.
    pub fn record_len(&self, store_host: SocketAddr) -> usize {
        4 + 4
            + 4
            + 4
            + 4
            + 8
            + 8
            + 4
            + 8
            + host_len(&self.born_host)
            + 8
            + host_len(&store_host)
            + 4
            + 8
            + 4
            + self.body.len()
            + self.topic_len_bytes()
            + self.topic.len()
            + 2
            + self.properties.len()
    }

    /// Writes the record into `dst` (exactly [`record_len`](Self::record_len) bytes): upstream's
    /// layout, big-endian, the body's CRC-32 with the sign bit cleared, the host bits of SYSFLAG
    /// set from the addresses.
    pub fn encode(
        &self,
        dst: &mut [u8],
        phys_offset: u64,
        queue_offset: i64,
        store_timestamp: i64,
        store_host: SocketAddr,
    ) {
        let len = self.record_len(store_host);
        assert_eq!(dst.len(), len, "encode into exactly record_len bytes");
        let mut sys_flag = self.sys_flag & !(sysflag::BORN_HOST_V6 | sysflag::STORE_HOST_V6);
        if self.born_host.is_ipv6() {
            sys_flag |= sysflag::BORN_HOST_V6;
        }
        if store_host.is_ipv6() {
            sys_flag |= sysflag::STORE_HOST_V6;
        }
        let two_byte_topic = self.topic_len_bytes() == 2;
        let mut w = Writer { dst, at: 0 };
        w.put(&(len as u32).to_be_bytes());
        w.put(&(if two_byte_topic { MAGIC_V2 } else { MAGIC_V1 }).to_be_bytes());
        w.put(&(crc32fast::hash(&self.body) & 0x7FFF_FFFF).to_be_bytes());
        w.put(&self.queue_id.to_be_bytes());
        w.put(&self.flag.to_be_bytes());
        w.put(&queue_offset.to_be_bytes());
        w.put(&(phys_offset as i64).to_be_bytes());
        w.put(&sys_flag.to_be_bytes());
        w.put(&self.born_timestamp.to_be_bytes());
        w.host(self.born_host);
        w.put(&store_timestamp.to_be_bytes());
        w.host(store_host);
        w.put(&self.reconsume_times.to_be_bytes());
        w.put(&0i64.to_be_bytes()); // prepared transaction offset
        w.put(&(self.body.len() as u32).to_be_bytes());
        w.put(&self.body);
        if two_byte_topic {
            w.put(&(self.topic.len() as u16).to_be_bytes());
        } else {
            w.put(&[self.topic.len() as u8]);
        }
        w.put(self.topic.as_bytes());
        w.put(&(self.properties.len() as u16).to_be_bytes());
        w.put(self.properties.as_bytes());
        debug_assert_eq!(w.at, len);
    }
}

struct Writer<'a> {
    dst: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, b: &[u8]) {
        self.dst[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
    }

    fn host(&mut self, addr: SocketAddr) {
        match addr.ip() {
            IpAddr::V4(ip) => self.put(&ip.octets()),
            IpAddr::V6(ip) => self.put(&ip.octets()),
        }
        self.put(&i32::from(addr.port()).to_be_bytes());
    }
}

/// The fields of a stored message record that a reader of the log indexes by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The queue.
    pub queue_id: i32,
    /// Its queue offset.
    pub queue_offset: i64,
    /// SYSFLAG.
    pub sys_flag: i32,
    /// The body.
    pub body: &'a [u8],
    /// The property string.
    pub properties: &'a str,
}

impl RecordView<'_> {
    /// Whether the record took a queue offset (see [`Message::takes_queue_offset`]).
    pub fn took_queue_offset(&self) -> bool {
        let tx = self.sys_flag & sysflag::TRANSACTION_MASK;
        tx != sysflag::TRANSACTION_PREPARED && tx != sysflag::TRANSACTION_ROLLBACK
    }
}

/// Reads a whole message record (TOTALSIZE included); `None` if it is not one or its fields
/// overrun it.
pub fn view(rec: &[u8]) -> Option<RecordView<'_>> {
    let be32 = |at: usize| Some(i32::from_be_bytes(rec.get(at..at + 4)?.try_into().ok()?));
    let be64 = |at: usize| Some(i64::from_be_bytes(rec.get(at..at + 8)?.try_into().ok()?));
    let magic = be32(4)? as u32;
    if magic != MAGIC_V1 && magic != MAGIC_V2 {
        return None;
    }
    let sys_flag = be32(36)?;
    let born = if sys_flag & sysflag::BORN_HOST_V6 != 0 {
        20
    } else {
        8
    };
    let store = if sys_flag & sysflag::STORE_HOST_V6 != 0 {
        20
    } else {
        8
    };
    let body_at = 48 + born + 8 + store + 4 + 8;
    let body_len = usize::try_from(be32(body_at)?).ok()?;
    let body = rec.get(body_at + 4..body_at + 4 + body_len)?;
    let mut at = body_at + 4 + body_len;
    let topic_len = if magic == MAGIC_V2 {
        let n = u16::from_be_bytes(rec.get(at..at + 2)?.try_into().ok()?) as usize;
        at += 2;
        n
    } else {
        let n = *rec.get(at)? as usize;
        at += 1;
        n
    };
    let topic = core::str::from_utf8(rec.get(at..at + topic_len)?).ok()?;
    at += topic_len;
    let props_len = u16::from_be_bytes(rec.get(at..at + 2)?.try_into().ok()?) as usize;
    let properties = core::str::from_utf8(rec.get(at + 2..at + 2 + props_len)?).ok()?;
    Some(RecordView {
        topic,
        queue_id: be32(12)?,
        queue_offset: be64(20)?,
        sys_flag,
        body,
        properties,
    })
}

/// The "offset message id" of a record: upper-case hex of the store host's address, its port
/// (4 bytes) and the record's physical offset (8 bytes).
pub fn msg_id(store_host: SocketAddr, phys_offset: u64) -> String {
    // Every stored send gets one: built on the stack and hex-encoded by table, not by `write!`.
    let mut bytes = [0u8; 28];
    let ip_len = match store_host.ip() {
        IpAddr::V4(ip) => {
            bytes[..4].copy_from_slice(&ip.octets());
            4
        }
        IpAddr::V6(ip) => {
            bytes[..16].copy_from_slice(&ip.octets());
            16
        }
    };
    bytes[ip_len..ip_len + 4].copy_from_slice(&i32::from(store_host.port()).to_be_bytes());
    bytes[ip_len + 4..ip_len + 12].copy_from_slice(&phys_offset.to_be_bytes());
    upper_hex(&bytes[..ip_len + 12])
}

fn upper_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xF)] as char);
    }
    s
}

/// Generator of the `UNIQ_KEY` a broker gives a message that came without one, in upstream's
/// format: upper-case hex of [IP | pid (2 bytes) | a per-process salt (4) | ms since the start
/// of the month (4) | a counter (2)].
#[derive(Debug, Clone)]
pub struct UniqKeys {
    pid: u16,
    salt: u32,
    counter: u16,
}

impl UniqKeys {
    /// Keys for a process with `pid`, salted with `salt` (any per-process value: upstream uses
    /// its class loader's hash).
    pub fn new(pid: u32, salt: u32) -> Self {
        UniqKeys {
            pid: pid as u16,
            salt,
            counter: 0,
        }
    }

    /// The next key, for a broker at `ip`, at `now_ms` since the epoch (UTC).
    pub fn next(&mut self, ip: IpAddr, now_ms: i64) -> String {
        let mut bytes = Vec::with_capacity(26);
        match ip {
            IpAddr::V4(ip) => bytes.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => bytes.extend_from_slice(&ip.octets()),
        }
        bytes.extend_from_slice(&self.pid.to_be_bytes());
        bytes.extend_from_slice(&self.salt.to_be_bytes());
        let since_month = now_ms - month_start_ms(now_ms);
        bytes.extend_from_slice(&(since_month as u32).to_be_bytes());
        bytes.extend_from_slice(&self.counter.to_be_bytes());
        self.counter = self.counter.wrapping_add(1);
        upper_hex(&bytes)
    }
}

/// The first millisecond of the UTC month holding `ms`.
fn month_start_ms(ms: i64) -> i64 {
    const DAY: i64 = 86_400_000;
    let days = ms.div_euclid(DAY);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    (days - (d - 1)) * DAY
}

/// What a stored message's response reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    /// The offset message id ([`msg_id`]).
    pub msg_id: String,
    /// The queue ([`Admitted::queue_id`]).
    pub queue_id: i32,
    /// The record's queue offset.
    pub queue_offset: i64,
    /// The message's `UNIQ_KEY`.
    pub transaction_id: String,
}

/// Upstream's region and trace switches, added to every send response past the header checks.
fn add_region(response: &mut RemotingCommand) {
    let ext = &mut response.ext_fields;
    ext.insert("MSG_REGION", "DefaultRegion");
    ext.insert("TRACE_ON", "true");
}

/// The response to a stored message: `code` is `SUCCESS`, `SLAVE_NOT_AVAILABLE` or
/// `FLUSH_SLAVE_TIMEOUT` (the header is filled either way).
pub fn stored_response(
    request: &RemotingCommand,
    code: i32,
    result: &SendResult,
) -> RemotingCommand {
    let mut response = RemotingCommand::response_to(request, code, None);
    let ext = &mut response.ext_fields;
    ext.insert("msgId", &result.msg_id);
    ext.insert("queueId", &result.queue_id.to_string());
    ext.insert("queueOffset", &result.queue_offset.to_string());
    ext.insert("transactionId", &result.transaction_id);
    add_region(&mut response);
    response
}

/// [`stored_response`] encoded into `dst`, without building its ext-field map: the send
/// path's answer to every stored message.
pub fn encode_stored_response(
    request: &RemotingCommand,
    code: i32,
    result: &SendResult,
    dst: &mut bytes::BytesMut,
) -> Result<(), super::remoting::EncodeError> {
    let response = RemotingCommand::response_to(request, code, None);
    let (mut queue, mut offset) = (itoa::Buffer::new(), itoa::Buffer::new());
    // In key order, as the map would hold them (`add_region`'s two, then the result's).
    let fields = [
        ("MSG_REGION", "DefaultRegion"),
        ("TRACE_ON", "true"),
        ("msgId", result.msg_id.as_str()),
        ("queueId", queue.format(result.queue_id)),
        ("queueOffset", offset.format(result.queue_offset)),
        ("transactionId", result.transaction_id.as_str()),
    ];
    response.encode_with(&fields, dst)
}

/// The response to a refused send.
pub fn refused_response(request: &RemotingCommand, refusal: Refusal) -> RemotingCommand {
    let mut response = RemotingCommand::response_to(request, refusal.code, Some(refusal.remark));
    add_region(&mut response);
    response
}

/// The fuzz property of the send path: `data` is one remoting frame; it is answered as a
/// `SEND_MESSAGE` and as a `SEND_MESSAGE_V2` by a fresh broker. Never panics; a refusal has a
/// remark; an admitted message's record is exactly `record_len` bytes and reads back (topic,
/// queue, offsets, body, properties) as written, and its properties survive a parse.
#[doc(hidden)]
pub fn fuzz_check(data: &[u8]) {
    let mut buf = bytes::BytesMut::from(data);
    let Ok(Some(mut request)) = super::remoting::FrameDecoder::default().decode(&mut buf) else {
        return;
    };
    let born: SocketAddr = "10.0.0.7:53000".parse().expect("an address");
    let store: SocketAddr = "[2001:db8::1]:10911".parse().expect("an address");
    for c in [code::SEND_MESSAGE, code::SEND_MESSAGE_V2] {
        request.code = c;
        let admitted = SendHeader::decode(&request).and_then(|header| {
            admit(
                &header,
                request.body.as_ref(),
                &mut Topics::default(),
                born,
                &SendRules::default(),
                data.len() as u32,
                || "FUZZ".into(),
            )
        });
        let a = match admitted {
            Ok(a) => a,
            Err(refusal) => {
                assert!(!refusal.remark.is_empty(), "a refusal says why");
                assert_ne!(refusal.code, code::SUCCESS);
                continue;
            }
        };
        let m = &a.message;
        assert!(m.properties.len() <= MAX_PROPERTIES_LEN);
        assert!(!m.body.is_empty() && m.body.len() <= DEFAULT_MAX_MESSAGE_SIZE);
        assert_eq!(Properties::parse(&m.properties).format(), m.properties);
        let mut rec = vec![0; m.record_len(store)];
        m.encode(&mut rec, 1 << 40, 3, 5, store);
        let v = view(&rec).expect("an encoded record reads back");
        assert_eq!(
            u32::from_be_bytes(rec[..4].try_into().expect("4")) as usize,
            rec.len()
        );
        assert_eq!(
            (v.topic, v.queue_id, v.queue_offset, v.body, v.properties),
            (
                m.topic.as_str(),
                m.queue_id,
                3,
                &m.body[..],
                m.properties.as_str()
            )
        );
        assert_eq!(&rec[28..36], &(1u64 << 40).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The send path's direct encoding is the built response's, for JSON and binary headers,
    /// every answer code and any field widths.
    #[test]
    fn encoded_stored_response_is_the_built_one() {
        let mut request = RemotingCommand::request(code::SEND_MESSAGE_V2);
        for (serialize_type, opaque, queue_id, queue_offset) in [
            (super::super::remoting::SerializeType::Json, 7, 0, 0),
            (
                super::super::remoting::SerializeType::Json,
                -1,
                15,
                i64::MAX,
            ),
            (super::super::remoting::SerializeType::RocketMq, 3, 2, 99),
        ] {
            request.serialize_type = serialize_type;
            request.opaque = opaque;
            let result = SendResult {
                msg_id: "0A00000700002774000000000000002A".into(),
                queue_id,
                queue_offset,
                transaction_id: "uniq \"key\"".into(),
            };
            for status in [
                code::SUCCESS,
                code::FLUSH_SLAVE_TIMEOUT,
                code::SLAVE_NOT_AVAILABLE,
            ] {
                let mut direct = bytes::BytesMut::new();
                encode_stored_response(&request, status, &result, &mut direct).unwrap();
                let built = stored_response(&request, status, &result)
                    .to_bytes()
                    .unwrap();
                assert_eq!(&direct[..], &built[..], "{serialize_type:?} {status}");
            }
        }
    }

    fn header(topic: &str) -> SendHeader {
        SendHeader {
            producer_group: "pg".into(),
            topic: topic.into(),
            default_topic: AUTO_CREATE_TOPIC.into(),
            default_topic_queue_nums: 4,
            queue_id: 1,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            flag: 0,
            properties: Some("UNIQ_KEY\u{1}ABC\u{2}KEYS\u{1}k1\u{2}".into()),
            reconsume_times: 0,
            unit_mode: false,
            max_reconsume_times: None,
            batch: false,
        }
    }

    fn born() -> SocketAddr {
        "10.0.0.7:5555".parse().unwrap()
    }

    fn admit_one(h: &SendHeader, topics: &mut Topics) -> Result<Admitted, Refusal> {
        let body = Bytes::from_static(b"hello");
        admit(
            h,
            Some(&body),
            topics,
            born(),
            &SendRules::default(),
            7,
            || "GEN".into(),
        )
    }

    #[test]
    fn both_codes_decode_to_the_same_header() {
        // `decode` maps a V2 key to its field by its letter.
        for (i, (_, short)) in KEYS.iter().enumerate() {
            assert_eq!(short.as_bytes(), [b'a' + i as u8]);
        }
        let h = header("T");
        for c in [code::SEND_MESSAGE, code::SEND_MESSAGE_V2] {
            let req = h.to_request(c, Bytes::from_static(b"x"));
            assert_eq!(SendHeader::decode(&req).unwrap(), h);
            // And as the broker reads it: off the wire, through the header scanner.
            let mut wire = bytes::BytesMut::from(&req.to_bytes().unwrap()[..]);
            let decoded = super::super::remoting::FrameDecoder::default()
                .decode(&mut wire)
                .unwrap()
                .unwrap();
            assert_eq!(SendHeader::decode(&decoded).unwrap(), h);
        }
        let v2 = h.to_request(code::SEND_MESSAGE_V2, Bytes::new());
        assert_eq!(v2.ext("b"), Some("T"));
        assert_eq!(v2.ext("topic"), None);
    }

    #[test]
    fn a_missing_or_bad_field_is_named() {
        let mut req = header("T").to_request(code::SEND_MESSAGE_V2, Bytes::new());
        req.ext_fields.remove("e");
        let r = SendHeader::decode(&req).unwrap_err();
        assert_eq!(r.code, code::SYSTEM_ERROR);
        assert!(r.remark.contains("<queueId>"), "{}", r.remark);
        req.ext_fields.insert("e", "one");
        let r = SendHeader::decode(&req).unwrap_err();
        assert!(r.remark.contains("not a number"), "{}", r.remark);
    }

    #[test]
    fn topics_are_checked_in_upstreams_order() {
        let mut topics = Topics::default();
        let cases: [(&str, i32, &str); 5] = [
            ("  ", code::INVALID_PARAMETER, "blank"),
            ("a b", code::INVALID_PARAMETER, "illegal characters"),
            (&"x".repeat(128), code::INVALID_PARAMETER, "max length: 127"),
            ("SCHEDULE_TOPIC_XXXX", code::NO_PERMISSION, "is forbidden"),
            ("OFFSET_MOVED_EVENT", code::NO_PERMISSION, "is forbidden"),
        ];
        for (topic, code, text) in cases {
            let r = admit_one(&header(topic), &mut topics).unwrap_err();
            assert_eq!(r.code, code, "{topic}");
            assert!(r.remark.contains(text), "{topic}: {}", r.remark);
        }
        assert!(validate_topic(&format!("%RETRY%{}", "g".repeat(200))).is_ok());
        let mut h = header("Unknown");
        h.default_topic = "NoSuchTemplate".into();
        let r = admit_one(&h, &mut topics).unwrap_err();
        assert_eq!(r.code, code::TOPIC_NOT_EXIST);
        assert!(
            r.remark
                .starts_with("topic[Unknown] not exist, apply first please!")
        );
    }

    #[test]
    fn auto_creation_takes_the_smaller_queue_count_and_checks_the_queue() {
        let mut topics = Topics::default();
        let mut h = header("T");
        h.default_topic_queue_nums = 20;
        admit_one(&h, &mut topics).unwrap();
        let t = topics.get("T").unwrap();
        assert_eq!((t.read_queues, t.write_queues, t.perm), (8, 8, 6));
        h.queue_id = 8;
        let r = admit_one(&h, &mut topics).unwrap_err();
        assert_eq!(r.code, code::INVALID_PARAMETER);
        assert!(
            r.remark.starts_with("request queueId[8] is illegal"),
            "{}",
            r.remark
        );
        // A created topic is no template.
        let mut h2 = header("U");
        h2.default_topic = "T".into();
        assert_eq!(
            admit_one(&h2, &mut topics).unwrap_err().code,
            code::TOPIC_NOT_EXIST
        );
        // The broker picks a queue for a negative id.
        h.queue_id = -1;
        assert_eq!(
            admit_one(&h, &mut topics).unwrap().queue_id,
            7,
            "spread 7 of 8 queues"
        );
    }

    #[test]
    fn properties_keep_uniq_key_add_cluster_and_drop_pop_ck() {
        let mut topics = Topics::default();
        let mut h = header("T");
        h.properties = Some("POP_CK\u{1}x\u{2}KEYS\u{1}k\u{2}\u{1}bad\u{2}bad\u{1}\u{2}".into());
        let a = admit_one(&h, &mut topics).unwrap();
        let p = Properties::parse(&a.message.properties);
        assert_eq!(p.get("POP_CK"), None);
        assert_eq!(p.get("KEYS"), Some("k"));
        assert_eq!(p.get("UNIQ_KEY"), Some("GEN"));
        assert_eq!(p.get("CLUSTER"), Some("DefaultCluster"));
        assert_eq!(a.uniq_key, "GEN");
        let a = admit_one(&header("T"), &mut topics).unwrap();
        assert_eq!(a.uniq_key, "ABC");
    }

    #[test]
    fn retries_past_the_limit_go_to_the_dead_letter_queue() {
        let mut topics = Topics::default();
        let mut h = header("%RETRY%g");
        h.queue_id = 0;
        h.reconsume_times = 17;
        let a = admit_one(&h, &mut topics).unwrap();
        assert_eq!(
            (a.message.topic.as_str(), a.message.queue_id),
            ("%DLQ%g", 0)
        );
        h.max_reconsume_times = Some(20);
        assert_eq!(
            admit_one(&h, &mut topics).unwrap().message.topic,
            "%RETRY%g"
        );
    }

    #[test]
    fn delay_and_transaction_halves_are_rerouted() {
        let mut topics = Topics::default();
        let mut h = header("T");
        h.properties = Some("DELAY\u{1}30\u{2}".into());
        let a = admit_one(&h, &mut topics).unwrap();
        assert_eq!(
            (a.message.topic.as_str(), a.message.queue_id),
            (SCHEDULE_TOPIC, 17)
        );
        let p = Properties::parse(&a.message.properties);
        assert_eq!(
            (p.get("REAL_TOPIC"), p.get("REAL_QID")),
            (Some("T"), Some("1"))
        );
        h.properties = Some("TRAN_MSG\u{1}true\u{2}".into());
        h.sys_flag = sysflag::TRANSACTION_PREPARED;
        let a = admit_one(&h, &mut topics).unwrap();
        assert_eq!(
            (a.message.topic.as_str(), a.message.queue_id),
            (HALF_TOPIC, 0)
        );
        assert!(a.message.takes_queue_offset());
        assert_eq!(a.queue_id, 1, "the response names the queue asked for");
    }

    #[test]
    fn oversized_bodies_and_batches_are_refused() {
        let mut topics = Topics::default();
        let rules = SendRules {
            max_message_size: 4,
            ..SendRules::default()
        };
        let body = Bytes::from_static(b"hello");
        let r = admit(
            &header("T"),
            Some(&body),
            &mut topics,
            born(),
            &rules,
            0,
            String::new,
        )
        .unwrap_err();
        assert_eq!(r.code, code::MESSAGE_ILLEGAL);
        let r = admit(
            &header("T"),
            None,
            &mut topics,
            born(),
            &rules,
            0,
            String::new,
        )
        .unwrap_err();
        assert_eq!(r.code, code::SYSTEM_ERROR);
        let mut h = header("T");
        h.batch = true;
        assert_eq!(
            admit_one(&h, &mut topics).unwrap_err().code,
            code::REQUEST_CODE_NOT_SUPPORTED
        );
    }

    #[test]
    fn a_record_has_upstreams_layout() {
        let mut topics = Topics::default();
        let a = admit_one(&header("TopicA"), &mut topics).unwrap();
        let store: SocketAddr = "192.168.1.2:10911".parse().unwrap();
        let m = &a.message;
        let len = m.record_len(store);
        assert_eq!(len, 91 + 5 + 6 + m.properties.len());
        let mut rec = vec![0; len];
        m.encode(&mut rec, 4096, 3, 1_700_000_000_123, store);
        assert_eq!(&rec[0..4], &(len as u32).to_be_bytes());
        assert_eq!(&rec[4..8], &MAGIC_V1.to_be_bytes());
        let crc = crc32fast::hash(b"hello") & 0x7FFF_FFFF;
        assert_eq!(&rec[8..12], &crc.to_be_bytes());
        assert_eq!(&rec[28..36], &4096u64.to_be_bytes());
        assert_eq!(&rec[48..52], &[10, 0, 0, 7]);
        assert_eq!(&rec[52..56], &5555i32.to_be_bytes());
        assert_eq!(&rec[64..68], &[192, 168, 1, 2]);
        let v = view(&rec).unwrap();
        assert_eq!(
            (v.topic, v.queue_id, v.queue_offset, v.body),
            ("TopicA", 1, 3, &b"hello"[..])
        );
        assert_eq!(v.properties, m.properties);
        assert_eq!(msg_id(store, 4096), "C0A8010200002A9F0000000000001000");
    }

    #[test]
    fn long_topics_and_ipv6_hosts_change_the_layout() {
        let mut m = admit_one(&header("T"), &mut Topics::default())
            .unwrap()
            .message;
        m.topic = format!("%RETRY%{}", "g".repeat(150));
        m.born_host = "[::1]:9".parse().unwrap();
        let store: SocketAddr = "[fe80::1]:10911".parse().unwrap();
        let len = m.record_len(store);
        let mut rec = vec![0; len];
        m.encode(&mut rec, 0, 0, 0, store);
        assert_eq!(&rec[4..8], &MAGIC_V2.to_be_bytes());
        let v = view(&rec).unwrap();
        assert_eq!(v.topic, m.topic);
        assert_eq!(v.sys_flag & 0x30, 0x30);
        assert_eq!(msg_id(store, 1).len(), 56);
    }

    #[test]
    fn uniq_keys_are_upstreams_shape_and_count() {
        let mut keys = UniqKeys::new(0x1234_5678, 0xAABB_CCDD);
        let ip = IpAddr::from([127, 0, 0, 1]);
        // 2026-12-07T00:00:01Z: 6 days and 1 s into the month.
        let a = keys.next(ip, 1_796_601_601_000);
        assert_eq!(a.len(), 32);
        assert_eq!(&a[..20], "7F0000015678AABBCCDD");
        assert_eq!(&a[20..28], format!("{:08X}", 6 * 86_400_000 + 1000));
        let b = keys.next(ip, 1_796_601_601_000);
        assert_eq!(&b[28..], "0001");
        assert_eq!(month_start_ms(0), 0);
    }
}
