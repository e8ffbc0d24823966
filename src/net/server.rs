//! The two processes of the command, as library functions: [`serve`] (the commit log, the
//! client-management listener and the HA master) and [`replicate`] (a slave's commit log and its
//! replication loop), each until a shutdown future completes.
//!
//! `rmq-lifecycle serve` and `rmq-lifecycle slave` are these functions with a signal as the
//! shutdown future; the simulation of `tests/sim.rs` runs the same functions on simulated hosts.
//! This module wires components together and reports; it holds no protocol decision.

use super::Clock;
use super::ha::{HaMaster, HaSlave, MasterConfig, MasterHandle, SlaveConfig, SlaveStatus};
#[cfg(feature = "metrics")]
use super::metrics;
use super::notify::{ConsumerNotifier, NotifyConfig};
use super::remoting::{RemotingConfig, RemotingServer, RemotingStats};
use super::send::{SendConfig, Sender};
use crate::io::net::TcpListener;
use crate::lifecycle::TaskGauge;
use crate::registry::{ClientRegistry, HaRegistry, RegistryConfig};
use crate::store::messages::MessageLog;
use crate::store::{CommitLog, StoreConfig};
use crate::sync::Arc;
use crate::sync::atomic::Ordering;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Everything [`serve`] runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The client-management listener.
    pub remoting: RemotingConfig,
    /// The client registry's rules and caps.
    pub registry: RegistryConfig,
    /// Push `NOTIFY_CONSUMER_IDS_CHANGED` to consumer groups whose membership changes (upstream's
    /// `notifyConsumerIdsChangedEnable`, on by default); `None` turns it off.
    pub notify: Option<NotifyConfig>,
    /// The HA master.
    pub master: MasterConfig,
    /// Producers' sends (`SEND_MESSAGE`, `SEND_MESSAGE_V2`).
    pub send: SendConfig,
    /// The commit log the master serves.
    pub store: StoreConfig,
    /// Serve Prometheus text at `http://ADDR/metrics` (feature `metrics`; without it, `Some`
    /// is refused at start).
    pub metrics: Option<SocketAddr>,
    /// How long shutdown waits for each component's tasks.
    pub grace: Duration,
}

/// Why a process could not start; each names what failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Two settings disagree.
    #[error("{0}")]
    Config(String),
    /// The commit log could not be opened or recovered.
    #[error("cannot open the commit log in {dir}: {source}")]
    Store {
        /// The store directory.
        dir: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A listener could not bind.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// A running broker: what [`serve`] runs between start and shutdown.
///
/// [`Broker::start`] it inside a tokio runtime, keep it while it serves, and end it with
/// [`Broker::shutdown`], whose report says what was left behind. [`serve`]'s example builds a
/// [`ServeConfig`]; one whose store and HA config disagree on the segment size is refused before
/// the store is opened:
///
/// ```
/// use rmq_lifecycle::net::ha::MasterConfig;
/// use rmq_lifecycle::net::remoting::RemotingConfig;
/// use rmq_lifecycle::net::server::{Broker, ServeConfig, StartError};
/// use rmq_lifecycle::store::StoreConfig;
/// use rmq_lifecycle::tokio;
/// use std::time::Duration;
///
/// let dir = tempfile::tempdir().unwrap();
/// let loopback = ([127, 0, 0, 1], 0).into();
/// let config = ServeConfig {
///     remoting: RemotingConfig { listen: loopback, ..RemotingConfig::default() },
///     registry: Default::default(),
///     notify: None,
///     master: MasterConfig { listen: loopback, ..MasterConfig::default() }, // 1 GiB segments
///     send: Default::default(),
///     store: StoreConfig { segment_size: 64 * 1024, ..StoreConfig::new(dir.path()) },
///     metrics: None,
///     grace: Duration::from_secs(5),
/// };
/// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// let refused = runtime.block_on(Broker::start(config)).unwrap_err();
/// assert!(matches!(refused, StartError::Config(_)), "{refused}");
/// ```
#[derive(Debug)]
pub struct Broker {
    registry: Arc<ClientRegistry>,
    remoting: RemotingServer,
    master: HaMaster,
    log: Arc<CommitLog>,
    client_tasks: TaskGauge,
    ha_tasks: TaskGauge,
    metrics_stop: CancellationToken,
    grace: Duration,
}

/// What a broker's shutdown left behind: all zeros when clean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerReport {
    /// Client connections the shutdown closed.
    pub closed_by_shutdown: usize,
    /// Client connections accepted over the broker's life.
    pub accepted: u64,
    /// HA connections accepted over the broker's life.
    pub ha_accepted: u64,
    /// The commit log's max offset after the final flush.
    pub max_offset: u64,
    /// Tasks still alive after the grace period.
    pub tasks_left: usize,
    /// Client channels still registered.
    pub channels_left: usize,
    /// HA connections still registered.
    pub ha_connections_left: usize,
    /// The final flush's error, if it failed.
    pub flush_error: Option<String>,
}

impl BrokerReport {
    /// Nothing left behind and every byte flushed.
    pub fn is_clean(&self) -> bool {
        self.tasks_left == 0
            && self.channels_left == 0
            && self.ha_connections_left == 0
            && self.flush_error.is_none()
    }
}

impl Broker {
    /// Binds the client listener, opens the commit log, binds the HA master and the metrics
    /// endpoint.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (its listeners and tasks are the current runtime's).
    pub async fn start(config: ServeConfig) -> Result<Broker, StartError> {
        let notifier = config.notify.map(ConsumerNotifier::new);
        let registry = Arc::new(match &notifier {
            Some(notifier) => ClientRegistry::with_listener(config.registry, notifier.clone()),
            None => ClientRegistry::new(config.registry),
        });
        let client_tasks = TaskGauge::new();
        let ha_tasks = TaskGauge::new();
        let listen = config.remoting.listen;
        let client_listener =
            TcpListener::bind(listen)
                .await
                .map_err(|source| StartError::Bind {
                    what: "client listener, --listen",
                    addr: listen,
                    source,
                })?;
        check_segment_size(&config.store, config.master.ha.segment_size)?;
        #[cfg(not(feature = "metrics"))]
        if config.metrics.is_some() {
            return Err(StartError::Config(
                "metrics asked for, but this build has no exporter (feature `metrics`)".into(),
            ));
        }
        // Every port is bound before the store is opened: a port in use leaves no store behind.
        let ha_listen = config.master.listen;
        let ha_listener =
            TcpListener::bind(ha_listen)
                .await
                .map_err(|source| StartError::Bind {
                    what: "HA listener, --ha-listen",
                    addr: ha_listen,
                    source,
                })?;
        #[cfg(feature = "metrics")]
        let metrics_listener = match config.metrics {
            Some(addr) => {
                Some(
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| StartError::Bind {
                            what: "metrics, --metrics",
                            addr,
                            source,
                        })?,
                )
            }
            None => None,
        };
        let log = open_store(&config.store)?;
        let master = HaMaster::listen(
            ha_listener,
            config.master,
            log.clone(),
            Clock::start(),
            ha_tasks.clone(),
        )
        .map_err(|source| match source.kind() {
            // the auto-switch epoch (see `MasterConfig::epoch`)
            std::io::ErrorKind::InvalidInput => StartError::Config(format!("--epoch: {source}")),
            _ => StartError::Bind {
                what: "HA listener, --ha-listen",
                addr: ha_listen,
                source,
            },
        })?;
        let (messages, recovered) = MessageLog::open(
            log.clone(),
            config.send.rules.clone(),
            std::process::id(),
            salt(),
        )
        .map_err(|source| StartError::Store {
            dir: config.store.dir.display().to_string(),
            source,
        })?;
        tracing::info!(
            messages = recovered.messages,
            queues = recovered.queues,
            "queue offsets rebuilt from the commit log"
        );
        let clock = Clock::start();
        let mut remoting = config.remoting;
        if remoting.broker_config.is_none() {
            remoting.broker_config = Some(Arc::new(broker_config(
                &client_listener,
                &master,
                &config.send,
            )));
        }
        let sender = Sender::new(messages, master.handle().clone(), config.send, clock);
        let remoting = RemotingServer::start(
            client_listener,
            remoting,
            registry.clone(),
            notifier,
            Some(Arc::new(sender)),
            clock,
            client_tasks.clone(),
        )
        .map_err(|source| StartError::Bind {
            what: "client listener, --listen",
            addr: listen,
            source,
        })?;
        let metrics_stop = CancellationToken::new();
        #[cfg(feature = "metrics")]
        if let Some(listener) = metrics_listener {
            let sources = metrics::Sources {
                registry: registry.clone(),
                tasks: vec![client_tasks.clone(), ha_tasks.clone()],
                remoting: Some(remoting.stats().clone()),
                ha: Some((master.registry().clone(), log.clone())),
            };
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "metrics at /metrics");
            }
            metrics::serve_on(listener, sources, metrics_stop.clone());
        }
        tracing::info!(
            listen = %remoting.local_addr(),
            ha_listen = %master.local_addr(),
            "serving"
        );
        Ok(Broker {
            registry,
            remoting,
            master,
            log,
            client_tasks,
            ha_tasks,
            metrics_stop,
            grace: config.grace,
        })
    }

    /// The client registry (read-only from outside the crate).
    pub fn registry(&self) -> &Arc<ClientRegistry> {
        &self.registry
    }

    /// The client listener's counters.
    pub fn remoting_stats(&self) -> &Arc<RemotingStats> {
        self.remoting.stats()
    }

    /// The client listener's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.remoting.local_addr()
    }

    /// The HA listener's address.
    pub fn ha_local_addr(&self) -> SocketAddr {
        self.master.local_addr()
    }

    /// Appending and waiting for replication.
    pub fn master(&self) -> &MasterHandle {
        self.master.handle()
    }

    /// The HA connection table.
    pub fn ha_registry(&self) -> &Arc<HaRegistry> {
        self.master.registry()
    }

    /// The commit log.
    pub fn log(&self) -> &Arc<CommitLog> {
        &self.log
    }

    /// Tasks alive now, client and HA.
    pub fn tasks_alive(&self) -> usize {
        self.client_tasks.alive() + self.ha_tasks.alive()
    }

    /// The client listener's task gauge (accept loop, scan, heartbeat workers, connections).
    pub fn client_tasks(&self) -> &TaskGauge {
        &self.client_tasks
    }

    /// The HA master's task gauge (accept loop, each connection's reader and writer).
    pub fn ha_tasks(&self) -> &TaskGauge {
        &self.ha_tasks
    }

    /// Stops accepting, closes every connection through its lifecycle, waits for each
    /// component's tasks (each up to the grace period, the two at once) and flushes the log.
    pub async fn shutdown(self) -> BrokerReport {
        let stats = self.remoting.stats().clone();
        let ha_registry = self.master.registry().clone();
        let (report, _) = tokio::join!(
            self.remoting.shutdown(self.grace),
            self.master.shutdown(self.grace)
        );
        self.metrics_stop.cancel();
        let flush_error = self.log.flush().err().map(|e| e.to_string());
        if let Some(error) = &flush_error {
            tracing::error!(%error, "final commit log flush failed");
        }
        let report = BrokerReport {
            closed_by_shutdown: report.closed_connections,
            accepted: stats.accepted_total(),
            ha_accepted: ha_registry.accepted_total(),
            max_offset: self.log.max_offset(),
            tasks_left: self.client_tasks.alive() + self.ha_tasks.alive(),
            channels_left: self.registry.channel_count(),
            ha_connections_left: ha_registry.count(),
            flush_error,
        };
        tracing::info!(
            closed_by_shutdown = report.closed_by_shutdown,
            accepted = report.accepted,
            closed = stats.closed_total(),
            producer_groups = self.registry.producer_group_count(),
            consumer_groups = self.registry.consumer_group_count(),
            ha_accepted = report.ha_accepted,
            commitlog_max_offset = report.max_offset,
            tasks_left = report.tasks_left,
            channels_left = report.channels_left,
            ha_connections_left = report.ha_connections_left,
            "shutdown complete"
        );
        report
    }
}

/// The `serve` process: starts a [`Broker`], hands it to `started` (to log its addresses, or for
/// an embedder or a test to keep handles), runs until `shutdown` completes, then shuts it down.
///
/// Panics outside a tokio runtime, as [`Broker::start`] does. Here on loopback ports the system
/// picks, until a channel (a signal handler, say) fires:
///
/// ```
/// use rmq_lifecycle::core::ha::HaConfig;
/// use rmq_lifecycle::net::ha::MasterConfig;
/// use rmq_lifecycle::net::remoting::RemotingConfig;
/// use rmq_lifecycle::net::server::{self, ServeConfig};
/// use rmq_lifecycle::store::StoreConfig;
/// use rmq_lifecycle::tokio::{self, sync::oneshot};
/// use std::time::Duration;
///
/// const SEGMENT: u64 = 64 * 1024; // the store's and the HA config's: one value, or no start
/// let dir = tempfile::tempdir().unwrap();
/// let loopback = ([127, 0, 0, 1], 0).into();
/// let config = ServeConfig {
///     remoting: RemotingConfig { listen: loopback, ..RemotingConfig::default() },
///     registry: Default::default(),
///     notify: Some(Default::default()),
///     master: MasterConfig {
///         listen: loopback,
///         ha: HaConfig { segment_size: SEGMENT, ..HaConfig::default() },
///         ..MasterConfig::default()
///     },
///     send: Default::default(),
///     store: StoreConfig { segment_size: SEGMENT, ..StoreConfig::new(dir.path()) },
///     metrics: None,
///     grace: Duration::from_secs(5),
/// };
///
/// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// let (stop, stopped) = oneshot::channel::<()>();
/// let shutdown = async move {
///     let _ = stopped.await;
/// };
/// let report = runtime.block_on(server::serve(config, shutdown, move |broker| {
///     assert_ne!(broker.local_addr().port(), 0);
///     broker.master().append(b"hello").unwrap();
///     stop.send(()).unwrap();
/// }));
/// let report = report.unwrap();
/// assert!(report.is_clean(), "{report:?}");
/// assert!(report.max_offset > 0);
/// ```
pub async fn serve(
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
    started: impl FnOnce(&Broker),
) -> Result<BrokerReport, StartError> {
    let broker = Broker::start(config).await?;
    started(&broker);
    shutdown.await;
    tracing::info!("shutting down");
    Ok(broker.shutdown().await)
}

/// Everything [`replicate`] runs.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// The replication loop (the master's address, timings).
    pub slave: SlaveConfig,
    /// The slave's own commit log.
    pub store: StoreConfig,
    /// How long shutdown waits for the replication task.
    pub grace: Duration,
}

/// A running slave: its log and its replication loop.
#[derive(Debug)]
pub struct Replica {
    log: Arc<CommitLog>,
    slave: HaSlave,
    grace: Duration,
}

/// What a slave's shutdown left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaReport {
    /// The log's max offset after the final flush.
    pub max_offset: u64,
    /// Connections to the master over the slave's life.
    pub sessions: u64,
    /// Bytes appended over the slave's life.
    pub appended: u64,
    /// Tasks still alive after the grace period.
    pub tasks_left: usize,
    /// The final flush's error, if it failed.
    pub flush_error: Option<String>,
}

impl ReplicaReport {
    /// Nothing left behind and every byte flushed.
    pub fn is_clean(&self) -> bool {
        self.tasks_left == 0 && self.flush_error.is_none()
    }
}

impl Replica {
    /// Opens the slave's log and starts replicating into it.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the replication task is spawned on the current one).
    pub fn start(config: ReplicaConfig) -> Result<Replica, StartError> {
        check_segment_size(&config.store, config.slave.ha.segment_size)?;
        let log = open_store(&config.store)?;
        let master = config.slave.master;
        let slave = HaSlave::start(config.slave, log.clone(), Clock::start(), TaskGauge::new());
        tracing::info!(%master, from = log.max_offset(), "replicating");
        Ok(Replica {
            log,
            slave,
            grace: config.grace,
        })
    }

    /// The slave's log.
    pub fn log(&self) -> &Arc<CommitLog> {
        &self.log
    }

    /// What the replication loop is doing.
    pub fn status(&self) -> &Arc<SlaveStatus> {
        self.slave.status()
    }

    /// Stops replicating, waits for the loop (up to the grace period) and flushes the log.
    pub async fn shutdown(self) -> ReplicaReport {
        let status = self.slave.status().clone();
        let tasks_left = self.slave.shutdown(self.grace).await;
        let flush_error = self.log.flush().err().map(|e| e.to_string());
        let report = ReplicaReport {
            max_offset: self.log.max_offset(),
            sessions: status.sessions.load(Ordering::Relaxed),
            appended: status.appended.load(Ordering::Relaxed),
            tasks_left,
            flush_error,
        };
        tracing::info!(
            max_offset = report.max_offset,
            sessions = report.sessions,
            appended = report.appended,
            tasks_left,
            "slave stopped"
        );
        report
    }
}

/// The `slave` process: starts a [`Replica`], hands it to `started`, replicates until `shutdown`
/// completes, then shuts it down.
pub async fn replicate(
    config: ReplicaConfig,
    shutdown: impl Future<Output = ()>,
    started: impl FnOnce(&Replica),
) -> Result<ReplicaReport, StartError> {
    let replica = Replica::start(config)?;
    started(&replica);
    shutdown.await;
    Ok(replica.shutdown().await)
}

/// What this broker answers to `GET_BROKER_CONFIG` (26): the ports it listens on, its segment
/// size and its role (a slave of ours asks it before each HA connect).
fn broker_config(
    client: &TcpListener,
    master: &HaMaster,
    send: &SendConfig,
) -> crate::core::admin::BrokerConfig {
    use crate::core::admin::{BrokerConfig, BrokerRole};
    BrokerConfig {
        listen_port: client.local_addr().map_or(0, |a| a.port()),
        ha_listen_port: master.local_addr().port(),
        segment_size: master.log().segment_size(),
        role: if send.in_sync_replicas > 1 {
            BrokerRole::SyncMaster
        } else {
            BrokerRole::AsyncMaster
        },
        since_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
    }
}

/// A per-process value for the ids the broker gives messages that came without one.
fn salt() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id().rotate_left(16)
}

/// The log's segment size is set in two places (the store's files, the HA transfer's segment
/// ends); they must be one value. Checked before the store is opened.
fn check_segment_size(store: &StoreConfig, ha: u64) -> Result<(), StartError> {
    match super::ha::segment_sizes_differ(store.segment_size, ha) {
        None => Ok(()),
        Some(why) => Err(StartError::Config(why)),
    }
}

fn open_store(config: &StoreConfig) -> Result<Arc<CommitLog>, StartError> {
    let dir = config.dir.display().to_string();
    let log = CommitLog::open(config.clone()).map_err(|source| StartError::Store {
        dir: dir.clone(),
        source,
    })?;
    tracing::info!(%dir, min = log.min_offset(), max = log.max_offset(), "commit log recovered");
    Ok(Arc::new(log))
}
