//! `rmq-lifecycle serve`: the broker-side core on real sockets until SIGINT or SIGTERM.

use clap::Args;
use rmq_lifecycle::core::ClientRules;
use rmq_lifecycle::lifecycle::TaskGauge;
use rmq_lifecycle::net::remoting::{RemotingConfig, RemotingServer};
use rmq_lifecycle::net::{Clock, metrics};
use rmq_lifecycle::registry::{ClientRegistry, RegistryConfig};
use std::net::SocketAddr;
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

pub(crate) fn run(args: ServeArgs) -> ExitCode {
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
    match runtime.block_on(serve(args)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
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
    let sampler_stop = CancellationToken::new();
    let sources = metrics::Sources {
        registry: registry.clone(),
        tasks: tasks.clone(),
        remoting: Some(server.stats().clone()),
    };
    if let Some(addr) = args.metrics {
        metrics::install(addr)?;
        tokio::spawn(metrics::sample_loop(
            sources.clone(),
            Duration::from_millis(200),
            sampler_stop.clone(),
        ));
        tracing::info!(%addr, "metrics at /metrics");
    }
    tracing::info!(listen = %server.local_addr(), "serving");
    let signal = wait_for_signal().await;
    tracing::info!(signal, "shutting down");
    let stats = server.stats().clone();
    let report = server.shutdown(Duration::from_secs(10)).await;
    sampler_stop.cancel();
    tracing::info!(
        closed_by_shutdown = report.closed_connections,
        accepted = stats.accepted.load(Ordering::Relaxed),
        closed = stats.closed.load(Ordering::Relaxed),
        channels = registry.channel_count(),
        producer_groups = registry.producer_group_count(),
        consumer_groups = registry.consumer_group_count(),
        tasks_left = report.tasks_left,
        "shutdown complete"
    );
    if report.tasks_left > 0 || registry.channel_count() > 0 {
        return Err(format!(
            "unclean shutdown: {} tasks and {} channels left",
            report.tasks_left,
            registry.channel_count()
        ));
    }
    Ok(ExitCode::SUCCESS)
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
