//! A RocketMQ 4.x broker's client management, emulated on the same wire as `serve` for the
//! side-by-side `replay stale-groups`: the same clients connect to it, only the tables differ.
//!
//! Kept from upstream because it is what stalled: one lock for the whole `ProducerManager`
//! (taken by every heartbeat, since Java clients always name `CLIENT_INNER_PRODUCER`); a channel
//! close, processed on the single `NettyEventExecutor` thread, visits every producer and consumer
//! group under that lock; empty groups are never removed on close (#8673); heartbeats run on a
//! pool of `heartbeatThreadPoolNums` threads behind a bounded queue. Not kept: expiry scans (the
//! replay is shorter than 120 s), subscriptions, events, fast-fail.
//!
//! Modelled, not emulated: how long the JVM takes to visit a group, and who gets its monitor
//! between two closes. This scan visits a group in tens of nanoseconds; upstream reported about
//! 25 ms per close (apache/rocketmq#7737). With [`Broker4xConfig::close_cost_per_group`] set, a
//! close holds the lock until that cost times the groups it visited has passed (asleep, so the
//! replay does not burn a core for it). Closes already queued run back to back under one hold
//! (see [`event_thread`]); Rust's mutex would instead queue the event thread behind every waiting
//! heartbeat thread, which the JVM's monitor does not.
//!
//! It counts what production saw ([`Stats4x`]): how long all heartbeat threads were blocked at
//! once on the manager's lock, the longest a heartbeat queued for a thread, and the closes.

use super::producer_manager_4x::Channel4x;
use super::producer_manager_4x::ProducerManager4x;
use bytes::BytesMut;
use rmq_lifecycle::core::remoting::{FrameDecoder, RemotingCommand, code};
use rmq_lifecycle::core::{HeartbeatData, Millis};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

type Consumers = Mutex<HashMap<String, HashMap<Channel4x, Millis>>>;

struct Job {
    channel: Channel4x,
    request: RemotingCommand,
    reply: mpsc::UnboundedSender<RemotingCommand>,
    queued: Instant,
}

/// How the emulated broker runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Broker4xConfig {
    /// Heartbeat threads (upstream `heartbeatThreadPoolNums`).
    pub(crate) heartbeat_threads: usize,
    /// The modelled JVM time per group a close visits; zero for this scan's own time only.
    pub(crate) close_cost_per_group: Duration,
}

/// What the emulated broker counted, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Stats4x {
    /// Heartbeat threads.
    pub(crate) heartbeat_threads: usize,
    /// Channel closes handed to the event thread.
    pub(crate) closes_queued: u64,
    /// Channel closes it has processed.
    pub(crate) closes_done: u64,
    /// Mean time a close held the manager's lock and ran, µs.
    pub(crate) close_mean_us: u64,
    /// Longest close, µs.
    pub(crate) close_max_us: u64,
    /// Time during which every heartbeat thread was blocked at once on the manager's lock, ms.
    pub(crate) all_blocked_ms: u64,
    /// The longest such stretch, ms.
    pub(crate) all_blocked_longest_ms: u64,
    /// The longest a heartbeat waited in the queue for a free thread, ms.
    pub(crate) queue_wait_max_ms: u64,
}

/// Heartbeat threads waiting on the manager's lock, and since when all of them are.
#[derive(Debug, Default)]
struct Waits {
    waiting: usize,
    since: Option<Instant>,
    total: Duration,
    longest: Duration,
}

#[derive(Debug, Default)]
struct Counters {
    threads: usize,
    consumer_groups: AtomicUsize,
    waits: Mutex<Waits>,
    closes_queued: AtomicU64,
    closes_done: AtomicU64,
    close_ns_total: AtomicU64,
    close_ns_max: AtomicU64,
    queue_wait_us_max: AtomicU64,
}

impl Counters {
    fn wait_begins(&self) {
        let mut w = self.waits.lock().unwrap();
        w.waiting += 1;
        if w.waiting == self.threads {
            w.since = Some(Instant::now());
        }
    }

    fn wait_ends(&self) {
        let mut w = self.waits.lock().unwrap();
        if let Some(since) = w.since.take() {
            let stretch = since.elapsed();
            w.total += stretch;
            w.longest = w.longest.max(stretch);
        }
        w.waiting -= 1;
    }

    fn snapshot(&self) -> Stats4x {
        let (total, longest) = {
            let w = self.waits.lock().unwrap();
            let now = w.since.map_or(Duration::ZERO, |s| s.elapsed());
            (w.total + now, w.longest.max(now))
        };
        let done = self.closes_done.load(Ordering::Relaxed);
        Stats4x {
            heartbeat_threads: self.threads,
            closes_queued: self.closes_queued.load(Ordering::Relaxed),
            closes_done: done,
            close_mean_us: self.close_ns_total.load(Ordering::Relaxed) / done.max(1) / 1000,
            close_max_us: self.close_ns_max.load(Ordering::Relaxed) / 1000,
            all_blocked_ms: total.as_millis() as u64,
            all_blocked_longest_ms: longest.as_millis() as u64,
            queue_wait_max_ms: self.queue_wait_us_max.load(Ordering::Relaxed) / 1000,
        }
    }
}

/// The emulated 4.x broker.
pub(crate) struct Broker4x {
    producers: Arc<ProducerManager4x>,
    counters: Arc<Counters>,
    local_addr: SocketAddr,
    cancel: CancellationToken,
    closes: mpsc::UnboundedSender<Channel4x>,
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Broker4x {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker4x")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Broker4x {
    /// Binds and starts the accept loop, the heartbeat threads and the event thread.
    pub(crate) async fn bind(listen: SocketAddr, config: Broker4xConfig) -> io::Result<Broker4x> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let producers = Arc::new(ProducerManager4x::new());
        let consumers: Arc<Consumers> = Arc::new(Mutex::new(HashMap::new()));
        let threads = config.heartbeat_threads.max(1);
        let counters = Arc::new(Counters {
            threads,
            ..Counters::default()
        });
        let cancel = CancellationToken::new();
        let (jobs, job_rx) = mpsc::channel::<Job>(50_000);
        let job_rx = Arc::new(Mutex::new(job_rx));
        for i in 0..threads {
            let (rx, p, c, n) = (
                job_rx.clone(),
                producers.clone(),
                consumers.clone(),
                counters.clone(),
            );
            std::thread::Builder::new()
                .name(format!("HeartbeatThread_{i}"))
                .spawn(move || heartbeat_thread(&rx, &p, &c, &n))?;
        }
        let (closes, close_rx) = mpsc::unbounded_channel();
        let (p, c, n) = (producers.clone(), consumers.clone(), counters.clone());
        let cost = config.close_cost_per_group;
        std::thread::Builder::new()
            .name("NettyEventExecutor".into())
            .spawn(move || event_thread(close_rx, &p, &c, &n, cost))?;
        let broker = Broker4x {
            producers,
            counters,
            local_addr,
            cancel,
            closes,
            jobs,
        };
        tokio::spawn(accept(
            listener,
            broker.jobs.clone(),
            broker.closes.clone(),
            broker.counters.clone(),
            broker.cancel.clone(),
        ));
        Ok(broker)
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Groups in the tables, empty ones included (what upstream's memory holds); without taking
    /// the tables' locks, so the replay's sampling never waits on what it measures.
    pub(crate) fn group_count(&self) -> usize {
        self.producers.group_count() + self.counters.consumer_groups.load(Ordering::Relaxed)
    }

    /// What it counted so far.
    pub(crate) fn stats(&self) -> Stats4x {
        self.counters.snapshot()
    }
}

impl Drop for Broker4x {
    fn drop(&mut self) {
        // Closing the queues ends the heartbeat and event threads.
        self.cancel.cancel();
    }
}

fn heartbeat_thread(
    jobs: &Mutex<mpsc::Receiver<Job>>,
    producers: &ProducerManager4x,
    consumers: &Consumers,
    counters: &Counters,
) {
    // Expiry is not emulated, so the timestamps only need to be plausible.
    let started = std::time::Instant::now();
    loop {
        let Some(job) = jobs.lock().unwrap().blocking_recv() else {
            return;
        };
        counters
            .queue_wait_us_max
            .fetch_max(job.queued.elapsed().as_micros() as u64, Ordering::Relaxed);
        let now = Millis(started.elapsed().as_millis() as u64);
        let body = job.request.body.as_deref().unwrap_or(b"");
        let response = match HeartbeatData::from_json(body) {
            Ok(data) => {
                for c in &data.consumer_data_set {
                    let mut table = consumers.lock().unwrap();
                    table
                        .entry(c.group_name.clone())
                        .or_default()
                        .insert(job.channel, now);
                    counters
                        .consumer_groups
                        .store(table.len(), Ordering::Relaxed);
                }
                for p in &data.producer_data_set {
                    counters.wait_begins();
                    producers.register_producer(&p.group_name, job.channel, now);
                    counters.wait_ends();
                }
                RemotingCommand::response_to(&job.request, code::SUCCESS, None)
            }
            Err(e) => {
                RemotingCommand::response_to(&job.request, code::SYSTEM_ERROR, Some(e.to_string()))
            }
        };
        let _ = job.reply.send(response);
    }
}

/// `ClientHousekeepingService.onChannelClose`: every group, under the manager's lock, for as
/// long as the JVM would take (`cost` per group visited) if that is longer than this scan. The
/// closes already queued run back to back under one hold of the lock: between two of them the
/// JVM's event thread re-enters the monitor within microseconds, and `synchronized` does not
/// hand the monitor to a waiter on exit, so a woken heartbeat thread finds it taken again.
fn event_thread(
    mut closes: mpsc::UnboundedReceiver<Channel4x>,
    producers: &ProducerManager4x,
    consumers: &Consumers,
    counters: &Counters,
    cost: Duration,
) {
    while let Some(first) = closes.blocking_recv() {
        let mut started = Instant::now();
        let mut channel = first;
        producers.channels_closed(first, |_, groups| {
            let jvm = cost.saturating_mul(u32::try_from(groups).unwrap_or(u32::MAX));
            if let Some(rest) = jvm.checked_sub(started.elapsed()) {
                std::thread::sleep(rest);
            }
            for members in consumers.lock().unwrap().values_mut() {
                members.remove(&channel);
            }
            let ns = started.elapsed().as_nanos() as u64;
            counters.close_ns_total.fetch_add(ns, Ordering::Relaxed);
            counters.close_ns_max.fetch_max(ns, Ordering::Relaxed);
            counters.closes_done.fetch_add(1, Ordering::Relaxed);
            started = Instant::now();
            channel = closes.try_recv().ok()?;
            Some(channel)
        });
    }
}

async fn accept(
    listener: TcpListener,
    jobs: mpsc::Sender<Job>,
    closes: mpsc::UnboundedSender<Channel4x>,
    counters: Arc<Counters>,
    cancel: CancellationToken,
) {
    let mut next = 0;
    loop {
        let (stream, _) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(ok) => ok,
                Err(_) => continue,
            },
        };
        next += 1;
        let channel = next;
        let (jobs, closes, counters, cancel) = (
            jobs.clone(),
            closes.clone(),
            counters.clone(),
            cancel.clone(),
        );
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let (mut rd, mut wr) = stream.into_split();
            let (reply, mut replies) = mpsc::unbounded_channel::<RemotingCommand>();
            let mut decoder = FrameDecoder::default();
            let (mut inbuf, mut outbuf) = (BytesMut::new(), BytesMut::new());
            'conn: loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    Some(response) = replies.recv() => {
                        outbuf.clear();
                        if response.encode(&mut outbuf).is_err() || wr.write_all(&outbuf).await.is_err() {
                            break;
                        }
                    }
                    read = rd.read_buf(&mut inbuf) => {
                        if !matches!(read, Ok(n) if n > 0) {
                            break;
                        }
                        while let Ok(Some(request)) = decoder.decode(&mut inbuf) {
                            let response = match request.code {
                                code::HEART_BEAT => {
                                    let job = Job { channel, request, reply: reply.clone(), queued: Instant::now() };
                                    match jobs.try_send(job) {
                                        Ok(()) => continue,
                                        Err(e) => {
                                            let job = match e {
                                                mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
                                            };
                                            RemotingCommand::response_to(&job.request, code::SYSTEM_BUSY, Some("[OVERLOAD]".into()))
                                        }
                                    }
                                }
                                _ => RemotingCommand::response_to(&request, code::SUCCESS, None),
                            };
                            if reply.send(response).is_err() {
                                break 'conn;
                            }
                        }
                    }
                }
            }
            counters.closes_queued.fetch_add(1, Ordering::Relaxed);
            if closes.send(channel).is_err() {
                counters.closes_done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}
