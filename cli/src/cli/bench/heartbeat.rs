//! `bench heartbeat`: `HEART_BEAT` round trips over loopback against the client-management
//! listener ([`RemotingServer`]), each figure beside the same client against a trivial echo
//! server in the same process.
//!
//! # What it measures
//!
//! * **Heartbeats per second** from 1, 16 and 256 concurrent connections, closed loop: each
//!   connection sends one producer heartbeat (a `HEART_BEAT` frame whose body is encoded once)
//!   and waits for its response before sending the next (a window of 1).
//! * **Latency at 16 connections**: p50 and p99 of those round trips, send to response decoded.
//! * **Pipelined throughput** at 16 connections with a window of 16 requests per connection.
//!
//! # How
//!
//! The server side (our listener, or the echo server) runs on its own multi-thread tokio runtime
//! with one worker per core, as `serve` does; the clients run on a second runtime of the same
//! size, standing in for the client processes. The echo server decodes every request with the
//! same [`FrameDecoder`] and writes back one fixed success response per request (byte for byte
//! the size of ours), so it costs the wire, the runtime and the frame decode alone. Each point
//! runs in [`ROUNDS`] alternating rounds (ours, then echo), each [`WARMUP`] unmeasured and then
//! [`ROUND`] measured, so noise from other work on the machine falls on both; the pipelined
//! point runs [`PIPELINED_ROUNDS`] and its floor is judged on the median of the paired rounds'
//! ratios. A response counts when it arrives inside the measured window and its code is `SUCCESS`.
//!
//! # What it is not
//!
//! Not a broker benchmark: one producer group, no consumer groups, no other request codes, and
//! the clients share the machine's cores with the server, so the absolute figures are lower than
//! with clients on other hosts. The ratio to the echo baseline is the figure that travels.

use super::machine::{
    CLIENT_THREADS, SERVER_THREADS, listen_overflows, loadavg, round, runtime, sleep_until,
    thread_cpu,
};
use super::pipeline::client_connection;
use bytes::{Bytes, BytesMut};
use rmq_lifecycle::core::HeartbeatData;
use rmq_lifecycle::core::remoting::{FrameDecoder, RemotingCommand, code};
use rmq_lifecycle::lifecycle::TaskGauge;
use rmq_lifecycle::net::Clock;
use rmq_lifecycle::net::remoting::{RemotingConfig, RemotingServer};
use rmq_lifecycle::registry::ClientRegistry;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// Concurrent connections per point.
const CONNECTIONS: [usize; 3] = [1, 16, 256];
/// The point whose latencies are reported, and the one run pipelined.
const LATENCY_AT: usize = 16;
/// Requests in flight per connection in the pipelined run.
const PIPELINE_WINDOW: usize = 16;
/// Alternating ours/echo rounds per closed-loop point.
const ROUNDS: usize = 3;
/// Alternating ours/echo rounds of the pipelined point, whose ratio is judged against the floor:
/// the median of five paired rounds outvotes two rounds that a burst of other work fell on.
const PIPELINED_ROUNDS: usize = 5;
/// Unmeasured start of each round (connections opened, caches and the registry warm).
const WARMUP: Duration = Duration::from_millis(250);
/// Measured part of each round.
const ROUND: Duration = Duration::from_secs(1);
/// Connections opened and not yet accepted at most, well under the accept backlog (128).
const CONNECT_AHEAD: u64 = 32;
/// The producer group every connection's client runs.
const GROUP: &str = "bench-producer-group";

/// Runs every point and prints one JSON object (`json`) or a table.
pub(super) fn run(json: bool) -> ExitCode {
    let started = Instant::now();
    let load_before = loadavg();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let server_rt = runtime(SERVER_THREADS, workers);
    let client_rt = runtime(CLIENT_THREADS, workers);

    let overflows0 = listen_overflows();
    let registry = Arc::new(ClientRegistry::default());
    let tasks = TaskGauge::new();
    let server = server_rt
        .block_on(RemotingServer::bind(
            RemotingConfig {
                listen: loopback(),
                ..RemotingConfig::default()
            },
            registry.clone(),
            Clock::start(),
            tasks.clone(),
        ))
        .expect("bind the listener on loopback");
    let echo = server_rt
        .block_on(EchoServer::bind())
        .expect("bind the echo server on loopback");
    let stats = server.stats().clone();
    let echo_accepted = echo.accepted.clone();
    let targets = Targets {
        ours: Target {
            addr: server.local_addr(),
            accepted: Arc::new(move || stats.accepted_total()),
        },
        echo: Target {
            addr: echo.addr,
            accepted: Arc::new(move || echo_accepted.load(Ordering::Relaxed)),
        },
    };

    let mut points = Vec::new();
    for n in CONNECTIONS {
        progress(&format!("{n} connection(s), window 1"));
        points.push(Point::measure(
            &client_rt, &targets, &registry, n, 1, ROUNDS,
        ));
    }
    progress(&format!(
        "{LATENCY_AT} connections, window {PIPELINE_WINDOW}"
    ));
    let pipelined = Point::measure(
        &client_rt,
        &targets,
        &registry,
        LATENCY_AT,
        PIPELINE_WINDOW,
        PIPELINED_ROUNDS,
    );

    let busy = server.stats().busy_total();
    let shutdown = server_rt.block_on(server.shutdown(Duration::from_secs(5)));
    drop(echo);
    drop(client_rt);
    drop(server_rt);

    let mut report = Report::new(
        points,
        pipelined,
        busy,
        shutdown.tasks_left,
        started.elapsed(),
    );
    report.loadavg_1m = [load_before, loadavg()];
    report.worker_threads = workers;
    report.listen_overflows = listen_overflows().saturating_sub(overflows0);
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
            "bench heartbeat: {} failed request(s), {} task(s) left after shutdown",
            report.errors, report.server_tasks_left
        );
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn progress(what: &str) {
    eprintln!("bench heartbeat: {what} ...");
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The two servers every point is run against.
struct Targets {
    ours: Target,
    echo: Target,
}

/// A server to connect to, and its count of accepted connections.
struct Target {
    addr: SocketAddr,
    accepted: Arc<dyn Fn() -> u64 + Send + Sync>,
}

/// The heartbeat frame of connection `i`: a producer heartbeat of client `bench-client-{i}` in
/// [`GROUP`], encoded once.
fn request_frame(i: usize) -> Bytes {
    let body = HeartbeatData::producers(format!("bench-client-{i}"), [GROUP]).to_json();
    let mut request = RemotingCommand::request(code::HEART_BEAT);
    request.opaque = i as i32;
    request.body = Some(body.into());
    request.to_bytes().expect("a small frame encodes")
}

/// The response our listener sends to a successful producer heartbeat, which the echo server
/// sends to every request.
fn success_response() -> Bytes {
    let mut response = RemotingCommand::response_to(
        &RemotingCommand::request(code::HEART_BEAT),
        code::SUCCESS,
        None,
    );
    response
        .ext_fields
        .insert("IS_SUPPORT_HEART_BEAT_V2", "true");
    response.ext_fields.insert("IS_SUB_CHANGE", "false");
    response.to_bytes().expect("a small frame encodes")
}

/// A trivial server: decode each request with [`FrameDecoder`], write back a fixed response.
struct EchoServer {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl EchoServer {
    async fn bind() -> io::Result<EchoServer> {
        let listener = TcpListener::bind(loopback()).await?;
        let addr = listener.local_addr()?;
        let response = success_response();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                let _ = stream.set_nodelay(true);
                tokio::spawn(echo_connection(stream, response.clone()));
            }
        });
        Ok(EchoServer {
            addr,
            accepted,
            accept,
        })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// One echo connection: the responses to a read's requests leave in one write, as our
/// listener's do.
async fn echo_connection(mut stream: TcpStream, response: Bytes) {
    let mut decoder = FrameDecoder::default();
    let mut inbuf = BytesMut::with_capacity(16 * 1024);
    let mut outbuf = BytesMut::new();
    loop {
        if inbuf.capacity() - inbuf.len() < 1024 {
            inbuf.reserve(16 * 1024);
        }
        match stream.read_buf(&mut inbuf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            match decoder.decode(&mut inbuf) {
                Ok(Some(_request)) => outbuf.extend_from_slice(&response),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        if stream.write_all(&outbuf).await.is_err() {
            return;
        }
        outbuf.clear();
    }
}

/// One side of a point: counts and latencies summed over its rounds.
#[derive(Default)]
struct Side {
    ok: u64,
    /// Successful requests of each round, in order.
    per_round: Vec<u64>,
    errors: u64,
    measured: Duration,
    latencies: Vec<u64>,
    /// CPU time of the server runtime's threads inside the measured windows.
    server_cpu: Duration,
    /// CPU time of the client runtime's threads inside the measured windows.
    client_cpu: Duration,
}

impl Side {
    fn per_sec(&self) -> f64 {
        self.ok as f64 / self.measured.as_secs_f64()
    }

    /// Server-thread CPU microseconds per successful request.
    fn server_cpu_us(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.ok.max(1) as f64
    }

    /// Client-thread CPU microseconds per successful request.
    fn client_cpu_us(&self) -> f64 {
        self.client_cpu.as_secs_f64() * 1e6 / self.ok.max(1) as f64
    }

    fn quantile_us(&mut self, q: f64) -> f64 {
        super::pipeline::quantile_us(&mut self.latencies, q)
    }

    /// Runs `n` connections with `window` requests in flight each against `target` for one
    /// round.
    fn round(&mut self, rt: &Runtime, target: &Target, n: usize, window: usize) {
        // Connected before the clock starts, never more than CONNECT_AHEAD ahead of the
        // server's accepts: an overflowing accept backlog (128) drops the SYN, and that
        // connection would start 1 s late, after the retransmit.
        let accepted0 = (target.accepted)();
        let streams = rt.block_on(async {
            let mut streams = Vec::with_capacity(n);
            for i in 0..n as u64 {
                while i >= (target.accepted)() - accepted0 + CONNECT_AHEAD {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let stream = TcpStream::connect(target.addr).await?;
                stream.set_nodelay(true)?;
                streams.push(stream);
            }
            Ok::<_, io::Error>(streams)
        });
        let streams = match streams {
            Ok(streams) => streams,
            Err(error) => {
                eprintln!("bench heartbeat: connect failed: {error}");
                self.errors += 1;
                return;
            }
        };
        let measure_from = Instant::now() + WARMUP;
        let end = measure_from + ROUND;
        let conns: Vec<_> = streams
            .into_iter()
            .enumerate()
            .map(|(i, stream)| {
                rt.spawn(client_connection(
                    stream,
                    request_frame(i),
                    window,
                    measure_from,
                    end,
                    window == 1,
                ))
            })
            .collect();
        sleep_until(measure_from);
        let (server0, client0) = (thread_cpu(SERVER_THREADS), thread_cpu(CLIENT_THREADS));
        sleep_until(end);
        self.server_cpu += thread_cpu(SERVER_THREADS).saturating_sub(server0);
        self.client_cpu += thread_cpu(CLIENT_THREADS).saturating_sub(client0);
        let results = rt.block_on(async {
            let mut results = Vec::with_capacity(n);
            for conn in conns {
                results.push(conn.await.expect("a client task does not panic"));
            }
            results
        });
        self.measured += ROUND;
        let ok0 = self.ok;
        for result in results {
            match result {
                Ok(r) => {
                    self.ok += r.ok;
                    self.errors += r.errors;
                    self.latencies.extend(r.latencies);
                }
                Err(error) => {
                    eprintln!("bench heartbeat: a client connection failed: {error}");
                    self.errors += 1;
                }
            }
        }
        self.per_round.push(self.ok - ok0);
    }
}

/// One point: `connections` connections with `window` in flight each, against both servers.
struct Point {
    connections: usize,
    window: usize,
    ours: Side,
    echo: Side,
}

impl Point {
    /// Ours / echo of each pair of rounds (run back to back, so they share the machine's
    /// state), in order.
    fn round_ratios(&self) -> Vec<f64> {
        let pairs = self.ours.per_round.iter().zip(&self.echo.per_round);
        pairs.map(|(&o, &e)| o as f64 / e.max(1) as f64).collect()
    }

    /// The median of [`Point::round_ratios`].
    fn median_round_ratio(&self) -> f64 {
        let mut r = self.round_ratios();
        r.sort_by(f64::total_cmp);
        match r.len() {
            0 => 0.0,
            n if n % 2 == 1 => r[n / 2],
            n => (r[n / 2 - 1] + r[n / 2]) / 2.0,
        }
    }

    fn measure(
        rt: &Runtime,
        targets: &Targets,
        registry: &ClientRegistry,
        connections: usize,
        window: usize,
        rounds: usize,
    ) -> Point {
        let mut point = Point {
            connections,
            window,
            ours: Side::default(),
            echo: Side::default(),
        };
        for _ in 0..rounds {
            point.ours.round(rt, &targets.ours, connections, window);
            wait_closed(registry);
            point.echo.round(rt, &targets.echo, connections, window);
        }
        point
    }
}

/// Waits (up to 2 s) until the listener has closed every channel of the last round, so that a
/// round does not pay for the previous one's teardown.
fn wait_closed(registry: &ClientRegistry) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while registry.channel_count() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Throughput of one point, ours beside the echo baseline.
#[derive(Serialize)]
struct Throughput {
    heartbeats_per_sec: f64,
    echo_per_sec: f64,
    /// Ours / echo over all rounds together.
    ratio: f64,
    /// Ours / echo of each pair of rounds, and their median.
    round_ratios: Vec<f64>,
    median_round_ratio: f64,
    /// Server-runtime CPU per heartbeat (ours) and per request (echo), and echo / ours: the
    /// same comparison as `ratio`, without the share of the machine other work left us.
    server_cpu_us: f64,
    echo_server_cpu_us: f64,
    cpu_ratio: f64,
    /// Client-runtime CPU per request, ours and echo (the same client code).
    client_cpu_us: f64,
    echo_client_cpu_us: f64,
}

impl Throughput {
    fn of(point: &Point) -> Self {
        let (ours, echo) = (point.ours.per_sec(), point.echo.per_sec());
        let (cpu, echo_cpu) = (point.ours.server_cpu_us(), point.echo.server_cpu_us());
        Throughput {
            heartbeats_per_sec: ours.round(),
            echo_per_sec: echo.round(),
            ratio: round(ours / echo, 3),
            round_ratios: point
                .round_ratios()
                .into_iter()
                .map(|r| round(r, 3))
                .collect(),
            median_round_ratio: round(point.median_round_ratio(), 3),
            server_cpu_us: round(cpu, 2),
            echo_server_cpu_us: round(echo_cpu, 2),
            cpu_ratio: round(echo_cpu / cpu, 3),
            client_cpu_us: round(point.ours.client_cpu_us(), 2),
            echo_client_cpu_us: round(point.echo.client_cpu_us(), 2),
        }
    }
}

/// The pipelined point.
/// The floor at 16 connections: at least [`FLOOR_PER_SEC`] heartbeats/s and at least
/// [`FLOOR_RATIO`] of the echo baseline (what "What real clients need" asks of the pipelined
/// point; the bench only reports it, as with every figure). Judged on the pipelined run: with one request in flight
/// per connection the echo baseline itself stays under 100,000/s on 2 shared cores (the wire and
/// the runtime's wake-ups bound it, not the listener), while a RocketMQ client multiplexes its
/// requests on one connection by opaque. The closed-loop figures are reported beside it. The
/// ratio judged is the median over [`PIPELINED_ROUNDS`] paired rounds (the machine is shared:
/// the ratio of the sums moves with whichever side a burst of other work fell on).
#[derive(Serialize)]
struct Floor {
    connections: usize,
    window: usize,
    heartbeats_per_sec: f64,
    ratio: f64,
    min_heartbeats_per_sec: f64,
    min_ratio: f64,
    met: bool,
}

const FLOOR_PER_SEC: f64 = 100_000.0;
const FLOOR_RATIO: f64 = 0.85;

#[derive(Serialize)]
struct Pipelined {
    connections: usize,
    window: usize,
    #[serde(flatten)]
    throughput: Throughput,
}

/// Everything printed; the first five keys are the issue's.
#[derive(Serialize)]
struct Report {
    connections: BTreeMap<String, Throughput>,
    p50_us_16: f64,
    p99_us_16: f64,
    echo_p50_us_16: f64,
    echo_p99_us_16: f64,
    /// One connection: a single request's round trip, without queueing behind others.
    p50_us_1: f64,
    echo_p50_us_1: f64,
    pipelined: Pipelined,
    floor: Floor,
    /// Responses other than `SUCCESS`, plus failed connections, over all runs (want 0).
    errors: u64,
    /// Heartbeats the listener answered `SYSTEM_BUSY` over the whole run (those inside a
    /// measured window are in `errors` too).
    busy: u64,
    /// Listener tasks alive after its shutdown (want 0).
    server_tasks_left: usize,
    /// Connections the kernel dropped on a full accept queue during the run (want 0;
    /// namespace-wide, so other work on the machine can add to it).
    listen_overflows: u64,
    /// Worker threads of each runtime (server, client).
    worker_threads: usize,
    /// The machine's 1-minute load average before and after the run.
    loadavg_1m: [f64; 2],
    rounds: usize,
    pipelined_rounds: usize,
    round_s: f64,
    warmup_s: f64,
    wall_s: f64,
    notes: &'static str,
}

const NOTES: &str = "Closed loop: every connection keeps one HEART_BEAT in flight (a producer \
heartbeat of its own client id in one shared producer group, JSON header, frame encoded once) and \
sends the next as soon as the response arrives; 'pipelined' keeps 16 in flight per connection. \
Server (our RemotingServer, default config: heartbeat workers = cores) and the echo baseline run \
on one multi-thread tokio runtime with a worker per core; the clients run on a second runtime of \
the same size in the same process, so clients and server share the 2 cores. Echo baseline: \
decodes each request with the same FrameDecoder and writes back a fixed SUCCESS frame of the same \
size as ours, the responses to one read in one write (as ours), no registry. Each point: 3 alternating rounds (ours, echo; 5 for the pipelined point, \
whose floor is judged on the median of the 5 paired round ratios), \
connections opened first (at most 32 ahead of the server's accepts, well under its accept backlog \
of 128, so that no SYN is dropped: listen_overflows, want 0), then 0.25 s unmeasured and 1 s \
measured; a response counts if it is SUCCESS and arrives in the measured second. Latency: send to \
response read, window 1, all samples of the point, nearest-rank quantiles; with 16 connections in \
closed loop on 2 shared cores the p50 is mostly queueing (about 16 / throughput, Little's law); \
p50_us_1 is one request alone. server_cpu_us / client_cpu_us: CPU time of the server / client \
runtime's threads (schedstat) inside the measured windows per counted response; cpu_ratio = \
echo_server_cpu_us / server_cpu_us, the throughput ratio's comparison without the share of the \
machine other work leaves (loadavg_1m). The 1-connection point mostly measures how fast idle \
threads wake up, and its ratio swings widely on a loaded machine. Timings are from a shared, \
noisy machine: compare ratios, not absolute figures, across runs.";

impl Report {
    fn new(
        mut points: Vec<Point>,
        pipelined: Point,
        busy: u64,
        server_tasks_left: usize,
        wall: Duration,
    ) -> Self {
        let at = points
            .iter_mut()
            .find(|p| p.connections == LATENCY_AT)
            .expect("the latency point is measured");
        let (p50, p99) = (at.ours.quantile_us(0.50), at.ours.quantile_us(0.99));
        let (echo_p50, echo_p99) = (at.echo.quantile_us(0.50), at.echo.quantile_us(0.99));
        let one = points
            .iter_mut()
            .find(|p| p.connections == 1)
            .expect("the single-connection point is measured");
        let (p50_1, echo_p50_1) = (one.ours.quantile_us(0.50), one.echo.quantile_us(0.50));
        let errors = points
            .iter()
            .chain([&pipelined])
            .map(|p| p.ours.errors + p.echo.errors)
            .sum();
        Report {
            connections: points
                .iter()
                .map(|p| (p.connections.to_string(), Throughput::of(p)))
                .collect(),
            p50_us_16: round(p50, 1),
            p99_us_16: round(p99, 1),
            echo_p50_us_16: round(echo_p50, 1),
            echo_p99_us_16: round(echo_p99, 1),
            p50_us_1: round(p50_1, 1),
            echo_p50_us_1: round(echo_p50_1, 1),
            floor: {
                let t = Throughput::of(&pipelined);
                Floor {
                    connections: pipelined.connections,
                    window: pipelined.window,
                    heartbeats_per_sec: t.heartbeats_per_sec,
                    ratio: t.median_round_ratio,
                    min_heartbeats_per_sec: FLOOR_PER_SEC,
                    min_ratio: FLOOR_RATIO,
                    met: t.heartbeats_per_sec >= FLOOR_PER_SEC
                        && t.median_round_ratio >= FLOOR_RATIO,
                }
            },
            pipelined: Pipelined {
                connections: pipelined.connections,
                window: pipelined.window,
                throughput: Throughput::of(&pipelined),
            },
            errors,
            busy,
            server_tasks_left,
            listen_overflows: 0,
            worker_threads: 0,
            loadavg_1m: [0.0; 2],
            rounds: ROUNDS,
            pipelined_rounds: PIPELINED_ROUNDS,
            round_s: ROUND.as_secs_f64(),
            warmup_s: WARMUP.as_secs_f64(),
            wall_s: round(wall.as_secs_f64(), 1),
            notes: NOTES,
        }
    }

    fn failed(&self) -> bool {
        self.errors > 0 || self.server_tasks_left > 0
    }

    fn print_table(&self) {
        println!(
            "{:<26} {:>10} {:>10} {:>6}   {:>12} {:>12} {:>6}",
            "window 1 unless noted", "ours/s", "echo/s", "ratio", "server CPU", "echo CPU", "ratio"
        );
        let p = &self.pipelined;
        let rows = CONNECTIONS
            .iter()
            .map(|n| {
                (
                    format!("{n} connection(s)"),
                    &self.connections[&n.to_string()],
                )
            })
            .chain([(
                format!("{} conns, window {}", p.connections, p.window),
                &p.throughput,
            )]);
        for (name, t) in rows {
            println!(
                "{name:<26} {:>10.0} {:>10.0} {:>6.3}   {:>9.2} us {:>9.2} us {:>6.3}",
                t.heartbeats_per_sec,
                t.echo_per_sec,
                t.ratio,
                t.server_cpu_us,
                t.echo_server_cpu_us,
                t.cpu_ratio
            );
        }
        println!(
            "\n{:<26} {:>13} {:>13}",
            "latency (window 1)", "ours", "echo"
        );
        for (name, ours, echo) in [
            ("p50, 16 connections", self.p50_us_16, self.echo_p50_us_16),
            ("p99, 16 connections", self.p99_us_16, self.echo_p99_us_16),
            ("p50, 1 connection", self.p50_us_1, self.echo_p50_us_1),
        ] {
            println!("{name:<26} {ours:>10.1} us {echo:>10.1} us");
        }
        let ratios: Vec<String> = p
            .throughput
            .round_ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect();
        println!(
            "\npipelined rounds, ours/echo: {} (median {:.3})",
            ratios.join(" "),
            p.throughput.median_round_ratio
        );
        let f = &self.floor;
        println!(
            "floor at {} connections (window {}): {:.0}/s (want >= {:.0}), median {:.3} of echo \
             (want >= {}): {}",
            f.connections,
            f.window,
            f.heartbeats_per_sec,
            f.min_heartbeats_per_sec,
            f.ratio,
            f.min_ratio,
            if f.met { "met" } else { "NOT met" }
        );
        println!(
            "\nerrors {}, SYSTEM_BUSY {}, listen overflows {}, listener tasks left after \
             shutdown {}; load {:.1} -> {:.1}; wall {:.1} s",
            self.errors,
            self.busy,
            self.listen_overflows,
            self.server_tasks_left,
            self.loadavg_1m[0],
            self.loadavg_1m[1],
            self.wall_s
        );
    }
}
