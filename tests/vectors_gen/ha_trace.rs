//! HA lifecycle traces (`lifecycle/ha/`): generated from the oracle `core::ha_model::HaModel`,
//! replayed on the oracle and on the real master side (`ha_ops`).

use super::client_trace::{Binds, abstract_, expand};
use super::*;
use rmq_lifecycle::core::ha_model::{
    HaClosed, HaConn, HaModel, HaModelConfig, HaObserved, HaOp, HaOpResult,
};
use rmq_lifecycle::lifecycle::AcceptorFaults;
use rmq_lifecycle::registry::ha::HaFaults;

fn step_json(op: &HaOp, result: &HaOpResult, events: &[HaClosed]) -> Value {
    json!({
        "op": serde_json::to_value(op).expect("op serializes"),
        "result": serde_json::to_value(result).expect("result serializes"),
        "events": serde_json::to_value(events).expect("events serialize"),
    })
}

/// Builds a trace by applying ops to `HaModel` and recording what it answers.
pub(super) struct Builder {
    name: String,
    description: String,
    model: HaModel,
    items: Vec<Value>,
    dense: bool,
}

impl Builder {
    pub(super) fn new(name: &str, description: &str, config: HaModelConfig) -> Self {
        Builder {
            name: name.into(),
            description: description.into(),
            model: HaModel::new(config),
            items: Vec::new(),
            dense: true,
        }
    }

    pub(super) fn sparse(mut self) -> Self {
        self.dense = false;
        self
    }

    fn apply(&mut self, op: &HaOp) -> (HaOpResult, HaObserved) {
        let before = self.model.observe();
        let result = self.model.apply(op);
        let observed = self.model.observe();
        if let Err(v) = observed
            .check_invariants()
            .and(observed.check_step(&before))
        {
            panic!(
                "{}: the oracle broke its own invariant after {op:?}: {v}",
                self.name
            );
        }
        (result, observed)
    }

    pub(super) fn op(&mut self, op: HaOp) -> HaOpResult {
        let (result, observed) = self.apply(&op);
        let mut step = step_json(&op, &result, &observed.events);
        if self.dense {
            step["observed"] = serde_json::to_value(&observed).expect("observed");
        }
        self.items.push(step);
        result
    }

    pub(super) fn accept(&mut self) -> HaConn {
        match self.op(HaOp::Accept) {
            HaOpResult::Accepted { conn } => conn,
            other => panic!("{}: accept: {other:?}", self.name),
        }
    }

    /// Accept, register and spawn: a running connection.
    pub(super) fn connect(&mut self) -> HaConn {
        let conn = self.accept();
        self.op(HaOp::Register { conn });
        self.op(HaOp::Spawn { conn });
        conn
    }

    pub(super) fn report(&mut self, conn: HaConn, bytes: &[u8]) -> HaOpResult {
        self.op(HaOp::Report {
            conn,
            bytes: bytes.to_vec(),
        })
    }

    pub(super) fn checkpoint(&mut self) {
        let observed = serde_json::to_value(self.model.observe()).expect("observed");
        self.items.push(json!({ "observed": observed }));
    }

    pub(super) fn next_conn(&self) -> i64 {
        self.model.accepted() as i64 + 1
    }

    /// As the client builder's `repeat`: `count` iterations stored once as a template.
    pub(super) fn repeat(
        &mut self,
        count: usize,
        vars: &[(&str, i64, i64)],
        mut body: impl FnMut(&BTreeMap<&str, i64>) -> Vec<HaOp>,
    ) {
        assert!(count > 0);
        let mut template: Option<Value> = None;
        for k in 0..count {
            let map: BTreeMap<&str, i64> = vars
                .iter()
                .map(|(n, from, step)| (*n, from + k as i64 * step))
                .collect();
            let binds: Binds = map.iter().map(|(n, x)| ((*n).to_owned(), *x)).collect();
            let steps: Vec<Value> = body(&map)
                .iter()
                .map(|op| {
                    let (result, observed) = self.apply(op);
                    step_json(op, &result, &observed.events)
                })
                .collect();
            let steps = Value::Array(steps);
            match &template {
                None => template = Some(abstract_(&steps, &binds)),
                Some(t) => assert!(
                    expand(t, &binds) == steps,
                    "{}: iteration {k} of a repeat block does not fit the template:\n{}\n{}",
                    self.name,
                    canon(&expand(t, &binds)),
                    canon(&steps)
                ),
            }
        }
        let vars_json: serde_json::Map<String, Value> = vars
            .iter()
            .map(|(n, from, step)| ((*n).to_owned(), json!({ "from": from, "step": step })))
            .collect();
        let observed = serde_json::to_value(self.model.observe()).expect("observed");
        self.items.push(json!({
            "repeat": { "count": count, "vars": vars_json },
            "steps": template.expect("count > 0"),
            "observed": observed,
        }));
    }

    pub(super) fn finish(self) -> String {
        let config = serde_json::to_value(self.model.config()).expect("config");
        render(
            json!({
                "format": "rmq-lifecycle/ha-trace/1",
                "name": self.name,
                "description": self.description,
                "config": config,
            }),
            "steps",
            &self.items,
        )
    }
}

/// An implementation an HA trace is replayed against.
pub(super) trait Target {
    fn apply(&mut self, op: &HaOp) -> HaOpResult;
    fn observe(&self) -> HaObserved;
    /// What holds after every op beyond `HaObserved`'s own invariants.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

pub(super) struct ModelTarget(pub(super) HaModel);

impl Target for ModelTarget {
    fn apply(&mut self, op: &HaOp) -> HaOpResult {
        self.0.apply(op)
    }
    fn observe(&self) -> HaObserved {
        self.0.observe()
    }
}

/// `HaRegistry` + `HaConnection` + `MasterLink` through helper-ops's driver.
pub(super) struct RealTarget(ha_ops::HaDriver);

impl RealTarget {
    pub(super) fn new(config: HaModelConfig, faults: ha_ops::DriverFaults) -> Self {
        RealTarget(ha_ops::HaDriver::new(config, HaFaults::default(), faults))
    }

    /// The real side with planted defects in the table and in the acceptor.
    pub(super) fn with_faults(
        config: HaModelConfig,
        table: HaFaults,
        acceptor: AcceptorFaults,
    ) -> Self {
        RealTarget(
            ha_ops::HaDriver::new(config, table, ha_ops::DriverFaults::default())
                .with_acceptor_faults(acceptor),
        )
    }
}

impl Target for RealTarget {
    fn apply(&mut self, op: &HaOp) -> HaOpResult {
        self.0.apply(op)
    }
    fn observe(&self) -> HaObserved {
        self.0.observe()
    }
    /// The tasks themselves (`NoRunningUnregistered`: a task alive has a row) and the acceptor
    /// (`NoLeakAtQuiescence`: it holds exactly the running connections), as the fuzz property
    /// checks them.
    fn check(&self) -> Result<(), String> {
        self.0.check_tasks().map_err(|v| v.to_string())
    }
}

/// `events` and `observed` are compared as JSON with [`pins`]: a step may leave out what it does
/// not pin (the model-derived traces of `lifecycle/model/ha/` do; the traces generated here pin
/// every field).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    op: Option<HaOp>,
    result: Option<HaOpResult>,
    events: Option<Value>,
    observed: Option<Value>,
}

/// `want` pins `got`: equal, except that an object in `want` may leave out keys (a field it does
/// not pin); arrays have the same length and pin element by element.
fn pins(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            w.iter().all(|(k, v)| g.get(k).is_some_and(|x| pins(v, x)))
        }
        (Value::Array(w), Value::Array(g)) => {
            w.len() == g.len() && w.iter().zip(g).all(|(a, b)| pins(a, b))
        }
        _ => want == got,
    }
}

fn json_of<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("serializes")
}

/// Applies and checks one step. `check_step` also checks the transition invariants against
/// the state before, which costs an observation (skipped inside repeat blocks).
fn run_step(target: &mut dyn Target, step: Step, check_step: bool) -> Result<(), String> {
    let mut seen = None;
    if let Some(op) = step.op {
        let want = step.result.ok_or("a step with an op has no result")?;
        let want_events = step.events.ok_or("a step with an op has no events")?;
        let before = check_step.then(|| target.observe());
        let got = target.apply(&op);
        if got != want {
            return Err(format!("{op:?}: result: expected {want:?}, got {got:?}"));
        }
        let observed = target.observe();
        if !pins(&want_events, &json_of(&observed.events)) {
            return Err(format!(
                "{op:?}: events: expected {}, got {:?}",
                canon(&want_events),
                observed.events
            ));
        }
        observed
            .check_invariants()
            .and(before.map_or(Ok(()), |b| observed.check_step(&b)))
            .map_err(|v| format!("{op:?}: {v}"))?;
        target.check().map_err(|v| format!("{op:?}: {v}"))?;
        seen = Some(observed);
    }
    if let Some(want) = step.observed {
        let got = seen.unwrap_or_else(|| target.observe());
        got.check_invariants().map_err(|v| v.to_string())?;
        if !pins(&want, &json_of(&got)) {
            return Err(format!("observed: expected {}, got {got:?}", canon(&want)));
        }
    }
    Ok(())
}

/// Replays a whole trace; returns the number of operations applied. Transition checks run
/// outside repeat blocks only (each costs an observation).
pub(super) fn replay(trace: &Value, target: &mut dyn Target) -> Result<usize, String> {
    replay_steps(trace, "observed", |step: Step, outside| {
        run_step(target, step, outside)
    })
}

pub(super) fn config_of(trace: &Value) -> HaModelConfig {
    serde_json::from_value(trace["config"].clone()).expect("config")
}

// -------------------------------------------------------------------------------------------
// Scenarios.
// -------------------------------------------------------------------------------------------

fn report(offset: i64) -> Vec<u8> {
    offset.to_be_bytes().to_vec()
}

fn config(max_connections: usize) -> HaModelConfig {
    HaModelConfig {
        max_connections,
        max_gap: 1024,
        ..HaModelConfig::default()
    }
}

fn healthy_slave() -> String {
    let mut b = Builder::new(
        "healthy_slave",
        "a slave connects, reports 0, is sent the log, acknowledges it as it grows, and disconnects: the row counts for sync replication after its first valid report and goes when the peer closes",
        config(8),
    );
    b.op(HaOp::Append { len: 4096 });
    let slave = b.accept();
    b.op(HaOp::Register { conn: slave });
    b.op(HaOp::Flush { conn: slave });
    b.op(HaOp::Spawn { conn: slave });
    b.op(HaOp::Flush { conn: slave });
    b.report(slave, &report(0));
    b.op(HaOp::Flush { conn: slave });
    b.report(slave, &report(2048));
    b.report(slave, &report(4096));
    b.op(HaOp::Append { len: 2000 });
    b.op(HaOp::Flush { conn: slave });
    let r = report(6096);
    b.report(slave, &r[..3]);
    b.report(slave, &r[3..]);
    b.report(slave, &[report(6096), report(6096)].concat());
    b.op(HaOp::PeerClose { conn: slave });
    b.finish()
}

fn close_paths() -> String {
    let mut b = Builder::new(
        "close_paths",
        "every way a connection ends, in every phase: local close in Init, Registered and Running; peer close, idle timeout and task failure while running; a registration refused at the cap; ops on closed and never-accepted connections are ignored; each closes exactly once",
        config(2),
    );
    let init = b.accept();
    b.op(HaOp::Close { conn: init });
    b.op(HaOp::Close { conn: init });
    let registered = b.accept();
    b.op(HaOp::Register { conn: registered });
    b.op(HaOp::PeerClose { conn: registered });
    b.op(HaOp::Close { conn: registered });
    for end in [
        HaOp::PeerClose { conn: HaConn(0) },
        HaOp::IdleTimeout { conn: HaConn(0) },
        HaOp::TaskFail { conn: HaConn(0) },
        HaOp::Close { conn: HaConn(0) },
    ] {
        let conn = b.connect();
        let end = match end {
            HaOp::PeerClose { .. } => HaOp::PeerClose { conn },
            HaOp::IdleTimeout { .. } => HaOp::IdleTimeout { conn },
            HaOp::TaskFail { .. } => HaOp::TaskFail { conn },
            _ => HaOp::Close { conn },
        };
        b.op(end);
        b.op(HaOp::TaskFail { conn });
        b.report(conn, &report(0));
    }
    let a = b.connect();
    let c = b.connect();
    let refused = b.accept();
    b.op(HaOp::Register { conn: refused });
    b.op(HaOp::Spawn { conn: refused });
    b.op(HaOp::Close { conn: a });
    b.op(HaOp::Close { conn: c });
    b.op(HaOp::Spawn { conn: HaConn(99) });
    b.op(HaOp::PeerClose { conn: HaConn(99) });
    b.finish()
}

fn ack_bounded() -> String {
    let mut b = Builder::new(
        "ack_bounded",
        "AckBounded: a negative report, one beyond the master's max offset, one going back and one beyond what was sent each close the connection with a protocol error and acknowledge nothing; valid reports before the bad one in the same read count",
        config(8),
    );
    b.op(HaOp::Append { len: 1000 });
    let cases: Vec<Vec<u8>> = vec![
        report(-1),
        report(i64::MIN),
        report(1001),
        report(i64::MAX),
        [report(500), report(499)].concat(),
        [report(500), report(501)].concat(),
        b"2024-10-30 16:42:30".to_vec(),
    ];
    for bytes in cases {
        let conn = b.connect();
        b.report(conn, &bytes);
        b.op(HaOp::Flush { conn });
    }
    let slow = b.connect();
    b.report(slow, &report(500));
    b.op(HaOp::Flush { conn: slow });
    b.report(slow, &report(1000));
    b.report(slow, &report(1000));
    b.op(HaOp::Append { len: 10 });
    b.report(slow, &report(1010));
    b.finish()
}

fn shutdown() -> String {
    let mut b = Builder::new(
        "shutdown",
        "HaMaster::shutdown closes every registered connection (Registered and Running) and closes the table: an accepted-but-unregistered connection is refused when it tries to register, and a second shutdown closes nothing",
        config(8),
    );
    b.op(HaOp::Append { len: 100 });
    let running = b.connect();
    b.report(running, &report(100));
    let registered = b.accept();
    b.op(HaOp::Register { conn: registered });
    let init = b.accept();
    b.op(HaOp::Shutdown);
    b.op(HaOp::Register { conn: init });
    let late = b.accept();
    b.op(HaOp::Register { conn: late });
    b.op(HaOp::Shutdown);
    b.report(running, &report(100));
    b.finish()
}

/// The incident (#8875): TCP health checks on the HA port beside one replicating slave. Each
/// probe kind in a block of its own: connect-and-close, the timestamp text, half a report
/// then close, an oversized offset. The table ends holding only the slave.
fn probe_storm() -> String {
    const PROBES: usize = 250;
    let mut b = Builder::new(
        "incident_probe_storm",
        "a replicating slave beside 1,000 port probes (#8875): 250 connect and close at once, 250 send the text 2024-10-30 16:42:30, 250 send half a report and close, 250 send an offset beyond the log; the log grows and is sent to the slave between probes, the slave acknowledges after each block, and the table ends holding only the slave",
        config(64),
    )
    .sparse();
    b.op(HaOp::Append { len: 1_049_244 });
    let slave = b.connect();
    b.report(slave, &report(0));
    b.op(HaOp::Flush { conn: slave });
    b.report(slave, &report(1_049_244));
    b.checkpoint();
    let probe = b"2024-10-30 16:42:30".to_vec();
    let kinds: Vec<Vec<u8>> = vec![
        Vec::new(),
        probe,
        report(1_049_244)[..4].to_vec(),
        report(i64::MAX),
    ];
    let mut grown = 1_049_244i64;
    for bytes in kinds {
        let first = b.next_conn();
        let base = grown;
        b.repeat(
            PROBES,
            &[("conn", first, 1), ("max", base + 100, 100)],
            |v| {
                let conn = HaConn(v["conn"] as u64);
                let mut ops = vec![HaOp::Accept, HaOp::Register { conn }, HaOp::Spawn { conn }];
                if !bytes.is_empty() {
                    ops.push(HaOp::Report {
                        conn,
                        bytes: bytes.clone(),
                    });
                }
                ops.extend([
                    HaOp::PeerClose { conn },
                    HaOp::Append { len: 100 },
                    HaOp::Flush { conn: slave },
                    // The slave's periodic re-report of what it has written (its heartbeat):
                    // a report's bytes are data, so the template repeats the block's base.
                    HaOp::Report {
                        conn: slave,
                        bytes: report(base),
                    },
                ]);
                ops
            },
        );
        grown += PROBES as i64 * 100;
        b.report(slave, &report(grown));
        b.checkpoint();
    }
    let end = b.model.observe();
    assert_eq!(end.table.len(), 1, "only the slave is left");
    assert_eq!(end.table[0].conn, slave);
    assert_eq!(end.table[0].ack, Some(grown as u64));
    b.finish()
}

/// Every HA trace: (file name, contents).
pub(super) fn generate() -> Vec<(String, String)> {
    [
        ("healthy_slave", healthy_slave()),
        ("close_paths", close_paths()),
        ("ack_bounded", ack_bounded()),
        ("shutdown", shutdown()),
        ("incident_probe_storm", probe_storm()),
    ]
    .into_iter()
    .map(|(n, s)| (format!("lifecycle/ha/{n}.json"), s))
    .collect()
}
