//! Model trace events: the lifecycle transitions the TLA+ models in `models/` name, as `tracing`
//! events, so that a run of the shipped code can be checked against its model (trace
//! validation, models/README.md).
//!
//! Each event is emitted at `TRACE` under [`TARGET`] from inside the critical section that makes
//! the transition take effect, with a sequence number (`seq`) taken there: two transitions that
//! share a lock are numbered in the order they took it, and transitions that share none commute
//! in the model, so sorting by `seq` gives an order of effect the model can follow. Off unless a
//! subscriber enables the target; the code then pays one `enabled` check per transition.
//!
//! What this is not: a log for operators (the default level never shows it), nor the model.

/// The `tracing` target of the client registry's model events (`models/ClientRegistry.tla`).
pub const TARGET: &str = "rmq_lifecycle::model";

/// The `tracing` target of the HA connection lifecycle's model events
/// (`models/HaConnection.tla`). Not under [`TARGET`]'s path, so each recorder takes one model.
pub const HA_TARGET: &str = "rmq_lifecycle_model::ha";

/// The `tracing` target of the replication model's events (`models/Replication.tla`): the commit
/// log's appends, transfers, syncs, truncations and epochs, and the HA slave's reports. Numbered
/// per thread ([`replication_step`]): the simulation runs a whole replica group on one thread,
/// and that is where these traces are recorded.
pub const REPLICATION_TARGET: &str = "rmq_lifecycle_model::replication";

thread_local! {
    static REPLICATION_SEQ: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Whether replication model events are being recorded (a subscriber enabled
/// [`REPLICATION_TARGET`] at `TRACE`).
#[inline]
pub fn replication_enabled() -> bool {
    tracing::enabled!(target: REPLICATION_TARGET, tracing::Level::TRACE)
}

/// Records a replication model event with this thread's next sequence number, if recording:
/// call it where the step takes effect (under the commit log's tail lock for its steps). The
/// numbers only grow (a recorder renumbers a run's events from 0).
#[inline]
pub fn replication_step(record: impl FnOnce(u64)) {
    if replication_enabled() {
        let seq = REPLICATION_SEQ.with(|s| {
            let seq = s.get();
            s.set(seq + 1);
            seq
        });
        record(seq);
    }
}

/// Whether client registry model events are being recorded (a subscriber enabled [`TARGET`] at
/// `TRACE`).
#[inline]
pub fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::TRACE)
}

/// Whether HA model events are being recorded (a subscriber enabled [`HA_TARGET`] at `TRACE`).
#[inline]
pub fn ha_enabled() -> bool {
    tracing::enabled!(target: HA_TARGET, tracing::Level::TRACE)
}

/// A group's key in traces: `P:<name>` for a producer group, `C:<name>` for a consumer group
/// (the model treats the two tables alike, so each key is one of its groups).
pub fn group_key(kind: super::GroupKind, name: &str) -> String {
    match kind {
        super::GroupKind::Producer => format!("P:{name}"),
        super::GroupKind::Consumer => format!("C:{name}"),
    }
}

/// Fields whose value is JSON text (a list), embedded as JSON in the trace line.
const JSON_FIELDS: [&str; 5] = ["G", "groups", "cands", "taken", "epochs"];

/// A recorded model event of `target` ([`TARGET`], [`HA_TARGET`] or [`REPLICATION_TARGET`]) as
/// its trace line: `seq`, `action` and the event's other fields, with the list-valued ones
/// (`G`, `groups`, `cands`, `taken`, `epochs`) embedded as JSON and an empty `g` as `null`. `None` for events of other targets, or without `seq` and
/// `action`.
pub fn to_json(event: &tracing::Event<'_>, target: &str) -> Option<serde_json::Value> {
    if event.metadata().target() != target {
        return None;
    }
    let mut line = Line(serde_json::Map::new());
    event.record(&mut line);
    let fields = line.0;
    (fields.contains_key("seq") && fields.contains_key("action"))
        .then_some(serde_json::Value::Object(fields))
}

struct Line(serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for Line {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        let name = field.name();
        let value = if JSON_FIELDS.contains(&name) {
            serde_json::from_str(value).unwrap_or_else(|_| value.into())
        } else if name == "g" && value.is_empty() {
            serde_json::Value::Null
        } else {
            value.into()
        };
        self.0.insert(name.into(), value);
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}
