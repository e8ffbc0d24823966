//! A RocketMQ 4.x broker's client management, emulated on the same wire as `serve` for the
//! side-by-side `replay stale-groups`: the same clients connect to it, only the tables differ.
//!
//! Kept from upstream because it is what stalled: one lock for the whole `ProducerManager`
//! (taken by every heartbeat, since Java clients always name `CLIENT_INNER_PRODUCER`); a channel
//! close, processed on the single `NettyEventExecutor` thread, visits every producer and consumer
//! group under that lock; empty groups are never removed on close (#8673); heartbeats run on a
//! pool of `heartbeatThreadPoolNums` threads behind a bounded queue. Not kept: expiry scans (the
//! replay is shorter than 120 s), subscriptions, events, fast-fail.

use super::producer_manager_4x::Channel4x;
use super::producer_manager_4x::ProducerManager4x;
use bytes::BytesMut;
use rmq_lifecycle::core::remoting::{FrameDecoder, RemotingCommand, code};
use rmq_lifecycle::core::{HeartbeatData, Millis};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

type Consumers = Mutex<HashMap<String, HashMap<Channel4x, Millis>>>;

struct Job {
    channel: Channel4x,
    request: RemotingCommand,
    reply: mpsc::UnboundedSender<RemotingCommand>,
}

/// The emulated 4.x broker.
pub(crate) struct Broker4x {
    producers: Arc<ProducerManager4x>,
    consumers: Arc<Consumers>,
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
    /// Binds and starts the accept loop, `heartbeat_threads` heartbeat threads and the event
    /// thread.
    pub(crate) async fn bind(listen: SocketAddr, heartbeat_threads: usize) -> io::Result<Broker4x> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let producers = Arc::new(ProducerManager4x::new());
        let consumers: Arc<Consumers> = Arc::new(Mutex::new(HashMap::new()));
        let cancel = CancellationToken::new();
        let (jobs, job_rx) = mpsc::channel::<Job>(50_000);
        let job_rx = Arc::new(Mutex::new(job_rx));
        for i in 0..heartbeat_threads.max(1) {
            let (rx, p, c) = (job_rx.clone(), producers.clone(), consumers.clone());
            std::thread::Builder::new()
                .name(format!("HeartbeatThread_{i}"))
                .spawn(move || heartbeat_thread(&rx, &p, &c))?;
        }
        let (closes, close_rx) = mpsc::unbounded_channel();
        let (p, c) = (producers.clone(), consumers.clone());
        std::thread::Builder::new()
            .name("NettyEventExecutor".into())
            .spawn(move || event_thread(close_rx, &p, &c))?;
        let broker = Broker4x {
            producers,
            consumers,
            local_addr,
            cancel,
            closes,
            jobs,
        };
        tokio::spawn(accept(
            listener,
            broker.jobs.clone(),
            broker.closes.clone(),
            broker.cancel.clone(),
        ));
        Ok(broker)
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Groups in the tables, empty ones included (what upstream's memory holds).
    pub(crate) fn group_count(&self) -> usize {
        self.producers.group_count() + self.consumers.lock().unwrap().len()
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
) {
    // Expiry is not emulated, so the timestamps only need to be plausible.
    let started = std::time::Instant::now();
    loop {
        let Some(job) = jobs.lock().unwrap().blocking_recv() else {
            return;
        };
        let now = Millis(started.elapsed().as_millis() as u64);
        let body = job.request.body.as_deref().unwrap_or(b"");
        let response = match HeartbeatData::from_json(body) {
            Ok(data) => {
                for c in &data.consumer_data_set {
                    consumers
                        .lock()
                        .unwrap()
                        .entry(c.group_name.clone())
                        .or_default()
                        .insert(job.channel, now);
                }
                for p in &data.producer_data_set {
                    producers.register_producer(&p.group_name, job.channel, now);
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

/// `ClientHousekeepingService.onChannelClose`: every group, under the manager's lock.
fn event_thread(
    mut closes: mpsc::UnboundedReceiver<Channel4x>,
    producers: &ProducerManager4x,
    consumers: &Consumers,
) {
    while let Some(channel) = closes.blocking_recv() {
        producers.channel_closed(channel);
        for members in consumers.lock().unwrap().values_mut() {
            members.remove(&channel);
        }
    }
}

async fn accept(
    listener: TcpListener,
    jobs: mpsc::Sender<Job>,
    closes: mpsc::UnboundedSender<Channel4x>,
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
        let (jobs, closes, cancel) = (jobs.clone(), closes.clone(), cancel.clone());
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
                                    let job = Job { channel, request, reply: reply.clone() };
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
            let _ = closes.send(channel);
        });
    }
}
