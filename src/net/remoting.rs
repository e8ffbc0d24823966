//! The client-management listener (upstream `ClientManageProcessor` on the remoting port): each
//! accepted connection is a `ClientChannel` that is registered, then given its task, then closed.
//!
//! Per connection one task reads frames, answers them in order and writes the answers of a read
//! in one write; `HEART_BEAT` is admitted by a bounded budget (upstream's heartbeat executor:
//! so many at once, so many waiting) and answered `SYSTEM_BUSY` beyond it. A connection is closed, with a logged reason, on EOF, an
//! IO error, an undecodable frame, no complete frame for `idle_timeout` (a half frame and a
//! stall included), or a peer that does not read its responses. Protocol decisions (framing,
//! liveness) live in `core`; table changes go through the lifecycle handle.

use super::notify::{Attached, ConsumerNotifier};
use super::send::Sender;
use super::{Clock, Spawner};
use crate::core::GroupKind;
use crate::core::activity::{ChannelActivity, Liveness};
use crate::core::remoting::{
    DecodeError, FrameDecoder, OpaqueTemplate, RemotingCommand, SerializeType, code,
};
use crate::core::{ClientError, HeartbeatData};
use crate::io::net::{TcpListener, TcpStream};
use crate::io::time;
use crate::lifecycle::{ChannelHandle, ClientAcceptor, CloseReason, Spawn, TaskGauge};
use crate::registry::ClientRegistry;
use crate::sync::Arc;
use crate::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use bytes::BytesMut;
use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, SemaphorePermit};
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
    /// Writing a read's responses for longer than this closes the connection (a peer that does
    /// not read its responses).
    pub write_timeout: Duration,
    /// The frame cap (at most 16 MiB).
    pub max_frame: usize,
    /// What `GET_BROKER_CONFIG` (26) answers (a slave compares its segment size with it before
    /// each HA connect); `None` answers 26 `REQUEST_CODE_NOT_SUPPORTED`. `Broker::start` fills it.
    pub broker_config: Option<Arc<crate::core::admin::BrokerConfig>>,
    /// Planted defects in the shipped accept/reap/shutdown path (feature `harness` only).
    #[cfg(feature = "harness")]
    pub faults: crate::lifecycle::AcceptorFaults,
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
            write_timeout: Duration::from_secs(10),
            max_frame: crate::core::remoting::MAX_FRAME,
            broker_config: None,
            #[cfg(feature = "harness")]
            faults: crate::lifecycle::AcceptorFaults::default(),
        }
    }
}

type Acceptor = ClientAcceptor<TcpStream, Spawner>;

/// The listener's counters (exported as metrics), read live.
#[derive(Debug)]
pub struct RemotingStats {
    acceptor: Arc<Acceptor>,
    busy: AtomicU64,
    notifier: Option<ConsumerNotifier>,
}

impl RemotingStats {
    /// Connections accepted (refused ones included).
    pub fn accepted_total(&self) -> u64 {
        self.acceptor.accepted_total()
    }

    /// Connections closed, each once, whatever closed it (peer, error, idle, expiry, shutdown,
    /// refusal): `accepted_total() - closed_total()` is the connections open now.
    pub fn closed_total(&self) -> u64 {
        self.acceptor.closed_total()
    }

    /// Heartbeats answered `SYSTEM_BUSY` because the worker queue was full.
    pub fn busy_total(&self) -> u64 {
        self.busy.load(Ordering::Relaxed)
    }

    /// `NOTIFY_CONSUMER_IDS_CHANGED` requests queued for connections, and dropped because a
    /// connection's queue was full; `None` without a notifier.
    pub fn notifications_total(&self) -> Option<(u64, u64)> {
        self.notifier
            .as_ref()
            .map(|n| (n.queued_total(), n.dropped_total()))
    }
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
    acceptor: Arc<Acceptor>,
    tasks: TaskGauge,
    stats: Arc<RemotingStats>,
    #[cfg_attr(not(feature = "harness"), allow(dead_code))]
    ctx: Arc<Ctx>,
}

impl std::fmt::Debug for RemotingServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemotingServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// Shared by the accept loop and the connections.
struct Ctx {
    config: RemotingConfig,
    clock: Clock,
    pool: HeartbeatPool,
    stats: Arc<RemotingStats>,
    /// The registry, for the read-only queries (38, 203, 204, 328).
    registry: Arc<ClientRegistry>,
    /// Pushes `NOTIFY_CONSUMER_IDS_CHANGED` when the registry's listener is this notifier.
    notifier: Option<ConsumerNotifier>,
    /// Stores `SEND_MESSAGE`s; without it they are not supported.
    sender: Option<Arc<Sender>>,
}

impl RemotingServer {
    /// Binds and starts the accept loop, the heartbeat workers and the expiry scan; every task is
    /// counted in `tasks`. No consumer is notified of membership changes (see
    /// [`bind_notifying`](Self::bind_notifying)).
    pub async fn bind(
        config: RemotingConfig,
        registry: Arc<ClientRegistry>,
        clock: Clock,
        tasks: TaskGauge,
    ) -> io::Result<RemotingServer> {
        Self::bind_notifying(config, registry, None, clock, tasks).await
    }

    /// [`bind`](Self::bind), and each connection takes the `NOTIFY_CONSUMER_IDS_CHANGED` requests
    /// `notifier` queues for it: give the same notifier to the registry as its listener
    /// (`ClientRegistry::with_listener`).
    pub async fn bind_notifying(
        config: RemotingConfig,
        registry: Arc<ClientRegistry>,
        notifier: Option<ConsumerNotifier>,
        clock: Clock,
        tasks: TaskGauge,
    ) -> io::Result<RemotingServer> {
        let listener = TcpListener::bind(config.listen).await?;
        Self::start(listener, config, registry, notifier, None, clock, tasks)
    }

    /// [`bind_notifying`](Self::bind_notifying) on a bound listener, storing sends with
    /// `sender` (the broker binds every port before it opens the store the sender writes).
    pub(crate) fn start(
        listener: TcpListener,
        config: RemotingConfig,
        registry: Arc<ClientRegistry>,
        notifier: Option<ConsumerNotifier>,
        sender: Option<Arc<Sender>>,
        clock: Clock,
        tasks: TaskGauge,
    ) -> io::Result<RemotingServer> {
        let local_addr = listener.local_addr()?;
        let (spawner, own) = Spawner::counting(tasks);
        let cancel = CancellationToken::new();
        #[cfg(not(feature = "harness"))]
        let acceptor = Arc::new(ClientAcceptor::new(registry.clone(), spawner.clone()));
        #[cfg(feature = "harness")]
        let acceptor = Arc::new(ClientAcceptor::with_faults(
            registry.clone(),
            spawner.clone(),
            config.faults,
        ));
        let stats = Arc::new(RemotingStats {
            acceptor: acceptor.clone(),
            busy: AtomicU64::new(0),
            notifier: notifier.clone(),
        });
        let ctx = Arc::new(Ctx {
            pool: HeartbeatPool::new(config.heartbeat_workers, config.heartbeat_queue),
            config,
            clock,
            stats: stats.clone(),
            registry,
            notifier,
            sender,
        });
        spawner.spawn(Box::pin(scan_loop(
            acceptor.clone(),
            ctx.clone(),
            cancel.clone(),
        )));
        spawner.spawn(Box::pin(accept_loop(
            listener,
            acceptor.clone(),
            ctx.clone(),
            cancel.clone(),
        )));
        tracing::info!(%local_addr, "client-management listener started");
        Ok(RemotingServer {
            local_addr,
            cancel,
            acceptor,
            tasks: own,
            stats,
            ctx,
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

    /// The registry (read-only queries).
    pub fn registry(&self) -> &Arc<ClientRegistry> {
        self.acceptor.registry()
    }

    /// Takes every heartbeat worker until the returned permit drops: heartbeats then wait, and
    /// past `heartbeat_queue` waiters are answered `SYSTEM_BUSY`. A test hook (feature `harness`).
    #[cfg(feature = "harness")]
    pub async fn pause_heartbeats(&self) -> tokio::sync::OwnedSemaphorePermit {
        let pool = &self.ctx.pool;
        pool.permits
            .clone()
            .acquire_many_owned(pool.workers as u32)
            .await
            .expect("the pool's semaphore is never closed")
    }

    /// Stops accepting, closes every connection through its lifecycle and waits (up to
    /// `grace`) for the listener's own tasks to finish (not for others counted in the same gauge).
    pub async fn shutdown(self, grace: Duration) -> ShutdownReport {
        self.cancel.cancel();
        let closed_connections = self.acceptor.shutdown();
        let deadline = time::Instant::now() + grace;
        while self.tasks.alive() > 0 && time::Instant::now() < deadline {
            time::sleep(Duration::from_millis(5)).await;
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

/// Accepts until cancelled; each connection becomes a channel the acceptor owns.
async fn accept_loop(
    listener: TcpListener,
    acceptor: Arc<Acceptor>,
    ctx: Arc<Ctx>,
    cancel: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(ok) => ok,
            Err(error) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (ctx, conn_cancel) = (ctx.clone(), cancel.child_token());
        let accepted =
            acceptor.accept(stream, peer.to_string(), move |stream, handle| async move {
                let id = handle.id();
                let reason = serve_connection(stream, peer, handle, &ctx, conn_cancel).await;
                tracing::debug!(channel = id.get(), %peer, ?reason, "client connection ended");
                reason
            });
        if let Err(error) = accepted {
            tracing::warn!(%peer, %error, "connection refused");
        }
    }
    tracing::info!("client-management listener stopped accepting");
}

/// Reads, answers and writes for one connection until it ends; returns why.
///
/// One task does it all: the frames of a read are decoded and answered in order, and their
/// responses leave in one write. No queue sits between a request and its answer, so a peer that
/// stops reading stalls only its own task, until `write_timeout` closes it.
async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    handle: ChannelHandle,
    ctx: &Ctx,
    cancel: CancellationToken,
) -> CloseReason {
    let config = &ctx.config;
    let ends = Ends {
        peer,
        // The address the peer reached: the store host of the messages it sends.
        local: stream.local_addr().unwrap_or(config.listen),
    };
    let mut decoder = FrameDecoder::with_max_frame(config.max_frame);
    let idle_ms = config.idle_timeout.as_millis() as u64;
    let mut activity = ChannelActivity::new(ctx.clock.now(), idle_ms, idle_ms);
    let mut inbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut outbuf = BytesMut::new();
    let mut last = LastHeartbeat::default();
    let mut push: Option<Attached> = ctx.notifier.as_ref().map(|n| n.attach(handle.id()));
    // One timer for the connection's life, re-armed only when it fires: a frame moves the
    // deadline forward without touching the timer wheel, and the tick re-reads it.
    let Some(first) = activity.poll_timeout() else {
        return CloseReason::IdleTimeout;
    };
    let idle = time::sleep_until(ctx.clock.instant_at(first));
    tokio::pin!(idle);
    // Made once: a cancellation future made per read would register and drop a waiter each time.
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    loop {
        // Room to spare before every read: a read that fills the buffer exactly leaves the
        // socket's readiness set and costs one more recv that finds nothing.
        if inbuf.capacity() - inbuf.len() < READ_SLACK {
            inbuf.reserve(READ_CHUNK);
        }
        // Ready input is read before anything else is polled: the other arms cost a lock, a
        // timer poll and a queue poll per read otherwise. Shutdown, expiry and pushes are seen
        // as soon as a read would wait, and at the latest when tokio's cooperative budget makes
        // a busy connection yield.
        tokio::select! {
            biased;
            read = stream.read_buf(&mut inbuf) => match read {
                Ok(0) if inbuf.is_empty() => return CloseReason::PeerClosed,
                Ok(0) => return CloseReason::ProtocolError(format!("peer closed mid-frame ({} bytes pending)", inbuf.len())),
                Err(error) => return CloseReason::Io(error.to_string()),
                Ok(_) => {}
            },
            () = &mut cancelled => return CloseReason::Shutdown,
            () = &mut idle => {
                activity.handle_tick(ctx.clock.now());
                match activity.poll_timeout() {
                    Some(deadline) if activity.state() != Liveness::Expired => {
                        idle.as_mut().reset(ctx.clock.instant_at(deadline));
                    }
                    _ => return CloseReason::IdleTimeout,
                }
                continue;
            }
            group = next_push(&mut push) => {
                if let Some(attached) = &push {
                    encode_response(&attached.request(&group), &mut outbuf);
                }
                if let Err(reason) = flush(&mut stream, &mut outbuf, config.write_timeout).await {
                    return reason;
                }
                continue;
            }
        }
        let mut ended = None;
        // The frames of one read arrived together: one clock read serves them all, and the
        // heartbeats among them run on one worker permit, in order, as one worker would run
        // them (taken at the first, given back before anything else waits).
        let now = ctx.clock.now();
        let mut worker = None;
        // Consecutive sends are stored as one group commit, answered in their place.
        let mut sends: Vec<RemotingCommand> = Vec::new();
        loop {
            match decoder.decode(&mut inbuf) {
                Ok(Some(request)) => {
                    activity.handle_heard(now);
                    if ctx.sender.is_some() && is_send(&request) {
                        sends.push(request);
                        continue;
                    }
                    if !sends.is_empty() {
                        worker = None;
                        store_sends(ctx, &mut sends, ends, &mut outbuf).await;
                    }
                    let answered =
                        answer(request, &handle, now, ctx, &cancel, &mut worker, &mut last);
                    if let Err(reason) = answered.await.map(|r| r.write(&mut outbuf)) {
                        return reason;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    // Still send what the good frames before it earned, then close.
                    ended = Some(undecodable(error));
                    break;
                }
            }
        }
        drop(worker);
        if !sends.is_empty() {
            store_sends(ctx, &mut sends, ends, &mut outbuf).await;
        }
        if !outbuf.is_empty() {
            if let Err(reason) = flush(&mut stream, &mut outbuf, config.write_timeout).await {
                return reason;
            }
        }
        if let Some(reason) = ended {
            return reason;
        }
    }
}

/// The next consumer group to notify this connection of; never, without a notifier.
async fn next_push(push: &mut Option<Attached>) -> Arc<str> {
    match push {
        Some(attached) => attached.next().await,
        None => std::future::pending().await,
    }
}

/// A connection's two addresses.
#[derive(Clone, Copy)]
struct Ends {
    peer: SocketAddr,
    local: SocketAddr,
}

/// Bytes a read may fill at once; also what the buffer grows by.
const READ_CHUNK: usize = 16 * 1024;
/// Free space below which the buffer grows before a read.
const READ_SLACK: usize = 1024;

fn undecodable(error: DecodeError) -> CloseReason {
    CloseReason::ProtocolError(error.to_string())
}

fn encode_response(response: &RemotingCommand, out: &mut BytesMut) {
    let mark = out.len();
    if let Err(error) = response.encode(out) {
        // Only a response we built can fail here (e.g. an oversized remark): a bug, not the peer.
        out.truncate(mark);
        tracing::error!(%error, "response not encodable; dropped");
    }
}

/// Writes every queued response; a peer that does not take them within `timeout` is closed.
async fn flush(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    timeout: Duration,
) -> Result<(), CloseReason> {
    // Usually the socket takes it all at once: no timer is armed for that.
    let mut done = 0;
    while done < buf.len() {
        match stream.try_write(&buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
            Err(error) => {
                buf.clear();
                return Err(CloseReason::Io(error.to_string()));
            }
        }
    }
    if done == buf.len() {
        buf.clear();
        return Ok(());
    }
    let written = time::timeout(timeout, stream.write_all(&buf[done..])).await;
    buf.clear();
    match written {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(CloseReason::Io(error.to_string())),
        Err(_) => Err(CloseReason::ProtocolError(
            "peer does not read its responses (write timed out)".into(),
        )),
    }
}

/// Upstream's heartbeat executor as an admission budget: at most `workers` heartbeats are applied
/// at once and at most `queue` wait for a turn; a heartbeat beyond that is answered
/// `SYSTEM_BUSY`. An admitted heartbeat runs on its connection's own task, so requests of one
/// connection apply in the order sent (an `UNREGISTER_CLIENT` is never overtaken by its
/// connection's heartbeat) and no task hop sits between a read and its answer.
pub(crate) struct HeartbeatPool {
    permits: Arc<Semaphore>,
    #[cfg_attr(not(feature = "harness"), allow(dead_code))]
    workers: usize,
    waiting: AtomicUsize,
    queue: usize,
}

/// Whether a heartbeat may run.
enum Admission<'a> {
    Run(SemaphorePermit<'a>),
    /// Runs on the permit the read already holds.
    Held,
    Busy,
    Cancelled,
}

impl HeartbeatPool {
    fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        HeartbeatPool {
            permits: Arc::new(Semaphore::new(workers)),
            workers,
            waiting: AtomicUsize::new(0),
            queue,
        }
    }

    async fn admit(&self, cancel: &CancellationToken) -> Admission<'_> {
        if let Ok(permit) = self.permits.try_acquire() {
            return Admission::Run(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Admission::Busy;
        }
        let _waiting = Waiting(&self.waiting);
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Admission::Cancelled,
            permit = self.permits.acquire() => match permit {
                Ok(permit) => Admission::Run(permit),
                Err(_) => Admission::Cancelled,
            },
        }
    }
}

/// One waiter, counted out however its wait ends.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request the sender stores (not a response to a request of ours).
fn is_send(request: &RemotingCommand) -> bool {
    matches!(request.code, code::SEND_MESSAGE | code::SEND_MESSAGE_V2) && !request.is_response()
}

/// Stores `sends` (taking them) and writes their answers, in order; oneway sends get none.
async fn store_sends(ctx: &Ctx, sends: &mut Vec<RemotingCommand>, ends: Ends, out: &mut BytesMut) {
    let Some(sender) = &ctx.sender else { return };
    sender
        .answer_all(std::mem::take(sends), ends.peer, ends.local, out)
        .await;
}

/// What a request is answered with.
enum Reply<'a> {
    /// Nothing: a response from the peer, or a oneway request.
    None,
    /// A response built for this request.
    Built(RemotingCommand),
    /// The connection's reusable heartbeat response, filled in for this request.
    Kept(&'a RemotingCommand),
    /// The connection's heartbeat response, pre-encoded, with this request's opaque.
    Template(&'a OpaqueTemplate, i32),
}

impl Reply<'_> {
    fn write(self, out: &mut BytesMut) {
        match self {
            Reply::None => {}
            Reply::Built(response) => encode_response(&response, out),
            Reply::Kept(response) => encode_response(response, out),
            Reply::Template(template, opaque) => template.encode(opaque, out),
        }
    }
}

/// The answer to one request.
///
/// `worker` is the heartbeat worker permit this read's heartbeats hold, taken by the first.
#[allow(clippy::too_many_arguments)]
async fn answer<'a, 'p>(
    request: RemotingCommand,
    handle: &ChannelHandle,
    now: crate::core::Millis,
    ctx: &'p Ctx,
    cancel: &CancellationToken,
    worker: &mut Option<SemaphorePermit<'p>>,
    last: &'a mut LastHeartbeat,
) -> Result<Reply<'a>, CloseReason> {
    if request.is_response() {
        // A client's answer to a broker-initiated request; this listener sends none.
        return Ok(Reply::None);
    }
    if request.code != code::HEART_BEAT {
        // Nothing else runs on a heartbeat worker, and a send may wait for slaves.
        *worker = None;
    }
    let oneway = request.is_oneway();
    let admitted = match worker {
        None if request.code == code::HEART_BEAT => ctx.pool.admit(cancel).await,
        _ => Admission::Held,
    };
    let response = match request.code {
        code::HEART_BEAT => match admitted {
            Admission::Run(_) | Admission::Held => {
                if let Admission::Run(permit) = admitted {
                    *worker = Some(permit);
                }
                let reply = heartbeat(&request, handle, now, last)?;
                return Ok(if request.is_oneway() {
                    Reply::None
                } else {
                    reply
                });
            }
            Admission::Busy => {
                ctx.stats.busy.fetch_add(1, Ordering::Relaxed);
                let remark = "[OVERLOAD]system busy, start flow control for a while";
                RemotingCommand::response_to(&request, code::SYSTEM_BUSY, Some(remark.into()))
            }
            Admission::Cancelled => return Err(CloseReason::Shutdown),
        },
        code::UNREGISTER_CLIENT => unregister_client(&request, handle),
        code::CHECK_CLIENT_CONFIG => check_client_config(&request),
        code::GET_CONSUMER_LIST_BY_GROUP => consumer_list(&request, ctx),
        code::GET_CONSUMER_CONNECTION_LIST => consumer_connections(&request, ctx),
        code::GET_PRODUCER_CONNECTION_LIST => producer_connections(&request, ctx),
        code::GET_ALL_PRODUCER_INFO => all_producers(&request, ctx),
        crate::core::admin::GET_BROKER_CONFIG => super::ha::answer_broker_config(
            &request,
            ctx.config.broker_config.as_deref(),
            handle.id(),
        ),
        other => RemotingCommand::response_to(
            &request,
            code::REQUEST_CODE_NOT_SUPPORTED,
            Some(format!(" request type {other} not supported")),
        ),
    };
    Ok(if oneway {
        Reply::None
    } else {
        Reply::Built(response)
    })
}

/// A response with a JSON body.
fn success_with(request: &RemotingCommand, body: Vec<u8>) -> RemotingCommand {
    let mut response = RemotingCommand::response_to(request, code::SUCCESS, None);
    response.body = Some(body.into());
    response
}

/// A required header field, or the `SYSTEM_ERROR` upstream's missing field ends in.
fn required<'a>(request: &'a RemotingCommand, key: &str) -> Result<&'a str, RemotingCommand> {
    request.ext(key).ok_or_else(|| {
        RemotingCommand::response_to(
            request,
            code::SYSTEM_ERROR,
            Some(format!("the custom field <{key}> is null")),
        )
    })
}

/// `CHECK_CLIENT_CONFIG` (46): body `CheckClientRequestBody`; refuses filters this broker cannot
/// apply (`core::admin::check_client_config`).
fn check_client_config(request: &RemotingCommand) -> RemotingCommand {
    match crate::core::admin::check_client_config(request.body.as_deref()) {
        Ok(()) => RemotingCommand::response_to(request, code::SUCCESS, None),
        Err((code, remark)) => RemotingCommand::response_to(request, code, Some(remark)),
    }
}

/// `GET_CONSUMER_LIST_BY_GROUP` (38): header `consumerGroup`; the client id of each channel of the
/// group. A push consumer calls it right after its first heartbeat to rebalance.
fn consumer_list(request: &RemotingCommand, ctx: &Ctx) -> RemotingCommand {
    let group = match required(request, "consumerGroup") {
        Ok(group) => group,
        Err(response) => return response,
    };
    match ctx.registry.connections(GroupKind::Consumer, group) {
        Some(conns) if !conns.is_empty() => {
            success_with(request, crate::core::admin::consumer_list_body(&conns))
        }
        _ => RemotingCommand::response_to(
            request,
            code::SYSTEM_ERROR,
            Some(format!("no consumer for this group, {group}")),
        ),
    }
}

/// `GET_CONSUMER_CONNECTION_LIST` (203): header `consumerGroup`; the group's connections and
/// metadata, or `CONSUMER_NOT_ONLINE`.
fn consumer_connections(request: &RemotingCommand, ctx: &Ctx) -> RemotingCommand {
    let group = match required(request, "consumerGroup") {
        Ok(group) => group,
        Err(response) => return response,
    };
    let conns = ctx.registry.connections(GroupKind::Consumer, group);
    match (conns, ctx.registry.consumer_meta(group)) {
        (Some(conns), Some(meta)) => success_with(
            request,
            crate::core::admin::consumer_connection_body(&conns, &meta),
        ),
        _ => RemotingCommand::response_to(
            request,
            code::CONSUMER_NOT_ONLINE,
            Some(format!("the consumer group[{group}] not online")),
        ),
    }
}

/// `GET_PRODUCER_CONNECTION_LIST` (204): header `producerGroup`; the group's connections.
fn producer_connections(request: &RemotingCommand, ctx: &Ctx) -> RemotingCommand {
    let group = match required(request, "producerGroup") {
        Ok(group) => group,
        Err(response) => return response,
    };
    match ctx.registry.connections(GroupKind::Producer, group) {
        Some(conns) => success_with(
            request,
            crate::core::admin::producer_connection_body(&conns),
        ),
        None => RemotingCommand::response_to(
            request,
            code::SYSTEM_ERROR,
            Some(format!("the producer group[{group}] not exist")),
        ),
    }
}

/// `GET_ALL_PRODUCER_INFO` (328): every producer group with its channels.
fn all_producers(request: &RemotingCommand, ctx: &Ctx) -> RemotingCommand {
    let groups = ctx.registry.producer_connections();
    let body = crate::core::admin::producer_table_body(&groups, |at| ctx.clock.wall_ms(at));
    success_with(request, body)
}

/// `UNREGISTER_CLIENT`: header `clientID` (required), `producerGroup`, `consumerGroup`.
fn unregister_client(request: &RemotingCommand, handle: &ChannelHandle) -> RemotingCommand {
    let client_id = match required(request, "clientID") {
        Ok(client_id) => client_id,
        Err(response) => return response,
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

/// The connection's last parsed heartbeat body. A client resends the same heartbeat every 30 s
/// until its groups change, so an identical body skips the JSON parse.
#[derive(Default)]
struct LastHeartbeat {
    body: Vec<u8>,
    data: Option<HeartbeatData>,
    /// The `SUCCESS` response, kept so that answering a heartbeat allocates nothing.
    response: Option<RemotingCommand>,
    /// That response encoded, by `IS_SUB_CHANGE` (false, true), for JSON-header requests.
    encoded: [Option<OpaqueTemplate>; 2],
}

impl LastHeartbeat {
    /// Bodies above this are parsed every time rather than kept per connection.
    const MAX_BODY: usize = 64 * 1024;

    /// The `SUCCESS` response to `request` (heartbeat v2 fields included).
    fn success(&mut self, request: &RemotingCommand, sub_changed: bool) -> &RemotingCommand {
        let response = self.response.get_or_insert_with(|| {
            let mut r = RemotingCommand::response_to(request, code::SUCCESS, None);
            r.ext_fields.insert("IS_SUPPORT_HEART_BEAT_V2", "true");
            r
        });
        response.opaque = request.opaque;
        response.serialize_type = request.serialize_type;
        // Set again each time: `ExtFields` compacts the replaced values' bytes.
        response
            .ext_fields
            .insert("IS_SUB_CHANGE", if sub_changed { "true" } else { "false" });
        response
    }

    /// The answer to a heartbeat that succeeded: the kept response, pre-encoded when the
    /// request's header is JSON (as every client's is), so that an answer is two copies and the
    /// opaque's digits.
    fn reply(&mut self, request: &RemotingCommand, sub_changed: bool) -> Reply<'_> {
        if request.serialize_type != SerializeType::Json {
            return Reply::Kept(self.success(request, sub_changed));
        }
        let slot = usize::from(sub_changed);
        if self.encoded[slot].is_none() {
            self.encoded[slot] = self.success(request, sub_changed).opaque_template();
            if self.encoded[slot].is_none() {
                return Reply::Kept(self.success(request, sub_changed));
            }
        }
        let template = self.encoded[slot].as_ref().expect("set above");
        Reply::Template(template, request.opaque)
    }

    fn parse(&mut self, body: &[u8]) -> Result<Cow<'_, HeartbeatData>, serde_json::Error> {
        if body.len() > Self::MAX_BODY {
            return HeartbeatData::from_json(body).map(Cow::Owned);
        }
        if self.data.is_none() || self.body != body {
            self.data = None;
            let data = HeartbeatData::from_json(body)?;
            self.body.clear();
            self.body.extend_from_slice(body);
            self.data = Some(data);
        }
        Ok(Cow::Borrowed(self.data.as_ref().expect("set above")))
    }
}

/// `HEART_BEAT`. A channel closed meanwhile ends the connection: its owner is closing it.
fn heartbeat<'a>(
    request: &RemotingCommand,
    handle: &ChannelHandle,
    now: crate::core::Millis,
    last: &'a mut LastHeartbeat,
) -> Result<Reply<'a>, CloseReason> {
    let body = request.body.as_deref().unwrap_or(b"");
    let data = match last.parse(body) {
        Ok(data) => data,
        Err(error) => {
            let remark = format!("invalid HeartbeatData body: {error}");
            return Ok(Reply::Built(RemotingCommand::response_to(
                request,
                code::SYSTEM_ERROR,
                Some(remark),
            )));
        }
    };
    match handle.heartbeat_from(request.language, request.version, &data, now) {
        Ok(outcome) => Ok(last.reply(request, outcome.sub_changed)),
        Err(ClientError::ChannelClosed(_)) => Err(CloseReason::Local),
        Err(error) => Ok(Reply::Built(RemotingCommand::response_to(
            request,
            code::SYSTEM_ERROR,
            Some(error.to_string()),
        ))),
    }
}

/// The periodic expiry scan (upstream `ClientHousekeepingService`, every 10 s); the acceptor
/// closes the channels it orphans.
async fn scan_loop(acceptor: Arc<Acceptor>, ctx: Arc<Ctx>, cancel: CancellationToken) {
    let mut tick = time::interval(ctx.config.scan_interval);
    tick.set_missed_tick_behavior(time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let report = acceptor.scan(ctx.clock.now());
        if report.expired > 0 || report.reclaimed > 0 {
            tracing::info!(
                expired = report.expired,
                orphaned = report.orphaned.len(),
                reclaimed = report.reclaimed,
                "expiry scan"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache answers only for the very same bytes: a changed body, a bad body after a good
    /// one and an oversized body are all parsed afresh.
    #[test]
    fn last_heartbeat_reuses_only_identical_bodies() {
        let mut last = LastHeartbeat::default();
        let a = HeartbeatData::producers("c", ["A"]).to_json();
        let b = HeartbeatData::producers("c", ["B"]).to_json();
        assert_eq!(last.parse(&a).unwrap().producer_data_set[0].group_name, "A");
        assert_eq!(last.parse(&a).unwrap().producer_data_set[0].group_name, "A");
        assert_eq!(last.parse(&b).unwrap().producer_data_set[0].group_name, "B");
        assert!(last.parse(b"{oops").is_err());
        assert!(
            last.parse(b"{oops").is_err(),
            "a failed parse is not remembered"
        );
        assert_eq!(last.parse(&b).unwrap().producer_data_set[0].group_name, "B");

        let groups: Vec<String> = (0..6000).map(|i| format!("group-{i}")).collect();
        let big = HeartbeatData::producers("c", groups).to_json();
        assert!(big.len() > LastHeartbeat::MAX_BODY);
        assert_eq!(last.parse(&big).unwrap().producer_data_set.len(), 6000);
        assert!(matches!(last.parse(&big).unwrap(), Cow::Owned(_)));
        assert_eq!(last.parse(&b).unwrap().producer_data_set[0].group_name, "B");
        assert!(last.parse(b"").is_err(), "an empty body is not valid JSON");
    }

    /// The pre-encoded answer is the kept response's encoding, for both `IS_SUB_CHANGE` values
    /// and any opaque; a binary-header request gets the kept response itself.
    #[test]
    fn heartbeat_reply_template_matches_the_kept_response() {
        let mut last = LastHeartbeat::default();
        let mut request = RemotingCommand::request(code::HEART_BEAT);
        for (opaque, changed) in [(1, false), (-5, true), (i32::MAX, false), (i32::MIN, true)] {
            request.opaque = opaque;
            let mut templated = BytesMut::new();
            let reply = last.reply(&request, changed);
            assert!(matches!(reply, Reply::Template(..)));
            reply.write(&mut templated);
            let mut kept = BytesMut::new();
            Reply::Kept(last.success(&request, changed)).write(&mut kept);
            assert_eq!(templated, kept, "opaque {opaque}, sub changed {changed}");
        }
        request.serialize_type = SerializeType::RocketMq;
        assert!(matches!(last.reply(&request, false), Reply::Kept(_)));
    }
}
