//! Records the shipped code's model trace events (`rmq_lifecycle::core::model_trace`) and writes
//! them as trace files, JSON lines ordered by `seq`, for `models/trace/validate.py`: for
//! `serve --model-trace FILE`, and (included by path) for the test harnesses that record traces.
//!
//! In a test the recorder is the calling thread's default subscriber while a closure runs
//! ([`Recorder::run`]); shuttle and the simulation run every thread of a run on the thread that
//! called them, so one recorder sees them all. `serve` adds [`Recorder::layer`] to its subscriber.
//!
//! A scoped subscriber can miss events: `tracing` caches each call site's interest, and a call
//! site first reached by another thread while the recorder was being installed can keep the
//! interest computed without it (the cache is rebuilt when a subscriber is installed, but a call
//! site still being registered then is not in it yet). [`Recorder::run`] and [`Recorder::begin`]
//! rebuild the cache, which repairs such a call site for every later run, and [`complete`] tells
//! a caller whether a trace lost events (its `seq` numbers are not 0, 1, 2, ...), so a harness
//! discards or reruns it instead of validating a trace with a hole.

#![allow(dead_code)] // each includer uses part of it

use rmq_lifecycle::core::model_trace;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

/// The events of one model recorded so far (cleared by [`Recorder::take`]).
#[derive(Clone)]
pub(crate) struct Recorder {
    lines: Arc<Mutex<Vec<serde_json::Value>>>,
    /// The model's event target: `model_trace::TARGET`, `HA_TARGET` or `REPLICATION_TARGET`.
    target: &'static str,
    /// Each event gets an `r` field: the name of the simulated host it happened on (turmoil's
    /// `node` span), for the replication model, whose events come from a whole replica group.
    node: bool,
}

/// Records the client registry's events.
impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            lines: Arc::default(),
            target: model_trace::TARGET,
            node: false,
        }
    }
}

struct Collect(Recorder);

/// The target of the span turmoil enters while it runs a host (`name` is the host's name).
const NODE_SPAN_TARGET: &str = "turmoil::sim";

/// A host's name, kept in its `node` span.
struct NodeName(String);

impl tracing::field::Visit for NodeName {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "name" {
            self.0 = value.to_owned();
        }
    }

    /// turmoil records the name as a string; any other form names no host, so the event gets no
    /// `r` (which the recording test rejects) rather than a quoted or empty one.
    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

impl<S> Layer<S> for Collect
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if !self.0.node || attrs.metadata().name() != "node" {
            return;
        }
        let mut name = NodeName(String::new());
        attrs.record(&mut name);
        if name.0.is_empty() {
            return;
        }
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(name);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let Some(mut line) = model_trace::to_json(event, self.0.target) else {
            return;
        };
        if self.0.node && line.get("r").is_none() {
            let host = ctx.event_scope(event).and_then(|scope| {
                scope
                    .from_root()
                    .find_map(|span| span.extensions().get::<NodeName>().map(|n| n.0.clone()))
            });
            if let Some(host) = host {
                line["r"] = host.into();
            }
        }
        self.0.lines.lock().unwrap().push(line);
    }
}

impl Recorder {
    /// A recorder of the HA connection lifecycle's events (`models/HaConnection.tla`).
    pub(crate) fn ha() -> Self {
        Recorder {
            lines: Arc::default(),
            target: model_trace::HA_TARGET,
            node: false,
        }
    }

    /// A recorder of a simulated replica group's replication events (`models/Replication.tla`),
    /// each with the host it happened on as `r`.
    pub(crate) fn replication() -> Self {
        Recorder {
            lines: Arc::default(),
            target: model_trace::REPLICATION_TARGET,
            node: true,
        }
    }

    /// The events this recorder takes: its model's, and turmoil's `node` spans if it names
    /// hosts.
    fn filter(&self) -> Targets {
        let targets = Targets::new().with_target(self.target, tracing::Level::TRACE);
        if self.node {
            targets.with_target(NODE_SPAN_TARGET, tracing::Level::INFO)
        } else {
            targets
        }
    }

    /// A layer recording model events into this recorder (the others are not its business).
    pub(crate) fn layer<S>(&self) -> impl Layer<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        Collect(self.clone()).with_filter(self.filter())
    }

    /// Runs `f` with this recorder as the thread's subscriber (model events only).
    pub(crate) fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        let subscriber =
            tracing_subscriber::registry().with(Collect(self.clone()).with_filter(self.filter()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::callsite::rebuild_interest_cache();
            f()
        })
    }

    /// Starts a new recording inside [`Recorder::run`]: drops what was recorded and rebuilds
    /// `tracing`'s interest cache (see the module doc).
    pub(crate) fn begin(&self) {
        self.lines.lock().unwrap().clear();
        tracing::callsite::rebuild_interest_cache();
    }

    /// The events recorded since the last call, one trace per registry in the order they ran
    /// (a registry's first event has `seq` 0), each ordered by `seq`. For a run whose registries
    /// live one after the other, as a restarted server's do.
    pub(crate) fn take_each(&self) -> Vec<Vec<serde_json::Value>> {
        self.take_each_cut().into_iter().map(|(t, _)| t).collect()
    }

    /// Marks the registry that is recording now as crashing: what it records from here on (its
    /// teardown) is left out of its trace, which [`take_each_cut`](Self::take_each_cut) then
    /// flags as cut.
    pub(crate) fn cut(&self) {
        self.lines
            .lock()
            .unwrap()
            .push(serde_json::json!({ "cut": true }));
    }

    /// [`take_each`](Self::take_each), each trace with whether it was [`cut`](Self::cut).
    pub(crate) fn take_each_cut(&self) -> Vec<(Vec<serde_json::Value>, bool)> {
        let lines = std::mem::take(&mut *self.lines.lock().unwrap());
        let mut traces: Vec<(Vec<serde_json::Value>, bool)> = Vec::new();
        for line in lines {
            let cut = line.get("cut").is_some();
            match traces.last_mut() {
                _ if line["seq"] == 0 => traces.push((vec![line], false)),
                Some((_, was_cut)) if cut => *was_cut = true,
                Some((trace, false)) => trace.push(line),
                _ => {}
            }
        }
        for (trace, _) in &mut traces {
            trace.sort_by_key(|l| l["seq"].as_u64());
        }
        traces
    }

    /// The events recorded since the last call, ordered by `seq`.
    pub(crate) fn take(&self) -> Vec<serde_json::Value> {
        let mut lines = std::mem::take(&mut *self.lines.lock().unwrap());
        lines.sort_by_key(|l| l["seq"].as_u64());
        lines
    }
}

/// Whether `trace` is a whole recording of one registry: not empty, and its `seq` numbers are
/// 0, 1, 2, ... (a missing number is an event the recorder did not see).
pub(crate) fn complete(trace: &[serde_json::Value]) -> bool {
    !trace.is_empty()
        && trace
            .iter()
            .enumerate()
            .all(|(i, l)| l["seq"].as_u64() == Some(i as u64))
}

/// Where a test's traces go: `$MODEL_TRACES_DIR`, or `target/model-traces` (tests run in their
/// package's directory).
pub(crate) fn dir(sub: &str) -> PathBuf {
    let root = std::env::var_os("MODEL_TRACES_DIR")
        .map_or_else(|| PathBuf::from("target/model-traces"), PathBuf::from);
    root.join(sub)
}

/// Writes `lines` as `dir/name.jsonl`; returns the path.
pub(crate) fn write(dir: &Path, name: &str, lines: &[serde_json::Value]) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create the trace directory");
    let path = dir.join(format!("{name}.jsonl"));
    write_file(&path, lines).expect("write a trace");
    path
}

/// Writes `lines` to `path`, one JSON object per line.
pub(crate) fn write_file(path: &Path, lines: &[serde_json::Value]) -> std::io::Result<()> {
    let mut text = String::new();
    for line in lines {
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(path, text)
}

/// Empties a trace directory (a run writes it afresh).
pub(crate) fn clear(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}
