//! `bench registry`: [`ClientRegistry`] against upstream 4.x's single-lock `ProducerManager`
//! ([`ProducerManager4x`]), every figure measured beside its baseline in the same process.
//!
//! # What it measures
//!
//! * **Close cost against live groups**: the median time of one `channel_closed` for a channel
//!   in one producer group, with 1,000 to 1,000,000 other live groups. 4.x scans every group under
//!   its one lock, so its close grows with the table; ours visits only the channel's own groups.
//! * **Heartbeats during a close storm**: one thread refreshes a membership back to back while
//!   another closes channels back to back (each close removes a group), at 100,000 live groups.
//!   In 4.x every close holds the lock that every heartbeat needs for a full scan: the incident.
//! * **Refresh throughput**: one thread refreshing one membership.
//! * **Heap bytes per membership**, from the counting global allocator, in the worst of a wide
//!   shape (many groups of one channel) and a deep one (few groups of many channels).
//!
//! # How
//!
//! Both tables hold the same groups, grown in step. Close samples are timed one by one around
//! the close call only (registering and joining the probe channel is untimed) and taken in
//! alternating rounds, ours then the baseline's, so that noise from other work on the machine
//! falls on both sides. The storm's heartbeat latencies go into an exact 1 ns histogram that never
//! allocates.
//!
//! # What it is not
//!
//! Not a broker benchmark: no sockets, codec or thread pools, and no consumer groups. Latencies
//! include one `Instant::now()` (reported as `timer_overhead_ns`). Storm heartbeats are issued
//! back to back, so a heartbeat stuck behind a 4.x scan is one sample however long it waits:
//! `heartbeat_blocked_pct` understates the stall. `heartbeat_blocked_time_pct` (share of wall
//! time in blocked heartbeats) does not, and `heartbeat_lock_wait_time_pct` separates lock waits
//! from the OS preempting the heartbeat thread, which on a shared 2-core machine is most of ours.

use super::machine::round;
use crate::cli::alloc::live_bytes;
use crate::cli::upstream::producer_manager_4x::ProducerManager4x;
use rmq_lifecycle::core::{HeartbeatData, Millis};
use rmq_lifecycle::lifecycle::{ClientChannel, CloseReason};
use rmq_lifecycle::phase::Registered;
use rmq_lifecycle::registry::ClientRegistry;
use serde::Serialize;
use serde::ser::SerializeMap;
use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Live producer groups at which the close is timed.
const GROUP_COUNTS: [usize; 4] = [1_000, 15_000, 100_000, 1_000_000];
/// Groups per filler channel: few channels keep the 1M setup small and fast, and 1,000 is well
/// under the default `max_groups_per_channel`.
const GROUPS_PER_FILLER: usize = 1_000;
/// Our timed closes per G, split over [`ROUNDS`].
const CLOSES: usize = 5_000;
/// Alternating ours/baseline rounds per figure.
const ROUNDS: usize = 5;
/// Time budget for the baseline's closes at one G (its close is milliseconds at large G).
const BASELINE_CLOSE_BUDGET: Duration = Duration::from_millis(600);
/// Fewest baseline closes per G, so its median is still a median.
const BASELINE_MIN_CLOSES: usize = 15;
/// Most baseline closes per G.
const BASELINE_MAX_CLOSES: usize = 2_000;
/// Live groups during the close storm and the refresh-throughput runs.
const STORM_GROUPS: usize = 100_000;
/// How long each storm runs.
const STORM: Duration = Duration::from_secs(1);
/// A heartbeat this slow counts as blocked.
const BLOCKED_NS: u64 = 100_000;
/// Refreshes per side for the throughput figure, split over [`REFRESH_ROUNDS`].
const REFRESHES: usize = 10_000_000;
/// Short alternating rounds: preemption only ever slows a round down, so with many short ones
/// the best is the code's own speed, and the median shows what the machine's load left of it.
const REFRESH_ROUNDS: usize = 100;
/// Distinct fresh group names the storm's closer cycles through. Ours removes each group on
/// close, so a name comes back as a fresh group; 4.x keeps them, and never wraps in a second.
const STORM_NAMES: usize = 4_096;
/// The registry never reads a clock; every call gets this time.
const NOW: Millis = Millis(1);
/// Baseline channel ids: fillers here, probes above [`PROBE_IDS`].
const FILLER_IDS: u64 = 1 << 40;
const PROBE_IDS: u64 = 1 << 41;

/// Runs every measurement and prints one JSON object (`json`) or a table.
pub(crate) fn run(json: bool) -> ExitCode {
    let started = Instant::now();
    let timer_overhead_ns = timer_overhead_ns();
    progress("memory per membership");
    let memory = Memory::measure();
    progress("refresh throughput and close storm at 100,000 groups");
    let (throughput, storm) = {
        let mut tables = Tables::default();
        tables.grow_to(STORM_GROUPS);
        (Throughput::measure(&tables), StormPair::measure(&tables))
    };
    let close = CloseScaling::measure();
    let report = Report::new(
        close,
        storm,
        throughput,
        memory,
        timer_overhead_ns,
        started.elapsed(),
    );
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serializes")
        );
    } else {
        report.print_table();
    }
    ExitCode::SUCCESS
}

fn progress(what: &str) {
    eprintln!("bench registry: {what} ...");
}

/// The median cost of `Instant::now()` as used around every sample, for reading the figures.
fn timer_overhead_ns() -> u64 {
    let mut v: Vec<u64> = (0..10_001)
        .map(|_| {
            let t = Instant::now();
            t.elapsed().as_nanos() as u64
        })
        .collect();
    median(&mut v)
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn group_name(i: usize) -> String {
    format!("bench-group-{i:07}")
}

/// The heartbeat of filler channel `f`: groups `f * 1000 ..` of the shared numbering.
fn filler_heartbeat(f: usize) -> HeartbeatData {
    let first = f * GROUPS_PER_FILLER;
    HeartbeatData::producers(
        format!("bench-filler-{f}"),
        (first..first + GROUPS_PER_FILLER).map(group_name),
    )
}

/// Ours and the baseline, always holding the same live groups (`groups` of them, each with one
/// filler channel as its member).
#[derive(Default)]
struct Tables {
    ours: Arc<ClientRegistry>,
    /// The filler channels' handles (closing them would empty their groups).
    fillers: Vec<Channel>,
    base: ProducerManager4x,
    groups: usize,
}

/// One of our channels, over no transport: this bench measures the tables, not sockets.
type Channel = ClientChannel<Registered, ()>;

fn open(registry: &Arc<ClientRegistry>) -> Channel {
    ClientChannel::new((), "")
        .register(registry)
        .expect("under max_channels")
}

impl Tables {
    /// Adds filler channels until both hold `g` groups (a multiple of [`GROUPS_PER_FILLER`]).
    fn grow_to(&mut self, g: usize) {
        assert_eq!(g % GROUPS_PER_FILLER, 0);
        for f in self.groups / GROUPS_PER_FILLER..g / GROUPS_PER_FILLER {
            let hb = filler_heartbeat(f);
            let ch = open(&self.ours);
            ch.handle()
                .heartbeat(&hb, NOW)
                .expect("a filler's groups fit its cap");
            self.fillers.push(ch);
            let id = FILLER_IDS + f as u64;
            for p in &hb.producer_data_set {
                self.base.register_producer(&p.group_name, id, NOW);
            }
        }
        self.groups = g;
    }
}

/// Per-close median nanoseconds at each G, ours and the baseline's.
struct CloseScaling {
    ours: Vec<(usize, u64)>,
    base: Vec<(usize, u64)>,
    base_samples: Vec<(usize, u64)>,
    setup: Duration,
}

impl CloseScaling {
    fn measure() -> Self {
        let probe_group = "bench-probe";
        let probe = HeartbeatData::producers("bench-probe-client", [probe_group]);
        let mut tables = Tables::default();
        let mut next_probe = PROBE_IDS;
        let mut out = CloseScaling {
            ours: Vec::new(),
            base: Vec::new(),
            base_samples: Vec::new(),
            setup: Duration::ZERO,
        };
        for g in GROUP_COUNTS {
            progress(&format!("close cost at {g} live groups"));
            let t = Instant::now();
            tables.grow_to(g);
            out.setup += t.elapsed();
            let (ours, base) = (&tables.ours, &tables.base);

            let close_ours = |n: usize, samples: &mut Vec<u64>| {
                for _ in 0..n {
                    let ch = open(ours);
                    ch.handle().heartbeat(&probe, NOW).expect("one group");
                    let t = Instant::now();
                    let closed = ch.close(CloseReason::PeerClosed);
                    samples.push(t.elapsed().as_nanos() as u64);
                    assert!(closed.id().is_some());
                }
            };
            let mut close_base = |n: usize, samples: &mut Vec<u64>| {
                for _ in 0..n {
                    let id = next_probe;
                    next_probe += 1;
                    base.register_producer(probe_group, id, NOW);
                    let t = Instant::now();
                    let removed = base.channel_closed(id);
                    samples.push(t.elapsed().as_nanos() as u64);
                    assert_eq!(removed, 1);
                }
            };

            // Warm-up; the fastest of three baseline closes sizes its sample count (one
            // preempted close would otherwise shrink it).
            let (mut ours_ns, mut base_ns) = (Vec::new(), Vec::new());
            close_ours(100, &mut ours_ns);
            close_base(3, &mut base_ns);
            let fastest = base_ns.iter().copied().min().unwrap_or(1).max(1);
            let base_total = (BASELINE_CLOSE_BUDGET.as_nanos() as u64 / fastest)
                .clamp(BASELINE_MIN_CLOSES as u64, BASELINE_MAX_CLOSES as u64)
                as usize;
            ours_ns.clear();
            base_ns.clear();
            for _ in 0..ROUNDS {
                close_ours(CLOSES / ROUNDS, &mut ours_ns);
                close_base(base_total.div_ceil(ROUNDS), &mut base_ns);
            }
            // Every close removed the probe's group again; 4.x keeps it, empty.
            assert_eq!(ours.producer_group_count(), g);
            assert_eq!(base.group_count(), g + 1);
            out.ours.push((g, median(&mut ours_ns)));
            out.base_samples.push((g, base_ns.len() as u64));
            out.base.push((g, median(&mut base_ns)));
        }
        out
    }
}

/// Latencies at 1 ns resolution up to 1 ms, exact values above. Recording is an index and an
/// add, no allocation, so the recording thread's own cost is a constant few ns.
struct Latencies {
    counts: Vec<u32>,
    over: Vec<u64>,
    n: u64,
    max: u64,
    blocked: u64,
    blocked_ns: u64,
}

impl Latencies {
    const EXACT: usize = 1_000_000;

    fn new() -> Self {
        let mut counts = vec![0u32; Self::EXACT];
        // Touch every page now rather than inside the measured loop.
        counts.iter_mut().for_each(|c| *black_box(c) = 0);
        Latencies {
            counts,
            over: Vec::with_capacity(1 << 16),
            n: 0,
            max: 0,
            blocked: 0,
            blocked_ns: 0,
        }
    }

    fn record(&mut self, ns: u64) {
        self.n += 1;
        self.max = self.max.max(ns);
        if ns >= BLOCKED_NS {
            self.blocked += 1;
            self.blocked_ns += ns;
        }
        match self.counts.get_mut(ns as usize) {
            Some(c) => *c += 1,
            None => self.over.push(ns),
        }
    }

    /// The smallest latency with at least `q` of the samples at or below it.
    fn quantile(&mut self, q: f64) -> u64 {
        let rank = ((q * self.n as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (ns, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return ns as u64;
            }
        }
        self.over.sort_unstable();
        self.over[(rank - seen - 1) as usize]
    }
}

/// Heartbeat latencies on one thread while another closes channels back to back.
#[derive(Debug, Clone, Copy)]
struct Storm {
    p99_us: f64,
    max_us: f64,
    blocked_pct: f64,
    blocked_time_pct: f64,
    /// The part of `blocked_time_pct` in heartbeats during which the thread slept (a voluntary
    /// context switch, i.e. it waited for a lock), as opposed to being preempted.
    lock_wait_time_pct: f64,
    heartbeats: u64,
    closes: u64,
    /// The heartbeat thread's context switches during the storm: voluntary ones are sleeps
    /// (waiting for a lock), involuntary ones are the OS preempting it (other work on the box).
    switches: Switches,
}

/// A thread's context switch counts (zero where `/proc` is unavailable).
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Switches {
    voluntary: u64,
    involuntary: u64,
}

/// Reads the calling thread's [`Switches`] from `/proc/thread-self/status`, opened once and read
/// into a fixed buffer: no allocation, so no malloc lock that could itself put the thread to
/// sleep and be counted as a lock wait.
struct SwitchReader {
    file: Option<std::fs::File>,
    buf: Box<[u8; 8192]>,
}

impl SwitchReader {
    /// Must be created on the thread it reads.
    fn new() -> Self {
        SwitchReader {
            file: std::fs::File::open("/proc/thread-self/status").ok(),
            buf: Box::new([0; 8192]),
        }
    }

    fn read(&mut self) -> Switches {
        use std::os::unix::fs::FileExt;
        let Some(n) = self
            .file
            .as_ref()
            .and_then(|f| f.read_at(&mut *self.buf, 0).ok())
        else {
            return Switches::default();
        };
        let status = std::str::from_utf8(&self.buf[..n]).unwrap_or("");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        Switches {
            voluntary: field("voluntary_ctxt_switches:"),
            involuntary: field("nonvoluntary_ctxt_switches:"),
        }
    }
}

impl Switches {
    fn since(self, earlier: Switches) -> Switches {
        Switches {
            voluntary: self.voluntary - earlier.voluntary,
            involuntary: self.involuntary - earlier.involuntary,
        }
    }
}

impl Storm {
    /// Runs `close_one` in a loop on a second thread and times `heartbeat` on this one for
    /// [`STORM`].
    fn run(mut heartbeat: impl FnMut(), mut close_one: impl FnMut() + Send) -> Storm {
        let stop = AtomicBool::new(false);
        let start_line = Barrier::new(2);
        let mut lat = Latencies::new();
        let mut elapsed = Duration::ZERO;
        let mut switches = Switches::default();
        let mut lock_wait_ns = 0u64;
        let closes = std::thread::scope(|s| {
            let closer = s.spawn(|| {
                start_line.wait();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    close_one();
                    n += 1;
                }
                n
            });
            start_line.wait();
            let mut reader = SwitchReader::new();
            let before = reader.read();
            let mut last = before;
            let start = Instant::now();
            while elapsed < STORM {
                let t0 = Instant::now();
                heartbeat();
                let t1 = Instant::now();
                let ns = (t1 - t0).as_nanos() as u64;
                lat.record(ns);
                if ns >= BLOCKED_NS {
                    // Rare for ours, so reading /proc here costs nothing measured: it is
                    // outside the timed call.
                    let now = reader.read();
                    if now.voluntary > last.voluntary {
                        lock_wait_ns += ns;
                    }
                    last = now;
                }
                elapsed = t1 - start;
            }
            stop.store(true, Ordering::Relaxed);
            switches = reader.read().since(before);
            closer.join().expect("the closer thread does not panic")
        });
        Storm {
            p99_us: lat.quantile(0.99) as f64 / 1e3,
            max_us: lat.max as f64 / 1e3,
            blocked_pct: 100.0 * lat.blocked as f64 / lat.n as f64,
            blocked_time_pct: 100.0 * lat.blocked_ns as f64 / elapsed.as_nanos() as f64,
            lock_wait_time_pct: 100.0 * lock_wait_ns as f64 / elapsed.as_nanos() as f64,
            heartbeats: lat.n,
            closes,
            switches,
        }
    }
}

struct StormPair {
    ours: Storm,
    base: Storm,
}

impl StormPair {
    fn measure(tables: &Tables) -> Self {
        let names: Vec<String> = (0..STORM_NAMES)
            .map(|i| format!("bench-storm-{i:04}"))
            .collect();
        let fresh: Vec<HeartbeatData> = names
            .iter()
            .map(|n| HeartbeatData::producers("bench-storm-client", [n.as_str()]))
            .collect();
        let hb = HeartbeatData::producers("bench-hb-client", ["bench-hb"]);

        let ours = &tables.ours;
        let hb_ch = open(ours);
        let hb_handle = hb_ch.handle();
        hb_handle.heartbeat(&hb, NOW).expect("one group");
        let mut i = 0;
        let ours_storm = Storm::run(
            || {
                black_box(hb_handle.heartbeat(&hb, NOW).expect("refresh"));
            },
            || {
                let ch = open(ours);
                ch.handle()
                    .heartbeat(&fresh[i % STORM_NAMES], NOW)
                    .expect("one group");
                assert!(ch.close(CloseReason::PeerClosed).id().is_some());
                i += 1;
            },
        );
        assert_eq!(ours.producer_group_count(), STORM_GROUPS + 1);
        drop(hb_ch);

        let base = &tables.base;
        let hb_id = PROBE_IDS - 1;
        base.register_producer("bench-hb", hb_id, NOW);
        let mut j = 0;
        let base_storm = Storm::run(
            || base.register_producer("bench-hb", hb_id, NOW),
            || {
                let id = PROBE_IDS + j as u64;
                base.register_producer(&names[j % STORM_NAMES], id, NOW);
                black_box(base.channel_closed(id));
                j += 1;
            },
        );
        StormPair {
            ours: ours_storm,
            base: base_storm,
        }
    }
}

/// Single-thread refreshes of one membership per second, ours and the baseline's.
struct Throughput {
    ours: Rates,
    base: Rates,
}

/// The best and the median of the rounds' rates.
struct Rates {
    best: f64,
    median: f64,
}

impl Rates {
    fn of(rounds: &mut [f64]) -> Rates {
        rounds.sort_unstable_by(f64::total_cmp);
        Rates {
            best: rounds[rounds.len() - 1],
            median: rounds[rounds.len() / 2],
        }
    }
}

impl Throughput {
    fn measure(tables: &Tables) -> Self {
        let hb = HeartbeatData::producers("bench-refresh-client", ["bench-refresh"]);
        let ch = open(&tables.ours);
        let handle = ch.handle();
        handle.heartbeat(&hb, NOW).expect("one group");
        let id = PROBE_IDS - 2;
        let n = REFRESHES / REFRESH_ROUNDS;
        let (mut ours, mut base) = (Vec::new(), Vec::new());
        for _ in 0..REFRESH_ROUNDS {
            ours.push(per_sec(n, || {
                black_box(handle.heartbeat(&hb, NOW).expect("refresh"));
            }));
            base.push(per_sec(n, || {
                tables
                    .base
                    .register_producer(black_box("bench-refresh"), id, NOW)
            }));
        }
        assert!(ch.close(CloseReason::PeerClosed).id().is_some());
        Throughput {
            ours: Rates::of(&mut ours),
            base: Rates::of(&mut base),
        }
    }
}

fn per_sec(n: usize, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Heap bytes per membership in two shapes; name bytes excluded.
struct Memory {
    /// (shape, ours, baseline)
    shapes: Vec<(&'static str, f64, f64)>,
    per_channel: f64,
}

impl Memory {
    fn measure() -> Self {
        // Wide: 100,000 groups of one channel (100 channels, each in 1,000 of them).
        let wide: Vec<HeartbeatData> = (0..100).map(filler_heartbeat).collect();
        // Deep: 100 groups of 1,000 channels (each channel in all 100).
        let deep: Vec<HeartbeatData> = (0..1_000)
            .map(|c| HeartbeatData::producers(format!("bench-deep-{c}"), (0..100).map(group_name)))
            .collect();
        let shapes = vec![
            ("wide_100000x1", Self::ours(&wide), Self::base(&wide)),
            ("deep_100x1000", Self::ours(&deep), Self::base(&deep)),
        ];
        Memory {
            shapes,
            per_channel: Self::per_channel(100_000),
        }
    }

    /// Bytes of the distinct group names (and client ids, with `client_ids`) in `hbs`: what a
    /// table must store whatever its design, so they are left out of the per-membership figure.
    fn name_bytes(hbs: &[HeartbeatData], client_ids: bool) -> isize {
        let mut groups = std::collections::HashSet::new();
        let mut bytes = 0;
        for hb in hbs {
            if client_ids {
                bytes += hb.client_id.len();
            }
            for p in &hb.producer_data_set {
                if groups.insert(p.group_name.as_str()) {
                    bytes += p.group_name.len();
                }
            }
        }
        bytes as isize
    }

    fn memberships(hbs: &[HeartbeatData]) -> f64 {
        hbs.iter().map(|h| h.producer_data_set.len()).sum::<usize>() as f64
    }

    fn ours(hbs: &[HeartbeatData]) -> f64 {
        let names = Self::name_bytes(hbs, true);
        let reg = Arc::new(ClientRegistry::default());
        let mut chans = Vec::with_capacity(hbs.len());
        let before = live_bytes();
        for hb in hbs {
            let ch = open(&reg);
            ch.handle().heartbeat(hb, NOW).expect("under the group cap");
            chans.push(ch);
        }
        let after = live_bytes();
        (after - before - names) as f64 / Self::memberships(hbs)
    }

    fn base(hbs: &[HeartbeatData]) -> f64 {
        let names = Self::name_bytes(hbs, false);
        let base = ProducerManager4x::new();
        let before = live_bytes();
        for (c, hb) in hbs.iter().enumerate() {
            for p in &hb.producer_data_set {
                base.register_producer(&p.group_name, c as u64, NOW);
            }
        }
        let after = live_bytes();
        (after - before - names) as f64 / Self::memberships(hbs)
    }

    /// Heap bytes of a registered channel in no group (the baseline has no channel table).
    fn per_channel(n: usize) -> f64 {
        let reg = Arc::new(ClientRegistry::default());
        let mut chans = Vec::with_capacity(n);
        let before = live_bytes();
        for _ in 0..n {
            chans.push(open(&reg));
        }
        (live_bytes() - before) as f64 / n as f64
    }

    /// The worst shape: (ours, baseline).
    fn worst(&self) -> (f64, f64) {
        let ours = self.shapes.iter().map(|s| s.1).fold(0.0, f64::max);
        let base = self.shapes.iter().map(|s| s.2).fold(0.0, f64::max);
        (ours, base)
    }
}

/// Figures keyed by G, serialized as a JSON object in ascending G.
struct ByG(Vec<(usize, u64)>);

impl ByG {
    fn at(&self, g: usize) -> u64 {
        self.0
            .iter()
            .find(|(k, _)| *k == g)
            .map(|(_, v)| *v)
            .expect("measured at every G")
    }
}

impl Serialize for ByG {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (g, v) in &self.0 {
            map.serialize_entry(&g.to_string(), v)?;
        }
        map.end()
    }
}

/// Everything printed, flat so that scripts can read one key per figure.
#[derive(Serialize)]
struct Report {
    close_ns: ByG,
    baseline_close_ns: ByG,
    close_speedup_1000000: f64,
    close_flatness: f64,
    baseline_close_samples: ByG,
    heartbeat_p99_us: f64,
    heartbeat_max_us: f64,
    heartbeat_blocked_pct: f64,
    heartbeat_blocked_time_pct: f64,
    heartbeat_lock_wait_time_pct: f64,
    storm_heartbeats: u64,
    storm_closes: u64,
    storm_heartbeat_thread_switches: Switches,
    baseline_heartbeat_p99_us: f64,
    baseline_heartbeat_max_us: f64,
    baseline_heartbeat_blocked_pct: f64,
    baseline_heartbeat_blocked_time_pct: f64,
    baseline_heartbeat_lock_wait_time_pct: f64,
    baseline_storm_heartbeats: u64,
    baseline_storm_closes: u64,
    baseline_storm_heartbeat_thread_switches: Switches,
    heartbeats_per_sec: f64,
    baseline_heartbeats_per_sec: f64,
    heartbeats_per_sec_median: f64,
    baseline_heartbeats_per_sec_median: f64,
    bytes_per_membership: f64,
    baseline_bytes_per_membership: f64,
    bytes_per_membership_by_shape: std::collections::BTreeMap<&'static str, f64>,
    baseline_bytes_per_membership_by_shape: std::collections::BTreeMap<&'static str, f64>,
    bytes_per_channel: f64,
    timer_overhead_ns: u64,
    setup_s: f64,
    wall_s: f64,
    notes: &'static str,
}

const NOTES: &str = "Live groups are producer groups with one member each: filler channels, \
each a member of 1,000 groups. close_ns: a fresh channel joins the group bench-probe (ours \
creates the group and the close removes it; 4.x keeps it, empty, so its table holds G+1) and only \
channel_closed is timed, one call per sample: 5,000 samples per G for ours, a time-boxed count \
for 4.x (baseline_close_samples), in 5 alternating rounds; medians. Storm: 100,000 live groups; \
one thread refreshes one membership back to back for 1 s while another registers a channel, \
joins it to a fresh group and closes it, back to back (4.x: register_producer against \
channel_closed). blocked = a heartbeat taking >= 100 us. Back-to-back heartbeats hide a long \
wait in one sample, so blocked_time_pct gives the share of the storm's wall time spent in blocked \
heartbeats, and lock_wait_time_pct the part of it in heartbeats during which the thread slept \
(a voluntary context switch: a lock wait) rather than being preempted by other work on the \
machine; *_switches are the heartbeat thread's context switches during the storm. \
heartbeats_per_sec: 10M refreshes per side at 100,000 groups in 100 alternating rounds; the best \
round (preemption only slows a round), and the median round beside it. \
bytes_per_membership: live heap bytes (requested sizes) per membership, worst of the two shapes, \
channel state included, group-name and client-id bytes excluded (their pointers, lengths and Arc \
headers kept). Latencies include one Instant::now() (timer_overhead_ns). setup_s: growing both tables \
to 1,000,000 groups.";

impl Report {
    fn new(
        close: CloseScaling,
        storm: StormPair,
        throughput: Throughput,
        memory: Memory,
        timer_overhead_ns: u64,
        wall: Duration,
    ) -> Self {
        let ours = ByG(close.ours);
        let base = ByG(close.base);
        let big = *GROUP_COUNTS.last().expect("non-empty");
        let small = GROUP_COUNTS[0];
        let (bytes, base_bytes) = memory.worst();
        Report {
            close_speedup_1000000: round(base.at(big) as f64 / ours.at(big) as f64, 1),
            close_flatness: round(ours.at(big) as f64 / ours.at(small) as f64, 2),
            close_ns: ours,
            baseline_close_ns: base,
            baseline_close_samples: ByG(close.base_samples),
            heartbeat_p99_us: round(storm.ours.p99_us, 3),
            heartbeat_max_us: round(storm.ours.max_us, 1),
            heartbeat_blocked_pct: round(storm.ours.blocked_pct, 4),
            heartbeat_blocked_time_pct: round(storm.ours.blocked_time_pct, 3),
            heartbeat_lock_wait_time_pct: round(storm.ours.lock_wait_time_pct, 3),
            storm_heartbeats: storm.ours.heartbeats,
            storm_closes: storm.ours.closes,
            storm_heartbeat_thread_switches: storm.ours.switches,
            baseline_heartbeat_p99_us: round(storm.base.p99_us, 3),
            baseline_heartbeat_max_us: round(storm.base.max_us, 1),
            baseline_heartbeat_blocked_pct: round(storm.base.blocked_pct, 4),
            baseline_heartbeat_blocked_time_pct: round(storm.base.blocked_time_pct, 3),
            baseline_heartbeat_lock_wait_time_pct: round(storm.base.lock_wait_time_pct, 3),
            baseline_storm_heartbeats: storm.base.heartbeats,
            baseline_storm_closes: storm.base.closes,
            baseline_storm_heartbeat_thread_switches: storm.base.switches,
            heartbeats_per_sec: throughput.ours.best.round(),
            baseline_heartbeats_per_sec: throughput.base.best.round(),
            heartbeats_per_sec_median: throughput.ours.median.round(),
            baseline_heartbeats_per_sec_median: throughput.base.median.round(),
            bytes_per_membership: round(bytes, 1),
            baseline_bytes_per_membership: round(base_bytes, 1),
            bytes_per_membership_by_shape: memory
                .shapes
                .iter()
                .map(|s| (s.0, round(s.1, 1)))
                .collect(),
            baseline_bytes_per_membership_by_shape: memory
                .shapes
                .iter()
                .map(|s| (s.0, round(s.2, 1)))
                .collect(),
            bytes_per_channel: round(memory.per_channel, 1),
            timer_overhead_ns,
            setup_s: round(close.setup.as_secs_f64(), 2),
            wall_s: round(wall.as_secs_f64(), 1),
            notes: NOTES,
        }
    }

    /// The human form: each figure, its baseline, and how many times better ours is ("-" where
    /// ours is zero).
    fn print_table(&self) {
        let row = |name: &str, ours: String, base: String, gain: f64| {
            let gain = if gain.is_finite() {
                format!("{gain:.1}x")
            } else {
                "-".to_owned()
            };
            println!("{name:<36} {ours:>12} {base:>14} {gain:>11}");
        };
        println!(
            "{:<36} {:>12} {:>14} {:>11}",
            "figure", "ours", "4.x baseline", "gain"
        );
        for (g, ours) in &self.close_ns.0 {
            let base = self.baseline_close_ns.at(*g);
            let name = format!("close, G = {g}");
            row(&name, ns(*ours), ns(base), base as f64 / *ours as f64);
        }
        let us = |v: f64| {
            if v >= 1_000.0 {
                format!("{:.1} ms", v / 1e3)
            } else {
                format!("{v:.3} us")
            }
        };
        let pct = |v: f64| format!("{v:.4} %");
        let lower_better = [
            (
                "storm heartbeat p99",
                us(self.heartbeat_p99_us),
                us(self.baseline_heartbeat_p99_us),
                self.baseline_heartbeat_p99_us / self.heartbeat_p99_us,
            ),
            (
                "storm heartbeat max",
                us(self.heartbeat_max_us),
                us(self.baseline_heartbeat_max_us),
                self.baseline_heartbeat_max_us / self.heartbeat_max_us,
            ),
            (
                "storm heartbeats >= 100 us",
                pct(self.heartbeat_blocked_pct),
                pct(self.baseline_heartbeat_blocked_pct),
                self.baseline_heartbeat_blocked_pct / self.heartbeat_blocked_pct,
            ),
            (
                "storm time in blocked heartbeats",
                pct(self.heartbeat_blocked_time_pct),
                pct(self.baseline_heartbeat_blocked_time_pct),
                self.baseline_heartbeat_blocked_time_pct / self.heartbeat_blocked_time_pct,
            ),
            (
                "  of which waiting for a lock",
                pct(self.heartbeat_lock_wait_time_pct),
                pct(self.baseline_heartbeat_lock_wait_time_pct),
                self.baseline_heartbeat_lock_wait_time_pct / self.heartbeat_lock_wait_time_pct,
            ),
            (
                "heap per membership (worst shape)",
                format!("{:.1} B", self.bytes_per_membership),
                format!("{:.1} B", self.baseline_bytes_per_membership),
                self.baseline_bytes_per_membership / self.bytes_per_membership,
            ),
        ];
        for (name, ours, base, gain) in lower_better {
            row(name, ours, base, gain);
        }
        let per_s = |v: f64| format!("{:.2} M/s", v / 1e6);
        row(
            "refreshes, one thread (best round)",
            per_s(self.heartbeats_per_sec),
            per_s(self.baseline_heartbeats_per_sec),
            self.heartbeats_per_sec / self.baseline_heartbeats_per_sec,
        );
        row(
            "refreshes, one thread (median)",
            per_s(self.heartbeats_per_sec_median),
            per_s(self.baseline_heartbeats_per_sec_median),
            self.heartbeats_per_sec_median / self.baseline_heartbeats_per_sec_median,
        );
        println!(
            "\nstorm closes in 1 s: ours {}, 4.x {}; heap per idle channel: {:.1} B; \
             timer overhead {} ns; wall {:.1} s",
            self.storm_closes,
            self.baseline_storm_closes,
            self.bytes_per_channel,
            self.timer_overhead_ns,
            self.wall_s,
        );
    }
}

fn ns(v: u64) -> String {
    if v >= 1_000_000 {
        format!("{:.1} ms", v as f64 / 1e6)
    } else if v >= 10_000 {
        format!("{:.1} us", v as f64 / 1e3)
    } else {
        format!("{v} ns")
    }
}
