//! `rmq-lifecycle serve`: the broker-side core on real sockets until SIGINT or SIGTERM.

use clap::Args;
use rmq_lifecycle::core::ClientRules;
use rmq_lifecycle::core::ha::HaConfig;
use rmq_lifecycle::lifecycle::TaskGauge;
use rmq_lifecycle::net::ha::{HaMaster, HaSlave, MasterConfig, SlaveConfig};
use rmq_lifecycle::net::remoting::{RemotingConfig, RemotingServer};
use rmq_lifecycle::net::{Clock, metrics};
use rmq_lifecycle::registry::{ClientRegistry, RegistryConfig};
use rmq_lifecycle::store::{CommitLog, DEFAULT_SEGMENT_SIZE, FlushPolicy, StoreConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Client-management listener (HEART_BEAT, UNREGISTER_CLIENT, CHECK_CLIENT_CONFIG).
    #[arg(long, default_value = "127.0.0.1:10911")]
    listen: SocketAddr,
    /// HA master port (slaves connect here).
    #[arg(long, default_value = "127.0.0.1:10912")]
    ha_listen: SocketAddr,
    #[command(flatten)]
    store: StoreArgs,
    /// Serve Prometheus text at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Close a client connection with no complete frame for this many seconds.
    #[arg(long, default_value_t = 120)]
    idle_timeout_secs: u64,
    /// Expire (group, channel) memberships not refreshed for this many seconds.
    #[arg(long, default_value_t = 120)]
    channel_expiry_secs: u64,
    /// Period of the expiry scan, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    scan_interval_ms: u64,
    /// Heartbeat worker tasks (default: min(32, cores)).
    #[arg(long)]
    heartbeat_workers: Option<usize>,
    /// Heartbeats queued for a worker before SYSTEM_BUSY.
    #[arg(long, default_value_t = 50_000)]
    heartbeat_queue: usize,
    /// Live client channels at most; more connections are closed on accept.
    #[arg(long, default_value_t = ClientRules::default().max_channels)]
    max_channels: usize,
    /// Groups one channel may join; a heartbeat past it is answered SYSTEM_ERROR.
    #[arg(long, default_value_t = ClientRules::default().max_groups_per_channel)]
    max_groups_per_channel: usize,
}

/// The commit log's options, shared by `serve` (master) and `slave`.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// Directory of the commit log's segment files (default: $HOME/store/commitlog, like
    /// upstream's storePathRootDir).
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Bytes per segment file; master and slave must agree.
    #[arg(long, default_value_t = DEFAULT_SEGMENT_SIZE)]
    segment_size: u64,
    /// Sync every append to disk instead of leaving it to the OS and shutdown.
    #[arg(long)]
    flush_every_append: bool,
}

impl StoreArgs {
    fn open(&self) -> Result<Arc<CommitLog>, String> {
        let dir = match &self.store {
            Some(dir) => dir.clone(),
            None => {
                let home =
                    std::env::var_os("HOME").ok_or("no --store given and $HOME is not set")?;
                PathBuf::from(home).join("store").join("commitlog")
            }
        };
        let flush = if self.flush_every_append {
            FlushPolicy::EveryAppend
        } else {
            FlushPolicy::Manual
        };
        let config = StoreConfig {
            dir: dir.clone(),
            segment_size: self.segment_size,
            flush,
        };
        let log = CommitLog::open(config)
            .map_err(|e| format!("cannot open the commit log in {}: {e}", dir.display()))?;
        tracing::info!(dir = %dir.display(), min = log.min_offset(), max = log.max_offset(), "commit log recovered");
        Ok(Arc::new(log))
    }

    fn ha_config(&self) -> HaConfig {
        HaConfig {
            segment_size: self.segment_size,
            ..HaConfig::default()
        }
    }
}

/// Runs `body` on a multi-threaded runtime and turns its error into exit code 1.
fn block_on<F>(body: F) -> ExitCode
where
    F: std::future::Future<Output = Result<ExitCode, String>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(body) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn run(args: ServeArgs) -> ExitCode {
    block_on(serve(args))
}

async fn serve(args: ServeArgs) -> Result<ExitCode, String> {
    let rules = ClientRules {
        expiry_ms: args.channel_expiry_secs * 1000,
        max_channels: args.max_channels,
        max_groups_per_channel: args.max_groups_per_channel,
    };
    let registry = Arc::new(ClientRegistry::new(RegistryConfig {
        rules,
        ..RegistryConfig::default()
    }));
    let tasks = TaskGauge::new();
    let mut config = RemotingConfig {
        listen: args.listen,
        idle_timeout: Duration::from_secs(args.idle_timeout_secs),
        scan_interval: Duration::from_millis(args.scan_interval_ms.max(1)),
        heartbeat_queue: args.heartbeat_queue,
        ..RemotingConfig::default()
    };
    if let Some(n) = args.heartbeat_workers {
        config.heartbeat_workers = n;
    }
    let server = RemotingServer::bind(config, registry.clone(), Clock::start(), tasks.clone())
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let log = args.store.open()?;
    let master_config = MasterConfig {
        listen: args.ha_listen,
        ha: args.store.ha_config(),
        ..MasterConfig::default()
    };
    let master = HaMaster::bind(master_config, log.clone(), Clock::start(), tasks.clone())
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.ha_listen))?;
    let sampler_stop = CancellationToken::new();
    let sources = metrics::Sources {
        registry: registry.clone(),
        tasks: tasks.clone(),
        remoting: Some(server.stats().clone()),
        ha: Some((master.registry().clone(), log.clone())),
    };
    if let Some(addr) = args.metrics {
        metrics::serve(addr, sources.clone(), sampler_stop.clone()).await?;
        tracing::info!(%addr, "metrics at /metrics");
    }
    tracing::info!(listen = %server.local_addr(), ha_listen = %master.local_addr(), "serving");
    let signal = wait_for_signal().await;
    tracing::info!(signal, "shutting down");
    let stats = server.stats().clone();
    let ha_registry = master.registry().clone();
    let report = server.shutdown(Duration::from_secs(10)).await;
    master.shutdown(Duration::from_secs(10)).await;
    sampler_stop.cancel();
    if let Err(error) = log.flush() {
        tracing::error!(%error, "final commit log flush failed");
    }
    tracing::info!(
        closed_by_shutdown = report.closed_connections,
        accepted = stats.accepted_total(),
        closed = stats.closed_total(),
        channels = registry.channel_count(),
        producer_groups = registry.producer_group_count(),
        consumer_groups = registry.consumer_group_count(),
        ha_accepted = ha_registry.accepted_total(),
        ha_connections = ha_registry.count(),
        commitlog_max_offset = log.max_offset(),
        tasks_left = tasks.alive(),
        "shutdown complete"
    );
    if tasks.alive() > 0 || registry.channel_count() > 0 || ha_registry.count() > 0 {
        return Err(format!(
            "unclean shutdown: {} tasks, {} client channels and {} HA connections left",
            tasks.alive(),
            registry.channel_count(),
            ha_registry.count()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub(crate) struct SlaveArgs {
    /// The master's HA address.
    #[arg(long)]
    master: SocketAddr,
    #[command(flatten)]
    store: StoreArgs,
}

/// `rmq-lifecycle slave`: replicate until SIGINT/SIGTERM, reconnecting with backoff.
pub(crate) fn run_slave(args: SlaveArgs) -> ExitCode {
    block_on(async move {
        let log = args.store.open()?;
        let tasks = TaskGauge::new();
        let config = SlaveConfig {
            ha: args.store.ha_config(),
            ..SlaveConfig::new(args.master)
        };
        let slave = HaSlave::start(config, log.clone(), Clock::start(), tasks);
        tracing::info!(master = %args.master, from = log.max_offset(), "replicating");
        let signal = wait_for_signal().await;
        let status = slave.status().clone();
        let left = slave.shutdown(Duration::from_secs(10)).await;
        log.flush().map_err(|e| format!("final flush: {e}"))?;
        tracing::info!(
            signal,
            max_offset = log.max_offset(),
            sessions = status.sessions.load(Ordering::Relaxed),
            appended = status.appended.load(Ordering::Relaxed),
            "slave stopped"
        );
        if left > 0 {
            return Err(format!("unclean shutdown: {left} tasks left"));
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
