//! `replay stale-groups`: a client makes a new producer group `IotRuleEngine-<timestamp>` over and
//! over and abandons it, while consumers heartbeat over real connections and channels keep
//! opening and closing; against `serve`'s listener, then against upstream 4.x's tables
//! (one lock, every close visits every group, empty groups kept) on the same wire.

use super::harness::{Progress, Stop, ms_since, percentile};
use crate::cli::upstream::broker_4x::Broker4x;
use bytes::BytesMut;
use rmq_lifecycle::core::heartbeat::{ConsumerData, ProducerData, SubscriptionData};
use rmq_lifecycle::core::remoting::{FrameDecoder, RemotingCommand, code};
use rmq_lifecycle::core::{ClientRules, HeartbeatData};
use rmq_lifecycle::lifecycle::TaskGauge;
use rmq_lifecycle::net::Clock;
use rmq_lifecycle::net::remoting::{RemotingConfig, RemotingServer};
use rmq_lifecycle::registry::{ClientRegistry, RegistryConfig};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Scale and timing.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct StaleGroupsConfig {
    /// Abandoned producer groups to create.
    pub(crate) groups: usize,
    /// Heartbeating consumers (one connection and one consumer group each).
    pub(crate) consumers: usize,
    /// Each consumer's heartbeat period, ms (Java clients use 30 s; compressed here).
    pub(crate) heartbeat_interval_ms: u64,
    /// A heartbeat answered later than this (or not at all) missed its deadline, ms.
    pub(crate) deadline_ms: u64,
    /// Connections that open, heartbeat and close in a loop meanwhile.
    pub(crate) churners: usize,
    /// Concurrent group creators.
    pub(crate) creators: usize,
    /// Heartbeat workers on both sides (upstream `heartbeatThreadPoolNums`).
    pub(crate) heartbeat_workers: usize,
    /// Sample period, ms.
    pub(crate) sample_ms: u64,
    /// How long the consumers keep going after the last group was created, ms.
    pub(crate) tail_ms: u64,
}

impl Default for StaleGroupsConfig {
    fn default() -> Self {
        StaleGroupsConfig {
            groups: 15_000,
            consumers: 16,
            heartbeat_interval_ms: 100,
            deadline_ms: 3_000,
            churners: 4,
            creators: 8,
            heartbeat_workers: std::thread::available_parallelism()
                .map_or(4, |n| n.get())
                .min(32),
            sample_ms: 100,
            tail_ms: 1_000,
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
    /// Slowest consumer heartbeat answered in this window, µs.
    pub(crate) heartbeat_max_us: u64,
    /// Heartbeats still unanswered past the deadline so far.
    pub(crate) missed: u64,
}

/// One side's outcome.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct Side {
    /// "ours" or "upstream-4.x".
    pub(crate) name: String,
    /// The sampled series.
    pub(crate) samples: Vec<Sample>,
    /// Consumer heartbeats answered.
    pub(crate) heartbeats: u64,
    /// Median latency, µs.
    pub(crate) p50_us: u64,
    /// 99th percentile latency, µs.
    pub(crate) p99_us: u64,
    /// Slowest, µs.
    pub(crate) max_us: u64,
    /// Heartbeats that missed the deadline (answered late or not at all).
    pub(crate) missed: u64,
    /// Abandoned groups created.
    pub(crate) created: u64,
    /// Groups left at the end.
    pub(crate) final_groups: usize,
    /// Groups that are still in use at the end (the consumers' and `CLIENT_INNER_PRODUCER`).
    pub(crate) live_groups: usize,
    /// Wall time of the side, ms.
    pub(crate) wall_ms: u64,
    /// PASS when no heartbeat missed its deadline and only the live groups remain.
    pub(crate) pass: bool,
}

/// The whole report.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct StaleGroupsReport {
    /// The configuration used.
    pub(crate) config: Option<StaleGroupsConfig>,
    /// This crate's listener and registry.
    pub(crate) ours: Side,
    /// Upstream 4.x's tables on the same wire.
    pub(crate) upstream: Side,
    /// Stopped early (Ctrl-C).
    pub(crate) interrupted: bool,
}

impl StaleGroupsReport {
    /// PASS for the replay: ours passed and the emulation really stalled or leaked.
    pub(crate) fn passed(&self) -> bool {
        self.ours.pass && !self.upstream.pass && !self.interrupted
    }
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
    let groups = {
        let r = registry.clone();
        move || r.producer_group_count() + r.consumer_group_count()
    };
    report.ours = side(
        "ours",
        &config,
        server.local_addr(),
        &groups,
        None,
        progress,
        stop,
    )
    .await;
    server.shutdown(Duration::from_secs(5)).await;
    if !stop.is_cancelled() {
        let broker = Arc::new(Broker4x::bind(listen, config.heartbeat_workers).await?);
        let b = broker.clone();
        let groups = move || b.group_count();
        // Upstream may never get through the groups; give it the time ours took, and then some.
        let budget = Duration::from_millis(report.ours.wall_ms * 2 + 10_000);
        report.upstream = side(
            "upstream-4.x",
            &config,
            broker.local_addr(),
            &groups,
            Some(budget),
            progress,
            stop,
        )
        .await;
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
}

async fn side(
    name: &str,
    config: &StaleGroupsConfig,
    addr: SocketAddr,
    groups: &(dyn Fn() -> usize + Sync),
    budget: Option<Duration>,
    progress: &dyn Progress,
    stop: &Stop,
) -> Side {
    let started = Instant::now();
    let shared = Arc::new(Shared::default());
    let done = Stop::new();
    let deadline = Duration::from_millis(config.deadline_ms);
    let mut background = tokio::task::JoinSet::new();
    for i in 0..config.consumers {
        let (shared, done, interval) = (
            shared.clone(),
            done.clone(),
            Duration::from_millis(config.heartbeat_interval_ms),
        );
        background.spawn(async move {
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
                        shared.missed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
                tokio::time::sleep(interval).await;
            }
        });
    }
    let churn_done = Stop::new();
    let mut churners = tokio::task::JoinSet::new();
    for j in 0..config.churners {
        let done = churn_done.clone();
        churners.spawn(async move {
            let data = producer(&format!("churner-{j}"), &format!("churn-{j}"));
            while !done.is_cancelled() {
                if let Ok(mut c) = Client::connect(addr).await {
                    let _ = c.heartbeat(&data).await;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
    }
    progress.phase(&format!("stale-groups: {name}"), config.groups as u64);
    let mut creators = tokio::task::JoinSet::new();
    let cutoff = budget.map(|b| started + b);
    for k in 0..config.creators.max(1) {
        let (shared, stop, step, total) = (
            shared.clone(),
            stop.clone(),
            config.creators.max(1),
            config.groups,
        );
        creators.spawn(async move {
            for i in (k..total).step_by(step) {
                if stop.is_cancelled() || cutoff.is_some_and(|c| Instant::now() > c) {
                    return;
                }
                let group = format!("IotRuleEngine-{}", 1_700_000_000_000u64 + i as u64);
                if let Ok(mut c) = Client::connect(addr).await {
                    let _ = c.heartbeat(&producer("iot-rule-engine", &group)).await;
                }
                shared.created.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let mut samples = Vec::new();
    let mut reported = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(config.sample_ms.max(1)));
    let mut creating = true;
    let mut tail_end = None;
    loop {
        tokio::select! {
            joined = creators.join_next(), if creating => {
                if joined.is_none() {
                    creating = false;
                    tail_end = Some(Instant::now() + Duration::from_millis(config.tail_ms));
                }
            }
            _ = tick.tick() => {
                let created = shared.created.load(Ordering::Relaxed);
                progress.advance(created - reported);
                reported = created;
                samples.push(Sample {
                    t_ms: ms_since(started),
                    groups: groups(),
                    created,
                    heartbeat_max_us: shared.window_max.swap(0, Ordering::Relaxed),
                    missed: shared.missed.load(Ordering::Relaxed),
                });
                if tail_end.is_some_and(|t| Instant::now() > t) || stop.is_cancelled() {
                    break;
                }
            }
        }
    }
    creators.abort_all();
    churn_done.cancel();
    while churners.join_next().await.is_some() {}
    // Closes are processed asynchronously (upstream: on its event thread); let the tables settle,
    // then count while the consumers are still connected: only their groups should be left.
    let live_groups = config.consumers + 1;
    let settle = Instant::now() + Duration::from_secs(5);
    while groups() != live_groups && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let final_groups = groups();
    done.cancel();
    while background.join_next().await.is_some() {}
    let mut latencies = std::mem::take(&mut *shared.latencies.lock().unwrap());
    latencies.sort_unstable();
    let missed = shared.missed.load(Ordering::Relaxed);
    samples.push(Sample {
        t_ms: ms_since(started),
        groups: final_groups,
        created: shared.created.load(Ordering::Relaxed),
        heartbeat_max_us: 0,
        missed,
    });
    Side {
        name: name.to_owned(),
        samples,
        heartbeats: latencies.len() as u64,
        p50_us: percentile(&latencies, 50.0),
        p99_us: percentile(&latencies, 99.0),
        max_us: latencies.last().copied().unwrap_or(0),
        missed,
        created: shared.created.load(Ordering::Relaxed),
        final_groups,
        live_groups,
        wall_ms: ms_since(started),
        pass: missed == 0 && final_groups == live_groups && !stop.is_cancelled(),
    }
}
