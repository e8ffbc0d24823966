//! Wire vectors of the remoting protocol (`wire/remoting.json`, docs/SPEC.md section 5): frame
//! decoding and encoding, responses, the admin query bodies and the lenient heartbeat decoding.

use super::*;
use bytes::{BufMut, Bytes, BytesMut};
use rmq_lifecycle::core::remoting::{
    DecodeError, EncodeError, ExtFields, FLAG_ONEWAY, FLAG_RESPONSE, FrameDecoder, LanguageCode,
    MAX_FRAME, RemotingCommand, SerializeType, code, mark_protocol_type,
};

use rmq_lifecycle::core::Millis;
use rmq_lifecycle::core::admin::{self, ClientConnection};
use rmq_lifecycle::core::message::{self, SendHeader, SendRules, Topics};

pub(super) const FILE: &str = "wire/remoting.json";

/// (name, description, request frame, response code, remark, ext fields).
type ResponseCase = (
    &'static str,
    &'static str,
    Vec<u8>,
    i32,
    Option<&'static str>,
    Vec<(&'static str, &'static str)>,
);

fn ty_name(t: SerializeType) -> &'static str {
    match t {
        SerializeType::Json => "JSON",
        SerializeType::RocketMq => "ROCKETMQ",
    }
}

fn decode_error(e: &DecodeError) -> Value {
    let (kind, detail) = match e {
        DecodeError::FrameTooLarge(n) => ("frame_too_large", json!({ "length": n })),
        DecodeError::FrameTooShort(n) => ("frame_too_short", json!({ "length": n })),
        DecodeError::BadHeaderLength { header, frame } => (
            "bad_header_length",
            json!({ "header_len": header, "length": frame }),
        ),
        DecodeError::UnknownSerializeType(t) => {
            ("unknown_serialize_type", json!({ "serialize_type": t }))
        }
        DecodeError::Json(_) => ("malformed_json_header", json!({})),
        DecodeError::Binary(_) => ("malformed_binary_header", json!({})),
    };
    json!({ "kind": kind, "detail": detail, "message": e.to_string() })
}

fn encode_error(e: &EncodeError) -> Value {
    let kind = match e {
        EncodeError::HeaderTooLarge(_) => "header_too_large",
        EncodeError::FrameTooLarge(_) => "frame_too_large",
        EncodeError::NotBinary(..) => "not_binary",
    };
    json!({ "kind": kind, "message": e.to_string() })
}

/// The command's fields as a vector states them (also the input form of encode vectors).
fn command_json(c: &RemotingCommand) -> Value {
    json!({
        "code": c.code,
        "language": c.language.name(),
        "language_code": c.language.0,
        "version": c.version,
        "opaque": c.opaque,
        "flag": c.flag,
        "remark": c.remark,
        "ext_fields": c.ext_fields,
        "serialize_type": ty_name(c.serialize_type),
        "body_hex": c.body.as_ref().map(|b| hex(b)),
    })
}

/// As [`command_json`], but a body of zeros larger than 4 KiB is stated by its length.
fn command_input_json(c: &RemotingCommand) -> Value {
    let Some(body) = c.body.as_ref().filter(|b| b.len() > 4096) else {
        return command_json(c);
    };
    assert!(body.iter().all(|b| *b == 0), "only zero bodies are elided");
    let mut v = command_json(&RemotingCommand {
        body: None,
        ..c.clone()
    });
    let obj = v.as_object_mut().expect("object");
    obj.remove("body_hex");
    obj.insert("body_zeros".into(), json!(body.len()));
    v
}

fn command_from_json(v: &Value) -> Result<RemotingCommand, String> {
    let int = |k: &str| -> Result<i32, String> {
        field(v, k)?
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| format!("{k} is not an int"))
    };
    let language = field(v, "language_code")?
        .as_u64()
        .and_then(|n| u8::try_from(n).ok())
        .ok_or("language_code is not a byte")?;
    let serialize_type = match str_field(v, "serialize_type")? {
        "JSON" => SerializeType::Json,
        "ROCKETMQ" => SerializeType::RocketMq,
        other => return Err(format!("serialize type {other:?}")),
    };
    let body = match (v.get("body_hex"), v.get("body_zeros")) {
        (_, Some(n)) => Some(Bytes::from(vec![
            0u8;
            n.as_u64().ok_or("body_zeros")? as usize
        ])),
        (Some(Value::String(h)), None) => Some(Bytes::from(unhex(h)?)),
        _ => None,
    };
    Ok(RemotingCommand {
        code: int("code")?,
        language: LanguageCode(language),
        version: int("version")?,
        opaque: int("opaque")?,
        flag: int("flag")?,
        remark: field(v, "remark")?.as_str().map(str::to_owned),
        ext_fields: serde_json::from_value(field(v, "ext_fields")?.clone())
            .map_err(|e| e.to_string())?,
        serialize_type,
        body,
    })
}

/// Feeds the chunks to a fresh decoder, decoding after each one, as a transport would.
pub(super) fn decode_chunks(chunks: &[Vec<u8>]) -> Value {
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let prefix =
                (buf.len() >= 4).then(|| u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
            match decoder.decode(&mut buf) {
                Ok(Some(cmd)) => {
                    let frame_len = prefix.expect("a frame has a prefix");
                    let body_len = cmd.body.as_ref().map_or(0, Bytes::len) as u32;
                    let mut f = command_json(&cmd);
                    let obj = f.as_object_mut().expect("object");
                    obj.insert("frame_len".into(), json!(frame_len));
                    obj.insert("header_len".into(), json!(frame_len - 4 - body_len));
                    obj.insert("body_len".into(), json!(body_len));
                    obj.insert("is_response".into(), json!(cmd.is_response()));
                    obj.insert("is_oneway".into(), json!(cmd.is_oneway()));
                    frames.push(f);
                }
                Ok(None) => break,
                Err(e) => {
                    return json!({ "frames": frames, "error": decode_error(&e), "pending": null });
                }
            }
        }
    }
    json!({ "frames": frames, "error": null, "pending": buf.len() })
}

fn encode(cmd: &RemotingCommand) -> Value {
    match cmd.to_bytes() {
        Ok(b) => json!({ "hex": hex(&b), "error": null }),
        Err(e) => json!({ "hex": null, "error": encode_error(&e) }),
    }
}

fn response_to(request: &[u8], code: i32, remark: Option<&str>, ext: &[(&str, &str)]) -> Value {
    let cmd = FrameDecoder::default()
        .decode(&mut BytesMut::from(request))
        .ok()
        .flatten()
        .expect("the request of a response vector decodes");
    let mut resp = RemotingCommand::response_to(&cmd, code, remark.map(str::to_owned));
    for (k, v) in ext {
        resp.ext_fields.insert(k, v);
    }
    resp.to_bytes()
        .map(|b| hex(&b))
        .expect("responses encode")
        .into()
}

fn frame(word: u32, header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.put_u32((4 + header.len() + body.len()) as u32);
    v.put_u32(word);
    v.extend_from_slice(header);
    v.extend_from_slice(body);
    v
}

fn json_frame(header: &str, body: &[u8]) -> Vec<u8> {
    frame(header.len() as u32, header.as_bytes(), body)
}

fn binary_frame(header: &[u8]) -> Vec<u8> {
    frame((1 << 24) | header.len() as u32, header, b"")
}

/// A ROCKETMQ header built field by field (not by the encoder under test).
fn raw_binary(
    code: i16,
    lang: u8,
    version: i16,
    opaque: i32,
    flag: i32,
    remark: &[u8],
    ext: &[u8],
) -> Vec<u8> {
    let mut h = Vec::new();
    h.put_i16(code);
    h.put_u8(lang);
    h.put_i16(version);
    h.put_i32(opaque);
    h.put_i32(flag);
    h.put_i32(remark.len() as i32);
    h.extend_from_slice(remark);
    h.put_i32(ext.len() as i32);
    h.extend_from_slice(ext);
    h
}

fn ext_entry(k: &str, v: &str) -> Vec<u8> {
    let mut e = Vec::new();
    e.put_u16(k.len() as u16);
    e.extend_from_slice(k.as_bytes());
    e.put_i32(v.len() as i32);
    e.extend_from_slice(v.as_bytes());
    e
}

fn cmd(code: i32) -> RemotingCommand {
    RemotingCommand::request(code)
}

fn bytes_of(c: &RemotingCommand) -> Vec<u8> {
    c.to_bytes().expect("encodes").to_vec()
}

pub(super) fn generate() -> String {
    let heartbeat_body = HeartbeatData::producers("10.0.0.1@12345", ["PID_ORDER"]).to_json();
    let hb_request = RemotingCommand {
        opaque: 1,
        body: Some(Bytes::from(heartbeat_body.clone())),
        ..cmd(code::HEART_BEAT)
    };
    let fastjson = r#"{"code":0,"flag":1,"language":"JAVA","opaque":0,"serializeTypeCurrentRPC":"JSON","version":403}"#;
    // Anchors from upstream's tests: if these change, the vectors would be wrong, not stale.
    let wire_example = RemotingCommand {
        flag: FLAG_RESPONSE,
        version: 403,
        ..Default::default()
    };
    assert_eq!(bytes_of(&wire_example), json_frame(fastjson, b""));
    assert_eq!(mark_protocol_type(261, SerializeType::Json), [0, 0, 1, 5]);
    assert_eq!(
        mark_protocol_type(16_777_215, SerializeType::RocketMq),
        [1, 0xff, 0xff, 0xff]
    );
    let plain21 = raw_binary(0, 0, 0, 0, 0, b"", b"");
    let remark34 = raw_binary(0, 0, 0, 0, 0, b"Sample Remark", b"");
    let ext35 = raw_binary(0, 0, 0, 0, 0, b"", &ext_entry("key", "value"));
    assert_eq!((plain21.len(), remark34.len(), ext35.len()), (21, 34, 35));

    let ext_upstream = ExtFields::from([
        ("stringValue", "bilibili"),
        ("intValue", "2333"),
        ("longValue", "23333333"),
        ("booleanValue", "true"),
        ("doubleValue", "0.618"),
        ("key", "value"),
    ]);
    let upstream_ext = RemotingCommand {
        version: 2333,
        ext_fields: ext_upstream,
        body: Some(Bytes::from_static(b"123")),
        ..cmd(103)
    };
    let fast_encode = RemotingCommand {
        code: 310,
        opaque: 0x1234_5678,
        flag: 3,
        version: 493,
        remark: Some("remark".into()),
        ext_fields: [("messageId", "7F0000010001")].into(),
        serialize_type: SerializeType::RocketMq,
        ..Default::default()
    };
    let binary_request = RemotingCommand {
        opaque: 2,
        serialize_type: SerializeType::RocketMq,
        ..cmd(code::UNREGISTER_CLIENT)
    };
    let oneway = RemotingCommand {
        flag: FLAG_ONEWAY,
        opaque: 9,
        ..cmd(code::HEART_BEAT)
    };

    let mut decode: Vec<(&str, &str, Vec<Vec<u8>>)> = Vec::new();
    let one = |b: Vec<u8>| vec![b];
    decode.push((
        "json_request_heartbeat",
        "HEART_BEAT (34) request with a JSON header and a HeartbeatData body",
        one(bytes_of(&hb_request)),
    ));
    decode.push((
        "json_response_fastjson_wire_example",
        "the header seen on the wire from a Java broker (docs/SPEC.md section 5), byte for byte",
        one(json_frame(fastjson, b"")),
    ));
    let mut list_request = RemotingCommand {
        opaque: 12,
        ..cmd(code::GET_CONSUMER_LIST_BY_GROUP)
    };
    list_request.ext_fields.insert("consumerGroup", "CG_ORDER");
    decode.push((
        "json_request_get_consumer_list_by_group",
        "GET_CONSUMER_LIST_BY_GROUP (38): header consumerGroup, no body",
        one(bytes_of(&list_request)),
    ));
    decode.push((
        "json_request_check_client_config",
        "CHECK_CLIENT_CONFIG (46): no header, a CheckClientRequestBody",
        one(bytes_of(&RemotingCommand {
            opaque: 13,
            body: Some(Bytes::from_static(
                br#"{"clientId":"c@1","group":"CG","subscriptionData":{"expressionType":"SQL92","subString":"a > 1","topic":"T"}}"#,
            )),
            ..cmd(code::CHECK_CLIENT_CONFIG)
        })),
    ));
    decode.push((
        "json_oneway_request",
        "flag bit 1: a oneway request (no response is written)",
        one(bytes_of(&oneway)),
    ));
    decode.push((
        "json_upstream_ext_fields_and_body",
        "RemotingCommandTest.testEncodeAndDecode_FilledBodyWithExtFields: typed header fields arrive as strings",
        one(bytes_of(&upstream_ext)),
    ));
    decode.push((
        "json_liberal_values",
        "fastjson-liberal header: numbers as strings, a boolean flag, a float version, null remark, non-string ext values, unknown keys",
        one(json_frame(
            r#"{"code":"34","flag":false,"language":"NODE_JS","opaque":"9","version":1.0,"remark":null,"extFields":{"a":1,"b":true,"c":null,"d":"x"},"unknown":[1]}"#,
            b"",
        )),
    ));
    decode.push((
        "json_minimal_header",
        "only a code: every other field takes its default; serializeTypeCurrentRPC may be missing",
        one(json_frame(r#"{"code":35}"#, b"")),
    ));
    decode.push((
        "json_language_by_ordinal",
        "language given as the ordinal 12 (RUST)",
        one(json_frame(r#"{"code":34,"language":12}"#, b"")),
    ));
    decode.push((
        "json_language_unknown_name",
        "an unknown language name decodes to OTHER (7)",
        one(json_frame(r#"{"code":34,"language":"COBOL"}"#, b"")),
    ));
    decode.push((
        "json_language_unknown_ordinal",
        "an ordinal without a name decodes to OTHER (7)",
        one(json_frame(r#"{"code":34,"language":200}"#, b"")),
    ));
    decode.push((
        "binary_upstream_21_bytes",
        "RocketMQSerializableTest: no remark, no ext fields: a 21-byte header",
        one(binary_frame(&plain21)),
    ));
    decode.push((
        "binary_upstream_remark_34_bytes",
        "RocketMQSerializableTest: remark \"Sample Remark\" (length 13 at offset 13): 34 bytes",
        one(binary_frame(&remark34)),
    ));
    decode.push((
        "binary_upstream_ext_35_bytes",
        "RocketMQSerializableTest: one ext entry key=value (extLen 14): 35 bytes",
        one(binary_frame(&ext35)),
    ));
    decode.push((
        "binary_fast_encode_flag_3",
        "RocketMQSerializableTest.testFastEncode: remark, opaque, flag 3 and an ext field survive",
        one(bytes_of(&fast_encode)),
    ));
    decode.push((
        "binary_unknown_language_byte_kept",
        "a ROCKETMQ header keeps an unknown language byte (200) as-is; its name is OTHER",
        one(binary_frame(&raw_binary(34, 200, 1, 5, 0, b"", b""))),
    ));
    decode.push((
        "binary_empty_strings_are_null",
        "an ext entry with an empty value is skipped (empty string = null)",
        one(binary_frame(&raw_binary(
            35,
            0,
            1,
            6,
            0,
            b"",
            &[ext_entry("keep", "v"), ext_entry("drop", "")].concat(),
        ))),
    ));
    decode.push((
        "binary_with_body",
        "a ROCKETMQ header followed by a body",
        one(frame(
            (1 << 24) | plain21.len() as u32,
            &plain21,
            b"body bytes",
        )),
    ));
    let hb = bytes_of(&hb_request);
    decode.push((
        "split_every_byte",
        "the heartbeat request fed one byte per read",
        hb.iter().map(|b| vec![*b]).collect(),
    ));
    decode.push((
        "split_inside_length_prefix",
        "a read ends after 2 bytes of the length prefix",
        vec![hb[..2].to_vec(), hb[2..].to_vec()],
    ));
    decode.push((
        "split_inside_header",
        "a read ends in the middle of the JSON header",
        vec![hb[..20].to_vec(), hb[20..].to_vec()],
    ));
    decode.push((
        "split_inside_body",
        "a read ends in the middle of the body",
        vec![hb[..hb.len() - 5].to_vec(), hb[hb.len() - 5..].to_vec()],
    ));
    let two = [hb.clone(), bytes_of(&binary_request)].concat();
    decode.push((
        "two_frames_one_read",
        "a JSON and a ROCKETMQ frame back to back in one read",
        one(two.clone()),
    ));
    decode.push((
        "frames_across_reads_with_trailing_partial",
        "two frames split across three reads, then the first 5 bytes of a third frame stay pending",
        vec![
            two[..7].to_vec(),
            two[7..hb.len() + 3].to_vec(),
            [&two[hb.len() + 3..], &hb[..5]].concat(),
        ],
    ));
    let mut at_cap = ((MAX_FRAME - 4) as u32).to_be_bytes().to_vec();
    at_cap.extend_from_slice(&[0, 0, 0, 2, b'{', b'}']);
    decode.push((
        "frame_at_16mib_cap_is_buffered",
        "a length of 16 MiB - 4 (frame of exactly 16 MiB with its prefix) is accepted: the decoder waits for more",
        one(at_cap),
    ));
    decode.push((
        "frame_over_16mib_cap",
        "a length of 16 MiB - 3 exceeds the cap: refused before anything is buffered",
        one(((MAX_FRAME - 3) as u32).to_be_bytes().to_vec()),
    ));
    decode.push((
        "length_i32_max",
        "length 0x7fffffff",
        one(vec![0x7f, 0xff, 0xff, 0xff]),
    ));
    decode.push((
        "length_negative",
        "length -1 as an i32 (0xffffffff): too large as unsigned",
        one(vec![0xff, 0xff, 0xff, 0xff]),
    ));
    decode.push((
        "length_zero",
        "length 0 cannot hold the header-length word",
        one(vec![0, 0, 0, 0]),
    ));
    decode.push((
        "length_too_short",
        "length 2 cannot hold the header-length word",
        one(vec![0, 0, 0, 2, 0, 0]),
    ));
    decode.push((
        "header_length_exceeds_frame",
        "header length 9 in a 4-byte frame (upstream: decode error, bad header length)",
        one(vec![0, 0, 0, 4, 0, 0, 0, 9]),
    ));
    decode.push((
        "unknown_serialize_type",
        "serialize type 7",
        one(vec![0, 0, 0, 4, 7, 0, 0, 0]),
    ));
    decode.push((
        "binary_header_truncated",
        "a ROCKETMQ header of 2 bytes",
        one(vec![0, 0, 0, 6, 1, 0, 0, 2, 0, 0]),
    ));
    let mut long_remark = raw_binary(34, 0, 1, 1, 0, b"", b"");
    long_remark[13..17].copy_from_slice(&100i32.to_be_bytes());
    decode.push((
        "binary_remark_longer_than_header",
        "remark length 100 in a 21-byte header",
        one(binary_frame(&long_remark)),
    ));
    let mut neg_remark = raw_binary(34, 0, 1, 1, 0, b"", b"");
    neg_remark[13..17].copy_from_slice(&(-1i32).to_be_bytes());
    decode.push((
        "binary_negative_remark_length",
        "remark length -1",
        one(binary_frame(&neg_remark)),
    ));
    let mut bad_ext = ext_entry("key", "value");
    bad_ext[0..2].copy_from_slice(&50u16.to_be_bytes());
    decode.push((
        "binary_ext_key_longer_than_map",
        "an ext key length of 50 inside a 14-byte map",
        one(binary_frame(&raw_binary(34, 0, 1, 1, 0, b"", &bad_ext))),
    ));
    decode.push((
        "binary_remark_not_utf8",
        "a remark that is not UTF-8",
        one(binary_frame(&raw_binary(
            34,
            0,
            1,
            1,
            0,
            &[0xff, 0xfe],
            b"",
        ))),
    ));
    decode.push((
        "json_malformed",
        "a JSON header that does not parse (the message is serde_json's; compare the kind)",
        one(json_frame(r#"{"code": oops}"#, b"")),
    ));
    decode.push((
        "json_empty_header",
        "header length 0 with the JSON type",
        one(json_frame("", b"")),
    ));
    decode.push((
        "json_code_out_of_int_range",
        "code 2147483648 does not fit a Java int",
        one(json_frame(r#"{"code":2147483648}"#, b"")),
    ));
    decode.push((
        "good_frame_then_garbage",
        "a valid frame, then an HTTP request in the same read: the frame decodes, then the error",
        one([hb.clone(), b"GET / HTTP/1.1\r\n\r\n".to_vec()].concat()),
    ));
    decode.push((
        "garbage_http_request",
        "an HTTP request: its first 4 bytes read as a length far beyond the cap",
        one(b"GET / HTTP/1.1\r\nHost: broker\r\n\r\n".to_vec()),
    ));
    decode.push((
        "garbage_timestamp_probe",
        "the health-check text of the incident, sent to the remoting port",
        one(b"2024-10-30 16:42:30".to_vec()),
    ));
    decode.push((
        "garbage_tls_client_hello",
        "the start of a TLS ClientHello",
        one(vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]),
    ));

    let mut items = Vec::new();
    for (name, description, chunks) in decode {
        let input = if chunks.len() == 1 {
            json!({ "hex": hex(&chunks[0]) })
        } else {
            json!({ "chunks": chunks.iter().map(|c| hex(c)).collect::<Vec<_>>() })
        };
        items.push(json!({
            "name": name,
            "kind": "decode",
            "description": description,
            "input": input,
            "expect": decode_chunks(&chunks),
        }));
    }

    let mut encodes: Vec<(&str, &str, RemotingCommand)> = vec![
        (
            "encode_json_request_register_broker",
            "RemotingCommandTest.testCreateRequestCommand_RegisterBroker: code 103, version 2333, flag 0",
            RemotingCommand {
                version: 2333,
                ..cmd(103)
            },
        ),
        (
            "encode_json_fastjson_wire_example",
            "fastjson's key order and serializeTypeCurrentRPC, byte for byte",
            wire_example,
        ),
        (
            "encode_json_ext_fields_and_body",
            "ext fields sorted by key, body appended raw",
            upstream_ext,
        ),
        (
            "encode_json_remark_escaping",
            "a remark with a quote, a backslash, a newline and non-ASCII text",
            RemotingCommand {
                remark: Some("say \"hi\"\\\n\u{e9}\u{4e2d}".into()),
                flag: FLAG_RESPONSE,
                code: code::SYSTEM_ERROR,
                ..cmd(0)
            },
        ),
        (
            "encode_binary_fast_encode",
            "a ROCKETMQ header with remark, flag 3 and one ext field",
            fast_encode,
        ),
        (
            "encode_binary_code_out_of_i16",
            "code 40000 does not fit the ROCKETMQ header's i16",
            RemotingCommand {
                serialize_type: SerializeType::RocketMq,
                ..cmd(40_000)
            },
        ),
        (
            "encode_json_notify_consumer_ids_changed",
            "the broker's NOTIFY_CONSUMER_IDS_CHANGED (40): oneway (flag 2), header consumerGroup",
            rmq_lifecycle::core::admin::notify_consumer_ids_changed("CG_ORDER", 7),
        ),
        (
            "encode_json_get_broker_config_request",
            "GET_BROKER_CONFIG (26) as a slave of this crate asks it before each HA connect: no body; \
             ext field mappedFileSizeCommitLog is the slave's own segment size (an upstream broker \
             ignores it)",
            admin::broker_config_request(1, 65536),
        ),
        (
            "encode_json_get_broker_config_response",
            "the answer to 26: SUCCESS, header version (upstream's DataVersion), the configuration \
             as key=value lines (UTF-8) in the body; the slave reads mappedFileSizeCommitLog",
            admin::broker_config_response(
                &admin::broker_config_request(1, 65536),
                &admin::BrokerConfig {
                    listen_port: 10911,
                    ha_listen_port: 10912,
                    segment_size: 1 << 30,
                    role: admin::BrokerRole::AsyncMaster,
                    since_ms: 1_700_000_000_000,
                },
            ),
        ),
        (
            "encode_frame_over_cap",
            "a body of 16 MiB: the frame would exceed the cap",
            RemotingCommand {
                body: Some(Bytes::from(vec![0u8; MAX_FRAME])),
                ..cmd(0)
            },
        ),
    ];
    for (name, description, c) in encodes.drain(..) {
        let input = command_input_json(&c);
        items.push(json!({
            "name": name,
            "kind": "encode",
            "description": description,
            "command": input,
            "expect": encode(&c),
        }));
    }

    let bin_req = bytes_of(&binary_request);
    let responses: Vec<ResponseCase> = vec![
        (
            "response_heartbeat_success",
            "the answer to a JSON HEART_BEAT: opaque echoed, flag 1, the two v2 ext fields",
            hb.clone(),
            code::SUCCESS,
            None,
            vec![
                ("IS_SUB_CHANGE", "true"),
                ("IS_SUPPORT_HEART_BEAT_V2", "true"),
            ],
        ),
        (
            "response_binary_request_gets_binary_header",
            "a ROCKETMQ-header request is answered with a ROCKETMQ header",
            bin_req,
            code::SUCCESS,
            None,
            vec![],
        ),
        (
            "response_request_code_not_supported",
            "an unknown request code (99): REQUEST_CODE_NOT_SUPPORTED with upstream's remark",
            bytes_of(&RemotingCommand {
                opaque: 41,
                ..cmd(99)
            }),
            code::REQUEST_CODE_NOT_SUPPORTED,
            Some(" request type 99 not supported"),
            vec![],
        ),
        (
            "response_system_busy",
            "a heartbeat beyond the admission budget: SYSTEM_BUSY",
            hb,
            code::SYSTEM_BUSY,
            Some("[OVERLOAD]system busy, start flow control for a while"),
            vec![],
        ),
    ];
    for (name, description, request, code, remark, ext) in responses {
        let ext_map: BTreeMap<&str, &str> = ext.iter().copied().collect();
        items.push(json!({
            "name": name,
            "kind": "response",
            "description": description,
            "request_hex": hex(&request),
            "response": { "code": code, "remark": remark, "ext_fields": ext_map },
            "expect": { "hex": response_to(&request, code, remark, &ext), "error": null },
        }));
    }

    items.extend(admin_bodies());
    items.extend(heartbeat_bodies());
    items.extend(send_vectors());

    for (header_len, ty) in [
        (261u32, SerializeType::Json),
        (16_777_215, SerializeType::RocketMq),
        (21, SerializeType::RocketMq),
    ] {
        items.push(json!({
            "name": format!("protocol_type_word_{}_{header_len}", ty_name(ty).to_lowercase()),
            "kind": "protocol_type_word",
            "description": "RemotingCommandTest.testMarkProtocolType: (type << 24) | header length",
            "header_len": header_len,
            "serialize_type": ty_name(ty),
            "expect": { "hex": hex(&mark_protocol_type(header_len, ty)) },
        }));
    }

    render(
        json!({
            "format": "rmq-lifecycle/wire-remoting/1",
            "max_frame": MAX_FRAME,
        }),
        "vectors",
        &items,
    )
}

/// The connections of the admin body vectors, as JSON (the input of each vector).
fn connections_json() -> Value {
    json!([
        {"channel": 3, "client_id": "10.0.0.3@4711", "peer": "10.0.0.3:51000",
         "language": "JAVA", "version": 493, "last_update": 1_500},
        {"channel": 5, "client_id": "10.0.0.3@4711", "peer": "10.0.0.5:51002",
         "language": "NODE_JS", "version": 317, "last_update": 2_500},
    ])
}

fn connections_from(v: &Value) -> Result<Vec<ClientConnection>, String> {
    let list = v.as_array().ok_or("connections is not a list")?;
    list.iter()
        .map(|c| {
            let language = str_field(c, "language")?;
            Ok(ClientConnection {
                channel: serde_json::from_value(field(c, "channel")?.clone())
                    .map_err(|e| e.to_string())?,
                client_id: str_field(c, "client_id")?.to_owned(),
                peer: str_field(c, "peer")?.to_owned(),
                language: LanguageCode::from_name(language)
                    .ok_or_else(|| format!("language {language}"))?,
                version: field(c, "version")?.as_i64().ok_or("version")? as i32,
                last_update: Millis(field(c, "last_update")?.as_u64().ok_or("last_update")?),
            })
        })
        .collect()
}

/// Runs one admin body vector's function on its input.
fn admin_answer(v: &Value) -> Result<Value, String> {
    let body = |b: Vec<u8>| json!({ "body": String::from_utf8_lossy(&b) });
    Ok(match str_field(v, "query")? {
        "consumer_list" => body(admin::consumer_list_body(&connections_from(field(
            v,
            "connections",
        )?)?)),
        "producer_connection" => body(admin::producer_connection_body(&connections_from(field(
            v,
            "connections",
        )?)?)),
        "consumer_connection" => {
            let meta =
                serde_json::from_value(field(v, "meta")?.clone()).map_err(|e| e.to_string())?;
            body(admin::consumer_connection_body(
                &connections_from(field(v, "connections")?)?,
                &meta,
            ))
        }
        "producer_table" => {
            let groups: BTreeMap<String, Vec<ClientConnection>> = field(v, "groups")?
                .as_object()
                .ok_or("groups is not an object")?
                .iter()
                .map(|(g, c)| Ok((g.clone(), connections_from(c)?)))
                .collect::<Result<_, String>>()?;
            let base = field(v, "wall_base")?.as_i64().ok_or("wall_base")?;
            body(admin::producer_table_body(&groups, |m| base + m.0 as i64))
        }
        "check_client_config" => {
            let input = field(v, "body")?.as_str().map(str::as_bytes);
            match admin::check_client_config(input) {
                Ok(()) => json!({ "code": code::SUCCESS, "remark": null }),
                Err((c, remark)) => json!({ "code": c, "remark": remark }),
            }
        }
        other => return Err(format!("unknown admin query {other:?}")),
    })
}

/// The bodies of 38, 203, 204 and 328 and the answers of 46, from `core::admin`.
fn admin_bodies() -> Vec<Value> {
    let conns = connections_json();
    let mut meta = rmq_lifecycle::core::consumer::ConsumerMeta::default();
    meta.subscriptions.insert(
        "TopicOrder".into(),
        SubscriptionData {
            topic: "TopicOrder".into(),
            sub_string: "TagA || TagB".into(),
            tags_set: vec!["TagA".into(), "TagB".into()],
            code_set: vec![2_598_919, 2_598_920],
            sub_version: 1_700_000_000_000,
            ..SubscriptionData::default()
        },
    );
    let meta = serde_json::to_value(&meta).expect("ConsumerMeta serializes");
    let mut cases = vec![
        json!({"name": "body_consumer_list_by_group", "query": "consumer_list",
            "description": "38's body: one client id per channel, duplicates kept, channel order",
            "connections": conns}),
        json!({"name": "body_consumer_connection_list", "query": "consumer_connection",
            "description": "203's ConsumerConnection: connections with language names, the subscription table, the group's enums by name",
            "connections": conns, "meta": meta}),
        json!({"name": "body_producer_connection_list", "query": "producer_connection",
            "description": "204's ProducerConnection",
            "connections": conns}),
        json!({"name": "body_all_producer_info", "query": "producer_table",
            "description": "328's ProducerTableInfo: remoteIP with Java's leading slash, lastUpdateTimestamp as wall time",
            "groups": {"PID_ORDER": conns, "PID_GONE": []}, "wall_base": 1_700_000_000_000i64}),
    ];
    for (name, description, body) in [
        (
            "check_client_config_no_body",
            "46 without a body: SUCCESS",
            None,
        ),
        (
            "check_client_config_tag",
            "46 with a TAG subscription: SUCCESS",
            Some(
                r#"{"clientId":"c@1","group":"CG","subscriptionData":{"expressionType":"TAG","subString":"*","topic":"T"}}"#,
            ),
        ),
        (
            "check_client_config_sql92",
            "46 with SQL92: refused, as upstream with enablePropertyFilter=false",
            Some(
                r#"{"clientId":"c@1","group":"CG","subscriptionData":{"expressionType":"SQL92","subString":"a > 1","topic":"T"}}"#,
            ),
        ),
    ] {
        cases.push(json!({"name": name, "query": "check_client_config",
            "description": description, "body": body}));
    }
    cases
        .into_iter()
        .map(|mut case| {
            let expect = admin_answer(&case).expect("the generator's own vectors replay");
            case["kind"] = json!("admin_body");
            case["expect"] = expect;
            case
        })
        .collect()
}

/// What the send path makes of one `SEND_MESSAGE`/`SEND_MESSAGE_V2` on a fresh broker (only the
/// template topic exists): the refusal, or the record stored at the vector's physical and queue
/// offsets with the response's fields. A message without `UNIQ_KEY` gets `uniq_key`.
fn send_answer(v: &Value) -> Result<Value, String> {
    let request = command_from_json(field(v, "request")?)?;
    let addr = |k: &str| -> Result<std::net::SocketAddr, String> {
        str_field(v, k)?.parse().map_err(|e| format!("{k}: {e}"))
    };
    let num = |k: &str| {
        field(v, k)?
            .as_i64()
            .ok_or_else(|| format!("{k} is not an int"))
    };
    let (born, store) = (addr("born_host")?, addr("store_host")?);
    let uniq = str_field(v, "uniq_key")?.to_owned();
    let spread = num("spread")? as u32;
    let admitted = SendHeader::decode(&request).and_then(|header| {
        message::admit(
            &header,
            request.body.as_ref(),
            &mut Topics::default(),
            born,
            &SendRules::default(),
            spread,
            || uniq,
        )
    });
    Ok(match admitted {
        Err(refusal) => json!({ "refused": { "code": refusal.code, "remark": refusal.remark } }),
        Ok(a) => {
            let m = &a.message;
            let phys = num("phys_offset")? as u64;
            let queue_offset = if m.takes_queue_offset() {
                num("queue_offset")?
            } else {
                0
            };
            let mut record = vec![0; m.record_len(store)];
            m.encode(
                &mut record,
                phys,
                queue_offset,
                num("store_timestamp")?,
                store,
            );
            json!({
                "record_hex": hex(&record),
                "topic": m.topic,
                "queue_id": a.queue_id,
                "queue_offset": queue_offset,
                "msg_id": message::msg_id(store, phys),
                "transaction_id": a.uniq_key,
                "wait_for_slaves": !a.no_wait,
            })
        }
    })
}

/// The send path's vectors: both codes, the broker's choices (queue, UNIQ_KEY, CLUSTER,
/// rerouting) and every refusal before the store, in upstream's order.
fn send_vectors() -> Vec<Value> {
    let base = SendHeader {
        producer_group: "PID_ORDER".into(),
        topic: "TopicOrder".into(),
        default_topic: message::AUTO_CREATE_TOPIC.into(),
        default_topic_queue_nums: 4,
        queue_id: 2,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        flag: 0,
        properties: Some("KEYS\u{1}order-1\u{2}TAGS\u{1}TagA\u{2}UNIQ_KEY\u{1}0A0000010000000000000000000000AA\u{2}".into()),
        reconsume_times: 0,
        unit_mode: false,
        max_reconsume_times: None,
        batch: false,
    };
    let with = |f: &dyn Fn(&mut SendHeader)| {
        let mut h = base.clone();
        f(&mut h);
        h
    };
    let body = Bytes::from_static(b"order 1 paid");
    let v2 = |h: &SendHeader| h.to_request(code::SEND_MESSAGE_V2, body.clone());
    let mut missing_queue = v2(&base);
    missing_queue.ext_fields.remove("e");
    let mut no_body = v2(&base);
    no_body.body = None;
    let cases: Vec<(&str, &str, RemotingCommand, &str)> = vec![
        (
            "send_v1_long_keys",
            "SEND_MESSAGE (10): long header keys; stored with the client's UNIQ_KEY, CLUSTER added",
            base.to_request(code::SEND_MESSAGE, body.clone()),
            "10.0.0.7:53000",
        ),
        (
            "send_v2_short_keys",
            "SEND_MESSAGE_V2 (310): keys a..m, the same record as code 10",
            v2(&base),
            "10.0.0.7:53000",
        ),
        (
            "send_broker_picks_queue",
            "queueId -1: the broker picks spread % writeQueueNums of the auto-created topic (min(4, 8) queues); no UNIQ_KEY: the broker's",
            v2(&with(&|h| {
                h.queue_id = -1;
                h.properties = None;
            })),
            "10.0.0.7:53000",
        ),
        (
            "send_ipv6_born_host",
            "an IPv6 producer: born host is 16+4 bytes and SYSFLAG 0x10",
            v2(&base),
            "[2001:db8::7]:53000",
        ),
        (
            "send_pop_ck_removed",
            "POP_CK is removed, other properties kept",
            v2(&with(&|h| {
                h.properties = Some("POP_CK\u{1}x\u{2}KEYS\u{1}k\u{2}".into())
            })),
            "10.0.0.7:53000",
        ),
        (
            "send_wait_false",
            "WAIT=false: the producer does not wait for slaves",
            v2(&with(&|h| {
                h.properties = Some("WAIT\u{1}false\u{2}".into())
            })),
            "10.0.0.7:53000",
        ),
        (
            "send_delay_level",
            "DELAY=3: stored in SCHEDULE_TOPIC_XXXX queue 2 with REAL_TOPIC/REAL_QID; the response names the queue asked for",
            v2(&with(&|h| h.properties = Some("DELAY\u{1}3\u{2}".into()))),
            "10.0.0.7:53000",
        ),
        (
            "send_transaction_half",
            "TRAN_MSG=true with a PREPARED sysflag: stored in RMQ_SYS_TRANS_HALF_TOPIC queue 0 as a plain message (takes a queue offset)",
            v2(&with(&|h| {
                h.sys_flag = 4;
                h.properties = Some("TRAN_MSG\u{1}true\u{2}".into());
            })),
            "10.0.0.7:53000",
        ),
        (
            "send_prepared_no_offset",
            "a PREPARED sysflag without TRAN_MSG: stored in its topic with queue offset 0",
            v2(&with(&|h| h.sys_flag = 4)),
            "10.0.0.7:53000",
        ),
        (
            "send_retry_to_dlq",
            "%RETRY%CG past 16 reconsumes: %DLQ%CG queue 0, DELAY=-1",
            v2(&with(&|h| {
                h.topic = "%RETRY%CG".into();
                h.queue_id = 0;
                h.reconsume_times = 17;
            })),
            "10.0.0.7:53000",
        ),
        (
            "send_long_retry_topic_magic_v2",
            "a %RETRY% topic over 127 bytes: MAGIC v2 and a 2-byte topic length",
            v2(&with(&|h| {
                h.topic = format!("%RETRY%{}", "g".repeat(130));
                h.queue_id = 0;
            })),
            "10.0.0.7:53000",
        ),
        (
            "send_refused_blank_topic",
            "INVALID_PARAMETER (29): blank topic",
            v2(&with(&|h| h.topic = " ".into())),
            "10.0.0.7:53000",
        ),
        (
            "send_refused_illegal_topic",
            "INVALID_PARAMETER: a character outside ^[%|a-zA-Z0-9_-]+$",
            v2(&with(&|h| h.topic = "Topic.Order".into())),
            "10.0.0.7:53000",
        ),
        (
            "send_refused_long_topic",
            "INVALID_PARAMETER: a topic over 127 bytes",
            v2(&with(&|h| h.topic = "t".repeat(128))),
            "10.0.0.7:53000",
        ),
        (
            "send_refused_system_topic",
            "NO_PERMISSION (16): a system topic",
            v2(&with(&|h| h.topic = "RMQ_SYS_TRANS_HALF_TOPIC".into())),
            "10.0.0.7:53000",
        ),
        (
            "send_refused_no_template",
            "TOPIC_NOT_EXIST (17): unknown topic, template without the inherit bit",
            v2(&with(&|h| h.default_topic = "TopicOther".into())),
            "10.0.0.7:53000",
        ),
        (
            "send_refused_queue_id",
            "INVALID_PARAMETER: queueId at or past the topic's queues",
            v2(&with(&|h| h.queue_id = 4)),
            "10.0.0.7:53000",
        ),
        (
            "send_refused_missing_field",
            "SYSTEM_ERROR (1): a required header field is absent",
            missing_queue,
            "10.0.0.7:53000",
        ),
        (
            "send_refused_no_body",
            "SYSTEM_ERROR: no body",
            no_body,
            "10.0.0.7:53000",
        ),
        (
            "send_refused_batch",
            "REQUEST_CODE_NOT_SUPPORTED (3): batch=true",
            v2(&with(&|h| h.batch = true)),
            "10.0.0.7:53000",
        ),
    ];
    cases
        .into_iter()
        .map(|(name, description, request, born)| {
            let mut case = json!({
                "name": name,
                "kind": "send",
                "description": description,
                "request": command_json(&request),
                "born_host": born,
                "store_host": "192.168.0.10:10911",
                "phys_offset": 4096,
                "queue_offset": 7,
                "store_timestamp": 1_700_000_000_500i64,
                "spread": 13,
                "uniq_key": "C0A8000A00010000000000000000BEEF",
            });
            case["expect"] = send_answer(&case).expect("the generator's own vectors replay");
            case
        })
        .collect()
}

/// A `HEART_BEAT` body as the lenient decoder reads it: the canonical re-encoding
/// (`HeartbeatData::to_json`), or `"rejected"`.
fn heartbeat_answer(body: &str) -> Value {
    match HeartbeatData::from_json(body.as_bytes()) {
        Ok(hb) => json!({ "parsed": String::from_utf8_lossy(&hb.to_json()), "error": null }),
        Err(_) => json!({ "parsed": null, "error": "rejected" }),
    }
}

/// The lenient `HeartbeatData` decoding of docs/SPEC.md 5.6, one rule per vector.
fn heartbeat_bodies() -> Vec<Value> {
    let cases: [(&str, &str, &str); 15] = [
        (
            "hb_numbers_as_strings",
            "clientID a number, heartbeatFingerprint, subVersion and codeSet items numeric strings",
            r#"{"clientID":7,"heartbeatFingerprint":"-12","consumerDataSet":[{"groupName":"G","subscriptionDataSet":[{"topic":"T","subVersion":"5","codeSet":["1",2]}]}]}"#,
        ),
        (
            "hb_bool_string_one",
            "withoutSub \"1\" is true",
            r#"{"clientID":"c","heartbeatFingerprint":1,"withoutSub":"1"}"#,
        ),
        (
            "hb_bool_number_zero",
            "withoutSub 0 is false",
            r#"{"clientID":"c","withoutSub":0}"#,
        ),
        (
            "hb_bool_empty_string",
            "withoutSub \"\" is false",
            r#"{"clientID":"c","withoutSub":""}"#,
        ),
        (
            "hb_is_without_sub_alias",
            "isWithoutSub is withoutSub",
            r#"{"clientID":"c","heartbeatFingerprint":1,"isWithoutSub":true}"#,
        ),
        (
            "hb_enum_ordinals",
            "consumeType 0, messageModel 0, consumeFromWhere 4: the Java declaration order",
            r#"{"clientID":"c","consumerDataSet":[{"groupName":"G","consumeType":0,"messageModel":0,"consumeFromWhere":4}]}"#,
        ),
        (
            "hb_nulls_are_defaults",
            "null fields, lists and enums take their defaults",
            r#"{"clientID":null,"producerDataSet":null,"consumerDataSet":[{"groupName":"G","consumeType":null,"messageModel":null,"subscriptionDataSet":null}]}"#,
        ),
        (
            "hb_expression_type_null_or_empty",
            "expressionType null and \"\" are TAG",
            r#"{"clientID":"c","consumerDataSet":[{"groupName":"G","subscriptionDataSet":[{"topic":"A","expressionType":null},{"topic":"B","expressionType":""}]}]}"#,
        ),
        (
            "hb_unknown_keys_ignored",
            "unknown keys at every level are ignored",
            r#"{"clientID":"c","extra":1,"producerDataSet":[{"groupName":"P","x":[]}]}"#,
        ),
        (
            "hb_topic_listed_twice",
            "a topic listed twice is kept as sent (the registry applies the entries in order, 2.5)",
            r#"{"clientID":"c","consumerDataSet":[{"groupName":"G","subscriptionDataSet":[{"topic":"T","subVersion":2},{"topic":"T","subVersion":1}]}]}"#,
        ),
        (
            "hb_rejected_not_an_object",
            "a list is not a HeartbeatData",
            r#"[1]"#,
        ),
        (
            "hb_rejected_entry_not_an_object",
            "a list is not a ProducerData either",
            r#"{"producerDataSet":[["P"]]}"#,
        ),
        (
            "hb_rejected_unknown_enum",
            "an unknown enum name",
            r#"{"consumerDataSet":[{"groupName":"G","consumeType":"PULL"}]}"#,
        ),
        (
            "hb_rejected_fingerprint",
            "a non-numeric fingerprint",
            r#"{"heartbeatFingerprint":"abc"}"#,
        ),
        (
            "hb_rejected_bool",
            "\"maybe\" is not a boolean",
            r#"{"withoutSub":"maybe"}"#,
        ),
    ];
    cases
        .into_iter()
        .map(|(name, description, body)| {
            json!({"name": name, "kind": "heartbeat_body", "description": description,
                "body": body, "expect": heartbeat_answer(body)})
        })
        .collect()
}

/// Replays one vector; `Err` names the first field that differs.
pub(super) fn replay(v: &Value) -> Result<(), String> {
    let expect = field(v, "expect")?;
    match str_field(v, "kind")? {
        "heartbeat_body" => same("decoding", expect, &heartbeat_answer(str_field(v, "body")?)),
        "admin_body" => same("answer", expect, &admin_answer(v)?),
        "send" => same("send", expect, &send_answer(v)?),
        "decode" => {
            let input = field(v, "input")?;
            let chunks = match (input.get("hex"), input.get("chunks")) {
                (Some(Value::String(h)), _) => vec![unhex(h)?],
                (_, Some(Value::Array(cs))) => cs
                    .iter()
                    .map(|c| unhex(c.as_str().ok_or("chunk is not a string")?))
                    .collect::<Result<_, _>>()?,
                _ => return Err("decode input has neither hex nor chunks".into()),
            };
            let actual = decode_chunks(&chunks);
            for key in ["frames", "error", "pending"] {
                same(key, field(expect, key)?, field(&actual, key)?)?;
            }
            Ok(())
        }
        "encode" => {
            let c = command_from_json(field(v, "command")?)?;
            same("encoding", expect, &encode(&c))
        }
        "response" => {
            let request = unhex(str_field(v, "request_hex")?)?;
            let r = field(v, "response")?;
            let code = field(r, "code")?.as_i64().ok_or("code")? as i32;
            let remark = field(r, "remark")?.as_str();
            let ext: BTreeMap<String, String> =
                serde_json::from_value(field(r, "ext_fields")?.clone())
                    .map_err(|e| e.to_string())?;
            let ext: Vec<(&str, &str)> =
                ext.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let actual = json!({ "hex": response_to(&request, code, remark, &ext), "error": null });
            same("response", expect, &actual)
        }
        "protocol_type_word" => {
            let len = field(v, "header_len")?.as_u64().ok_or("header_len")? as u32;
            let ty = match str_field(v, "serialize_type")? {
                "JSON" => SerializeType::Json,
                _ => SerializeType::RocketMq,
            };
            same(
                "word",
                expect,
                &json!({ "hex": hex(&mark_protocol_type(len, ty)) }),
            )
        }
        other => Err(format!("unknown vector kind {other:?}")),
    }
}
