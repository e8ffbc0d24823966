//! One simulated world: its hosts, its fault schedule and its invariant checks.
//!
//! The master host runs `net::server::serve` and the slave hosts `net::server::replicate`, the
//! functions `rmq-lifecycle serve` and `rmq-lifecycle slave` run, on turmoil's simulated network
//! and filesystem (feature `sim` switches `src/io.rs` to them). The clients, the prober and the
//! observer are written here, against the wire protocol only: they are the outside world, not a
//! second implementation of any server step.

use super::ha_master_514::HaMaster514;
use super::links::Links;
use super::rng::Rng;
use bytes::BytesMut;
use rmq_lifecycle::core::ha::HaConfig;
use rmq_lifecycle::core::heartbeat::{ConsumerData, SubscriptionData};
use rmq_lifecycle::core::message::{self, SendHeader};
use rmq_lifecycle::core::remoting::{FrameDecoder, RemotingCommand, code};
use rmq_lifecycle::core::{ClientRules, HeartbeatData};
use rmq_lifecycle::lifecycle::TaskGauge;
use rmq_lifecycle::net::ha::{MasterConfig, MasterFaults, SlaveConfig, SlaveStatus};
use rmq_lifecycle::net::remoting::RemotingConfig;
use rmq_lifecycle::net::send::SendConfig;
use rmq_lifecycle::net::server::{self, ReplicaConfig, ServeConfig};
use rmq_lifecycle::registry::{ClientRegistry, Faults, HaRegistry, RegistryConfig};
use rmq_lifecycle::store::{CommitLog, FlushPolicy, StoreConfig};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::fs::FsHandle;
use turmoil::net::TcpStream;

/// The simulation's clock step: every host runs this much simulated time per step.
pub(crate) const TICK: Duration = Duration::from_millis(10);
/// Faults are injected in `[0, FAULTS_END)`; then every link is healed and every host restarted.
pub(crate) const FAULTS_END: Duration = Duration::from_secs(15);
/// After the heal, clients keep heartbeating their final groups; the settled check runs here.
pub(crate) const SETTLED: Duration = Duration::from_secs(35);
/// Clients and prober leave; the quiescence check runs here.
pub(crate) const QUIESCENT: Duration = Duration::from_secs(43);
/// Master and slaves shut down gracefully; the final check runs here.
pub(crate) const END: Duration = Duration::from_secs(47);

const CLIENT_PORT: u16 = 10911;
const HA_PORT: u16 = 10912;
const STORE: &str = "/store/commitlog";
pub(crate) const SLAVES: [&str; 2] = ["slave1", "slave2"];
pub(crate) const PRODUCERS: [&str; 2] = ["producer1", "producer2"];
pub(crate) const CONSUMERS: [&str; 1] = ["consumer1"];
const PROBER: &str = "prober";
const OBSERVER: &str = "observer";
/// Every host of the main world: those faults may crash first, then the prober (links only),
/// then the observer (the test's instrument, never faulted).
const ALL_HOSTS: [&str; 8] = [
    "master",
    "slave1",
    "slave2",
    "producer1",
    "producer2",
    "consumer1",
    PROBER,
    OBSERVER,
];
/// Hosts a crash may hit.
pub(crate) const HOSTS: &[&str] = ALL_HOSTS.split_at(6).0;
/// Hosts whose links may fail.
const LINKED: &[&str] = ALL_HOSTS.split_at(7).0;

/// Which server runs on the master host, and with which planted defects.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Variant {
    /// The client registry's planted defects.
    pub(crate) registry: Faults,
    /// The HA master's planted defects.
    pub(crate) master: MasterFaults,
    /// The master host runs the upstream 5.1.4 HA accept path (`cli/src/cli/upstream/ha_master_514.rs`)
    /// instead of `serve`; only the prober talks to it.
    pub upstream_514: bool,
    /// No random faults: the schedule is only `extra` (a scripted test's faults).
    pub(crate) scripted_only: bool,
    /// Segment size of every log (0: 16 KiB). A segment is synced when the next one starts, so
    /// a large one leaves a `Manual` master's whole log unsynced.
    pub(crate) segment: u64,
}

impl Variant {
    fn segment(&self) -> u64 {
        if self.segment == 0 {
            16 * 1024
        } else {
            self.segment
        }
    }
}

/// One fault, applied between steps.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Fault {
    Partition(&'static str, &'static str),
    Repair(&'static str, &'static str),
    Hold(&'static str, &'static str),
    Release(&'static str, &'static str),
    Latency(&'static str, &'static str, Duration),
    LinkFailRate(&'static str, &'static str, f64),
    /// Host software stops at once; its filesystem keeps only synced bytes (torn at 512 B).
    Crash(&'static str),
    /// Restart a crashed or shut-down host.
    Restart(&'static str),
    /// The master shuts down gracefully (its report must be clean).
    Shutdown,
}

/// The fault schedule of a seed: (when, what), sorted by time.
pub(crate) fn schedule(seed: u64, variant: &Variant) -> Vec<(Duration, Fault)> {
    if variant.scripted_only {
        return Vec::new();
    }
    let mut rng = Rng::new(seed ^ 0x5EED_FA17);
    let mut out = Vec::new();
    let hosts: &[&'static str] = if variant.upstream_514 {
        &["master"]
    } else {
        HOSTS
    };
    let peers: &[&'static str] = if variant.upstream_514 {
        &[PROBER]
    } else {
        LINKED
    };
    let n = rng.range(2, 9);
    let window = FAULTS_END.as_millis() as u64 - 1_500;
    for _ in 0..n {
        let at = Duration::from_millis(rng.range(300, window));
        let lasting = Duration::from_millis(rng.range(300, 6_000));
        let a = *rng.pick(peers);
        let mut b = *rng.pick(peers);
        if a == b {
            b = if a == "master" { "slave1" } else { "master" };
        }
        match rng.below(8) {
            0 | 1 => {
                out.push((at, Fault::Partition(a, b)));
                out.push((at + lasting, Fault::Repair(a, b)));
            }
            2 => {
                out.push((at, Fault::Hold(a, b)));
                out.push((at + lasting, Fault::Release(a, b)));
            }
            3 => out.push((
                at,
                Fault::Latency(a, b, Duration::from_millis(rng.range(50, 1_500))),
            )),
            4 => out.push((
                at,
                Fault::LinkFailRate(a, b, rng.range(2, 30) as f64 / 100.0),
            )),
            5 | 6 => {
                let host = *rng.pick(hosts);
                out.push((at, Fault::Crash(host)));
                out.push((at + lasting, Fault::Restart(host)));
            }
            _ if !variant.upstream_514 => {
                out.push((at, Fault::Shutdown));
                out.push((at + lasting, Fault::Restart("master")));
            }
            _ => {}
        }
    }
    out.sort_by_key(|(at, _)| *at);
    out
}

/// The phases the hosts follow; the driver moves them forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Faulty,
    Steady,
    Drain,
    Shutdown,
}

/// What the master host publishes about its current incarnation. Weak references: the host's
/// runtime owns the components, and a crash must drop them there, not in the checker.
struct MasterView {
    registry: Weak<ClientRegistry>,
    ha: Weak<HaRegistry>,
    log: Weak<CommitLog>,
    fs: FsHandle,
    client_tasks: TaskGauge,
    ha_tasks: TaskGauge,
    client_base: usize,
    ha_base: usize,
}

struct SlaveView {
    log: Weak<CommitLog>,
    status: Arc<SlaveStatus>,
    fs: FsHandle,
}

/// What one client last heard the broker accept: its id and groups as of its last SUCCESS.
#[derive(Debug, Clone, Default, PartialEq)]
struct Claim {
    client_id: String,
    producers: BTreeSet<String>,
    consumers: BTreeSet<String>,
}

/// State shared between the hosts and the driver (one thread: `Rc`).
#[derive(Default)]
struct Env {
    seed: u64,
    variant: Variant,
    phase: Cell<Option<Phase>>,
    master_stop: Cell<bool>,
    master: RefCell<Option<MasterView>>,
    master514: RefCell<Option<Rc<HaMaster514>>>,
    slaves: RefCell<BTreeMap<&'static str, SlaveView>>,
    slave_stop: Cell<bool>,
    claims: RefCell<BTreeMap<&'static str, Option<Claim>>>,
    /// `(offset, needed)` pairs `wait_for_replication` confirmed.
    replicated: RefCell<Vec<(u64, usize)>>,
    /// Sends answered SUCCESS: the offset their `msgId` names and the body sent.
    acked_sends: RefCell<Vec<(u64, Vec<u8>)>>,
    sockets: RefCell<BTreeMap<&'static str, usize>>,
    violations: RefCell<Vec<(String, u32)>>,
    trace: RefCell<Vec<String>>,
    incarnations: RefCell<BTreeMap<&'static str, u32>>,
}

impl Env {
    fn phase(&self) -> Phase {
        self.phase.get().unwrap_or(Phase::Faulty)
    }

    fn note(&self, line: String) {
        self.trace.borrow_mut().push(line);
    }

    /// Records a violation: the first detail per invariant, then only a count.
    fn violate(&self, invariant: &str, detail: String) {
        let mut v = self.violations.borrow_mut();
        let prefix = format!("{invariant} violated");
        match v.iter_mut().find(|(line, _)| line.starts_with(&prefix)) {
            Some((_, n)) => *n += 1,
            None => v.push((format!("{prefix}: {detail}"), 1)),
        }
    }

    fn start(&self, host: &'static str) -> u32 {
        let mut inc = self.incarnations.borrow_mut();
        let n = inc.entry(host).or_default();
        *n += 1;
        *n
    }
}

/// The outcome of one seed.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) seed: u64,
    pub(crate) schedule: Vec<(Duration, Fault)>,
    pub(crate) violations: Vec<String>,
    /// Hash of the world's observable history: two runs of a seed must agree.
    pub(crate) fingerprint: u64,
    pub(crate) trace: Vec<String>,
    pub(crate) simulated: Duration,
    /// Bytes the master's log held at the settled check (shows the world did work).
    pub(crate) master_bytes: u64,
    /// Client heartbeats the registry counted at the settled check.
    pub(crate) heartbeats: u64,
    /// Sends answered SUCCESS (each checked to be in the master's log at the end).
    pub(crate) acked_sends: usize,
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn master_addr(port: u16) -> SocketAddr {
    SocketAddr::new(turmoil::lookup("master"), port)
}

fn ha_config(variant: &Variant) -> HaConfig {
    HaConfig {
        heartbeat_ms: 1_000,
        housekeeping_ms: 4_000,
        batch_max: 4 * 1024,
        segment_size: variant.segment(),
        ..HaConfig::default()
    }
}

fn serve_config(variant: &Variant) -> ServeConfig {
    ServeConfig {
        remoting: RemotingConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], CLIENT_PORT)),
            idle_timeout: Duration::from_secs(6),
            scan_interval: Duration::from_secs(1),
            heartbeat_workers: 2,
            heartbeat_queue: 64,
            write_timeout: Duration::from_secs(3),
            ..RemotingConfig::default()
        },
        registry: RegistryConfig {
            rules: ClientRules {
                expiry_ms: 8_000,
                ..ClientRules::default()
            },
            shards: 8,
            faults: variant.registry,
        },
        notify: Some(Default::default()),
        master: MasterConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], HA_PORT)),
            ha: ha_config(variant),
            max_connections: 32,
            faults: variant.master,
            ..MasterConfig::default()
        },
        store: StoreConfig {
            dir: STORE.into(),
            segment_size: variant.segment(),
            // The `serve` default: synced at segment ends, before bytes go to a slave, and at
            // shutdown; a crash loses the rest.
            flush: FlushPolicy::Manual,
        },
        // A send is answered SUCCESS only once a slave holds it, so it must survive any crash.
        send: SendConfig {
            in_sync_replicas: 2,
            slave_timeout: Duration::from_millis(800),
            ..SendConfig::default()
        },
        metrics: None,
        grace: Duration::from_secs(2),
    }
}

async fn until(cond: impl Fn() -> bool) {
    while !cond() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The master host: `serve` (or the 5.1.4 emulation), plus an appender that writes records
/// through the library and asks `wait_for_replication`.
async fn master_host(env: Rc<Env>) -> turmoil::Result {
    let inc = env.start("master");
    env.master_stop.set(false);
    let rng = Rng::new(env.seed ^ (u64::from(inc) << 32) ^ 0xA11CE);
    if env.variant.upstream_514 {
        let emu = HaMaster514::bind(
            SocketAddr::from(([0, 0, 0, 0], HA_PORT)),
            Duration::from_millis(ha_config(&env.variant).housekeeping_ms),
        )
        .await?;
        let emu = Rc::new(emu);
        *env.master514.borrow_mut() = Some(emu.clone());
        until(|| env.master_stop.get()).await;
        emu.shutdown();
        *env.master514.borrow_mut() = None;
        return Ok(());
    }
    let stop_env = env.clone();
    let pub_env = env.clone();
    let result = server::serve(
        serve_config(&env.variant),
        until(move || stop_env.master_stop.get()),
        move |broker| {
            *pub_env.master.borrow_mut() = Some(MasterView {
                registry: Arc::downgrade(broker.registry()),
                ha: Arc::downgrade(broker.ha_registry()),
                log: Arc::downgrade(broker.log()),
                fs: FsHandle::current(),
                client_tasks: broker.client_tasks().clone(),
                ha_tasks: broker.ha_tasks().clone(),
                client_base: broker.client_tasks().alive(),
                ha_base: broker.ha_tasks().alive(),
            });
            pub_env.note(format!(
                "master#{inc} up, log [{}, {})",
                broker.log().min_offset(),
                broker.log().max_offset()
            ));
            let handle = broker.master().clone();
            let env = pub_env.clone();
            tokio::task::spawn_local(async move {
                let mut rng = rng;
                let mut n = 0u64;
                while !env.master_stop.get() && env.phase() < Phase::Steady {
                    tokio::time::sleep(Duration::from_millis(rng.range(50, 300))).await;
                    if env.master_stop.get() {
                        break;
                    }
                    n += 1;
                    let len = rng.range(40, 700) as usize;
                    let payload: Vec<u8> = (0..len).map(|i| (n as usize + i) as u8).collect();
                    let appended = match handle.append(&payload) {
                        Ok(a) => a,
                        Err(e) => {
                            env.violate("StoreWritable", format!("append failed: {e}"));
                            break;
                        }
                    };
                    if n % 4 == 0 {
                        let needed = rng.range(1, 3) as usize;
                        let wait = Duration::from_millis(rng.range(200, 2_000));
                        if handle
                            .wait_for_replication(appended.end, needed, wait)
                            .await
                            .is_ok()
                        {
                            env.replicated.borrow_mut().push((appended.end, needed));
                        }
                    }
                }
            });
        },
    )
    .await;
    *env.master.borrow_mut() = None;
    match result {
        Ok(report) => {
            env.note(format!("master#{inc} shut down: {report:?}"));
            if !report.is_clean() {
                env.violate(
                    "NoLeakAtQuiescence",
                    format!("master shutdown left {report:?}"),
                );
            }
        }
        Err(e) => env.violate("MasterStarts", format!("master#{inc} did not start: {e}")),
    }
    Ok(())
}

async fn slave_host(env: Rc<Env>, name: &'static str) -> turmoil::Result {
    let inc = env.start(name);
    let variant = &env.variant;
    let config = ReplicaConfig {
        slave: SlaveConfig {
            ha: ha_config(variant),
            connect_timeout: Duration::from_secs(1),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ..SlaveConfig::new(master_addr(HA_PORT))
        },
        store: StoreConfig {
            dir: STORE.into(),
            segment_size: variant.segment(),
            flush: FlushPolicy::Manual,
        },
        grace: Duration::from_secs(2),
    };
    let stop_env = env.clone();
    let pub_env = env.clone();
    let result = server::replicate(
        config,
        until(move || stop_env.slave_stop.get()),
        move |replica| {
            pub_env.slaves.borrow_mut().insert(
                name,
                SlaveView {
                    log: Arc::downgrade(replica.log()),
                    status: replica.status().clone(),
                    fs: FsHandle::current(),
                },
            );
            pub_env.note(format!("{name}#{inc} up at {}", replica.log().max_offset()));
        },
    )
    .await;
    env.slaves.borrow_mut().remove(name);
    match result {
        Ok(report) if !report.is_clean() => env.violate(
            "NoLeakAtQuiescence",
            format!("{name} shutdown left {report:?}"),
        ),
        Ok(_) => {}
        Err(e) => env.violate("SlaveStarts", format!("{name}#{inc} did not start: {e}")),
    }
    Ok(())
}

/// A remoting client connection.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
    opaque: i32,
}

impl Conn {
    async fn open() -> Option<Conn> {
        let connect = TcpStream::connect(master_addr(CLIENT_PORT));
        let stream = tokio::time::timeout(Duration::from_secs(1), connect)
            .await
            .ok()?
            .ok()?;
        Some(Conn {
            stream,
            buf: BytesMut::new(),
            decoder: FrameDecoder::default(),
            opaque: 0,
        })
    }

    async fn send(&mut self, mut cmd: RemotingCommand) -> Option<i32> {
        self.opaque += 1;
        cmd.opaque = self.opaque;
        let bytes = cmd.to_bytes().ok()?;
        tokio::time::timeout(Duration::from_secs(2), self.stream.write_all(&bytes))
            .await
            .ok()?
            .ok()?;
        Some(self.opaque)
    }

    /// Sends and waits (3 s at most) for the response code; `None` if the connection is
    /// unusable.
    async fn call(&mut self, cmd: RemotingCommand) -> Option<i32> {
        self.response(cmd).await.map(|r| r.code)
    }

    /// Sends and waits (3 s at most) for the response.
    async fn response(&mut self, cmd: RemotingCommand) -> Option<RemotingCommand> {
        let opaque = self.send(cmd).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            if let Some(resp) = self.decoder.decode(&mut self.buf).ok()? {
                if resp.opaque == opaque && resp.is_response() {
                    return Some(resp);
                }
                continue;
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf));
            match read.await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }
}

fn heartbeat_cmd(claim: &Claim) -> RemotingCommand {
    let mut data = HeartbeatData::producers(claim.client_id.clone(), claim.producers.iter());
    data.consumer_data_set = claim
        .consumers
        .iter()
        .map(|g| ConsumerData {
            group_name: g.clone(),
            subscription_data_set: vec![SubscriptionData {
                topic: "T".into(),
                sub_string: "*".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    RemotingCommand {
        body: Some(data.to_json().into()),
        ..RemotingCommand::request(code::HEART_BEAT)
    }
}

fn unregister_cmd(client: &str, producer_group: &str) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(code::UNREGISTER_CLIENT);
    cmd.ext_fields.insert("clientID", client);
    cmd.ext_fields.insert("producerGroup", producer_group);
    cmd
}

/// A `SEND_MESSAGE_V2` of `body` to a queue the broker picks, with its own `UNIQ_KEY`.
fn send_cmd(producer_group: &str, body: &[u8], uniq: &str) -> RemotingCommand {
    SendHeader {
        producer_group: producer_group.into(),
        topic: "SimTopic".into(),
        default_topic: message::AUTO_CREATE_TOPIC.into(),
        default_topic_queue_nums: 4,
        queue_id: -1,
        sys_flag: 0,
        born_timestamp: 0,
        flag: 0,
        properties: Some(format!("UNIQ_KEY\u{1}{uniq}\u{2}")),
        reconsume_times: 0,
        unit_mode: false,
        max_reconsume_times: None,
        batch: false,
    }
    .to_request(code::SEND_MESSAGE_V2, body.to_vec().into())
}

/// A client host: a producer creating an `IotRuleEngine-<ms>` group every period and abandoning
/// old ones (silently, by UNREGISTER_CLIENT, or by closing) and sending messages, or a consumer
/// heartbeating two groups; both sometimes close, or send a heartbeat and close without waiting
/// for it.
async fn client_host(env: Rc<Env>, name: &'static str, producer: bool) -> turmoil::Result {
    let inc = env.start(name);
    let name_hash = name.bytes().fold(0xCBF2_9CE4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    });
    let mut rng = Rng::new(env.seed ^ (u64::from(inc) << 40) ^ name_hash);
    let start = tokio::time::Instant::now();
    let mut want = Claim {
        client_id: format!("{name}@10.0.0.{inc}"),
        ..Claim::default()
    };
    if !producer {
        want.consumers = ["CG-shared".to_string(), format!("CG-{name}")].into();
    }
    let mut conn: Option<Conn> = None;
    let mut sent = 0u64;
    let set_claim = |c: Option<Claim>| env.claims.borrow_mut().insert(name, c);
    set_claim(None);
    loop {
        let phase = env.phase();
        if phase >= Phase::Drain {
            drop(conn.take());
            set_claim(None);
            return Ok(());
        }
        let period = if phase == Phase::Steady {
            2_000
        } else {
            rng.range(200, 1_200)
        };
        let wake = tokio::time::Instant::now() + Duration::from_millis(period);
        while tokio::time::Instant::now() < wake && env.phase() == phase {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if env.phase() >= Phase::Drain {
            continue;
        }
        if conn.is_none() {
            conn = Conn::open().await;
            if conn.is_none() {
                continue;
            }
        }
        let now_ms = ms(start.elapsed()) + u64::from(inc) * 1_000_000;
        let steady = env.phase() == Phase::Steady;
        if producer && (want.producers.is_empty() || (!steady && rng.below(100) < 55)) {
            want.producers.insert(format!("IotRuleEngine-{now_ms}"));
        }
        let roll = if steady { 100 } else { rng.below(100) };
        let c = conn.as_mut().expect("connected");
        match roll {
            0..8 if producer => {
                // Abandon the oldest group without a word: the expiry scan must remove it.
                let oldest = want.producers.iter().next().cloned();
                if let Some(g) = oldest {
                    want.producers.remove(&g);
                }
            }
            8..16 if producer => {
                let oldest = want.producers.iter().next().cloned();
                if let Some(g) = oldest {
                    want.producers.remove(&g);
                    if c.call(unregister_cmd(&want.client_id, &g)).await != Some(code::SUCCESS) {
                        conn = None;
                        set_claim(None);
                    }
                }
                continue;
            }
            16..24 => {
                // Close: every membership of this channel must go.
                conn = None;
                set_claim(None);
                if producer {
                    want.producers.clear();
                }
                continue;
            }
            30..45 if producer => {
                // A send: answered SUCCESS only once a slave holds it; SLAVE_NOT_AVAILABLE when no
                // slave has reported, FLUSH_SLAVE_TIMEOUT when none acknowledged it in time.
                sent += 1;
                let body = format!("{name}#{inc}#{sent}").into_bytes();
                let uniq = format!("{name}-{inc}-{sent}");
                let group = want.producers.iter().next().cloned().unwrap_or_default();
                match c.response(send_cmd(&group, &body, &uniq)).await {
                    Some(resp) if resp.code == code::SUCCESS => {
                        let offset = resp
                            .ext("msgId")
                            .and_then(|id| id.get(id.len().saturating_sub(16)..))
                            .and_then(|hex| u64::from_str_radix(hex, 16).ok());
                        match offset {
                            Some(offset) => env.acked_sends.borrow_mut().push((offset, body)),
                            None => env.violate("SendAnswered", format!("{resp:?}")),
                        }
                    }
                    Some(resp)
                        if matches!(
                            resp.code,
                            code::FLUSH_SLAVE_TIMEOUT | code::SLAVE_NOT_AVAILABLE
                        ) => {}
                    Some(resp) => env.violate(
                        "SendAnswered",
                        format!("send {uniq} answered {} {:?}", resp.code, resp.remark),
                    ),
                    None => {
                        conn = None;
                        set_claim(None);
                    }
                }
                continue;
            }
            24..30 => {
                // A heartbeat and a close at once: it may be handled after the close.
                let _ = c.send(heartbeat_cmd(&want)).await;
                conn = None;
                set_claim(None);
                if producer {
                    want.producers.clear();
                }
                continue;
            }
            _ => {}
        }
        let c = conn.as_mut().expect("connected");
        if c.call(heartbeat_cmd(&want)).await == Some(code::SUCCESS) {
            set_claim(Some(want.clone()));
        } else {
            conn = None;
            set_claim(None);
        }
    }
}

/// The prober: the four probe kinds of the 5.1.4 incident against the HA port, a few at once.
async fn prober_host(env: Rc<Env>) -> turmoil::Result {
    let inc = env.start(PROBER);
    let mut rng = Rng::new(env.seed ^ 0xB0BE ^ u64::from(inc));
    let live = Rc::new(Cell::new(0usize));
    while env.phase() < Phase::Drain {
        tokio::time::sleep(Duration::from_millis(rng.range(100, 600))).await;
        if live.get() >= 4 || env.phase() >= Phase::Drain {
            continue;
        }
        let kind = rng.below(4);
        let (env, live) = (env.clone(), live.clone());
        live.set(live.get() + 1);
        tokio::task::spawn_local(async move {
            probe(&env, kind).await;
            live.set(live.get() - 1);
        });
    }
    until(|| live.get() == 0).await;
    Ok(())
}

async fn probe(env: &Env, kind: u64) {
    let connect = TcpStream::connect(master_addr(HA_PORT));
    let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(1), connect).await else {
        return;
    };
    let bytes: Vec<u8> = match kind {
        0 => return,                                // close at once
        1 => b"1733400000000\r\n".to_vec(),         // a timestamp as text: a health checker's line
        2 => vec![0, 0, 0],                         // half a report, then silence
        _ => (u64::MAX / 3).to_be_bytes().to_vec(), // an offset far past the log's end
    };
    if stream.write_all(&bytes).await.is_err() {
        return;
    }
    // Hold the connection until the master closes it or the prober must leave.
    let mut scratch = [0u8; 4096];
    loop {
        tokio::select! {
            biased;
            _ = until(|| env.phase() >= Phase::Drain) => return,
            read = stream.read(&mut scratch) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
}

/// Samples the simulated sockets open on the master host (the server's side of every
/// connection; see `Checker::quiescent` for why only that side is counted).
async fn observer_host(env: Rc<Env>) -> turmoil::Result {
    loop {
        env.sockets
            .borrow_mut()
            .insert("master", turmoil::established_tcp_stream_count_on("master"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs one seed to the end and returns what it found.
pub(crate) fn run(
    seed: u64,
    variant: Variant,
    extra: &[(Duration, Fault)],
    full_trace: bool,
) -> Outcome {
    let mut schedule = schedule(seed, &variant);
    schedule.extend(extra.iter().cloned());
    schedule.sort_by_key(|(at, _)| *at);
    let env = Rc::new(Env {
        seed,
        variant,
        ..Env::default()
    });
    let mut sim = new_sim(seed, END);
    {
        let env = env.clone();
        sim.host("master", move || master_host(env.clone()));
    }
    if !variant.upstream_514 {
        for name in SLAVES {
            let env = env.clone();
            sim.host(name, move || slave_host(env.clone(), name));
        }
        for name in PRODUCERS {
            let env = env.clone();
            sim.host(name, move || client_host(env.clone(), name, true));
        }
        for name in CONSUMERS {
            let env = env.clone();
            sim.host(name, move || client_host(env.clone(), name, false));
        }
    }
    {
        let env = env.clone();
        sim.host(PROBER, move || prober_host(env.clone()));
    }
    {
        let env = env.clone();
        sim.host(OBSERVER, move || observer_host(env.clone()));
    }

    let mut checker = Checker::default();
    let mut links = Links::default();
    let mut next = 0;
    let mut step: u64 = 0;
    let mut phase_done = [false; 4];
    loop {
        let now = sim.elapsed();
        while next < schedule.len() && schedule[next].0 <= now {
            let fault = schedule[next].1.clone();
            apply(&mut sim, &mut links, &env, &fault);
            env.note(format!("{:>6} ms  fault {fault:?}", ms(now)));
            next += 1;
        }
        if now >= FAULTS_END && !phase_done[0] {
            phase_done[0] = true;
            heal(&mut sim, &variant);
            links.healed();
            env.phase.set(Some(Phase::Steady));
            env.note(format!("{:>6} ms  healed; steady", ms(now)));
        }
        if now >= SETTLED && !phase_done[1] {
            phase_done[1] = true;
            checker.settled(&env, &variant);
            env.phase.set(Some(Phase::Drain));
            env.note(format!("{:>6} ms  settled check; drain", ms(now)));
        }
        if now >= QUIESCENT && !phase_done[2] {
            phase_done[2] = true;
            checker.quiescent(&env, &variant);
            env.phase.set(Some(Phase::Shutdown));
            env.master_stop.set(true);
            env.slave_stop.set(true);
            env.note(format!("{:>6} ms  quiescence check; shutdown", ms(now)));
        }
        if now >= END {
            checker.ended(&env);
            break;
        }
        if let Err(e) = sim.step() {
            env.violate("HostsRun", format!("simulation error: {e}"));
            break;
        }
        step += 1;
        if step % 10 == 0 {
            checker.during(&env, &variant, step % 100 == 0);
        }
    }
    let trace = std::mem::take(&mut *env.trace.borrow_mut());
    let violations: Vec<String> = env
        .violations
        .borrow()
        .iter()
        .map(|(line, n)| match n {
            1 => line.clone(),
            n => format!("{line} (and {} more times)", n - 1),
        })
        .collect();
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&trace, &mut hasher);
    std::hash::Hash::hash(&violations, &mut hasher);
    std::hash::Hash::hash(&checker.history, &mut hasher);
    std::hash::Hash::hash(&*env.acked_sends.borrow(), &mut hasher);
    Outcome {
        seed,
        schedule,
        violations,
        fingerprint: std::hash::Hasher::finish(&hasher),
        trace: if full_trace { trace } else { Vec::new() },
        simulated: sim.elapsed(),
        master_bytes: checker.master_bytes,
        heartbeats: checker.heartbeats,
        acked_sends: env.acked_sends.borrow().len(),
    }
}

/// A simulation of both worlds' shape: the seed's network RNG, 10 ms steps, 0-20 ms latency,
/// filesystems that tear unsynced writes at 512-byte blocks on a crash, and 5 s past `end`.
pub(crate) fn new_sim<'a>(seed: u64, end: Duration) -> turmoil::Sim<'a> {
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(seed)
        .tick_duration(TICK)
        .simulation_duration(end + Duration::from_secs(5))
        .min_message_latency(Duration::from_millis(0))
        .max_message_latency(Duration::from_millis(20));
    builder.fs().block_size(512);
    builder.build()
}

thread_local! {
    /// Called just before the master host crashes (the HA model trace cuts the crashed
    /// incarnation's trace there: its teardown is no step of the model).
    pub(crate) static ON_MASTER_CRASH: RefCell<Option<Box<dyn Fn()>>> = const { RefCell::new(None) };
}

fn apply(sim: &mut turmoil::Sim<'_>, links: &mut Links, env: &Env, fault: &Fault) {
    match *fault {
        Fault::Partition(a, b) => links.partition(sim, a, b),
        Fault::Repair(a, b) => links.repair(sim, a, b),
        Fault::Hold(a, b) => links.hold(sim, a, b),
        Fault::Release(a, b) => links.release(sim, a, b),
        Fault::Latency(a, b, d) => sim.set_link_max_message_latency(a, b, d),
        Fault::LinkFailRate(a, b, p) => links.set_fail_rate(sim, a, b, p),
        Fault::Crash(host) => {
            if host == "master" && sim.is_host_running(host) {
                ON_MASTER_CRASH.with(|hook| {
                    if let Some(hook) = &*hook.borrow() {
                        hook();
                    }
                });
            }
            links.crash(sim, host, world_hosts(&env.variant));
            if host == "master" {
                *env.master.borrow_mut() = None;
                *env.master514.borrow_mut() = None;
            } else {
                env.slaves.borrow_mut().remove(host);
            }
        }
        Fault::Restart(host) => {
            if !sim.is_host_running(host) {
                sim.bounce(host);
            }
        }
        Fault::Shutdown => env.master_stop.set(true),
    }
}

/// The hosts a world registers.
fn world_hosts(variant: &Variant) -> &'static [&'static str] {
    if variant.upstream_514 {
        &["master", PROBER, OBSERVER]
    } else {
        &ALL_HOSTS
    }
}

/// Repairs and releases every link, restores the latency, and restarts every stopped host.
fn heal(sim: &mut turmoil::Sim<'_>, variant: &Variant) {
    let hosts = world_hosts(variant);
    for (i, a) in hosts.iter().enumerate() {
        for b in &hosts[i + 1..] {
            sim.release(*a, *b);
            sim.repair(*a, *b);
            sim.set_link_fail_rate(*a, *b, 0.0);
            sim.set_link_max_message_latency(*a, *b, Duration::from_millis(20));
        }
    }
    for h in hosts {
        if !sim.is_host_running(*h) {
            sim.bounce(*h);
        }
    }
}

/// The invariant checks; names as in docs/SPEC.md.
#[derive(Default)]
struct Checker {
    /// Since when the HA master has had more connection tasks than two per row.
    excess_since: Option<u64>,
    checks: u64,
    history: Vec<String>,
    master_bytes: u64,
    heartbeats: u64,
}

/// The master's and each slave's log, read inside their hosts' filesystems.
/// A slave's name, its min and max offset, and whether its log is a prefix of the master's from
/// its min offset (a slave that started empty holds the master's log from the start of the
/// master's last segment then, as upstream's classic slaves do).
type SlaveDigest = (&'static str, u64, u64, bool);

fn digests(env: &Env) -> Option<(u64, Vec<SlaveDigest>)> {
    let master = env.master.borrow();
    let m = master.as_ref()?;
    let mlog = m.log.upgrade()?;
    let m_max = mlog.max_offset();
    let mut out = Vec::new();
    for (name, s) in env.slaves.borrow().iter() {
        let Some(slog) = s.log.upgrade() else {
            continue;
        };
        let (s_min, s_max) = (slog.min_offset(), slog.max_offset());
        if s_max > m_max {
            out.push((*name, s_min, s_max, false));
            continue;
        }
        let sd = {
            let _g = s.fs.enter();
            slog.digest(s_min, s_max)
        };
        let md = {
            let _g = m.fs.enter();
            mlog.digest(s_min, s_max)
        };
        out.push((
            *name,
            s_min,
            s_max,
            matches!((sd, md), (Ok(a), Ok(b)) if a == b),
        ));
    }
    Some((m_max, out))
}

impl Checker {
    fn during(&mut self, env: &Env, variant: &Variant, read_logs: bool) {
        self.checks += 1;
        if variant.upstream_514 {
            // The emulated master holds no data: its max offset is 0, so any "ack" above 0 is
            // one the master recorded without checking it against its log.
            if let Some(emu) = env.master514.borrow().as_ref() {
                let acked = emu.snapshot().push2slave_max;
                if acked > 0 {
                    env.violate(
                        "AckBounded",
                        format!("push2SlaveMaxOffset {acked} > max offset 0"),
                    );
                }
            }
            return;
        }
        let now_ms = self.checks * ms(TICK) * 10;
        let master = env.master.borrow();
        let Some(m) = master.as_ref() else {
            self.excess_since = None;
            return;
        };
        if let Some(reg) = m.registry.upgrade() {
            if let Err(v) = reg.check_invariants() {
                env.violate(v.invariant, v.detail);
            }
        }
        if let (Some(ha), Some(log)) = (m.ha.upgrade(), m.log.upgrade()) {
            let max = log.max_offset();
            for e in ha.entries() {
                if e.ack.is_some_and(|a| a > max) {
                    env.violate(
                        "AckBounded",
                        format!(
                            "connection {} ({}) acked {:?} > max {max}",
                            e.id.get(),
                            e.peer,
                            e.ack
                        ),
                    );
                }
            }
            // Each connection runs a reader and a writer; the accept loop is the baseline. More
            // tasks than that for longer than a housekeeping interval means a task runs for a
            // connection no longer in the table.
            let expected = m.ha_base + 2 * ha.count();
            if m.ha_tasks.alive() > expected {
                let since = *self.excess_since.get_or_insert(now_ms);
                if now_ms - since > ha_config(variant).housekeeping_ms + 1_000 {
                    env.violate(
                        "NoRunningUnregistered",
                        format!(
                            "{} HA tasks alive for {} rows (baseline {}) for {} ms",
                            m.ha_tasks.alive(),
                            ha.count(),
                            m.ha_base,
                            now_ms - since
                        ),
                    );
                }
            } else {
                self.excess_since = None;
            }
        }
        drop(master);
        if read_logs {
            self.slave_is_prefix(env);
        }
    }

    fn slave_is_prefix(&mut self, env: &Env) {
        let Some((m_max, slaves)) = digests(env) else {
            return;
        };
        for (name, s_min, s_max, ok) in slaves {
            if !ok {
                env.violate(
                    "SlaveIsPrefix",
                    format!(
                        "{name}'s log [{s_min}, {s_max}) is not the master's bytes there (the master's ends at {m_max})"
                    ),
                );
            }
        }
    }

    fn settled(&mut self, env: &Env, variant: &Variant) {
        if variant.upstream_514 {
            return;
        }
        self.slave_is_prefix(env);
        let master = env.master.borrow();
        let Some(m) = master.as_ref() else {
            env.violate("Settles", "the master is not running after the heal".into());
            return;
        };
        let (Some(reg), Some(log)) = (m.registry.upgrade(), m.log.upgrade()) else {
            return;
        };
        self.master_bytes = log.max_offset();
        self.heartbeats = reg.heartbeats_total();
        // Replication settled: every slave holds the whole log.
        let mut holding = Vec::new();
        for (name, s) in env.slaves.borrow().iter() {
            let max = s.log.upgrade().map_or(0, |l| l.max_offset());
            holding.push(max);
            if max != log.max_offset() {
                env.violate(
                    "Settles",
                    format!("{name} holds {max} of the master's {}", log.max_offset()),
                );
            }
        }
        // wait_for_replication never over-reported: each confirmed offset is held by as many
        // slaves as were needed.
        for &(offset, needed) in env.replicated.borrow().iter() {
            let have = holding.iter().filter(|&&h| h >= offset).count();
            if have < needed {
                env.violate(
                    "ReplicationConfirmed",
                    format!("offset {offset} confirmed for {needed} slaves, {have} hold it"),
                );
            }
        }
        // Every send answered SUCCESS is in the master's log where its msgId says, whatever
        // crashed since: a slave held it, and a master sends slaves only synced bytes.
        {
            let _fs = m.fs.enter();
            for (offset, body) in env.acked_sends.borrow().iter() {
                let mut rec = Vec::new();
                let read = log.read(*offset, 4096, &mut rec);
                let stored = read.ok().and_then(|_| {
                    let len = u32::from_be_bytes(rec.get(..4)?.try_into().ok()?) as usize;
                    message::view(rec.get(..len)?).map(|v| v.body == &body[..])
                });
                if stored != Some(true) {
                    env.violate(
                        "AckedSendDurable",
                        format!(
                            "the send of {:?} acked at offset {offset} is not there (log ends at {})",
                            String::from_utf8_lossy(body),
                            log.max_offset()
                        ),
                    );
                }
            }
        }
        // The registry against what the clients last heard it accept.
        let tables = reg.snapshot();
        let claims = env.claims.borrow();
        let mut claimed_ids = BTreeSet::new();
        for (host, claim) in claims.iter() {
            let Some(claim) = claim else {
                env.violate("Settles", format!("{host} has no accepted heartbeat"));
                continue;
            };
            claimed_ids.insert(claim.client_id.clone());
            let channels: Vec<_> = tables
                .channels
                .iter()
                .filter(|(_, c)| c.client_id.as_deref() == Some(claim.client_id.as_str()))
                .collect();
            if channels.len() != 1 {
                env.violate(
                    "NoResurrection",
                    format!(
                        "{} has {} channels registered, 1 open",
                        claim.client_id,
                        channels.len()
                    ),
                );
            }
            for (id, c) in channels {
                if c.producer_groups != claim.producers || c.consumer_groups != claim.consumers {
                    let lost = claim.producers.difference(&c.producer_groups).count()
                        + claim.consumers.difference(&c.consumer_groups).count();
                    env.violate(
                        if lost > 0 {
                            "NoLostRegistration"
                        } else {
                            "NoResurrection"
                        },
                        format!(
                            "channel {id:?} of {}: registry {:?}/{:?}, client sent {:?}/{:?}",
                            claim.client_id,
                            c.producer_groups,
                            c.consumer_groups,
                            claim.producers,
                            claim.consumers
                        ),
                    );
                }
            }
            let indexed = tables
                .clients
                .get(&claim.client_id)
                .map_or(0, BTreeSet::len);
            if indexed != 1 {
                env.violate(
                    "IndexesConsistent",
                    format!("{} maps to {indexed} channels", claim.client_id),
                );
            }
        }
        for (id, c) in &tables.channels {
            if !c
                .client_id
                .as_ref()
                .is_some_and(|cid| claimed_ids.contains(cid))
            {
                env.violate(
                    "NoResurrection",
                    format!(
                        "channel {id:?} ({:?}) registered with no open client",
                        c.client_id
                    ),
                );
            }
        }
        let mut line = String::new();
        let _ = write!(
            line,
            "settled: log {} slaves {holding:?} channels {} pgroups {} cgroups {}",
            log.max_offset(),
            tables.channels.len(),
            tables.producers.len(),
            tables.consumers.len()
        );
        env.note(line.clone());
        self.history.push(line);
    }

    fn quiescent(&mut self, env: &Env, variant: &Variant) {
        // Only the server's side is counted: turmoil 0.7.2 keeps the table entry of a connect
        // that was refused or timed out on the connecting host, so a client host's count is
        // not its open sockets.
        let sockets = env.sockets.borrow().clone();
        if variant.upstream_514 {
            if env.master514.borrow().is_none() {
                env.note("5.1.4 master not running at quiescence".into());
            }
            if let Some(emu) = env.master514.borrow().as_ref() {
                let snap = emu.snapshot();
                env.note(format!("5.1.4 master at quiescence: {snap:?}"));
                if snap.list_len != 0 || snap.tasks != 0 {
                    env.violate(
                        "NoLeakAtQuiescence",
                        format!(
                            "no peer connected, but connectionList holds {} ({} dead) and {} tasks run",
                            snap.list_len, snap.dead_entries, snap.tasks
                        ),
                    );
                }
            }
            return;
        }
        let master = env.master.borrow();
        let Some(m) = master.as_ref() else {
            env.violate("Settles", "the master is not running at quiescence".into());
            return;
        };
        let (Some(reg), Some(ha)) = (m.registry.upgrade(), m.ha.upgrade()) else {
            return;
        };
        let tables = reg.snapshot();
        if !tables.channels.is_empty()
            || !tables.producers.is_empty()
            || !tables.consumers.is_empty()
        {
            env.violate(
                "NoLeakAtQuiescence",
                format!(
                    "every client left, registry keeps {} channels, {} producer and {} consumer groups",
                    tables.channels.len(),
                    tables.producers.len(),
                    tables.consumers.len()
                ),
            );
        }
        if m.client_tasks.alive() != m.client_base {
            env.violate(
                "NoLeakAtQuiescence",
                format!(
                    "{} client tasks alive, baseline {}",
                    m.client_tasks.alive(),
                    m.client_base
                ),
            );
        }
        let connected = env
            .slaves
            .borrow()
            .values()
            .filter(|s| {
                s.status
                    .connected
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .count();
        let rows = ha.count();
        if rows != connected || connected != SLAVES.len() {
            env.violate(
                "NoLeakAtQuiescence",
                format!("HA table has {rows} rows, {connected} slaves connected"),
            );
        }
        if m.ha_tasks.alive() != m.ha_base + 2 * rows {
            env.violate(
                "NoLeakAtQuiescence",
                format!(
                    "{} HA tasks alive for {rows} rows (baseline {})",
                    m.ha_tasks.alive(),
                    m.ha_base
                ),
            );
        }
        let on_master = sockets.get("master").copied().unwrap_or(0);
        if on_master != rows {
            env.violate(
                "NoLeakAtQuiescence",
                format!("{on_master} sockets open on the master for {rows} HA rows and no client"),
            );
        }
        let line = format!("quiescent: ha rows {rows}, {on_master} sockets on the master");
        env.note(line.clone());
        self.history.push(line);
    }

    fn ended(&mut self, env: &Env) {
        let on_master = env.sockets.borrow().get("master").copied().unwrap_or(0);
        if on_master != 0 {
            env.violate(
                "NoLeakAtQuiescence",
                format!("{on_master} sockets open on the master after it shut down"),
            );
        }
    }
}
