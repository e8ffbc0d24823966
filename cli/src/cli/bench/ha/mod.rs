//! `bench ha`: the HA master and slave ([`HaMaster`], [`HaSlave`]) over loopback, each figure
//! beside a baseline measured in the same process.
//!
//! # What it measures
//!
//! * **Probes**: TCP connect-and-close probes per second against the HA port, until the master
//!   has accepted and removed every one, beside a trivial accept-and-drop listener; then, at
//!   quiescence, what the probes left behind (table rows, tasks, fds: all must be 0).
//! * **Replication**: a fresh slave catching up a 1 GiB log (a classic one holding its first
//!   record, since a classic master sends an empty slave only its last segment), beside a plain tokio copy of the
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

use super::machine::{
    CLIENT_THREADS, Cpu, SERVER_THREADS, listen_overflows, loadavg, round, runtime, sleep_until,
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

struct Runtimes {
    server: Runtime,
    client: Runtime,
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

mod memory;
mod probes;
mod replication;

use memory::*;
use probes::*;
use replication::*;

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
    /// `CommitLog::open` (warm): a 4 MiB log, and up to 4 sealed GiB plus the same 4 MiB active.
    open_4mib_ms: f64,
    open_large_ms: f64,
    open_large_vs_4mib_ratio: f64,
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
in 256 MiB segments, in the page cache; a fresh slave (same segment size, upstream timings; \
empty in auto-switch mode, holding the master's first record in classic mode, whose master sends \
an empty slave only its last segment, as upstream's does) is timed from start until its log ends \
at the master's max offset, over the bytes it received; replica_identical \
compares CRCs of both logs after every run. replication_batch_1mib: the same with batch_max = 1 \
MiB (a second master on the same log, a fresh slave). replication_auto_switch: the same log \
served by a third master in auto-switch mode (epoch 1 begun at the log's end, so the bytes are \
epoch 0) to an auto-switch slave: handshake, epoch-bounded 32 KiB batches, 12-byte reports; \
auto_switch_vs_classic_ratio divides it by the 32 KiB classic median. open_*: CommitLog::open, \
warm, median of 7 alternating opens, of a log of 4 MiB and of one of 4 sealed 1 GiB segments \
(fewer where the temp directory lacks the room; open_large_log_bytes says) plus the same 4 MiB active (recovery scans only the active segment). raw_copy: the same bytes read from the master's \
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
            open_large_ms: round(open.large.as_secs_f64() * 1e3, 2),
            open_large_vs_4mib_ratio: round(open.large.as_secs_f64() / open.small.as_secs_f64(), 2),
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
            &format!(
                "open: {:.0} GiB log vs 4 MiB log",
                self.open_large_log_bytes as f64 / (1u64 << 30) as f64
            ),
            format!("{:.2} ms", self.open_large_ms),
            format!("{:.2} ms", self.open_4mib_ms),
            format!("{:.2}", self.open_large_vs_4mib_ratio),
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
