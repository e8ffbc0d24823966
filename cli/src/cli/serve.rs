//! `rmq-lifecycle serve`: the broker-side core on real sockets until SIGINT or SIGTERM.

use clap::Args;
use rmq_lifecycle::core::ClientRules;
use rmq_lifecycle::core::autoswitch::SlaveHello;
use rmq_lifecycle::core::ha::{HaConfig, HaMode};
use rmq_lifecycle::core::message::{DEFAULT_MAX_MESSAGE_SIZE, SendRules};
use rmq_lifecycle::net::ha::{MasterConfig, SlaveConfig};
use rmq_lifecycle::net::notify::NotifyConfig;
use rmq_lifecycle::net::remoting::RemotingConfig;
use rmq_lifecycle::net::send::SendConfig;
use rmq_lifecycle::net::server::{self, ReplicaConfig, ServeConfig};
use rmq_lifecycle::registry::RegistryConfig;
use rmq_lifecycle::store::{
    self, DEFAULT_SEGMENT_SIZE, FlushPolicy, MIN_SEGMENT_SIZE, StoreConfig,
};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// `--ha-mode`: `classic` or `auto-switch`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HaModeArg(HaMode);

impl std::str::FromStr for HaModeArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse().map(HaModeArg)
    }
}

/// `HOST:PORT`, a host name resolved once at start (its first address).
fn host_port(value: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = value.parse() {
        return Ok(addr);
    }
    match value.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("{value} resolves to no address")),
        Err(error) => Err(format!(
            "{value}: {error} (expected HOST:PORT, e.g. 127.0.0.1:10911 or localhost:10911)"
        )),
    }
}

/// A count in `min..=max`, refused before anything starts with a message naming the option and
/// the range: a zero would disable what the option sizes, and a huge value is a typo that would
/// fail later (a semaphore of that many permits panics once the store is open).
fn count(min: u64, max: u64) -> impl clap::builder::TypedValueParser<Value = usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(min..=max)
}

/// The most heartbeat workers: far above upstream's heartbeatThreadPoolNums (min(32, cores)).
const MAX_HEARTBEAT_WORKERS: u64 = 1_024;
/// The longest heartbeat queue: 20 times upstream's heartbeatThreadPoolQueueCapacity (50000).
const MAX_HEARTBEAT_QUEUE: u64 = 1_000_000;
/// The most client channels: each is a connection, and 16 times the default (1048576) is past
/// any descriptor limit a broker runs with.
const MAX_CHANNELS: u64 = 1 << 24;
/// The most groups one channel may join: 100 times the default (10000).
const MAX_GROUPS_PER_CHANNEL: u64 = 1_000_000;

/// `--broker-id`: upstream's ids are 0 (a classic master) or above, never negative.
fn broker_id() -> impl clap::builder::TypedValueParser<Value = i64> {
    clap::value_parser!(i64).range(0..=i64::MAX)
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Client-management listener (HEART_BEAT, UNREGISTER_CLIENT, CHECK_CLIENT_CONFIG).
    #[arg(long, default_value = "127.0.0.1:10911", value_parser = host_port)]
    listen: SocketAddr,
    /// HA master port (slaves connect here).
    #[arg(long, default_value = "127.0.0.1:10912", value_parser = host_port)]
    ha_listen: SocketAddr,
    /// The HA protocol: classic (upstream's default) or auto-switch (RocketMQ 5 controller
    /// mode: epochs, and slaves that truncate a divergent tail before they replicate).
    #[arg(long, default_value = "classic", value_parser = clap::value_parser!(HaModeArg))]
    ha_mode: HaModeArg,
    /// Auto-switch: the epoch this start begins, above every replica's (default: one above
    /// the store's last). Whoever chooses a new master among several must give it.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i32::MAX as i64))]
    epoch: Option<u32>,
    /// Auto-switch: on SIGUSR2 stop serving and replicate this store from the master at ADDR
    /// (HA port), cutting any tail it never had; SIGUSR1 then promotes it again.
    #[arg(long, value_name = "ADDR", value_parser = host_port)]
    demote_to: Option<SocketAddr>,
    /// Auto-switch: this broker's id once demoted (the new master's in-sync set is keyed by it),
    /// 0 or more.
    #[arg(long, default_value_t = 1, value_parser = broker_id(), allow_negative_numbers = true)]
    broker_id: i64,
    #[command(flatten)]
    store: StoreArgs,
    /// Serve Prometheus text at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR", value_parser = host_port)]
    metrics: Option<SocketAddr>,
    /// Close a client connection with no complete frame for this many seconds (1-86400; a
    /// client heartbeats every 30 s).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    idle_timeout_secs: u64,
    /// Expire (group, channel) memberships not refreshed for this many seconds (1-86400).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    channel_expiry_secs: u64,
    /// Period of the expiry scan, in milliseconds (1-3600000).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    scan_interval_ms: u64,
    /// Heartbeat worker tasks, 1-1024 (default: min(32, cores)).
    #[arg(long, value_parser = count(1, MAX_HEARTBEAT_WORKERS))]
    heartbeat_workers: Option<usize>,
    /// Heartbeats queued for a worker before SYSTEM_BUSY, 1-1000000.
    #[arg(long, default_value_t = 50_000, value_parser = count(1, MAX_HEARTBEAT_QUEUE))]
    heartbeat_queue: usize,
    /// Live client channels at most, 1-16777216; more connections are closed on accept.
    #[arg(long, default_value_t = ClientRules::default().max_channels, value_parser = count(1, MAX_CHANNELS))]
    max_channels: usize,
    /// Groups one channel may join, 1-1000000; a heartbeat past it is answered SYSTEM_ERROR.
    #[arg(long, default_value_t = ClientRules::default().max_groups_per_channel, value_parser = count(1, MAX_GROUPS_PER_CHANNEL))]
    max_groups_per_channel: usize,
    /// Do not push NOTIFY_CONSUMER_IDS_CHANGED (40) when a consumer group's membership changes
    /// (upstream's broker switch notifyConsumerIdsChangedEnable=false): clients then rebalance
    /// on their own 20 s timer.
    #[arg(long)]
    no_consumer_notify: bool,
    /// A consumer group not to notify of membership changes (upstream's per-group switch);
    /// repeatable.
    #[arg(long, value_name = "GROUP")]
    quiet_consumer_group: Vec<String>,
    /// Copies a send waits for, this master's included (upstream inSyncReplicas): 1 answers at
    /// once; 2 waits for one slave (upstream 4's SYNC_MASTER) and answers FLUSH_SLAVE_TIMEOUT
    /// after --slave-timeout-ms. The message is stored either way.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    in_sync_replicas: u64,
    /// How long a send waits for slaves (upstream slaveTimeout).
    #[arg(long, default_value_t = 3_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    slave_timeout_ms: u64,
    /// Longest message body accepted, in bytes (upstream maxMessageSize); longer sends are
    /// answered MESSAGE_ILLEGAL.
    #[arg(long, default_value_t = DEFAULT_MAX_MESSAGE_SIZE as u64, value_parser = clap::value_parser!(u64).range(1..=(15 << 20)))]
    max_message_size: u64,
    /// Record the client registry's model trace (the transitions of models/ClientRegistry.tla)
    /// and write it to FILE at exit, for `models/trace/validate.py`. For testing: it keeps
    /// every event in memory.
    #[arg(long, value_name = "FILE")]
    pub(crate) model_trace: Option<PathBuf>,
    /// Record the HA master's model trace (the transitions of models/HaConnection.tla) and
    /// write it to FILE at exit, like --model-trace.
    #[arg(long, value_name = "FILE")]
    pub(crate) ha_model_trace: Option<PathBuf>,
}

/// The commit log's options, shared by `serve` (master) and `slave`.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// The store directory (default: $HOME/rmq-lifecycle/store for serve,
    /// $HOME/rmq-lifecycle/slave-store for slave). A new or empty directory becomes a store; a
    /// directory holding anything else is refused.
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Bytes per segment file; master and slave must agree. Default: the store's own, or
    /// 1073741824 (upstream's) for a new store.
    #[arg(long, value_parser = clap::value_parser!(u64).range(MIN_SEGMENT_SIZE..=i32::MAX as u64))]
    segment_size: Option<u64>,
    /// Sync every append to disk instead of leaving it to the OS and shutdown.
    #[arg(long)]
    flush_every_append: bool,
}

impl StoreArgs {
    /// The store's configuration and the HA segment size (the same value); `leaf` names the
    /// default directory under `$HOME/rmq-lifecycle`.
    fn config(&self, leaf: &str) -> Result<(StoreConfig, HaConfig), String> {
        let dir = match &self.store {
            Some(dir) => dir.clone(),
            None => {
                let home =
                    std::env::var_os("HOME").ok_or("no --store given and $HOME is not set")?;
                PathBuf::from(home).join("rmq-lifecycle").join(leaf)
            }
        };
        if dir.exists() && !dir.is_dir() {
            return Err(format!(
                "--store {}: not a directory (a store is a directory of segment files)",
                dir.display()
            ));
        }
        let stored = store::segment_size_of(&dir).map_err(|e| e.to_string())?;
        let segment_size = self.segment_size.or(stored).unwrap_or(DEFAULT_SEGMENT_SIZE);
        let flush = if self.flush_every_append {
            FlushPolicy::EveryAppend
        } else {
            FlushPolicy::Manual
        };
        let store = StoreConfig {
            dir,
            segment_size,
            flush,
        };
        let ha = HaConfig {
            segment_size,
            ..HaConfig::default()
        };
        Ok((store, ha))
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

/// How long shutdown waits for each component's tasks.
const GRACE: Duration = Duration::from_secs(10);

async fn serve(args: ServeArgs) -> Result<ExitCode, String> {
    let rules = ClientRules {
        expiry_ms: args.channel_expiry_secs * 1000,
        max_channels: args.max_channels,
        max_groups_per_channel: args.max_groups_per_channel,
    };
    let notify = (!args.no_consumer_notify).then(|| NotifyConfig {
        quiet_groups: args.quiet_consumer_group.iter().cloned().collect(),
        ..NotifyConfig::default()
    });
    let mut remoting = RemotingConfig {
        listen: args.listen,
        idle_timeout: Duration::from_secs(args.idle_timeout_secs),
        scan_interval: Duration::from_millis(args.scan_interval_ms),
        heartbeat_queue: args.heartbeat_queue,
        ..RemotingConfig::default()
    };
    if let Some(n) = args.heartbeat_workers {
        remoting.heartbeat_workers = n;
    }
    let auto = args.ha_mode.0 == HaMode::AutoSwitch;
    if args.demote_to.is_some() && !auto {
        return Err(
            "--demote-to needs --ha-mode auto-switch (a classic slave cannot cut a \
                    divergent tail)"
                .into(),
        );
    }
    // The first start begins `--epoch`; a promotion after a demotion begins one above the
    // store's last (the new master's, which the demoted store now holds).
    let mut epoch = args.epoch;
    let master = || -> Result<ServeConfig, String> {
        let (store, ha) = args.store.config("store")?;
        Ok(ServeConfig {
            remoting: remoting.clone(),
            registry: RegistryConfig {
                rules,
                ..RegistryConfig::default()
            },
            notify: notify.clone(),
            master: MasterConfig {
                listen: args.ha_listen,
                ha,
                mode: args.ha_mode.0,
                epoch: epoch.take(),
                ..MasterConfig::default()
            },
            send: SendConfig {
                in_sync_replicas: args.in_sync_replicas as usize,
                slave_timeout: Duration::from_millis(args.slave_timeout_ms),
                rules: SendRules {
                    max_message_size: args.max_message_size as usize,
                    ..SendRules::default()
                },
                ..SendConfig::default()
            },
            store,
            metrics: args.metrics,
            grace: GRACE,
        })
    };
    let (store_args, broker_id) = (&args.store, args.broker_id);
    let slave = args.demote_to.map(|to| {
        move || -> Result<ReplicaConfig, String> {
            let (store, ha) = store_args.config("store")?;
            Ok(auto_switch_replica(to, None, broker_id, store, ha))
        }
    });
    run_roles(true, Some(master), slave).await
}

/// An auto-switch slave of `master` with this broker id, on `store`.
fn auto_switch_replica(
    master: SocketAddr,
    master_broker: Option<SocketAddr>,
    broker_id: i64,
    store: StoreConfig,
    ha: HaConfig,
) -> ReplicaConfig {
    let defaults = SlaveConfig::new(master);
    ReplicaConfig {
        slave: SlaveConfig {
            ha,
            mode: HaMode::AutoSwitch,
            hello: SlaveHello {
                broker_id,
                ..SlaveHello::default()
            },
            master_broker: master_broker.or(defaults.master_broker),
            ..defaults
        },
        store,
        grace: GRACE,
    }
}

/// What ended one role of [`run_roles`].
enum Ended {
    /// SIGINT or SIGTERM: the process exits with this code.
    Stopped(ExitCode),
    /// SIGUSR1 (promote) or SIGUSR2 (demote): the other role starts on the same store.
    Switch,
}

/// Runs a replica in one role after the other: as master (`serve`) until SIGUSR2 demotes it, if
/// there is a slave role, and as slave (`replicate`) until SIGUSR1 promotes it, if there is a
/// master role; SIGINT or SIGTERM ends it. Each role shuts down cleanly (its store synced and
/// closed) before the next opens the store.
async fn run_roles(
    mut as_master: bool,
    mut master: Option<impl FnMut() -> Result<ServeConfig, String>>,
    mut slave: Option<impl FnMut() -> Result<ReplicaConfig, String>>,
) -> Result<ExitCode, String> {
    loop {
        let ended = match (as_master, &mut master, &mut slave) {
            (true, Some(config), slave) => run_serve(config()?, slave.is_some()).await?,
            (false, master, Some(config)) => run_replica(config()?, master.is_some()).await?,
            _ => unreachable!("a role switch to a role the replica does not have"),
        };
        match ended {
            Ended::Stopped(code) => return Ok(code),
            Ended::Switch => as_master = !as_master,
        }
    }
}

/// Runs one role, `role(stop)`, until SIGINT or SIGTERM or, if given, the `switch` signal (with
/// the line it logs); returns the role's output and whether the switch signal ended it, or the
/// exit code of a second SIGINT or SIGTERM.
async fn run_role<F: std::future::Future>(
    switch: Option<(tokio::signal::unix::SignalKind, &'static str)>,
    role: impl FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> F,
) -> Result<Result<(F::Output, bool), ExitCode>, String> {
    let mut signal = switch
        .map(|(kind, _)| tokio::signal::unix::signal(kind))
        .transpose()
        .map_err(|e| format!("cannot listen for the role switch signal: {e}"))?;
    let says = switch.map_or("", |(_, says)| says);
    let switched = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = switched.clone();
    let ended = until_signalled(|stop| {
        role(Box::pin(async move {
            tokio::select! {
                () = stop => {}
                Some(()) = async { signal.as_mut()?.recv().await } => {
                    tracing::info!("{says}");
                    flag.store(true, std::sync::atomic::Ordering::Release);
                }
            }
        }))
    })
    .await;
    Ok(match ended {
        Signalled::Ended(out) => Ok((out, switched.load(std::sync::atomic::Ordering::Acquire))),
        Signalled::Again(code) => Err(code),
    })
}

/// Serves `config` until SIGINT or SIGTERM, or SIGUSR2 if `demote`.
async fn run_serve(config: ServeConfig, demote: bool) -> Result<Ended, String> {
    let switch = demote.then_some((
        tokio::signal::unix::SignalKind::user_defined2(),
        "SIGUSR2: demoting this master to a slave",
    ));
    let (report, switched) =
        match run_role(switch, |stop| server::serve(config, stop, |_| {})).await? {
            Ok(ended) => ended,
            Err(code) => return Ok(Ended::Stopped(code)),
        };
    let report = report.map_err(|e| e.to_string())?;
    if !report.is_clean() {
        return Err(format!(
            "unclean shutdown: {} tasks, {} client channels and {} HA connections left{}",
            report.tasks_left,
            report.channels_left,
            report.ha_connections_left,
            report
                .flush_error
                .map(|e| format!(", final flush failed: {e}"))
                .unwrap_or_default()
        ));
    }
    Ok(if switched {
        Ended::Switch
    } else {
        Ended::Stopped(ExitCode::SUCCESS)
    })
}

/// Replicates per `config` until SIGINT or SIGTERM, or SIGUSR1 if `promote`.
async fn run_replica(config: ReplicaConfig, promote: bool) -> Result<Ended, String> {
    let switch = promote.then_some((
        tokio::signal::unix::SignalKind::user_defined1(),
        "SIGUSR1: promoting this slave to master",
    ));
    let (report, switched) =
        match run_role(switch, |stop| server::replicate(config, stop, |_| {})).await? {
            Ok(ended) => ended,
            Err(code) => return Ok(Ended::Stopped(code)),
        };
    let report = report.map_err(|e| e.to_string())?;
    if let Some(error) = report.flush_error {
        return Err(format!("final flush: {error}"));
    }
    if report.tasks_left > 0 {
        return Err(format!(
            "unclean shutdown: {} tasks left",
            report.tasks_left
        ));
    }
    Ok(if switched {
        Ended::Switch
    } else {
        Ended::Stopped(ExitCode::SUCCESS)
    })
}

#[derive(Debug, Args)]
pub(crate) struct SlaveArgs {
    /// The master's HA address (HOST:PORT).
    #[arg(long, value_parser = host_port)]
    master: SocketAddr,
    /// The master's client address (HOST:PORT), asked GET_BROKER_CONFIG (26) before each HA
    /// connect: a master with another segment size is refused before anything is appended.
    /// Default: --master with the port below (upstream's layout, haListenPort = listenPort + 1).
    /// A broker that does not answer 26 is warned about once, and replicated from.
    #[arg(long, value_name = "ADDR", value_parser = host_port)]
    master_broker: Option<SocketAddr>,
    /// The HA protocol; the master's.
    #[arg(long, default_value = "classic", value_parser = clap::value_parser!(HaModeArg))]
    ha_mode: HaModeArg,
    /// Auto-switch: this slave's broker id (the master's in-sync set is keyed by it), 0 or more.
    #[arg(long, default_value_t = 1, value_parser = broker_id(), allow_negative_numbers = true)]
    broker_id: i64,
    /// Auto-switch: on SIGUSR1 stop replicating and serve this store as master, on these
    /// addresses, beginning `--epoch` (default: one above the store's last).
    #[arg(long, default_value = "127.0.0.1:10911", value_parser = host_port)]
    listen: SocketAddr,
    /// See `--listen`: the HA port once promoted.
    #[arg(long, default_value = "127.0.0.1:10912", value_parser = host_port)]
    ha_listen: SocketAddr,
    /// See `--listen`: the epoch a promotion begins, above every replica's.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i32::MAX as i64))]
    epoch: Option<u32>,
    #[command(flatten)]
    store: StoreArgs,
}

/// `rmq-lifecycle slave`: replicate until SIGINT/SIGTERM, reconnecting with backoff; in
/// auto-switch mode SIGUSR1 promotes it and SIGUSR2 then demotes it back to a slave of `--master`.
pub(crate) fn run_slave(args: SlaveArgs) -> ExitCode {
    block_on(async move {
        let auto = args.ha_mode.0 == HaMode::AutoSwitch;
        let slave = || -> Result<ReplicaConfig, String> {
            let (store, ha) = args.store.config("slave-store")?;
            Ok(match args.ha_mode.0 {
                HaMode::AutoSwitch => {
                    auto_switch_replica(args.master, args.master_broker, args.broker_id, store, ha)
                }
                HaMode::Classic => {
                    let defaults = SlaveConfig::new(args.master);
                    ReplicaConfig {
                        slave: SlaveConfig {
                            ha,
                            mode: HaMode::Classic,
                            master_broker: args.master_broker.or(defaults.master_broker),
                            ..defaults
                        },
                        store,
                        grace: GRACE,
                    }
                }
            })
        };
        // The first promotion begins `--epoch`; a later one, one above the store's last.
        let mut epoch = args.epoch;
        let master = auto.then_some(|| -> Result<ServeConfig, String> {
            let (store, ha) = args.store.config("slave-store")?;
            Ok(ServeConfig {
                remoting: RemotingConfig {
                    listen: args.listen,
                    ..RemotingConfig::default()
                },
                registry: RegistryConfig::default(),
                notify: Some(NotifyConfig::default()),
                master: MasterConfig {
                    listen: args.ha_listen,
                    ha,
                    mode: HaMode::AutoSwitch,
                    epoch: epoch.take(),
                    ..MasterConfig::default()
                },
                send: SendConfig::default(),
                store,
                metrics: None,
                grace: GRACE,
            })
        });
        run_roles(false, master, Some(slave)).await
    })
}

/// How a process run by [`until_signalled`] ended.
enum Signalled<T> {
    /// It completed (after the first signal, or on its own).
    Ended(T),
    /// A second SIGINT or SIGTERM came during the shutdown the first one started.
    Again(ExitCode),
}

/// Runs `process` with the first SIGINT or SIGTERM as its shutdown future; a second signal
/// during that shutdown exits at once, without waiting for the grace period or the final flush.
/// The handlers are installed before `process` starts, so a signal sent as soon as it says it
/// is serving is never taken by the default action.
async fn until_signalled<F: std::future::Future>(
    process: impl FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> F,
) -> Signalled<F::Output> {
    let first = std::sync::Arc::new(tokio::sync::Notify::new());
    let notify = first.clone();
    let mut signals = Signals::install();
    let running = process(Box::pin(async move {
        signals.recv().await;
        notify.notify_one();
    }));
    tokio::select! {
        ended = running => Signalled::Ended(ended),
        () = async {
            first.notified().await;
            // Installed only now: a handler from the start would see the first signal too.
            Signals::install().recv().await;
        } => {
            tracing::warn!("second signal: exiting without waiting for a clean shutdown");
            Signalled::Again(ExitCode::from(130))
        }
    }
}

/// SIGTERM and SIGINT handlers (Ctrl-C alone where they cannot be installed).
struct Signals(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Signals(Some((term, int))),
            _ => Signals(None),
        }
    }

    async fn recv(&mut self) {
        let signal = match &mut self.0 {
            Some((term, int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            None => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        };
        tracing::info!(signal, "signal received");
    }
}
