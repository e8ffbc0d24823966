//! Both replays at a small scale: ours must PASS and the upstream emulation must really leak or
//! stall, or the replay proves nothing. One test, run in sequence: the HA replay compares the
//! process's open fds with a baseline, which a test running beside it would disturb (the
//! binary's other unit tests run in the same process, hence `FD_COUNT`). It has its own
//! deadline, so a regression that stalls a replay fails instead of hanging the suite.

use super::ha_probes::{self, HaProbesConfig};
use super::harness::{FD_COUNT, Quiet, Stop};
use super::stale_groups::{self, StaleGroupsConfig};
use std::sync::PoisonError;
use std::time::Duration;

/// Far above the few seconds both replays take at this scale.
const DEADLINE: Duration = Duration::from_secs(180);

#[test]
fn replays_small() {
    let _fds = FD_COUNT.lock().unwrap_or_else(PoisonError::into_inner);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(DEADLINE, async {
            ha_probes_small().await;
            stale_groups_small().await;
        })
        .await
        .expect("the small replays did not finish within the deadline");
    });
}

async fn ha_probes_small() {
    let config = HaProbesConfig {
        probes: 2_000,
        stall_concurrency: 128,
        housekeeping_ms: 300,
        ..HaProbesConfig::default()
    };
    let report = ha_probes::run(config, &Quiet, &Stop::new()).await.unwrap();
    assert!(report.ours.verdict.pass, "ours: {:#?}", report.ours.verdict);
    assert_eq!(report.ours.after.ha_connections, 1);
    assert!(
        !report.upstream.verdict.pass,
        "the 5.1.4 emulation did not leak: {:#?}",
        report.upstream.verdict
    );
    assert!(report.upstream.after.dead_entries > 0);
    assert!(
        report.upstream.after.push2slave_max > report.ours.after.master_max,
        "probe bytes became an ack upstream"
    );
    assert!(report.passed());
}

async fn stale_groups_small() {
    let config = StaleGroupsConfig {
        groups: 2_000,
        consumers: 8,
        tail_ms: 300,
        ..StaleGroupsConfig::default()
    };
    let report = stale_groups::run(config, &Quiet, &Stop::new())
        .await
        .unwrap();
    let (ours, upstream) = (&report.ours, &report.upstream);
    assert!(
        ours.pass,
        "ours: missed {}, groups {} (live {})",
        ours.missed, ours.final_groups, ours.live_groups
    );
    assert_eq!(ours.final_groups, ours.live_groups);
    assert!(ours.heartbeats > 0);
    assert!(
        !upstream.pass,
        "the 4.x emulation neither stalled nor leaked"
    );
    assert!(
        upstream.final_groups >= upstream.live_groups + 2_000,
        "4.x keeps the abandoned groups: {}",
        upstream.final_groups
    );
    assert!(report.passed());
}
