//! The failover world: three replicas of one auto-switch commit log and an election
//! controller, under seeded master crashes, double failovers, a rejoining replica crashed while
//! it truncates, slave crashes and partitions.
//!
//! Each replica host runs the shipped `net::server::serve` (as master, with the epoch the
//! controller hands out) or `net::server::replicate` (as slave of the current master), and
//! switches when the controller changes its role: that is how a slave is promoted and an old
//! master rejoins. The controller is the test's (this crate has none): when the master is gone
//! it elects the most up-to-date running replica by (last epoch, max offset), as upstream's
//! `DefaultElectPolicy` orders them and as `models/Replication.tla` requires.
//!
//! Checked: `NoConfirmedLost` (every offset `wait_for_replication` confirmed is in the new master's
//! log with the same bytes, at every election and at the end), and at the end, after the heal,
//! `SlaveIsPrefix` and `Settles` (every replica byte-identical to the master, with its epochs).

use super::links::Links;
use super::rng::Rng;
use rmq_lifecycle::core::autoswitch::SlaveHello;
use rmq_lifecycle::core::ha::{HaConfig, HaMode};
use rmq_lifecycle::core::model_trace;
use rmq_lifecycle::net::ha::{MasterConfig, MasterHandle, SlaveConfig, SlaveFaults};
use rmq_lifecycle::net::remoting::RemotingConfig;
use rmq_lifecycle::net::server::{self, ReplicaConfig, ServeConfig};
use rmq_lifecycle::store::{CommitLog, FlushPolicy, StoreConfig};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Weak};
use std::time::Duration;
use turmoil::fs::FsHandle;

/// Faults (and elections) happen before this; then every link heals and every replica runs.
const FAULTS_END: Duration = Duration::from_secs(25);
/// The settled check.
const SETTLED: Duration = Duration::from_secs(40);
const END: Duration = Duration::from_secs(43);
const CLIENT_PORT: u16 = 10911;
const HA_PORT: u16 = 10912;
const STORE: &str = "/store/commitlog";
pub(crate) const REPLICAS: [&str; 3] = ["r1", "r2", "r3"];

/// What a run plants or changes, for the tests that must catch it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Variant {
    /// Slaves keep their whole log at the handshake (`SlaveFaults::skip_truncation`).
    pub(crate) skip_truncation: bool,
    /// The controller elects the least up-to-date running replica.
    pub(crate) elect_least_up_to_date: bool,
    /// The controller notices a master crash as upstream's does at its defaults
    /// ([`upstream_election_at`]) instead of after the schedule's chosen delay.
    pub(crate) upstream_timeouts: bool,
    /// A failover trace drives the world ([`replay_trace`]): masters append only when a step
    /// says so.
    pub(crate) scripted: bool,
}

/// Upstream's controller defaults (RocketMQ 5.x `BrokerConfig` / `ControllerConfig`): a broker
/// heartbeats the controller every `brokerHeartbeatInterval` (1 s); the controller scans every
/// `scanNotActiveBrokerInterval` (5 s) and takes a broker whose last heartbeat is more than
/// `controllerHeartBeatTimeoutMills` (10 s) old as gone, and then elects; the elected broker is
/// told at once (`notifyBrokerRoleChanged`, on by default).
const UPSTREAM_HEARTBEAT_MS: u64 = 1_000;
const UPSTREAM_SCAN_MS: u64 = 5_000;
const UPSTREAM_TIMEOUT_MS: u64 = 10_000;

/// When upstream's controller, started with the world, elects after a master crash at
/// `crashed_at` ms: at the first scan more than the timeout after the last heartbeat.
pub(crate) fn upstream_election_at(crashed_at: u64) -> u64 {
    let last_heartbeat = crashed_at / UPSTREAM_HEARTBEAT_MS * UPSTREAM_HEARTBEAT_MS;
    ((last_heartbeat + UPSTREAM_TIMEOUT_MS) / UPSTREAM_SCAN_MS + 1) * UPSTREAM_SCAN_MS
}

/// One scheduled event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    /// Crash whichever replica is master now (and elect after `elect_after`).
    CrashMaster {
        elect_after: Duration,
    },
    /// Demote the master now (it shuts down cleanly, its last bytes synced) and elect the most
    /// up-to-date of the others: the old master rejoins with a tail the new one never had.
    Demote,
    /// Restart a replica that is down (it rejoins as a slave of the current master).
    RestartDown,
    /// Crash the replica that restarted last (it is in its handshake or truncation).
    CrashRejoined,
    /// Crash a slave (one that is not the only other replica up).
    CrashSlave,
    Partition(&'static str, &'static str),
    Repair(&'static str, &'static str),
}

/// The seed's events: one or two failovers (a double failover: the new master crashes too),
/// each old master restarting as a slave, sometimes crashed again during its rejoin, slave
/// crashes and partitions; never more than one replica down at once.
pub(crate) fn schedule(seed: u64) -> Vec<(Duration, Event)> {
    let mut rng = Rng::new(seed ^ 0xFA11_0BE5);
    let mut out = Vec::new();
    let mut t = rng.range(2_000, 5_000);
    let failovers = 1 + rng.below(2);
    for _ in 0..failovers {
        if rng.below(3) == 0 {
            // A slave falls behind first, so the demoted master has bytes it must cut.
            let slave = *rng.pick(&REPLICAS[1..]);
            out.push((ms(t), Event::Partition("r1", slave)));
            t += rng.range(300, 1_500);
            out.push((ms(t), Event::Demote));
            out.push((ms(t + rng.range(500, 2_000)), Event::Repair("r1", slave)));
            t += rng.range(2_000, 4_000);
            continue;
        }
        let elect_after = Duration::from_millis(rng.range(200, 2_000));
        out.push((ms(t), Event::CrashMaster { elect_after }));
        t += elect_after.as_millis() as u64 + rng.range(500, 3_000);
        out.push((ms(t), Event::RestartDown));
        if rng.below(3) == 0 {
            // In the middle of its handshake and truncation.
            t += rng.range(5, 200);
            out.push((ms(t), Event::CrashRejoined));
            t += rng.range(300, 1_500);
            out.push((ms(t), Event::RestartDown));
        }
        t += rng.range(1_500, 5_000);
    }
    if rng.below(2) == 0 && t + 3_000 < FAULTS_END.as_millis() as u64 {
        out.push((ms(t), Event::CrashSlave));
        t += rng.range(500, 2_000);
        out.push((ms(t), Event::RestartDown));
    }
    for _ in 0..rng.below(4) {
        let a = *rng.pick(&REPLICAS);
        let b = *rng.pick(&REPLICAS);
        if a == b {
            continue;
        }
        let at = rng.range(500, FAULTS_END.as_millis() as u64 - 2_000);
        out.push((ms(at), Event::Partition(a, b)));
        out.push((ms(at + rng.range(300, 3_000)), Event::Repair(a, b)));
    }
    out.sort_by_key(|(at, _)| *at);
    out
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A replica's role, as the controller set it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Master {
        epoch: u32,
    },
    Slave {
        of: &'static str,
    },
    /// A demoted master, stopped, waiting for the controller to name its new master.
    Idle,
}

/// What a running replica publishes (weak: the host owns its components).
struct View {
    log: Weak<CommitLog>,
    fs: FsHandle,
}

#[derive(Default)]
struct Env {
    seed: u64,
    variant: Variant,
    roles: RefCell<BTreeMap<&'static str, (Role, u32)>>,
    views: RefCell<BTreeMap<&'static str, View>>,
    /// The replica whose master incarnation is serving now.
    serving: Cell<Option<&'static str>>,
    /// Scripted runs: the serving master's handle, for the trace's appends.
    handles: RefCell<BTreeMap<&'static str, MasterHandle>>,
    stop: Cell<bool>,
    writes_stop: Cell<bool>,
    /// `(offset, digest of [0, offset))` that `wait_for_replication` confirmed.
    confirmed: RefCell<Vec<(u64, u32)>>,
    violations: RefCell<Vec<String>>,
    trace: RefCell<Vec<String>>,
    set_aside: Cell<u64>,
    /// The master's max offset at the settled check.
    master_bytes: Cell<u64>,
}

impl Env {
    fn note(&self, line: String) {
        self.trace.borrow_mut().push(line);
    }

    fn violate(&self, invariant: &str, detail: String) {
        let mut v = self.violations.borrow_mut();
        if !v.iter().any(|l| l.starts_with(invariant)) {
            v.push(format!("{invariant} violated: {detail}"));
        }
    }

    fn role(&self, name: &'static str) -> (Role, u32) {
        self.roles.borrow()[name]
    }

    fn set_role(&self, name: &'static str, role: Role) {
        let mut roles = self.roles.borrow_mut();
        let generation = roles.get(name).map_or(0, |r| r.1) + 1;
        roles.insert(name, (role, generation));
    }
}

/// The outcome of one seed.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) seed: u64,
    pub(crate) schedule: Vec<(Duration, Event)>,
    pub(crate) violations: Vec<String>,
    pub(crate) trace: Vec<String>,
    pub(crate) simulated: Duration,
    /// Elections held.
    pub(crate) elections: u32,
    /// Simulated milliseconds from each master crash to its successor serving (demotions are
    /// not counted: the controller elects at once).
    pub(crate) failover_ms: Vec<u64>,
    /// Milliseconds from each election (crash or demotion) to the successor serving: the part
    /// that is this crate's (stopping the slave, opening the store, beginning the epoch, binding).
    pub(crate) promote_ms: Vec<u64>,
    /// Offsets confirmed by `wait_for_replication`.
    pub(crate) confirmed: usize,
    /// The final master's max offset.
    pub(crate) master_bytes: u64,
    /// Bytes the replicas set aside in their quarantines (truncations and torn tails).
    pub(crate) set_aside: u64,
    /// Hash of the trace, the confirmed offsets and the verdict: two runs of a seed must agree.
    pub(crate) fingerprint: u64,
}

fn ha_config() -> HaConfig {
    HaConfig {
        heartbeat_ms: 1_000,
        housekeeping_ms: 4_000,
        segment_size: 16 * 1024,
        ..HaConfig::default()
    }
}

fn store() -> StoreConfig {
    StoreConfig {
        dir: STORE.into(),
        segment_size: 16 * 1024,
        flush: FlushPolicy::Manual,
    }
}

async fn until(cond: impl Fn() -> bool) {
    while !cond() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One replica: runs its current role until the controller changes it (or the world stops).
async fn replica_host(env: Rc<Env>, name: &'static str) -> turmoil::Result {
    let broker_id = REPLICAS.iter().position(|r| *r == name).unwrap() as i64 + 1;
    loop {
        let (role, generation) = env.role(name);
        let e = env.clone();
        let changed = move || e.stop.get() || e.role(name).1 != generation;
        match role {
            Role::Master { epoch } => run_master(&env, name, epoch, changed).await,
            Role::Slave { of } => run_slave(&env, name, of, broker_id, changed).await,
            Role::Idle => until(changed).await,
        }
        env.views.borrow_mut().remove(name);
        if env.stop.get() {
            return Ok(());
        }
    }
}

async fn run_master(env: &Rc<Env>, name: &'static str, epoch: u32, changed: impl Fn() -> bool) {
    let config = ServeConfig {
        remoting: RemotingConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], CLIENT_PORT)),
            ..RemotingConfig::default()
        },
        registry: Default::default(),
        notify: Some(Default::default()),
        master: MasterConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], HA_PORT)),
            ha: ha_config(),
            mode: HaMode::AutoSwitch,
            epoch: Some(epoch),
            ..MasterConfig::default()
        },
        store: store(),
        send: Default::default(),
        metrics: None,
        grace: Duration::from_secs(2),
    };
    let pub_env = env.clone();
    let result = server::serve(config, until(changed), move |broker| {
        let log = broker.log().clone();
        pub_env.views.borrow_mut().insert(
            name,
            View {
                log: Arc::downgrade(&log),
                fs: FsHandle::current(),
            },
        );
        pub_env.serving.set(Some(name));
        pub_env.note(format!(
            "{name} serves epoch {epoch} from {} (epochs {:?})",
            log.max_offset(),
            log.epochs()
        ));
        let handle = broker.master().clone();
        if pub_env.variant.scripted {
            pub_env.handles.borrow_mut().insert(name, handle);
            return;
        }
        let env = pub_env.clone();
        let mut rng = Rng::new(env.seed ^ u64::from(epoch) << 40);
        tokio::task::spawn_local(async move {
            let mut n = 0u64;
            while !env.writes_stop.get() && env.serving.get() == Some(name) {
                tokio::time::sleep(Duration::from_millis(rng.range(30, 200))).await;
                if env.serving.get() != Some(name) {
                    break;
                }
                n += 1;
                let len = rng.range(40, 900) as usize;
                let payload: Vec<u8> = (0..len).map(|i| (n as usize * 7 + i) as u8).collect();
                let Ok(at) = handle.append(&payload) else {
                    break;
                };
                if n % 3 == 0 {
                    let wait = Duration::from_millis(rng.range(300, 2_000));
                    if handle.wait_for_replication(at.end, 1, wait).await.is_ok() {
                        match handle.log().digest(0, at.end) {
                            Ok(d) => env.confirmed.borrow_mut().push((at.end, d)),
                            Err(e) => env.violate("Readable", format!("digest: {e}")),
                        }
                    }
                }
            }
        });
    })
    .await;
    // Its role changed (a crash never gets here): the demoted master is a slave from now on.
    // At the run's end it is only stopped.
    if !env.stop.get() {
        model_trace::replication_step(|seq| {
            tracing::trace!(target: model_trace::REPLICATION_TARGET, seq, action = "Demote", r = name);
        });
    }
    if env.serving.get() == Some(name) {
        env.serving.set(None);
    }
    env.handles.borrow_mut().remove(name);
    if let Err(e) = result {
        env.violate(
            "MasterStarts",
            format!("{name} as master of epoch {epoch}: {e}"),
        );
    }
}

async fn run_slave(
    env: &Rc<Env>,
    name: &'static str,
    of: &'static str,
    broker_id: i64,
    changed: impl Fn() -> bool,
) {
    let config = ReplicaConfig {
        slave: SlaveConfig {
            ha: ha_config(),
            mode: HaMode::AutoSwitch,
            hello: SlaveHello {
                broker_id,
                ..SlaveHello::default()
            },
            faults: SlaveFaults {
                skip_truncation: env.variant.skip_truncation,
                ..SlaveFaults::default()
            },
            connect_timeout: Duration::from_secs(1),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ..SlaveConfig::new(SocketAddr::new(turmoil::lookup(of), HA_PORT))
        },
        store: store(),
        grace: Duration::from_secs(2),
    };
    let pub_env = env.clone();
    let result = server::replicate(config, until(changed), move |replica| {
        pub_env.views.borrow_mut().insert(
            name,
            View {
                log: Arc::downgrade(replica.log()),
                fs: FsHandle::current(),
            },
        );
        pub_env.note(format!(
            "{name} replicates from {of} at {} (epochs {:?})",
            replica.log().max_offset(),
            replica.log().epochs()
        ));
    })
    .await;
    if let Err(e) = result {
        env.violate("SlaveStarts", format!("{name} as slave of {of}: {e}"));
    }
}

/// (last epoch, max offset) of a running replica, read in its own filesystem.
fn standing(env: &Env, name: &'static str) -> Option<(u32, u64)> {
    let views = env.views.borrow();
    let log = views.get(name)?.log.upgrade()?;
    Some((log.epochs().last().map_or(0, |e| e.epoch), log.max_offset()))
}

/// Every confirmed offset is in `name`'s log with the bytes it had when it was confirmed.
fn check_confirmed(env: &Env, name: &'static str, when: &str) {
    let views = env.views.borrow();
    let Some(view) = views.get(name) else {
        return;
    };
    let Some(log) = view.log.upgrade() else {
        return;
    };
    let _fs = view.fs.enter();
    for &(offset, digest) in env.confirmed.borrow().iter() {
        if offset > log.max_offset() || log.digest(0, offset).ok() != Some(digest) {
            env.violate(
                "NoConfirmedLost",
                format!(
                    "{when}: {name} (log [0, {})) does not hold the confirmed [0, {offset}) as it was",
                    log.max_offset()
                ),
            );
            return;
        }
    }
}

pub(crate) fn run(seed: u64, variant: Variant, full_trace: bool) -> Outcome {
    let schedule = schedule(seed);
    let env = Rc::new(Env {
        seed,
        variant,
        ..Env::default()
    });
    env.set_role("r1", Role::Master { epoch: 1 });
    env.set_role("r2", Role::Slave { of: "r1" });
    env.set_role("r3", Role::Slave { of: "r1" });
    let mut sim = super::world::new_sim(seed, END);
    for name in REPLICAS {
        let env = env.clone();
        sim.host(name, move || replica_host(env.clone(), name));
    }

    let mut epoch = 1u32;
    let mut next = 0;
    // (elect at, since when the master is gone, whether it crashed rather than being demoted)
    let mut pending_election: Option<(Duration, Duration, bool)> = None;
    let mut last_restarted: Option<&'static str> = None;
    let mut demote: Option<&'static str> = None;
    let mut elections = 0;
    let mut failover_ms = Vec::new();
    let mut promote_ms = Vec::new();
    let mut awaiting_serving: Option<(Duration, Duration, &'static str, bool)> = None;
    let mut healed = false;
    let mut settled = false;
    let mut links = Links::default();
    loop {
        let now = sim.elapsed();
        let down: Vec<&'static str> = REPLICAS
            .iter()
            .copied()
            .filter(|r| !sim.is_host_running(*r))
            .collect();
        while next < schedule.len() && schedule[next].0 <= now {
            let event = schedule[next].1.clone();
            next += 1;
            let master = env.serving.get();
            let applied = match &event {
                Event::CrashMaster { elect_after } => match master {
                    Some(m) if down.is_empty() && pending_election.is_none() => {
                        links.crash(&mut sim, m, &REPLICAS);
                        env.views.borrow_mut().remove(m);
                        env.serving.set(None);
                        let elect_at = if variant.upstream_timeouts {
                            ms(upstream_election_at(now.as_millis() as u64))
                        } else {
                            now + *elect_after
                        };
                        pending_election = Some((elect_at, now, true));
                        true
                    }
                    _ => false,
                },
                Event::Demote => match master {
                    Some(m) if down.is_empty() && pending_election.is_none() => {
                        // It stops serving first; the election waits for that (one master at a
                        // time, as a controller that demotes before it elects).
                        env.set_role(m, Role::Idle);
                        demote = Some(m);
                        pending_election = Some((now, now, false));
                        true
                    }
                    _ => false,
                },
                Event::RestartDown => match down.first() {
                    Some(&r) if pending_election.is_none() => {
                        let current = current_master(&env);
                        env.set_role(r, Role::Slave { of: current });
                        sim.bounce(r);
                        last_restarted = Some(r);
                        true
                    }
                    _ => false,
                },
                Event::CrashRejoined => match last_restarted {
                    Some(r) if down.is_empty() && env.serving.get() != Some(r) => {
                        links.crash(&mut sim, r, &REPLICAS);
                        env.views.borrow_mut().remove(r);
                        true
                    }
                    _ => false,
                },
                Event::CrashSlave => {
                    let slave = REPLICAS
                        .iter()
                        .copied()
                        .find(|r| Some(*r) != env.serving.get());
                    match slave {
                        Some(s) if down.is_empty() && pending_election.is_none() => {
                            links.crash(&mut sim, s, &REPLICAS);
                            env.views.borrow_mut().remove(s);
                            true
                        }
                        _ => false,
                    }
                }
                Event::Partition(a, b) => {
                    links.partition(&mut sim, a, b);
                    true
                }
                Event::Repair(a, b) => {
                    links.repair(&mut sim, a, b);
                    true
                }
            };
            env.note(format!(
                "{:>6} ms  {event:?}{}",
                now.as_millis(),
                if applied { "" } else { " (skipped)" }
            ));
        }
        if let Some((at, crashed_at, crashed)) = pending_election {
            if now >= at && env.serving.get().is_none() {
                // The controller: the most up-to-date running replica, by (last epoch, max offset).
                let mut candidates: Vec<(&'static str, (u32, u64))> = REPLICAS
                    .iter()
                    .copied()
                    .filter(|r| sim.is_host_running(*r) && Some(*r) != demote)
                    .filter_map(|r| standing(&env, r).map(|s| (r, s)))
                    .collect();
                candidates.sort_by_key(|(name, s)| (*s, std::cmp::Reverse(*name)));
                let pick = if variant.elect_least_up_to_date {
                    candidates.first()
                } else {
                    candidates.last()
                };
                if let Some(&(elected, standing)) = pick {
                    epoch += 1;
                    elections += 1;
                    pending_election = None;
                    demote = None;
                    env.note(format!(
                        "{:>6} ms  elect {elected} {standing:?} of {candidates:?}: epoch {epoch}",
                        now.as_millis()
                    ));
                    check_confirmed(&env, elected, "at the election");
                    env.set_role(elected, Role::Master { epoch });
                    for r in REPLICAS {
                        if r != elected {
                            env.set_role(r, Role::Slave { of: elected });
                        }
                    }
                    awaiting_serving = Some((crashed_at, now, elected, crashed));
                } else {
                    pending_election =
                        Some((now + Duration::from_millis(200), crashed_at, crashed));
                }
            }
        }
        if let Some((crashed_at, elected_at, elected, crashed)) = awaiting_serving {
            if env.serving.get() == Some(elected) {
                if crashed {
                    failover_ms.push((now - crashed_at).as_millis() as u64);
                }
                promote_ms.push((now - elected_at).as_millis() as u64);
                awaiting_serving = None;
            }
        }
        if now >= FAULTS_END && !healed && pending_election.is_none() {
            healed = true;
            for (i, a) in REPLICAS.iter().enumerate() {
                for b in &REPLICAS[i + 1..] {
                    sim.repair(*a, *b);
                }
            }
            links.healed();
            let current = current_master(&env);
            for r in REPLICAS {
                if !sim.is_host_running(r) {
                    env.set_role(r, Role::Slave { of: current });
                    sim.bounce(r);
                }
            }
            env.writes_stop.set(true);
            env.note(format!("{:>6} ms  healed", now.as_millis()));
        }
        if now >= SETTLED && !settled {
            settled = true;
            settle_check(&env);
            env.stop.set(true);
        }
        if now >= END {
            break;
        }
        if let Err(e) = sim.step() {
            env.violate("HostsRun", format!("simulation error: {e}"));
            break;
        }
    }
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&*env.trace.borrow(), &mut hasher);
    std::hash::Hash::hash(&*env.confirmed.borrow(), &mut hasher);
    std::hash::Hash::hash(&*env.violations.borrow(), &mut hasher);
    Outcome {
        seed,
        schedule,
        fingerprint: std::hash::Hasher::finish(&hasher),
        violations: env.violations.borrow().clone(),
        trace: if full_trace {
            env.trace.borrow().clone()
        } else {
            Vec::new()
        },
        simulated: sim.elapsed(),
        elections,
        failover_ms,
        promote_ms,
        confirmed: env.confirmed.borrow().len(),
        master_bytes: env.master_bytes.get(),
        set_aside: env.set_aside.get(),
    }
}

/// The replica the roles name as master.
fn current_master(env: &Env) -> &'static str {
    env.roles
        .borrow()
        .iter()
        .find(|(_, (role, _))| matches!(role, Role::Master { .. }))
        .map(|(name, _)| *name)
        .expect("a master role")
}

/// After the heal: one master serving, every replica byte-identical to it with its epochs, and
/// every confirmed offset in it.
fn settle_check(env: &Env) {
    let Some(master) = env.serving.get() else {
        env.violate("Settles", "no master is serving after the heal".into());
        return;
    };
    check_confirmed(env, master, "after the heal");
    let views = env.views.borrow();
    let Some(mview) = views.get(master) else {
        return;
    };
    let Some(mlog) = mview.log.upgrade() else {
        return;
    };
    let (m_max, m_epochs) = (mlog.max_offset(), mlog.epochs());
    env.master_bytes.set(m_max);
    let m_digest = {
        let _fs = mview.fs.enter();
        mlog.digest(0, m_max).ok()
    };
    for r in REPLICAS {
        if let Some(view) = views.get(r) {
            let _fs = view.fs.enter();
            let q = format!("{STORE}/quarantine");
            if let Ok(entries) = turmoil::fs::shim::std::fs::read_dir(&q) {
                let bytes: u64 = entries
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum();
                env.set_aside.set(env.set_aside.get() + bytes);
            }
        }
        if r == master {
            continue;
        }
        let Some(log) = views.get(r).and_then(|v| v.log.upgrade()) else {
            env.violate("Settles", format!("{r} is not replicating after the heal"));
            continue;
        };
        let (max, epochs) = (log.max_offset(), log.epochs());
        let digest = {
            let _fs = views[r].fs.enter();
            log.digest(0, max).ok()
        };
        let prefix = max <= m_max && {
            let _fs = mview.fs.enter();
            mlog.digest(0, max).ok() == digest
        };
        if !prefix {
            env.violate(
                "SlaveIsPrefix",
                format!("{r}'s log [0, {max}) is not a prefix of {master}'s [0, {m_max})"),
            );
        } else if max != m_max || digest != m_digest || epochs != m_epochs {
            env.violate(
                "Settles",
                format!(
                    "{r} holds [0, {max}) with epochs {epochs:?}; {master} [0, {m_max}) with {m_epochs:?}"
                ),
            );
        }
    }
}

/// A replica's name as the world spells it.
fn replica(name: &str) -> Result<&'static str, String> {
    REPLICAS
        .iter()
        .copied()
        .find(|r| *r == name)
        .ok_or_else(|| format!("no replica {name:?} (there are {REPLICAS:?})"))
}

/// What a failover trace expects of one replica after a step.
fn check_replica(
    env: &Env,
    name: &'static str,
    want: &serde_json::Value,
    running: bool,
) -> Result<(), String> {
    let want_running = want["running"].as_bool().unwrap_or(true);
    if want_running != running {
        return Err(format!(
            "{name} running: {running}, expected {want_running}"
        ));
    }
    if !running {
        return Ok(());
    }
    let views = env.views.borrow();
    let view = views
        .get(name)
        .ok_or_else(|| format!("{name} runs but has no store open"))?;
    let log = view
        .log
        .upgrade()
        .ok_or_else(|| format!("{name}'s log is closed"))?;
    let _fs = view.fs.enter();
    if let Some(max) = want["max"].as_u64() {
        if log.max_offset() != max {
            return Err(format!(
                "{name} max offset {}, expected {max}",
                log.max_offset()
            ));
        }
    }
    if let Some(epochs) = want["epochs"].as_array() {
        let want: Vec<(u32, u64)> = epochs
            .iter()
            .map(|e| {
                (
                    e[0].as_u64().unwrap_or(0) as u32,
                    e[1].as_u64().unwrap_or(0),
                )
            })
            .collect();
        let got: Vec<(u32, u64)> = log.epochs().iter().map(|e| (e.epoch, e.start)).collect();
        if got != want {
            return Err(format!("{name} epochs {got:?}, expected {want:?}"));
        }
    }
    if let Some(set_aside) = want["set_aside"].as_u64() {
        let q = format!("{STORE}/quarantine");
        let got: u64 = turmoil::fs::shim::std::fs::read_dir(&q)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        if got != set_aside {
            return Err(format!(
                "{name} set aside {got} bytes, expected {set_aside}"
            ));
        }
    }
    Ok(())
}

/// The digest of a running replica's whole log, read in its own filesystem.
fn whole_digest(env: &Env, name: &'static str) -> Option<(u64, u32)> {
    let views = env.views.borrow();
    let view = views.get(name)?;
    let log = view.log.upgrade()?;
    let _fs = view.fs.enter();
    let max = log.max_offset();
    Some((max, log.digest(0, max).ok()?))
}

/// Replays a failover trace (`tests/vectors/lifecycle/failover/*.json`, format
/// `rmq-lifecycle/failover-trace/1`) on the shipped `serve` and `replicate`: each step's `op`
/// is applied, and its `expect` (each replica's max offset, epochs and bytes set aside; which
/// replicas hold the same bytes) is checked against the replicas' stores. Returns the number of
/// steps. The expectations are written from SPEC 9's rules, not recorded from this code.
pub(crate) fn replay_trace(trace: &serde_json::Value, variant: Variant) -> Result<usize, String> {
    if trace["format"] != "rmq-lifecycle/failover-trace/1" {
        return Err(format!("unknown format {}", trace["format"]));
    }
    let payload = trace["config"]["payload"]
        .as_u64()
        .ok_or("config.payload")? as usize;
    let steps = trace["steps"].as_array().ok_or("no steps")?;
    let env = Rc::new(Env {
        variant: Variant {
            scripted: true,
            ..variant
        },
        ..Env::default()
    });
    let mut sim = super::world::new_sim(0, Duration::from_secs(3_600));
    let mut links = Links::default();
    let mut hosts: Vec<&'static str> = Vec::new();
    let mut appended = 0usize;
    for (i, step) in steps.iter().enumerate() {
        let op = &step["op"];
        let what = || format!("step {i} ({op})");
        let name = |key: &str| replica(op[key].as_str().unwrap_or_default());
        match op["op"].as_str().unwrap_or_default() {
            kind @ ("serve" | "replicate") => {
                let r = name("replica")?;
                let role = if kind == "serve" {
                    Role::Master {
                        epoch: op["epoch"].as_u64().ok_or_else(what)? as u32,
                    }
                } else {
                    Role::Slave { of: name("from")? }
                };
                env.set_role(r, role);
                if !hosts.contains(&r) {
                    hosts.push(r);
                    let env = env.clone();
                    sim.host(r, move || replica_host(env.clone(), r));
                } else if !sim.is_host_running(r) {
                    sim.bounce(r);
                }
            }
            "append" => {
                let r = name("on")?;
                let handle = env.handles.borrow().get(r).cloned();
                let handle = handle.ok_or_else(|| format!("{}: {r} is not serving", what()))?;
                let views = env.views.borrow();
                let _fs = views[r].fs.enter();
                for _ in 0..op["records"].as_u64().ok_or_else(what)? {
                    appended += 1;
                    let bytes: Vec<u8> = (0..payload).map(|j| (appended * 31 + j) as u8).collect();
                    handle
                        .append(&bytes)
                        .map_err(|e| format!("{}: {e}", what()))?;
                }
                if op["sync"].as_bool().unwrap_or(false) {
                    handle
                        .log()
                        .flush()
                        .map_err(|e| format!("{}: {e}", what()))?;
                }
            }
            kind @ ("partition" | "repair") => {
                let (a, b) = (name("a")?, name("b")?);
                if kind == "partition" {
                    links.partition(&mut sim, a, b);
                } else {
                    links.repair(&mut sim, a, b);
                }
            }
            "crash" => {
                let r = name("replica")?;
                links.crash(&mut sim, r, &REPLICAS);
                env.views.borrow_mut().remove(r);
                env.handles.borrow_mut().remove(r);
                if env.serving.get() == Some(r) {
                    env.serving.set(None);
                }
            }
            "run" => {
                let until = sim.elapsed() + ms(op["ms"].as_u64().ok_or_else(what)?);
                while sim.elapsed() < until {
                    sim.step()
                        .map_err(|e| format!("{}: simulation error: {e}", what()))?;
                }
            }
            other => return Err(format!("step {i}: unknown op {other:?}")),
        }
        if let Some(v) = env.violations.borrow().first() {
            return Err(format!("{}: {v}", what()));
        }
        let expect = &step["expect"];
        for (key, want) in expect.as_object().into_iter().flatten() {
            if key == "same" {
                for pair in want.as_array().ok_or_else(what)? {
                    let (a, b) = (
                        replica(pair[0].as_str().unwrap_or_default())?,
                        replica(pair[1].as_str().unwrap_or_default())?,
                    );
                    let (da, db) = (whole_digest(&env, a), whole_digest(&env, b));
                    if da.is_none() || da != db {
                        return Err(format!(
                            "{}: {a} {da:?} and {b} {db:?} should hold the same bytes",
                            what()
                        ));
                    }
                }
                continue;
            }
            let r = replica(key)?;
            let running = hosts.contains(&r) && sim.is_host_running(r);
            check_replica(&env, r, want, running).map_err(|e| format!("{}: {e}", what()))?;
        }
    }
    env.stop.set(true);
    Ok(steps.len())
}
