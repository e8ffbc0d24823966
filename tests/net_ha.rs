//! HA master and slave over loopback: replication to a byte-identical log, probes that leave
//! nothing and never ack, sync-replication waits, and the fault cases (slave killed mid-transfer
//! and restarted, master restarted, connection dropped mid-frame). Upstream's HAServerTest
//! scenarios are here too.
#![cfg(feature = "net")]

use rmq_lifecycle::core::ha::{HaConfig, encode_report};
use rmq_lifecycle::lifecycle::TaskGauge;
use rmq_lifecycle::net::Clock;
use rmq_lifecycle::net::ha::{HaMaster, HaSlave, MasterConfig, SlaveConfig};
use rmq_lifecycle::store::{CommitLog, FlushPolicy, StoreConfig};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SEGMENT: u64 = 64 * 1024;

fn ha() -> HaConfig {
    HaConfig {
        heartbeat_ms: 100,
        housekeeping_ms: 1_000,
        batch_max: 32 * 1024,
        segment_size: SEGMENT,
        body_max: 4 << 20,
    }
}

fn open(dir: &std::path::Path) -> Arc<CommitLog> {
    Arc::new(
        CommitLog::open(StoreConfig {
            dir: dir.to_owned(),
            segment_size: SEGMENT,
            flush: FlushPolicy::Manual,
        })
        .unwrap(),
    )
}

async fn master(dir: &std::path::Path, port: u16) -> (HaMaster, TaskGauge) {
    let tasks = TaskGauge::new();
    let config = MasterConfig {
        listen: ([127, 0, 0, 1], port).into(),
        ha: ha(),
        max_connections: 64,
        ..MasterConfig::default()
    };
    (
        HaMaster::bind(config, open(dir), Clock::start(), tasks.clone())
            .await
            .unwrap(),
        tasks,
    )
}

fn slave(master: &HaMaster, dir: &std::path::Path) -> (HaSlave, Arc<CommitLog>) {
    let log = open(dir);
    let mut config = SlaveConfig::new(master.local_addr());
    config.ha = ha();
    config.backoff_max = Duration::from_millis(200);
    (
        HaSlave::start(config, log.clone(), Clock::start(), TaskGauge::new()),
        log,
    )
}

fn fill(master: &HaMaster, records: usize, seed: u64) {
    let mut x = seed | 1;
    for i in 0..records {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 3000) as usize + 1;
        let payload: Vec<u8> = (0..len).map(|j| (i + j) as u8 ^ x as u8).collect();
        master.append(&payload).unwrap();
    }
}

async fn caught_up(master: &CommitLog, slave: &CommitLog) {
    for _ in 0..1000 {
        if slave.max_offset() == master.max_offset() {
            let end = master.max_offset();
            assert_eq!(
                slave.digest(master.min_offset(), end).unwrap(),
                master.digest(master.min_offset(), end).unwrap(),
                "SlaveIsPrefix: the logs differ"
            );
            return;
        }
        assert!(
            slave.max_offset() <= master.max_offset(),
            "the slave is ahead of the master"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "slave stuck at {} of {}",
        slave.max_offset(),
        master.max_offset()
    );
}

/// Why the slave stopped replicating, once it says (callers bound the wait with a timeout).
async fn refusal(slave: &HaSlave) -> String {
    loop {
        if let Some(why) = slave.status().refusal() {
            return why;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn count_is(master: &HaMaster, n: usize) {
    for _ in 0..500 {
        if master.registry().count() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{} HA connections, expected {n}: {:?}",
        master.registry().count(),
        master.registry().entries()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicates_byte_identical_and_sync_waits_complete() {
    let (mdir, sdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (m, m_tasks) = master(mdir.path(), 0).await;
    fill(&m, 500, 7);
    let (s, slog) = slave(&m, sdir.path());
    caught_up(m.log(), &slog).await;
    // Upstream putRequest_SingleAck: one slave at the offset -> OK.
    let end = m.log().max_offset();
    m.wait_for_replication(end, 1, Duration::from_secs(5))
        .await
        .unwrap();
    for _ in 0..50 {
        let appended = m.append(b"sync").unwrap();
        m.wait_for_replication(appended.end, 1, Duration::from_secs(5))
            .await
            .unwrap();
    }
    // putRequest_MultipleAck: two slaves needed, one present -> timeout.
    let err = m
        .wait_for_replication(m.log().max_offset(), 2, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!((err.needed, err.acked), (2, 1));
    caught_up(m.log(), &slog).await;
    assert_eq!(s.shutdown(Duration::from_secs(5)).await, 0);
    count_is(&m, 0).await;
    assert_eq!(m.shutdown(Duration::from_secs(5)).await, 0);
    assert_eq!(m_tasks.alive(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_leave_nothing_and_never_ack() {
    let (mdir, sdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (m, _tasks) = master(mdir.path(), 0).await;
    fill(&m, 100, 3);
    let (s, slog) = slave(&m, sdir.path());
    caught_up(m.log(), &slog).await;
    count_is(&m, 1).await;
    let addr = m.local_addr();
    for round in 0..20 {
        // connect and close
        drop(TcpStream::connect(addr).await.unwrap());
        // a timestamp, as the 5.1.4 incident's health check sent
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"2024-10-30 16:42:30").await.unwrap();
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink).await;
        // No log data; at most the farewell, a bodyless transfer at the master's end (that a
        // slave ahead of the master reads to name both ends).
        if !sink.is_empty() {
            assert_eq!(sink.len(), 12, "a probe gets no data: {sink:?}");
            let offset = u64::from_be_bytes(sink[..8].try_into().unwrap());
            assert!(
                offset <= m.log().max_offset() && sink[8..] == [0; 4],
                "{sink:?}"
            );
            sink.clear();
        }
        // an offset beyond the master's log
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(&encode_report(m.log().max_offset() + 1))
            .await
            .unwrap();
        let _ = c.read_to_end(&mut sink).await;
        fill(&m, 5, round);
    }
    // half a report, then a stall: closed by housekeeping (1 s here).
    let mut stall = TcpStream::connect(addr).await.unwrap();
    stall.write_all(&[0, 0, 0]).await.unwrap();
    count_is(&m, 1).await;
    let entries = m.registry().entries();
    assert!(
        entries[0].ack.unwrap() <= m.log().max_offset(),
        "AckBounded"
    );
    caught_up(m.log(), &slog).await;
    assert_eq!(m.registry().acked_at_least(0), 1, "only the slave counts");
    drop(s);
    drop(stall);
    assert_eq!(m.shutdown(Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_slave_means_a_timeout_and_a_probe_does_not_count() {
    let mdir = tempfile::tempdir().unwrap();
    let (m, _tasks) = master(mdir.path(), 0).await;
    let end = m.append(b"x").unwrap().end;
    let _probe = TcpStream::connect(m.local_addr()).await.unwrap();
    count_is(&m, 1).await;
    let err = m
        .wait_for_replication(end, 1, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(err.acked, 0);
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(m.shutdown(Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slave_killed_mid_transfer_resumes_byte_identical() {
    let (mdir, sdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (m, _tasks) = master(mdir.path(), 0).await;
    fill(&m, 3000, 11);
    for _ in 0..3 {
        let (s, slog) = slave(&m, sdir.path());
        // Kill it as soon as it has some, but not all, of the log.
        while slog.max_offset() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Stop it mid-transfer and wait for its task, so the next one owns the directory alone.
        assert_eq!(s.shutdown(Duration::from_secs(5)).await, 0);
        drop(slog);
        fill(&m, 200, 5);
    }
    let (_s, slog) = slave(&m, sdir.path());
    caught_up(m.log(), &slog).await;
    assert_eq!(m.shutdown(Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_restart_and_mid_frame_drop() {
    let (mdir, sdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (m, _tasks) = master(mdir.path(), 0).await;
    let port = m.local_addr().port();
    fill(&m, 300, 13);
    let (s, slog) = slave(&m, sdir.path());
    caught_up(m.log(), &slog).await;
    // Restart the master on the same port with the same log.
    assert_eq!(m.shutdown(Duration::from_secs(5)).await, 0);
    let (m, _tasks) = master(mdir.path(), port).await;
    fill(&m, 300, 17);
    caught_up(m.log(), &slog).await;
    assert!(
        s.status()
            .sessions
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );

    // A peer that reports 0 and then vanishes in the middle of a transfer frame.
    let mut c = TcpStream::connect(m.local_addr()).await.unwrap();
    c.write_all(&encode_report(0)).await.unwrap();
    let mut partial = [0u8; 7];
    c.read_exact(&mut partial).await.unwrap();
    drop(c);
    count_is(&m, 1).await;
    fill(&m, 50, 19);
    caught_up(m.log(), &slog).await;
    drop(s);
    assert_eq!(m.shutdown(Duration::from_secs(5)).await, 0);
}

/// Upstream HAServerTest.testConnectionList_*: 3 slaves -> 3 connections; one leaves -> 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_list_follows_slaves() {
    let mdir = tempfile::tempdir().unwrap();
    let (m, _tasks) = master(mdir.path(), 0).await;
    fill(&m, 10, 1);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut slaves: Vec<_> = dirs.iter().map(|d| slave(&m, d.path())).collect();
    count_is(&m, 3).await;
    let (s, _log) = slaves.pop().unwrap();
    assert_eq!(s.shutdown(Duration::from_secs(5)).await, 0);
    count_is(&m, 2).await;
    drop(slaves);
    count_is(&m, 0).await;
    assert_eq!(m.registry().accepted_total(), 3);
    assert_eq!(m.shutdown(Duration::from_secs(5)).await, 0);
}

/// Auto-switch failover over loopback: master A replicates to slave B; B stops, A appends more
/// that B never gets, and A stops. B is promoted (a new epoch at its end) and appends; A rejoins
/// as B's slave, finds the consistent point, cuts its unreplicated tail (kept in its store's
/// quarantine) and ends byte-identical to B, with B's epochs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_switch_failover_truncates_the_old_masters_tail() {
    use rmq_lifecycle::core::autoswitch::SlaveHello;
    use rmq_lifecycle::core::ha::HaMode;
    let (adir, bdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let auto_master = |dir: &std::path::Path| {
        let config = MasterConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            ha: ha(),
            mode: HaMode::AutoSwitch,
            ..MasterConfig::default()
        };
        HaMaster::bind(config, open(dir), Clock::start(), TaskGauge::new())
    };
    let auto_slave = |master: &HaMaster, dir: &std::path::Path, id: i64| {
        let log = open(dir);
        let mut config = SlaveConfig::new(master.local_addr());
        config.ha = ha();
        config.mode = HaMode::AutoSwitch;
        config.hello = SlaveHello {
            broker_id: id,
            ..SlaveHello::default()
        };
        config.backoff_max = Duration::from_millis(200);
        (
            HaSlave::start(config, log.clone(), Clock::start(), TaskGauge::new()),
            log,
        )
    };
    let test = async {
        let a = auto_master(adir.path()).await.unwrap();
        fill(&a, 200, 3);
        let (b_slave, blog) = auto_slave(&a, bdir.path(), 2);
        caught_up(a.log(), &blog).await;
        assert_eq!(blog.epochs(), a.log().epochs());
        assert_eq!(b_slave.shutdown(Duration::from_secs(5)).await, 0);
        drop(blog);
        let replicated = a.log().max_offset();
        fill(&a, 100, 5);
        let a_end = a.log().max_offset();
        assert_eq!(a.shutdown(Duration::from_secs(5)).await, 0);

        let b = auto_master(bdir.path()).await.unwrap();
        let b_epochs = b.log().epochs();
        assert_eq!(b_epochs.last().unwrap().start, replicated);
        fill(&b, 50, 7);
        let (a_slave, alog) = auto_slave(&b, adir.path(), 1);
        assert_eq!(
            alog.max_offset(),
            a_end,
            "ahead of the new master until it truncates"
        );
        while alog.max_offset() > b.log().max_offset() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        caught_up(b.log(), &alog).await;
        assert_eq!(alog.epochs(), b.log().epochs());
        let quarantine: u64 = std::fs::read_dir(adir.path().join("quarantine"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert_eq!(quarantine, a_end - replicated, "the cut tail is kept");
        // Sync replication counts the in-sync slave, by broker id.
        let end = b.log().max_offset();
        b.wait_for_replication(end, 1, Duration::from_secs(10))
            .await
            .unwrap();
        let members = b.handle().in_sync_set();
        assert!(
            members
                .iter()
                .any(|m| m.broker_id == 1 && m.in_sync && m.ack == end),
            "{members:?}"
        );
        assert!(
            b.wait_for_replication(end, 2, Duration::from_millis(200))
                .await
                .is_err(),
            "one slave is not two"
        );
        assert_eq!(a_slave.shutdown(Duration::from_secs(5)).await, 0);
        assert_eq!(b.shutdown(Duration::from_secs(5)).await, 0);
    };
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("the failover did not finish in 60 s");
}

/// Issue "Replication that cannot diverge", item 3: a classic slave whose log is ahead of its
/// master's (another master fed it) is told where the master ends, names both offsets, and
/// appends nothing; the master keeps no row for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_slave_ahead_names_both_offsets_and_appends_nothing() {
    let (mdir, sdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let test = async {
        let (m, _tasks) = master(mdir.path(), 0).await;
        fill(&m, 10, 3);
        m.log().flush().unwrap();
        let master_end = m.log().max_offset();
        // What another master sent this store: more than this master holds.
        let slog = open(sdir.path());
        for i in 0..20u8 {
            slog.append(&[i; 1000]).unwrap();
        }
        slog.flush().unwrap();
        drop(slog);
        let (s, slog) = slave(&m, sdir.path());
        let slave_end = slog.max_offset();
        assert!(slave_end > master_end);
        let digest = slog.digest(0, slave_end).unwrap();
        let why = refusal(&s).await;
        assert!(
            why.contains(&master_end.to_string()) && why.contains(&slave_end.to_string()),
            "{why}"
        );
        assert_eq!(slog.max_offset(), slave_end, "nothing appended");
        assert_eq!(slog.digest(0, slave_end).unwrap(), digest);
        count_is(&m, 0).await;
        assert_eq!(s.shutdown(Duration::from_secs(5)).await, 0);
        assert_eq!(m.shutdown(Duration::from_secs(5)).await, 0);
    };
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("the slave did not name the divergence in 30 s");
}

/// Issue "Replication that cannot diverge", item 5: a master and a slave with different segment
/// sizes each name the mismatch; the slave appends nothing that does not frame in its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_size_mismatch_is_named_on_both_sides() {
    for slave_segment in [SEGMENT * 2, SEGMENT / 2] {
        let (mdir, sdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let test = async {
            let (m, _tasks) = master(mdir.path(), 0).await;
            // The slave starts within the master's first segment (an empty slave would be
            // sent the last one only), then the log grows past both sizes' first ends.
            fill(&m, 10, 3);
            m.log().flush().unwrap();
            assert!(m.log().max_offset() < SEGMENT / 2);
            let slog = Arc::new(
                CommitLog::open(StoreConfig {
                    dir: sdir.path().to_owned(),
                    segment_size: slave_segment,
                    flush: FlushPolicy::Manual,
                })
                .unwrap(),
            );
            let mut config = SlaveConfig::new(m.local_addr());
            config.ha = HaConfig {
                segment_size: slave_segment,
                ..ha()
            };
            config.backoff_max = Duration::from_millis(200);
            // No client port to ask at connect (a Java master's slave, say): the segment end is
            // where the mismatch shows.
            config.master_broker = None;
            let s = HaSlave::start(config, slog.clone(), Clock::start(), TaskGauge::new());
            fill(&m, 100, 4); // about 150 KB more: past the master's first segment ends
            m.log().flush().unwrap();
            assert!(m.log().max_offset() > SEGMENT * 2);
            let why = refusal(&s).await;
            let expected = if slave_segment > SEGMENT {
                format!("The master's segment ends at {SEGMENT}")
            } else {
                format!("crosses this store's segment end at {slave_segment}")
            };
            assert!(why.contains(&expected), "slave {slave_segment}: {why}");
            let stalled = loop {
                if let Some(s) = m.handle().stalled_slaves().pop() {
                    break s;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            assert_eq!(stalled.offset, slog.max_offset(), "{stalled:?}");
            assert!(stalled.offset <= SEGMENT.min(slave_segment), "{stalled:?}");
            assert!(
                stalled
                    .hint
                    .contains(&format!("our segments are {SEGMENT} bytes")),
                "{stalled:?}"
            );
            let digest = slog.digest(0, slog.max_offset()).unwrap();
            assert_eq!(
                m.log().digest(0, slog.max_offset()).unwrap(),
                digest,
                "what the slave holds is the master's"
            );
            assert_eq!(s.shutdown(Duration::from_secs(5)).await, 0);
            assert_eq!(m.shutdown(Duration::from_secs(5)).await, 0);
        };
        tokio::time::timeout(Duration::from_secs(30), test)
            .await
            .unwrap_or_else(|_| panic!("slave segment {slave_segment}: not named in 30 s"));
    }
}

/// Like upstream's classic master, ours sends an empty slave (a first report of 0) only its
/// last segment: the slave rebases its empty log there and ends byte-identical to the master
/// from that offset, and keeps replicating as the log grows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_slave_starts_at_the_masters_last_segment() {
    let (mdir, sdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let test = async {
        let (m, _tasks) = master(mdir.path(), 0).await;
        fill(&m, 100, 5);
        m.log().flush().unwrap();
        let max = m.log().max_offset();
        assert!(max > SEGMENT * 2);
        let base = max - max % SEGMENT;
        let (s, slog) = slave(&m, sdir.path());
        let same_from = |from: u64| {
            let end = m.log().max_offset();
            slog.max_offset() == end
                && slog.digest(from, end).unwrap() == m.log().digest(from, end).unwrap()
        };
        while !same_from(base) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            slog.min_offset(),
            base,
            "the slave holds the last segment only"
        );
        fill(&m, 60, 6);
        m.log().flush().unwrap();
        assert!(
            m.log().max_offset() > base + SEGMENT,
            "past another segment end"
        );
        while !same_from(base) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        m.wait_for_replication(m.log().max_offset(), 1, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(s.shutdown(Duration::from_secs(5)).await, 0);
        assert_eq!(m.shutdown(Duration::from_secs(5)).await, 0);
    };
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("the slave did not catch up from the last segment in 30 s");
}

/// A client listener that answers `GET_BROKER_CONFIG` (26) with `segment_size` as the master's,
/// or, with `None`, does not answer it (`REQUEST_CODE_NOT_SUPPORTED`).
async fn client_port(
    m: &HaMaster,
    segment_size: Option<u64>,
) -> rmq_lifecycle::net::remoting::RemotingServer {
    use rmq_lifecycle::core::admin::{BrokerConfig, BrokerRole};
    use rmq_lifecycle::net::remoting::{RemotingConfig, RemotingServer};
    use rmq_lifecycle::registry::{ClientRegistry, RegistryConfig};
    let config = RemotingConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        broker_config: segment_size.map(|segment_size| {
            Arc::new(BrokerConfig {
                listen_port: 0,
                ha_listen_port: m.local_addr().port(),
                segment_size,
                role: BrokerRole::AsyncMaster,
                since_ms: 0,
            })
        }),
        ..RemotingConfig::default()
    };
    let registry = Arc::new(ClientRegistry::new(RegistryConfig::default()));
    RemotingServer::bind(config, registry, Clock::start(), TaskGauge::new())
        .await
        .unwrap()
}

/// Issue "Replication that cannot diverge", item 5: the slave asks the master's client port for
/// its configuration (26) before it connects; another segment size is refused there, naming both
/// sizes and both of the master's addresses, and the slave never connects to the HA port nor
/// appends a byte. A slave that skips the question (planted `SlaveFaults::skip_segment_size_check`)
/// connects and is refused nothing at connect: the test below shows the check catches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_size_mismatch_is_refused_at_connect() {
    mismatch_at_connect(false).await;
}

/// The planted slave that does not ask 26 connects to the HA port (and, its log within the
/// master's first segment, appends): what the assertions of the test above exclude.
#[cfg(feature = "harness")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_that_skips_the_check_at_connect_is_caught() {
    mismatch_at_connect(true).await;
}

async fn mismatch_at_connect(skip_check: bool) {
    let (mdir, sdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let test = async {
        let (m, _tasks) = master(mdir.path(), 0).await;
        fill(&m, 20, 9);
        m.log().flush().unwrap();
        let client = client_port(&m, Some(SEGMENT)).await;
        let slave_segment = SEGMENT * 2;
        let slog = Arc::new(
            CommitLog::open(StoreConfig {
                dir: sdir.path().to_owned(),
                segment_size: slave_segment,
                flush: FlushPolicy::Manual,
            })
            .unwrap(),
        );
        let mut config = SlaveConfig::new(m.local_addr());
        config.ha = HaConfig {
            segment_size: slave_segment,
            ..ha()
        };
        config.backoff_max = Duration::from_millis(100);
        config.master_broker = Some(client.local_addr());
        #[cfg(feature = "harness")]
        {
            config.faults.skip_segment_size_check = skip_check;
        }
        let s = HaSlave::start(config, slog.clone(), Clock::start(), TaskGauge::new());
        if skip_check {
            // It replicates the master's first segment as if nothing were wrong.
            while slog.max_offset() < m.log().max_offset() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(s.status().sessions.load(Ordering::Relaxed) > 0);
            assert_eq!(s.status().refusal(), None, "nothing said at connect");
            assert_eq!(s.shutdown(Duration::from_secs(5)).await, 0);
            client.shutdown(Duration::from_secs(5)).await;
            assert_eq!(m.shutdown(Duration::from_secs(5)).await, 0);
            return;
        }
        let why = refusal(&s).await;
        for needle in [
            format!("{SEGMENT}-byte segments"),
            format!("{slave_segment}-byte ones"),
            client.local_addr().to_string(),
            m.local_addr().to_string(),
        ] {
            assert!(why.contains(&needle), "{needle:?} not in {why}");
        }
        // It keeps asking (at the slowest pace) and never connects.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(s.status().sessions.load(Ordering::Relaxed), 0);
        assert_eq!(
            m.registry().accepted_total(),
            0,
            "the HA port never saw the slave"
        );
        assert_eq!(slog.max_offset(), 0, "nothing appended");
        assert_eq!(s.shutdown(Duration::from_secs(5)).await, 0);
        client.shutdown(Duration::from_secs(5)).await;
        assert_eq!(m.shutdown(Duration::from_secs(5)).await, 0);
    };
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("the mismatch was not named at connect in 30 s");
}

/// A client port that does not answer 26 (an older broker, a proxy) is no reason to stop: the
/// slave warns that the size could not be checked and replicates, the check at the segment end
/// still standing. The same slave against a client port with the same segment size replicates
/// too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_port_that_does_not_answer_26_is_replicated_from() {
    for answers in [None, Some(SEGMENT)] {
        let (mdir, sdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let test = async {
            let (m, _tasks) = master(mdir.path(), 0).await;
            let client = client_port(&m, answers).await;
            let log = open(sdir.path());
            let mut config = SlaveConfig::new(m.local_addr());
            config.ha = ha();
            config.backoff_max = Duration::from_millis(200);
            config.master_broker = Some(client.local_addr());
            let s = HaSlave::start(config, log.clone(), Clock::start(), TaskGauge::new());
            fill(&m, 200, 11);
            caught_up(m.log(), &log).await;
            assert_eq!(s.status().refusal(), None);
            assert_eq!(s.shutdown(Duration::from_secs(5)).await, 0);
            client.shutdown(Duration::from_secs(5)).await;
            assert_eq!(m.shutdown(Duration::from_secs(5)).await, 0);
        };
        tokio::time::timeout(Duration::from_secs(30), test)
            .await
            .unwrap_or_else(|_| {
                panic!("client port answering {answers:?}: no replication in 30 s")
            });
    }
}

/// An embedder may count a master and a slave in one gauge: each shutdown waits for its own
/// tasks only, so the slave's returns at once (0 left) while the master still runs, instead of
/// waiting out its grace for the master's tasks; the shared gauge still counts both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_sharing_one_gauge_each_wait_for_their_own_tasks() {
    let (mdir, sdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (m, shared) = master(mdir.path(), 0).await;
    fill(&m, 20, 3);
    let slog = open(sdir.path());
    let mut config = SlaveConfig::new(m.local_addr());
    config.ha = ha();
    let s = HaSlave::start(config, slog.clone(), Clock::start(), shared.clone());
    caught_up(m.log(), &slog).await;
    assert!(
        shared.alive() >= 2,
        "the slave's task and the master's accept loop both count"
    );

    let asked = std::time::Instant::now();
    assert_eq!(s.shutdown(Duration::from_secs(5)).await, 0);
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "the slave waited out its grace for the master's tasks ({:?})",
        asked.elapsed()
    );
    count_is(&m, 0).await;
    assert!(shared.alive() >= 1, "the master still runs");
    assert_eq!(m.shutdown(Duration::from_secs(5)).await, 0);
    assert_eq!(shared.alive(), 0);
}
