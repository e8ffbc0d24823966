//! The client-management listener (upstream `ClientManageProcessor` on the remoting port): each
//! accepted connection is a `ClientChannel` that is registered, then given its task, then closed.
//!
//! Per connection one task reads frames, answers them and writes responses; `HEART_BEAT` bodies
//! are parsed and applied on a bounded worker pool (upstream's heartbeat executor), answered with
//! `SYSTEM_BUSY` when its queue is full. A connection is closed, with a logged reason, on EOF, an
//! IO error, an undecodable frame, no complete frame for `idle_timeout` (a half frame and a
//! stall included), or a peer that does not read its responses. Protocol decisions (framing,
//! liveness) live in `core`; table changes go through the lifecycle handle.

use super::{Clock, TokioSpawner};
use crate::core::activity::{ChannelActivity, Liveness};
use crate::core::remoting::{DecodeError, FrameDecoder, RemotingCommand, code};
use crate::core::{ChannelId, ClientError, HeartbeatData};
use crate::lifecycle::{ChannelHandle, ClientChannel, CloseReason, Counted, Spawn, TaskGauge};
use crate::phase::Running;
use crate::registry::ClientRegistry;
use crate::sync::Arc;
use crate::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use bytes::BytesMut;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex as AsyncMutex, Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// Listener settings; the defaults are upstream's.
#[derive(Debug, Clone)]
pub struct RemotingConfig {
    /// Where to listen (upstream `listenPort` 10911).
    pub listen: SocketAddr,
    /// A connection with no complete frame for this long is closed (upstream
    /// `serverChannelMaxIdleTimeSeconds`, 120 s).
    pub idle_timeout: Duration,
    /// Period of the expiry scan (upstream `ClientHousekeepingService`, 10 s).
    pub scan_interval: Duration,
    /// Heartbeat workers (upstream `heartbeatThreadPoolNums`, min(32, cores)).
    pub heartbeat_workers: usize,
    /// Heartbeats waiting for a worker before `SYSTEM_BUSY` (upstream 50,000).
    pub heartbeat_queue: usize,
    /// Responses waiting to be written on one connection before it is closed as not reading.
    pub outbound_queue: usize,
    /// A single response write that takes longer than this closes the connection.
    pub write_timeout: Duration,
    /// The frame cap (at most 16 MiB).
    pub max_frame: usize,
}

impl Default for RemotingConfig {
    fn default() -> Self {
        RemotingConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 10911)),
            idle_timeout: Duration::from_secs(120),
            scan_interval: Duration::from_secs(10),
            heartbeat_workers: std::thread::available_parallelism()
                .map_or(4, |n| n.get())
                .min(32),
            heartbeat_queue: 50_000,
            outbound_queue: 1024,
            write_timeout: Duration::from_secs(10),
            max_frame: crate::core::remoting::MAX_FRAME,
        }
    }
}

/// Counters the listener keeps (exported as metrics).
#[derive(Debug, Default)]
pub struct RemotingStats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections closed (all reasons).
    pub closed: AtomicU64,
    /// Heartbeats answered `SYSTEM_BUSY` because the worker queue was full.
    pub busy: AtomicU64,
}

/// What a clean shutdown did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections closed by the shutdown itself.
    pub closed_connections: usize,
    /// Tasks still alive when the wait gave up (0 on a clean shutdown).
    pub tasks_left: usize,
}

/// A running listener. Dropping it without `shutdown` cancels its tasks.
pub struct RemotingServer {
    local_addr: SocketAddr,
    cancel: CancellationToken,
    connections: Arc<crate::sync::Mutex<HashMap<ChannelId, ClientChannel<Running>>>>,
    tasks: TaskGauge,
    stats: Arc<RemotingStats>,
}

impl std::fmt::Debug for RemotingServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemotingServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// Shared by the accept loop, the connections and the workers.
struct Ctx {
    config: RemotingConfig,
    clock: Clock,
    jobs: mpsc::Sender<Job>,
    stats: Arc<RemotingStats>,
}

/// One heartbeat waiting for a worker.
struct Job {
    handle: ChannelHandle,
    request: RemotingCommand,
    reply: mpsc::Sender<RemotingCommand>,
    connection: CancellationToken,
    _inflight: InFlightToken,
}

/// One queued heartbeat of a connection; released when its job is dropped, however the job ends
/// (applied, or discarded with the queue at shutdown).
struct InFlightToken(Arc<InFlight>);

impl InFlightToken {
    fn new(inflight: &Arc<InFlight>) -> Self {
        inflight.count.fetch_add(1, Ordering::AcqRel);
        InFlightToken(inflight.clone())
    }
}

impl Drop for InFlightToken {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.done.notify_one();
    }
}

impl RemotingServer {
    /// Binds and starts the accept loop, the heartbeat workers and the expiry scan; every task is
    /// counted in `tasks`.
    pub async fn bind(
        config: RemotingConfig,
        registry: Arc<ClientRegistry>,
        clock: Clock,
        tasks: TaskGauge,
    ) -> io::Result<RemotingServer> {
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let spawner = Counted::new(TokioSpawner::current(), tasks.clone());
        let cancel = CancellationToken::new();
        let stats = Arc::new(RemotingStats::default());
        let (jobs, job_rx) = mpsc::channel(config.heartbeat_queue.max(1));
        let job_rx = Arc::new(AsyncMutex::new(job_rx));
        for _ in 0..config.heartbeat_workers.max(1) {
            spawner.spawn(Box::pin(heartbeat_worker(
                job_rx.clone(),
                clock,
                cancel.clone(),
            )));
        }
        let connections = Arc::new(crate::sync::Mutex::new(HashMap::new()));
        let ctx = Arc::new(Ctx {
            config,
            clock,
            jobs,
            stats: stats.clone(),
        });
        let (reaper, reap) = mpsc::unbounded_channel();
        spawner.spawn(Box::pin(scan_loop(
            registry.clone(),
            ctx.clone(),
            reaper.clone(),
            cancel.clone(),
        )));
        let acceptor = Acceptor {
            listener,
            registry,
            ctx,
            spawner: spawner.clone(),
            connections: connections.clone(),
            reap,
            reaper,
            cancel: cancel.clone(),
        };
        spawner.spawn(Box::pin(acceptor.run()));
        tracing::info!(%local_addr, "client-management listener started");
        Ok(RemotingServer {
            local_addr,
            cancel,
            connections,
            tasks,
            stats,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The listener's counters.
    pub fn stats(&self) -> &Arc<RemotingStats> {
        &self.stats
    }

    /// Stops accepting, closes every connection through its lifecycle and waits (up to
    /// `grace`) for every task counted in the gauge to finish.
    pub async fn shutdown(self, grace: Duration) -> ShutdownReport {
        self.cancel.cancel();
        let open: Vec<_> = self.connections.lock().drain().map(|(_, c)| c).collect();
        let closed_connections = open.len();
        for channel in open {
            channel.close(CloseReason::Shutdown);
            self.stats.closed.fetch_add(1, Ordering::Relaxed);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.tasks.alive() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        ShutdownReport {
            closed_connections,
            tasks_left: self.tasks.alive(),
        }
    }
}

impl Drop for RemotingServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

type Connections = Arc<crate::sync::Mutex<HashMap<ChannelId, ClientChannel<Running>>>>;

/// Messages to the accept loop, which owns the `Running` handles.
enum Reap {
    /// A connection's task ended; its registry entry is already closed by the task's guard.
    Ended(ChannelId, CloseReason),
    /// Every membership of this channel expired: close the connection (upstream closes expired
    /// channels in `scanNotActiveChannel`).
    Expired(ChannelId),
}

/// The accept loop and the owner of every connection's `Running` handle.
struct Acceptor {
    listener: TcpListener,
    registry: Arc<ClientRegistry>,
    ctx: Arc<Ctx>,
    spawner: Counted<TokioSpawner>,
    connections: Connections,
    reap: mpsc::UnboundedReceiver<Reap>,
    reaper: mpsc::UnboundedSender<Reap>,
    cancel: CancellationToken,
}

impl Acceptor {
    async fn run(self) {
        let Acceptor {
            listener,
            registry,
            ctx,
            spawner,
            connections,
            mut reap,
            reaper,
            cancel,
        } = self;
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => break,
                Some(msg) = reap.recv() => {
                    let (id, reason) = match msg {
                        Reap::Ended(id, reason) => (id, reason),
                        Reap::Expired(id) => (id, CloseReason::IdleTimeout),
                    };
                    let ended = connections.lock().remove(&id);
                    if let Some(channel) = ended {
                        channel.close(reason);
                    }
                    continue;
                }
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(ok) => ok,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            ctx.stats.accepted.fetch_add(1, Ordering::Relaxed);
            let _ = stream.set_nodelay(true);
            let registered = match ClientChannel::new(peer.to_string()).register(&registry) {
                Ok(registered) => registered,
                Err(refused) => {
                    // No request was read, so there is nothing to answer: close with the reason.
                    tracing::warn!(%peer, error = %refused.error, "connection refused");
                    refused
                        .channel
                        .close(CloseReason::Rejected(refused.error.to_string()));
                    ctx.stats.closed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            let id = registered.id();
            let conn_cancel = cancel.child_token();
            let (ctx2, reaper2) = (ctx.clone(), reaper.clone());
            let running = registered.spawn(&spawner, move |handle| async move {
                let reason = serve_connection(stream, handle, &ctx2, conn_cancel).await;
                tracing::debug!(channel = id.0, %peer, ?reason, "client connection ended");
                ctx2.stats.closed.fetch_add(1, Ordering::Relaxed);
                let _ = reaper2.send(Reap::Ended(id, reason.clone()));
                reason
            });
            // As in the HA master: never store a handle after `shutdown` drained the map.
            let mut open = connections.lock();
            if cancel.is_cancelled() {
                drop(open);
                running.close(CloseReason::Shutdown);
            } else {
                open.insert(id, running);
            }
        }
        tracing::info!("client-management listener stopped accepting");
    }
}

/// Reads, answers and writes for one connection until it ends; returns why.
async fn serve_connection(
    stream: TcpStream,
    handle: ChannelHandle,
    ctx: &Ctx,
    cancel: CancellationToken,
) -> CloseReason {
    let config = &ctx.config;
    let (mut rd, mut wr) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::channel::<RemotingCommand>(config.outbound_queue.max(1));
    let mut decoder = FrameDecoder::with_max_frame(config.max_frame);
    let idle_ms = config.idle_timeout.as_millis() as u64;
    let mut activity = ChannelActivity::new(ctx.clock.now(), idle_ms, idle_ms);
    let mut inbuf = BytesMut::new();
    let mut outbuf = BytesMut::new();
    let inflight = Arc::new(InFlight::default());
    loop {
        let Some(deadline) = activity.poll_timeout() else {
            return CloseReason::IdleTimeout;
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return CloseReason::Shutdown,
            Some(response) = out_rx.recv() => {
                if let Err(reason) = write(&mut wr, &mut outbuf, &response, config.write_timeout).await {
                    return reason;
                }
            }
            read = rd.read_buf(&mut inbuf) => match read {
                Ok(0) if inbuf.is_empty() => return CloseReason::PeerClosed,
                Ok(0) => return CloseReason::ProtocolError(format!("peer closed mid-frame ({} bytes pending)", inbuf.len())),
                Err(error) => return CloseReason::Io(error.to_string()),
                Ok(_) => loop {
                    match decoder.decode(&mut inbuf) {
                        Ok(Some(request)) => {
                            activity.handle_heard(ctx.clock.now());
                            match dispatch(request, &handle, ctx, &out_tx, &cancel, &inflight) {
                                Ok(None) => {}
                                Ok(Some(unregister)) => {
                                    // Requests of one connection apply in the order sent: an
                                    // UNREGISTER waits for this connection's queued heartbeats.
                                    if !inflight.drained(&cancel).await {
                                        return CloseReason::Shutdown;
                                    }
                                    let response = unregister_client(&unregister, &handle);
                                    if let Err(reason) = answer(&unregister, response, &out_tx, &cancel) {
                                        return reason;
                                    }
                                }
                                Err(reason) => return reason,
                            }
                        }
                        Ok(None) => break,
                        Err(error) => return undecodable(error),
                    }
                },
            },
            _ = tokio::time::sleep_until(ctx.clock.instant_at(deadline)) => {
                activity.handle_tick(ctx.clock.now());
                if activity.state() == Liveness::Expired {
                    return CloseReason::IdleTimeout;
                }
            }
        }
    }
}

fn undecodable(error: DecodeError) -> CloseReason {
    CloseReason::ProtocolError(error.to_string())
}

async fn write(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    buf: &mut BytesMut,
    response: &RemotingCommand,
    timeout: Duration,
) -> Result<(), CloseReason> {
    buf.clear();
    if let Err(error) = response.encode(buf) {
        // Only a response we built can fail here (e.g. an oversized remark): a bug, not the peer.
        tracing::error!(%error, "response not encodable; dropped");
        return Ok(());
    }
    match tokio::time::timeout(timeout, wr.write_all(buf)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(CloseReason::Io(error.to_string())),
        Err(_) => Err(CloseReason::ProtocolError(
            "peer does not read its responses (write timed out)".into(),
        )),
    }
}

/// This connection's heartbeats handed to the pool and not applied yet.
#[derive(Debug, Default)]
struct InFlight {
    count: AtomicUsize,
    done: Notify,
}

impl InFlight {
    /// Waits until every queued heartbeat of the connection is applied; false if cancelled.
    async fn drained(&self, cancel: &CancellationToken) -> bool {
        while self.count.load(Ordering::Acquire) > 0 {
            tokio::select! {
                _ = cancel.cancelled() => return false,
                _ = self.done.notified() => {}
            }
        }
        true
    }
}

/// Answers one request, or hands a heartbeat to the pool. Returns an `UNREGISTER_CLIENT` that
/// must wait for the connection's queued heartbeats before it applies.
fn dispatch(
    request: RemotingCommand,
    handle: &ChannelHandle,
    ctx: &Ctx,
    out: &mpsc::Sender<RemotingCommand>,
    cancel: &CancellationToken,
    inflight: &Arc<InFlight>,
) -> Result<Option<RemotingCommand>, CloseReason> {
    if request.is_response() {
        // A client's answer to a broker-initiated request; this listener sends none.
        return Ok(None);
    }
    let response = match request.code {
        code::HEART_BEAT => {
            let job = Job {
                handle: handle.clone(),
                request,
                reply: out.clone(),
                connection: cancel.clone(),
                _inflight: InFlightToken::new(inflight),
            };
            match ctx.jobs.try_send(job) {
                Ok(()) => return Ok(None),
                Err(
                    mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job),
                ) => {
                    ctx.stats.busy.fetch_add(1, Ordering::Relaxed);
                    let remark = "[OVERLOAD]system busy, start flow control for a while";
                    return answer(
                        &job.request,
                        RemotingCommand::response_to(
                            &job.request,
                            code::SYSTEM_BUSY,
                            Some(remark.into()),
                        ),
                        out,
                        cancel,
                    )
                    .map(|()| None);
                }
            }
        }
        code::UNREGISTER_CLIENT if inflight.count.load(Ordering::Acquire) > 0 => {
            return Ok(Some(request));
        }
        code::UNREGISTER_CLIENT => unregister_client(&request, handle),
        code::CHECK_CLIENT_CONFIG => RemotingCommand::response_to(&request, code::SUCCESS, None),
        other => RemotingCommand::response_to(
            &request,
            code::REQUEST_CODE_NOT_SUPPORTED,
            Some(format!(" request type {other} not supported")),
        ),
    };
    answer(&request, response, out, cancel).map(|()| None)
}

/// Queues `response` unless `request` was oneway.
fn answer(
    request: &RemotingCommand,
    response: RemotingCommand,
    out: &mpsc::Sender<RemotingCommand>,
    cancel: &CancellationToken,
) -> Result<(), CloseReason> {
    if request.is_oneway() {
        Ok(())
    } else {
        respond(out, response, cancel)
    }
}

/// Queues a response on the connection; a full queue means the peer stopped reading.
fn respond(
    out: &mpsc::Sender<RemotingCommand>,
    response: RemotingCommand,
    connection: &CancellationToken,
) -> Result<(), CloseReason> {
    match out.try_send(response) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
        Err(mpsc::error::TrySendError::Full(_)) => {
            connection.cancel();
            Err(CloseReason::ProtocolError(
                "peer does not read its responses (queue full)".into(),
            ))
        }
    }
}

/// `UNREGISTER_CLIENT`: header `clientID` (required), `producerGroup`, `consumerGroup`.
fn unregister_client(request: &RemotingCommand, handle: &ChannelHandle) -> RemotingCommand {
    let Some(client_id) = request.ext("clientID") else {
        return RemotingCommand::response_to(
            request,
            code::SYSTEM_ERROR,
            Some("the custom field <clientID> is null".into()),
        );
    };
    let producer = request.ext("producerGroup").filter(|g| !g.is_empty());
    let consumer = request.ext("consumerGroup").filter(|g| !g.is_empty());
    match handle.unregister(client_id, producer, consumer) {
        Ok(()) => RemotingCommand::response_to(request, code::SUCCESS, None),
        Err(error) => {
            RemotingCommand::response_to(request, code::SYSTEM_ERROR, Some(error.to_string()))
        }
    }
}

/// A heartbeat worker: parses the body, applies it, queues the answer on its connection.
async fn heartbeat_worker(
    jobs: Arc<AsyncMutex<mpsc::Receiver<Job>>>,
    clock: Clock,
    cancel: CancellationToken,
) {
    loop {
        let job = tokio::select! {
            _ = cancel.cancelled() => return,
            job = async { jobs.lock().await.recv().await } => match job {
                Some(job) => job,
                None => return,
            },
        };
        let response = heartbeat(&job.request, &job.handle, clock.now());
        if let Some(response) = response.filter(|_| !job.request.is_oneway()) {
            let _ = respond(&job.reply, response, &job.connection);
        }
        // Dropping the job releases its in-flight token, after its answer is queued.
        drop(job);
    }
}

/// `HEART_BEAT`: `None` when the channel closed meanwhile (nobody to answer).
fn heartbeat(
    request: &RemotingCommand,
    handle: &ChannelHandle,
    now: crate::core::Millis,
) -> Option<RemotingCommand> {
    let body = request.body.as_deref().unwrap_or(b"");
    let data = match HeartbeatData::from_json(body) {
        Ok(data) => data,
        Err(error) => {
            let remark = format!("invalid HeartbeatData body: {error}");
            return Some(RemotingCommand::response_to(
                request,
                code::SYSTEM_ERROR,
                Some(remark),
            ));
        }
    };
    match handle.heartbeat(&data, now) {
        Ok(outcome) => {
            let mut response = RemotingCommand::response_to(request, code::SUCCESS, None);
            response
                .ext_fields
                .insert("IS_SUPPORT_HEART_BEAT_V2".into(), "true".into());
            response
                .ext_fields
                .insert("IS_SUB_CHANGE".into(), outcome.sub_changed.to_string());
            Some(response)
        }
        Err(ClientError::ChannelClosed(_)) => None,
        Err(error) => Some(RemotingCommand::response_to(
            request,
            code::SYSTEM_ERROR,
            Some(error.to_string()),
        )),
    }
}

/// The periodic expiry scan (upstream `ClientHousekeepingService`, every 10 s).
async fn scan_loop(
    registry: Arc<ClientRegistry>,
    ctx: Arc<Ctx>,
    reaper: mpsc::UnboundedSender<Reap>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(ctx.config.scan_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let report = registry.scan_inactive(ctx.clock.now());
        if report.expired > 0 {
            tracing::info!(
                expired = report.expired,
                orphaned = report.orphaned.len(),
                "expiry scan"
            );
        }
        for id in report.orphaned {
            let _ = reaper.send(Reap::Expired(id));
        }
    }
}
