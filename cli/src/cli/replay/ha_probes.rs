//! `replay ha-probes`: a master replicating to a slave while a prober hammers the HA port the way
//! a load balancer's health check does, then the same storm against upstream 5.1.4's order.
//!
//! Probe mix, cycled over every 8 probes: 3 connect and close; 3 connect, send the incident's
//! timestamp text and close; 1 connects and stalls (half a report) until the master's
//! housekeeping closes it; 1 reports an offset beyond the master's log.

use super::harness::{ProcessStats, Progress, Stop, ms_since};
use crate::cli::upstream::ha_master_514::{HaMaster514, Snapshot514};
use rmq_lifecycle::core::ha::{HaConfig, encode_report};
use rmq_lifecycle::lifecycle::TaskGauge;
use rmq_lifecycle::net::Clock;
use rmq_lifecycle::net::ha::{HaMaster, HaSlave, MasterConfig, SlaveConfig};
use rmq_lifecycle::store::{CommitLog, FlushPolicy, StoreConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Scale and timing.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct HaProbesConfig {
    /// Probes per side.
    pub(crate) probes: usize,
    /// Concurrent quick probes.
    pub(crate) concurrency: usize,
    /// Concurrent stalling probes (each holds a socket for the housekeeping interval).
    pub(crate) stall_concurrency: usize,
    /// The master's housekeeping interval (closes a stalled probe), ms.
    pub(crate) housekeeping_ms: u64,
    /// Sample period, ms.
    pub(crate) sample_ms: u64,
    /// Resident-memory growth allowed on our side after the storm, bytes (see `verdict`).
    pub(crate) rss_bound_bytes: u64,
}

impl Default for HaProbesConfig {
    fn default() -> Self {
        HaProbesConfig {
            probes: 100_000,
            concurrency: 64,
            stall_concurrency: 1024,
            housekeeping_ms: 500,
            sample_ms: 100,
            rss_bound_bytes: 64 << 20,
        }
    }
}

/// One sample of our side.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct OurSample {
    /// Milliseconds since the storm began.
    pub(crate) t_ms: u64,
    /// Probes sent so far.
    pub(crate) probes: u64,
    /// Rows in the HA table.
    pub(crate) ha_connections: usize,
    /// Tasks alive (master).
    pub(crate) tasks: usize,
    /// Process fds (segment files excluded).
    pub(crate) fds: usize,
    /// Process resident memory.
    pub(crate) rss_bytes: u64,
    /// The slave's acknowledged offset.
    pub(crate) slave_acked: u64,
    /// The master's max offset.
    pub(crate) master_max: u64,
}

/// One sample of upstream's side.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct UpstreamSample {
    /// Milliseconds since the storm began.
    pub(crate) t_ms: u64,
    /// Probes sent so far.
    pub(crate) probes: u64,
    /// The emulated master's figures.
    #[serde(flatten)]
    pub(crate) snapshot: Snapshot514,
}

/// Our side's outcome.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct OurSide {
    /// The sampled series.
    pub(crate) samples: Vec<OurSample>,
    /// Baseline before the storm (tasks, fds, rss).
    pub(crate) baseline: OurSample,
    /// After the storm settled.
    pub(crate) after: OurSample,
    /// Probes sent.
    pub(crate) probes: u64,
    /// Probes per second sent.
    pub(crate) probes_per_sec: f64,
    /// Any sample where an ack exceeded the master's max offset (must be 0).
    pub(crate) acks_beyond_max: u64,
    /// The slave's log equals the master's (digest of the whole log).
    pub(crate) slave_identical: bool,
    /// The slave's acked offset grew during the storm.
    pub(crate) replication_continued: bool,
    /// Ctrl-C ended the storm before every probe was sent: the figures are those measured, and
    /// the verdict's checks are not a result.
    pub(crate) interrupted: bool,
    /// PASS / FAIL and why.
    pub(crate) verdict: Verdict,
}

/// Upstream's side.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct UpstreamSide {
    /// The sampled series.
    pub(crate) samples: Vec<UpstreamSample>,
    /// After the storm settled.
    pub(crate) after: Snapshot514,
    /// Probes sent.
    pub(crate) probes: u64,
    /// Ctrl-C ended the storm before every probe was sent.
    pub(crate) interrupted: bool,
    /// LEAK when dead entries remain (the expected outcome), with the figures.
    pub(crate) verdict: Verdict,
}

/// A verdict and its reasons.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Verdict {
    /// True when the side behaved (for upstream: true means no leak was shown).
    pub(crate) pass: bool,
    /// One line per check.
    pub(crate) reasons: Vec<String>,
}

/// The whole report.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct HaProbesReport {
    /// The configuration used.
    pub(crate) config: Option<HaProbesConfig>,
    /// This crate.
    pub(crate) ours: OurSide,
    /// Upstream 5.1.4's order; `None` when Ctrl-C came before it started (nothing measured).
    pub(crate) upstream: Option<UpstreamSide>,
    /// Stopped early (Ctrl-C).
    pub(crate) interrupted: bool,
    /// Wall time, ms.
    pub(crate) wall_ms: u64,
}

impl HaProbesReport {
    /// PASS for the replay: ours passed and the emulation really leaked (otherwise the replay
    /// proves nothing).
    pub(crate) fn passed(&self) -> bool {
        self.ours.verdict.pass
            && self.upstream.as_ref().is_some_and(|u| !u.verdict.pass)
            && !self.interrupted
    }
}

const SEGMENT: u64 = 64 << 20;

/// Runs both sides. Needs a multi-threaded tokio runtime.
pub(crate) async fn run(
    config: HaProbesConfig,
    progress: &dyn Progress,
    stop: &Stop,
) -> std::io::Result<HaProbesReport> {
    let started = Instant::now();
    let mut report = HaProbesReport {
        config: Some(config.clone()),
        ..HaProbesReport::default()
    };
    report.ours = ours(&config, progress, stop).await?;
    if !stop.is_cancelled() {
        report.upstream = Some(upstream(&config, progress, stop).await?);
    }
    report.interrupted = stop.is_cancelled();
    report.wall_ms = ms_since(started);
    Ok(report)
}

/// Sends probe number `i` of the mix.
async fn probe(addr: SocketAddr, i: usize, beyond: u64) {
    let Ok(mut c) = TcpStream::connect(addr).await else {
        return;
    };
    let mut sink = [0u8; 64];
    let payload: &[u8] = match i % 8 {
        0..=2 => return,
        3..=5 => b"2024-10-30 16:42:30",
        6 => &[0, 0, 0, 0],
        _ => &beyond.to_be_bytes(),
    };
    if c.write_all(payload).await.is_ok() {
        // Until the master closes it (at once for garbage, after housekeeping for a stall).
        while matches!(c.read(&mut sink).await, Ok(n) if n > 0) {}
    }
}

/// Runs `probes` probes: stalls (i % 8 == 6) `stall_concurrency` at a time, the others
/// `concurrency` at a time. Counts them in `sent`.
async fn storm(
    addr: SocketAddr,
    config: &HaProbesConfig,
    sent: Arc<AtomicU64>,
    progress: &dyn Progress,
    stop: &Stop,
) {
    let beyond = u64::MAX >> 1;
    let mut set = tokio::task::JoinSet::new();
    let all: Vec<usize> = (0..config.probes).collect();
    let (stalls, quick): (Vec<usize>, Vec<usize>) = all.into_iter().partition(|i| i % 8 == 6);
    for (list, workers) in [
        (Arc::new(stalls), config.stall_concurrency),
        (Arc::new(quick), config.concurrency),
    ] {
        for w in 0..workers.max(1) {
            let (list, sent, stop) = (list.clone(), sent.clone(), stop.clone());
            set.spawn(async move {
                for &i in list.iter().skip(w).step_by(workers.max(1)) {
                    if stop.is_cancelled() {
                        return;
                    }
                    probe(addr, i, beyond).await;
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    }
    let mut reported = 0;
    loop {
        tokio::select! {
            done = set.join_next() => if done.is_none() { break },
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        let now = sent.load(Ordering::Relaxed);
        progress.advance(now - reported);
        reported = now;
    }
    progress.advance(sent.load(Ordering::Relaxed) - reported);
}

async fn ours(
    config: &HaProbesConfig,
    progress: &dyn Progress,
    stop: &Stop,
) -> std::io::Result<OurSide> {
    let (mdir, sdir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let open = |dir: &std::path::Path| {
        CommitLog::open(StoreConfig {
            dir: dir.to_owned(),
            segment_size: SEGMENT,
            flush: FlushPolicy::Manual,
        })
        .map(Arc::new)
    };
    // Heartbeats well inside the housekeeping interval, so a quiet slave is never taken for a
    // stalled probe (upstream: 5 s heartbeats, 20 s housekeeping).
    let ha = HaConfig {
        heartbeat_ms: (config.housekeeping_ms / 4).max(1),
        housekeeping_ms: config.housekeeping_ms,
        segment_size: SEGMENT,
        ..HaConfig::default()
    };
    let tasks = TaskGauge::new();
    let master_config = MasterConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        ha,
        max_connections: 65_536,
        ..MasterConfig::default()
    };
    let master = Arc::new(
        HaMaster::bind(
            master_config,
            open(mdir.path())?,
            Clock::start(),
            tasks.clone(),
        )
        .await?,
    );
    let slave_log = open(sdir.path())?;
    let slave = HaSlave::start(
        SlaveConfig {
            ha,
            ..SlaveConfig::new(master.local_addr())
        },
        slave_log.clone(),
        Clock::start(),
        TaskGauge::new(),
    );
    master.append(b"first record")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while master.registry().acked_at_least(master.log().max_offset()) == 0
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let excluded = [mdir.path(), sdir.path()];
    let sample = |t0: Instant, probes: u64| {
        let p = ProcessStats::read(&excluded);
        let slave_acked = master
            .registry()
            .entries()
            .iter()
            .filter_map(|e| e.ack)
            .max()
            .unwrap_or(0);
        OurSample {
            t_ms: ms_since(t0),
            probes,
            ha_connections: master.registry().count(),
            tasks: tasks.alive(),
            fds: p.fds,
            rss_bytes: p.rss_bytes,
            slave_acked,
            master_max: master.log().max_offset(),
        }
    };
    let t0 = Instant::now();
    let mut side = OurSide {
        baseline: sample(t0, 0),
        ..OurSide::default()
    };

    // Keep appending during the storm; sample; check AckBounded on every sample.
    let sent = Arc::new(AtomicU64::new(0));
    let storm_done = Stop::new();
    let appender = {
        let (m, done) = (master.clone(), storm_done.clone());
        tokio::spawn(async move {
            let record = [7u8; 256];
            while !done.is_cancelled() {
                let _ = m.append(&record);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    progress.phase("ha-probes: ours", config.probes as u64);
    let storm_fut = storm(master.local_addr(), config, sent.clone(), progress, stop);
    tokio::pin!(storm_fut);
    let mut tick = tokio::time::interval(Duration::from_millis(config.sample_ms.max(1)));
    loop {
        tokio::select! {
            _ = &mut storm_fut => break,
            _ = tick.tick() => {
                let s = sample(t0, sent.load(Ordering::Relaxed));
                side.acks_beyond_max += u64::from(s.slave_acked > s.master_max);
                side.samples.push(s);
            }
        }
    }
    let storm_ms = ms_since(t0).max(1);
    storm_done.cancel();
    let _ = appender.await;
    side.probes = sent.load(Ordering::Relaxed);
    side.interrupted = side.probes < config.probes as u64;
    side.probes_per_sec = side.probes as f64 * 1000.0 / storm_ms as f64;

    // Settle: stalled probes close after housekeeping; wait for the baseline.
    let settle_until = Instant::now() + Duration::from_millis(config.housekeeping_ms * 3 + 5_000);
    loop {
        let s = sample(t0, side.probes);
        side.samples.push(s);
        let settled =
            s.ha_connections == 1 && s.tasks == side.baseline.tasks && s.fds == side.baseline.fds;
        if settled || Instant::now() > settle_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(config.sample_ms.max(1))).await;
    }
    // Replication kept going: the slave reaches the master's end, byte-identical.
    let end = master.log().max_offset();
    let until = Instant::now() + Duration::from_secs(20);
    while slave_log.max_offset() < end && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    side.after = sample(t0, side.probes);
    side.slave_identical = slave_log.max_offset() == end
        && slave_log.digest(master.log().min_offset(), end).ok()
            == master.log().digest(master.log().min_offset(), end).ok();
    let first_acked = side.samples.first().map_or(0, |s| s.slave_acked);
    side.replication_continued = side
        .samples
        .iter()
        .any(|s| s.slave_acked > first_acked && s.t_ms <= storm_ms);
    side.verdict = verdict(config, &side);

    let _ = slave.shutdown(Duration::from_secs(5)).await;
    if let Some(master) = Arc::into_inner(master) {
        master.shutdown(Duration::from_secs(5)).await;
    }
    Ok(side)
}

/// PASS when, after the storm: the table holds only the slave; tasks and fds are back to the
/// baseline; resident memory grew by at most `rss_bound_bytes` (per-connection state is freed at
/// close, so what remains is the allocator's and the runtime's caches; a leak at upstream's rate
/// would retain 1 MiB per leaked probe, i.e. gigabytes at this scale); no ack ever exceeded the
/// master's max offset; replication continued during the storm; the slave's log is identical.
fn verdict(config: &HaProbesConfig, side: &OurSide) -> Verdict {
    let (b, a) = (&side.baseline, &side.after);
    let rss_growth = a.rss_bytes.saturating_sub(b.rss_bytes);
    let checks = [
        (
            a.ha_connections == 1,
            format!(
                "HA connections after the storm: {} (the slave's only: 1)",
                a.ha_connections
            ),
        ),
        (
            a.tasks == b.tasks,
            format!("tasks alive: {} (baseline {})", a.tasks, b.tasks),
        ),
        (
            a.fds == b.fds,
            format!("open fds: {} (baseline {})", a.fds, b.fds),
        ),
        (
            rss_growth <= config.rss_bound_bytes,
            format!(
                "resident memory grew {:.1} MiB (bound {} MiB)",
                rss_growth as f64 / 1048576.0,
                config.rss_bound_bytes >> 20
            ),
        ),
        (
            side.acks_beyond_max == 0,
            format!(
                "acks beyond the master's max offset: {}",
                side.acks_beyond_max
            ),
        ),
        (
            side.replication_continued,
            format!(
                "replication continued during the storm: {}",
                side.replication_continued
            ),
        ),
        (
            side.slave_identical,
            format!(
                "slave log byte-identical to the master's: {}",
                side.slave_identical
            ),
        ),
    ];
    // An interrupted storm's checks are figures, not a judgement: a short storm may simply not
    // have seen replication advance.
    let mark = |ok: bool| match (side.interrupted, ok) {
        (true, _) => "    ",
        (false, true) => "ok  ",
        (false, false) => "FAIL",
    };
    Verdict {
        pass: !side.interrupted && checks.iter().all(|(ok, _)| *ok),
        reasons: checks
            .into_iter()
            .map(|(ok, why)| format!("{} {why}", mark(ok)))
            .collect(),
    }
}

async fn upstream(
    config: &HaProbesConfig,
    progress: &dyn Progress,
    stop: &Stop,
) -> std::io::Result<UpstreamSide> {
    let master = HaMaster514::bind(
        ([127, 0, 0, 1], 0).into(),
        Duration::from_millis(config.housekeeping_ms),
    )
    .await?;
    // A slave that keeps reporting, so the list has one legitimate entry.
    let mut slave = TcpStream::connect(master.local_addr()).await?;
    slave.write_all(&encode_report(0)).await?;
    let t0 = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    progress.phase("ha-probes: upstream 5.1.4 order", config.probes as u64);
    let mut side = UpstreamSide::default();
    let storm_fut = storm(master.local_addr(), config, sent.clone(), progress, stop);
    tokio::pin!(storm_fut);
    let mut tick = tokio::time::interval(Duration::from_millis(config.sample_ms.max(1)));
    loop {
        tokio::select! {
            _ = &mut storm_fut => break,
            _ = tick.tick() => side.samples.push(UpstreamSample { t_ms: ms_since(t0), probes: sent.load(Ordering::Relaxed), snapshot: master.snapshot() }),
        }
    }
    // The same settle time as ours: stalled probes are closed by housekeeping, exiting tasks end.
    tokio::time::sleep(Duration::from_millis(config.housekeeping_ms * 2)).await;
    side.probes = sent.load(Ordering::Relaxed);
    side.interrupted = side.probes < config.probes as u64;
    side.after = master.snapshot();
    side.samples.push(UpstreamSample {
        t_ms: ms_since(t0),
        probes: side.probes,
        snapshot: side.after,
    });
    let a = side.after;
    let leaked = a.dead_entries > 0;
    side.verdict = Verdict {
        pass: !leaked,
        reasons: vec![
            format!(
                "{} dead entries in connectionList (list {}, connectionCount {}), retaining {} MiB of read buffers",
                a.dead_entries,
                a.list_len,
                a.count,
                a.retained_bytes >> 20
            ),
            format!(
                "push2SlaveMaxOffset raised by probe bytes to {}",
                a.push2slave_max
            ),
        ],
    };
    drop(slave);
    master.shutdown();
    Ok(side)
}
