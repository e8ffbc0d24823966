//! `net::server`, the `serve` and `slave` processes as library functions: what an embedder gets.
#![cfg(feature = "net")]

use rmq_lifecycle::core::ha::HaConfig;
use rmq_lifecycle::net::ha::{MasterConfig, SlaveConfig};
use rmq_lifecycle::net::remoting::RemotingConfig;
use rmq_lifecycle::net::server::{self, ReplicaConfig, ServeConfig, StartError};
use rmq_lifecycle::registry::RegistryConfig;
use rmq_lifecycle::store::StoreConfig;
use std::time::Duration;

const SEGMENT: u64 = 64 * 1024;

fn serve_config(dir: &std::path::Path, ha_segment: u64) -> ServeConfig {
    ServeConfig {
        remoting: RemotingConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            ..RemotingConfig::default()
        },
        registry: RegistryConfig::default(),
        notify: Some(Default::default()),
        master: MasterConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            ha: HaConfig {
                segment_size: ha_segment,
                ..HaConfig::default()
            },
            ..MasterConfig::default()
        },
        store: StoreConfig {
            segment_size: SEGMENT,
            ..StoreConfig::new(dir)
        },
        metrics: None,
        grace: Duration::from_secs(5),
    }
}

/// A master and a slave in one process through the two functions; the slave catches up, and
/// both shut down clean when their futures complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_replicate_run_until_their_futures_complete() {
    let (mdir, sdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let broker = server::Broker::start(serve_config(mdir.path(), SEGMENT))
        .await
        .unwrap();
    for i in 0..10u8 {
        broker.master().append(&[i; 100]).unwrap();
    }
    let master_end = broker.log().max_offset();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let replica = server::replicate(
        ReplicaConfig {
            slave: SlaveConfig {
                ha: HaConfig {
                    segment_size: SEGMENT,
                    ..HaConfig::default()
                },
                ..SlaveConfig::new(broker.ha_local_addr())
            },
            store: StoreConfig {
                segment_size: SEGMENT,
                ..StoreConfig::new(sdir.path())
            },
            grace: Duration::from_secs(5),
        },
        async {
            let _ = stopped.await;
        },
        |_| {},
    );
    let replica = tokio::spawn(replica);
    tokio::time::timeout(
        Duration::from_secs(10),
        broker
            .master()
            .wait_for_replication(master_end, 1, Duration::from_secs(10)),
    )
    .await
    .expect("replication within 10 s")
    .expect("one slave acknowledged the log's end");
    stop.send(()).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), replica)
        .await
        .expect("the slave stops within 10 s")
        .unwrap()
        .unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.max_offset, master_end);
    let report = tokio::time::timeout(Duration::from_secs(10), broker.shutdown())
        .await
        .expect("the broker stops within 10 s");
    assert!(report.is_clean(), "{report:?}");
}

/// The segment size lives in two settings; a mismatch is refused before the store is touched.
#[tokio::test]
async fn a_segment_size_mismatch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let error = server::Broker::start(serve_config(dir.path(), SEGMENT * 2))
        .await
        .unwrap_err();
    assert!(matches!(error, StartError::Config(_)), "{error}");
    assert!(error.to_string().contains("segment size"), "{error}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
