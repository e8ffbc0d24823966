//! Wire vectors of the classic HA protocol (`wire/ha.json`, docs/SPEC.md section 5.9): the
//! master's and the slave's links over reports and transfers.

use super::*;
use rmq_lifecycle::core::Millis;
use rmq_lifecycle::core::ha::{
    HaClose, HaConfig, HaState, MasterEvent, MasterLink, ReportDecoder, TransferChunk,
    TransferDecoder, encode_report, encode_transfer_header,
};

pub(super) const FILE: &str = "wire/ha.json";

/// (name, description, log_min, local_max, chunks).
type ReportCase = (&'static str, &'static str, u64, u64, Vec<Vec<u8>>);

fn state_name(s: HaState) -> Value {
    serde_json::to_value(s).expect("state serializes")
}

fn master_event(e: &MasterEvent) -> Value {
    match e {
        MasterEvent::Acked { offset, first } => {
            json!({ "event": "acked", "offset": big(offset), "first": first })
        }
        MasterEvent::Closed(why) => {
            let kind = match why {
                HaClose::Protocol(_) => "protocol",
                HaClose::Idle => "idle",
                HaClose::Shutdown => "shutdown",
            };
            json!({ "event": "closed", "kind": kind, "message": why.to_string() })
        }
    }
}

/// The master side of one connection fed the slave's bytes: the raw reports decoded, then what
/// the link made of them.
fn master_side(log_min: u64, local_max: u64, chunks: &[Vec<u8>]) -> Value {
    let mut link = MasterLink::new(HaConfig::default(), log_min, local_max);
    link.handle_start(Millis(0));
    let mut decoder = ReportDecoder::default();
    let mut reports = Vec::new();
    let mut events = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        decoder.push(chunk, |r| reports.push(big(r)));
        link.handle_bytes(Millis(i as u64 + 1), chunk);
        while let Some(e) = link.poll_event() {
            events.push(master_event(&e));
        }
    }
    json!({
        "reports": reports,
        "pending": decoder.pending(),
        "events": events,
        "state": state_name(link.state()),
        "ack": link.ack().map(big),
    })
}

/// The slave's decoder fed the master's bytes; body pieces of one transfer are joined, so the
/// result does not depend on how a port splits its reads.
fn slave_side(body_max: u32, chunks: &[Vec<u8>]) -> Value {
    let mut d = TransferDecoder::new(body_max);
    let mut items: Vec<Value> = Vec::new();
    let mut error = Value::Null;
    'feed: for chunk in chunks {
        let mut input = &chunk[..];
        loop {
            match d.next(&mut input) {
                Ok(None) => break,
                Ok(Some(TransferChunk::Header { offset, size })) => items.push(json!({
                    "header": { "offset": big(offset), "size": size, "body_hex": "" }
                })),
                Ok(Some(TransferChunk::Body { bytes, .. })) => {
                    let last = items
                        .last_mut()
                        .and_then(|i| i.get_mut("header"))
                        .and_then(|h| h.get_mut("body_hex"))
                        .expect("a body follows its header");
                    let joined = format!("{}{}", last.as_str().unwrap_or(""), hex(bytes));
                    *last = Value::String(joined);
                }
                Err(message) => {
                    error = json!({ "kind": "transfer", "message": message });
                    break 'feed;
                }
            }
        }
    }
    json!({ "transfers": items, "error": error, "in_body": d.in_body() })
}

/// What the master writes after the slave's first report: every transfer the link asks for,
/// header and body, then the heartbeat once the link was quiet for `heartbeat_ms`.
fn master_stream(config: HaConfig, log: &[u8], report: u64) -> Value {
    let mut link = MasterLink::new(config, 0, log.len() as u64);
    link.handle_start(Millis(0));
    link.handle_bytes(Millis(1), &encode_report(report));
    while link.poll_event().is_some() {}
    let mut wire = Vec::new();
    while let Some(t) = link.poll_transmit(Millis(1)) {
        wire.extend_from_slice(&encode_transfer_header(t.offset, t.len));
        wire.extend_from_slice(&log[t.offset as usize..(t.offset + u64::from(t.len)) as usize]);
    }
    let quiet = Millis(1 + config.heartbeat_ms);
    let heartbeat = link
        .poll_transmit(quiet)
        .map(|t| hex(&encode_transfer_header(t.offset, t.len)));
    json!({ "hex": hex(&wire), "heartbeat_hex": heartbeat })
}

fn log_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7) as u8).collect()
}

fn small_config() -> HaConfig {
    HaConfig {
        heartbeat_ms: 5,
        housekeeping_ms: 20,
        batch_max: 32,
        segment_size: 100,
        body_max: 64,
    }
}

fn config_json(c: &HaConfig) -> Value {
    json!({
        "heartbeat_ms": c.heartbeat_ms,
        "batch_max": c.batch_max,
        "segment_size": big(c.segment_size),
    })
}

pub(super) fn generate() -> String {
    let r = |n: i64| n.to_be_bytes().to_vec();
    let probe = b"2024-10-30 16:42:30".to_vec();
    let mut items = Vec::new();
    let reports: Vec<ReportCase> = vec![
        (
            "report_first_zero",
            "a slave with an empty log reports 0: valid, first",
            0,
            1000,
            vec![r(0)],
        ),
        (
            "report_equal_to_max",
            "a report equal to the master's max offset is valid",
            0,
            1000,
            vec![r(1000)],
        ),
        (
            "report_split_3_5",
            "one report split across two reads (3 + 5 bytes)",
            0,
            1000,
            vec![r(700)[..3].to_vec(), r(700)[3..].to_vec()],
        ),
        (
            "report_every_byte",
            "one report fed a byte at a time",
            0,
            1000,
            r(5).into_iter().map(|b| vec![b]).collect(),
        ),
        (
            "reports_back_to_back",
            "a first report, then an equal one (no progress is fine), in one read",
            0,
            1000,
            vec![[r(300), r(300)].concat()],
        ),
        (
            "report_half_frame",
            "4 bytes of a report and then nothing: no report, 4 bytes pending, still connected",
            0,
            1000,
            vec![r(5)[..4].to_vec()],
        ),
        (
            "report_beyond_max",
            "AckBounded: a report beyond the master's max offset closes the connection",
            0,
            1000,
            vec![r(1001)],
        ),
        (
            "report_negative",
            "AckBounded: a negative report closes the connection",
            0,
            1000,
            vec![r(-1)],
        ),
        (
            "report_i64_min",
            "AckBounded: i64::MIN",
            0,
            1000,
            vec![r(i64::MIN)],
        ),
        (
            "report_i64_max",
            "AckBounded: i64::MAX, far beyond the log",
            0,
            1000,
            vec![r(i64::MAX)],
        ),
        (
            "report_timestamp_probe",
            "the incident's health-check text: its first 8 bytes read as an offset beyond the log; nothing is acked",
            0,
            1_049_244,
            vec![probe.clone()],
        ),
        (
            "report_went_back",
            "a report below the previous one closes the connection",
            0,
            1000,
            vec![[r(400), r(399)].concat()],
        ),
        (
            "report_beyond_sent",
            "after the first report at 400, a report of 401 claims bytes never sent",
            0,
            1000,
            vec![[r(400), r(401)].concat()],
        ),
        (
            "report_below_log_min",
            "a non-zero first report below the master's first offset (log_min 1000)",
            1000,
            5000,
            vec![r(500)],
        ),
        (
            "report_zero_with_log_min",
            "a first report of 0 with log_min 1000: valid (the slave starts from the master's first offset)",
            1000,
            5000,
            vec![r(0)],
        ),
        (
            "report_after_close_ignored",
            "bytes after a protocol error are ignored",
            0,
            1000,
            vec![r(-5), r(10)],
        ),
    ];
    for (name, description, log_min, local_max, chunks) in reports {
        items.push(json!({
            "name": name,
            "kind": "master_reads_reports",
            "description": description,
            "master": { "log_min": big(log_min), "local_max": big(local_max) },
            "chunks": chunks.iter().map(|c| hex(c)).collect::<Vec<_>>(),
            "expect": master_side(log_min, local_max, &chunks),
        }));
    }

    let t = |offset: u64, body: &[u8]| {
        let mut v = encode_transfer_header(offset, body.len() as u32).to_vec();
        v.extend_from_slice(body);
        v
    };
    let raw_header = |offset: i64, size: i32| {
        let mut v = offset.to_be_bytes().to_vec();
        v.extend_from_slice(&size.to_be_bytes());
        v
    };
    let with_body = t(4096, b"commitlog bytes");
    let transfers: Vec<(&str, &str, u32, Vec<Vec<u8>>)> = vec![
        (
            "transfer_heartbeat",
            "an empty transfer is the master's heartbeat",
            4 << 20,
            vec![t(1_049_244, b"")],
        ),
        (
            "transfer_with_body",
            "a header announcing 15 bytes, then the bytes",
            4 << 20,
            vec![with_body.clone()],
        ),
        (
            "transfer_every_byte",
            "the same fed a byte at a time; the body arrives joined",
            4 << 20,
            with_body.iter().map(|b| vec![*b]).collect(),
        ),
        (
            "transfer_header_split",
            "a read ends inside the 12-byte header",
            4 << 20,
            vec![with_body[..7].to_vec(), with_body[7..].to_vec()],
        ),
        (
            "transfer_partial_body",
            "the body is cut short: the decoder is still inside it",
            4 << 20,
            vec![with_body[..20].to_vec()],
        ),
        (
            "transfers_back_to_back",
            "a transfer, a heartbeat and another transfer in one read",
            4 << 20,
            vec![[t(0, b"ab"), t(2, b""), t(2, b"cde")].concat()],
        ),
        (
            "transfer_negative_offset",
            "a negative offset is refused",
            4 << 20,
            vec![raw_header(-1, 0)],
        ),
        (
            "transfer_negative_size",
            "a negative size is refused",
            4 << 20,
            vec![raw_header(0, -1)],
        ),
        (
            "transfer_body_over_max",
            "a body larger than the slave's 4 MiB read buffer is refused before it is read",
            4 << 20,
            vec![raw_header(0, (4 << 20) + 1)],
        ),
        (
            "transfer_body_at_max_waits",
            "a body of exactly the maximum is accepted; the decoder waits for it",
            4 << 20,
            vec![raw_header(0, 4 << 20)],
        ),
        (
            "transfer_timestamp_text",
            "the probe text read as a transfer header: offset and size decode, the size exceeds the maximum",
            4 << 20,
            vec![probe.clone()],
        ),
    ];
    for (name, description, body_max, chunks) in transfers {
        items.push(json!({
            "name": name,
            "kind": "slave_reads_transfers",
            "description": description,
            "body_max": body_max,
            "chunks": chunks.iter().map(|c| hex(c)).collect::<Vec<_>>(),
            "expect": slave_side(body_max, &chunks),
        }));
    }

    for offset in [0u64, 1_049_244, i64::MAX as u64] {
        items.push(json!({
            "name": format!("encode_report_{offset}"),
            "kind": "encode_report",
            "description": "a slave's report: the offset as an 8-byte big-endian integer",
            "offset": big(offset),
            "expect": { "hex": hex(&encode_report(offset)) },
        }));
    }
    for (offset, size) in [(0u64, 0u32), (1_049_244, 0), (4096, 32 * 1024)] {
        items.push(json!({
            "name": format!("encode_transfer_header_{offset}_{size}"),
            "kind": "encode_transfer_header",
            "description": "a transfer header: offset (8 bytes) then body size (4 bytes), big-endian",
            "offset": big(offset),
            "size": size,
            "expect": { "hex": hex(&encode_transfer_header(offset, size)) },
        }));
    }

    let log = log_bytes(250);
    for (name, description, report) in [
        (
            "master_stream_from_zero",
            "a master with a 250-byte log answers a report of 0 (an empty slave) as upstream's classic master does: from the start of its last 100-byte segment (200), in batches of at most 32 bytes, then a heartbeat at the log end",
            0u64,
        ),
        (
            "master_stream_from_middle",
            "the same master answering a first report of 150: batches that never cross the segment end at 200",
            150,
        ),
    ] {
        let config = small_config();
        items.push(json!({
            "name": name,
            "kind": "master_writes_transfers",
            "description": description,
            "config": config_json(&config),
            "log_hex": hex(&log),
            "report": big(report),
            "expect": master_stream(config, &log, report),
        }));
    }

    render(
        json!({ "format": "rmq-lifecycle/wire-ha/1" }),
        "vectors",
        &items,
    )
}

pub(super) fn replay(v: &Value) -> Result<(), String> {
    let expect = field(v, "expect")?;
    let actual = match str_field(v, "kind")? {
        "master_reads_reports" => {
            let m = field(v, "master")?;
            master_side(
                parse_u64(field(m, "log_min")?)?,
                parse_u64(field(m, "local_max")?)?,
                &chunks_of(v)?,
            )
        }
        "slave_reads_transfers" => {
            let max = field(v, "body_max")?.as_u64().ok_or("body_max")? as u32;
            slave_side(max, &chunks_of(v)?)
        }
        "encode_report" => {
            json!({ "hex": hex(&encode_report(parse_u64(field(v, "offset")?)?)) })
        }
        "encode_transfer_header" => {
            let size = field(v, "size")?.as_u64().ok_or("size")? as u32;
            json!({ "hex": hex(&encode_transfer_header(parse_u64(field(v, "offset")?)?, size)) })
        }
        "master_writes_transfers" => {
            let c = field(v, "config")?;
            let config = HaConfig {
                heartbeat_ms: field(c, "heartbeat_ms")?.as_u64().ok_or("heartbeat_ms")?,
                batch_max: field(c, "batch_max")?.as_u64().ok_or("batch_max")? as u32,
                segment_size: parse_u64(field(c, "segment_size")?)?,
                ..HaConfig::default()
            };
            let log = unhex(str_field(v, "log_hex")?)?;
            master_stream(config, &log, parse_u64(field(v, "report")?)?)
        }
        other => return Err(format!("unknown vector kind {other:?}")),
    };
    same("expect", expect, &actual)
}
