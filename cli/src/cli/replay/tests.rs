//! Both replays at a small scale: ours must PASS and the upstream emulation must really leak or
//! stall, or the replay proves nothing. One test, run in sequence: the HA replay compares the
//! process's open fds with a baseline, which a test running beside it would disturb (the
//! binary's other unit tests run in the same process, hence `FD_COUNT`). It has its own
//! deadline, so a regression that stalls a replay fails instead of hanging the suite.

use super::ha_probes::{self, HaProbesConfig};
use super::harness::{FD_COUNT, Recorded, Stop};
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
        // The binary's other unit tests run beside this one in the same process and move its
        // resident memory (once by 90 MiB on a loaded machine); a leak at upstream's rate, 1 MiB
        // per probe, would still exceed this 20 times over. Tasks, fds and the table are exact.
        rss_bound_bytes: 256 << 20,
        ..HaProbesConfig::default()
    };
    let progress = Recorded::default();
    let report = ha_probes::run(config, &progress, &Stop::new())
        .await
        .unwrap();
    every_phase_reached_its_total(&progress, 2);
    assert!(report.ours.verdict.pass, "ours: {:#?}", report.ours.verdict);
    assert_eq!(report.ours.after.ha_connections, 1);
    let upstream = report.upstream.as_ref().expect("the upstream side ran");
    assert!(
        !upstream.verdict.pass,
        "the 5.1.4 emulation did not leak: {:#?}",
        upstream.verdict
    );
    assert!(upstream.after.dead_entries > 0);
    assert!(
        upstream.after.push2slave_max > report.ours.after.master_max,
        "probe bytes became an ack upstream"
    );
    assert!(report.passed());
}

/// Each phase's last report is its total: a plain progress log ends every phase at its end.
fn every_phase_reached_its_total(progress: &Recorded, phases: usize) {
    let phases_seen = progress.0.lock().unwrap();
    assert_eq!(phases_seen.len(), phases, "{phases_seen:?}");
    for (name, total, done) in phases_seen.iter() {
        assert_eq!(done, total, "{name}");
    }
}

/// At a scale that stalls 4.x (closes arriving 1.5x faster than its scan gets through them,
/// more consumers than heartbeat threads): ours neither stalls nor leaks, the emulation does
/// both, and the verdict names what happened with the run's own figures.
async fn stale_groups_small() {
    let config = StaleGroupsConfig {
        groups: 2_000,
        consumers: 16,
        heartbeat_workers: 8,
        deadline_ms: 1_000,
        // 25 ms per close at 2,000 groups: 40 closes/s at most.
        close_cost_per_group_ns: 12_500,
        close_rate: 60,
        incident_ms: 3_000,
        ..StaleGroupsConfig::default()
    };
    let progress = Recorded::default();
    let report = stale_groups::run(config, &progress, &Stop::new())
        .await
        .unwrap();
    // Build-up and incident, on each side.
    every_phase_reached_its_total(&progress, 4);
    let ours = &report.ours;
    let upstream = report.upstream.as_ref().expect("the upstream side ran");
    assert!(
        ours.pass,
        "ours: missed {}, groups {} (live {})",
        ours.missed, ours.final_groups, ours.live_groups
    );
    assert_eq!(ours.final_groups, ours.live_groups);
    assert!(ours.heartbeats > 0);
    assert!(!upstream.pass);
    assert!(
        upstream.final_groups >= upstream.live_groups + 2_000,
        "4.x keeps the abandoned groups: {}",
        upstream.final_groups
    );
    let b = upstream.broker_4x.expect("the 4.x side's counts");
    assert!(upstream.missed > 0, "4.x did not stall: {b:?}");
    assert!(
        b.all_blocked_ms > 0,
        "4.x's threads were never all blocked: {b:?}"
    );
    assert_eq!(b.heartbeat_threads, 8);
    assert_eq!(
        upstream.failure(1_000).unwrap(),
        format!(
            "stalled ({} consumer heartbeats missed the 1 s deadline; all 8 heartbeat threads \
             blocked for {:.1} s) and leaked ({} empty groups kept)",
            upstream.missed,
            b.all_blocked_ms as f64 / 1000.0,
            upstream.final_groups - upstream.live_groups
        )
    );
    assert!(report.passed());
    for side in [ours, upstream] {
        // The chart's highest point is the report's maximum, and the samples run to the end.
        let peak = side.samples.iter().map(|s| s.heartbeat_max_us).max();
        assert_eq!(peak, side.max_us, "{}", side.name);
        let last = side.samples.last().unwrap();
        assert!(last.t_ms >= side.load_ms + side.settle_ms, "{}", side.name);
        assert_eq!(last.missed, side.missed, "{}", side.name);
    }
}

/// The verdict follows the figures: what the 4.x side did is named, and a side that did neither
/// makes the replay fail.
#[test]
fn stale_groups_verdict_follows_the_figures() {
    use super::stale_groups::{Side, StaleGroupsReport};
    use crate::cli::upstream::broker_4x::Stats4x;
    let ours = Side {
        final_groups: 17,
        live_groups: 17,
        pass: true,
        ..Side::default()
    };
    let upstream = |missed, final_groups| Side {
        created: 15_000,
        missed,
        final_groups,
        live_groups: 17,
        broker_4x: Some(Stats4x {
            heartbeat_threads: 32,
            all_blocked_ms: 12_345,
            ..Stats4x::default()
        }),
        ..Side::default()
    };
    let report = |upstream| StaleGroupsReport {
        config: Some(StaleGroupsConfig::default()),
        ours: ours.clone(),
        upstream: Some(upstream),
        interrupted: false,
    };
    let both = report(upstream(7, 15_017));
    assert_eq!(
        both.upstream.as_ref().unwrap().failure(3_000).as_deref(),
        Some(
            "stalled (7 consumer heartbeats missed the 3 s deadline; all 32 heartbeat threads \
             blocked for 12.3 s) and leaked (15000 empty groups kept)"
        )
    );
    assert!(both.passed());
    let leaked = report(upstream(0, 15_017));
    assert_eq!(
        leaked.upstream.as_ref().unwrap().failure(3_000).as_deref(),
        Some("leaked (15000 empty groups kept)")
    );
    assert!(leaked.passed());
    let stalled = report(upstream(2, 17));
    assert!(
        stalled
            .upstream
            .as_ref()
            .unwrap()
            .failure(3_000)
            .unwrap()
            .starts_with("stalled (2 ")
    );
    assert!(stalled.passed());
    let neither = report(upstream(0, 17));
    assert_eq!(neither.upstream.as_ref().unwrap().failure(3_000), None);
    assert!(
        !neither.passed(),
        "a replay whose upstream side did nothing proves nothing"
    );
    let summary = super::summary(&super::Report {
        stale_groups: Some(neither),
        ..super::Report::default()
    });
    assert!(
        summary.contains("did NOT stall or leak (the replay proves nothing)"),
        "{summary}"
    );
}

/// An interrupted run reports what was measured and `-` (null in JSON) for what was not: no
/// zero stands in for a side that never ran, and no side is judged on a run it did not finish.
#[test]
fn an_interrupted_report_claims_no_measurement() {
    use super::ha_probes::{HaProbesReport, OurSide};
    use super::stale_groups::{Side, StaleGroupsReport};
    let ha = HaProbesReport {
        config: Some(HaProbesConfig::default()),
        ours: OurSide {
            probes: 1_234,
            interrupted: true,
            ..OurSide::default()
        },
        upstream: None,
        interrupted: true,
        wall_ms: 1_500,
    };
    let groups = StaleGroupsReport {
        config: Some(StaleGroupsConfig::default()),
        ours: Side {
            created: 700,
            interrupted: true,
            ..Side::default()
        },
        upstream: None,
        interrupted: true,
    };
    let groups_again = groups.clone();
    let report = super::Report {
        which: Some(super::Which::All),
        ha_probes: Some(ha),
        stale_groups: Some(groups),
        passed: None,
        interrupted: true,
        wall_ms: 1_500,
    };
    let summary = super::summary(&report);
    for needle in ["0.00 ms", "0.00e0", "FAIL", "PASS"] {
        assert!(!summary.contains(needle), "{needle} in\n{summary}");
    }
    for needle in [
        "ours interrupted after 1234 of 100000 probes; upstream emulation not run (interrupted)",
        "ours interrupted after 700 of 15000 groups; upstream emulation not run (interrupted)",
        "replay: INTERRUPTED",
    ] {
        assert!(summary.contains(needle), "no {needle:?} in\n{summary}");
    }
    for what in [
        "HA connections after the storm",
        "highest ack vs master max offset",
        "groups created",
        "heartbeat p50",
        "heartbeat max",
        "missed the 3 s deadline",
    ] {
        let line = summary.lines().find(|l| l.contains(what)).unwrap();
        assert_eq!(line.split_whitespace().last(), Some("-"), "{line}");
    }
    // Ours answered no heartbeat before the interruption: its latencies are not 0 either.
    let p50 = summary
        .lines()
        .find(|l| l.contains("heartbeat p50"))
        .unwrap();
    assert_eq!(p50.split_whitespace().rev().nth(1), Some("-"), "{p50}");
    // Interrupted during the first replay: the second is named as not run.
    let first_only = super::Report {
        stale_groups: None,
        ..report
    };
    let summary = super::summary(&first_only);
    assert!(
        summary.contains("replay stale-groups: not run (interrupted)"),
        "{summary}"
    );
    let json = serde_json::to_value(&first_only).unwrap();
    assert_eq!(json["stale_groups"], serde_json::Value::Null);
    let report = super::Report {
        stale_groups: Some(groups_again),
        ..first_only
    };
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["passed"], serde_json::Value::Null);
    assert_eq!(json["ha_probes"]["upstream"], serde_json::Value::Null);
    assert_eq!(json["stale_groups"]["upstream"], serde_json::Value::Null);
    assert_eq!(
        json["stale_groups"]["ours"]["p50_us"],
        serde_json::Value::Null
    );
}
