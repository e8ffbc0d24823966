#!/usr/bin/env python3
"""Regenerates the committed seed corpora in fuzz/seeds/<target>/ (run from anywhere).

The seeds are committed, so this is only needed to change them. Each seed of `remoting_frame` is
one byte (the split point the property feeds the decoder at) followed by a byte stream of one
or more frames; each seed of `heartbeat_json` is a HEART_BEAT body. Frames follow the wire format
of docs/SPEC.md section 5.1; bodies follow section 5.6.
"""

import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent / "seeds"

JSON_TYPE, ROCKETMQ_TYPE = 0, 1
HEART_BEAT, UNREGISTER_CLIENT, CHECK_CLIENT_CONFIG = 34, 35, 46
V5_3_3, V4_9_4 = 493, 413  # MQVersion ordinals (the wire example in section 3.2 says 403)
JAVA, GO, RUST = 0, 9, 12


def fastjson(obj) -> bytes:
    """Compact, sorted keys: what fastjson writes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def frame(header: bytes, body: bytes = b"", ty: int = JSON_TYPE) -> bytes:
    return struct.pack(">iI", 4 + len(header) + len(body), (ty << 24) | len(header)) + header + body


def json_header(code, opaque, flag=0, version=V5_3_3, language="JAVA", remark=None, ext=None) -> bytes:
    h = {
        "code": code,
        "flag": flag,
        "language": language,
        "opaque": opaque,
        "serializeTypeCurrentRPC": "JSON",
        "version": version,
    }
    if remark is not None:
        h["remark"] = remark
    if ext:
        h["extFields"] = ext
    return fastjson(h)


def binary_header(code, opaque, flag=0, version=V5_3_3, language=JAVA, remark=None, ext=None) -> bytes:
    out = struct.pack(">hBhii", code, language, version, opaque, flag)
    r = (remark or "").encode()
    out += struct.pack(">i", len(r)) + r
    e = b""
    for k, v in (ext or {}).items():
        kb, vb = k.encode(), v.encode()
        e += struct.pack(">H", len(kb)) + kb + struct.pack(">i", len(vb)) + vb
    return out + struct.pack(">i", len(e)) + e


CLIENT_ID = "10.0.0.1@12345#8812345678901234"

FULL_HEARTBEAT = {
    "clientID": CLIENT_ID,
    "consumerDataSet": [
        {
            "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET",
            "consumeType": "CONSUME_PASSIVELY",
            "groupName": "cg1",
            "messageModel": "CLUSTERING",
            "subscriptionDataSet": [
                {
                    "classFilterMode": False,
                    "codeSet": [],
                    "expressionType": "TAG",
                    "subString": "*",
                    "subVersion": 1700000000000,
                    "tagsSet": [],
                    "topic": "T1",
                },
                {
                    "classFilterMode": False,
                    "codeSet": [2598919, 2603186],
                    "expressionType": "TAG",
                    "subString": "TagA || TagB",
                    "subVersion": 1700000000123,
                    "tagsSet": ["TagA", "TagB"],
                    "topic": "%RETRY%cg1",
                },
            ],
            "unitMode": False,
        }
    ],
    "heartbeatFingerprint": 0,
    "producerDataSet": [{"groupName": "pg1"}, {"groupName": "CLIENT_INNER_PRODUCER"}],
    "withoutSub": False,
}

PRODUCER_ONLY = {
    "clientID": "192.168.0.7@4242#1711111111111",
    "consumerDataSet": [],
    "heartbeatFingerprint": 0,
    "producerDataSet": [{"groupName": "orders-producer"}, {"groupName": "CLIENT_INNER_PRODUCER"}],
    "withoutSub": False,
}

V2_WITHOUT_SUB = {
    "clientID": CLIENT_ID,
    "consumerDataSet": [
        {
            "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET",
            "consumeType": "CONSUME_POP",
            "groupName": "cg-pop",
            "messageModel": "CLUSTERING",
            "subscriptionDataSet": [],
            "unitMode": False,
        }
    ],
    "heartbeatFingerprint": -1723412345,
    "producerDataSet": [{"groupName": "CLIENT_INNER_PRODUCER"}],
    "withoutSub": True,
}

BROADCAST_SQL = {
    "clientID": "10.0.0.2@777#DEFAULT",
    "consumerDataSet": [
        {
            "consumeFromWhere": "CONSUME_FROM_TIMESTAMP",
            "consumeType": "CONSUME_ACTIVELY",
            "groupName": "cg-bcast",
            "messageModel": "BROADCASTING",
            "subscriptionDataSet": [
                {
                    "classFilterMode": False,
                    "codeSet": [],
                    "expressionType": "SQL92",
                    "subString": "a > 5 AND b = 'x'",
                    "subVersion": 1700000001000,
                    "tagsSet": [],
                    "topic": "T-\u00e9v\u00e9nements",
                }
            ],
            "unitMode": True,
        }
    ],
    "heartbeatFingerprint": 9007199254740993,
    "producerDataSet": [],
    "withoutSub": False,
}

REMOTING = {
    # Real frames, as a Java 5.3.3 client or this broker writes them.
    "json_heartbeat_request": b"\x25"
    + frame(json_header(HEART_BEAT, 12), fastjson(FULL_HEARTBEAT)),
    "json_heartbeat_producer_only": b"\x00"
    + frame(json_header(HEART_BEAT, 3, version=V4_9_4), fastjson(PRODUCER_ONLY)),
    "json_heartbeat_v2_response": b"\x08"
    + frame(
        json_header(
            0,
            12,
            flag=1,
            ext={"IS_SUB_CHANGE": "false", "IS_SUPPORT_HEART_BEAT_V2": "true"},
        )
    ),
    "json_wire_example_response": b"\xff"
    + frame(
        b'{"code":0,"flag":1,"language":"JAVA","opaque":0,"serializeTypeCurrentRPC":"JSON","version":403}'
    ),
    "json_unregister_client": b"\x04"
    + frame(
        json_header(
            UNREGISTER_CLIENT,
            99,
            language="GO",
            ext={"clientID": CLIENT_ID, "consumerGroup": "cg1", "producerGroup": "pg1"},
        )
    ),
    "json_check_client_config": b"\x30"
    + frame(
        json_header(CHECK_CLIENT_CONFIG, 7),
        fastjson(
            {
                "clientId": CLIENT_ID,
                "group": "cg1",
                "subscriptionData": FULL_HEARTBEAT["consumerDataSet"][0]["subscriptionDataSet"][1],
            }
        ),
    ),
    "json_not_supported_response": b"\x10"
    + frame(json_header(3, 41, flag=1, remark=" request type 9999 not supported")),
    "json_oneway_request": b"\x01" + frame(json_header(HEART_BEAT, 5, flag=2), b"{}"),
    "binary_heartbeat_request_rust": b"\x09"
    + frame(
        binary_header(HEART_BEAT, 1, language=RUST),
        fastjson(PRODUCER_ONLY),
        ty=ROCKETMQ_TYPE,
    ),
    "binary_remark_and_ext": b"\x22"
    + frame(
        binary_header(
            2, -5, flag=3, remark="[REJECTREQUEST]system busy, start flow control for a while", ext={"key": "value"}
        ),
        ty=ROCKETMQ_TYPE,
    ),
    "binary_serializable_test_21": b"\x00" + frame(binary_header(0, 0, version=0), ty=ROCKETMQ_TYPE),
    "binary_unknown_language_200": b"\x02"
    + frame(binary_header(HEART_BEAT, 8, language=200), b"{}", ty=ROCKETMQ_TYPE),
    "two_frames_json_then_binary": b"\x40"
    + frame(json_header(HEART_BEAT, 1), fastjson(V2_WITHOUT_SUB))
    + frame(binary_header(UNREGISTER_CLIENT, 2, language=GO, ext={"clientID": CLIENT_ID}), ty=ROCKETMQ_TYPE),
    "three_frames_then_partial": b"\x03"
    + frame(json_header(0, 1, flag=1))
    + frame(json_header(0, 2, flag=1, remark=""))
    + frame(binary_header(0, 3, flag=1), ty=ROCKETMQ_TYPE)
    + frame(json_header(HEART_BEAT, 4), b"{}")[:20],
    # Liberal, as the Java broker is.
    "json_liberal_header": b"\x06"
    + frame(
        b'{"code":"34","flag":false,"language":"NODE_JS","opaque":"9","version":1.0,"remark":null,'
        b'"extFields":{"a":1,"b":true,"c":null,"d":"x","e":[1,{"f":2.5}]},"unknown":[1]}'
    ),
    "json_language_ordinal_and_escapes": b"\x0b"
    + frame(
        b'{"code":34,"language":12,"opaque":-1,"remark":{"why":"\\u00e9\\ud83d\\ude00"},'
        b'"extFields":{"":"","k\\"q":"v\\n"}}',
        b"\x00\xff",
    ),
    "json_empty_header": b"\x00" + frame(b"{}"),
    "json_code_beyond_i16": b"\x00" + frame(json_header(40000, 1, version=-40000)),
    # Invalid: each must be a clear error, never a panic.
    "bad_frame_too_large": b"\x00" + b"\x7f\xff\xff\xff",
    "bad_frame_just_over_cap": b"\x02" + struct.pack(">I", 16 * 1024 * 1024 - 3) + b"\x00\x00\x00\x00",
    "bad_frame_too_short": b"\x00" + b"\x00\x00\x00\x02\x00\x00",
    "bad_header_length": b"\x00" + b"\x00\x00\x00\x04\x00\x00\x00\x09",
    "bad_serialize_type": b"\x00" + b"\x00\x00\x00\x04\x07\x00\x00\x00",
    "bad_binary_short": b"\x00" + b"\x00\x00\x00\x06\x01\x00\x00\x02\x00\x00",
    "bad_binary_negative_remark": b"\x00"
    + frame(struct.pack(">hBhii", 34, 0, 1, 1, 0) + struct.pack(">i", -1) + struct.pack(">i", 0), ty=ROCKETMQ_TYPE),
    "bad_binary_remark_not_utf8": b"\x00"
    + frame(struct.pack(">hBhii", 34, 0, 1, 1, 0) + struct.pack(">i", 2) + b"\xc3\x28" + struct.pack(">i", 0), ty=ROCKETMQ_TYPE),
    "bad_binary_ext_overrun": b"\x00"
    + frame(
        struct.pack(">hBhii", 34, 0, 1, 1, 0)
        + struct.pack(">i", 0)
        + struct.pack(">i", 9)
        + struct.pack(">H", 3)
        + b"key"
        + struct.pack(">i", 100),
        ty=ROCKETMQ_TYPE,
    ),
    "bad_json_header": b"\x00" + frame(b'{"code": oops}'),
    "bad_json_int_out_of_range": b"\x00" + frame(b'{"code":2147483648}'),
    "bad_http_request": b"\x05" + b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "truncated_prefix": b"\x01" + b"\x00\x00",
    "empty_after_split": b"\x00",
}

HEARTBEAT = {
    "fact_sheet_full": fastjson(FULL_HEARTBEAT),
    "fact_sheet_pretty": json.dumps(FULL_HEARTBEAT, indent=2).encode(),
    "producer_only": fastjson(PRODUCER_ONLY),
    "v2_without_sub_pop": fastjson(V2_WITHOUT_SUB),
    "broadcast_sql92_unit": fastjson(BROADCAST_SQL),
    "empty_object": b"{}",
    # Liberal, as fastjson is: numbers as strings, ordinals, nulls, unknown fields, the Java name.
    "lenient_mix": b'{"clientID": 7, "producerDataSet": null, "heartbeatFingerprint": "-12",'
    b' "isWithoutSub": "true", "unknownField": {"x": 1},'
    b' "consumerDataSet": [{"groupName": "g", "consumeType": 0, "messageModel": null,'
    b' "unitMode": 1, "consumeFromWhere": 5, "subscriptionDataSet": [{"topic": "t", "subVersion": "5",'
    b' "codeSet": ["3", -4, 2147483647], "tagsSet": null, "classFilterMode": "0", "expressionType": null}]}]}',
    "lenient_floats_and_bools": b'{"clientID": 1.5e3, "heartbeatFingerprint": 12.0, "withoutSub": 0,'
    b' "producerDataSet": [{"groupName": true}, {"groupName": null}, {}],'
    b' "consumerDataSet": [{"subscriptionDataSet": [{"subVersion": " 42 ", "tagsSet": [1, "a", 2.5]}]}]}',
    "fingerprint_i64_edges": b'{"heartbeatFingerprint": -9223372036854775808,'
    b' "consumerDataSet": [{"subscriptionDataSet": [{"subVersion": 9223372036854775807}]}]}',
    # 2^63 as a float is accepted (saturated to i64::MAX) while the integer form is refused.
    "bad_fingerprint_float_2p63": b'{"heartbeatFingerprint": 9223372036854775808.0, "withoutSub": "True"}',
    # Invalid: each must be an error, never a panic.
    "bad_unknown_enum": b'{"consumerDataSet":[{"consumeType":"SIDEWAYS"}]}',
    "bad_ordinal": b'{"consumerDataSet":[{"messageModel":9}]}',
    "bad_negative_ordinal": b'{"consumerDataSet":[{"consumeFromWhere":-1}]}',
    "bad_not_boolean": b'{"withoutSub":"maybe"}',
    "bad_not_integer": b'{"heartbeatFingerprint":"abc"}',
    "bad_fingerprint_overflow": b'{"heartbeatFingerprint":9223372036854775808}',
    "bad_fraction": b'{"heartbeatFingerprint":1.5}',
    "bad_code_out_of_int": b'{"consumerDataSet":[{"subscriptionDataSet":[{"codeSet":[2147483648]}]}]}',
    "bad_duplicate_alias": b'{"withoutSub":true,"isWithoutSub":false}',
    "bad_top_level_array": b"[1,2]",
    "bad_truncated": b'{"clientID":"a"',
    "bad_lone_surrogate": b'{"clientID":"\\ud800"}',
    "bad_not_utf8": b'{"clientID":"\xff\xfe"}',
    "bad_empty": b"",
}


# ha_autoswitch_frame: one split byte, then the master's auto-switch stream (docs/SPEC.md 9.4).
# The same bytes are also fed to the master-side decoder of the slave's frames.
def master_handshake(max_offset, entries):
    body = b"".join(struct.pack(">iq", e, s) for e, s in entries)
    last = entries[-1][0] if entries else 0
    return struct.pack(">iiqi", 1, len(body), max_offset, last) + body


def master_transfer(offset, body, epoch, start, confirm):
    return struct.pack(">iiqiqq", 2, len(body), offset, epoch, start, confirm) + body


def slave_handshake(from_last, learner, broker):
    return struct.pack(">ihhq", 1, from_last, learner, broker)


def slave_report(offset):
    return struct.pack(">iq", 2, offset)


AUTOSWITCH = {
    "handshake_then_transfer": bytes([25])
    + master_handshake(1680, [(1, 0), (2, 560)])
    + master_transfer(560, b"abc", 2, 560, 1680),
    "empty_handshake": bytes([3]) + master_handshake(0, []),
    "heartbeat_then_new_epoch": bytes([40])
    + master_transfer(100, b"", 1, 0, 100)
    + master_transfer(100, b"xyz", 2, 100, 103),
    "slave_handshake_and_reports": bytes([7])
    + slave_handshake(1, 0, 2)
    + slave_report(0)
    + slave_report(560),
    "bad_unknown_state": bytes([2]) + struct.pack(">ii", 3, 0),
    "bad_body_not_12n": bytes([1]) + struct.pack(">iiqi", 1, 5, 0, 0) + b"12345",
    "bad_epochs_out_of_order": bytes([0]) + master_handshake(10, [(2, 0), (1, 5)]),
    "bad_negative_epoch": bytes([0]) + master_transfer(0, b"a", -1, 0, 0),
    "bad_oversized_body": bytes([36]) + struct.pack(">iiqiqq", 2, 1 << 20, 0, 1, 0, 0),
    "probe_text": bytes([5]) + b"2024-10-30 16:42:30",
}


def write(target: str, seeds: dict) -> None:
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    for old in d.iterdir():
        old.unlink()
    for name, data in seeds.items():
        (d / name).write_bytes(data)
    print(f"{target}: {len(seeds)} seeds in {d}")


SEND_BASE = {"a": "PID_ORDER", "b": "TopicOrder", "c": "TBW102", "d": "4", "e": "2", "f": "0",
             "g": "1700000000000", "h": "0", "i": "KEYS\x01order-1\x02UNIQ_KEY\x01AB\x02",
             "j": "0", "k": "false", "m": "false"}
SEND_V1_KEYS = dict(zip("abcdefghijklm", ["producerGroup", "topic", "defaultTopic",
                        "defaultTopicQueueNums", "queueId", "sysFlag", "bornTimestamp", "flag",
                        "properties", "reconsumeTimes", "unitMode", "maxReconsumeTimes", "batch"]))


def send(ext, body=b"order 1 paid", code=310, binary=False):
    if code == 10:
        ext = {SEND_V1_KEYS[k]: v for k, v in ext.items()}
    if binary:
        return frame(binary_header(code, 1, ext=ext), body, ROCKETMQ_TYPE)
    return frame(json_header(code, 1, ext=ext), body)


# Each seed of `send_message` is one frame (the property answers it under both codes).
SEND = {
    "v2": send(SEND_BASE),
    "v1": send(SEND_BASE, code=10),
    "v2_binary_header": send(SEND_BASE, binary=True),
    "broker_picks_queue": send({**SEND_BASE, "e": "-1", "i": ""}),
    "delay": send({**SEND_BASE, "i": "DELAY\x013\x02"}),
    "transaction_half": send({**SEND_BASE, "f": "4", "i": "TRAN_MSG\x01true\x02"}),
    "retry_to_dlq": send({**SEND_BASE, "b": "%RETRY%CG", "e": "0", "j": "17"}),
    "long_retry_topic": send({**SEND_BASE, "b": "%RETRY%" + "g" * 130, "e": "0"}),
    "bad_topic": send({**SEND_BASE, "b": "Topic.Order"}),
    "system_topic": send({**SEND_BASE, "b": "SCHEDULE_TOPIC_XXXX"}),
    "queue_id_too_big": send({**SEND_BASE, "e": "4"}),
    "missing_field": send({k: v for k, v in SEND_BASE.items() if k != "e"}),
    "no_body": send(SEND_BASE, body=b""),
    "batch": send({**SEND_BASE, "m": "true"}),
}


if __name__ == "__main__":
    write("send_message", SEND)
    write("remoting_frame", REMOTING)
    write("heartbeat_json", HEARTBEAT)
    write("ha_autoswitch_frame", AUTOSWITCH)
