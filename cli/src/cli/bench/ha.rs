//! `bench ha`: the HA master and slave ([`HaMaster`], [`HaSlave`]) over loopback, each figure
//! beside a baseline measured in the same process.
//!
//! # What it measures
//!
//! * **Probes**: TCP connect-and-close probes per second against the HA port, until the master
//!   has accepted and removed every one, beside a trivial accept-and-drop listener; then, at
//!   quiescence, what the probes left behind (table rows, tasks, fds: all must be 0).
//! * **Replication**: a fresh slave catching up a 1 GiB log, beside a plain tokio copy of the
//!   same bytes from the master's segment files through a socket into a file, and through a
//!   socket only. With upstream's 32 KiB batch, and with a 1 MiB batch.
//! * **Sync wait**: append a small record and `wait_for_replication(end, 1, ..)` with a live
//!   slave, beside a round trip of the same sizes through the same task hops with no log or
//!   protocol (a writer task, a peer that answers 8 bytes, a reader task).
//! * **Idle connection memory**: live heap bytes (the counting global allocator) held per idle,
//!   caught-up replication connection: the master's side alone (against fake slaves whose state
//!   is allocated beforehand) and both sides (against real [`HaSlave`]s).
//!
//! # How
//!
//! The master (and each baseline's server end) runs on a multi-thread tokio runtime with a
//! worker per core; probers, slaves and baseline peers run on a second runtime of the same size,
//! standing in for other processes. CPU time of each runtime's threads is read from
//! `/proc/self/task/*/schedstat` around each run, so the cost of a figure is known even when
//! other work on the machine takes most of its cores.
//!
//! # What it is not
//!
//! Not a disk benchmark: logs live in a temp dir with [`FlushPolicy::Manual`] and everything
//! runs from the page cache. Master and slave share the machine's cores, and loopback is not a
//! network: link bandwidth and latency are out of the picture.

use super::heartbeat::{
    CLIENT_THREADS, SERVER_THREADS, listen_overflows, loadavg, round, runtime, thread_cpu,
};
use crate::cli::alloc::live_bytes;
use rmq_lifecycle::core::ha::{HaConfig, HaMode, TransferChunk, TransferDecoder, encode_report};
use rmq_lifecycle::lifecycle::TaskGauge;
use rmq_lifecycle::net::Clock;
use rmq_lifecycle::net::ha::{HaMaster, HaSlave, MasterConfig, SlaveConfig};
use rmq_lifecycle::store::record::HEADER_LEN;
use rmq_lifecycle::store::{CommitLog, FlushPolicy, StoreConfig};
use serde::Serialize;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::watch;

/// Probes per side, split over [`PROBE_ROUNDS`].
const PROBES: usize = 20_000;
/// Alternating baseline/ours probe rounds.
const PROBE_ROUNDS: usize = 2;
/// Concurrent probers.
const PROBERS: usize = 4;
/// Probes connected and not yet fully handled by the server at most: well under the listeners'
/// accept backlog (128, tokio's `TcpListener::bind`), which must never overflow: a dropped SYN
/// costs the prober a 1 s retransmit, which would measure the kernel's timer, not the server.
const PROBE_WINDOW: u64 = 64;
/// Bytes replicated: the master's log is this many bytes of records.
const LOG_BYTES: u64 = 1 << 30;
/// Record size in the replicated log (header included): 256 of them fill a segment exactly.
const RECORD: u64 = 1 << 20;
/// Segment size of the replicated log.
const SEGMENT: u64 = 256 << 20;
/// A larger batch than upstream's 32 KiB, also reported.
const LARGE_BATCH: u32 = 1 << 20;
/// Rounds of (raw copies, 32 KiB slave, 1 MiB slave, auto-switch slave); each figure is the
/// median round's. The copy
/// into a new file's page cache (the slave's and the to-file baseline's) varies from run to run on
/// a shared VM far more than the code does, so one round can land on a slow moment.
const REPLICATION_ROUNDS: usize = 5;
/// Read and write size of the raw copy baseline: of 32 KiB to 1 MiB, 64 KiB was (near) the
/// fastest here; 1 MiB buffers were up to 2x slower (they no longer fit the caches).
const RAW_CHUNK: usize = 64 << 10;
/// Sync-wait samples per side, split over [`SYNC_ROUNDS`].
const SYNC_WAITS: usize = 2_000;
/// Alternating ours/baseline sync-wait rounds.
const SYNC_ROUNDS: usize = 2;
/// Payload of each sync-wait record.
const SYNC_PAYLOAD: usize = 100;
/// Idle connections whose memory is measured.
const IDLE_CONNECTIONS: usize = 100;
/// Log the idle connections catch up on first: several full batches, so that each connection
/// has done real transfers before it idles.
const IDLE_LOG_BYTES: usize = 256 << 10;
/// How long connections idle before a memory sample.
const IDLE_SETTLE: Duration = Duration::from_millis(200);
/// Segment size of the small logs (probes, idle connections).
const SMALL_SEGMENT: u64 = 1 << 20;
/// Upstream 5.1.4's per-connection read buffer on the master (`READ_MAX_BUFFER_SIZE`).
const UPSTREAM_MASTER_BUFFER: usize = 1 << 20;
/// How long to wait for a transfer or quiescence before calling it failed.
const PATIENCE: Duration = Duration::from_secs(30);

/// Runs every measurement and prints one JSON object (`json`) or a table.
pub(super) fn run(json: bool) -> ExitCode {
    let started = Instant::now();
    let load_before = loadavg();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rts = Runtimes {
        server: runtime(SERVER_THREADS, workers),
        client: runtime(CLIENT_THREADS, workers),
    };
    let outcome = (|| -> io::Result<Report> {
        progress("probes");
        let probes = Probes::measure(&rts)?;
        let (replication, sync) = replication_and_sync(&rts)?;
        let open = open_times()?;
        progress("idle connection memory");
        let idle = IdleMemory::measure(&rts)?;
        Ok(Report::new(
            probes,
            replication,
            sync,
            idle,
            open,
            [load_before, loadavg()],
            started.elapsed(),
        ))
    })();
    let report = match outcome {
        Ok(report) => report,
        Err(error) => {
            eprintln!("bench ha: {error}");
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
    if report.leaked() || !report.replica_identical {
        eprintln!(
            "bench ha: left behind by the probes: {:?}; replica identical: {}",
            report.leaked_after, report.replica_identical
        );
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn progress(what: &str) {
    eprintln!("bench ha: {what} ...");
}

fn sleep_until(t: Instant) {
    if let Some(left) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
}

struct Runtimes {
    server: Runtime,
    client: Runtime,
}

/// CPU time of the server and client runtimes' threads.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    server: Duration,
    client: Duration,
}

impl Cpu {
    fn now() -> Self {
        Cpu {
            server: thread_cpu(SERVER_THREADS),
            client: thread_cpu(CLIENT_THREADS),
        }
    }

    fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            server: self.server.saturating_sub(earlier.server),
            client: self.client.saturating_sub(earlier.client),
        }
    }

    fn add(&mut self, other: Cpu) {
        self.server += other.server;
        self.client += other.client;
    }
}

fn other(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}

fn open_log(dir: &Path, segment_size: u64) -> io::Result<Arc<CommitLog>> {
    CommitLog::open(StoreConfig {
        dir: dir.to_owned(),
        segment_size,
        flush: FlushPolicy::Manual,
    })
    .map(Arc::new)
}

fn ha_config(segment_size: u64) -> HaConfig {
    HaConfig {
        segment_size,
        ..HaConfig::default()
    }
}

fn master_config(ha: HaConfig) -> MasterConfig {
    MasterConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ha,
        max_connections: 4096,
        ..MasterConfig::default()
    }
}

fn bind_master(
    rts: &Runtimes,
    ha: HaConfig,
    log: Arc<CommitLog>,
    tasks: &TaskGauge,
) -> io::Result<HaMaster> {
    bind_master_in(rts, ha, HaMode::Classic, log, tasks)
}

fn bind_master_in(
    rts: &Runtimes,
    ha: HaConfig,
    mode: HaMode,
    log: Arc<CommitLog>,
    tasks: &TaskGauge,
) -> io::Result<HaMaster> {
    let config = MasterConfig {
        mode,
        ..master_config(ha)
    };
    rts.server
        .block_on(HaMaster::bind(config, log, Clock::start(), tasks.clone()))
}

fn start_slave(
    rts: &Runtimes,
    ha: HaConfig,
    mode: HaMode,
    master: SocketAddr,
    log: Arc<CommitLog>,
    tasks: &TaskGauge,
) -> HaSlave {
    let _in_client_runtime = rts.client.enter();
    let config = SlaveConfig {
        ha,
        mode,
        ..SlaveConfig::new(master)
    };
    HaSlave::start(config, log, Clock::start(), tasks.clone())
}

/// Polls `done` every millisecond for up to [`PATIENCE`].
fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> io::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        if Instant::now() > deadline {
            return Err(other(format!("timed out waiting for {what}")));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Open fds other than files under `exclude` (log segments, opened one per segment).
fn open_fds(exclude: &[&Path]) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_link(e.path()).map_or(true, |target| {
                !exclude.iter().any(|x| target.starts_with(x))
            })
        })
        .count()
}

// ---------------------------------------------------------------------------------------------
// Probes

/// What the probes left at quiescence (all must be 0).
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Leaked {
    connections: usize,
    tasks: isize,
    fds: isize,
}

struct Probes {
    /// `ListenOverflows` during the probes (want 0; namespace-wide).
    listen_overflows: u64,
    ours_time: Duration,
    base_time: Duration,
    ours_cpu: Cpu,
    base_cpu: Cpu,
    errors: u64,
    leaked: Leaked,
    accepted: u64,
    closed: u64,
}

/// A listener that accepts and drops, counting.
struct DropListener {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl DropListener {
    fn bind(rt: &Runtime) -> io::Result<Self> {
        let listener = rt.block_on(TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))))?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        let task = rt.spawn(async move {
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    drop(stream);
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(DropListener {
            addr,
            accepted,
            task,
        })
    }
}

/// A server-side count of probes fully handled.
type Done = Arc<dyn Fn() -> u64 + Send + Sync>;

impl Probes {
    fn measure(rts: &Runtimes) -> io::Result<Probes> {
        let dir = tempfile::tempdir()?;
        let tasks = TaskGauge::new();
        let master = bind_master(
            rts,
            ha_config(SMALL_SEGMENT),
            open_log(dir.path(), SMALL_SEGMENT)?,
            &tasks,
        )?;
        let logs = [dir.path()];
        let (tasks0, fds0) = (tasks.alive(), open_fds(&logs));
        let base = DropListener::bind(&rts.server)?;
        let registry = master.registry().clone();
        let ours_done: Done = Arc::new(move || registry.closed_total());
        let accepted = base.accepted.clone();
        let base_done: Done = Arc::new(move || accepted.load(Ordering::Relaxed));

        let overflows0 = listen_overflows();
        let mut out = Probes {
            listen_overflows: 0,
            ours_time: Duration::ZERO,
            base_time: Duration::ZERO,
            ours_cpu: Cpu::default(),
            base_cpu: Cpu::default(),
            errors: 0,
            leaked: Leaked::default(),
            accepted: 0,
            closed: 0,
        };
        let per_round = PROBES / PROBE_ROUNDS;
        for _ in 0..PROBE_ROUNDS {
            let (t, cpu, errors) = probe_run(rts, base.addr, per_round, &base_done)?;
            out.base_time += t;
            out.base_cpu.add(cpu);
            out.errors += errors;
            let (t, cpu, errors) = probe_run(rts, master.local_addr(), per_round, &ours_done)?;
            out.ours_time += t;
            out.ours_cpu.add(cpu);
            out.errors += errors;
        }
        out.listen_overflows = listen_overflows().saturating_sub(overflows0);
        base.task.abort();
        drop(base);

        // Quiescence: no row, tasks and fds back to their baseline (or give up after a while).
        let registry = master.registry();
        let leaked = || Leaked {
            connections: registry.count(),
            tasks: tasks.alive() as isize - tasks0 as isize,
            fds: open_fds(&logs) as isize - fds0 as isize,
        };
        let _ = wait_for("quiescence after the probes", || {
            let l = leaked();
            l.connections == 0 && l.tasks == 0 && l.fds == 0
        });
        out.leaked = leaked();
        out.accepted = registry.accepted_total();
        out.closed = registry.closed_total();
        let left = rts.server.block_on(master.shutdown(Duration::from_secs(5)));
        if left > 0 {
            return Err(other(format!("{left} master task(s) alive after shutdown")));
        }
        Ok(out)
    }
}

/// `n` connect-and-close probes from [`PROBERS`] tasks against `addr`; returns the time until
/// the server handled all of them (`done` grew by `n`), the CPU used meanwhile, and the
/// connects that failed.
fn probe_run(
    rts: &Runtimes,
    addr: SocketAddr,
    n: usize,
    done: &Done,
) -> io::Result<(Duration, Cpu, u64)> {
    let done0 = done();
    let issued = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let cpu0 = Cpu::now();
    let t0 = Instant::now();
    let probers: Vec<_> = (0..PROBERS)
        .map(|_| {
            let (issued, errors, done) = (issued.clone(), errors.clone(), done.clone());
            rts.client.spawn(async move {
                loop {
                    let i = issued.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    while i as u64 >= done() - done0 + PROBE_WINDOW {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    match TcpStream::connect(addr).await {
                        Ok(stream) => drop(stream),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    rts.client.block_on(async {
        for p in probers {
            p.await.expect("a prober does not panic");
        }
    });
    let errors = errors.load(Ordering::Relaxed);
    let want = n as u64 - errors;
    wait_for("the server to handle every probe", || {
        done() - done0 >= want
    })?;
    Ok((t0.elapsed(), Cpu::now().since(cpu0), errors))
}

// ---------------------------------------------------------------------------------------------
// Replication and sync wait

/// One timed transfer of the log's bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Transfer {
    bytes: u64,
    time: Duration,
    cpu: Cpu,
}

impl Transfer {
    /// The round with the median rate (the upper one of an even count).
    fn median(rounds: &[Transfer]) -> Transfer {
        let mut sorted = rounds.to_vec();
        sorted.sort_by(|a, b| a.mib_per_sec().total_cmp(&b.mib_per_sec()));
        sorted.get(sorted.len() / 2).copied().unwrap_or_default()
    }

    fn rounds_mb_per_sec(rounds: &[Transfer]) -> Vec<f64> {
        rounds.iter().map(|t| round(t.mib_per_sec(), 1)).collect()
    }

    fn mib_per_sec(&self) -> f64 {
        self.bytes as f64 / (1 << 20) as f64 / self.time.as_secs_f64()
    }

    /// CPU milliseconds per GiB moved: (server, client).
    fn cpu_ms_per_gib(&self) -> CpuPerGib {
        let per = |d: Duration| {
            round(
                d.as_secs_f64() * 1e3 * (1u64 << 30) as f64 / self.bytes as f64,
                1,
            )
        };
        CpuPerGib {
            server: per(self.cpu.server),
            client: per(self.cpu.client),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
struct CpuPerGib {
    server: f64,
    client: f64,
}

/// The timed transfers of every round, in round order.
struct Replication {
    default_batch: Vec<Transfer>,
    large_batch: Vec<Transfer>,
    /// Auto-switch (epochs, handshake, epoch-bounded 32 KiB batches), same log.
    auto_switch: Vec<Transfer>,
    /// Segment files -> socket -> discarded: the raw copy.
    raw_socket: Vec<Transfer>,
    /// Segment files -> socket -> a file: also the slave's page-cache write.
    raw_file: Vec<Transfer>,
    identical: bool,
    setup: Duration,
}

struct SyncWait {
    ours: Vec<u64>,
    base: Vec<u64>,
}

/// Fills a log with [`LOG_BYTES`] of records; then, [`REPLICATION_ROUNDS`] times, times the two
/// raw copies and fresh slaves catching it up with each batch size. Sync waits are measured in
/// the first round, with its 32 KiB slave still connected.
fn replication_and_sync(rts: &Runtimes) -> io::Result<(Replication, SyncWait)> {
    progress("writing the 1 GiB master log");
    let t = Instant::now();
    let master_dir = tempfile::tempdir()?;
    let log = open_log(master_dir.path(), SEGMENT)?;
    let mut payload = vec![0u8; (RECORD - HEADER_LEN) as usize];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for b in payload.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    for i in 0..LOG_BYTES / RECORD {
        payload[..8].copy_from_slice(&i.to_be_bytes());
        log.append(&payload)?;
    }
    drop(payload);
    // Written back now rather than during a measurement.
    log.flush()?;
    let setup = t.elapsed();
    let ha = ha_config(SEGMENT);
    let large_ha = HaConfig {
        batch_max: LARGE_BATCH,
        ..ha
    };
    // One gauge per master and per slave: each shutdown waits for its own gauge to reach 0.
    let gauge = TaskGauge::new;
    let (dir, bytes) = (master_dir.path(), log.max_offset());
    let master = bind_master(rts, ha, log.clone(), &gauge())?;
    let large_master = bind_master(rts, large_ha, log.clone(), &gauge())?;
    // Begins epoch 1 at the log's end (the log's bytes become epoch 0): the slaves' handshakes
    // and every transfer then carry epochs, as on a broker that ran classic before.
    let auto_master = bind_master_in(rts, ha, HaMode::AutoSwitch, log.clone(), &gauge())?;

    let mut r = Replication {
        default_batch: Vec::new(),
        large_batch: Vec::new(),
        auto_switch: Vec::new(),
        raw_socket: Vec::new(),
        raw_file: Vec::new(),
        identical: true,
        setup,
    };
    let mut sync = None;
    let mut left = 0;
    for round in 1..=REPLICATION_ROUNDS {
        progress(&format!(
            "replication round {round} of {REPLICATION_ROUNDS}: raw copies, then slaves with 32 KiB and 1 MiB batches, and auto-switch"
        ));
        r.raw_socket.push(raw_copy_run(rts, dir, bytes, false)?);
        r.raw_file.push(raw_copy_run(rts, dir, bytes, true)?);
        // Each round starts with another slave: the copy into a new file's page cache drifts
        // within a round as much as between rounds, so no slave always runs first or last.
        let mut slaves = [
            (&master, ha, HaMode::Classic),
            (&large_master, large_ha, HaMode::Classic),
            (&auto_master, ha, HaMode::AutoSwitch),
        ];
        slaves.rotate_left((round - 1) % 3);
        for (master, ha, mode) in slaves {
            let slave_dir = tempfile::tempdir()?;
            let slave_log = open_log(slave_dir.path(), SEGMENT)?;
            let (transfer, slave) = catch_up(rts, master, ha, mode, &slave_log, &gauge())?;
            let end = master.log().max_offset();
            r.identical &= slave_log.digest(0, end)? == master.log().digest(0, end)?;
            if mode == HaMode::AutoSwitch {
                r.identical &= slave_log.epochs() == master.log().epochs();
                r.auto_switch.push(transfer);
            } else if ha.batch_max == LARGE_BATCH {
                r.large_batch.push(transfer);
            } else {
                r.default_batch.push(transfer);
                if sync.is_none() {
                    progress("sync waits");
                    sync = Some(sync_waits(rts, master)?);
                }
            }
            left += rts.client.block_on(slave.shutdown(Duration::from_secs(30)));
        }
    }
    let left = left
        + rts
            .server
            .block_on(auto_master.shutdown(Duration::from_secs(5)))
        + rts
            .server
            .block_on(large_master.shutdown(Duration::from_secs(5)))
        + rts.server.block_on(master.shutdown(Duration::from_secs(5)));
    if left > 0 {
        return Err(other(format!("{left} HA task(s) alive after shutdown")));
    }
    let sync = sync.ok_or_else(|| other("no replication round ran"))?;
    Ok((r, sync))
}

/// `CommitLog::open` of a 4 MiB log and of a 4 GiB one (four sealed 1 GiB segments) with the
/// same 4 MiB in its active segment: recovery reads the active segment only, so the two should
/// take about as long. Warm (the page cache holds both), the median of [`OPEN_ROUNDS`] each,
/// alternating.
struct OpenTimes {
    small: Duration,
    large: Duration,
    large_bytes: u64,
}

const OPEN_SEGMENT: u64 = 1 << 30;
const OPEN_SEALED: u64 = 4;
const OPEN_ACTIVE: u64 = 4 << 20;
const OPEN_ROUNDS: usize = 7;

fn open_times() -> io::Result<OpenTimes> {
    progress("writing a 4 MiB and a 4 GiB log for the open times");
    let payload = vec![0xA5u8; (RECORD - HEADER_LEN) as usize];
    let build = |sealed: u64| -> io::Result<tempfile::TempDir> {
        let dir = tempfile::tempdir()?;
        let log = open_log(dir.path(), OPEN_SEGMENT)?;
        for _ in 0..(sealed * OPEN_SEGMENT + OPEN_ACTIVE) / RECORD {
            log.append(&payload)?;
        }
        log.flush()?;
        Ok(dir)
    };
    let (small_dir, large_dir) = (build(0)?, build(OPEN_SEALED)?);
    let time = |dir: &Path| -> io::Result<(Duration, u64)> {
        let t = Instant::now();
        let log = open_log(dir, OPEN_SEGMENT)?;
        let elapsed = t.elapsed();
        Ok((elapsed, log.max_offset()))
    };
    let (mut small, mut large) = (Vec::new(), Vec::new());
    let mut large_bytes = 0;
    for _ in 0..OPEN_ROUNDS {
        small.push(time(small_dir.path())?.0);
        let (t, bytes) = time(large_dir.path())?;
        large.push(t);
        large_bytes = bytes;
    }
    small.sort();
    large.sort();
    Ok(OpenTimes {
        small: small[OPEN_ROUNDS / 2],
        large: large[OPEN_ROUNDS / 2],
        large_bytes,
    })
}

/// Writes and deletes `bytes` of scratch file right before a run that writes that much into new
/// files (a slave, the copy into a file), so that the page cache pages it gets are memory this VM
/// touched a moment ago rather than, possibly, never: on a VM a first touch also faults on the
/// host. The copy into the page cache still varies from run to run (0.6 to 2 CPU seconds per GiB
/// for the same code), hence the rounds. Both sides of every to-file comparison are warmed alike;
/// the discarding raw copy writes no file.
fn warm_page_cache(bytes: u64) -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = std::fs::File::create(dir.path().join("warm"))?;
    let chunk = vec![0x5Au8; RAW_CHUNK];
    let mut pos = 0;
    while pos < bytes {
        file.write_all_at(&chunk, pos)?;
        pos += RAW_CHUNK as u64;
    }
    Ok(())
}

/// Starts a slave on the empty `slave_log` and times it until it holds the master's log.
fn catch_up(
    rts: &Runtimes,
    master: &HaMaster,
    ha: HaConfig,
    mode: HaMode,
    slave_log: &Arc<CommitLog>,
    tasks: &TaskGauge,
) -> io::Result<(Transfer, HaSlave)> {
    let end = master.log().max_offset();
    warm_page_cache(end)?;
    let cpu0 = Cpu::now();
    let t0 = Instant::now();
    let slave = start_slave(rts, ha, mode, master.local_addr(), slave_log.clone(), tasks);
    wait_for("the slave to catch up", || slave_log.max_offset() >= end)?;
    let transfer = Transfer {
        bytes: end,
        time: t0.elapsed(),
        cpu: Cpu::now().since(cpu0),
    };
    Ok((transfer, slave))
}

/// The baseline: the first `bytes` of the segment files in `dir`, read with `pread` in
/// [`RAW_CHUNK`]s by a task on the server runtime and written to a socket; a task on the client
/// runtime reads them into a [`RAW_CHUNK`] buffer and, if `to_file`, writes them with `pwrite`
/// into one file in a temp dir. Timed from connect to the last byte received (and written).
fn raw_copy_run(rts: &Runtimes, dir: &Path, bytes: u64, to_file: bool) -> io::Result<Transfer> {
    let mut segments: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    segments.sort();
    let files = segments
        .iter()
        .map(std::fs::File::open)
        .collect::<io::Result<Vec<_>>>()?;
    let sink_dir = tempfile::tempdir()?;
    let sink = std::fs::File::create(sink_dir.path().join("copy"))?;
    if to_file {
        warm_page_cache(bytes)?;
    }
    let listener = rts
        .server
        .block_on(TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))))?;
    let addr = listener.local_addr()?;

    let cpu0 = Cpu::now();
    let t0 = Instant::now();
    let sender = rts.server.spawn(async move {
        let (mut sock, _) = listener.accept().await?;
        sock.set_nodelay(true)?;
        let mut buf = vec![0u8; RAW_CHUNK];
        let mut left = bytes;
        for file in &files {
            let mut pos = 0u64;
            while left > 0 {
                let want = (left as usize).min(RAW_CHUNK);
                let n = file.read_at(&mut buf[..want], pos)?;
                if n == 0 {
                    break; // the next segment
                }
                sock.write_all(&buf[..n]).await?;
                pos += n as u64;
                left -= n as u64;
            }
        }
        if left > 0 {
            return Err(other(format!(
                "the segment files hold {left} bytes too few"
            )));
        }
        Ok::<(), io::Error>(())
    });
    let receiver = rts.client.spawn(async move {
        let mut sock = TcpStream::connect(addr).await?;
        sock.set_nodelay(true)?;
        let mut buf = vec![0u8; RAW_CHUNK];
        let mut pos = 0u64;
        while pos < bytes {
            let n = sock.read(&mut buf).await?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            if to_file {
                sink.write_all_at(&buf[..n], pos)?;
            }
            pos += n as u64;
        }
        Ok::<(), io::Error>(())
    });
    rts.client.block_on(receiver).map_err(other)??;
    let time = t0.elapsed();
    let cpu = Cpu::now().since(cpu0);
    rts.server.block_on(sender).map_err(other)??;
    Ok(Transfer { bytes, time, cpu })
}

/// Alternating rounds: append [`SYNC_PAYLOAD`] bytes and wait for the slave's ack (ours); a
/// round trip of the same sizes through the same task hops (baseline).
fn sync_waits(rts: &Runtimes, master: &HaMaster) -> io::Result<SyncWait> {
    let mut out = SyncWait {
        ours: Vec::with_capacity(SYNC_WAITS),
        base: Vec::with_capacity(SYNC_WAITS),
    };
    let payload = vec![7u8; SYNC_PAYLOAD];
    let frame_len = 12 + HEADER_LEN as usize + SYNC_PAYLOAD;
    let base = PingPong::start(rts, frame_len)?;
    let per_round = SYNC_WAITS / SYNC_ROUNDS;
    for _ in 0..SYNC_ROUNDS {
        rts.server.block_on(async {
            for _ in 0..per_round {
                let t = Instant::now();
                let appended = master.append(&payload)?;
                master
                    .wait_for_replication(appended.end, 1, Duration::from_secs(10))
                    .await
                    .map_err(other)?;
                out.ours.push(t.elapsed().as_nanos() as u64);
            }
            Ok::<(), io::Error>(())
        })?;
        base.run(rts, per_round, &mut out.base)?;
    }
    base.stop(rts)?;
    Ok(out)
}

/// The sync-wait baseline: the main thread kicks a writer task (server runtime) through a watch
/// channel; it writes a frame of the transfer's size; a peer task (client runtime) reads it and
/// answers 8 bytes; a reader task (server runtime) reads them and bumps a watch channel that the
/// main thread waits on: ours' hops and sizes, without log IO or protocol.
struct PingPong {
    kick: watch::Sender<u64>,
    acked: watch::Receiver<u64>,
    tasks: Vec<tokio::task::JoinHandle<io::Result<()>>>,
}

impl PingPong {
    fn start(rts: &Runtimes, frame_len: usize) -> io::Result<PingPong> {
        let listener = rts
            .server
            .block_on(TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))))?;
        let addr = listener.local_addr()?;
        let peer = rts.client.spawn(async move {
            let mut sock = TcpStream::connect(addr).await?;
            sock.set_nodelay(true)?;
            let mut frame = vec![0u8; frame_len];
            loop {
                match sock.read_exact(&mut frame).await {
                    Ok(_) => sock.write_all(&encode_report(frame_len as u64)).await?,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        });
        let (sock, _) = rts.server.block_on(listener.accept())?;
        sock.set_nodelay(true)?;
        let (mut rd, mut wr) = sock.into_split();
        let (kick, mut kicked) = watch::channel(0u64);
        let (ack, acked) = watch::channel(0u64);
        let writer = rts.server.spawn(async move {
            let frame = vec![1u8; frame_len];
            while kicked.changed().await.is_ok() {
                wr.write_all(&frame).await?;
            }
            Ok(())
        });
        let reader = rts.server.spawn(async move {
            let mut report = [0u8; 8];
            loop {
                match rd.read_exact(&mut report).await {
                    Ok(_) => {
                        ack.send_modify(|n| *n += 1);
                    }
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        });
        Ok(PingPong {
            kick,
            acked,
            tasks: vec![peer, writer, reader],
        })
    }

    fn run(&self, rts: &Runtimes, n: usize, samples: &mut Vec<u64>) -> io::Result<()> {
        let mut acked = self.acked.clone();
        rts.server.block_on(async {
            for _ in 0..n {
                let t = Instant::now();
                let want = *acked.borrow_and_update() + 1;
                self.kick.send_modify(|k| *k += 1);
                while *acked.borrow_and_update() < want {
                    acked.changed().await.map_err(other)?;
                }
                samples.push(t.elapsed().as_nanos() as u64);
            }
            Ok(())
        })
    }

    fn stop(self, rts: &Runtimes) -> io::Result<()> {
        drop(self.kick);
        for task in self.tasks {
            rts.server.block_on(task).map_err(other)??;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Idle connection memory

struct IdleMemory {
    master_side: f64,
    /// One heartbeat interval after catching up.
    both_sides: f64,
    /// Right after catching up ([`IDLE_SETTLE`]).
    both_sides_caught_up: f64,
    /// Heap bytes per connection still held after the fake slaves closed and the master
    /// removed them (runtime slabs that only grow are the expected part).
    left_after_close: f64,
}

/// A fake slave on a blocking-free std socket: everything it needs is allocated before the
/// measurement, so the heap growth is the master's.
struct FakeSlave {
    sock: std::net::TcpStream,
    decoder: TransferDecoder,
    have: u64,
    reported: u64,
}

impl IdleMemory {
    fn measure(rts: &Runtimes) -> io::Result<IdleMemory> {
        let dir = tempfile::tempdir()?;
        let ha = ha_config(SMALL_SEGMENT);
        let log = open_log(&dir.path().join("master"), SMALL_SEGMENT)?;
        for i in 0..IDLE_LOG_BYTES / 4096 {
            log.append(&[i as u8; 4096 - HEADER_LEN as usize])?;
        }
        let end = log.max_offset();
        let tasks = TaskGauge::new();
        let master = bind_master(rts, ha, log, &tasks)?;
        let addr = master.local_addr();
        let registry = master.registry().clone();

        // The master's side: fake slaves driven from this thread.
        let mut fakes: Vec<FakeSlave> = Vec::with_capacity(IDLE_CONNECTIONS);
        let mut buf = vec![0u8; 64 * 1024];
        let before = live_bytes();
        for _ in 0..IDLE_CONNECTIONS {
            let mut sock = std::net::TcpStream::connect(addr)?;
            sock.set_nodelay(true)?;
            sock.write_all(&encode_report(0))?;
            sock.set_nonblocking(true)?;
            fakes.push(FakeSlave {
                sock,
                decoder: TransferDecoder::new(ha.body_max),
                have: 0,
                reported: 0,
            });
        }
        wait_for("the fake slaves to catch up", || {
            let mut all = true;
            for f in fakes.iter_mut() {
                if f.pump(&mut buf).is_err() {
                    return true; // reported below as a short catch-up
                }
                all &= f.reported >= end;
            }
            all && registry.acked_at_least(end) == IDLE_CONNECTIONS
        })?;
        if fakes.iter().any(|f| f.reported < end) {
            return Err(other("a fake slave's connection failed"));
        }
        std::thread::sleep(IDLE_SETTLE);
        let master_side = (live_bytes() - before) as f64 / IDLE_CONNECTIONS as f64;
        drop(fakes);
        wait_for("the master to drop the fake slaves", || {
            registry.count() == 0
        })?;
        std::thread::sleep(IDLE_SETTLE);
        let left_after_close = (live_bytes() - before) as f64 / IDLE_CONNECTIONS as f64;

        // Both sides: real slaves, their logs opened beforehand (a log is not connection state).
        let logs = (0..IDLE_CONNECTIONS)
            .map(|i| open_log(&dir.path().join(format!("slave-{i}")), SMALL_SEGMENT))
            .collect::<io::Result<Vec<_>>>()?;
        let slave_tasks = TaskGauge::new();
        let mut slaves = Vec::with_capacity(IDLE_CONNECTIONS);
        let before = live_bytes();
        for slave_log in &logs {
            slaves.push(start_slave(
                rts,
                ha,
                HaMode::Classic,
                addr,
                slave_log.clone(),
                &slave_tasks,
            ));
        }
        wait_for("the slaves to catch up", || {
            logs.iter().all(|l| l.max_offset() >= end)
                && registry.acked_at_least(end) == IDLE_CONNECTIONS
        })?;
        let caught_up = Instant::now();
        std::thread::sleep(IDLE_SETTLE);
        let both_sides_caught_up = (live_bytes() - before) as f64 / IDLE_CONNECTIONS as f64;
        // Past one heartbeat interval both sides have run their idle timers (a connection may
        // release buffers there).
        sleep_until(caught_up + Duration::from_millis(ha.heartbeat_ms) + IDLE_SETTLE);
        let both_sides = (live_bytes() - before) as f64 / IDLE_CONNECTIONS as f64;

        // The slaves share one gauge: cancel them all (drop), then wait for the gauge.
        drop(slaves);
        let _ = wait_for("the slaves to stop", || slave_tasks.alive() == 0);
        let left =
            slave_tasks.alive() + rts.server.block_on(master.shutdown(Duration::from_secs(5)));
        if left > 0 {
            return Err(other(format!("{left} task(s) alive after shutdown")));
        }
        Ok(IdleMemory {
            master_side,
            both_sides,
            both_sides_caught_up,
            left_after_close,
        })
    }
}

impl FakeSlave {
    /// Reads what is there, and reports the new end once a body completes.
    fn pump(&mut self, buf: &mut [u8]) -> io::Result<()> {
        loop {
            match self.sock.read(buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    let mut input = &buf[..n];
                    while let Some(chunk) = self.decoder.next(&mut input).map_err(other)? {
                        if let TransferChunk::Body { offset, bytes } = chunk {
                            self.have = offset + bytes.len() as u64;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.have > self.reported && !self.decoder.in_body() {
            match self.sock.write(&encode_report(self.have)) {
                Ok(8) => self.reported = self.have,
                Ok(_) => return Err(other("a short write of an 8-byte report")),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Report

#[derive(Serialize)]
struct Report {
    probes_per_sec: f64,
    baseline_probes_per_sec: f64,
    probes_ratio: f64,
    leaked_after: Leaked,
    probes: usize,
    probe_connect_errors: u64,
    /// Connections the kernel dropped on a full accept queue during the probes (want 0).
    probe_listen_overflows: u64,
    probes_accepted_total: u64,
    probes_closed_total: u64,
    /// Server-runtime (and client-runtime) CPU per probe, ours and the accept-and-drop baseline.
    probe_server_cpu_us: f64,
    baseline_probe_server_cpu_us: f64,
    probe_client_cpu_us: f64,
    baseline_probe_client_cpu_us: f64,

    replication_mb_per_sec: f64,
    raw_copy_mb_per_sec: f64,
    replication_ratio: f64,
    replication_batch_1mib_mb_per_sec: f64,
    replication_batch_1mib_ratio: f64,
    /// Auto-switch (handshake, epochs, epoch-bounded 32 KiB batches) beside classic 32 KiB.
    replication_auto_switch_mb_per_sec: f64,
    auto_switch_vs_classic_ratio: f64,
    replication_auto_switch_rounds_mb_per_sec: Vec<f64>,
    /// `CommitLog::open` (warm): a 4 MiB log, and 4 sealed GiB plus the same 4 MiB active.
    open_4mib_ms: f64,
    open_4gib_ms: f64,
    open_4gib_vs_4mib_ratio: f64,
    open_large_log_bytes: u64,
    /// The raw copy with the receiver also writing the bytes to a file, as the slave does.
    raw_copy_to_file_mb_per_sec: f64,
    replication_to_file_ratio: f64,
    replication_batch_1mib_to_file_ratio: f64,
    /// Every round's rate; the figures above are the median round's.
    replication_rounds_mb_per_sec: Vec<f64>,
    replication_batch_1mib_rounds_mb_per_sec: Vec<f64>,
    raw_copy_rounds_mb_per_sec: Vec<f64>,
    raw_copy_to_file_rounds_mb_per_sec: Vec<f64>,
    replicated_bytes: u64,
    replica_identical: bool,
    replication_cpu_ms_per_gib: CpuPerGib,
    replication_batch_1mib_cpu_ms_per_gib: CpuPerGib,
    replication_auto_switch_cpu_ms_per_gib: CpuPerGib,
    raw_copy_cpu_ms_per_gib: CpuPerGib,
    raw_copy_to_file_cpu_ms_per_gib: CpuPerGib,

    sync_wait_p50_us: f64,
    sync_wait_p99_us: f64,
    baseline_round_trip_p50_us: f64,
    baseline_round_trip_p99_us: f64,
    sync_waits: usize,

    idle_connection_bytes: f64,
    idle_connection_bytes_both_sides: f64,
    idle_connection_bytes_slave_side: f64,
    idle_connection_bytes_both_sides_just_caught_up: f64,
    idle_connection_bytes_left_after_close: f64,
    idle_connections: usize,
    upstream_master_buffer_bytes: usize,

    loadavg_1m: [f64; 2],
    log_setup_s: f64,
    wall_s: f64,
    notes: &'static str,
}

const NOTES: &str = "MB = 2^20 bytes. Server side (master, baselines' server ends) on one \
multi-thread tokio runtime with a worker per core, client side (probers, slaves, baseline peers) \
on a second one of the same size, same process; *_cpu_* figures are those runtimes' thread CPU \
time (schedstat), which does not depend on how much of the machine other work leaves. Probes: \
20,000 per side in 2 alternating rounds (baseline first), 4 concurrent probers, each probe a \
plain connect then close; at most 64 probes ahead of the server, under the accept backlog of 128, \
so that no SYN is dropped and retried 1 s later (probe_listen_overflows, want 0); a round ends \
when the server has handled every probe (ours: the master removed its row; baseline: a listener \
that accepts and drops). leaked_after: at quiescence, table rows, master tasks minus baseline, \
open fds minus baseline (log segment files excluded). Replication: a 1 GiB log of 1 MiB records \
in 256 MiB segments, in the page cache; a fresh slave (empty log, same segment size, upstream \
timings) is timed from start until its log ends at the master's max offset; replica_identical \
compares CRCs of both logs after every run. replication_batch_1mib: the same with batch_max = 1 \
MiB (a second master on the same log, a fresh slave). replication_auto_switch: the same log \
served by a third master in auto-switch mode (epoch 1 begun at the log's end, so the bytes are \
epoch 0) to an auto-switch slave: handshake, epoch-bounded 32 KiB batches, 12-byte reports; \
auto_switch_vs_classic_ratio divides it by the 32 KiB classic median. open_*: CommitLog::open, \
warm, median of 7 alternating opens, of a log of 4 MiB and of one of 4 sealed 1 GiB segments \
plus the same 4 MiB active (recovery scans only the active segment). raw_copy: the same bytes read from the master's \
segment files with pread in 64 KiB chunks and written to a socket by a server-runtime task, read \
into a 64 KiB buffer and discarded by a client-runtime task (64 KiB: near the best of 32 KiB..1 \
MiB on this machine; 1 MiB buffers were up to 2x slower); raw_copy_to_file: the same, the \
receiver also writing them with pwrite into one new file in a temp dir (page cache -> socket -> \
page cache, as replication does). 5 rounds, each of raw_copy, raw_copy_to_file, the 32 KiB \
slave, the 1 MiB slave and the auto-switch slave (the slaves in a rotating order); every figure is \
its median round's (the *_rounds_* arrays list them \
all), and a ratio divides two medians. The master log is flushed before any of them \
(log_setup_s), so that no run pays for its writeback, and every run that writes a new file \
(the slaves, raw_copy_to_file) is preceded by writing and deleting as many bytes of scratch \
file, so that its page-cache pages are memory this VM touched a moment ago. Sync wait: 2,000 \
appends of a 100-byte payload with the caught-up slave connected, each timed from before append \
to wait_for_replication(end, 1) returning, in 2 rounds alternating with the baseline: the same \
hops (a watch channel kicks a server-runtime writer task that writes a 124-byte frame; a \
client-runtime peer answers 8 bytes; a server-runtime reader task bumps a watch channel the \
waiter is on) without log IO or protocol. Idle memory: live heap bytes (requested sizes, counting \
allocator) per connection, 100 connections caught up on a 256 KiB log (so every writer did full \
batches). idle_connection_bytes is the master's side, measured 0.2 s after catching up against \
fake slaves on std sockets whose state is allocated before the first sample; both_sides against \
real HaSlaves whose logs are opened before the first sample (master and slave connection state, \
the slave's read buffer included), one heartbeat interval (5 s) + 0.2 s after catching up \
(both_sides_just_caught_up: at 0.2 s); slave_side = both_sides - master side. Upstream 5.1.4's \
master allocates a 1 MiB read buffer per connection.";

fn quantile_us(samples: &mut [u64], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let rank = ((q * samples.len() as f64).ceil() as usize).max(1);
    round(samples[rank - 1] as f64 / 1e3, 1)
}

impl Report {
    fn new(
        probes: Probes,
        replication: Replication,
        mut sync: SyncWait,
        idle: IdleMemory,
        open: OpenTimes,
        loadavg_1m: [f64; 2],
        wall: Duration,
    ) -> Self {
        let per_sec = |t: Duration| (PROBES as f64 / t.as_secs_f64()).round();
        let per_probe = |d: Duration| round(d.as_secs_f64() * 1e6 / PROBES as f64, 2);
        let r = &replication;
        let [
            default_batch,
            large_batch,
            auto_switch,
            raw_socket,
            raw_file,
        ] = [
            &r.default_batch,
            &r.large_batch,
            &r.auto_switch,
            &r.raw_socket,
            &r.raw_file,
        ]
        .map(|rounds| Transfer::median(rounds));
        let mb = |t: &Transfer| round(t.mib_per_sec(), 1);
        let ratio =
            |ours: &Transfer, base: &Transfer| round(ours.mib_per_sec() / base.mib_per_sec(), 3);
        Report {
            probes_per_sec: per_sec(probes.ours_time),
            baseline_probes_per_sec: per_sec(probes.base_time),
            probes_ratio: round(
                probes.base_time.as_secs_f64() / probes.ours_time.as_secs_f64(),
                3,
            ),
            leaked_after: probes.leaked,
            probes: PROBES,
            probe_connect_errors: probes.errors,
            probe_listen_overflows: probes.listen_overflows,
            probes_accepted_total: probes.accepted,
            probes_closed_total: probes.closed,
            probe_server_cpu_us: per_probe(probes.ours_cpu.server),
            baseline_probe_server_cpu_us: per_probe(probes.base_cpu.server),
            probe_client_cpu_us: per_probe(probes.ours_cpu.client),
            baseline_probe_client_cpu_us: per_probe(probes.base_cpu.client),

            replication_mb_per_sec: mb(&default_batch),
            raw_copy_mb_per_sec: mb(&raw_socket),
            replication_ratio: ratio(&default_batch, &raw_socket),
            replication_batch_1mib_mb_per_sec: mb(&large_batch),
            replication_batch_1mib_ratio: ratio(&large_batch, &raw_socket),
            replication_auto_switch_mb_per_sec: mb(&auto_switch),
            auto_switch_vs_classic_ratio: ratio(&auto_switch, &default_batch),
            replication_auto_switch_rounds_mb_per_sec: Transfer::rounds_mb_per_sec(&r.auto_switch),
            open_4mib_ms: round(open.small.as_secs_f64() * 1e3, 2),
            open_4gib_ms: round(open.large.as_secs_f64() * 1e3, 2),
            open_4gib_vs_4mib_ratio: round(open.large.as_secs_f64() / open.small.as_secs_f64(), 2),
            open_large_log_bytes: open.large_bytes,
            raw_copy_to_file_mb_per_sec: mb(&raw_file),
            replication_to_file_ratio: ratio(&default_batch, &raw_file),
            replication_batch_1mib_to_file_ratio: ratio(&large_batch, &raw_file),
            replication_rounds_mb_per_sec: Transfer::rounds_mb_per_sec(&r.default_batch),
            replication_batch_1mib_rounds_mb_per_sec: Transfer::rounds_mb_per_sec(&r.large_batch),
            raw_copy_rounds_mb_per_sec: Transfer::rounds_mb_per_sec(&r.raw_socket),
            raw_copy_to_file_rounds_mb_per_sec: Transfer::rounds_mb_per_sec(&r.raw_file),
            replicated_bytes: default_batch.bytes,
            replica_identical: r.identical,
            replication_cpu_ms_per_gib: default_batch.cpu_ms_per_gib(),
            replication_batch_1mib_cpu_ms_per_gib: large_batch.cpu_ms_per_gib(),
            replication_auto_switch_cpu_ms_per_gib: auto_switch.cpu_ms_per_gib(),
            raw_copy_cpu_ms_per_gib: raw_socket.cpu_ms_per_gib(),
            raw_copy_to_file_cpu_ms_per_gib: raw_file.cpu_ms_per_gib(),

            sync_wait_p50_us: quantile_us(&mut sync.ours, 0.50),
            sync_wait_p99_us: quantile_us(&mut sync.ours, 0.99),
            baseline_round_trip_p50_us: quantile_us(&mut sync.base, 0.50),
            baseline_round_trip_p99_us: quantile_us(&mut sync.base, 0.99),
            sync_waits: sync.ours.len(),

            idle_connection_bytes: idle.master_side.round(),
            idle_connection_bytes_both_sides: idle.both_sides.round(),
            idle_connection_bytes_slave_side: (idle.both_sides - idle.master_side).round(),
            idle_connection_bytes_both_sides_just_caught_up: idle.both_sides_caught_up.round(),
            idle_connection_bytes_left_after_close: idle.left_after_close.round(),
            idle_connections: IDLE_CONNECTIONS,
            upstream_master_buffer_bytes: UPSTREAM_MASTER_BUFFER,

            loadavg_1m,
            log_setup_s: round(r.setup.as_secs_f64(), 2),
            wall_s: round(wall.as_secs_f64(), 1),
            notes: NOTES,
        }
    }

    fn leaked(&self) -> bool {
        let l = self.leaked_after;
        l.connections != 0 || l.tasks != 0 || l.fds != 0
    }

    fn print_table(&self) {
        let row = |name: &str, ours: String, base: String, ratio: String| {
            println!("{name:<34} {ours:>14} {base:>14} {ratio:>8}");
        };
        row("figure", "ours".into(), "baseline".into(), "ratio".into());
        row(
            "probes/s (connect+close)",
            format!("{:.0}", self.probes_per_sec),
            format!("{:.0}", self.baseline_probes_per_sec),
            format!("{:.3}", self.probes_ratio),
        );
        row(
            "  server CPU per probe",
            format!("{:.1} us", self.probe_server_cpu_us),
            format!("{:.1} us", self.baseline_probe_server_cpu_us),
            String::new(),
        );
        for (name, ours, base, ratio) in [
            (
                "replication, 32 KiB batches",
                self.replication_mb_per_sec,
                self.raw_copy_mb_per_sec,
                self.replication_ratio,
            ),
            (
                "replication, 1 MiB batches",
                self.replication_batch_1mib_mb_per_sec,
                self.raw_copy_mb_per_sec,
                self.replication_batch_1mib_ratio,
            ),
            (
                "auto-switch vs classic, 32 KiB",
                self.replication_auto_switch_mb_per_sec,
                self.replication_mb_per_sec,
                self.auto_switch_vs_classic_ratio,
            ),
            (
                "  32 KiB vs copy into a file",
                self.replication_mb_per_sec,
                self.raw_copy_to_file_mb_per_sec,
                self.replication_to_file_ratio,
            ),
            (
                "  1 MiB vs copy into a file",
                self.replication_batch_1mib_mb_per_sec,
                self.raw_copy_to_file_mb_per_sec,
                self.replication_batch_1mib_to_file_ratio,
            ),
        ] {
            row(
                name,
                format!("{ours:.0} MB/s"),
                format!("{base:.0} MB/s"),
                format!("{ratio:.3}"),
            );
        }
        row(
            "sync wait p50",
            format!("{:.1} us", self.sync_wait_p50_us),
            format!("{:.1} us", self.baseline_round_trip_p50_us),
            String::new(),
        );
        row(
            "sync wait p99",
            format!("{:.1} us", self.sync_wait_p99_us),
            format!("{:.1} us", self.baseline_round_trip_p99_us),
            String::new(),
        );
        row(
            "open: 4 GiB log vs 4 MiB log",
            format!("{:.2} ms", self.open_4gib_ms),
            format!("{:.2} ms", self.open_4mib_ms),
            format!("{:.2}", self.open_4gib_vs_4mib_ratio),
        );
        row(
            "idle conn heap, master (upstream)",
            format!("{:.0} B", self.idle_connection_bytes),
            format!("{} B", self.upstream_master_buffer_bytes),
            String::new(),
        );
        println!(
            "\nleaked after the probes: {} connections, {} tasks, {} fds; idle heap both sides \
             {:.0} B (slave {:.0} B); replica identical: {}; wall {:.1} s",
            self.leaked_after.connections,
            self.leaked_after.tasks,
            self.leaked_after.fds,
            self.idle_connection_bytes_both_sides,
            self.idle_connection_bytes_slave_side,
            self.replica_identical,
            self.wall_s
        );
        println!(
            "failover time (simulated, at upstream's controller timeouts): cargo test -p \
             rmq-lifecycle --release --features sim --test sim -- failover_time --nocapture \
             (simulation code is not in this binary)"
        );
    }
}
