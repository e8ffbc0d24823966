//! `/metrics` is read from the tables when scraped: a scrape right after a heartbeat shows it;
//! accepted - closed is the live connections at every quiescent scrape, after expiry closes and
//! after shutdown too; a slave's per-peer series goes with its connection. Every wait here has
//! its own deadline, so a regression fails in seconds.
#![cfg(feature = "metrics")]

use rmq_lifecycle::core::ha::{HaConfig, encode_report};
use rmq_lifecycle::core::remoting::{RemotingCommand, code};
use rmq_lifecycle::core::{ClientRules, HeartbeatData};
use rmq_lifecycle::lifecycle::TaskGauge;
use rmq_lifecycle::net::Clock;
use rmq_lifecycle::net::ha::{HaMaster, MasterConfig};
use rmq_lifecycle::net::metrics::{Sources, render};
use rmq_lifecycle::net::notify::{ConsumerNotifier, NotifyConfig};
use rmq_lifecycle::net::remoting::{RemotingConfig, RemotingServer};
use rmq_lifecycle::registry::{ClientRegistry, RegistryConfig};
use rmq_lifecycle::store::{CommitLog, FlushPolicy, StoreConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The value of an unlabelled sample (`name value`), if present.
fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn labelled(text: &str, name: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .count()
}

/// Polls `render` until `ok` holds, for at most 5 s.
async fn until(sources: &Sources, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = render(sources);
        if ok(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} not seen within 5 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn open_connections(text: &str) -> f64 {
    value(text, "rmq_client_connections_accepted_total").unwrap()
        - value(text, "rmq_client_connections_closed_total").unwrap()
}

async fn heartbeat(stream: &mut TcpStream, group: &str) {
    let data = HeartbeatData::producers("metrics-client", [group]);
    let cmd = RemotingCommand {
        body: Some(data.to_json().into()),
        opaque: 1,
        ..RemotingCommand::request(code::HEART_BEAT)
    };
    stream.write_all(&cmd.to_bytes().unwrap()).await.unwrap();
    let mut len = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut len))
        .await
        .expect("a response within 5 s")
        .unwrap();
    let mut rest = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut rest).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_figures_are_true_at_every_scrape() {
    let registry = Arc::new(ClientRegistry::new(RegistryConfig {
        rules: ClientRules {
            expiry_ms: 200,
            ..ClientRules::default()
        },
        ..RegistryConfig::default()
    }));
    let tasks = TaskGauge::new();
    let config = RemotingConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        scan_interval: Duration::from_millis(50),
        ..RemotingConfig::default()
    };
    let server = RemotingServer::bind(config, registry.clone(), Clock::start(), tasks.clone())
        .await
        .unwrap();
    let sources = Sources {
        registry,
        tasks: vec![tasks],
        remoting: Some(server.stats().clone()),
        ha: None,
    };

    let mut a = TcpStream::connect(server.local_addr()).await.unwrap();
    heartbeat(&mut a, "metrics-group").await;
    // Right after the answer: no sampling period in between.
    let text = render(&sources);
    assert_eq!(value(&text, "rmq_producer_groups"), Some(1.0), "{text}");
    assert_eq!(value(&text, "rmq_heartbeats_total"), Some(1.0), "{text}");
    assert_eq!(open_connections(&text), 1.0, "{text}");

    // The membership expires; the scan closes the orphaned channel, and that close is counted.
    let text = until(&sources, "the expiry close", |t| {
        value(t, "rmq_client_channels") == Some(0.0)
    })
    .await;
    assert_eq!(value(&text, "rmq_producer_groups"), Some(0.0), "{text}");
    assert_eq!(open_connections(&text), 0.0, "{text}");

    // Shutdown closes the rest, each once.
    let mut others = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
        heartbeat(&mut s, "metrics-group").await;
        others.push(s);
    }
    assert_eq!(open_connections(&render(&sources)), 3.0);
    let stats = server.stats().clone();
    let report = server.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.tasks_left, 0);
    let text = render(&sources);
    assert_eq!(open_connections(&text), 0.0, "{text}");
    assert_eq!(stats.accepted_total(), 4);
    assert_eq!(value(&text, "rmq_client_channels"), Some(0.0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slaves_series_goes_with_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        CommitLog::open(StoreConfig {
            dir: dir.path().to_owned(),
            segment_size: 64 * 1024,
            flush: FlushPolicy::Manual,
        })
        .unwrap(),
    );
    let tasks = TaskGauge::new();
    let config = MasterConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        ha: HaConfig {
            segment_size: 64 * 1024,
            ..HaConfig::default()
        },
        max_connections: 8,
        ..MasterConfig::default()
    };
    let master = HaMaster::bind(config, log.clone(), Clock::start(), tasks.clone())
        .await
        .unwrap();
    let sources = Sources {
        registry: Arc::new(ClientRegistry::default()),
        tasks: vec![tasks],
        remoting: None,
        ha: Some((master.registry().clone(), log)),
    };
    let mut slave = TcpStream::connect(master.local_addr()).await.unwrap();
    slave.write_all(&encode_report(0)).await.unwrap();
    until(&sources, "the slave's series", |t| {
        labelled(t, "rmq_ha_slave_acked_offset") == 1
    })
    .await;
    drop(slave);
    let text = until(&sources, "the series gone", |t| {
        labelled(t, "rmq_ha_slave_acked_offset") == 0
    })
    .await;
    assert_eq!(value(&text, "rmq_ha_connections"), Some(0.0), "{text}");
    assert_eq!(
        value(&text, "rmq_ha_connections_accepted_total"),
        value(&text, "rmq_ha_connections_closed_total"),
        "{text}"
    );
    assert_eq!(master.shutdown(Duration::from_secs(5)).await, 0);
}

/// Every family a scrape can show has its `# HELP` (with text) and `# TYPE`, and every sample
/// belongs to one: scraped with every source present, the client listener with a notifier and
/// an HA master holding a slave that acknowledged (the per-slave family).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_has_help_and_type() {
    let notifier = ConsumerNotifier::new(NotifyConfig::default());
    let registry = Arc::new(ClientRegistry::with_listener(
        RegistryConfig::default(),
        notifier.clone(),
    ));
    let (client_tasks, ha_tasks) = (TaskGauge::new(), TaskGauge::new());
    let remoting = RemotingConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        ..RemotingConfig::default()
    };
    let server = RemotingServer::bind_notifying(
        remoting,
        registry.clone(),
        Some(notifier),
        Clock::start(),
        client_tasks.clone(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        CommitLog::open(StoreConfig {
            segment_size: 64 * 1024,
            flush: FlushPolicy::Manual,
            ..StoreConfig::new(dir.path())
        })
        .unwrap(),
    );
    let master_config = MasterConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        ha: HaConfig {
            segment_size: 64 * 1024,
            ..HaConfig::default()
        },
        ..MasterConfig::default()
    };
    let master = HaMaster::bind(master_config, log.clone(), Clock::start(), ha_tasks.clone())
        .await
        .unwrap();
    let sources = Sources {
        registry,
        tasks: vec![client_tasks, ha_tasks],
        remoting: Some(server.stats().clone()),
        ha: Some((master.registry().clone(), log)),
    };
    let mut client = TcpStream::connect(server.local_addr()).await.unwrap();
    heartbeat(&mut client, "metrics-group").await;
    let mut slave = TcpStream::connect(master.local_addr()).await.unwrap();
    slave.write_all(&encode_report(0)).await.unwrap();
    let text = until(&sources, "the slave's series", |t| {
        labelled(t, "rmq_ha_slave_acked_offset") == 1
    })
    .await;

    let (mut help, mut kinds) = (
        std::collections::BTreeSet::new(),
        std::collections::BTreeMap::new(),
    );
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, doc) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(!doc.trim().is_empty(), "{name} has an empty HELP:\n{text}");
            assert!(help.insert(name.to_owned()), "{name}: two HELP lines");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
            assert!(kinds.insert(name.to_owned(), kind.to_owned()).is_none());
        } else if line != "# EOF" && !line.starts_with("# UNIT ") {
            assert!(!line.starts_with('#'), "unexpected comment: {line}");
            samples.push(line.split(['{', ' ']).next().unwrap().to_owned());
        }
    }
    let families: Vec<_> = kinds.keys().cloned().collect();
    assert_eq!(help.into_iter().collect::<Vec<_>>(), families, "{text}");
    for sample in &samples {
        let family = match sample.strip_suffix("_total") {
            Some(counter) if kinds.get(counter).is_some_and(|k| k == "counter") => counter,
            _ => sample,
        };
        assert!(
            kinds.contains_key(family),
            "{sample} has no family:\n{text}"
        );
    }
    for family in &families {
        assert!(
            samples.iter().any(|s| s.starts_with(family.as_str())),
            "{family} has no sample:\n{text}"
        );
    }
    // Every source was present, so every family the encoder knows was scraped.
    for name in [
        "rmq_client_channels",
        "rmq_heartbeats",
        "rmq_client_connections_accepted",
        "rmq_heartbeats_busy",
        "rmq_consumer_notifications",
        "rmq_consumer_notifications_dropped",
        "rmq_ha_connections",
        "rmq_commitlog_max_offset",
        "rmq_ha_slave_acked_offset",
    ] {
        assert!(kinds.contains_key(name), "{name} not scraped:\n{text}");
    }

    drop((client, slave));
    assert_eq!(server.shutdown(Duration::from_secs(5)).await.tasks_left, 0);
    assert_eq!(master.shutdown(Duration::from_secs(5)).await, 0);
}
