//! The RocketMQ 5.1.4 incident as a test (its own binary, one test: it reads the process's open
//! fds, which other tests running in parallel would disturb): 20,000 probes against a master that
//! is replicating to a live slave. Probes connect and close at once, send the incident's
//! timestamp text, send half a report and stall, or report an offset beyond the log. Afterwards
//! the table holds only the slave, the alive tasks and the open fds are back to their baseline,
//! the slave's acked offset never exceeded the master's max offset, and the slave's log is
//! byte-identical to the master's.
#![cfg(feature = "net")]

use rmq_lifecycle::core::ha::{HaConfig, encode_report};
use rmq_lifecycle::lifecycle::TaskGauge;
use rmq_lifecycle::net::Clock;
use rmq_lifecycle::net::ha::{HaMaster, HaSlave, MasterConfig, SlaveConfig};
use rmq_lifecycle::store::{CommitLog, FlushPolicy, StoreConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PROBES: usize = 20_000;
const SEGMENT: u64 = 1 << 20;

/// Open fds other than the logs' segment files (a log opens one per segment as it grows).
fn open_fds(logs: &[&std::path::Path]) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_link(e.path())
                .map_or(true, |target| !logs.iter().any(|l| target.starts_with(l)))
        })
        .count()
}

fn open(dir: &std::path::Path) -> Arc<CommitLog> {
    let config = StoreConfig {
        dir: dir.to_owned(),
        segment_size: SEGMENT,
        flush: FlushPolicy::Manual,
    };
    Arc::new(CommitLog::open(config).unwrap())
}

async fn probe(addr: std::net::SocketAddr, kind: usize, beyond: u64) {
    let Ok(mut c) = TcpStream::connect(addr).await else {
        return;
    };
    let mut sink = [0u8; 64];
    match kind {
        0 => {}
        1 => {
            let _ = c.write_all(b"2024-10-30 16:42:30").await;
            while matches!(c.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        2 => {
            let _ = c.write_all(&[0, 0, 0, 0]).await;
            // Stall until the master's housekeeping closes it.
            while matches!(c.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        _ => {
            let _ = c.write_all(&encode_report(beyond)).await;
            while matches!(c.read(&mut sink).await, Ok(n) if n > 0) {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_storm_leaves_only_the_slave() {
    let (mdir, sdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ha = HaConfig {
        heartbeat_ms: 200,
        housekeeping_ms: 500,
        segment_size: SEGMENT,
        ..HaConfig::default()
    };
    let master_tasks = TaskGauge::new();
    let config = MasterConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        ha,
        max_connections: 4096,
        ..MasterConfig::default()
    };
    let master = Arc::new(
        HaMaster::bind(
            config,
            open(mdir.path()),
            Clock::start(),
            master_tasks.clone(),
        )
        .await
        .unwrap(),
    );
    master.append(b"before the slave").unwrap();
    let slave_log = open(sdir.path());
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
    while master.registry().acked_at_least(master.log().max_offset()) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let logs = [mdir.path(), sdir.path()];
    let (tasks_baseline, fds_baseline) = (master_tasks.alive(), open_fds(&logs));

    // Keep replicating during the storm, and watch AckBounded from outside.
    let stop = Arc::new(AtomicBool::new(false));
    let violations = Arc::new(AtomicU64::new(0));
    let (m, s, v) = (master.clone(), stop.clone(), violations.clone());
    let background = tokio::spawn(async move {
        let mut i = 0u64;
        while !s.load(Ordering::Relaxed) {
            m.append(format!("record {i}").as_bytes()).unwrap();
            i += 1;
            let max = m.log().max_offset();
            for entry in m.registry().entries() {
                if entry.ack.is_some_and(|a| a > max) {
                    v.fetch_add(1, Ordering::Relaxed);
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });

    let addr = master.local_addr();
    let beyond = u64::MAX >> 1;
    // Stalling probes hold a socket for the housekeeping interval, so they run 256 at a time
    // beside 64 workers firing the quick kinds.
    let mut set = tokio::task::JoinSet::new();
    let (stalls, quick) = (PROBES / 4, PROBES - PROBES / 4);
    for worker in 0..256 {
        set.spawn(async move {
            for _ in (worker..stalls).step_by(256) {
                probe(addr, 2, beyond).await;
            }
        });
    }
    for worker in 0..64 {
        set.spawn(async move {
            for i in (worker..quick).step_by(64) {
                probe(addr, [0, 1, 3][i % 3], beyond).await;
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    background.await.unwrap();

    // Quiescence: only the slave, tasks and fds at their baseline.
    let mut settled = false;
    for _ in 0..1000 {
        if master.registry().count() == 1
            && master_tasks.alive() == tasks_baseline
            && open_fds(&logs) == fds_baseline
        {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        settled,
        "after {PROBES} probes: {} HA connections (want 1), {} tasks (baseline {tasks_baseline}), {} fds (baseline {fds_baseline})",
        master.registry().count(),
        master_tasks.alive(),
        open_fds(&logs)
    );
    assert_eq!(
        violations.load(Ordering::Relaxed),
        0,
        "an ack exceeded the master's max offset"
    );
    assert!(master.registry().accepted_total() > PROBES as u64);
    let entry = &master.registry().entries()[0];
    assert!(
        entry.ack.is_some(),
        "the remaining connection is the reporting slave"
    );

    // Replication kept going: the slave catches up byte-identical.
    let end = master.log().max_offset();
    for _ in 0..1000 {
        if slave_log.max_offset() == end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(slave_log.max_offset(), end);
    assert_eq!(
        slave_log.digest(0, end).unwrap(),
        master.log().digest(0, end).unwrap()
    );

    assert_eq!(slave.shutdown(Duration::from_secs(5)).await, 0);
    let master = Arc::into_inner(master).expect("the background task is done");
    assert_eq!(master.shutdown(Duration::from_secs(5)).await, 0);
}
