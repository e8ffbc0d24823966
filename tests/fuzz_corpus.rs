//! Replays the fuzz inputs as ordinary tests on stable, with no libFuzzer and no nightly: every
//! file in `fuzz/seeds/<target>/` and `fuzz/regressions/<target>/` (both committed) and, when it
//! exists locally, `fuzz/corpus/<target>/` (what `cargo fuzz run` grew; gitignored), through the
//! same property the fuzz target runs.

use bytes::BytesMut;
use rmq_lifecycle::core::HeartbeatData;
use rmq_lifecycle::core::remoting::{FrameDecoder, RemotingCommand};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../fuzz/properties/heartbeat_json.rs"]
mod heartbeat_property;

#[path = "../fuzz/properties/client_ops.rs"]
mod client_ops;

#[path = "../fuzz/properties/ha_ops.rs"]
mod ha_ops;

/// The committed directories that must exist, and the local one that may.
const DIRS: [(&str, bool); 3] = [("seeds", true), ("regressions", true), ("corpus", false)];

/// Runs `check` on every input of `target`; returns how many ran. Panics naming each failing file.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files: Vec<PathBuf> = Vec::new();
    for (dir, required) in DIRS {
        let dir = root.join(dir).join(target);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("cannot read {}: {e}", dir.display()),
        };
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                .path();
            // Notes beside the inputs (README.md, .gitkeep) are not inputs.
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_file() && !name.starts_with('.') && !name.ends_with(".md") {
                files.push(path);
            }
        }
    }
    files.sort();

    // Keep the default hook's message (it names the assertion) but say which file caused it.
    let mut failed = Vec::new();
    for path in &files {
        let data =
            std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        if panic::catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            eprintln!("fuzz input {} ({} bytes) fails", path.display(), data.len());
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} `{target}` inputs fail the property (reproduce from the crate root with \
         `cargo fuzz run -s none {target} FILE`): {failed:#?}",
        failed.len(),
        files.len()
    );
    files.len()
}

#[test]
fn remoting_frame_corpus() {
    let n = replay("remoting_frame", rmq_lifecycle::core::remoting::fuzz_check);
    assert!(
        n > 0,
        "no input for remoting_frame in fuzz/seeds or fuzz/regressions"
    );
}

#[test]
fn send_message_corpus() {
    let n = replay("send_message", rmq_lifecycle::core::message::fuzz_check);
    assert!(
        n > 0,
        "no input for send_message in fuzz/seeds or fuzz/regressions"
    );
}

/// The send seeds reach where their names say: the plain ones are stored, the others refused,
/// so the corpus exercises the encoder and every refusal rather than only the header decoder.
#[test]
fn send_seeds_reach_the_encoder_and_the_refusals() {
    use rmq_lifecycle::core::message::{SendHeader, SendRules, Topics, admit};
    let refused = [
        "bad_topic",
        "system_topic",
        "queue_id_too_big",
        "missing_field",
        "no_body",
        "batch",
    ];
    for (name, data) in seeds("send_message") {
        let mut buf = BytesMut::from(&data[..]);
        let request = FrameDecoder::default()
            .decode(&mut buf)
            .unwrap_or_else(|e| panic!("seed {name}: {e}"))
            .unwrap_or_else(|| panic!("seed {name} is not a whole frame"));
        let admitted = SendHeader::decode(&request).and_then(|h| {
            admit(
                &h,
                request.body.as_ref(),
                &mut Topics::default(),
                "10.0.0.7:1".parse().unwrap(),
                &SendRules::default(),
                0,
                String::new,
            )
        });
        assert_eq!(
            admitted.is_err(),
            refused.contains(&name.as_str()),
            "seed {name}: {admitted:?}"
        );
    }
}

#[test]
fn ha_frame_corpus() {
    let n = replay("ha_frame", rmq_lifecycle::core::ha::fuzz_check);
    assert!(
        n > 0,
        "no input for ha_frame in fuzz/seeds or fuzz/regressions"
    );
}

#[test]
fn ha_autoswitch_frame_corpus() {
    let n = replay(
        "ha_autoswitch_frame",
        rmq_lifecycle::core::autoswitch::fuzz_check,
    );
    assert!(n >= 10, "the ha_autoswitch_frame seeds are missing");
}

#[test]
fn heartbeat_json_corpus() {
    let n = replay("heartbeat_json", heartbeat_property::check);
    assert!(
        n > 0,
        "no input for heartbeat_json in fuzz/seeds or fuzz/regressions"
    );
}

/// The committed seeds of `target`, by file name.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("a directory entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("a seed file"))
        })
        .collect();
    out.sort();
    out
}

/// A seed named `bad_*` is an error; any other decodes cleanly, so a change in the decoder that
/// turns a real frame into an error (or lets a bad one through) shows up here, not as a silently
/// weaker corpus.
#[test]
fn remoting_seeds_are_what_their_names_say() {
    for (name, data) in seeds("remoting_frame") {
        let stream = data.get(1..).unwrap_or_default();
        let mut buf = BytesMut::from(stream);
        let mut decoder = FrameDecoder::default();
        let mut commands: Vec<RemotingCommand> = Vec::new();
        let result = loop {
            match decoder.decode(&mut buf) {
                Ok(Some(cmd)) => commands.push(cmd),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if name.starts_with("bad_") {
            assert!(result.is_err(), "seed {name} decodes but should not");
        } else {
            assert_eq!(result, Ok(()), "seed {name} should decode");
            let partial_only = ["empty_after_split", "truncated_prefix"];
            assert!(
                !commands.is_empty() || partial_only.contains(&name.as_str()),
                "seed {name} holds no complete frame"
            );
        }
    }
}

/// As above, for the heartbeat bodies.
#[test]
fn heartbeat_seeds_are_what_their_names_say() {
    for (name, data) in seeds("heartbeat_json") {
        let parsed = HeartbeatData::from_json(&data);
        if name.starts_with("bad_") {
            assert!(parsed.is_err(), "seed {name} parses but should not");
        } else if let Err(e) = parsed {
            panic!("seed {name} should parse: {e}");
        }
    }
}

#[test]
fn client_ops_corpus() {
    let n = replay("client_ops", client_ops::check);
    assert!(
        n > 0,
        "no input for client_ops in fuzz/seeds or fuzz/regressions"
    );
}

#[test]
fn ha_ops_corpus() {
    let n = replay("ha_ops", ha_ops::check);
    assert!(
        n > 0,
        "no input for ha_ops in fuzz/seeds or fuzz/regressions"
    );
}

// ------------------------------------------------------------------------------------------------
// The op-sequence seeds: named scenarios, encoded. `RMQ_WRITE_SEEDS=1 cargo test --test
// fuzz_corpus op_seeds` rewrites the files; otherwise the committed files must equal the encoding.

mod op_seeds {
    use super::{client_ops, ha_ops};
    use client_ops::Step;
    use rmq_lifecycle::core::HeartbeatData;
    use rmq_lifecycle::core::ha_model::{HaConn, HaOp};
    use rmq_lifecycle::core::heartbeat::{ConsumerData, MessageModel, SubscriptionData};
    use std::path::Path;

    fn producers(client: &str, groups: &[&str]) -> HeartbeatData {
        HeartbeatData::producers(client, groups.iter().copied())
    }

    fn hb(who: usize, data: HeartbeatData) -> Step {
        Step::Heartbeat { who, data }
    }

    fn consumer(group: &str, broadcast: bool, topics: &[(&str, i64)]) -> ConsumerData {
        ConsumerData {
            group_name: group.into(),
            message_model: if broadcast {
                MessageModel::Broadcasting
            } else {
                MessageModel::Clustering
            },
            subscription_data_set: topics
                .iter()
                .map(|(topic, v)| SubscriptionData {
                    topic: (*topic).into(),
                    sub_version: *v,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// The client-registry scenarios, by seed name.
    pub(super) fn client_scenarios() -> Vec<(&'static str, Vec<Step>)> {
        // The 4.x incident in miniature: a new group per period, each abandoned.
        let mut stale_groups = vec![Step::Register];
        for g in client_ops::PRODUCER_GROUPS {
            stale_groups.extend([hb(0, producers("cA", &[g])), Step::Advance(60), Step::Scan]);
        }
        stale_groups.extend([Step::Advance(79), Step::Advance(79), Step::Scan]);

        let mut consumers = HeartbeatData {
            client_id: "cB".into(),
            heartbeat_fingerprint: 7,
            ..HeartbeatData::default()
        };
        consumers.consumer_data_set = vec![
            consumer("cg0", false, &[("t0", 1), ("t1", 0)]),
            consumer("cg1", true, &[("t1", 2)]),
        ];
        let mut resubscribed = consumers.clone();
        resubscribed.heartbeat_fingerprint = 9;
        resubscribed.consumer_data_set[0] = consumer("cg0", false, &[("t0", 2)]);
        let mut too_many = producers("cA", &["pg0", "pg1", "pg2"]);
        too_many.consumer_data_set = vec![consumer("cg0", false, &[]), consumer("cg1", false, &[])];

        vec![
            ("stale_groups", stale_groups),
            (
                "close_then_late_heartbeat",
                vec![
                    Step::Register,
                    Step::Register,
                    hb(0, producers("cA", &["pg0", "pg1"])),
                    hb(1, producers("cB", &["pg1"])),
                    Step::Close { who: 0 },
                    hb(0, producers("cA", &["pg2"])),
                    Step::Close { who: 0 },
                    Step::Close { who: 1 },
                ],
            ),
            (
                "consumers_resubscribe_and_expire",
                vec![
                    Step::Register,
                    Step::Register,
                    hb(0, consumers.clone()),
                    hb(1, consumers),
                    Step::Advance(50),
                    hb(0, resubscribed),
                    Step::Unregister {
                        who: 1,
                        producer: None,
                        consumer: Some(1),
                    },
                    Step::Advance(60),
                    Step::Scan,
                    Step::Advance(79),
                    Step::Scan,
                ],
            ),
            (
                "caps",
                vec![
                    Step::Register,
                    Step::Register,
                    Step::Register,
                    Step::Register,
                    Step::Register,
                    hb(0, too_many),
                    hb(0, producers("cA", &["pg0", "pg0", "pg1"])),
                    Step::Close { who: 3 },
                    Step::Register,
                ],
            ),
            (
                "client_reconnects",
                vec![
                    Step::Register,
                    hb(0, producers("cA", &["pg0"])),
                    Step::Register,
                    hb(1, producers("cA", &["pg0"])),
                    Step::Close { who: 0 },
                    Step::Unregister {
                        who: 1,
                        producer: Some(0),
                        consumer: None,
                    },
                    hb(1, producers("", &["pg1"])),
                ],
            ),
        ]
    }

    fn c(n: u64) -> HaConn {
        HaConn(n)
    }

    fn report(conn: u64, offset: i64) -> HaOp {
        HaOp::Report {
            conn: c(conn),
            bytes: offset.to_be_bytes().to_vec(),
        }
    }

    fn start(conn: u64) -> [HaOp; 3] {
        [
            HaOp::Accept,
            HaOp::Register { conn: c(conn) },
            HaOp::Spawn { conn: c(conn) },
        ]
    }

    /// The HA scenarios, by seed name.
    pub(super) fn ha_scenarios() -> Vec<(&'static str, Vec<HaOp>)> {
        let cat = |parts: &[&[HaOp]]| parts.concat();
        vec![
            (
                "replicate",
                cat(&[
                    &start(1),
                    &[
                        HaOp::Append { len: 100 },
                        report(1, 0),
                        HaOp::Flush { conn: c(1) },
                        report(1, 60),
                        report(1, 100),
                        HaOp::Append { len: 50 },
                        HaOp::Flush { conn: c(1) },
                        report(1, 150),
                        HaOp::PeerClose { conn: c(1) },
                    ],
                ]),
            ),
            (
                "probes_8875",
                cat(&[
                    &[HaOp::Append { len: 20 }],
                    &start(1),
                    &[HaOp::Report {
                        conn: c(1),
                        bytes: b"2024-10-30 16:42:30\n".to_vec(),
                    }],
                    &start(2),
                    &[HaOp::PeerClose { conn: c(2) }],
                    &start(3),
                    &[HaOp::Report {
                        conn: c(3),
                        bytes: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
                    }],
                ]),
            ),
            (
                "bad_reports",
                cat(&[
                    &[HaOp::Append { len: 40 }],
                    &start(1),
                    &start(2),
                    &start(3),
                    &[
                        report(1, -1),
                        report(2, 30),
                        report(2, 29),
                        report(3, 10),
                        report(3, 11),
                    ],
                    &start(4),
                    &[
                        HaOp::Report {
                            conn: c(4),
                            bytes: 40i64.to_be_bytes()[..3].to_vec(),
                        },
                        HaOp::Report {
                            conn: c(4),
                            bytes: 40i64.to_be_bytes()[3..].to_vec(),
                        },
                        report(4, 41),
                    ],
                ]),
            ),
            (
                "every_exit",
                cat(&[
                    &start(1),
                    &start(2),
                    &start(3),
                    &[
                        HaOp::Append { len: 8 },
                        report(1, 8),
                        HaOp::IdleTimeout { conn: c(1) },
                        HaOp::TaskFail { conn: c(2) },
                        HaOp::Close { conn: c(3) },
                        HaOp::Accept,
                        HaOp::Close { conn: c(4) },
                        HaOp::Accept,
                        HaOp::Register { conn: c(5) },
                        HaOp::Close { conn: c(5) },
                        HaOp::PeerClose { conn: c(5) },
                    ],
                ]),
            ),
            (
                "cap_and_shutdown",
                cat(&[
                    &start(1),
                    &[
                        HaOp::Accept,
                        HaOp::Accept,
                        HaOp::Accept,
                        HaOp::Accept,
                        HaOp::Register { conn: c(2) },
                        HaOp::Register { conn: c(3) },
                        HaOp::Register { conn: c(4) },
                        HaOp::Spawn { conn: c(2) },
                        HaOp::Append { len: 5 },
                        report(2, 5),
                        HaOp::Shutdown,
                        HaOp::Register { conn: c(5) },
                        HaOp::Shutdown,
                        report(2, 5),
                    ],
                ]),
            ),
        ]
    }

    /// Compares (or, with `RMQ_WRITE_SEEDS=1`, writes) `fuzz/seeds/<target>/<name>`.
    fn sync_seeds(target: &str, seeds: Vec<(&str, Vec<u8>)>) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds")
            .join(target);
        let write = std::env::var_os("RMQ_WRITE_SEEDS").is_some();
        for (name, bytes) in seeds {
            let path = dir.join(name);
            if write {
                std::fs::create_dir_all(&dir).expect("create the seed directory");
                std::fs::write(&path, &bytes).expect("write a seed");
            } else {
                let committed = std::fs::read(&path).unwrap_or_else(|e| {
                    panic!("{}: {e} (RMQ_WRITE_SEEDS=1 writes it)", path.display())
                });
                assert_eq!(
                    committed,
                    bytes,
                    "{} is stale (RMQ_WRITE_SEEDS=1 rewrites it)",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn client_seeds_decode_to_their_scenarios() {
        let mut seeds = Vec::new();
        for (name, steps) in client_scenarios() {
            let bytes = client_ops::encode(&steps);
            assert_eq!(client_ops::decode(&bytes), steps, "{name}");
            client_ops::run(&steps, Default::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
            seeds.push((name, bytes));
        }
        sync_seeds("client_ops", seeds);
    }

    #[test]
    fn ha_seeds_decode_to_their_scenarios() {
        let mut seeds = Vec::new();
        for (name, ops) in ha_scenarios() {
            let bytes = ha_ops::encode(&ops);
            assert_eq!(ha_ops::decode(&bytes), ops, "{name}");
            ha_ops::run(&ops, Default::default(), Default::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            seeds.push((name, bytes));
        }
        sync_seeds("ha_ops", seeds);
    }
}

// ------------------------------------------------------------------------------------------------
// The properties catch broken implementations: each planted fault fails on a committed seed.

/// The failure `check` reports for the seed `name` of `target`.
fn failure_on(target: &str, name: &str, check: impl Fn(&[u8]) -> Result<(), String>) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target)
        .join(name);
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match check(&data) {
        Err(e) => e,
        Ok(()) => panic!("the {target} property passes {name} despite the fault"),
    }
}

#[test]
fn client_ops_catches_empty_groups_kept() {
    let faults = rmq_lifecycle::registry::Faults {
        keep_empty_groups: true,
        ..Default::default()
    };
    let found = failure_on("client_ops", "close_then_late_heartbeat", |d| {
        client_ops::check_with(d, faults)
    });
    assert!(found.contains("NoEmptyGroup"), "{found}");
}

#[test]
fn client_ops_catches_registration_after_close() {
    let faults = rmq_lifecycle::registry::Faults {
        register_after_close: true,
        ..Default::default()
    };
    let found = failure_on("client_ops", "close_then_late_heartbeat", |d| {
        client_ops::check_with(d, faults)
    });
    assert!(found.contains("NoResurrection"), "{found}");
}

#[test]
fn ha_ops_catches_unvalidated_acks() {
    let faults = ha_ops::DriverFaults {
        unchecked_acks: true,
        ..Default::default()
    };
    let found = failure_on("ha_ops", "probes_8875", |d| {
        ha_ops::check_with(d, Default::default(), faults)
    });
    assert!(found.contains("AckBounded"), "{found}");
}

#[test]
fn ha_ops_catches_a_connection_left_behind() {
    let faults = ha_ops::DriverFaults {
        forget_on_peer_close: true,
        ..Default::default()
    };
    let found = failure_on("ha_ops", "probes_8875", |d| {
        ha_ops::check_with(d, Default::default(), faults)
    });
    assert!(found.contains("NoDeadEntry"), "{found}");
}
