//! The client-management listener over loopback: requests, a 100-connection load that must drain
//! to zero, and every kind of bad input, each of which must leave no channel, membership or task
//! behind while the server keeps serving others.
#![cfg(feature = "net")]

use bytes::{BufMut, BytesMut};
use rmq_lifecycle::core::heartbeat::{ConsumerData, SubscriptionData};
use rmq_lifecycle::core::remoting::{
    FLAG_ONEWAY, FrameDecoder, LanguageCode, RemotingCommand, SerializeType, code,
};
use rmq_lifecycle::core::{HeartbeatData, Millis};
use rmq_lifecycle::lifecycle::TaskGauge;
use rmq_lifecycle::net::Clock;
use rmq_lifecycle::net::notify::{ConsumerNotifier, NotifyConfig};
use rmq_lifecycle::net::remoting::{RemotingConfig, RemotingServer};
use rmq_lifecycle::registry::{ClientRegistry, RegistryConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Server {
    server: RemotingServer,
    registry: Arc<ClientRegistry>,
    tasks: TaskGauge,
    baseline_tasks: usize,
}

async fn start(config: RemotingConfig) -> Server {
    start_with(config, None).await
}

/// A server whose registry's listener is `notifier`, which pushes NOTIFY_CONSUMER_IDS_CHANGED.
async fn start_with(config: RemotingConfig, notifier: Option<ConsumerNotifier>) -> Server {
    let registry = Arc::new(match &notifier {
        Some(n) => ClientRegistry::with_listener(RegistryConfig::default(), n.clone()),
        None => ClientRegistry::new(RegistryConfig::default()),
    });
    let tasks = TaskGauge::new();
    let config = RemotingConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    let server = RemotingServer::bind_notifying(
        config,
        registry.clone(),
        notifier,
        Clock::start(),
        tasks.clone(),
    )
    .await
    .unwrap();
    let baseline_tasks = tasks.alive();
    Server {
        server,
        registry,
        tasks,
        baseline_tasks,
    }
}

impl Server {
    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Waits until only the server's own tasks remain and the registry is empty.
    async fn quiescent(&self) {
        for _ in 0..400 {
            if self.tasks.alive() == self.baseline_tasks && self.registry.snapshot().is_empty() {
                self.registry.check_invariants().unwrap();
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "leak: {} tasks alive (baseline {}), registry {:?}",
            self.tasks.alive(),
            self.baseline_tasks,
            self.registry.snapshot()
        );
    }
}

struct Client {
    stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
    opaque: i32,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
            decoder: FrameDecoder::default(),
            opaque: 0,
        }
    }

    async fn send(&mut self, mut cmd: RemotingCommand) -> i32 {
        self.opaque += 1;
        cmd.opaque = self.opaque;
        self.stream
            .write_all(&cmd.to_bytes().unwrap())
            .await
            .unwrap();
        self.opaque
    }

    async fn recv(&mut self) -> Option<RemotingCommand> {
        loop {
            if let Some(cmd) = self.decoder.decode(&mut self.buf).unwrap() {
                return Some(cmd);
            }
            let read =
                tokio::time::timeout(Duration::from_secs(10), self.stream.read_buf(&mut self.buf))
                    .await;
            match read.expect("response within 10 s") {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    async fn call(&mut self, cmd: RemotingCommand) -> RemotingCommand {
        let opaque = self.send(cmd).await;
        let resp = self.recv().await.expect("a response");
        assert_eq!(resp.opaque, opaque);
        assert!(resp.is_response());
        resp
    }

    /// Like `call`, but the broker's own requests (NOTIFY_CONSUMER_IDS_CHANGED) that arrive before
    /// the response are kept in `pushed`.
    async fn call_among(
        &mut self,
        cmd: RemotingCommand,
        pushed: &mut Vec<RemotingCommand>,
    ) -> RemotingCommand {
        let opaque = self.send(cmd).await;
        loop {
            let frame = self.recv().await.expect("a response");
            if !frame.is_response() {
                pushed.push(frame);
                continue;
            }
            assert_eq!(frame.opaque, opaque);
            return frame;
        }
    }

    /// The next request the broker pushes (within `recv`'s 10 s).
    async fn pushed(&mut self) -> RemotingCommand {
        let frame = self.recv().await.expect("a pushed request");
        assert!(!frame.is_response(), "{frame:?}");
        frame
    }

    /// Reads until the server closes the connection.
    async fn closed_by_server(&mut self) {
        let mut scratch = [0u8; 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut scratch))
                .await
            {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) => {}
                Err(_) => panic!("the server did not close the connection"),
            }
        }
    }
}

fn heartbeat(data: &HeartbeatData) -> RemotingCommand {
    RemotingCommand {
        body: Some(data.to_json().into()),
        ..RemotingCommand::request(code::HEART_BEAT)
    }
}

fn unregister(client: &str, producer: Option<&str>, consumer: Option<&str>) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(code::UNREGISTER_CLIENT);
    cmd.ext_fields.insert("clientID", client);
    if let Some(g) = producer {
        cmd.ext_fields.insert("producerGroup", g);
    }
    if let Some(g) = consumer {
        cmd.ext_fields.insert("consumerGroup", g);
    }
    cmd
}

fn consumer_heartbeat(client: &str, groups: impl IntoIterator<Item = String>) -> HeartbeatData {
    HeartbeatData {
        client_id: client.into(),
        consumer_data_set: groups
            .into_iter()
            .map(|g| ConsumerData {
                group_name: g,
                subscription_data_set: vec![SubscriptionData {
                    topic: "T".into(),
                    sub_string: "*".into(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_unregister_and_close() {
    let s = start(RemotingConfig::default()).await;
    let mut c = Client::connect(s.addr()).await;
    let resp = c
        .call(heartbeat(&HeartbeatData::producers("cid", ["PG"])))
        .await;
    assert_eq!(resp.code, code::SUCCESS);
    assert_eq!(resp.ext("IS_SUPPORT_HEART_BEAT_V2"), Some("true"));
    assert_eq!(resp.ext("IS_SUB_CHANGE"), Some("true"));
    assert_eq!(s.registry.producer_group_count(), 1);

    let resp = c
        .call(heartbeat(&consumer_heartbeat("cid", ["CG".to_string()])))
        .await;
    assert_eq!(resp.code, code::SUCCESS);
    assert_eq!(s.registry.consumer_groups_of_topic("T"), ["CG"]);

    let resp = c.call(unregister("cid", Some("PG"), None)).await;
    assert_eq!(resp.code, code::SUCCESS);
    assert_eq!(s.registry.producer_group_count(), 0);
    assert_eq!(s.registry.consumer_group_count(), 1);

    let resp = c
        .call(RemotingCommand::request(code::CHECK_CLIENT_CONFIG))
        .await;
    assert_eq!(resp.code, code::SUCCESS);
    let resp = c.call(RemotingCommand::request(310)).await;
    assert_eq!(resp.code, code::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(
        resp.remark.as_deref(),
        Some(" request type 310 not supported")
    );
    let resp = c
        .call(RemotingCommand::request(code::UNREGISTER_CLIENT))
        .await;
    assert_eq!(resp.code, code::SYSTEM_ERROR, "clientID is required");

    // A binary-header request is answered in kind.
    let binary = RemotingCommand {
        serialize_type: SerializeType::RocketMq,
        ..heartbeat(&HeartbeatData::producers("cid", ["PG2"]))
    };
    let resp = c.call(binary).await;
    assert_eq!(
        (resp.code, resp.serialize_type),
        (code::SUCCESS, SerializeType::RocketMq)
    );

    // Oneway: applied, not answered; the next call's answer is the next frame.
    let oneway = RemotingCommand {
        flag: FLAG_ONEWAY,
        ..heartbeat(&HeartbeatData::producers("cid", ["PG3"]))
    };
    c.send(oneway).await;
    let resp = c
        .call(RemotingCommand::request(code::CHECK_CLIENT_CONFIG))
        .await;
    assert_eq!(resp.code, code::SUCCESS);

    drop(c);
    s.quiescent().await;
    let report = s.server.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.tasks_left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_connections_thousand_groups_drain_to_zero() {
    let s = start(RemotingConfig::default()).await;
    let mut clients = Vec::new();
    for i in 0..100 {
        let mut c = Client::connect(s.addr()).await;
        // Connection i joins producer and consumer groups 10*i .. 10*i+9: 1,000 of each in all.
        let producers: Vec<String> = (0..10).map(|g| format!("PG-{}", 10 * i + g)).collect();
        let consumers: Vec<String> = (0..10).map(|g| format!("CG-{}", 10 * i + g)).collect();
        let mut data = consumer_heartbeat(&format!("client-{i}"), consumers);
        data.producer_data_set = HeartbeatData::producers("", producers).producer_data_set;
        let resp = c.call(heartbeat(&data)).await;
        assert_eq!(resp.code, code::SUCCESS, "{:?}", resp.remark);
        clients.push(c);
    }
    assert_eq!(s.registry.channel_count(), 100);
    assert_eq!(s.registry.producer_group_count(), 1000);
    assert_eq!(s.registry.consumer_group_count(), 1000);
    s.registry.check_invariants().unwrap();
    drop(clients);
    s.quiescent().await;
    assert_eq!(
        s.server.shutdown(Duration::from_secs(5)).await.tasks_left,
        0
    );
}

/// Each bad input is closed with a reason and leaves nothing; a well-behaved client on another
/// connection is served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_leaves_nothing_behind() {
    let config = RemotingConfig {
        idle_timeout: Duration::from_millis(300),
        write_timeout: Duration::from_millis(300),
        ..RemotingConfig::default()
    };
    let s = start(config).await;
    // The good client heartbeats every 50 ms (well within the 300 ms idle timeout) throughout.
    let mut good = Client::connect(s.addr()).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let stop2 = stop.clone();
    let good_task = tokio::spawn(async move {
        let mut served = 0;
        while !stop2.is_cancelled() {
            let resp = good
                .call(heartbeat(&HeartbeatData::producers("good", ["G"])))
                .await;
            assert_eq!(resp.code, code::SUCCESS);
            served += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (good, served)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut raw: Vec<(&str, Vec<u8>)> = Vec::new();
    let json = br#"{"code": oops"#;
    let mut malformed = BytesMut::new();
    malformed.put_u32((4 + json.len()) as u32);
    malformed.put_u32(json.len() as u32);
    malformed.put_slice(json);
    raw.push(("malformed header", malformed.to_vec()));
    raw.push((
        "header length beyond the frame",
        vec![0, 0, 0, 8, 0, 0, 0, 200, b'{', b'}', 0, 0],
    ));
    raw.push((
        "oversized total length",
        vec![0x7f, 0xff, 0xff, 0xf0, 0, 0, 0, 0],
    ));
    raw.push(("garbage", b"2024-10-30 16:42:30\r\n".to_vec()));
    raw.push(("unknown serialize type", vec![0, 0, 0, 4, 9, 0, 0, 0]));
    for (what, bytes) in raw {
        let mut c = Client::connect(s.addr()).await;
        c.stream.write_all(&bytes).await.unwrap();
        c.closed_by_server().await;
        // The socket closes as the connection's task returns; its channel leaves the registry
        // right after, on the same task's way out, so the count may lag the EOF briefly.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while s.registry.channel_count() != 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(
            s.registry.channel_count(),
            1,
            "{what}: only the good client remains"
        );
    }

    // A registered client that then sends garbage loses its memberships with its channel.
    let mut c = Client::connect(s.addr()).await;
    c.call(heartbeat(&HeartbeatData::producers("bad", ["BAD"])))
        .await;
    c.stream.write_all(b"\xff\xff\xff\xff").await.unwrap();
    c.closed_by_server().await;

    // Half a frame, then a stall: closed by the idle timeout.
    let mut c = Client::connect(s.addr()).await;
    let frame = heartbeat(&HeartbeatData::producers("slow", ["SLOW"]))
        .to_bytes()
        .unwrap();
    c.stream.write_all(&frame[..frame.len() / 2]).await.unwrap();
    c.closed_by_server().await;

    // A malformed heartbeat body is answered with an error, and the connection stays usable.
    let mut c = Client::connect(s.addr()).await;
    let bad_body = RemotingCommand {
        body: Some(b"{not json".to_vec().into()),
        ..RemotingCommand::request(code::HEART_BEAT)
    };
    let resp = c.call(bad_body).await;
    assert_eq!(resp.code, code::SYSTEM_ERROR);
    assert!(resp.remark.unwrap().contains("invalid HeartbeatData body"));
    assert_eq!(
        c.call(RemotingCommand::request(code::CHECK_CLIENT_CONFIG))
            .await
            .code,
        code::SUCCESS
    );
    drop(c);

    stop.cancel();
    let (good, served) = good_task.await.unwrap();
    // Every one of its calls succeeded (asserted in the task) across all the bad inputs.
    assert!(
        served >= 3,
        "the good client was served throughout ({served} heartbeats)"
    );
    assert_eq!(
        s.registry.producer_group_count(),
        1,
        "only the good client's group"
    );
    drop(good);
    s.quiescent().await;
    assert_eq!(
        s.server.shutdown(Duration::from_secs(5)).await.tasks_left,
        0
    );
}

/// A peer that never reads its responses: once the socket's buffers are full, the server's write
/// times out and it closes the connection (the idle timeout is far away here, so it is not what
/// closes it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_reading_peer_is_closed() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("rmq_lifecycle::net=debug")
        .with_test_writer()
        .try_init();
    let config = RemotingConfig {
        idle_timeout: Duration::from_secs(60),
        write_timeout: Duration::from_millis(300),
        ..RemotingConfig::default()
    };
    let s = start(config).await;
    let c = Client::connect(s.addr()).await;
    let mut flood = BytesMut::new();
    for _ in 0..400_000 {
        RemotingCommand::request(code::CHECK_CLIENT_CONFIG)
            .encode(&mut flood)
            .unwrap();
    }
    let (mut rd, mut wr) = c.stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&flood).await;
        wr
    });
    // Read nothing for a while, then drain: the server must have given up and closed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = std::time::Instant::now();
    let mut scratch = vec![0u8; 1 << 16];
    let drained = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match rd.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "a non-reading peer must be closed");
    assert!(started.elapsed() < Duration::from_secs(20));
    writer.abort();
    s.quiescent().await;
    assert_eq!(
        s.server.shutdown(Duration::from_secs(5)).await.tasks_left,
        0
    );
}

/// A full heartbeat queue answers SYSTEM_BUSY instead of queueing without bound: with the only
/// worker taken, two heartbeats wait (the queue) and the other three are refused at once; the
/// waiting two are applied once the worker is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_heartbeat_queue_answers_system_busy() {
    let config = RemotingConfig {
        heartbeat_workers: 1,
        heartbeat_queue: 2,
        ..RemotingConfig::default()
    };
    let s = start(config).await;
    let paused = s.server.pause_heartbeats().await;
    let mut clients = Vec::new();
    for i in 0..5 {
        let mut c = Client::connect(s.addr()).await;
        let mut cmd = heartbeat(&HeartbeatData::producers(format!("c{i}"), ["G"]));
        cmd.opaque = i;
        let mut frame = BytesMut::new();
        cmd.encode(&mut frame).unwrap();
        c.stream.write_all(&frame).await.unwrap();
        clients.push(c);
    }
    let stats = s.server.stats();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.busy_total() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "3 heartbeats refused"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(s.registry.producer_group_count(), 0, "nothing applied yet");
    drop(paused);
    let mut codes = Vec::new();
    for c in &mut clients {
        codes.push(c.recv().await.expect("one response per request").code);
    }
    codes.sort_unstable();
    assert_eq!(
        codes,
        [
            code::SUCCESS,
            code::SUCCESS,
            code::SYSTEM_BUSY,
            code::SYSTEM_BUSY,
            code::SYSTEM_BUSY
        ]
    );
    assert_eq!(stats.busy_total(), 3);
    assert_eq!(s.registry.producer_group_count(), 1);
    drop(clients);
    s.quiescent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_channels_are_closed_by_the_scan() {
    let config = RemotingConfig {
        scan_interval: Duration::from_millis(50),
        ..RemotingConfig::default()
    };
    let registry = Arc::new(ClientRegistry::new(RegistryConfig {
        rules: rmq_lifecycle::core::ClientRules {
            expiry_ms: 200,
            ..Default::default()
        },
        ..RegistryConfig::default()
    }));
    let tasks = TaskGauge::new();
    let config = RemotingConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    let server = RemotingServer::bind(config, registry.clone(), Clock::start(), tasks.clone())
        .await
        .unwrap();
    let mut c = Client::connect(server.local_addr()).await;
    c.call(heartbeat(&HeartbeatData::producers("c", ["G"])))
        .await;
    c.closed_by_server().await;
    assert_eq!(registry.producer_group_count(), 0);
    let _ = Millis(0);
    assert_eq!(server.shutdown(Duration::from_secs(5)).await.tasks_left, 0);
}

/// Requests of one connection apply in the order sent: an UNREGISTER_CLIENT right behind a
/// HEART_BEAT for the same group (ali-ons's heartbeat timer can overlap its close) must not be
/// overtaken by the heartbeat still queued on the worker pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregister_is_not_overtaken_by_a_queued_heartbeat() {
    let s = start(RemotingConfig {
        heartbeat_workers: 4,
        ..RemotingConfig::default()
    })
    .await;
    let mut c = Client::connect(s.addr()).await;
    let mut burst = BytesMut::new();
    for i in 0..300 {
        let group = format!("G-{i}");
        let mut hb = heartbeat(&HeartbeatData::producers("c", [group.as_str()]));
        hb.opaque = 2 * i;
        hb.encode(&mut burst).unwrap();
        let mut un = unregister("c", Some(&group), None);
        un.opaque = 2 * i + 1;
        un.encode(&mut burst).unwrap();
    }
    c.stream.write_all(&burst).await.unwrap();
    for _ in 0..600 {
        assert_eq!(
            c.recv().await.expect("one response per request").code,
            code::SUCCESS
        );
    }
    assert_eq!(
        s.registry.producer_group_count(),
        0,
        "every heartbeat was undone by its unregister"
    );
    drop(c);
    s.quiescent().await;
}

fn with_group(code: i32, key: &str, group: &str) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(code);
    cmd.ext_fields.insert(key, group);
    cmd
}

fn json(resp: &RemotingCommand) -> serde_json::Value {
    serde_json::from_slice(resp.body.as_deref().expect("a body")).expect("a JSON body")
}

fn notified_group(frame: &RemotingCommand) -> &str {
    assert_eq!(frame.code, code::NOTIFY_CONSUMER_IDS_CHANGED);
    assert!(frame.is_oneway(), "NOTIFY_CONSUMER_IDS_CHANGED is oneway");
    frame.ext("consumerGroup").expect("consumerGroup")
}

/// What a push consumer needs from the broker side, over the wire: GET_CONSUMER_LIST_BY_GROUP
/// (38) right after its heartbeat, NOTIFY_CONSUMER_IDS_CHANGED (40) when another consumer joins
/// or leaves (never for a quiet group), the admin queries 203, 204 and 328 with each channel's
/// language, version and address, and CHECK_CLIENT_CONFIG (46) refusing SQL92.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_are_listed_and_notified() {
    let notifier = ConsumerNotifier::new(NotifyConfig {
        quiet_groups: ["QUIET".to_owned()].into(),
        ..NotifyConfig::default()
    });
    let s = start_with(RemotingConfig::default(), Some(notifier.clone())).await;
    let mut a = Client::connect(s.addr()).await;
    let a_addr = a.stream.local_addr().unwrap().to_string();
    let mut pushed_a = Vec::new();
    let hb = RemotingCommand {
        language: LanguageCode::from_name("NODE_JS").unwrap(),
        version: 317,
        ..heartbeat(&consumer_heartbeat("a@1", ["CG".to_string()]))
    };
    assert_eq!(a.call_among(hb, &mut pushed_a).await.code, code::SUCCESS);
    let list = a
        .call_among(with_group(38, "consumerGroup", "CG"), &mut pushed_a)
        .await;
    assert_eq!(list.code, code::SUCCESS);
    assert_eq!(json(&list), serde_json::json!({"consumerIdList": ["a@1"]}));

    // A second consumer joins: both members are told, each once.
    let mut b = Client::connect(s.addr()).await;
    let mut pushed_b = Vec::new();
    let hb = heartbeat(&consumer_heartbeat("b@2", ["CG".to_string()]));
    assert_eq!(b.call_among(hb, &mut pushed_b).await.code, code::SUCCESS);
    let notice = match pushed_a.pop() {
        Some(frame) => frame,
        None => a.pushed().await,
    };
    assert_eq!(notified_group(&notice), "CG");
    let list = a
        .call_among(with_group(38, "consumerGroup", "CG"), &mut pushed_a)
        .await;
    assert_eq!(
        json(&list),
        serde_json::json!({"consumerIdList": ["a@1", "b@2"]})
    );

    // 203: connections with what each heartbeat's header said, and the group's metadata.
    let conns = a
        .call_among(with_group(203, "consumerGroup", "CG"), &mut pushed_a)
        .await;
    assert_eq!(conns.code, code::SUCCESS);
    let body = json(&conns);
    assert_eq!(body["connectionSet"][0]["clientId"], "a@1");
    assert_eq!(body["connectionSet"][0]["language"], "NODE_JS");
    assert_eq!(body["connectionSet"][0]["version"], 317);
    assert_eq!(body["connectionSet"][0]["clientAddr"], a_addr.as_str());
    assert_eq!(body["connectionSet"][1]["clientId"], "b@2");
    assert_eq!(body["messageModel"], "CLUSTERING");
    assert_eq!(body["subscriptionTable"]["T"]["subString"], "*");
    let none = a
        .call_among(with_group(203, "consumerGroup", "NOPE"), &mut pushed_a)
        .await;
    assert_eq!(none.code, code::CONSUMER_NOT_ONLINE);
    let none = a
        .call_among(with_group(38, "consumerGroup", "NOPE"), &mut pushed_a)
        .await;
    assert_eq!(
        (none.code, none.remark.as_deref()),
        (code::SYSTEM_ERROR, Some("no consumer for this group, NOPE"))
    );

    // 204 and 328 for a producer group.
    let hb = heartbeat(&HeartbeatData::producers("a@1", ["PG"]));
    assert_eq!(a.call_among(hb, &mut pushed_a).await.code, code::SUCCESS);
    let producers = a
        .call_among(with_group(204, "producerGroup", "PG"), &mut pushed_a)
        .await;
    assert_eq!(
        json(&producers),
        serde_json::json!({"connectionSet": [{"clientId": "a@1", "clientAddr": a_addr,
            "language": "JAVA", "version": rmq_lifecycle::core::remoting::SERVER_VERSION}]})
    );
    let none = a
        .call_among(with_group(204, "producerGroup", "NOPE"), &mut pushed_a)
        .await;
    assert_eq!(none.code, code::SYSTEM_ERROR);
    let all = a
        .call_among(RemotingCommand::request(328), &mut pushed_a)
        .await;
    let info = &json(&all)["data"]["PG"][0];
    assert_eq!(info["remoteIP"], format!("/{a_addr}").as_str());
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let stamp = info["lastUpdateTimestamp"].as_i64().unwrap();
    assert!((now_ms - stamp).abs() < 60_000, "{stamp} vs {now_ms}");

    // 46: TAG passes, SQL92 is refused (no property filtering here).
    let check = |expression: &str| {
        RemotingCommand {
        body: Some(
            format!(r#"{{"clientId":"a@1","group":"CG","subscriptionData":{{"topic":"T","subString":"a > 1","expressionType":"{expression}"}}}}"#)
                .into_bytes()
                .into(),
        ),
        ..RemotingCommand::request(code::CHECK_CLIENT_CONFIG)
    }
    };
    assert_eq!(
        a.call_among(check("TAG"), &mut pushed_a).await.code,
        code::SUCCESS
    );
    let refused = a.call_among(check("SQL92"), &mut pushed_a).await;
    assert_eq!(
        (refused.code, refused.remark.as_deref()),
        (
            code::SYSTEM_ERROR,
            Some("The broker does not support consumer to filter message by SQL92")
        )
    );

    // A quiet group's changes are not pushed: the next notice a sees is CG's, when b closes.
    for (c, id, pushed) in [
        (&mut a, "a@1", &mut pushed_a),
        (&mut b, "b@2", &mut pushed_b),
    ] {
        let hb = heartbeat(&consumer_heartbeat(
            id,
            ["CG".to_string(), "QUIET".to_string()],
        ));
        assert_eq!(c.call_among(hb, pushed).await.code, code::SUCCESS);
    }
    assert!(pushed_a.iter().all(|f| notified_group(f) != "QUIET"));
    assert!(pushed_b.iter().all(|f| notified_group(f) != "QUIET"));
    pushed_a.clear();
    drop(b);
    let notice = a.pushed().await;
    assert_eq!(notified_group(&notice), "CG");
    let list = a
        .call_among(with_group(38, "consumerGroup", "CG"), &mut pushed_a)
        .await;
    assert_eq!(json(&list), serde_json::json!({"consumerIdList": ["a@1"]}));
    assert!(pushed_a.is_empty(), "one notice per change: {pushed_a:?}");
    assert_eq!(notifier.dropped_total(), 0);

    drop(a);
    s.quiescent().await;
    let report = s.server.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.tasks_left, 0);
}
