//! `replay stale-groups`: a client made a new producer group `IotRuleEngine-<timestamp>` over and
//! over and abandoned it; with 15,000 such groups in the tables, channels keep closing while
//! consumers heartbeat over real connections. Against `serve`'s listener, then against upstream
//! 4.x's tables (one lock, every close visits every group, empty groups kept) on the same wire.
//!
//! Each side runs three phases, sampled throughout: the build-up (the abandoned groups are
//! registered over short-lived connections that then close), the incident (connections open and
//! close at the incident's rate for a fixed time) and the settle (until the side has processed
//! every close, or a cap). The consumers heartbeat from start to end.

use super::harness::{Progress, Stop, ms_since, percentile};
use crate::cli::upstream::broker_4x::{Broker4x, Broker4xConfig, Stats4x};
use bytes::BytesMut;
use rmq_lifecycle::core::heartbeat::{ConsumerData, ProducerData, SubscriptionData};
use rmq_lifecycle::core::remoting::{FrameDecoder, RemotingCommand, code};
use rmq_lifecycle::core::{ClientRules, HeartbeatData};
use rmq_lifecycle::lifecycle::TaskGauge;
use rmq_lifecycle::net::Clock;
use rmq_lifecycle::net::remoting::{RemotingConfig, RemotingServer};
use rmq_lifecycle::registry::{ClientRegistry, RegistryConfig};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Scale and timing. The defaults are the incident's where it has a figure (docs/REPLAY.md).
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct StaleGroupsConfig {
    /// Abandoned producer groups to create.
    pub(crate) groups: usize,
    /// Heartbeating consumers (one connection and one consumer group each). Each has at most
    /// one heartbeat outstanding, as a Java client does, so blocking every heartbeat thread
    /// takes more consumers than threads.
    pub(crate) consumers: usize,
    /// Each consumer's heartbeat period, ms (Java clients use 30 s; compressed here).
    pub(crate) heartbeat_interval_ms: u64,
    /// A heartbeat answered later than this (or not at all) missed its deadline, ms.
    pub(crate) deadline_ms: u64,
    /// Concurrent group creators in the build-up.
    pub(crate) creators: usize,
    /// Groups each build-up connection registers before it closes.
    pub(crate) groups_per_connection: usize,
    /// Channel closes per second during the incident.
    pub(crate) close_rate: u64,
    /// How long the incident lasts, ms.
    pub(crate) incident_ms: u64,
    /// Heartbeat workers on both sides (upstream `heartbeatThreadPoolNums`).
    pub(crate) heartbeat_workers: usize,
    /// The 4.x side's modelled JVM time per group a close visits, ns.
    pub(crate) close_cost_per_group_ns: u64,
    /// Sample period, ms.
    pub(crate) sample_ms: u64,
    /// The longest a side may take to process its last closes after the incident, ms.
    pub(crate) settle_cap_ms: u64,
}

/// Upstream's reported time of one close scanning a table of leaked groups (#7737), taken as the
/// time at the incident's 15,000 groups.
pub(crate) const INCIDENT_CLOSE_MS: u64 = 25;

impl Default for StaleGroupsConfig {
    fn default() -> Self {
        StaleGroupsConfig {
            groups: 15_000,
            consumers: 64,
            heartbeat_interval_ms: 100,
            deadline_ms: 3_000,
            creators: 8,
            groups_per_connection: 250,
            close_rate: 50,
            incident_ms: 15_000,
            heartbeat_workers: 32,
            close_cost_per_group_ns: INCIDENT_CLOSE_MS * 1_000_000 / 15_000,
            sample_ms: 100,
            settle_cap_ms: 15_000,
        }
    }
}

/// One sample of a side.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct Sample {
    /// Milliseconds since the side started.
    pub(crate) t_ms: u64,
    /// Groups in the tables (empty ones included, for upstream).
    pub(crate) groups: usize,
    /// Abandoned groups created so far.
    pub(crate) created: u64,
    /// Channel closes the side has processed so far.
    pub(crate) closes: u64,
    /// Slowest consumer heartbeat answered since the last sample, µs.
    pub(crate) heartbeat_max_us: u64,
    /// Heartbeats that missed the deadline so far.
    pub(crate) missed: u64,
}

/// One side's outcome.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct Side {
    /// "ours" or "upstream-4.x".
    pub(crate) name: String,
    /// The sampled series, from the start to the end of the settle.
    pub(crate) samples: Vec<Sample>,
    /// Consumer heartbeats answered within the deadline.
    pub(crate) heartbeats: u64,
    /// Median latency, µs; `None` when no heartbeat was answered (nothing to measure).
    pub(crate) p50_us: Option<u64>,
    /// 99th percentile latency, µs (`None` as `p50_us`).
    pub(crate) p99_us: Option<u64>,
    /// Slowest, µs (the highest point of the samples' `heartbeat_max_us`; `None` as `p50_us`).
    pub(crate) max_us: Option<u64>,
    /// Heartbeats that missed the deadline (answered late or not at all).
    pub(crate) missed: u64,
    /// Abandoned groups created.
    pub(crate) created: u64,
    /// Groups left at the end.
    pub(crate) final_groups: usize,
    /// Groups that are still in use at the end (the consumers' and `CLIENT_INNER_PRODUCER`).
    pub(crate) live_groups: usize,
    /// Channel closes the side processed by the end of the settle (the consumers' own closes,
    /// after it, are not counted).
    pub(crate) closes: u64,
    /// Build-up and incident, ms: the same load on both sides.
    pub(crate) load_ms: u64,
    /// After the load, until the side had processed every close (or the cap), ms.
    pub(crate) settle_ms: u64,
    /// It processed every close within the cap.
    pub(crate) settled: bool,
    /// Wall time of the side, ms.
    pub(crate) wall_ms: u64,
    /// The 4.x emulation's own counts (upstream only).
    pub(crate) broker_4x: Option<Stats4x>,
    /// Ctrl-C stopped the side before its settle ended: its figures are those measured until
    /// then, and `pass` is not a result.
    pub(crate) interrupted: bool,
    /// PASS when no heartbeat missed its deadline and only the live groups remain.
    pub(crate) pass: bool,
}

impl Side {
    /// Consumer heartbeats missed the deadline.
    pub(crate) fn stalled(&self) -> bool {
        self.missed > 0
    }

    /// Groups with no live client kept in the tables.
    pub(crate) fn leaked(&self) -> usize {
        self.final_groups.saturating_sub(self.live_groups)
    }

    /// What the upstream side did, in the words of the summary: "stalled (...)" and/or
    /// "leaked (...)", or `None` if it did neither (then the replay proves nothing).
    pub(crate) fn failure(&self, deadline_ms: u64) -> Option<String> {
        let mut what = Vec::new();
        if self.stalled() {
            let mut s = format!(
                "stalled ({} consumer heartbeats missed the {} deadline",
                self.missed,
                secs(deadline_ms)
            );
            if let Some(b) = &self.broker_4x {
                s += &format!(
                    "; all {} heartbeat threads blocked for {}",
                    b.heartbeat_threads,
                    secs(b.all_blocked_ms)
                );
            }
            what.push(s + ")");
        }
        if self.leaked() > 0 {
            what.push(format!("leaked ({} empty groups kept)", self.leaked()));
        }
        (!what.is_empty()).then(|| what.join(" and "))
    }
}

/// `3 s`, `1.5 s`.
fn secs(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// The whole report.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct StaleGroupsReport {
    /// The configuration used.
    pub(crate) config: Option<StaleGroupsConfig>,
    /// This crate's listener and registry.
    pub(crate) ours: Side,
    /// Upstream 4.x's tables on the same wire; `None` when Ctrl-C came before it started
    /// (nothing measured).
    pub(crate) upstream: Option<Side>,
    /// Stopped early (Ctrl-C).
    pub(crate) interrupted: bool,
}

impl StaleGroupsReport {
    /// PASS for the replay: ours passed and the emulation really stalled or leaked.
    pub(crate) fn passed(&self) -> bool {
        let deadline = self.config.as_ref().map_or(3_000, |c| c.deadline_ms);
        self.ours.pass
            && self
                .upstream
                .as_ref()
                .is_some_and(|u| u.failure(deadline).is_some())
            && !self.interrupted
    }
}

/// What a side is measured against: its address and what its tables say.
struct Target {
    addr: SocketAddr,
    /// Groups in the tables.
    groups: Box<dyn Fn() -> usize + Send + Sync>,
    /// Channel closes processed so far.
    closes: Box<dyn Fn() -> u64 + Send + Sync>,
}

/// Runs both sides. Needs a multi-threaded tokio runtime.
pub(crate) async fn run(
    config: StaleGroupsConfig,
    progress: &dyn Progress,
    stop: &Stop,
) -> io::Result<StaleGroupsReport> {
    let mut report = StaleGroupsReport {
        config: Some(config.clone()),
        ..Default::default()
    };
    let registry = Arc::new(ClientRegistry::new(RegistryConfig {
        rules: ClientRules {
            max_groups_per_channel: 1 << 20,
            max_channels: 1 << 22,
            ..ClientRules::default()
        },
        ..RegistryConfig::default()
    }));
    let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let server_config = RemotingConfig {
        listen,
        heartbeat_workers: config.heartbeat_workers,
        ..RemotingConfig::default()
    };
    let server = RemotingServer::bind(
        server_config,
        registry.clone(),
        Clock::start(),
        TaskGauge::new(),
    )
    .await?;
    let stats = server.stats().clone();
    let r = registry.clone();
    let target = Target {
        addr: server.local_addr(),
        groups: Box::new(move || r.producer_group_count() + r.consumer_group_count()),
        closes: Box::new(move || stats.closed_total()),
    };
    report.ours = side("ours", &config, &target, None, progress, stop).await;
    server.shutdown(Duration::from_secs(5)).await;
    if !stop.is_cancelled() {
        let broker = Arc::new(
            Broker4x::bind(
                listen,
                Broker4xConfig {
                    heartbeat_threads: config.heartbeat_workers,
                    close_cost_per_group: Duration::from_nanos(config.close_cost_per_group_ns),
                },
            )
            .await?,
        );
        let (b, c) = (broker.clone(), broker.clone());
        let target = Target {
            addr: broker.local_addr(),
            groups: Box::new(move || b.group_count()),
            closes: Box::new(move || c.stats().closes_done),
        };
        // Upstream may never get through the build-up; give it the time ours took, and then some.
        let budget = Duration::from_millis(report.ours.load_ms * 2 + 20_000);
        let mut upstream = side(
            "upstream-4.x",
            &config,
            &target,
            Some(budget),
            progress,
            stop,
        )
        .await;
        upstream.broker_4x = Some(broker.stats());
        report.upstream = Some(upstream);
    }
    report.interrupted = stop.is_cancelled();
    Ok(report)
}

/// A minimal remoting client: one request at a time, stale answers skipped.
struct Client {
    stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
    opaque: i32,
}

impl Client {
    async fn connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: BytesMut::new(),
            decoder: FrameDecoder::default(),
            opaque: 0,
        })
    }

    async fn heartbeat(&mut self, data: &HeartbeatData) -> io::Result<RemotingCommand> {
        self.opaque += 1;
        let request = RemotingCommand {
            opaque: self.opaque,
            body: Some(data.to_json().into()),
            ..RemotingCommand::request(code::HEART_BEAT)
        };
        let frame = request.to_bytes().map_err(io::Error::other)?;
        self.stream.write_all(&frame).await?;
        loop {
            while let Some(response) = self
                .decoder
                .decode(&mut self.buf)
                .map_err(io::Error::other)?
            {
                if response.opaque == self.opaque {
                    return Ok(response);
                }
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

fn producer(client: &str, group: &str) -> HeartbeatData {
    HeartbeatData {
        client_id: client.into(),
        producer_data_set: vec![ProducerData {
            group_name: group.into(),
        }],
        ..Default::default()
    }
}

fn consumer(i: usize) -> HeartbeatData {
    let group = format!("consumer-group-{i}");
    HeartbeatData {
        client_id: format!("consumer-{i}"),
        consumer_data_set: vec![ConsumerData {
            group_name: group,
            subscription_data_set: vec![SubscriptionData {
                topic: "IotRuleEngineTopic".into(),
                sub_string: "*".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        // Java clients always name their internal producer.
        producer_data_set: vec![ProducerData {
            group_name: "CLIENT_INNER_PRODUCER".into(),
        }],
        ..Default::default()
    }
}

#[derive(Default)]
struct Shared {
    latencies: Mutex<Vec<u64>>,
    window_max: AtomicU64,
    missed: AtomicU64,
    created: AtomicU64,
    /// Connections the clients opened and then closed (build-up and incident).
    closed: AtomicU64,
    /// Incident connections opened so far.
    churned: AtomicU64,
}

/// Samples a side every `sample_ms` while a phase runs, and reports the phase's progress.
struct Sampler<'a> {
    started: Instant,
    tick: tokio::time::Interval,
    samples: Vec<Sample>,
    shared: Arc<Shared>,
    target: &'a Target,
    progress: &'a dyn Progress,
    /// What the current phase counts, and how much of it was reported.
    counter: fn(&Shared) -> u64,
    reported: u64,
}

impl Sampler<'_> {
    fn phase(&mut self, name: &str, total: u64, counter: fn(&Shared) -> u64) {
        self.progress.phase(name, total);
        (self.counter, self.reported) = (counter, 0);
    }

    /// Reports the current phase's count as it is now.
    fn report(&mut self) {
        let done = (self.counter)(&self.shared);
        self.progress.advance(done.saturating_sub(self.reported));
        self.reported = self.reported.max(done);
    }

    fn sample(&mut self) {
        self.report();
        self.samples.push(Sample {
            t_ms: ms_since(self.started),
            groups: (self.target.groups)(),
            created: self.shared.created.load(Ordering::Relaxed),
            closes: (self.target.closes)(),
            heartbeat_max_us: self.shared.window_max.swap(0, Ordering::Relaxed),
            missed: self.shared.missed.load(Ordering::Relaxed),
        });
    }

    /// Runs `phase`, sampling meanwhile, and reports its final count when it ends: the work
    /// done since the last tick would otherwise never be shown (a log would end the phase at
    /// `14162/15000`).
    async fn during<T>(&mut self, phase: impl Future<Output = T>) -> T {
        tokio::pin!(phase);
        loop {
            tokio::select! {
                out = &mut phase => {
                    self.report();
                    return out;
                }
                _ = self.tick.tick() => self.sample(),
            }
        }
    }
}

async fn side(
    name: &str,
    config: &StaleGroupsConfig,
    target: &Target,
    budget: Option<Duration>,
    progress: &dyn Progress,
    stop: &Stop,
) -> Side {
    let started = Instant::now();
    let addr = target.addr;
    let shared = Arc::new(Shared::default());
    let done = Stop::new();
    let deadline = Duration::from_millis(config.deadline_ms);
    let mut consumers = tokio::task::JoinSet::new();
    for i in 0..config.consumers {
        let (shared, done, interval) = (
            shared.clone(),
            done.clone(),
            Duration::from_millis(config.heartbeat_interval_ms),
        );
        consumers.spawn(async move {
            let Ok(mut client) = Client::connect(addr).await else {
                return;
            };
            let data = consumer(i);
            while !done.is_cancelled() {
                let t = Instant::now();
                match tokio::time::timeout(deadline, client.heartbeat(&data)).await {
                    Ok(Ok(_)) => {
                        let us = t.elapsed().as_micros() as u64;
                        shared.latencies.lock().unwrap().push(us);
                        shared.window_max.fetch_max(us, Ordering::Relaxed);
                    }
                    Ok(Err(_)) => return,
                    Err(_) => {
                        // As a Java client does: count it, send the next one.
                        shared.missed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
                tokio::time::sleep(interval).await;
            }
        });
    }
    let mut tick = tokio::time::interval(Duration::from_millis(config.sample_ms.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sampler = Sampler {
        started,
        tick,
        samples: Vec::new(),
        shared: shared.clone(),
        target,
        progress,
        counter: |s| s.created.load(Ordering::Relaxed),
        reported: 0,
    };

    // The build-up: the abandoned groups, registered over connections that then close.
    sampler.phase(
        &format!("stale-groups: {name}: groups"),
        config.groups as u64,
        |s| s.created.load(Ordering::Relaxed),
    );
    let cutoff = budget.map(|b| started + b);
    let per_connection = config.groups_per_connection.max(1);
    let connections = config.groups.div_ceil(per_connection);
    let mut creators = tokio::task::JoinSet::new();
    for k in 0..config.creators.max(1) {
        let (shared, stop, step, total) = (
            shared.clone(),
            stop.clone(),
            config.creators.max(1),
            config.groups,
        );
        creators.spawn(async move {
            for c in (k..connections).step_by(step) {
                let Ok(mut client) = Client::connect(addr).await else {
                    continue;
                };
                for i in c * per_connection..((c + 1) * per_connection).min(total) {
                    if stop.is_cancelled() || cutoff.is_some_and(|c| Instant::now() > c) {
                        break;
                    }
                    let group = format!("IotRuleEngine-{}", 1_700_000_000_000u64 + i as u64);
                    if client
                        .heartbeat(&producer("iot-rule-engine", &group))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    shared.created.fetch_add(1, Ordering::Relaxed);
                }
                drop(client);
                shared.closed.fetch_add(1, Ordering::Relaxed);
                if stop.is_cancelled() || cutoff.is_some_and(|c| Instant::now() > c) {
                    return;
                }
            }
        });
    }
    sampler
        .during(async { while creators.join_next().await.is_some() {} })
        .await;

    // The incident: connections open and close at `close_rate` for `incident_ms`.
    let closes = config.close_rate * config.incident_ms / 1000;
    sampler.phase(&format!("stale-groups: {name}: closes"), closes, |s| {
        s.churned.load(Ordering::Relaxed)
    });
    let incident = async {
        let mut churn = tokio::task::JoinSet::new();
        let period = Duration::from_secs(1).div_f64(config.close_rate.max(1) as f64);
        let mut tick = tokio::time::interval(period);
        for _ in 0..closes {
            tick.tick().await;
            if stop.is_cancelled() {
                break;
            }
            let shared = shared.clone();
            shared.churned.fetch_add(1, Ordering::Relaxed);
            churn.spawn(async move {
                // Health checks and reconnecting clients: 4.x visits every group whatever the
                // channel registered.
                if let Ok(stream) = TcpStream::connect(addr).await {
                    drop(stream);
                    shared.closed.fetch_add(1, Ordering::Relaxed);
                }
            });
            while churn.try_join_next().is_some() {}
        }
        while churn.join_next().await.is_some() {}
    };
    sampler.during(incident).await;
    let load_ms = ms_since(started);

    // The settle: until the side has processed every close the clients made.
    let cap = Instant::now() + Duration::from_millis(config.settle_cap_ms);
    let settled = sampler
        .during(async {
            loop {
                if (target.closes)() >= shared.closed.load(Ordering::Relaxed) {
                    return true;
                }
                if Instant::now() >= cap || stop.is_cancelled() {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    let settle_ms = ms_since(started) - load_ms;
    // Read once, here: a Ctrl-C after the settle leaves this side's figures complete.
    let interrupted = stop.is_cancelled();
    // Counted while the consumers are still connected: only their groups should be left.
    let live_groups = config.consumers + 1;
    let (final_groups, closes) = ((target.groups)(), (target.closes)());
    if sampler
        .samples
        .last()
        .is_none_or(|s| ms_since(started) > s.t_ms)
    {
        sampler.sample();
    }
    done.cancel();
    while consumers.join_next().await.is_some() {}
    // The heartbeats answered since are the last sample's: its maximum is now complete, and the
    // samples' highest point is the run's slowest heartbeat.
    let missed = shared.missed.load(Ordering::Relaxed);
    if let Some(last) = sampler.samples.last_mut() {
        let rest = shared.window_max.swap(0, Ordering::Relaxed);
        last.heartbeat_max_us = last.heartbeat_max_us.max(rest);
        last.missed = missed;
    }
    let mut latencies = std::mem::take(&mut *shared.latencies.lock().unwrap());
    latencies.sort_unstable();
    let answered = |p| (!latencies.is_empty()).then(|| percentile(&latencies, p));
    Side {
        name: name.to_owned(),
        samples: sampler.samples,
        heartbeats: latencies.len() as u64,
        p50_us: answered(50.0),
        p99_us: answered(99.0),
        max_us: latencies.last().copied(),
        missed,
        created: shared.created.load(Ordering::Relaxed),
        final_groups,
        live_groups,
        closes,
        load_ms,
        settle_ms,
        settled,
        wall_ms: ms_since(started),
        broker_4x: None,
        interrupted,
        pass: missed == 0 && final_groups == live_groups && !interrupted,
    }
}
