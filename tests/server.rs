//! `net::server`, the `serve` and `slave` processes as library functions: what an embedder gets.
#![cfg(feature = "net")]

use rmq_lifecycle::core::ha::HaConfig;
use rmq_lifecycle::net::ha::{MasterConfig, SlaveConfig};
use rmq_lifecycle::net::remoting::RemotingConfig;
use rmq_lifecycle::net::server::{self, ReplicaConfig, ServeConfig, StartError};
use rmq_lifecycle::registry::RegistryConfig;
use rmq_lifecycle::store::StoreConfig;
use std::time::Duration;

const SEGMENT: u64 = 64 * 1024;

fn serve_config(dir: &std::path::Path, ha_segment: u64) -> ServeConfig {
    ServeConfig {
        remoting: RemotingConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            ..RemotingConfig::default()
        },
        registry: RegistryConfig::default(),
        notify: Some(Default::default()),
        master: MasterConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            ha: HaConfig {
                segment_size: ha_segment,
                ..HaConfig::default()
            },
            ..MasterConfig::default()
        },
        store: StoreConfig {
            segment_size: SEGMENT,
            ..StoreConfig::new(dir)
        },
        send: Default::default(),
        metrics: None,
        grace: Duration::from_secs(5),
    }
}

/// A slave of the master at `ha`, with its store in `dir`.
fn replica_config(ha: std::net::SocketAddr, dir: &std::path::Path) -> ReplicaConfig {
    ReplicaConfig {
        slave: SlaveConfig {
            ha: HaConfig {
                segment_size: SEGMENT,
                ..HaConfig::default()
            },
            ..SlaveConfig::new(ha)
        },
        store: StoreConfig {
            segment_size: SEGMENT,
            ..StoreConfig::new(dir)
        },
        grace: Duration::from_secs(5),
    }
}

/// A master and a slave in one process through the two functions; the slave catches up, and
/// both shut down clean when their futures complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_replicate_run_until_their_futures_complete() {
    let (mdir, sdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let broker = server::Broker::start(serve_config(mdir.path(), SEGMENT))
        .await
        .unwrap();
    for i in 0..10u8 {
        broker.master().append(&[i; 100]).unwrap();
    }
    let master_end = broker.log().max_offset();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let replica = server::replicate(
        replica_config(broker.ha_local_addr(), sdir.path()),
        async {
            let _ = stopped.await;
        },
        |_| {},
    );
    let replica = tokio::spawn(replica);
    tokio::time::timeout(
        Duration::from_secs(10),
        broker
            .master()
            .wait_for_replication(master_end, 1, Duration::from_secs(10)),
    )
    .await
    .expect("replication within 10 s")
    .expect("one slave acknowledged the log's end");
    stop.send(()).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), replica)
        .await
        .expect("the slave stops within 10 s")
        .unwrap()
        .unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.max_offset, master_end);
    let report = tokio::time::timeout(Duration::from_secs(10), broker.shutdown())
        .await
        .expect("the broker stops within 10 s");
    assert!(report.is_clean(), "{report:?}");
}

/// The segment size lives in two settings; a mismatch is refused before the store is touched.
#[tokio::test]
async fn a_segment_size_mismatch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let error = server::Broker::start(serve_config(dir.path(), SEGMENT * 2))
        .await
        .unwrap_err();
    assert!(matches!(error, StartError::Config(_)), "{error}");
    assert!(error.to_string().contains("segment size"), "{error}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

mod send {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use rmq_lifecycle::core::message::{self, AUTO_CREATE_TOPIC, SendHeader};
    use rmq_lifecycle::core::remoting::{FrameDecoder, RemotingCommand, code};
    use rmq_lifecycle::net::send::SendConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// One request, one response, each bounded by 10 s.
    async fn call(
        stream: &mut TcpStream,
        opaque: i32,
        mut cmd: RemotingCommand,
    ) -> RemotingCommand {
        cmd.opaque = opaque;
        stream.write_all(&cmd.to_bytes().unwrap()).await.unwrap();
        let (mut buf, mut decoder) = (BytesMut::new(), FrameDecoder::default());
        loop {
            if let Some(resp) = decoder.decode(&mut buf).unwrap() {
                assert_eq!(resp.opaque, opaque);
                return resp;
            }
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read_buf(&mut buf))
                .await
                .expect("a response within 10 s")
                .unwrap();
            assert!(n > 0, "the broker closed the connection");
        }
    }

    fn header(topic: &str, queue_id: i32, properties: &str) -> SendHeader {
        SendHeader {
            producer_group: "pg".into(),
            topic: topic.into(),
            default_topic: AUTO_CREATE_TOPIC.into(),
            default_topic_queue_nums: 4,
            queue_id,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            flag: 0,
            properties: Some(properties.into()),
            reconsume_times: 0,
            unit_mode: false,
            max_reconsume_times: None,
            batch: false,
        }
    }

    /// Sends through both codes are stored as upstream records, answered with upstream's header,
    /// and a slave holds them byte for byte. With `in_sync_replicas = 2` a send is stored
    /// whatever happens: with no slave it is answered SLAVE_NOT_AVAILABLE at once, with a slave
    /// that does not acknowledge FLUSH_SLAVE_TIMEOUT, and with WAIT=false SUCCESS at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sends_are_stored_replicated_and_answered_like_upstream() {
        let (mdir, sdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut config = serve_config(mdir.path(), SEGMENT);
        config.send = SendConfig {
            in_sync_replicas: 2,
            slave_timeout: Duration::from_millis(300),
            ..SendConfig::default()
        };
        let broker = server::Broker::start(config).await.unwrap();
        let mut stream = TcpStream::connect(broker.local_addr()).await.unwrap();
        let local = stream.peer_addr().unwrap();

        // No slave yet: stored, and answered at once that no slave can take it.
        let h = header("Orders", 1, "UNIQ_KEY\u{1}K0\u{2}");
        let resp = call(
            &mut stream,
            1,
            h.to_request(code::SEND_MESSAGE_V2, Bytes::from_static(b"m0")),
        )
        .await;
        assert_eq!(resp.code, code::SLAVE_NOT_AVAILABLE, "{resp:?}");
        assert_eq!(resp.ext("queueOffset"), Some("0"));
        let h = header("Orders", 1, "WAIT\u{1}false\u{2}");
        let resp = call(
            &mut stream,
            2,
            h.to_request(code::SEND_MESSAGE_V2, Bytes::from_static(b"m1")),
        )
        .await;
        assert_eq!(
            resp.code,
            code::SUCCESS,
            "WAIT=false does not wait: {resp:?}"
        );
        assert_eq!(
            resp.ext("transactionId").map(str::len),
            Some(32),
            "a broker-made UNIQ_KEY"
        );
        // A slave that reported once and went silent counts, but never acknowledges: the send
        // waits out the slave timeout.
        let mut silent = TcpStream::connect(broker.ha_local_addr()).await.unwrap();
        silent.write_all(&0u64.to_be_bytes()).await.unwrap();
        tokio::time::timeout(
            Duration::from_secs(10),
            broker
                .master()
                .wait_for_replication(0, 1, Duration::from_secs(10)),
        )
        .await
        .expect("the report within 10 s")
        .expect("the silent slave reported 0");
        let h = header("Orders", 1, "");
        let resp = call(
            &mut stream,
            3,
            h.to_request(code::SEND_MESSAGE, Bytes::from_static(b"m2")),
        )
        .await;
        assert_eq!(resp.code, code::FLUSH_SLAVE_TIMEOUT, "{resp:?}");
        assert_eq!(resp.ext("queueOffset"), Some("2"));
        drop(silent);

        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let replica = tokio::spawn(server::replicate(
            replica_config(broker.ha_local_addr(), sdir.path()),
            async {
                let _ = stopped.await;
            },
            |_| {},
        ));
        let end = broker.log().max_offset();
        tokio::time::timeout(
            Duration::from_secs(10),
            broker
                .master()
                .wait_for_replication(end, 1, Duration::from_secs(10)),
        )
        .await
        .expect("the slave caught up within 10 s")
        .expect("the slave holds the first sends");
        let mut starts = Vec::new();
        for i in 3..40i32 {
            let code = if i % 2 == 0 {
                code::SEND_MESSAGE
            } else {
                code::SEND_MESSAGE_V2
            };
            let h = header(
                "Orders",
                1,
                &format!("UNIQ_KEY\u{1}K{i}\u{2}KEYS\u{1}k\u{2}"),
            );
            let body = Bytes::from(vec![i as u8; 100 + i as usize]);
            let resp = call(&mut stream, 10 + i, h.to_request(code, body)).await;
            assert_eq!(resp.code, code::SUCCESS, "send {i}: {resp:?}");
            assert_eq!(resp.ext("queueId"), Some("1"));
            assert_eq!(resp.ext("queueOffset"), Some(i.to_string().as_str()));
            assert_eq!(resp.ext("transactionId"), Some(format!("K{i}").as_str()));
            assert_eq!(resp.ext("MSG_REGION"), Some("DefaultRegion"));
            let msg_id = resp.ext("msgId").unwrap();
            let offset = u64::from_str_radix(&msg_id[16..], 16).unwrap();
            assert_eq!(msg_id, message::msg_id(local, offset));
            starts.push(offset);
        }
        // Refusals write nothing.
        let end = broker.log().max_offset();
        let bad = [
            (header("bad topic", 0, ""), code::INVALID_PARAMETER),
            (header("Orders", 9, ""), code::INVALID_PARAMETER),
            (header("SCHEDULE_TOPIC_XXXX", 0, ""), code::NO_PERMISSION),
            (
                SendHeader {
                    default_topic: "None".into(),
                    ..header("Other", 0, "")
                },
                code::TOPIC_NOT_EXIST,
            ),
        ];
        for (i, (h, expected)) in bad.into_iter().enumerate() {
            let resp = call(
                &mut stream,
                100 + i as i32,
                h.to_request(code::SEND_MESSAGE_V2, Bytes::from_static(b"x")),
            )
            .await;
            assert_eq!(resp.code, expected, "{resp:?}");
            assert!(resp.remark.is_some());
        }
        let big = Bytes::from(vec![0u8; message::DEFAULT_MAX_MESSAGE_SIZE + 1]);
        let resp = call(
            &mut stream,
            200,
            header("Orders", 0, "").to_request(code::SEND_MESSAGE_V2, big),
        )
        .await;
        assert_eq!(resp.code, code::MESSAGE_ILLEGAL, "{resp:?}");
        assert_eq!(
            broker.log().max_offset(),
            end,
            "refused sends write nothing"
        );

        // Every record is an upstream message at the offset its msgId names.
        for (i, &at) in starts.iter().enumerate() {
            let mut rec = Vec::new();
            broker.log().read(at, 4096, &mut rec).unwrap();
            let len = u32::from_be_bytes(rec[..4].try_into().unwrap()) as usize;
            let view = message::view(&rec[..len]).expect("an upstream record");
            assert_eq!(
                (view.topic, view.queue_id, view.queue_offset),
                ("Orders", 1, i as i64 + 3)
            );
            assert_eq!(view.body.len(), 103 + i);
        }
        tokio::time::timeout(
            Duration::from_secs(10),
            broker
                .master()
                .wait_for_replication(end, 1, Duration::from_secs(10)),
        )
        .await
        .expect("replication within 10 s")
        .expect("the slave holds every message");
        stop.send(()).unwrap();
        let report = tokio::time::timeout(Duration::from_secs(10), replica)
            .await
            .expect("the slave stops within 10 s")
            .unwrap()
            .unwrap();
        assert_eq!(report.max_offset, end);
        drop(stream);
        let report = tokio::time::timeout(Duration::from_secs(10), broker.shutdown())
            .await
            .expect("the broker stops within 10 s");
        assert!(report.is_clean(), "{report:?}");
        let (master, slave) = (
            std::fs::read(mdir.path().join("00000000000000000000")).unwrap(),
            std::fs::read(sdir.path().join("00000000000000000000")).unwrap(),
        );
        assert_eq!(
            master[..end as usize],
            slave[..end as usize],
            "the slave's log is the master's"
        );
    }

    /// Pipelined frames in one write: the sends among them are one group commit, and every
    /// answer comes back in request order (a refused send and a heartbeat in between keep
    /// their places; a oneway send gets none).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pipelined_sends_are_answered_in_order() {
        use rmq_lifecycle::core::HeartbeatData;
        use rmq_lifecycle::core::remoting::FLAG_ONEWAY;
        let dir = tempfile::tempdir().unwrap();
        let broker = server::Broker::start(serve_config(dir.path(), SEGMENT))
            .await
            .unwrap();
        let mut stream = TcpStream::connect(broker.local_addr()).await.unwrap();
        let mut frames = BytesMut::new();
        let mut expected = Vec::new();
        for i in 0..12i32 {
            let mut cmd = match i {
                4 => header("bad topic", 0, "")
                    .to_request(code::SEND_MESSAGE_V2, Bytes::from_static(b"x")),
                7 => {
                    let mut hb = RemotingCommand::request(code::HEART_BEAT);
                    hb.body = Some(HeartbeatData::producers("c@1", ["PG"]).to_json().into());
                    hb
                }
                _ => header("Orders", 0, "")
                    .to_request(code::SEND_MESSAGE_V2, Bytes::from(vec![i as u8; 50])),
            };
            cmd.opaque = 100 + i;
            if i == 9 {
                cmd.flag |= FLAG_ONEWAY;
            } else {
                expected.push((
                    100 + i,
                    match i {
                        4 => code::INVALID_PARAMETER,
                        _ => code::SUCCESS,
                    },
                ));
            }
            cmd.encode(&mut frames).unwrap();
        }
        stream.write_all(&frames).await.unwrap();
        let (mut buf, mut decoder) = (BytesMut::new(), FrameDecoder::default());
        let mut got = Vec::new();
        let mut offsets = Vec::new();
        while got.len() < expected.len() {
            if let Some(resp) = decoder.decode(&mut buf).unwrap() {
                if let Some(q) = resp.ext("queueOffset") {
                    offsets.push(q.parse::<i64>().unwrap());
                }
                got.push((resp.opaque, resp.code));
                continue;
            }
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read_buf(&mut buf))
                .await
                .expect("responses within 10 s")
                .unwrap();
            assert!(n > 0, "the broker closed the connection");
        }
        assert_eq!(got, expected);
        // Ten sends stored in order, the oneway one too (offset 7, unanswered).
        assert_eq!(offsets, [0, 1, 2, 3, 4, 5, 6, 8, 9]);
        drop(stream);
        let report = tokio::time::timeout(Duration::from_secs(10), broker.shutdown())
            .await
            .expect("the broker stops within 10 s");
        assert!(report.is_clean(), "{report:?}");
    }
}
