//! `rmq-lifecycle replay ha-probes|stale-groups|all`: the two production incidents re-run
//! in-process on loopback, against this crate and, side by side in the same run, against
//! `upstream`'s emulation.
//!
//! * [`ha_probes`]: RocketMQ 5.1.4's HA port under load-balancer health checks (#8875).
//! * [`stale_groups`]: 15,000 abandoned `IotRuleEngine-<timestamp>` producer groups while
//!   consumers heartbeat and channels churn (#8673 and 4.x's single lock).
//!
//! Each replay returns a report with sampled series and a verdict and prints nothing; this file
//! shows progress, prints a one-screen summary or JSON, writes report.json and chart.svg. The
//! replays live in the command, not the library: they run upstream's defects on purpose.

pub(crate) mod ha_probes;
mod harness;
pub(crate) mod stale_groups;
#[cfg(test)]
mod tests;

use crate::cli::upstream::broker_4x::Stats4x;
use clap::{Args, ValueEnum};
use ha_probes::{HaProbesConfig, HaProbesReport};
use harness::{Progress, Stop};
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use stale_groups::{StaleGroupsConfig, StaleGroupsReport};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Which {
    /// RocketMQ 5.1.4: HA port health checks leaking connections.
    HaProbes,
    /// 15,000 stale IotRuleEngine-<timestamp> producer groups stalling heartbeats.
    StaleGroups,
    /// Both.
    All,
}

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// Which incident.
    which: Which,
    /// Print the full report as JSON on stdout instead of the summary.
    #[arg(long)]
    json: bool,
    /// Write report.json and chart.svg into this directory.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Probes per side (ha-probes), 8-10000000.
    #[arg(long, default_value_t = HaProbesConfig::default().probes, value_parser = scale(8, 10_000_000))]
    probes: usize,
    /// Abandoned producer groups per side (stale-groups), 1-10000000.
    #[arg(long, default_value_t = StaleGroupsConfig::default().groups, value_parser = scale(1, 10_000_000))]
    groups: usize,
    /// Heartbeating consumers (stale-groups), 1-10000: each holds a connection on each side.
    #[arg(long, default_value_t = StaleGroupsConfig::default().consumers, value_parser = scale(1, 10_000))]
    consumers: usize,
    /// Channel closes per second during the incident (stale-groups), 1-100000: 4.x stalls
    /// when they come faster than its event thread scans (40/s at the default scale).
    #[arg(long, default_value_t = StaleGroupsConfig::default().close_rate as usize, value_parser = scale(1, 100_000))]
    close_rate: usize,
}

#[derive(Debug, Default, serde::Serialize)]
struct Report {
    /// The replays asked for: one Ctrl-C kept from starting is named in the summary (it is null
    /// in report.json).
    #[serde(skip)]
    which: Option<Which>,
    ha_probes: Option<HaProbesReport>,
    stale_groups: Option<StaleGroupsReport>,
    /// The replay's verdict; `None` when it was interrupted (no verdict was reached).
    passed: Option<bool>,
    /// Ctrl-C stopped the run: what is reported was measured, the rest is absent or null.
    interrupted: bool,
    wall_ms: u64,
}

/// A progress bar on a terminal, a line every few seconds otherwise.
struct Reporter {
    bar: Option<ProgressBar>,
    plain: Mutex<Plain>,
}

/// The line-per-few-seconds form, for logs and pipes.
struct Plain {
    name: String,
    total: u64,
    done: u64,
    /// The count of the last line written (a phase's last count is always written).
    shown: Option<u64>,
    last: Instant,
    out: Box<dyn FnMut(&str) + Send>,
}

impl Plain {
    fn show(&mut self) {
        if self.shown != Some(self.done) && !self.name.is_empty() {
            let line = format!("{}: {}/{}", self.name, self.done, self.total);
            (self.out)(&line);
            self.shown = Some(self.done);
            self.last = Instant::now();
        }
    }
}

impl Reporter {
    fn new() -> Reporter {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{msg:32} [{bar:40}] {pos}/{len} ({rate}, {eta})")
                    .expect("a valid template")
                    .with_key(
                        "rate",
                        |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = write!(w, "{:.0}/s", state.per_sec());
                        },
                    )
                    .progress_chars("=> "),
            );
            bar
        });
        Self::with(bar, Box::new(|line| eprintln!("{line}")))
    }

    fn with(bar: Option<ProgressBar>, out: Box<dyn FnMut(&str) + Send>) -> Reporter {
        Reporter {
            bar,
            plain: Mutex::new(Plain {
                name: String::new(),
                total: 0,
                done: 0,
                shown: None,
                last: Instant::now(),
                out,
            }),
        }
    }

    fn finish(&self) {
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => self.plain.lock().expect("progress lock").show(),
        }
    }
}

impl Progress for Reporter {
    fn phase(&self, name: &str, total: u64) {
        match &self.bar {
            Some(bar) => {
                // Position first: the bar redraws on each change and must never show the last
                // phase's count against this one's length.
                bar.reset();
                bar.set_length(total);
                bar.set_message(name.to_owned());
            }
            None => {
                let mut p = self.plain.lock().expect("progress lock");
                p.show();
                (p.name, p.total, p.done, p.shown) = (name.to_owned(), total, 0, None);
                p.show();
            }
        }
    }

    fn advance(&self, n: u64) {
        match &self.bar {
            Some(bar) => bar.inc(n),
            None => {
                let mut p = self.plain.lock().expect("progress lock");
                p.done += n;
                if p.done >= p.total || p.last.elapsed() > Duration::from_secs(5) {
                    p.show();
                }
            }
        }
    }
}

/// A scale option's bounds, checked before anything runs.
fn scale(min: u64, max: u64) -> impl clap::builder::TypedValueParser<Value = usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(min..=max)
}

/// Makes `--out DIR` ready for report.json and chart.svg, or says what is wrong with it and
/// what to give instead (the OS's words alone, "File exists", do not say which).
fn out_dir(dir: &Path) -> Result<(), String> {
    let shown = dir.display();
    if dir.exists() && !dir.is_dir() {
        return Err(format!(
            "--out {shown}: not a directory (report.json and chart.svg are written into a \
             directory); give a new or existing directory"
        ));
    }
    std::fs::create_dir_all(dir).map_err(|error| {
        format!(
            "--out {shown}: cannot create the directory ({error}); give a directory this user \
             can create or write to"
        )
    })?;
    tempfile::NamedTempFile::new_in(dir).map(drop).map_err(|error| {
        format!("--out {shown}: cannot write into the directory ({error}); give one this user can write to")
    })
}

/// The exit code of an interrupted replay (128 + SIGINT, as a shell reports it).
const INTERRUPTED: u8 = 130;

/// File descriptors the replay needs: each consumer holds a connection to each side's broker
/// (both ends are in this process), plus the probes' and the runtime's own.
fn fds_needed(args: &ReplayArgs) -> u64 {
    args.consumers as u64 * 4 + 1024
}

/// Raises the soft descriptor limit to the hard one if `needed` is above it; an error names the
/// option and the limit when even the hard limit is too low.
#[cfg(target_os = "linux")]
fn ensure_fds(needed: u64) -> Result<(), String> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    if current >= needed {
        return Ok(());
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    let current = match setrlimit(Resource::Nofile, raised) {
        Ok(()) => limit.maximum.unwrap_or(u64::MAX),
        Err(_) => current,
    };
    if current >= needed {
        Ok(())
    } else {
        Err(format!(
            "--consumers needs about {needed} file descriptors and the limit is {current}; \
             lower --consumers or raise the limit (ulimit -n)"
        ))
    }
}

#[cfg(not(target_os = "linux"))]
fn ensure_fds(_needed: u64) -> Result<(), String> {
    Ok(())
}

pub(crate) fn run(args: ReplayArgs) -> ExitCode {
    if let Err(error) = ensure_fds(fds_needed(&args)) {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    // A bad --out fails now, not after the whole replay ran.
    if let Some(dir) = &args.out {
        if let Err(error) = out_dir(dir) {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    }
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
    let started = Instant::now();
    let reporter = Reporter::new();
    let stop = Stop::new();
    let result = runtime.block_on(async {
        let ctrl_c = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: stopping, the report covers what was measured");
                ctrl_c.cancel();
            }
        });
        let mut report = Report {
            which: Some(args.which),
            ..Report::default()
        };
        if matches!(args.which, Which::HaProbes | Which::All) {
            let config = HaProbesConfig {
                probes: args.probes,
                ..HaProbesConfig::default()
            };
            report.ha_probes = Some(ha_probes::run(config, &reporter, &stop).await?);
        }
        if matches!(args.which, Which::StaleGroups | Which::All) && !stop.is_cancelled() {
            let config = StaleGroupsConfig {
                groups: args.groups,
                consumers: args.consumers,
                close_rate: args.close_rate as u64,
                ..StaleGroupsConfig::default()
            };
            report.stale_groups = Some(stale_groups::run(config, &reporter, &stop).await?);
        }
        std::io::Result::Ok(report)
    });
    reporter.finish();
    let mut report = match result {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: replay failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    report.interrupted = stop.is_cancelled();
    report.passed = (!report.interrupted).then(|| {
        report.ha_probes.as_ref().is_none_or(HaProbesReport::passed)
            && report
                .stale_groups
                .as_ref()
                .is_none_or(StaleGroupsReport::passed)
    });
    report.wall_ms = started.elapsed().as_millis() as u64;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serializes")
        );
    } else {
        print!("{}", summary(&report));
    }
    if let Some(dir) = &args.out {
        if let Err(error) = write_out(dir, &report) {
            eprintln!("error: cannot write {}: {error}", dir.display());
            return ExitCode::FAILURE;
        }
        eprintln!(
            "wrote {}/report.json and {}/chart.svg",
            dir.display(),
            dir.display()
        );
    }
    if report.interrupted {
        ExitCode::from(INTERRUPTED)
    } else if report.passed == Some(true) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

/// One row of a summary table: what, ours, upstream's emulation.
fn row(s: &mut String, what: &str, ours: impl std::fmt::Display, upstream: impl std::fmt::Display) {
    use std::fmt::Write;
    let _ = writeln!(s, "  {what:<34} {ours:>16} {upstream:>24}");
}

/// What the summary shows for a figure nobody measured (a side Ctrl-C kept from running, a
/// latency with no heartbeat answered).
const UNMEASURED: &str = "-";

/// `f` of the side, or [`UNMEASURED`] for a side that did not run.
fn or_unmeasured<T>(side: Option<&T>, f: impl FnOnce(&T) -> String) -> String {
    side.map_or_else(|| UNMEASURED.to_owned(), f)
}

fn summary(report: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let verdict = |pass: bool| if pass { "PASS" } else { "FAIL" };
    if let Some(r) = &report.ha_probes {
        let (o, u) = (&r.ours, r.upstream.as_ref());
        let probes = r.config.as_ref().map_or(o.probes, |c| c.probes as u64);
        let _ = writeln!(
            s,
            "replay ha-probes: {probes} probes per side (RocketMQ 5.1.4, apache/rocketmq#8875)",
        );
        row(&mut s, "", "rmq-lifecycle", "upstream 5.1.4 order");
        row(
            &mut s,
            "HA connections after the storm",
            o.after.ha_connections,
            or_unmeasured(u, |u| u.after.list_len.to_string()),
        );
        row(
            &mut s,
            "  of which dead (leaked)",
            0,
            or_unmeasured(u, |u| u.after.dead_entries.to_string()),
        );
        row(
            &mut s,
            "memory retained by the table",
            format!(
                "{:+.1} MiB RSS",
                mib(o.after.rss_bytes) - mib(o.baseline.rss_bytes)
            ),
            or_unmeasured(u, |u| format!("{} MiB heap", u.after.retained_bytes >> 20)),
        );
        row(
            &mut s,
            "tasks alive (baseline)",
            format!("{} ({})", o.after.tasks, o.baseline.tasks),
            or_unmeasured(u, |u| u.after.tasks.to_string()),
        );
        row(
            &mut s,
            "open fds (baseline)",
            format!("{} ({})", o.after.fds, o.baseline.fds),
            UNMEASURED,
        );
        row(
            &mut s,
            "highest ack vs master max offset",
            format!("{} <= {}", o.after.slave_acked, o.after.master_max),
            or_unmeasured(u, |u| format!("{:.2e}", u.after.push2slave_max as f64)),
        );
        row(&mut s, "probes/s", format!("{:.0}", o.probes_per_sec), "");
        for reason in &o.verdict.reasons {
            let _ = writeln!(s, "    {reason}");
        }
        let ours = if o.interrupted {
            format!("interrupted after {} of {probes} probes", o.probes)
        } else {
            verdict(o.verdict.pass).to_owned()
        };
        let upstream = match u {
            None => "not run (interrupted)".to_owned(),
            Some(u) if u.interrupted => {
                let leaked = if u.verdict.pass {
                    "none leaked so far"
                } else {
                    "LEAKED so far"
                };
                format!(
                    "interrupted after {} of {probes} probes, {leaked}",
                    u.probes
                )
            }
            Some(u) if u.verdict.pass => "did NOT leak (the replay proves nothing)".to_owned(),
            Some(_) => "LEAKED, as in production".to_owned(),
        };
        let _ = writeln!(s, "  verdict: ours {ours}; upstream emulation {upstream}\n");
    }
    if let Some(r) = &report.stale_groups {
        let (o, u) = (&r.ours, r.upstream.as_ref());
        let c = r.config.clone().unwrap_or_default();
        let _ = writeln!(
            s,
            "replay stale-groups: {} abandoned IotRuleEngine-<ts> producer groups per side (#8673)",
            c.groups
        );
        let _ = writeln!(
            s,
            "  then {} channel closes/s for {:.0} s; {} heartbeat threads, {} consumers\n  \
             a 4.x close holds the lock {:.1} ms at {} groups (#7737), at most {:.0} closes/s",
            c.close_rate,
            c.incident_ms as f64 / 1000.0,
            c.heartbeat_workers,
            c.consumers,
            (c.close_cost_per_group_ns * c.groups as u64) as f64 / 1e6,
            c.groups,
            1e9 / (c.close_cost_per_group_ns * c.groups as u64).max(1) as f64,
        );
        row(&mut s, "", "rmq-lifecycle", "upstream 4.x tables");
        row(
            &mut s,
            "groups created",
            o.created,
            or_unmeasured(u, |u| u.created.to_string()),
        );
        let left =
            |side: &stale_groups::Side| format!("{} ({})", side.final_groups, side.live_groups);
        row(
            &mut s,
            "groups left (live only)",
            left(o),
            or_unmeasured(u, left),
        );
        row(
            &mut s,
            "channel closes processed",
            o.closes,
            or_unmeasured(u, |u| u.closes.to_string()),
        );
        let ms = |us: Option<u64>| {
            us.map_or_else(
                || UNMEASURED.to_owned(),
                |us| format!("{:.2} ms", us as f64 / 1000.0),
            )
        };
        let close_time = |b: Option<Stats4x>| {
            b.map_or_else(
                || UNMEASURED.to_owned(),
                |b| {
                    format!(
                        "{:.1} ({:.1}) ms",
                        b.close_mean_us as f64 / 1000.0,
                        b.close_max_us as f64 / 1000.0
                    )
                },
            )
        };
        row(
            &mut s,
            "close time, mean (max)",
            UNMEASURED,
            or_unmeasured(u, |u| close_time(u.broker_4x)),
        );
        row(
            &mut s,
            "consumer heartbeats answered",
            o.heartbeats,
            or_unmeasured(u, |u| u.heartbeats.to_string()),
        );
        row(
            &mut s,
            "heartbeat p50",
            ms(o.p50_us),
            or_unmeasured(u, |u| ms(u.p50_us)),
        );
        row(
            &mut s,
            "heartbeat p99",
            ms(o.p99_us),
            or_unmeasured(u, |u| ms(u.p99_us)),
        );
        row(
            &mut s,
            "heartbeat max",
            ms(o.max_us),
            or_unmeasured(u, |u| ms(u.max_us)),
        );
        row(
            &mut s,
            &format!("missed the {:.0} s deadline", c.deadline_ms as f64 / 1000.0),
            o.missed,
            or_unmeasured(u, |u| u.missed.to_string()),
        );
        let blocked = |b: Option<Stats4x>| {
            b.map_or_else(
                || UNMEASURED.to_owned(),
                |b| {
                    format!(
                        "{:.1} s (longest {:.1} s)",
                        b.all_blocked_ms as f64 / 1000.0,
                        b.all_blocked_longest_ms as f64 / 1000.0
                    )
                },
            )
        };
        row(
            &mut s,
            "all heartbeat threads blocked",
            blocked(o.broker_4x),
            or_unmeasured(u, |u| blocked(u.broker_4x)),
        );
        let queued = |b: Option<Stats4x>| {
            b.map_or_else(
                || UNMEASURED.to_owned(),
                |b| format!("{:.1} s", b.queue_wait_max_ms as f64 / 1000.0),
            )
        };
        row(
            &mut s,
            "longest heartbeat queue wait",
            queued(o.broker_4x),
            or_unmeasured(u, |u| queued(u.broker_4x)),
        );
        let settle = |side: &stale_groups::Side| {
            let load = side.load_ms as f64 / 1000.0;
            let last = side.settle_ms as f64 / 1000.0;
            match (side.settled, side.interrupted) {
                (true, _) => format!("{load:.1} s + {last:.1} s"),
                // Cut short, not timed out: how long the last closes would have taken is unknown.
                (false, true) => format!("{load:.1} s + {UNMEASURED}"),
                (false, false) => format!("{load:.1} s + >{last:.1} s"),
            }
        };
        row(
            &mut s,
            "wall time: load + last closes",
            settle(o),
            or_unmeasured(u, settle),
        );
        let cut_short = |side: &stale_groups::Side| {
            if side.created < c.groups as u64 {
                format!("interrupted after {} of {} groups", side.created, c.groups)
            } else {
                "interrupted after the build-up".to_owned()
            }
        };
        let ours = if o.interrupted {
            cut_short(o)
        } else {
            verdict(o.pass).to_owned()
        };
        let upstream = match u {
            None => "not run (interrupted)".to_owned(),
            Some(u) => match (u.interrupted, u.failure(c.deadline_ms)) {
                (true, Some(what)) => format!("{}; so far {what}", cut_short(u)),
                (true, None) => format!("{}; neither stalled nor leaked so far", cut_short(u)),
                (false, Some(what)) => format!("{what}, as in production"),
                (false, None) => "did NOT stall or leak (the replay proves nothing)".to_owned(),
            },
        };
        let _ = writeln!(s, "  verdict: ours {ours}; upstream emulation {upstream}\n");
    }
    if report.interrupted && report.which == Some(Which::All) {
        for (name, ran) in [
            ("ha-probes", report.ha_probes.is_some()),
            ("stale-groups", report.stale_groups.is_some()),
        ] {
            if !ran {
                let _ = writeln!(s, "replay {name}: not run (interrupted)\n");
            }
        }
    }
    let _ = writeln!(
        s,
        "replay: {} in {:.1} s",
        match report.passed {
            None => "INTERRUPTED",
            Some(passed) => verdict(passed),
        },
        report.wall_ms as f64 / 1000.0
    );
    s
}

fn write_out(dir: &Path, report: &Report) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?,
    )?;
    super::chart::draw(
        &dir.join("chart.svg"),
        report.ha_probes.as_ref(),
        report.stale_groups.as_ref(),
    )
    .map_err(std::io::Error::other)
}

#[cfg(test)]
mod progress_tests {
    use super::*;

    /// The plain form writes each phase's start and its last count (not only the counts that
    /// happened to fall on a 5 s tick), and a new phase starts at 0.
    #[test]
    fn plain_progress_shows_each_phase_from_zero_to_its_end() {
        let lines = std::sync::Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        let reporter = Reporter::with(None, Box::new(move |l| sink.lock().unwrap().push(l.into())));
        reporter.phase("a", 100_000);
        for _ in 0..10 {
            reporter.advance(9_999);
        }
        reporter.phase("b", 3_000);
        reporter.advance(1_000);
        reporter.finish();
        reporter.finish();
        assert_eq!(
            *lines.lock().unwrap(),
            [
                "a: 0/100000",
                "a: 99990/100000",
                "b: 0/3000",
                "b: 1000/3000"
            ]
        );
    }

    /// On a terminal a phase starts at 0 of its own total: never the last phase's count against
    /// this one's length (`[====] 20000/3000`).
    #[test]
    fn the_bar_starts_each_phase_at_zero() {
        let bar = ProgressBar::hidden();
        let reporter = Reporter::with(Some(bar.clone()), Box::new(|_| {}));
        reporter.phase("a", 20_000);
        reporter.advance(20_000);
        reporter.phase("b", 3_000);
        assert_eq!((bar.position(), bar.length()), (0, Some(3_000)));
        assert_eq!(bar.message(), "b");
    }
}
