//! `rmq-lifecycle serve` and `slave` as a user runs them: real processes, real ports, metrics
//! over HTTP, and a clean exit (code 0, a final log line) on SIGTERM.

use rmq_lifecycle::core::HeartbeatData;
use rmq_lifecycle::core::remoting::{FrameDecoder, RemotingCommand, code};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn start(args: &[&str]) -> Proc {
        Proc::spawn(args, Some("info"))
    }

    /// As a user starts it: no RUST_LOG.
    fn start_default_level(args: &[&str]) -> Proc {
        Proc::spawn(args, None)
    }

    fn spawn(args: &[&str], rust_log: Option<&str>) -> Proc {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rmq-lifecycle"));
        match rust_log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        let mut child = command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line containing `needle` and returns it.
    fn line(&mut self, needle: &str) -> String {
        self.line_within(needle, Duration::from_secs(30))
    }

    /// [`Proc::line`] with its own deadline, for a line that comes only after retries.
    fn line_within(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
        panic!(
            "no log line with {needle:?}; saw:\n{}",
            self.seen.join("\n")
        );
    }

    fn terminate(mut self) -> (i32, Proc) {
        signal(&self.child, "-TERM");
        let status = exit_within(&mut self.child, Duration::from_secs(30), "after SIGTERM");
        (status.code().unwrap_or(-1), self)
    }
}

/// Sends `sig` (as `kill` spells it) to the child.
fn signal(child: &Child, sig: &str) {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// Waits for the child to exit; kills it and fails the test if it is still running after
/// `within` (a regression then fails in seconds instead of hanging the suite).
fn exit_within(child: &mut Child, within: Duration, when: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running {within:?} {when}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `key=value` from a tracing line.
fn field(line: &str, key: &str) -> SocketAddr {
    let at = line
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("{key} in {line}"))
        + key.len()
        + 1;
    line[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

fn wait_metric(addr: SocketAddr, name: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if metric(addr, name) == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{name} never became {want} (last {:?})", metric(addr, name));
}

#[test]
fn serve_and_slave_run_and_exit_cleanly() {
    let (mdir, sdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut serve = Proc::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--ha-listen",
        "127.0.0.1:0",
        "--store",
        mdir.path().to_str().unwrap(),
        "--segment-size",
        "65536",
        "--metrics",
        &metrics.to_string(),
    ]);
    let line = serve.line("serving");
    let (listen, ha) = (field(&line, "listen"), field(&line, "ha_listen"));

    // A client heartbeats: its group shows up in /metrics; it closes: the group goes.
    let mut client = Client::connect(listen);
    let hb = RemotingCommand {
        body: Some(HeartbeatData::producers("c1", ["PG"]).to_json().into()),
        ..RemotingCommand::request(code::HEART_BEAT)
    };
    assert_eq!(client.call(&hb).code, code::SUCCESS);
    wait_metric(metrics, "rmq_producer_groups", 1.0);
    wait_metric(metrics, "rmq_client_channels", 1.0);
    drop(client);
    wait_metric(metrics, "rmq_producer_groups", 0.0);

    // A slave process replicates from the master.
    let slave = Proc::start(&[
        "slave",
        "--master",
        &ha.to_string(),
        "--store",
        sdir.path().to_str().unwrap(),
        "--segment-size",
        "65536",
    ]);
    wait_metric(metrics, "rmq_ha_connections", 1.0);
    assert!(metric(metrics, "rmq_tasks_alive").unwrap() >= 3.0);

    let (code, _slave) = slave.terminate();
    assert_eq!(code, 0, "slave exit code");
    wait_metric(metrics, "rmq_ha_connections", 0.0);
    let (code, mut serve) = serve.terminate();
    assert_eq!(code, 0, "serve exit code");
    let last = serve.line("shutdown complete");
    assert!(last.contains("tasks_left=0"), "{last}");
}

/// Runs the command to its end (killed after 20 s: a command that should have refused to start
/// must not hang the suite) and returns its exit code, stdout and stderr (small outputs only:
/// both pipes are read after the exit).
fn run_both(args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rmq-lifecycle"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = exit_within(
        &mut child,
        Duration::from_secs(20),
        &format!("after {args:?}"),
    );
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code(), stdout, stderr)
}

/// [`run_both`]'s exit code and stderr.
fn run(args: &[&str]) -> (Option<i32>, String) {
    let (code, _, stderr) = run_both(args);
    (code, stderr)
}

#[test]
fn serve_reports_a_taken_port_clearly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = run(&[
        "serve",
        "--listen",
        &addr,
        "--store",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(stderr.contains("--listen"), "the flag is named: {stderr}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "a failed start leaves the store untouched"
    );
}

/// With no clients, SIGTERM ends `serve` within a second (it takes milliseconds; the grace
/// period is 10 s), and at the default log level (no RUST_LOG) it says where it listens and
/// that it shut down.
#[test]
fn serve_exits_promptly_and_says_so_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Proc::start_default_level(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--ha-listen",
        "127.0.0.1:0",
        "--store",
        dir.path().to_str().unwrap(),
        "--segment-size",
        "65536",
    ]);
    serve.line("serving");
    let asked = Instant::now();
    let (code, mut serve) = serve.terminate();
    let took = asked.elapsed();
    eprintln!("serve exited {took:?} after SIGTERM");
    assert_eq!(code, 0);
    assert!(
        took < Duration::from_secs(1),
        "took {took:?}: more than the 1 s a newcomer expects (a grace period waited out?)"
    );
    serve.line("shutdown complete");
}

/// Zero and out-of-range values are refused before anything starts, naming the flag.
#[test]
fn bad_values_are_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    for (flag, value) in [
        ("--idle-timeout-secs", "0"),
        ("--channel-expiry-secs", "0"),
        ("--scan-interval-ms", "0"),
        ("--heartbeat-workers", "0"),
        ("--heartbeat-queue", "0"),
        ("--max-channels", "0"),
        ("--max-groups-per-channel", "0"),
        ("--segment-size", "1"),
        ("--listen", "no-such-host.invalid:10911"),
    ] {
        let (code, stderr) = run(&["serve", "--store", store, flag, value]);
        assert_eq!(code, Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
    }
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let (code, stderr) = run(&["serve", "--store", file.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("not a directory"), "{stderr}");
    for (flag, value) in [
        ("--probes", "0"),
        ("--probes", "18446744073709551615"),
        ("--consumers", "0"),
        ("--close-rate", "0"),
    ] {
        let (code, stderr) = run(&["replay", "all", flag, value]);
        assert_eq!(code, Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
    }
    let (code, stderr) = run(&["replay", "all", "--out", file.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--out"), "{stderr}");
    assert!(
        stderr.contains("not a directory") && stderr.contains("give a new or existing directory"),
        "what is wrong and what to do: {stderr}"
    );
    assert!(!stderr.contains("os error 17"), "{stderr}");
    // A path through a file cannot become a directory either; said before anything runs.
    let under_file = file.join("out");
    let (code, stderr) = run(&["replay", "all", "--out", under_file.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot create the directory"), "{stderr}");
}

/// Absurd sizes and negative broker ids are refused before anything starts (no store is
/// created, no panic after it was), naming the option and the range it takes.
#[test]
fn absurd_values_are_refused_naming_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let huge = u64::MAX.to_string();
    let serve = |flag: &'static str, value: &str| -> Vec<String> {
        ["serve", "--store", store, flag, value]
            .map(str::to_owned)
            .to_vec()
    };
    for (args, flag, range) in [
        (
            serve("--heartbeat-workers", &huge),
            "--heartbeat-workers",
            "1..=1024",
        ),
        (
            serve("--heartbeat-queue", &huge),
            "--heartbeat-queue",
            "1..=1000000",
        ),
        (
            serve("--max-channels", &huge),
            "--max-channels",
            "1..=16777216",
        ),
        (
            serve("--max-groups-per-channel", &huge),
            "--max-groups-per-channel",
            "1..=1000000",
        ),
        (
            serve("--broker-id=-5", "--listen=127.0.0.1:0"),
            "--broker-id",
            "0..=9223372036854775807",
        ),
        (
            serve("--broker-id", "-5"),
            "--broker-id",
            "0..=9223372036854775807",
        ),
        (
            [
                "slave",
                "--master",
                "127.0.0.1:10912",
                "--store",
                store,
                "--broker-id=-5",
            ]
            .map(str::to_owned)
            .to_vec(),
            "--broker-id",
            "0..=9223372036854775807",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stderr) = run(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
        assert!(stderr.contains(range), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            !std::path::Path::new(store).exists(),
            "{args:?} created the store before refusing"
        );
    }
}

/// Ctrl-C stops a replay with what was measured, says INTERRUPTED and exits 130; a side that
/// never ran shows `-` (null in report.json), not zeros, and no side is judged PASS or FAIL.
/// One replay is stopped during ha-probes' own storm, the other during stale-groups' own side.
#[test]
fn an_interrupted_replay_says_so() {
    let out = tempfile::tempdir().unwrap();
    let spawn = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rmq-lifecycle"))
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut children = [
        spawn(&["replay", "all"]),
        spawn(&[
            "replay",
            "stale-groups",
            "--groups",
            "100000",
            "--consumers",
            "8",
            "--out",
            out.path().to_str().unwrap(),
        ]),
    ];
    std::thread::sleep(Duration::from_millis(1500));
    for child in &children {
        signal(child, "-INT");
    }
    let [all, groups] = children.each_mut().map(|child| {
        let status = exit_within(child, Duration::from_secs(40), "after SIGINT to the replay");
        let mut stdout = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        assert_eq!(status.code(), Some(130), "{stdout}");
        assert!(stdout.contains("replay: INTERRUPTED"), "{stdout}");
        for judged in ["FAIL", "PASS", "0.00e0", "0.00 ms"] {
            assert!(!stdout.contains(judged), "{judged} in\n{stdout}");
        }
        stdout
    });
    // The upstream column of a row: its last field.
    let upstream_of = |stdout: &str, what: &str| {
        let line = stdout
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {what:?} row in\n{stdout}"));
        line.split_whitespace().last().unwrap().to_owned()
    };
    assert!(all.contains("verdict: ours interrupted after "), "{all}");
    assert!(
        all.contains("replay stale-groups: not run (interrupted)"),
        "{all}"
    );
    assert!(
        all.contains("upstream emulation not run (interrupted)"),
        "{all}"
    );
    for what in [
        "HA connections after the storm",
        "of which dead",
        "highest ack vs master max offset",
    ] {
        assert_eq!(upstream_of(&all, what), "-", "{what}:\n{all}");
    }
    assert!(groups.contains("verdict: ours interrupted "), "{groups}");
    assert!(
        groups.contains("upstream emulation not run (interrupted)"),
        "{groups}"
    );
    for what in [
        "groups created",
        "heartbeat p50",
        "heartbeat p99",
        "heartbeat max",
        "missed the 3 s deadline",
        "wall time",
    ] {
        assert_eq!(upstream_of(&groups, what), "-", "{what}:\n{groups}");
    }
    let json = std::fs::read_to_string(out.path().join("report.json")).unwrap();
    let compact: String = json.split_whitespace().collect();
    for field in [
        "\"passed\":null",
        "\"interrupted\":true",
        "\"upstream\":null",
    ] {
        assert!(compact.contains(field), "no {field} in {json}");
    }
}

/// Host names resolve; a slave pointed at a port nobody serves says so at the default level.
#[test]
fn host_names_resolve_and_a_lost_slave_says_so() {
    let (mdir, sdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut serve = Proc::start_default_level(&[
        "serve",
        "--listen",
        "localhost:0",
        "--ha-listen",
        "localhost:0",
        "--store",
        mdir.path().to_str().unwrap(),
        "--segment-size",
        "65536",
    ]);
    serve.line("serving");
    let closed = format!("127.0.0.1:{}", free_port());
    let mut slave = Proc::start_default_level(&[
        "slave",
        "--master",
        &closed,
        "--store",
        sdir.path().to_str().unwrap(),
        "--segment-size",
        "65536",
    ]);
    let line = slave.line("HA slave not replicating");
    assert!(line.contains(&closed), "{line}");
    let (code, _) = slave.terminate();
    assert_eq!(code, 0);
    let (code, _) = serve.terminate();
    assert_eq!(code, 0);
}

/// A slave pointed at `serve`'s metrics port (an HTTP answer) or client port (closed at once,
/// every time) says at the default level that the peer does not speak the HA protocol and which
/// port it wants. The client port's hint needs ten closes in a row, about 21 s of backoff.
#[test]
fn a_slave_at_a_port_that_is_not_ha_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut serve = Proc::start_default_level(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--ha-listen",
        "127.0.0.1:0",
        "--metrics",
        &metrics,
        "--store",
        dir.path().join("master").to_str().unwrap(),
        "--segment-size",
        "65536",
    ]);
    let listen = field(&serve.line("serving"), "listen").to_string();
    let slave = |to: &str, store: &str| {
        Proc::start_default_level(&[
            "slave",
            "--master",
            to,
            "--store",
            dir.path().join(store).to_str().unwrap(),
            "--segment-size",
            "65536",
        ])
    };
    let (mut at_metrics, mut at_client) = (slave(&metrics, "s1"), slave(&listen, "s2"));
    let needle = "the peer does not speak the HA protocol";
    let line = at_metrics.line(needle);
    assert!(line.contains(&metrics), "{line}");
    assert!(line.contains("--ha-listen"), "{line}");
    let line = at_client.line_within(needle, Duration::from_secs(60));
    assert!(line.contains(&listen), "{line}");
    for p in [at_metrics, at_client, serve] {
        let (code, _) = p.terminate();
        assert_eq!(code, 0);
    }
}

/// Failover by signal: `serve --demote-to` turns into an auto-switch slave of the new master on
/// its own store on SIGUSR2; SIGUSR1 promotes the old slave, beginning `--epoch`; the old master
/// then reports to it. Restarted as a `slave` process on its store, it reports again.
#[test]
fn sigusr2_demotes_a_master_and_sigusr1_promotes_its_slave() {
    let (adir, bdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let seg = "65536";
    let b_promoted_ha = format!("127.0.0.1:{}", free_port());
    let mut a = Proc::start_default_level(&[
        "serve",
        "--ha-mode",
        "auto-switch",
        "--listen",
        "127.0.0.1:0",
        "--ha-listen",
        "127.0.0.1:0",
        "--demote-to",
        &b_promoted_ha,
        "--broker-id",
        "1",
        "--store",
        adir.path().to_str().unwrap(),
        "--segment-size",
        seg,
    ]);
    let a_ha = field(&a.line("serving"), "ha_listen").to_string();
    let mut b = Proc::start_default_level(&[
        "slave",
        "--ha-mode",
        "auto-switch",
        "--broker-id",
        "2",
        "--master",
        &a_ha,
        "--listen",
        "127.0.0.1:0",
        "--ha-listen",
        &b_promoted_ha,
        "--epoch",
        "2",
        "--store",
        bdir.path().to_str().unwrap(),
        "--segment-size",
        seg,
    ]);
    a.line("HA slave reported");
    signal(&a.child, "-USR2");
    a.line("demoting this master to a slave");
    a.line("shutdown complete");
    signal(&b.child, "-USR1");
    b.line("promoting this slave to master");
    let began = b.line("HA master began an epoch");
    assert!(began.contains("epoch=2"), "{began}");
    b.line("HA slave reported");
    let (code, _) = a.terminate();
    assert_eq!(code, 0);
    let a = Proc::start_default_level(&[
        "slave",
        "--ha-mode",
        "auto-switch",
        "--broker-id",
        "1",
        "--master",
        &b_promoted_ha,
        "--store",
        adir.path().to_str().unwrap(),
        "--segment-size",
        seg,
    ]);
    b.line("HA slave reported");
    let (code, _) = a.terminate();
    assert_eq!(code, 0);
    let (code, _) = b.terminate();
    assert_eq!(code, 0);
}

/// A master store of `records` 1000-byte records in `segment`-byte segments, made before
/// `serve` opens it; returns its end.
fn filled_store(dir: &std::path::Path, segment: u64, records: usize) -> u64 {
    use rmq_lifecycle::store::{CommitLog, FlushPolicy, StoreConfig};
    let log = CommitLog::open(StoreConfig {
        dir: dir.to_owned(),
        segment_size: segment,
        flush: FlushPolicy::Manual,
    })
    .unwrap();
    for i in 0..records {
        log.append(&[i as u8; 1000]).unwrap();
    }
    log.flush().unwrap();
    log.max_offset()
}

/// A stopped slave's store: its first and last offset.
fn store_bounds(dir: &std::path::Path, segment: u64) -> (u64, u64) {
    use rmq_lifecycle::store::{CommitLog, FlushPolicy, StoreConfig};
    let log = CommitLog::open(StoreConfig {
        dir: dir.to_owned(),
        segment_size: segment,
        flush: FlushPolicy::Manual,
    })
    .unwrap();
    (log.min_offset(), log.max_offset())
}

/// Issue "Replication that cannot diverge", item 5: a slave whose segment size is not its
/// master's asks the master's client port (GET_BROKER_CONFIG 26) before it connects and stops
/// there, naming both sizes and both addresses; the master names both sizes too; nothing is
/// appended. Without the question (the old behaviour) the slave would append the master's first
/// 65536 bytes before the segment ends disagree.
#[test]
fn a_slave_with_another_segment_size_is_refused_at_connect() {
    let (mdir, sdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    filled_store(mdir.path(), 65536, 100);
    let mut serve = Proc::start_default_level(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--ha-listen",
        "127.0.0.1:0",
        "--store",
        mdir.path().to_str().unwrap(),
    ]);
    let line = serve.line("serving");
    let (listen, ha) = (field(&line, "listen"), field(&line, "ha_listen"));
    let mut slave = Proc::start_default_level(&[
        "slave",
        "--master",
        &ha.to_string(),
        "--master-broker",
        &listen.to_string(),
        "--store",
        sdir.path().to_str().unwrap(),
        "--segment-size",
        "131072",
    ]);
    let refused = slave.line("segment sizes differ");
    for needle in [
        "65536-byte segments".to_owned(),
        "131072-byte ones".to_owned(),
        listen.to_string(),
        ha.to_string(),
    ] {
        assert!(refused.contains(&needle), "{needle:?} not in {refused}");
    }
    assert!(refused.contains("ERROR"), "{refused}");
    let named = serve.line("another segment size");
    assert!(
        named.contains("WARN") && named.contains("131072") && named.contains("65536"),
        "{named}"
    );
    let (code, _) = slave.terminate();
    assert_eq!(code, 0);
    assert_eq!(
        store_bounds(sdir.path(), 131072),
        (0, 0),
        "nothing appended"
    );
    let (code, _) = serve.terminate();
    assert_eq!(code, 0);
}

/// A master client port that does not answer 26 (here the HA port itself, which takes the
/// request for a bad report and closes) is warned about once, and the slave replicates anyway.
/// It also shows the classic start: the master's log spans three 65536-byte segments, and the
/// empty slave holds exactly its last one.
#[test]
fn a_slave_whose_master_does_not_answer_26_warns_and_replicates() {
    let (mdir, sdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let end = filled_store(mdir.path(), 65536, 150);
    let base = end - end % 65536;
    assert!(base >= 2 * 65536, "{end}");
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut serve = Proc::start_default_level(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--ha-listen",
        "127.0.0.1:0",
        "--metrics",
        &metrics,
        "--store",
        mdir.path().to_str().unwrap(),
    ]);
    let ha = field(&serve.line("serving"), "ha_listen");
    let mut slave = Proc::start_default_level(&[
        "slave",
        "--master",
        &ha.to_string(),
        "--master-broker",
        &ha.to_string(),
        "--store",
        sdir.path().to_str().unwrap(),
        "--segment-size",
        "65536",
    ]);
    let warned = slave.line("could not check the master's segment size at connect");
    assert!(warned.contains("WARN"), "{warned}");
    // Replicated to the master's end: its acked-offset gauge says so.
    let metrics: SocketAddr = metrics.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let acked = labelled_metric(metrics, "rmq_ha_slave_acked_offset{");
        if acked == Some(end as f64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slave acked {acked:?}, not {end}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, _) = slave.terminate();
    assert_eq!(code, 0);
    assert_eq!(store_bounds(sdir.path(), 65536), (base, end));
    let (code, _) = serve.terminate();
    assert_eq!(code, 0);
}

/// The value of the first metric line starting with `prefix` (a name and its opening brace).
fn labelled_metric(addr: SocketAddr, prefix: &str) -> Option<f64> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
}

#[test]
fn demote_to_needs_auto_switch() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = run(&[
        "serve",
        "--demote-to",
        "127.0.0.1:10912",
        "--store",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("--demote-to needs --ha-mode auto-switch"),
        "{stderr}"
    );
}

/// Sends `request` and reads its response.
/// A client connection: requests answered in order, the broker's own requests (a consumer's
/// NOTIFY_CONSUMER_IDS_CHANGED) read past, bytes after a frame kept for the next, and every read
/// bounded by a timeout.
struct Client {
    stream: TcpStream,
    buf: bytes::BytesMut,
    decoder: FrameDecoder,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client {
            stream,
            buf: bytes::BytesMut::new(),
            decoder: FrameDecoder::default(),
        }
    }

    /// Sends `request` and returns its response.
    fn call(&mut self, request: &RemotingCommand) -> RemotingCommand {
        self.stream.write_all(&request.to_bytes().unwrap()).unwrap();
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                if frame.is_response() {
                    return frame;
                }
                continue;
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .stream
                .read(&mut chunk)
                .expect("a response within 10 s");
            assert!(n > 0, "server closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// `serve --model-trace --ha-model-trace`: client churn (producers in `IotRuleEngine-<n>` groups
/// that unregister or just go, consumers sharing a group, one left to expire) beside a slave and
/// a storm of HA port probes (closing at once, timestamp text, part of a report, an offset beyond
/// the log); the traces land in `target/model-traces/{client,ha}/serve/` for `.ci/run`'s trace
/// validation.
#[test]
fn serve_records_a_model_trace_under_client_churn_and_probes() {
    let store = tempfile::tempdir().unwrap();
    let slave_store = tempfile::tempdir().unwrap();
    let traces = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/model-traces");
    let (dir, ha_dir) = (traces.join("client/serve"), traces.join("ha/serve"));
    for d in [&dir, &ha_dir] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).unwrap();
    }
    let trace = dir.join("serve.jsonl");
    let ha_trace = ha_dir.join("serve.jsonl");
    let mut serve = Proc::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--ha-listen",
        "127.0.0.1:0",
        "--store",
        store.path().to_str().unwrap(),
        "--segment-size",
        "65536",
        "--channel-expiry-secs",
        "1",
        "--scan-interval-ms",
        "200",
        "--model-trace",
        trace.to_str().unwrap(),
        "--ha-model-trace",
        ha_trace.to_str().unwrap(),
    ]);
    let line = serve.line("serving");
    let (listen, ha) = (field(&line, "listen"), field(&line, "ha_listen"));
    // A slave replicating, until the master shuts down under it.
    let slave = Proc::start(&[
        "slave",
        "--master",
        &ha.to_string(),
        "--store",
        slave_store.path().to_str().unwrap(),
        "--segment-size",
        "65536",
    ]);
    serve.line("HA slave reported");
    let workers: Vec<_> = (0..6)
        .map(|w| {
            std::thread::spawn(move || {
                for round in 0..5 {
                    let client = format!("client-{w}-{round}");
                    let mut s = Client::connect(listen);
                    let group = format!("IotRuleEngine-{}", w * 100 + round);
                    let mut data = HeartbeatData::producers(client.clone(), [group.as_str()]);
                    data.consumer_data_set = vec![rmq_lifecycle::core::heartbeat::ConsumerData {
                        group_name: "cg".into(),
                        ..Default::default()
                    }];
                    let hb = RemotingCommand {
                        body: Some(data.to_json().into()),
                        ..RemotingCommand::request(code::HEART_BEAT)
                    };
                    assert_eq!(s.call(&hb).code, code::SUCCESS);
                    assert_eq!(s.call(&hb).code, code::SUCCESS);
                    if round % 2 == 0 {
                        let mut unregister = RemotingCommand::request(code::UNREGISTER_CLIENT);
                        unregister.ext_fields.insert("clientID", &client);
                        unregister.ext_fields.insert("producerGroup", &group);
                        assert_eq!(s.call(&unregister).code, code::SUCCESS);
                    }
                    if w == 0 && round == 4 {
                        // Left idle past the expiry: the scan expires its memberships.
                        std::thread::sleep(Duration::from_millis(2_500));
                    }
                    drop(s);
                }
            })
        })
        .collect();
    for round in 0..40 {
        let mut probe = TcpStream::connect(ha).unwrap();
        match round % 4 {
            0 => {}
            1 => probe.write_all(b"2024-10-30 16:42:30").unwrap(),
            2 => probe.write_all(&[0, 0, 0]).unwrap(),
            _ => probe.write_all(&i64::MAX.to_be_bytes()).unwrap(),
        }
    }
    for w in workers {
        w.join().unwrap();
    }
    let (code, mut serve) = serve.terminate();
    assert_eq!(code, 0);
    let (code, _) = slave.terminate();
    assert_eq!(code, 0, "slave exit code");
    for _ in 0..2 {
        let done = serve.line("model trace:");
        assert!(!done.contains(" 0 events"), "{done}");
    }
    let ha_text = std::fs::read_to_string(&ha_trace).unwrap();
    for needle in [
        "\"Ack\"",
        "\"Protocol\"",
        "\"PeerClosed\"",
        "\"Drain\"",
        "\"CloseAll\"",
        "\"Close\"",
    ] {
        assert!(
            ha_text.contains(needle),
            "no {needle} in {}",
            ha_trace.display()
        );
    }
    let text = std::fs::read_to_string(&trace).unwrap();
    for action in [
        "HeartbeatStart",
        "Unregister",
        "ChannelClosedStart",
        "ScanInactiveExpire",
    ] {
        assert!(
            text.contains(&format!("\"{action}\"")),
            "no {action} in {}",
            trace.display()
        );
    }
}

/// [`run_both`]'s exit code and stdout.
fn run_stdout(args: &[&str]) -> (Option<i32>, String) {
    let (code, stdout, _) = run_both(args);
    (code, stdout)
}

/// Every file under `dir` (quarantine/ included) with its length.
fn files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push((path.clone(), std::fs::metadata(&path).unwrap().len()));
        }
    }
    out.sort();
    out
}

/// `store verify` says a sound store is sound (exit 0) and names a flipped bit in a sealed
/// segment by file and offset (exit 1); `store repair` then moves the damage and every later
/// segment into quarantine/, deleting nothing, and the store verifies sound again.
#[test]
fn store_verify_names_damage_and_repair_quarantines_it() {
    use rmq_lifecycle::store::{CommitLog, FlushPolicy, StoreConfig};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    {
        let log = CommitLog::open(StoreConfig {
            dir: dir.path().to_owned(),
            segment_size: 64 * 1024,
            flush: FlushPolicy::Manual,
        })
        .unwrap();
        for i in 0..200u32 {
            log.append(&vec![i as u8; 1000]).unwrap();
        }
        log.flush().unwrap();
    }
    let (code, out) = run_stdout(&["store", "verify", path]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("sound"), "{out}");

    let segments: Vec<_> = files(dir.path())
        .into_iter()
        .filter(|(p, _)| p.file_name().unwrap().len() == 20)
        .collect();
    assert!(segments.len() >= 3, "{segments:?}");
    let first = &segments[0].0;
    let mut bytes = std::fs::read(first).unwrap();
    bytes[30_000] ^= 0x40;
    std::fs::write(first, &bytes).unwrap();
    // The log's bytes, wherever they are (the store's metadata files, such as the checkpoint,
    // change with a repair).
    let log_bytes = |files: &[(std::path::PathBuf, u64)]| -> u64 {
        let log_file = |p: &std::path::Path| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.len() >= 20 && name[..20].bytes().all(|b| b.is_ascii_digit())
        };
        files
            .iter()
            .filter(|(p, _)| log_file(p))
            .map(|(_, len)| len)
            .sum()
    };
    let before = log_bytes(&files(dir.path()));

    let (code, out) = run_stdout(&["store", "verify", path]);
    assert_eq!(code, Some(1), "{out}");
    let name = first.file_name().unwrap().to_str().unwrap();
    assert!(
        out.contains("problem at offset") && out.contains(name),
        "{out}"
    );

    let (code, out) = run_stdout(&["store", "repair", path]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("moved to quarantine"), "{out}");
    let after = files(dir.path());
    let quarantined = after
        .iter()
        .filter(|(p, _)| p.starts_with(dir.path().join("quarantine")));
    assert!(quarantined.count() >= segments.len() - 1, "{after:?}");
    let after_bytes = log_bytes(&after);
    assert_eq!(after_bytes, before, "repair lost log bytes: {after:?}");

    let (code, out) = run_stdout(&["store", "verify", path]);
    assert_eq!(code, Some(0), "{out}");
}
