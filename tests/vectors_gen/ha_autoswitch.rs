//! Wire vectors of the auto-switch HA protocol (`wire/ha_autoswitch.json`, docs/SPEC.md section
//! 9): what the master's link makes of the slave's frames, what the slave's link makes of the
//! master's stream (truncation, epochs, suspension), and the stream a master writes.

use super::*;
use rmq_lifecycle::core::Millis;
use rmq_lifecycle::core::autoswitch::{
    SlaveHello, TransferEpoch, encode_master_handshake, encode_master_transfer_header,
    encode_slave_handshake, encode_slave_report,
};
use rmq_lifecycle::core::epoch::EpochEntry;
use rmq_lifecycle::core::ha::{
    HaClose, HaConfig, HaState, MasterEvent, MasterLink, SlaveEvent, SlaveLink,
};

pub(super) const FILE: &str = "wire/ha_autoswitch.json";

fn state(s: HaState) -> Value {
    serde_json::to_value(s).expect("state serializes")
}

fn close_kind(why: &HaClose) -> &'static str {
    match why {
        HaClose::Protocol(_) => "protocol",
        HaClose::Idle => "idle",
        HaClose::Shutdown => "shutdown",
    }
}

fn epochs_json(entries: &[EpochEntry]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| json!({ "epoch": e.epoch, "start": big(e.start) }))
            .collect(),
    )
}

fn epochs_of(v: &Value) -> Result<Vec<EpochEntry>, String> {
    v.as_array()
        .ok_or("epochs is not an array")?
        .iter()
        .map(|e| {
            Ok(EpochEntry {
                epoch: field(e, "epoch")?.as_u64().ok_or("epoch")? as u32,
                start: parse_u64(field(e, "start")?)?,
            })
        })
        .collect()
}

fn config() -> HaConfig {
    HaConfig {
        heartbeat_ms: 5,
        housekeeping_ms: 20,
        batch_max: 32,
        segment_size: 100,
        body_max: 64,
    }
}

/// The master's link (log `[log_min, local_max)`, `epochs`) fed the slave's bytes.
fn master_reads(log_min: u64, local_max: u64, epochs: &[EpochEntry], chunks: &[Vec<u8>]) -> Value {
    let mut link = MasterLink::auto_switch(config(), log_min, local_max, epochs.to_vec());
    link.handle_start(Millis(0));
    let mut events = Vec::new();
    let mut handshakes = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let now = Millis(i as u64 + 1);
        link.handle_bytes(now, chunk);
        while let Some(e) = link.poll_event() {
            events.push(match e {
                MasterEvent::Acked { offset, first } => {
                    json!({ "event": "acked", "offset": big(offset), "first": first })
                }
                MasterEvent::Closed(why) => {
                    json!({ "event": "closed", "kind": close_kind(&why), "message": why.to_string() })
                }
            });
        }
        // What the master writes after this read (its handshake, once the slave's arrived).
        while let Some(t) = link.poll_transmit(now) {
            if t.header().is_none() {
                handshakes.push(Value::String(hex(&link.handshake_frame())));
            }
        }
    }
    json!({
        "events": events,
        "handshakes_hex": handshakes,
        "state": state(link.state()),
        "ack": link.ack().map(big),
        "slave_broker_id": link.slave_hello().map(|h| big(h.broker_id)),
    })
}

/// The slave's link (log `[min, max)` with `epochs`) fed the master's bytes: what it sends, the
/// truncation and epochs it asks for, the bytes it appends (joined per epoch), how it ends.
fn slave_session(min: u64, max: u64, epochs: &[EpochEntry], chunks: &[Vec<u8>]) -> Value {
    let mut link = SlaveLink::auto_switch(
        config(),
        SlaveHello {
            broker_id: 2,
            ..SlaveHello::default()
        },
    );
    link.handle_local_epochs(min, epochs.to_vec());
    link.handle_connected(Millis(0), max);
    let mut sent = Vec::new();
    if let Some(h) = link.poll_handshake() {
        sent.push(Value::String(hex(&h)));
    }
    let mut events = Vec::new();
    let mut appends: Vec<Value> = Vec::new();
    let mut end = max;
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let now = Millis(i as u64 + 1);
        link.handle_bytes(now, chunk, &mut out);
        while let Some(e) = link.poll_event() {
            events.push(match e {
                SlaveEvent::Rebase(o) => json!({ "event": "rebase", "offset": big(o) }),
                SlaveEvent::Truncate(p) => {
                    end = p;
                    json!({ "event": "truncate", "offset": big(p) })
                }
                SlaveEvent::Closed(why) => {
                    json!({ "event": "closed", "kind": close_kind(&why), "message": why.to_string() })
                }
            });
        }
        for a in &out {
            let bytes = hex(&chunk[a.range.clone()]);
            match (a.epoch, appends.last_mut()) {
                (None, Some(last)) => {
                    let joined = format!("{}{bytes}", last["hex"].as_str().unwrap_or(""));
                    last["hex"] = Value::String(joined);
                }
                (epoch, _) => appends.push(json!({
                    "offset": big(a.offset),
                    "new_epoch": epoch.map(|e| json!({ "epoch": e.epoch, "start": big(e.start) })),
                    "hex": bytes,
                })),
            }
            end = a.offset + a.range.len() as u64;
        }
        if !out.is_empty() {
            link.handle_appended(end);
        }
        while let Some(r) = link.poll_transmit(now) {
            sent.push(Value::String(hex(&link.encode_report(r))));
        }
    }
    json!({
        "sent_hex": sent,
        "events": events,
        "appends": appends,
        "state": state(link.state()),
        "end": big(end),
    })
}

/// What a master (log bytes from 0, `epochs`) writes to a slave that sends `hello` and then the
/// report of `report`: its handshake, every transfer, and the heartbeat after `heartbeat_ms`.
fn master_stream(log: &[u8], epochs: &[EpochEntry], report: u64) -> Value {
    let mut link = MasterLink::auto_switch(config(), 0, log.len() as u64, epochs.to_vec());
    link.handle_start(Millis(0));
    link.handle_bytes(Millis(1), &encode_slave_handshake(SlaveHello::default()));
    let mut frames = Vec::new();
    let emit = |link: &mut MasterLink, now: Millis, frames: &mut Vec<Value>| {
        while let Some(t) = link.poll_transmit(now) {
            let mut bytes = match t.header() {
                Some(h) => h.to_vec(),
                None => link.handshake_frame(),
            };
            bytes
                .extend_from_slice(&log[t.offset as usize..(t.offset + u64::from(t.len)) as usize]);
            frames.push(Value::String(hex(&bytes)));
        }
    };
    emit(&mut link, Millis(1), &mut frames);
    link.handle_bytes(Millis(2), &encode_slave_report(report));
    while link.poll_event().is_some() {}
    emit(&mut link, Millis(2), &mut frames);
    emit(&mut link, Millis(2 + config().heartbeat_ms), &mut frames);
    json!({ "frames_hex": frames })
}

fn transfer(offset: u64, body: &[u8], epoch: u32, start: u64, confirm: u64) -> Vec<u8> {
    let te = TransferEpoch {
        epoch: EpochEntry { epoch, start },
        confirm,
    };
    let mut v = encode_master_transfer_header(offset, body.len() as u32, te).to_vec();
    v.extend_from_slice(body);
    v
}

fn e(epoch: u32, start: u64) -> EpochEntry {
    EpochEntry { epoch, start }
}

pub(super) fn generate() -> String {
    let mut items = Vec::new();
    let hello = encode_slave_handshake(SlaveHello {
        broker_id: 2,
        ..SlaveHello::default()
    })
    .to_vec();
    let report = |o: u64| encode_slave_report(o).to_vec();
    let master_cases: Vec<(&str, &str, Vec<Vec<u8>>)> = vec![
        (
            "master_handshake_then_report",
            "the slave's handshake is answered with the master's epochs; its report moves the link to TRANSFER and is the first ack",
            vec![hello.clone(), report(300)],
        ),
        (
            "master_handshake_every_byte",
            "the same handshake and report fed a byte at a time",
            [hello.clone(), report(300)]
                .concat()
                .into_iter()
                .map(|b| vec![b])
                .collect(),
        ),
        (
            "master_report_before_handshake",
            "a report before the master's handshake went out is a protocol error, never an ack",
            vec![report(0)],
        ),
        (
            "master_second_handshake",
            "a second slave handshake closes the link",
            vec![hello.clone(), hello.clone()],
        ),
        (
            "master_report_beyond_max",
            "after the handshake, a report beyond the master's max offset closes (AckBounded)",
            vec![hello.clone(), report(1001)],
        ),
        (
            "master_probe_text",
            "the incident's health-check text: an unknown state, the link closes with no ack",
            vec![b"2024-10-30 16:42:30".to_vec()],
        ),
        (
            "master_classic_report",
            "a classic slave's 8-byte report is an unknown state to an auto-switch master",
            vec![0x10_029cu64.to_be_bytes().to_vec()],
        ),
    ];
    let epochs = [e(1, 0), e(2, 560)];
    for (name, description, chunks) in master_cases {
        items.push(json!({
            "name": name,
            "kind": "master_reads",
            "description": description,
            "master": { "log_min": big(0), "local_max": big(1000), "epochs": epochs_json(&epochs) },
            "chunks": chunks.iter().map(|c| hex(c)).collect::<Vec<_>>(),
            "expect": master_reads(0, 1000, &epochs, &chunks),
        }));
    }

    let handshake = |max: u64, entries: &[EpochEntry]| encode_master_handshake(max, entries);
    type SlaveCase = (
        &'static str,
        &'static str,
        u64,
        Vec<EpochEntry>,
        Vec<Vec<u8>>,
    );
    let slave_cases: Vec<SlaveCase> = vec![
        (
            "slave_empty_log",
            "an empty slave keeps nothing to cut: it reports 0 and records epoch 1 before its first byte",
            0,
            vec![],
            vec![handshake(3, &[e(1, 0)]), transfer(0, b"abc", 1, 0, 3)],
        ),
        (
            "slave_truncates_divergent_tail",
            "the master lost [560, 1120) and went on in epoch 2: the slave cuts to 560, reports it, and records epoch 2 at 560",
            1120,
            vec![e(1, 0)],
            vec![
                handshake(1680, &[e(1, 0), e(2, 560)]),
                transfer(560, b"xy", 2, 560, 1680),
            ],
        ),
        (
            "failover_old_master_rejoins",
            "an old master (epoch 2 to 1500) rejoins the new one, elected at 1200 in epoch 3: it cuts to 1200 and takes epoch 3",
            1500,
            vec![e(1, 0), e(2, 560)],
            vec![
                handshake(1900, &[e(1, 0), e(2, 560), e(3, 1200)]),
                transfer(1200, b"new", 3, 1200, 1900),
            ],
        ),
        (
            "slave_behind_keeps_everything",
            "a slave behind in the master's current epoch keeps its log and reports its end",
            300,
            vec![e(1, 0), e(2, 100)],
            vec![
                handshake(900, &[e(1, 0), e(2, 100)]),
                transfer(300, b"z", 2, 100, 900),
            ],
        ),
        (
            "slave_refuses_stale_master",
            "a master whose last epoch is older than the slave's is stale: SUSPEND, nothing cut",
            150,
            vec![e(1, 0), e(3, 100)],
            vec![handshake(300, &[e(1, 0), e(2, 100)])],
        ),
        (
            "slave_no_consistent_point",
            "no epoch in common and a non-empty log: SUSPEND, nothing cut",
            150,
            vec![e(2, 0)],
            vec![handshake(300, &[e(3, 0)])],
        ),
        (
            "slave_transfer_before_handshake",
            "a transfer before the master's handshake closes the link",
            0,
            vec![],
            vec![transfer(0, b"a", 1, 0, 1)],
        ),
        (
            "slave_epoch_goes_back",
            "a transfer in an epoch older than the slave's last closes the link",
            100,
            vec![e(1, 0), e(2, 50)],
            vec![
                handshake(200, &[e(1, 0), e(2, 50)]),
                transfer(100, b"a", 1, 0, 200),
            ],
        ),
    ];
    for (name, description, max, local, chunks) in slave_cases {
        items.push(json!({
            "name": name,
            "kind": "slave_session",
            "description": description,
            "slave": { "log_min": big(0), "local_max": big(max), "epochs": epochs_json(&local) },
            "chunks": chunks.iter().map(|c| hex(c)).collect::<Vec<_>>(),
            "expect": slave_session(0, max, &local, &chunks),
        }));
    }

    let log: Vec<u8> = (0..250).map(|i| (i * 7) as u8).collect();
    let stream_epochs = [e(1, 0), e(2, 120)];
    for (name, description, report) in [
        (
            "master_stream_epoch_bounded",
            "a 250-byte log in epochs 1 [0, 120) and 2 [120, 250), 100-byte segments, 32-byte batches: after its handshake the master's transfers stop at every segment end and at 120, each carrying its epoch",
            0u64,
        ),
        (
            "master_stream_from_middle",
            "the same master answering a report of 110 (inside epoch 1)",
            110,
        ),
    ] {
        items.push(json!({
            "name": name,
            "kind": "master_stream",
            "description": description,
            "log_hex": hex(&log),
            "epochs": epochs_json(&stream_epochs),
            "report": big(report),
            "expect": master_stream(&log, &stream_epochs, report),
        }));
    }

    render(
        json!({
            "format": "rmq-lifecycle/wire-ha-autoswitch/1",
            "config": { "heartbeat_ms": 5, "housekeeping_ms": 20, "batch_max": 32, "segment_size": "100", "body_max": 64 },
        }),
        "vectors",
        &items,
    )
}

pub(super) fn replay(v: &Value) -> Result<(), String> {
    let expect = field(v, "expect")?;
    let actual = match str_field(v, "kind")? {
        "master_reads" => {
            let m = field(v, "master")?;
            master_reads(
                parse_u64(field(m, "log_min")?)?,
                parse_u64(field(m, "local_max")?)?,
                &epochs_of(field(m, "epochs")?)?,
                &chunks_of(v)?,
            )
        }
        "slave_session" => {
            let s = field(v, "slave")?;
            slave_session(
                parse_u64(field(s, "log_min")?)?,
                parse_u64(field(s, "local_max")?)?,
                &epochs_of(field(s, "epochs")?)?,
                &chunks_of(v)?,
            )
        }
        "master_stream" => master_stream(
            &unhex(str_field(v, "log_hex")?)?,
            &epochs_of(field(v, "epochs")?)?,
            parse_u64(field(v, "report")?)?,
        ),
        other => return Err(format!("unknown vector kind {other:?}")),
    };
    same("expect", expect, &actual)
}
