//! RocketMQ's remoting frame (`RemotingCommand`), sans-IO over `bytes`.
//!
//! ```text
//! [length: i32 BE = 4 + header + body][serialize type << 24 | header length][header][body]
//! ```
//!
//! The header is JSON (type 0, fastjson's sorted keys) or the ROCKETMQ binary layout (type 1).
//! [`FrameDecoder`] is incremental: feed it whatever the socket returned, a frame split at any
//! byte or several frames at once, and take commands out as they complete. It is liberal where
//! the Java broker is (header values as numbers, strings or booleans; a missing
//! `serializeTypeCurrentRPC`; unknown keys) and strict where safety needs it (the 16 MiB frame
//! cap is checked before anything is buffered; every length is bounds-checked).
//! This module does no IO and knows nothing about what a request code means.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::collections::BTreeMap;
use std::fmt;

/// The largest frame accepted or produced (Java `com.rocketmq.remoting.frameMaxLength`), counting
/// the 4-byte length field, as Netty's `LengthFieldBasedFrameDecoder` does.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Flag bit 0: set on responses.
pub const FLAG_RESPONSE: i32 = 1;
/// Flag bit 1: set on oneway requests (no response is written).
pub const FLAG_ONEWAY: i32 = 2;

/// Request and response codes this crate uses (upstream `RequestCode`, `ResponseCode`,
/// `RemotingSysResponseCode`).
pub mod code {
    /// `HEART_BEAT`.
    pub const HEART_BEAT: i32 = 34;
    /// `UNREGISTER_CLIENT`.
    pub const UNREGISTER_CLIENT: i32 = 35;
    /// `CHECK_CLIENT_CONFIG`.
    pub const CHECK_CLIENT_CONFIG: i32 = 46;
    /// `GET_CONSUMER_LIST_BY_GROUP`.
    pub const GET_CONSUMER_LIST_BY_GROUP: i32 = 38;
    /// `NOTIFY_CONSUMER_IDS_CHANGED` (broker to client, oneway).
    pub const NOTIFY_CONSUMER_IDS_CHANGED: i32 = 40;
    /// `GET_CONSUMER_CONNECTION_LIST`.
    pub const GET_CONSUMER_CONNECTION_LIST: i32 = 203;
    /// `GET_PRODUCER_CONNECTION_LIST`.
    pub const GET_PRODUCER_CONNECTION_LIST: i32 = 204;
    /// `GET_ALL_PRODUCER_INFO`.
    pub const GET_ALL_PRODUCER_INFO: i32 = 328;
    /// `SEND_MESSAGE` (header with long keys).
    pub const SEND_MESSAGE: i32 = 10;
    /// `SEND_MESSAGE_V2` (the same header with one-letter keys).
    pub const SEND_MESSAGE_V2: i32 = 310;
    /// `SUCCESS`.
    pub const SUCCESS: i32 = 0;
    /// `SYSTEM_ERROR`.
    pub const SYSTEM_ERROR: i32 = 1;
    /// `SYSTEM_BUSY`.
    pub const SYSTEM_BUSY: i32 = 2;
    /// `REQUEST_CODE_NOT_SUPPORTED`.
    pub const REQUEST_CODE_NOT_SUPPORTED: i32 = 3;
    /// `SUBSCRIPTION_PARSE_FAILED`.
    pub const SUBSCRIPTION_PARSE_FAILED: i32 = 23;
    /// `CONSUMER_NOT_ONLINE`.
    pub const CONSUMER_NOT_ONLINE: i32 = 206;
    /// `SLAVE_NOT_AVAILABLE`: stored, but too few slaves can take it (upstream 4).
    pub const SLAVE_NOT_AVAILABLE: i32 = 11;
    /// `FLUSH_SLAVE_TIMEOUT`: stored, but slaves did not acknowledge it within the timeout.
    pub const FLUSH_SLAVE_TIMEOUT: i32 = 12;
    /// `MESSAGE_ILLEGAL`: body or properties too long.
    pub const MESSAGE_ILLEGAL: i32 = 13;
    /// `SERVICE_NOT_AVAILABLE`: the store cannot take messages now.
    pub const SERVICE_NOT_AVAILABLE: i32 = 14;
    /// `NO_PERMISSION`: the topic may not be written.
    pub const NO_PERMISSION: i32 = 16;
    /// `TOPIC_NOT_EXIST`: unknown and not creatable.
    pub const TOPIC_NOT_EXIST: i32 = 17;
    /// `INVALID_PARAMETER`: a header value is not acceptable.
    pub const INVALID_PARAMETER: i32 = 29;
}

/// How the header is serialized (the frame's high byte of the second word).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SerializeType {
    /// fastjson, the default.
    #[default]
    Json,
    /// The compact binary layout (`RocketMQSerializable`).
    RocketMq,
}

impl SerializeType {
    fn code(self) -> u8 {
        match self {
            SerializeType::Json => 0,
            SerializeType::RocketMq => 1,
        }
    }
}

/// `(type << 24) | (header_len & 0x00FF_FFFF)`, upstream `markProtocolType`.
pub fn mark_protocol_type(header_len: u32, ty: SerializeType) -> [u8; 4] {
    ((u32::from(ty.code()) << 24) | (header_len & 0x00FF_FFFF)).to_be_bytes()
}

/// A JSON-header frame with no body, encoded once except for its `opaque`
/// ([`RemotingCommand::opaque_template`]). Writing it copies two byte runs and the opaque's
/// digits: byte for byte what [`RemotingCommand::encode`] writes for the same command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpaqueTemplate {
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl OpaqueTemplate {
    /// Appends the frame with `opaque` to `dst`.
    pub fn encode(&self, opaque: i32, dst: &mut BytesMut) {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(opaque).as_bytes();
        let header = self.head.len() + digits.len() + self.tail.len();
        dst.reserve(8 + header);
        dst.put_u32((4 + header) as u32);
        dst.put_slice(&mark_protocol_type(header as u32, SerializeType::Json));
        dst.put_slice(&self.head);
        dst.put_slice(digits);
        dst.put_slice(&self.tail);
    }
}

/// A client's implementation language (Java `LanguageCode`); unknown codes are kept as-is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LanguageCode(pub u8);

const LANGUAGES: [&str; 14] = [
    "JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP",
    "OMS", "RUST", "NODE_JS",
];

impl LanguageCode {
    /// Java, the default.
    pub const JAVA: LanguageCode = LanguageCode(0);
    /// Rust.
    pub const RUST: LanguageCode = LanguageCode(12);
    /// Other (also what an unknown name decodes to).
    pub const OTHER: LanguageCode = LanguageCode(7);

    /// The Java enum name, or `OTHER` for an unknown code.
    pub fn name(self) -> &'static str {
        LANGUAGES
            .get(usize::from(self.0))
            .copied()
            .unwrap_or("OTHER")
    }

    /// From a Java enum name.
    pub fn from_name(name: &str) -> Option<LanguageCode> {
        LANGUAGES
            .iter()
            .position(|n| *n == name)
            .map(|i| LanguageCode(i as u8))
    }
}

impl fmt::Display for LanguageCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A command's custom header fields (`extFields`): text keys to text values, in key order, each
/// key once.
///
/// Every request carries a dozen of these (a send's header is thirteen), so they are not kept as
/// a map of owned strings: keys and values are written back to back into one string and found by
/// their spans, which are kept sorted by key. Decoding a header's fields therefore allocates
/// three times however many there are (the text, the spans, the box holding both, which keeps a
/// `RemotingCommand` small to move), none without fields, and reading a field borrows it. A
/// replaced or removed field's bytes stay behind until they outweigh the live ones, then the
/// text is compacted.
#[derive(Clone, Default)]
pub struct ExtFields {
    inner: Option<Box<Inner>>,
}

#[derive(Clone, Default)]
struct Inner {
    /// Keys and values, back to back; also bytes of replaced or removed fields.
    text: String,
    /// `[key start, key end = value start, value end]` into `text`, sorted by key.
    spans: Vec<[u32; 3]>,
}

impl Inner {
    fn key_of(&self, span: &[u32; 3]) -> &str {
        &self.text[span[0] as usize..span[1] as usize]
    }

    fn value_of(&self, span: &[u32; 3]) -> &str {
        &self.text[span[1] as usize..span[2] as usize]
    }

    /// Where `key` is (`Ok`) or would go (`Err`). Clients send keys sorted, so a key that goes
    /// last is placed without a search.
    fn find(&self, key: &str) -> Result<usize, usize> {
        match self.spans.last() {
            None => return Err(0),
            Some(last) if self.key_of(last) < key => return Err(self.spans.len()),
            _ => {}
        }
        self.spans
            .binary_search_by(|span| self.key_of(span).cmp(key))
    }

    fn place(&mut self, start: usize, mid: usize) {
        let end = self.text.len();
        debug_assert!(start <= mid && mid <= end);
        let span = [start as u32, mid as u32, end as u32];
        match self.find(&self.text[start..mid]) {
            Ok(at) => {
                self.spans[at] = span;
                self.discarded();
            }
            Err(at) => self.spans.insert(at, span),
        }
    }

    /// Called once a span is dropped: compacts once garbage outweighs the live text (so a
    /// field set again and again, like a kept response's, does not grow the text forever).
    fn discarded(&mut self) {
        let live: usize = self.spans.iter().map(|s| (s[2] - s[0]) as usize).sum();
        let garbage = self.text.len() - live;
        if garbage > 64 && garbage > live {
            let mut text = String::with_capacity(live);
            for span in &mut self.spans {
                let start = text.len();
                text.push_str(&self.text[span[0] as usize..span[2] as usize]);
                let key_len = span[1] - span[0];
                *span = [start as u32, start as u32 + key_len, text.len() as u32];
            }
            self.text = text;
        }
    }
}

impl ExtFields {
    /// No fields.
    pub const fn new() -> Self {
        ExtFields { inner: None }
    }

    /// Room for `fields` fields of `bytes` bytes of text in all, allocated once.
    pub fn with_capacity(fields: usize, bytes: usize) -> Self {
        ExtFields {
            inner: (fields > 0 || bytes > 0).then(|| {
                Box::new(Inner {
                    text: String::with_capacity(bytes),
                    spans: Vec::with_capacity(fields),
                })
            }),
        }
    }

    fn inner_mut(&mut self) -> &mut Inner {
        self.inner.get_or_insert_with(Box::default)
    }

    /// How many fields there are.
    pub fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.spans.len())
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        let inner = self.inner.as_deref()?;
        let at = inner.find(key).ok()?;
        Some(inner.value_of(&inner.spans[at]))
    }

    /// True if `key` has a value.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`, replacing any value it had.
    pub fn insert(&mut self, key: &str, value: &str) {
        let inner = self.inner_mut();
        let start = inner.text.len();
        inner.text.push_str(key);
        inner.text.push_str(value);
        inner.place(start, start + key.len());
    }

    /// Removes `key`; true if it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        let Some(inner) = self.inner.as_deref_mut() else {
            return false;
        };
        match inner.find(key) {
            Ok(at) => {
                inner.spans.remove(at);
                inner.discarded();
                true
            }
            Err(_) => false,
        }
    }

    /// The fields in key order.
    pub fn iter(&self) -> ExtIter<'_> {
        ExtIter {
            text: self.inner.as_ref().map_or("", |i| i.text.as_str()),
            spans: self.inner.as_ref().map_or(&[][..], |i| &i.spans).iter(),
        }
    }

    /// The text a decoder writes a field into: the key from `start` to `mid`, its value from
    /// `mid` to the end, then [`place`](Self::place)d (or cut off again).
    pub(crate) fn text_mut(&mut self) -> &mut String {
        &mut self.inner_mut().text
    }

    /// Makes the text from `start` to `mid` a key and from `mid` to the end its value,
    /// replacing the key's earlier value if it had one.
    pub(crate) fn place(&mut self, start: usize, mid: usize) {
        self.inner_mut().place(start, mid);
    }
}

impl PartialEq for ExtFields {
    /// The same fields, however each side's text is laid out.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for ExtFields {}

impl fmt::Debug for ExtFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// [`ExtFields::iter`]: `(key, value)` in key order.
#[derive(Debug, Clone)]
pub struct ExtIter<'a> {
    text: &'a str,
    spans: std::slice::Iter<'a, [u32; 3]>,
}

impl<'a> Iterator for ExtIter<'a> {
    type Item = (&'a str, &'a str);
    fn next(&mut self) -> Option<Self::Item> {
        let s = self.spans.next()?;
        let text = self.text;
        Some((
            &text[s[0] as usize..s[1] as usize],
            &text[s[1] as usize..s[2] as usize],
        ))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.spans.size_hint()
    }
}

impl ExactSizeIterator for ExtIter<'_> {}

impl<'a> IntoIterator for &'a ExtFields {
    type Item = (&'a str, &'a str);
    type IntoIter = ExtIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for ExtFields {
    /// A later pair replaces an earlier one with the same key, as in a map.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let mut fields = ExtFields::new();
        for (key, value) in pairs {
            fields.insert(key.as_ref(), value.as_ref());
        }
        fields
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> From<[(K, V); N]> for ExtFields {
    fn from(pairs: [(K, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl serde::Serialize for ExtFields {
    /// As a JSON object in key order (what a `BTreeMap<String, String>` writes).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for ExtFields {
    /// An object of strings (the header's own liberal reading is [`decode_frame`]'s).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, String>::deserialize(d)?;
        Ok(map.iter().collect())
    }
}

/// One request or response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemotingCommand {
    /// Request code, or response code in a response.
    pub code: i32,
    /// The sender's language.
    pub language: LanguageCode,
    /// The sender's `MQVersion` ordinal.
    pub version: i32,
    /// Request id; a response echoes its request's.
    pub opaque: i32,
    /// Bit 0 response, bit 1 oneway.
    pub flag: i32,
    /// Optional error text.
    pub remark: Option<String>,
    /// Custom header fields, stringified (one string for all of them: [`ExtFields`]).
    pub ext_fields: ExtFields,
    /// How the header is (or will be) serialized.
    pub serialize_type: SerializeType,
    /// The body; `None` when the frame has none.
    pub body: Option<Bytes>,
}

/// The version this server announces in its responses (`MQVersion.Version.V5_3_3.ordinal()`).
pub const SERVER_VERSION: i32 = 493;

impl RemotingCommand {
    /// A request with `code`.
    pub fn request(code: i32) -> Self {
        RemotingCommand {
            code,
            version: SERVER_VERSION,
            ..Default::default()
        }
    }

    /// The response to `req`: its opaque echoed, the response flag set, the request's header
    /// serialization kept (so a binary-header client can read it).
    pub fn response_to(req: &RemotingCommand, code: i32, remark: Option<String>) -> Self {
        RemotingCommand {
            code,
            language: LanguageCode::JAVA,
            version: SERVER_VERSION,
            opaque: req.opaque,
            flag: FLAG_RESPONSE,
            remark,
            ext_fields: ExtFields::new(),
            serialize_type: req.serialize_type,
            body: None,
        }
    }

    /// True if bit 0 of `flag` is set.
    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    /// True if bit 1 of `flag` is set: nobody waits for a response.
    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// An ext field.
    pub fn ext(&self, key: &str) -> Option<&str> {
        self.ext_fields.get(key)
    }

    /// Appends the whole frame (length prefix included) to `dst`. The header is written in
    /// place and the two length words patched after it, so a response costs no allocation.
    /// On error `dst` is left as it was.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        self.encode_with(&[], dst)
    }

    /// [`encode`](Self::encode) as if `extra` (sorted by key, no key twice, none of the
    /// command's own) were among the ext fields too: a response's varying fields written
    /// without building a map for them.
    pub fn encode_with(
        &self,
        extra: &[(&str, &str)],
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        debug_assert!(
            extra.windows(2).all(|w| w[0].0 < w[1].0),
            "extra fields sorted"
        );
        if !extra.is_empty()
            && (self.serialize_type != SerializeType::Json || !self.ext_fields.is_empty())
        {
            // Rare (a binary header, or fields to merge): through a command that holds them all.
            let mut merged = self.clone();
            for (key, value) in extra {
                merged.ext_fields.insert(key, value);
            }
            return merged.encode(dst);
        }
        let start = dst.len();
        let body_len = self.body.as_ref().map_or(0, Bytes::len);
        dst.reserve(8 + 128 + body_len);
        dst.put_bytes(0, 8);
        let header = match self.serialize_type {
            SerializeType::Json => {
                if extra.is_empty() {
                    self.write_json_header(dst);
                } else {
                    self.write_json_header_with(extra.iter().copied(), dst);
                }
                Ok(dst.len() - start - 8)
            }
            SerializeType::RocketMq => self.binary_header().map(|header| {
                dst.put_slice(&header);
                header.len()
            }),
        };
        let checked = header.and_then(|header| {
            if header > 0x00FF_FFFF {
                return Err(EncodeError::HeaderTooLarge(header));
            }
            let frame = 4 + 4 + header + body_len;
            if frame > MAX_FRAME {
                return Err(EncodeError::FrameTooLarge(frame));
            }
            Ok((header, frame))
        });
        let (header, frame) = match checked {
            Ok(lengths) => lengths,
            Err(error) => {
                dst.truncate(start);
                return Err(error);
            }
        };
        dst[start..start + 4].copy_from_slice(&((frame - 4) as u32).to_be_bytes());
        dst[start + 4..start + 8]
            .copy_from_slice(&mark_protocol_type(header as u32, self.serialize_type));
        if let Some(body) = &self.body {
            dst.put_slice(body);
        }
        Ok(())
    }

    /// The frame as bytes.
    pub fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut out = BytesMut::new();
        self.encode(&mut out)?;
        Ok(out.freeze())
    }

    /// This frame encoded once, with its `opaque` left open: for a response that is sent again
    /// and again with only the request's `opaque` changing (a connection's heartbeat answers).
    /// `None` for a binary header or a frame with a body, which `encode` handles.
    pub fn opaque_template(&self) -> Option<OpaqueTemplate> {
        if self.serialize_type != SerializeType::Json || self.body.is_some() {
            return None;
        }
        let mut header = BytesMut::new();
        let digits = self.write_json_header(&mut header);
        // The longest opaque (i32::MIN) must still fit the header field and the frame cap.
        let longest = header.len() - digits.len() + 11;
        if longest > 0x00FF_FFFF || 8 + longest > MAX_FRAME {
            return None;
        }
        Some(OpaqueTemplate {
            head: header[..digits.start].to_vec(),
            tail: header[digits.end..].to_vec(),
        })
    }

    /// fastjson's output: keys sorted, nulls omitted, `serializeTypeCurrentRPC` included.
    /// Written by hand (strings escaped by serde_json) because it is on every response's path.
    /// Returns where in `dst` the `opaque`'s digits are.
    fn write_json_header(&self, dst: &mut BytesMut) -> std::ops::Range<usize> {
        self.write_json_header_with(self.ext_fields.iter(), dst)
    }

    /// The header with `ext` (in key order) as its ext fields.
    fn write_json_header_with<'e>(
        &self,
        ext: impl Iterator<Item = (&'e str, &'e str)>,
        dst: &mut BytesMut,
    ) -> std::ops::Range<usize> {
        fn int(dst: &mut BytesMut, n: i32) {
            dst.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        }
        fn string(dst: &mut BytesMut, s: &str) {
            if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
                dst.put_u8(b'"');
                dst.extend_from_slice(s.as_bytes());
                dst.put_u8(b'"');
            } else {
                serde_json::to_writer((&mut *dst).writer(), s)
                    .expect("writing to a BytesMut cannot fail");
            }
        }
        dst.extend_from_slice(b"{\"code\":");
        int(dst, self.code);
        let mut ext = ext.peekable();
        if ext.peek().is_some() {
            dst.extend_from_slice(b",\"extFields\":{");
            for (i, (key, value)) in ext.enumerate() {
                if i > 0 {
                    dst.put_u8(b',');
                }
                string(dst, key);
                dst.put_u8(b':');
                string(dst, value);
            }
            dst.put_u8(b'}');
        }
        dst.extend_from_slice(b",\"flag\":");
        int(dst, self.flag);
        dst.extend_from_slice(b",\"language\":");
        string(dst, self.language.name());
        dst.extend_from_slice(b",\"opaque\":");
        let opaque = dst.len();
        int(dst, self.opaque);
        let opaque = opaque..dst.len();
        if let Some(remark) = &self.remark {
            dst.extend_from_slice(b",\"remark\":");
            string(dst, remark);
        }
        dst.extend_from_slice(b",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":");
        int(dst, self.version);
        dst.put_u8(b'}');
        opaque
    }

    fn binary_header(&self) -> Result<Vec<u8>, EncodeError> {
        let code = i16::try_from(self.code)
            .map_err(|_| EncodeError::NotBinary("code", i64::from(self.code)))?;
        let version = i16::try_from(self.version)
            .map_err(|_| EncodeError::NotBinary("version", i64::from(self.version)))?;
        let mut out = Vec::with_capacity(21);
        out.put_i16(code);
        out.put_u8(self.language.0);
        out.put_i16(version);
        out.put_i32(self.opaque);
        out.put_i32(self.flag);
        match &self.remark {
            Some(r) => {
                out.put_i32(r.len() as i32);
                out.put_slice(r.as_bytes());
            }
            None => out.put_i32(0),
        }
        let mut ext = Vec::new();
        for (k, v) in &self.ext_fields {
            let key_len = u16::try_from(k.len())
                .map_err(|_| EncodeError::NotBinary("ext key length", k.len() as i64))?;
            ext.put_u16(key_len);
            ext.put_slice(k.as_bytes());
            ext.put_i32(v.len() as i32);
            ext.put_slice(v.as_bytes());
        }
        out.put_i32(ext.len() as i32);
        out.extend_from_slice(&ext);
        Ok(out)
    }
}

/// Why a command could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The header does not fit the 24-bit header length.
    #[error("header of {0} bytes exceeds 16 MiB - 1")]
    HeaderTooLarge(usize),
    /// The frame exceeds [`MAX_FRAME`].
    #[error("frame of {0} bytes exceeds the 16 MiB cap")]
    FrameTooLarge(usize),
    /// A field does not fit the binary header's width.
    #[error("{0} = {1} does not fit the ROCKETMQ binary header")]
    NotBinary(&'static str, i64),
}

/// Why bytes are not a frame. After any of these the stream cannot be resynchronized: the
/// connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The length prefix announces more than [`MAX_FRAME`].
    #[error("frame length {0} exceeds the 16 MiB cap")]
    FrameTooLarge(u64),
    /// The length prefix is too small to hold the header-length word.
    #[error("frame length {0} is shorter than its header-length field")]
    FrameTooShort(u32),
    /// The header length is larger than the frame.
    #[error("decode error, bad header length {header} in a frame of {frame} bytes")]
    BadHeaderLength {
        /// The announced header length.
        header: u32,
        /// The frame length (after the prefix).
        frame: u32,
    },
    /// The serialize type is neither JSON (0) nor ROCKETMQ (1).
    #[error("unknown serialize type {0}")]
    UnknownSerializeType(u8),
    /// The JSON header is malformed.
    #[error("malformed JSON header: {0}")]
    Json(String),
    /// The binary header is malformed.
    #[error("malformed ROCKETMQ header: {0}")]
    Binary(&'static str),
}

/// Incremental frame decoder. Holds no buffer of its own: it consumes complete frames from the
/// caller's `BytesMut` and leaves a partial one there.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_frame: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder {
            max_frame: MAX_FRAME,
        }
    }
}

impl FrameDecoder {
    /// A decoder with a smaller cap than [`MAX_FRAME`] (never larger).
    pub fn with_max_frame(max_frame: usize) -> Self {
        FrameDecoder {
            max_frame: max_frame.min(MAX_FRAME),
        }
    }

    /// Bytes of the frame being received, as far as the prefix tells (`None` before 4 bytes).
    /// Lets the transport reject an oversized frame before reading its body.
    pub fn pending_frame_len(&self, src: &[u8]) -> Option<usize> {
        (src.len() >= 4)
            .then(|| 4 + u32::from_be_bytes(src[..4].try_into().expect("4 bytes")) as usize)
    }

    /// Takes one complete command out of `src`, or returns `Ok(None)` if more bytes are needed.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RemotingCommand>, DecodeError> {
        let Some(total) = self.pending_frame_len(src) else {
            return Ok(None);
        };
        if total > self.max_frame {
            return Err(DecodeError::FrameTooLarge(total as u64 - 4));
        }
        let len = (total - 4) as u32;
        if len < 4 {
            return Err(DecodeError::FrameTooShort(len));
        }
        if src.len() < total {
            // Grow with the data, not with the claim: 4 bytes announcing 16 MiB must not make
            // the server reserve 16 MiB.
            src.reserve((total - src.len()).min(64 * 1024));
            return Ok(None);
        }
        src.advance(4);
        let frame = src.split_to(len as usize).freeze();
        decode_frame(frame).map(Some)
    }
}

/// Decodes one frame without its length prefix (`[type|header len][header][body]`).
pub fn decode_frame(mut frame: Bytes) -> Result<RemotingCommand, DecodeError> {
    let frame_len = frame.len() as u32;
    if frame.len() < 4 {
        return Err(DecodeError::FrameTooShort(frame_len));
    }
    let word = frame.get_u32();
    let header_len = word & 0x00FF_FFFF;
    if header_len > frame_len - 4 {
        return Err(DecodeError::BadHeaderLength {
            header: header_len,
            frame: frame_len,
        });
    }
    let header = frame.split_to(header_len as usize);
    let body = (!frame.is_empty()).then_some(frame);
    let mut cmd = match (word >> 24) as u8 {
        0 => decode_json_header(&header)?,
        1 => decode_binary_header(header)?,
        other => return Err(DecodeError::UnknownSerializeType(other)),
    };
    cmd.body = body;
    Ok(cmd)
}

fn decode_json_header(header: &[u8]) -> Result<RemotingCommand, DecodeError> {
    match super::json_header::parse(header) {
        Some(fields) => Ok(RemotingCommand::from_header_fields(fields)),
        None => decode_json_header_serde(header),
    }
}

impl RemotingCommand {
    pub(crate) fn from_header_fields(h: super::json_header::Fields) -> Self {
        RemotingCommand {
            code: h.code,
            language: h.language,
            version: h.version,
            opaque: h.opaque,
            flag: h.flag,
            remark: h.remark,
            ext_fields: h.ext_fields,
            serialize_type: SerializeType::Json,
            body: None,
        }
    }
}

/// The JSON header by serde_json: what a header means. `json_header::parse` takes the common
/// shape faster and declines the rest.
pub(crate) fn decode_json_header_serde(header: &[u8]) -> Result<RemotingCommand, DecodeError> {
    serde_json::from_slice(header)
        .map(RemotingCommand::from_header_fields)
        .map_err(|e| DecodeError::Json(e.to_string()))
}

pub(super) fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    let v = super::lenient::i64(d)?;
    i32::try_from(v).map_err(|_| de::Error::custom(format!("{v} is out of the int range")))
}

pub(super) fn language<'de, D: Deserializer<'de>>(d: D) -> Result<LanguageCode, D::Error> {
    Ok(language_named(&super::lenient::string(d)?))
}

/// The header's `language` text: a Java name, or an ordinal.
pub(crate) fn language_named(s: &str) -> LanguageCode {
    if let Ok(n) = s.parse::<u8>() {
        // An ordinal; one we have no name for is OTHER, so that re-encoding by name round-trips.
        return if usize::from(n) < LANGUAGES.len() {
            LanguageCode(n)
        } else {
            LanguageCode::OTHER
        };
    }
    LanguageCode::from_name(s).unwrap_or(if s.is_empty() {
        LanguageCode::JAVA
    } else {
        LanguageCode::OTHER
    })
}

pub(super) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match v {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

/// `extFields`: each value kept as text (a string as is, anything else as its JSON), a `null`
/// value dropped (a later key replaces an earlier one, as in a map). Read straight into the
/// map: every request's header has these, so no intermediate `Value` is built for them.
pub(super) fn ext_fields<'de, D: Deserializer<'de>>(d: D) -> Result<ExtFields, D::Error> {
    struct Fields;
    impl<'de> de::Visitor<'de> for Fields {
        type Value = ExtFields;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object of header fields")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(ExtFields::new())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(ExtFields::new())
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(self)
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = ExtFields::new();
            while let Some(key) = map.next_key::<String>()? {
                match map.next_value::<FieldText>()?.0 {
                    Some(value) => out.insert(&key, &value),
                    None => {
                        out.remove(&key);
                    }
                }
            }
            Ok(out)
        }
    }
    /// One value as text; `None` for `null`.
    struct FieldText(Option<String>);
    impl<'de> Deserialize<'de> for FieldText {
        fn deserialize<D2: Deserializer<'de>>(d: D2) -> Result<Self, D2::Error> {
            struct Text;
            impl<'de> de::Visitor<'de> for Text {
                type Value = FieldText;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a header field value")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldText, E> {
                    Ok(FieldText(Some(v.to_owned())))
                }
                fn visit_string<E: de::Error>(self, v: String) -> Result<FieldText, E> {
                    Ok(FieldText(Some(v)))
                }
                fn visit_unit<E: de::Error>(self) -> Result<FieldText, E> {
                    Ok(FieldText(None))
                }
                fn visit_bool<E: de::Error>(self, v: bool) -> Result<FieldText, E> {
                    Ok(FieldText(Some(v.to_string())))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<FieldText, E> {
                    Ok(FieldText(Some(v.to_string())))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<FieldText, E> {
                    Ok(FieldText(Some(v.to_string())))
                }
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<FieldText, E> {
                    Ok(FieldText(Some(serde_json::Value::from(v).to_string())))
                }
                fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<FieldText, A::Error> {
                    let v =
                        serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                    Ok(FieldText(Some(v.to_string())))
                }
                fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<FieldText, A::Error> {
                    let v =
                        serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
                    Ok(FieldText(Some(v.to_string())))
                }
            }
            d.deserialize_any(Text)
        }
    }
    d.deserialize_option(Fields)
}

fn decode_binary_header(mut h: Bytes) -> Result<RemotingCommand, DecodeError> {
    fn need(h: &Bytes, n: usize, what: &'static str) -> Result<(), DecodeError> {
        if h.remaining() < n {
            Err(DecodeError::Binary(what))
        } else {
            Ok(())
        }
    }
    /// The next `len` bytes, shared with the header, not copied.
    fn text(h: &mut Bytes, len: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        need(h, len, what)?;
        Ok(h.split_to(len))
    }
    fn utf8(raw: &[u8]) -> Result<&str, DecodeError> {
        std::str::from_utf8(raw).map_err(|_| DecodeError::Binary("string is not UTF-8"))
    }
    fn string(
        h: &mut Bytes,
        len: usize,
        what: &'static str,
    ) -> Result<Option<String>, DecodeError> {
        let raw = text(h, len, what)?;
        let s = utf8(&raw)?;
        Ok((!s.is_empty()).then(|| s.to_owned()))
    }
    fn length(h: &mut Bytes, what: &'static str) -> Result<usize, DecodeError> {
        need(h, 4, what)?;
        usize::try_from(h.get_i32()).map_err(|_| DecodeError::Binary("negative length"))
    }

    need(&h, 13, "header shorter than its fixed 13 bytes")?;
    let code = i32::from(h.get_i16());
    let language = LanguageCode(h.get_u8());
    let version = i32::from(h.get_i16());
    let opaque = h.get_i32();
    let flag = h.get_i32();
    let remark_len = length(&mut h, "remark length missing")?;
    let remark = string(&mut h, remark_len, "remark longer than the header")?;
    let ext_len = length(&mut h, "ext length missing")?;
    need(&h, ext_len, "ext fields longer than the header")?;
    let mut ext = h.split_to(ext_len);
    let mut ext_fields = ExtFields::with_capacity(0, ext_len);
    while ext.has_remaining() {
        need(&ext, 2, "ext key length missing")?;
        let key_len = usize::from(ext.get_u16());
        let key = text(&mut ext, key_len, "ext key longer than the map")?;
        let key = utf8(&key)?;
        let val_len = length(&mut ext, "ext value length missing")?;
        let val = text(&mut ext, val_len, "ext value longer than the map")?;
        let val = utf8(&val)?;
        if !key.is_empty() && !val.is_empty() {
            ext_fields.insert(key, val);
        }
    }
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        serialize_type: SerializeType::RocketMq,
        body: None,
    })
}

fn header_paths_agree(header: &[u8]) {
    if let Some(fields) = super::json_header::parse(header) {
        let fast = RemotingCommand::from_header_fields(fields);
        match decode_json_header_serde(header) {
            Ok(slow) => assert_eq!(fast, slow, "the header's fast path disagrees with serde"),
            Err(error) => panic!("the header's fast path answered where serde fails: {error}"),
        }
    }
}

/// Where `fields` differs from `model` (the `BTreeMap` it stands in for), or breaks its own
/// layout: spans outside the text, overlapping or out of key order.
fn ext_fields_differ(fields: &ExtFields, model: &BTreeMap<String, String>) -> Option<String> {
    let none = Inner::default();
    let inner = fields.inner.as_deref().unwrap_or(&none);
    let in_text = |s: &[u32; 3]| {
        s[0] <= s[1] && s[1] <= s[2] && s.iter().all(|&at| inner.text.is_char_boundary(at as usize))
    };
    if !inner.spans.iter().all(in_text) {
        return Some("a span outside the text".into());
    }
    let mut by_start = inner.spans.clone();
    by_start.sort_unstable();
    if by_start.windows(2).any(|w| w[0][2] > w[1][0]) {
        return Some(format!("spans overlap: {:?}", inner.spans));
    }
    if !inner
        .spans
        .windows(2)
        .all(|w| inner.key_of(&w[0]) < inner.key_of(&w[1]))
    {
        return Some(format!("keys out of order: {fields:?}"));
    }
    let want = model.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    if fields.len() != model.len() || !fields.iter().eq(want) {
        return Some(format!("{fields:?} where the map holds {model:?}"));
    }
    model
        .iter()
        .find(|(k, v)| fields.get(k) != Some(v.as_str()))
        .map(|(k, _)| format!("get({k:?}) is {:?}", fields.get(k)))
}

/// The fuzz property of [`ExtFields`]: `data` read as inserts and removes of a few keys (the
/// empty one, one that sorts first, multi-byte ones) with values of any length, applied to it
/// and to a `BTreeMap`; after each step both hold the same fields, and the layout is sound
/// (which also covers compaction, as values are replaced again and again).
fn ext_fields_check(data: &[u8]) {
    const KEYS: [&str; 6] = ["", "a", "b", "ab", "k\u{e9}y", "\u{1}"];
    let mut fields = ExtFields::new();
    let mut model = BTreeMap::new();
    for &op in data {
        let key = KEYS[usize::from(op >> 2) % KEYS.len()];
        if op & 3 == 3 {
            assert_eq!(fields.remove(key), model.remove(key).is_some());
        } else {
            let value = "v\u{e9}".repeat(usize::from(op >> 5));
            fields.insert(key, &value);
            model.insert(key.to_owned(), value);
        }
        if let Some(why) = ext_fields_differ(&fields, &model) {
            panic!("ExtFields differs from a map after {op:#04x}: {why}");
        }
    }
    assert_eq!(fields.clone(), model.iter().collect::<ExtFields>());
}

/// The fuzz property of the frame decoder: `data` fed at a split point chosen by its first byte,
/// then whatever decodes must re-encode and decode to the same command. Never panics on any input.
#[doc(hidden)]
pub fn fuzz_check(data: &[u8]) {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    // The JSON header's fast path agrees with serde's wherever it answers: on the input as a
    // header, and on the header of the input's first frame.
    header_paths_agree(data);
    // Both paths decode into `ExtFields`, which must hold what a map would.
    ext_fields_check(data);
    if data.len() >= 8 && data[4] == 0 {
        let header =
            (u32::from_be_bytes(data[4..8].try_into().expect("4 bytes")) & 0x00FF_FFFF) as usize;
        if let Some(header) = data.get(8..8 + header) {
            header_paths_agree(header);
        }
    }
    let split = usize::from(split).min(data.len());
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::from(&data[..split]);
    let mut commands = Vec::new();
    let mut failed = false;
    for chunk in [&data[split..], &[][..]] {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(cmd)) => commands.push(cmd),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            break;
        }
        buf.extend_from_slice(chunk);
    }
    for cmd in commands {
        let Ok(bytes) = cmd.to_bytes() else { continue };
        let mut again = BytesMut::from(&bytes[..]);
        let decoded = FrameDecoder::default()
            .decode(&mut again)
            .expect("our own encoding decodes")
            .expect("complete");
        assert_eq!(decoded, cmd, "re-encoding changed the command");
        assert!(again.is_empty());
        if let Some(template) = cmd.opaque_template() {
            let mut out = BytesMut::new();
            template.encode(cmd.opaque, &mut out);
            assert_eq!(&out[..], &bytes[..], "the template differs from encode");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A template writes what `encode` writes, for every opaque width and sign, with ext fields
    /// and a remark around the opaque; binary headers and bodies get none.
    #[test]
    fn opaque_template_encodes_as_encode_does() {
        let mut cmd = RemotingCommand::response_to(&RemotingCommand::request(34), 0, None);
        cmd.ext_fields.insert("IS_SUB_CHANGE", "false");
        cmd.ext_fields.insert("quote\"d", "tab\t");
        for remark in [None, Some("a remark".to_string())] {
            cmd.remark = remark;
            let template = cmd.opaque_template().expect("a JSON frame without a body");
            for opaque in [0, 7, -1, 10, 99_999, i32::MAX, i32::MIN] {
                cmd.opaque = opaque;
                let mut out = BytesMut::from(&b"before"[..]);
                template.encode(opaque, &mut out);
                assert_eq!(&out[6..], &cmd.to_bytes().unwrap()[..], "opaque {opaque}");
            }
        }
        cmd.body = Some(Bytes::from_static(b"{}"));
        assert!(cmd.opaque_template().is_none());
        cmd.body = None;
        cmd.serialize_type = SerializeType::RocketMq;
        assert!(cmd.opaque_template().is_none());
    }

    fn frame_of(cmd: &RemotingCommand) -> BytesMut {
        BytesMut::from(&cmd.to_bytes().unwrap()[..])
    }

    /// `ExtFields` behaves as the map it replaced: replacing, removing, key order, equality by
    /// content (not layout), and a field set again and again does not grow its text forever.
    #[test]
    fn ext_fields_are_a_map() {
        let mut f = ExtFields::new();
        f.insert("b", "2");
        f.insert("a", "1");
        f.insert("c", "3");
        f.insert("b", "two");
        assert!(f.remove("c"));
        assert!(!f.remove("c"));
        assert_eq!(f.iter().collect::<Vec<_>>(), [("a", "1"), ("b", "two")]);
        assert_eq!(f.get("b"), Some("two"));
        assert_eq!(f, ExtFields::from([("b", "two"), ("a", "1")]));
        assert_ne!(f, ExtFields::from([("a", "1")]));
        assert_eq!(format!("{f:?}"), r#"{"a": "1", "b": "two"}"#);
        assert_eq!(serde_json::to_string(&f).unwrap(), r#"{"a":"1","b":"two"}"#);
        let mut kept = ExtFields::from([("IS_SUPPORT_HEART_BEAT_V2", "true")]);
        for i in 0..10_000 {
            kept.insert("IS_SUB_CHANGE", if i % 2 == 0 { "false" } else { "true" });
        }
        let text = &kept.inner.as_ref().unwrap().text;
        assert!(text.len() < 256, "{} bytes", text.len());
        assert_eq!(kept.get("IS_SUB_CHANGE"), Some("true"));
    }

    /// The model check behind the fuzz property catches a broken `ExtFields`: keys out of
    /// order, overlapping spans, a value the map does not hold.
    #[test]
    fn ext_fields_check_catches_broken_layouts() {
        let model: BTreeMap<String, String> = [("a", "1"), ("b", "2")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let sound = ExtFields::from([("a", "1"), ("b", "2")]);
        assert_eq!(ext_fields_differ(&sound, &model), None);
        let mut swapped = sound.clone();
        swapped.inner.as_mut().unwrap().spans.swap(0, 1);
        let why = ext_fields_differ(&swapped, &model).unwrap();
        assert!(why.contains("out of order"), "{why}");
        let mut overlapping = sound.clone();
        overlapping.inner.as_mut().unwrap().spans[0][2] += 1;
        let why = ext_fields_differ(&overlapping, &model).unwrap();
        assert!(why.contains("overlap"), "{why}");
        let other = ExtFields::from([("a", "1"), ("b", "3")]);
        assert!(ext_fields_differ(&other, &model).is_some());
        ext_fields_check(&(0..=255).collect::<Vec<u8>>());
    }

    #[test]
    fn ext_field_values_are_kept_as_text() {
        let header = br#"{"code":10,"extFields":{"a":"x","b":12,"c":1.5,"d":true,"e":null,"f":{"k":[1,"v"]},"a":"y","g":"z","g":null},"flag":0}"#;
        let cmd = decode_json_header(header).unwrap();
        let got: Vec<(&str, &str)> = cmd.ext_fields.iter().collect();
        assert_eq!(
            got,
            [
                ("a", "y"),
                ("b", "12"),
                ("c", "1.5"),
                ("d", "true"),
                ("f", r#"{"k":[1,"v"]}"#)
            ]
        );
        let none = decode_json_header(br#"{"code":1,"extFields":null}"#).unwrap();
        assert!(none.ext_fields.is_empty());
        assert!(decode_json_header(br#"{"code":1,"extFields":[1]}"#).is_err());
    }

    /// RemotingCommandTest.testMarkProtocolType_*.
    #[test]
    fn mark_protocol_type_vectors() {
        assert_eq!(
            mark_protocol_type(261, SerializeType::Json),
            [0x00, 0x00, 0x01, 0x05]
        );
        assert_eq!(
            mark_protocol_type(16_777_215, SerializeType::RocketMq),
            [0x01, 0xFF, 0xFF, 0xFF]
        );
    }

    /// The header seen on the wire (a Java broker's response, docs/SPEC.md section 5), byte for byte.
    #[test]
    fn json_header_matches_fastjson() {
        let cmd = RemotingCommand {
            code: 0,
            flag: 1,
            opaque: 0,
            version: 403,
            ..Default::default()
        };
        let bytes = cmd.to_bytes().unwrap();
        let header = br#"{"code":0,"flag":1,"language":"JAVA","opaque":0,"serializeTypeCurrentRPC":"JSON","version":403}"#;
        assert_eq!(&bytes[8..], &header[..]);
        assert_eq!(&bytes[0..4], &((4 + header.len()) as u32).to_be_bytes());
        assert_eq!(
            &bytes[4..8],
            &mark_protocol_type(header.len() as u32, SerializeType::Json)
        );
    }

    /// RemotingCommandTest.testEncodeAndDecode_EmptyBody / _FilledBody / _FilledBodyWithExtFields.
    #[test]
    fn json_round_trips() {
        let mut cmd = RemotingCommand::request(103);
        cmd.version = 2333;
        assert_eq!(cmd.flag & FLAG_RESPONSE, 0);
        let mut buf = frame_of(&cmd);
        let back = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        assert_eq!(back, cmd);
        assert_eq!(back.body, None);

        cmd.body = Some(Bytes::from_static(b"123"));
        cmd.ext_fields = [
            ("stringValue", "bilibili"),
            ("intValue", "2333"),
            ("longValue", "23333333"),
            ("booleanValue", "true"),
            ("doubleValue", "0.618"),
            ("key", "value"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let back = FrameDecoder::default()
            .decode(&mut frame_of(&cmd))
            .unwrap()
            .unwrap();
        assert_eq!(back, cmd);
        assert_eq!(back.ext("intValue"), Some("2333"));
    }

    /// RemotingCommandTest.testCreateResponseCommand_*: code, remark and opaque kept; flag bit 0 set.
    #[test]
    fn response_echoes_opaque() {
        let mut req = RemotingCommand::request(34);
        req.opaque = 77;
        let resp = RemotingCommand::response_to(&req, code::SUCCESS, Some("ok".into()));
        assert!(resp.is_response());
        assert_eq!(resp.opaque, 77);
        assert_eq!(resp.remark.as_deref(), Some("ok"));
    }

    /// RocketMQSerializableTest: 21, 34 and 35 byte headers.
    #[test]
    fn binary_header_vectors() {
        let mut cmd = RemotingCommand {
            serialize_type: SerializeType::RocketMq,
            ..Default::default()
        };
        let plain = cmd.binary_header().unwrap();
        assert_eq!(plain.len(), 21);
        assert_eq!(&plain[13..21], &[0, 0, 0, 0, 0, 0, 0, 0]);
        cmd.remark = Some("Sample Remark".into());
        let with_remark = cmd.binary_header().unwrap();
        assert_eq!(with_remark.len(), 34);
        assert_eq!(&with_remark[13..17], &13i32.to_be_bytes());
        assert_eq!(&with_remark[17..30], b"Sample Remark");
        cmd.remark = None;
        cmd.ext_fields.insert("key", "value");
        let with_ext = cmd.binary_header().unwrap();
        assert_eq!(with_ext.len(), 35);
        assert_eq!(&with_ext[17..21], &14i32.to_be_bytes());
        for c in [
            &cmd,
            &RemotingCommand {
                remark: Some("r".into()),
                flag: 3,
                opaque: -5,
                code: 310,
                ..cmd.clone()
            },
        ] {
            let back = FrameDecoder::default()
                .decode(&mut frame_of(c))
                .unwrap()
                .unwrap();
            assert_eq!(&back, c);
        }
    }

    #[test]
    fn liberal_json_header() {
        let header = br#"{"code":"34","flag":false,"language":"NODE_JS","opaque":"9","version":1.0,"remark":null,
            "extFields":{"a":1,"b":true,"c":null,"d":"x"},"unknown":[1]}"#;
        let mut frame = BytesMut::new();
        frame.put_u32((4 + header.len()) as u32);
        frame.put_u32(header.len() as u32);
        frame.put_slice(header);
        let cmd = FrameDecoder::default().decode(&mut frame).unwrap().unwrap();
        assert_eq!((cmd.code, cmd.flag, cmd.opaque, cmd.version), (34, 0, 9, 1));
        assert_eq!(cmd.language, LanguageCode(13));
        assert_eq!(cmd.ext("a"), Some("1"));
        assert_eq!(cmd.ext("b"), Some("true"));
        assert_eq!(cmd.ext("c"), None);
    }

    #[test]
    fn incremental_at_every_split_and_back_to_back() {
        let mut a = RemotingCommand::request(34);
        a.body = Some(Bytes::from_static(b"{}"));
        let b = RemotingCommand {
            serialize_type: SerializeType::RocketMq,
            opaque: 2,
            ..RemotingCommand::request(35)
        };
        let mut stream = frame_of(&a);
        stream.extend_from_slice(&frame_of(&b));
        for split in 0..=stream.len() {
            let mut decoder = FrameDecoder::default();
            let mut buf = BytesMut::from(&stream[..split]);
            let mut got = Vec::new();
            while let Some(c) = decoder.decode(&mut buf).unwrap() {
                got.push(c);
            }
            buf.extend_from_slice(&stream[split..]);
            while let Some(c) = decoder.decode(&mut buf).unwrap() {
                got.push(c);
            }
            assert_eq!(got, [a.clone(), b.clone()], "split at {split}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn bad_frames_are_clear_errors() {
        let cases: [(&[u8], DecodeError); 5] = [
            (
                &[0x7f, 0xff, 0xff, 0xff],
                DecodeError::FrameTooLarge(0x7fff_ffff),
            ),
            (&[0, 0, 0, 2, 0, 0], DecodeError::FrameTooShort(2)),
            (
                &[0, 0, 0, 4, 0, 0, 0, 9],
                DecodeError::BadHeaderLength {
                    header: 9,
                    frame: 4,
                },
            ),
            (
                &[0, 0, 0, 4, 7, 0, 0, 0],
                DecodeError::UnknownSerializeType(7),
            ),
            (
                &[0, 0, 0, 6, 1, 0, 0, 2, 0, 0],
                DecodeError::Binary("header shorter than its fixed 13 bytes"),
            ),
        ];
        for (bytes, want) in cases {
            let err = FrameDecoder::default()
                .decode(&mut BytesMut::from(bytes))
                .unwrap_err();
            assert_eq!(err, want);
        }
        let garbage = b"GET / HTTP/1.1\r\n\r\n";
        assert!(matches!(
            FrameDecoder::default().decode(&mut BytesMut::from(&garbage[..])),
            Err(DecodeError::FrameTooLarge(_))
        ));
        let json = br#"{"code": oops}"#;
        let mut frame = BytesMut::new();
        frame.put_u32((4 + json.len()) as u32);
        frame.put_u32(json.len() as u32);
        frame.put_slice(json);
        assert!(matches!(
            FrameDecoder::default().decode(&mut frame),
            Err(DecodeError::Json(_))
        ));
    }

    #[test]
    fn oversized_frames_are_refused_before_buffering() {
        let mut decoder = FrameDecoder::with_max_frame(64);
        let mut buf = BytesMut::from(&100u32.to_be_bytes()[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(DecodeError::FrameTooLarge(100))
        );
        let big = RemotingCommand {
            body: Some(Bytes::from(vec![0u8; MAX_FRAME])),
            ..Default::default()
        };
        assert!(matches!(big.to_bytes(), Err(EncodeError::FrameTooLarge(_))));
    }

    #[test]
    fn fuzz_property_holds_on_seeds() {
        let mut seeds: Vec<Vec<u8>> = Vec::new();
        let mut a = RemotingCommand::request(34);
        a.body = Some(Bytes::from_static(b"{}"));
        a.language = LanguageCode(200);
        for ty in [SerializeType::Json, SerializeType::RocketMq] {
            let c = RemotingCommand {
                serialize_type: ty,
                ..a.clone()
            };
            let mut v = vec![5u8];
            v.extend_from_slice(&c.to_bytes().unwrap());
            seeds.push(v);
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in 0..400 {
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.push(x as u8);
            }
            seeds.push(v);
        }
        for seed in &seeds {
            fuzz_check(seed);
        }
    }
}
