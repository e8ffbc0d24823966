//! A master and a slave in one process replicating a file over loopback: the file is appended
//! to the master's commit log in records, the slave catches up, and both logs hold the same bytes.
//!
//! `cargo run --example ha_pair -- [FILE]` (default: this example's own source)

use rmq_lifecycle::core::ha::HaConfig;
use rmq_lifecycle::lifecycle::TaskGauge;
use rmq_lifecycle::net::Clock;
use rmq_lifecycle::net::ha::{HaMaster, HaSlave, MasterConfig, SlaveConfig};
use rmq_lifecycle::store::{CommitLog, FlushPolicy, StoreConfig};
use std::sync::Arc;
use std::time::Duration;

const SEGMENT: u64 = 1 << 20;

fn open(dir: &std::path::Path) -> Arc<CommitLog> {
    let config = StoreConfig {
        dir: dir.to_owned(),
        segment_size: SEGMENT,
        flush: FlushPolicy::Manual,
    };
    Arc::new(CommitLog::open(config).expect("a writable temp dir"))
}

#[tokio::main]
async fn main() {
    let file = std::env::args()
        .nth(1)
        .unwrap_or_else(|| file!().to_owned());
    let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("cannot read {file}: {e}"));
    let (master_dir, slave_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ha = HaConfig {
        segment_size: SEGMENT,
        ..HaConfig::default()
    };

    let master_config = MasterConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        ha,
        ..MasterConfig::default()
    };
    let master = HaMaster::bind(
        master_config,
        open(master_dir.path()),
        Clock::start(),
        TaskGauge::new(),
    )
    .await
    .unwrap();
    for chunk in bytes.chunks(4096) {
        master.append(chunk).unwrap();
    }
    let slave_log = open(slave_dir.path());
    let slave_config = SlaveConfig {
        ha,
        ..SlaveConfig::new(master.local_addr())
    };
    let slave = HaSlave::start(
        slave_config,
        slave_log.clone(),
        Clock::start(),
        TaskGauge::new(),
    );

    let end = master.log().max_offset();
    master
        .wait_for_replication(end, 1, Duration::from_secs(10))
        .await
        .expect("the slave acks the whole log");
    assert_eq!(slave_log.max_offset(), end);
    assert_eq!(
        slave_log.digest(0, end).unwrap(),
        master.log().digest(0, end).unwrap()
    );
    println!(
        "replicated {} bytes of {file} as {end} log bytes; logs identical",
        bytes.len()
    );

    assert_eq!(slave.shutdown(Duration::from_secs(5)).await, 0);
    assert_eq!(master.shutdown(Duration::from_secs(5)).await, 0);
}

#[cfg(test)]
mod tests {
    #[test]
    fn example_runs() {
        super::main();
    }
}
