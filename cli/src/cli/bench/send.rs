//! `bench send`: producers' `SEND_MESSAGE_V2` over loopback to a whole in-process [`Broker`],
//! each figure beside the same messages stored through [`MessageLog::send`] directly in the
//! same process.
//!
//! # What it measures
//!
//! * **Baseline**: one thread calling [`MessageLog::send`] in a loop on a fresh store (no
//!   protocol, no socket, no response): upstream's checks, the queue offset, the record's
//!   encoding and its write into the commit log under the append lock.
//! * **Measured**: the same messages (same header, same body) sent as `SEND_MESSAGE_V2` frames
//!   to a [`Broker`] with `in_sync_replicas = 1`, pipelined: [`WINDOW`] requests in flight per
//!   connection, from 1, 4 and 16 connections. Every response must be `SUCCESS`. Bodies of
//!   1 KiB (the headline, at 16 connections), 256 B and 4 KiB.
//! * **Replicated**: a slave ([`Replica`], as `serve`'s `slave` runs it) on the same machine and
//!   `in_sync_replicas = 2`, so each response waits for the slave's ack of its message: latency
//!   send to acknowledged with one request in flight (beside the same broker without the wait),
//!   and throughput with a window.
//!
//! # How
//!
//! The broker runs on a multi-thread tokio runtime with a worker per core, as `serve` does; the
//! clients (and the slave) on a second runtime of the same size, standing in for other
//! processes. The baseline runs on the main thread. Each point runs in alternating rounds
//! (baseline, then each broker point), each on a fresh store in a temp dir (the default
//! [`StoreConfig::new`]: 1 GiB segments, `FlushPolicy::Manual`) with [`WARMUP`] unmeasured and
//! [`ROUND`] measured. A round's segment files are truncated before its store is closed, so
//! their bytes are never written back: the next round does not compete with the disk for the
//! last one's. CPU time of each side's threads is read from schedstat inside the measured
//! window, so the cost per message is known even when other work takes most of the machine.
//!
//! # What it is not
//!
//! Not a disk benchmark: without a slave nothing is synced, everything stays in the page cache.
//! Clients, broker and slave share the machine's cores.

use super::machine::{CLIENT_THREADS, Cpu, SERVER_THREADS, loadavg, round, runtime, sleep_until};
use super::pipeline::client_connection;
use bytes::Bytes;
use rmq_lifecycle::core::ha::HaConfig;
use rmq_lifecycle::core::message::{AUTO_CREATE_TOPIC, SendHeader, SendRules};
use rmq_lifecycle::core::remoting::code;
use rmq_lifecycle::net::Clock;
use rmq_lifecycle::net::ha::{MasterConfig, SlaveConfig};
use rmq_lifecycle::net::remoting::RemotingConfig;
use rmq_lifecycle::net::send::SendConfig;
use rmq_lifecycle::net::server::{Broker, Replica, ReplicaConfig, ServeConfig};
use rmq_lifecycle::registry::RegistryConfig;
use rmq_lifecycle::store::messages::MessageLog;
use rmq_lifecycle::store::{CommitLog, StoreConfig};
use serde::Serialize;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

/// Body sizes, the headline first, and the alternating rounds each gets.
const BODIES: [(usize, usize); 3] = [(1024, 3), (256, 2), (4096, 2)];
/// Connections of the pipelined points.
const CONNECTIONS: [usize; 3] = [1, 4, 16];
/// Connections of the headline point: what issue 14 asks for (16, as `bench heartbeat`'s).
const HEADLINE_CONNECTIONS: usize = 16;
/// Requests in flight per connection in the pipelined points.
const WINDOW: usize = 16;
/// Unmeasured start of each round (connections open, the topic created, caches warm).
const WARMUP: Duration = Duration::from_millis(250);
/// Measured part of each round.
const ROUND: Duration = Duration::from_secs(1);
/// Alternating rounds of the replicated points.
const REPLICATED_ROUNDS: usize = 2;
/// Body of the replicated points.
const REPLICATED_BODY: usize = 1024;
/// The target: the broker's rate at least this share of the baseline's.
const TARGET_RATIO: f64 = 0.7;
/// Queues the messages are spread over: connection `i` sends to queue `i % QUEUES`, the
/// baseline cycles through the same headers.
const QUEUES: usize = 4;
const TOPIC: &str = "BenchTopic";
const GROUP: &str = "bench-producer-group";
/// The born address the baseline gives its messages (the broker sees the clients' real ones,
/// also IPv4, so the records have the same length).
const BORN: ([u8; 4], u16) = ([127, 0, 0, 1], 50_000);
/// The store address the baseline gives its messages.
const STORE: ([u8; 4], u16) = ([127, 0, 0, 1], 10_911);

/// Runs every point and prints one JSON object (`json`) or a table.
pub(super) fn run(json: bool) -> ExitCode {
    let started = Instant::now();
    let load_before = loadavg();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rts = Runtimes {
        server: runtime(SERVER_THREADS, workers),
        client: runtime(CLIENT_THREADS, workers),
    };
    let outcome = (|| -> io::Result<Report> {
        let mut bodies = Vec::new();
        for (body, rounds) in BODIES {
            bodies.push(BodyPoints::measure(&rts, body, rounds)?);
        }
        progress("replicated (in_sync_replicas 2, a slave in this process)");
        let replicated = Replicated::measure(&rts)?;
        Ok(Report::new(
            bodies,
            replicated,
            workers,
            [load_before, loadavg()],
            started.elapsed(),
        ))
    })();
    drop(rts);
    let report = match outcome {
        Ok(report) => report,
        Err(error) => {
            eprintln!("bench send: {error}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serializes")
        );
    } else {
        report.print_table();
    }
    if report.failed() {
        eprintln!(
            "bench send: {} failed request(s) (first: {}), acknowledged != stored in {} round(s), \
             unclean shutdowns {}, replica identical: {}",
            report.errors,
            report.first_error.as_deref().unwrap_or("-"),
            report.unaccounted_rounds,
            report.unclean_shutdowns,
            report.replicated.replica_identical
        );
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn progress(what: &str) {
    eprintln!("bench send: {what} ...");
}

fn other(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}

struct Runtimes {
    server: Runtime,
    client: Runtime,
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The header of queue `queue`'s messages: what a Java producer sends (it picks the queue, names
/// the message, asks to wait for the store).
fn header(queue: usize) -> SendHeader {
    SendHeader {
        producer_group: GROUP.into(),
        topic: TOPIC.into(),
        default_topic: AUTO_CREATE_TOPIC.into(),
        default_topic_queue_nums: QUEUES as i32,
        queue_id: queue as i32,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        flag: 0,
        properties: Some(format!(
            "UNIQ_KEY\u{1}7F00000100002A9F0000000000{queue:06X}\u{2}WAIT\u{1}true\u{2}TAGS\u{1}TagA\u{2}"
        )),
        reconsume_times: 0,
        unit_mode: false,
        max_reconsume_times: None,
        batch: false,
    }
}

/// A body of `len` pseudo-random bytes (the CRC and the copies see no pattern).
fn body(len: usize) -> Bytes {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// The `SEND_MESSAGE_V2` frame of connection `i`, encoded once.
fn request_frame(i: usize, body: &Bytes) -> Bytes {
    let mut request = header(i % QUEUES).to_request(code::SEND_MESSAGE_V2, body.clone());
    request.opaque = i as i32;
    request.to_bytes().expect("a send frame encodes")
}

fn serve_config(dir: &Path, in_sync_replicas: usize) -> ServeConfig {
    ServeConfig {
        remoting: RemotingConfig {
            listen: loopback(),
            ..RemotingConfig::default()
        },
        registry: RegistryConfig::default(),
        notify: None,
        master: MasterConfig {
            listen: loopback(),
            ..MasterConfig::default()
        },
        send: SendConfig {
            in_sync_replicas,
            ..SendConfig::default()
        },
        store: StoreConfig::new(dir),
        metrics: None,
        grace: Duration::from_secs(5),
    }
}

/// Truncates the segment files in `dir` to nothing, so that their dirty pages are dropped rather
/// than written back (by the close's sync, or later by the kernel while another round runs).
/// Called once a round's bytes are no longer read.
fn discard_segments(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let segment = name.len() == 20 && name.as_encoded_bytes().iter().all(u8::is_ascii_digit);
        if segment {
            std::fs::OpenOptions::new()
                .write(true)
                .open(entry.path())?
                .set_len(0)?;
        }
    }
    Ok(())
}

/// CPU time the calling thread has used (schedstat; zero where unavailable).
fn own_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

// ---------------------------------------------------------------------------------------------
// The baseline

/// Stores messages through [`MessageLog::send`] on this thread for one round on a fresh store;
/// returns the messages stored in the measured window and this thread's CPU time in it.
fn direct_round(body: &Bytes) -> io::Result<Side> {
    let dir = tempfile::tempdir()?;
    let log = Arc::new(CommitLog::open(StoreConfig::new(dir.path()))?);
    let (messages, _) = MessageLog::open(log, SendRules::default(), std::process::id(), 7)?;
    let headers: Vec<SendHeader> = (0..QUEUES).map(header).collect();
    let (born, store) = (SocketAddr::from(BORN), SocketAddr::from(STORE));
    let clock = Clock::start();
    let measure_from = Instant::now() + WARMUP;
    let end = measure_from + ROUND;
    let mut side = Side::default();
    let (mut cpu0, mut measuring, mut sent) = (Duration::ZERO, false, 0u64);
    for i in 0.. {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if !measuring && now >= measure_from {
            (measuring, sent, cpu0) = (true, 0, own_cpu());
        }
        messages
            .send(&headers[i % QUEUES], Some(body), born, store, || {
                clock.wall_ms(clock.now())
            })
            .map_err(|refusal| other(format!("direct send refused: {refusal:?}")))?;
        sent += 1;
    }
    side.server_cpu = own_cpu().saturating_sub(cpu0);
    side.ok = sent;
    side.measured = ROUND;
    discard_segments(dir.path())?;
    drop(messages);
    Ok(side)
}

// ---------------------------------------------------------------------------------------------
// The client

/// One side of a point: counts, latencies and CPU summed over its rounds.
#[derive(Default)]
struct Side {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    /// `SUCCESS` responses over the connections' lives (warm-up and drain included).
    client_ok_total: u64,
    /// Rounds in which the broker stored a different number of messages than it acknowledged.
    unaccounted: usize,
    measured: Duration,
    latencies: Vec<u64>,
    /// CPU of the server runtime's threads (the baseline: of its own thread) in the windows.
    server_cpu: Duration,
    /// CPU of the client runtime's threads in the windows.
    client_cpu: Duration,
}

impl Side {
    fn per_sec(&self) -> f64 {
        self.ok as f64 / self.measured.as_secs_f64().max(1e-9)
    }

    fn cpu_us(d: Duration, n: u64) -> f64 {
        d.as_secs_f64() * 1e6 / n.max(1) as f64
    }

    fn quantile_us(&mut self, q: f64) -> f64 {
        super::pipeline::quantile_us(&mut self.latencies, q)
    }

    fn add(&mut self, other: Side) {
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.client_ok_total += other.client_ok_total;
        self.unaccounted += other.unaccounted;
        self.measured += other.measured;
        self.latencies.extend(other.latencies);
        self.server_cpu += other.server_cpu;
        self.client_cpu += other.client_cpu;
    }

    /// Runs `n` connections with `window` sends in flight each against `addr` for one round;
    /// returns the round and the `SUCCESS` responses over the connections' lives.
    fn drive(rts: &Runtimes, addr: SocketAddr, body: &Bytes, n: usize, window: usize) -> Side {
        let mut side = Side::default();
        let streams = rts.client.block_on(async {
            let mut streams = Vec::with_capacity(n);
            for _ in 0..n {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                streams.push(stream);
            }
            Ok::<_, io::Error>(streams)
        });
        let streams = match streams {
            Ok(streams) => streams,
            Err(error) => {
                side.errors += 1;
                side.first_error = Some(format!("connect: {error}"));
                return side;
            }
        };
        let measure_from = Instant::now() + WARMUP;
        let end = measure_from + ROUND;
        let conns: Vec<_> = streams
            .into_iter()
            .enumerate()
            .map(|(i, stream)| {
                rts.client.spawn(client_connection(
                    stream,
                    request_frame(i, body),
                    window,
                    measure_from,
                    end,
                    true,
                ))
            })
            .collect();
        sleep_until(measure_from);
        let cpu0 = Cpu::now();
        sleep_until(end);
        let cpu = Cpu::now().since(cpu0);
        let results = rts.client.block_on(async {
            let mut results = Vec::with_capacity(n);
            for conn in conns {
                results.push(conn.await.expect("a client task does not panic"));
            }
            results
        });
        side.measured = ROUND;
        side.server_cpu = cpu.server;
        side.client_cpu = cpu.client;
        for result in results {
            match result {
                Ok(r) => {
                    side.ok += r.ok;
                    side.errors += r.errors;
                    if side.first_error.is_none() {
                        side.first_error = r.first_error;
                    }
                    side.latencies.extend(r.latencies);
                    side.client_ok_total += r.ok_total;
                }
                Err(error) => {
                    side.errors += 1;
                    side.first_error
                        .get_or_insert_with(|| format!("a client connection failed: {error}"));
                }
            }
        }
        side
    }
}

/// Messages in `log`, all of one length (the bench's records differ only in queue and offsets):
/// the log's end over the first record's length, or `None` if it is not a whole number of them.
fn messages_in(log: &CommitLog) -> Option<u64> {
    let end = log.max_offset();
    if end == 0 {
        return Some(0);
    }
    let mut head = Vec::new();
    log.read(0, 4, &mut head).ok()?;
    let len = u32::from_be_bytes(head.get(..4)?.try_into().ok()?) as u64;
    (len > 0 && end % len == 0).then(|| end / len)
}

/// One round against a fresh broker (`in_sync_replicas` 1): started, driven, its acknowledged
/// sends compared with what it stored, its segments discarded, shut down.
fn broker_round(
    rts: &Runtimes,
    body: &Bytes,
    n: usize,
    window: usize,
    unclean: &mut usize,
) -> io::Result<Side> {
    let dir = tempfile::tempdir()?;
    let broker = rts
        .server
        .block_on(Broker::start(serve_config(dir.path(), 1)))
        .map_err(other)?;
    let mut side = Side::drive(rts, broker.local_addr(), body, n, window);
    if messages_in(broker.log()) != Some(side.client_ok_total) {
        side.unaccounted += 1;
    }
    discard_segments(dir.path())?;
    let report = rts.server.block_on(broker.shutdown());
    if !report.is_clean() {
        *unclean += 1;
        eprintln!("bench send: unclean broker shutdown: {report:?}");
    }
    Ok(side)
}

// ---------------------------------------------------------------------------------------------
// The points

/// One body size: the baseline and each pipelined point.
struct BodyPoints {
    body: usize,
    rounds: usize,
    direct: Side,
    /// By [`CONNECTIONS`].
    sent: Vec<Side>,
    unclean: usize,
}

impl BodyPoints {
    fn measure(rts: &Runtimes, body_len: usize, rounds: usize) -> io::Result<BodyPoints> {
        let body = body(body_len);
        let mut points = BodyPoints {
            body: body_len,
            rounds,
            direct: Side::default(),
            sent: CONNECTIONS.iter().map(|_| Side::default()).collect(),
            unclean: 0,
        };
        for r in 1..=rounds {
            progress(&format!(
                "{body_len} B bodies, round {r} of {rounds}: direct, then {CONNECTIONS:?} \
                 connection(s) with {WINDOW} in flight"
            ));
            points.direct.add(direct_round(&body)?);
            for (i, &n) in CONNECTIONS.iter().enumerate() {
                let side = broker_round(rts, &body, n, WINDOW, &mut points.unclean)?;
                points.sent[i].add(side);
            }
        }
        Ok(points)
    }
}

/// The replicated points: one broker with `in_sync_replicas` 2 and its slave, one without the
/// wait, each on its own store for all rounds.
struct Replicated {
    /// `in_sync_replicas` 1, one connection, window 1: the latency without the wait.
    alone_w1: Side,
    /// `in_sync_replicas` 2, one connection, window 1.
    synced_w1: Side,
    /// `in_sync_replicas` 2, window [`WINDOW`], by [`CONNECTIONS`].
    synced: Vec<Side>,
    identical: bool,
    unclean: usize,
}

impl Replicated {
    fn measure(rts: &Runtimes) -> io::Result<Replicated> {
        let body = body(REPLICATED_BODY);
        let (alone_dir, master_dir, slave_dir) = (
            tempfile::tempdir()?,
            tempfile::tempdir()?,
            tempfile::tempdir()?,
        );
        let start = |dir: &Path, isr| {
            rts.server
                .block_on(Broker::start(serve_config(dir, isr)))
                .map_err(other)
        };
        let alone = start(alone_dir.path(), 1)?;
        let master = start(master_dir.path(), 2)?;
        let replica = {
            let _in_client_runtime = rts.client.enter();
            Replica::start(ReplicaConfig {
                slave: SlaveConfig {
                    ha: HaConfig::default(),
                    ..SlaveConfig::new(master.ha_local_addr())
                },
                store: StoreConfig::new(slave_dir.path()),
                grace: Duration::from_secs(5),
            })
            .map_err(other)?
        };
        // The slave is connected and caught up before the first measured send.
        let deadline = Instant::now() + Duration::from_secs(10);
        while master.ha_registry().count() == 0 {
            if Instant::now() > deadline {
                return Err(other("the slave did not connect within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut r = Replicated {
            alone_w1: Side::default(),
            synced_w1: Side::default(),
            synced: CONNECTIONS.iter().map(|_| Side::default()).collect(),
            identical: false,
            unclean: 0,
        };
        for round in 1..=REPLICATED_ROUNDS {
            progress(&format!(
                "replicated round {round} of {REPLICATED_ROUNDS}: window 1 without and with the \
                 wait, then {CONNECTIONS:?} connection(s) with {WINDOW} in flight"
            ));
            r.alone_w1
                .add(Side::drive(rts, alone.local_addr(), &body, 1, 1));
            r.synced_w1
                .add(Side::drive(rts, master.local_addr(), &body, 1, 1));
            for (i, &n) in CONNECTIONS.iter().enumerate() {
                r.synced[i].add(Side::drive(rts, master.local_addr(), &body, n, WINDOW));
            }
        }
        // Every acknowledged message is in the slave's log, byte for byte.
        let end = master.log().max_offset();
        rts.server
            .block_on(
                master
                    .master()
                    .wait_for_replication(end, 1, Duration::from_secs(10)),
            )
            .map_err(other)?;
        let slave_log = replica.log().clone();
        r.identical = slave_log.max_offset() >= end
            && slave_log.digest(0, end)? == master.log().digest(0, end)?;
        let acked: u64 = [&r.synced_w1]
            .into_iter()
            .chain(&r.synced)
            .map(|s| s.client_ok_total)
            .sum();
        if messages_in(master.log()) != Some(acked) {
            r.synced_w1.unaccounted += 1;
        }
        if messages_in(alone.log()) != Some(r.alone_w1.client_ok_total) {
            r.alone_w1.unaccounted += 1;
        }
        drop(slave_log);
        let replica_report = rts.client.block_on(replica.shutdown());
        for dir in [&alone_dir, &master_dir, &slave_dir] {
            discard_segments(dir.path())?;
        }
        let clean = rts.server.block_on(alone.shutdown()).is_clean()
            & rts.server.block_on(master.shutdown()).is_clean()
            & replica_report.is_clean();
        r.unclean += usize::from(!clean);
        Ok(r)
    }
}

// ---------------------------------------------------------------------------------------------
// Report

/// One pipelined point against the baseline of its body size.
#[derive(Serialize)]
struct Point {
    connections: usize,
    window: usize,
    messages_per_sec: f64,
    /// messages_per_sec / the baseline's (points that have one).
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_met: Option<bool>,
    /// Server-runtime CPU per message; baseline_cpu_us / server_cpu_us is `cpu_ratio`.
    server_cpu_us: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_ratio: Option<f64>,
    /// Client-runtime CPU per message (the producers' side, sharing the cores; in the
    /// replicated points the slave's too).
    client_cpu_us: f64,
    /// Send to response with the window full.
    p50_us: f64,
    p99_us: f64,
}

/// One body size.
#[derive(Serialize)]
struct BodyReport {
    body_bytes: usize,
    rounds: usize,
    baseline_messages_per_sec: f64,
    /// CPU of the baseline's thread per message.
    baseline_cpu_us: f64,
    points: Vec<Point>,
}

#[derive(Serialize)]
struct Latency {
    p50_us: f64,
    p99_us: f64,
    messages_per_sec: f64,
}

#[derive(Serialize)]
struct ReplicatedReport {
    body_bytes: usize,
    rounds: usize,
    /// One connection, one send in flight: send to response, `in_sync_replicas` 1.
    not_replicated_window_1: Latency,
    /// The same with `in_sync_replicas` 2: send to acknowledged by the slave.
    replicated_window_1: Latency,
    /// `in_sync_replicas` 2 with [`WINDOW`] in flight per connection, by connections.
    replicated_windowed: Vec<Point>,
    replica_identical: bool,
}

/// The headline: 1 KiB bodies, [`HEADLINE_CONNECTIONS`] connections.
#[derive(Serialize)]
struct Target {
    body_bytes: usize,
    connections: usize,
    window: usize,
    ratio: f64,
    min_ratio: f64,
    met: bool,
    /// The headline's CPU ratio (baseline CPU per message over the broker's): what the ratio
    /// would be if the broker had the baseline's one core to itself.
    cpu_ratio: f64,
    /// Points (all bodies and connection counts) at or above the target.
    points_met: usize,
    points: usize,
}

#[derive(Serialize)]
struct Report {
    target: Target,
    bodies: Vec<BodyReport>,
    replicated: ReplicatedReport,
    /// Non-`SUCCESS` responses and failed connections inside measured windows (want 0).
    errors: u64,
    first_error: Option<String>,
    /// Rounds in which the broker's log did not hold exactly the messages it acknowledged
    /// (want 0).
    unaccounted_rounds: usize,
    /// Broker or slave shutdowns that left tasks, channels or a failed flush (want 0).
    unclean_shutdowns: usize,
    worker_threads: usize,
    loadavg_1m: [f64; 2],
    round_s: f64,
    warmup_s: f64,
    wall_s: f64,
    notes: &'static str,
}

const NOTES: &str = "Baseline: MessageLog::send called in a loop on the main thread on a fresh \
store (StoreConfig::new in a temp dir: 1 GiB segments, FlushPolicy::Manual), the same headers \
(topic BenchTopic auto-created from TBW102, queue i % 4, UNIQ_KEY, WAIT=true, TAGS) and body; no \
protocol, no socket, no response. Measured: the same messages as SEND_MESSAGE_V2 frames (encoded \
once per connection) over loopback to net::server::Broker (in_sync_replicas 1, a fresh store each \
round), 16 requests in flight per connection, from 1, 4 and 16 connections (the target is judged \
at 1 KiB, 16 connections); a response counts if it arrives in the measured second and is \
SUCCESS. The broker runs on one multi-thread tokio runtime with a worker per core, the clients (and the slave) on a second one of the same size, same \
process, so clients and broker share the cores while the baseline has one thread to itself. \
Rounds alternate baseline and broker points: 0.25 s unmeasured, then 1 s measured; a round's \
segments are truncated before its store closes (never written back). server_cpu_us / \
baseline_cpu_us: CPU time of the server runtime's threads / the baseline's thread (schedstat) in \
the measured windows per message; cpu_ratio = baseline_cpu_us / server_cpu_us. Latencies: send to \
response, nearest-rank over all samples of a point; with a window they include queueing behind the \
connection's earlier sends. Replicated: a Replica (the slave) in this process connected to a \
broker with in_sync_replicas 2, its own store; each response waits for the slave's ack of its \
message (a master sends slaves only synced bytes: with FlushPolicy::Manual that includes a sync of \
the master's log); one connection answers its sends in order, so a window on one connection does \
not overlap waits. unaccounted_rounds: rounds whose log did not hold exactly the messages \
acknowledged SUCCESS; replica_identical: the slave's log equals the master's to its end. Timings \
are from a shared, noisy machine: compare ratios, not absolute figures, across runs.";

impl Report {
    fn new(
        mut bodies: Vec<BodyPoints>,
        mut replicated: Replicated,
        worker_threads: usize,
        loadavg_1m: [f64; 2],
        wall: Duration,
    ) -> Report {
        let point = |side: &mut Side, n: usize, window: usize, base: Option<(f64, f64)>| {
            let (rate, cpu) = (side.per_sec(), Side::cpu_us(side.server_cpu, side.ok));
            let ratio = base.map(|(b, _)| rate / b);
            Point {
                connections: n,
                window,
                messages_per_sec: rate.round(),
                ratio: ratio.map(|r| round(r, 3)),
                target_met: ratio.map(|r| r >= TARGET_RATIO),
                server_cpu_us: round(cpu, 2),
                cpu_ratio: base.map(|(_, b)| round(b / cpu, 3)),
                client_cpu_us: round(Side::cpu_us(side.client_cpu, side.ok), 2),
                p50_us: round(side.quantile_us(0.50), 1),
                p99_us: round(side.quantile_us(0.99), 1),
            }
        };
        let mut errors = 0;
        let mut first_error = None;
        let mut unaccounted = 0;
        let mut unclean = replicated.unclean;
        let mut tally = |s: &mut Side| {
            errors += s.errors;
            unaccounted += s.unaccounted;
            if first_error.is_none() {
                first_error = s.first_error.take();
            }
        };
        let mut body_reports = Vec::new();
        for b in &mut bodies {
            tally(&mut b.direct);
            unclean += b.unclean;
            let base_rate = b.direct.per_sec();
            let base_cpu = Side::cpu_us(b.direct.server_cpu, b.direct.ok);
            let points = CONNECTIONS
                .iter()
                .zip(&mut b.sent)
                .map(|(&n, s)| {
                    tally(s);
                    point(s, n, WINDOW, Some((base_rate, base_cpu)))
                })
                .collect();
            body_reports.push(BodyReport {
                body_bytes: b.body,
                rounds: b.rounds,
                baseline_messages_per_sec: base_rate.round(),
                baseline_cpu_us: round(base_cpu, 2),
                points,
            });
        }
        let mut latency = |s: &mut Side| {
            tally(s);
            Latency {
                p50_us: round(s.quantile_us(0.50), 1),
                p99_us: round(s.quantile_us(0.99), 1),
                messages_per_sec: s.per_sec().round(),
            }
        };
        let not_replicated_window_1 = latency(&mut replicated.alone_w1);
        let replicated_window_1 = latency(&mut replicated.synced_w1);
        let replicated_windowed = CONNECTIONS
            .iter()
            .zip(&mut replicated.synced)
            .map(|(&n, s)| {
                tally(s);
                point(s, n, WINDOW, None)
            })
            .collect();
        let all: Vec<&Point> = body_reports.iter().flat_map(|b| &b.points).collect();
        let headline = body_reports
            .iter()
            .find(|b| b.body_bytes == BODIES[0].0)
            .and_then(|b| {
                b.points
                    .iter()
                    .find(|p| p.connections == HEADLINE_CONNECTIONS)
            })
            .expect("the headline point is measured");
        let target = Target {
            body_bytes: BODIES[0].0,
            connections: headline.connections,
            window: headline.window,
            ratio: headline.ratio.unwrap_or(0.0),
            min_ratio: TARGET_RATIO,
            met: headline.target_met == Some(true),
            cpu_ratio: headline.cpu_ratio.unwrap_or(0.0),
            points_met: all.iter().filter(|p| p.target_met == Some(true)).count(),
            points: all.len(),
        };
        Report {
            target,
            bodies: body_reports,
            replicated: ReplicatedReport {
                body_bytes: REPLICATED_BODY,
                rounds: REPLICATED_ROUNDS,
                not_replicated_window_1,
                replicated_window_1,
                replicated_windowed,
                replica_identical: replicated.identical,
            },
            errors,
            first_error,
            unaccounted_rounds: unaccounted,
            unclean_shutdowns: unclean,
            worker_threads,
            loadavg_1m,
            round_s: ROUND.as_secs_f64(),
            warmup_s: WARMUP.as_secs_f64(),
            wall_s: round(wall.as_secs_f64(), 1),
            notes: NOTES,
        }
    }

    fn failed(&self) -> bool {
        self.errors > 0
            || self.unaccounted_rounds > 0
            || self.unclean_shutdowns > 0
            || !self.replicated.replica_identical
    }

    fn print_table(&self) {
        println!(
            "{:<26} {:>9} {:>9} {:>6}   {:>9} {:>9} {:>9} {:>6}   {:>8} {:>8}",
            "window 16 per connection",
            "broker/s",
            "direct/s",
            "ratio",
            "srv CPU",
            "direct",
            "clients",
            "ratio",
            "p50",
            "p99"
        );
        for b in &self.bodies {
            for p in &b.points {
                println!(
                    "{:<26} {:>9.0} {:>9.0} {:>6.3}{} {:>6.2} us {:>6.2} us {:>6.2} us {:>6.3}   \
                     {:>5.0} us {:>5.0} us",
                    format!("{} B, {} connection(s)", b.body_bytes, p.connections),
                    p.messages_per_sec,
                    b.baseline_messages_per_sec,
                    p.ratio.unwrap_or(0.0),
                    if p.target_met == Some(true) {
                        "  "
                    } else {
                        " !"
                    },
                    p.server_cpu_us,
                    b.baseline_cpu_us,
                    p.client_cpu_us,
                    p.cpu_ratio.unwrap_or(0.0),
                    p.p50_us,
                    p.p99_us
                );
            }
        }
        println!(
            "(CPU per message: the broker's runtime, the direct loop's thread, the clients' runtime; \
             ratio = direct / broker)"
        );
        let r = &self.replicated;
        println!(
            "\nreplicated, {} B bodies (a slave in this process)    msgs/s        p50        p99",
            r.body_bytes
        );
        for (name, l) in [
            (
                "1 connection, window 1, no wait",
                &r.not_replicated_window_1,
            ),
            ("1 connection, window 1, in_sync 2", &r.replicated_window_1),
        ] {
            println!(
                "{name:<48} {:>9.0} {:>7.1} us {:>7.1} us",
                l.messages_per_sec, l.p50_us, l.p99_us
            );
        }
        for p in &r.replicated_windowed {
            println!(
                "{:<48} {:>9.0} {:>7.1} us {:>7.1} us",
                format!(
                    "{} connection(s), window {}, in_sync 2",
                    p.connections, p.window
                ),
                p.messages_per_sec,
                p.p50_us,
                p.p99_us
            );
        }
        let t = &self.target;
        println!(
            "\ntarget at {} B, {} connections (window {}): {:.3} of direct (want >= {}): {} \
             (CPU ratio {:.3}); {} of {} points meet it (! marks the others)",
            t.body_bytes,
            t.connections,
            t.window,
            t.ratio,
            t.min_ratio,
            if t.met { "met" } else { "NOT met" },
            t.cpu_ratio,
            t.points_met,
            t.points
        );
        println!(
            "\nerrors {}, acknowledged != stored in {} round(s), unclean shutdowns {}, replica \
             identical {}; load {:.1} -> {:.1}; wall {:.1} s",
            self.errors,
            self.unaccounted_rounds,
            self.unclean_shutdowns,
            r.replica_identical,
            self.loadavg_1m[0],
            self.loadavg_1m[1],
            self.wall_s
        );
    }
}
