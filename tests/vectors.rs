//! Conformance vectors for ports of this crate to other languages (`tests/vectors/`, format in
//! `tests/vectors/README.md`), and their replay against this implementation.
//!
//! Every file under `tests/vectors/` is produced by the generators in `tests/vectors_gen/` (one file
//! per vector family) from the implementation and the oracles (`core::ClientModel`,
//! `core::ha_model::HaModel`), never by hand. Two exceptions: the failover traces, written by hand,
//! and `lifecycle/model/{client,ha}/`, written by `models/trace/derive.py` from TLC's state graphs
//! of `models/ClientRegistry.tla` and `models/HaConnection.tla` (replayed here with the same
//! client- and HA-trace replayers; their expectations come from the models, not from this crate).
//! The tests here:
//!
//! * replay every committed file: wire vectors against the decoders and encoders of `core`, client
//!   traces against `core::ClientModel` *and* `registry::ClientRegistry` (driven through the
//!   public `lifecycle::ClientChannel` handles, one handle call per op);
//! * regenerate everything in memory and require the committed files to be byte-identical, so a
//!   behaviour change that is not re-recorded fails (`RMQ_REGENERATE_VECTORS=1 cargo test --test
//!   vectors` rewrites them);
//! * prove that the replay can fail: a mutated vector and a registry with a planted fault must
//!   both be reported as mismatches.
//!
//! This is not a fuzzer or a property test: it pins exact observable behaviour, step by step.

use rmq_lifecycle::core::client::{ChannelId, ClientEvent, ClientRules, GroupKind};
use rmq_lifecycle::core::heartbeat::{
    ConsumerData, HeartbeatData, MessageModel, ProducerData, SubscriptionData,
};
use rmq_lifecycle::core::tables::{ClientModel, ClientOp, ClientTables, OpResult};
use rmq_lifecycle::lifecycle::{ChannelHandle, ClientChannel, CloseReason};
use rmq_lifecycle::phase::Registered;
use rmq_lifecycle::registry::{ClientRegistry, Faults, RegistryConfig};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

// ------------------------------------------------------------------------------------------------
// Shared helpers: hex, canonical JSON, files.
// ------------------------------------------------------------------------------------------------

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// 64-bit values as decimal strings: they exceed 2^53, which JSON numbers do not carry portably.
fn big(n: impl ToString) -> Value {
    Value::String(n.to_string())
}

fn parse_u64(v: &Value) -> Result<u64, String> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{v} is not a decimal u64 string"))
}

/// A vector's `chunks`: successive reads, as hex strings.
fn chunks_of(v: &Value) -> Result<Vec<Vec<u8>>, String> {
    field(v, "chunks")?
        .as_array()
        .ok_or("chunks is not an array")?
        .iter()
        .map(|c| unhex(c.as_str().ok_or("chunk is not a string")?))
        .collect()
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if s.len() % 2 != 0 {
        return Err(format!("odd-length hex {s:?}"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| format!("hex {s:?}: {e}")))
        .collect()
}

/// Compact JSON with object keys sorted, whatever serde_json's map features are: the committed
/// bytes must not depend on how the dependency graph was resolved.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            out.push('{');
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).expect("a string serializes"));
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&serde_json::to_string(other).expect("a scalar serializes")),
    }
}

fn canon(v: &Value) -> String {
    let mut s = String::new();
    canonical(v, &mut s);
    s
}

/// A vector file: a header object whose one list (`list_key`) is written one element per line,
/// so that files diff well and stay compact.
fn render(header: Value, list_key: &str, items: &[Value]) -> String {
    let mut head = header;
    let obj = head.as_object_mut().expect("header is an object");
    obj.remove(list_key);
    let empty = obj.is_empty();
    let mut out = canon(&head);
    out.pop(); // the closing brace
    if !empty {
        out.push(',');
    }
    out.push_str(&serde_json::to_string(list_key).expect("key"));
    out.push_str(":[\n");
    for (i, item) in items.iter().enumerate() {
        canonical(item, &mut out);
        out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
    }
    out.push_str("]}\n");
    out
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn load(rel: &str) -> Value {
    let path = vectors_dir().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (regenerate: RMQ_REGENERATE_VECTORS=1 cargo test --test vectors)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every committed file under `dir` (relative to `tests/vectors/`) with the given extension.
fn committed(dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(vectors_dir().join(dir)) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            out.push(format!("{dir}/{name}"));
        }
    }
    out.sort();
    out
}

fn field<'a>(v: &'a Value, key: &str) -> Result<&'a Value, String> {
    v.get(key).ok_or_else(|| format!("missing field {key:?}"))
}

fn str_field<'a>(v: &'a Value, key: &str) -> Result<&'a str, String> {
    field(v, key)?
        .as_str()
        .ok_or_else(|| format!("field {key:?} is not a string"))
}

/// Compares one observed value with the vector's; the error names the field and both values.
fn same(what: &str, expected: &Value, actual: &Value) -> Result<(), String> {
    if expected == actual {
        Ok(())
    } else {
        Err(format!(
            "{what}: expected {}, got {}",
            canon(expected),
            canon(actual)
        ))
    }
}

// ------------------------------------------------------------------------------------------------
// Wire vectors: remoting frames.
// ------------------------------------------------------------------------------------------------

/// Replays a trace's steps through `run`, expanding repeat blocks (a template run `count` times
/// with numbered variables; `state_key` names the checkpoint a block may carry after it) and
/// returns the operations applied. `run`'s flag is false for the steps inside a repeat block.
fn replay_steps<S: serde::de::DeserializeOwned>(
    trace: &Value,
    state_key: &str,
    mut run: impl FnMut(S, bool) -> Result<(), String>,
) -> Result<usize, String> {
    let parse = |v: &Value| -> Result<S, String> {
        serde_json::from_value(v.clone()).map_err(|e| format!("malformed step: {e}"))
    };
    let steps = field(trace, "steps")?.as_array().ok_or("steps")?;
    let mut ops = 0;
    for (i, item) in steps.iter().enumerate() {
        let Some(repeat) = item.get("repeat") else {
            run(parse(item)?, true).map_err(|e| format!("step {i}: {e}"))?;
            ops += usize::from(item.get("op").is_some());
            continue;
        };
        let count = field(repeat, "count")?.as_u64().ok_or("count")?;
        let vars = field(repeat, "vars")?.as_object().ok_or("vars")?;
        let template: Vec<String> = field(item, "steps")?
            .as_array()
            .ok_or("steps")?
            .iter()
            .map(canon)
            .collect();
        for k in 0..count as i64 {
            let mut binds = client_trace::Binds::new();
            for (name, v) in vars {
                let from = field(v, "from")?.as_i64().ok_or("from")?;
                let step = field(v, "step")?.as_i64().ok_or("step")?;
                binds.push((name.clone(), from + k * step));
            }
            for (j, t) in template.iter().enumerate() {
                let at =
                    |e: String| format!("step {i} (repeat iteration {k}, template step {j}): {e}");
                let step: S = serde_json::from_str(&client_trace::expand_text(t, &binds))
                    .map_err(|e| at(format!("malformed step: {e}")))?;
                run(step, false).map_err(at)?;
                ops += 1;
            }
        }
        if let Some(state) = item.get(state_key) {
            run(parse(&json!({ state_key: state }))?, true)
                .map_err(|e| format!("step {i} (after the repeat block): {e}"))?;
        }
    }
    Ok(ops)
}

#[path = "vectors_gen/remoting.rs"]
mod remoting_wire;

// ------------------------------------------------------------------------------------------------
// Wire vectors: HA frames.
// ------------------------------------------------------------------------------------------------

#[path = "vectors_gen/ha.rs"]
mod ha_wire;

#[path = "vectors_gen/ha_autoswitch.rs"]
mod ha_autoswitch_wire;

// ------------------------------------------------------------------------------------------------
// Client lifecycle traces.
// ------------------------------------------------------------------------------------------------

#[path = "vectors_gen/client_trace.rs"]
mod client_trace;

// ------------------------------------------------------------------------------------------------
// HA lifecycle traces.
// ------------------------------------------------------------------------------------------------

/// The real HA master side, driven one op at a time (shared with the `ha_ops` fuzz target).
#[path = "../fuzz/properties/ha_ops.rs"]
mod ha_ops;

#[path = "vectors_gen/ha_trace.rs"]
mod ha_trace;

// ------------------------------------------------------------------------------------------------
// The tests.
// ------------------------------------------------------------------------------------------------

/// Every generated file: (path under `tests/vectors/`, contents).
fn generate_all() -> Vec<(String, String)> {
    let mut files = vec![
        (remoting_wire::FILE.to_owned(), remoting_wire::generate()),
        (ha_wire::FILE.to_owned(), ha_wire::generate()),
        (
            ha_autoswitch_wire::FILE.to_owned(),
            ha_autoswitch_wire::generate(),
        ),
    ];
    files.extend(client_trace::generate());
    files.extend(ha_trace::generate());
    files
}

/// The committed vectors are exactly what the generators produce now; with
/// `RMQ_REGENERATE_VECTORS=1` they are rewritten instead (and files no generator produces are
/// deleted).
#[test]
fn committed_vectors_are_current() {
    let files = generate_all();
    let dirs = ["wire", "lifecycle/client", "lifecycle/ha"];
    let regenerate = std::env::var_os("RMQ_REGENERATE_VECTORS").is_some_and(|v| v == "1");
    let mut problems = Vec::new();
    for dir in dirs {
        for path in committed(dir) {
            if !files.iter().any(|(p, _)| *p == path) {
                if regenerate {
                    std::fs::remove_file(vectors_dir().join(&path)).expect("remove a stale vector");
                } else {
                    problems.push(format!("{path}: committed, but no generator produces it"));
                }
            }
        }
    }
    for (path, contents) in &files {
        let full = vectors_dir().join(path);
        if regenerate {
            std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
            std::fs::write(&full, contents).expect("write a vector");
            continue;
        }
        match std::fs::read_to_string(&full) {
            Ok(old) if old == *contents => {}
            Ok(_) => problems.push(format!(
                "{path}: differs from what the generator produces now"
            )),
            Err(e) => problems.push(format!("{path}: {e}")),
        }
    }
    assert!(
        problems.is_empty(),
        "stale conformance vectors (if the behaviour change is intended, run \
         `RMQ_REGENERATE_VECTORS=1 cargo test --test vectors` and review the diff):\n{}",
        problems.join("\n")
    );
}

fn replay_wire(file: &str, replay: fn(&Value) -> Result<(), String>) -> usize {
    let doc = load(file);
    let vectors = doc["vectors"].as_array().expect("vectors");
    for v in vectors {
        if let Err(e) = replay(v) {
            panic!("{file}: vector {}: {e}", v["name"]);
        }
    }
    vectors.len()
}

#[test]
fn remoting_wire_vectors_replay() {
    assert!(replay_wire(remoting_wire::FILE, remoting_wire::replay) >= 50);
}

#[test]
fn ha_wire_vectors_replay() {
    assert!(replay_wire(ha_wire::FILE, ha_wire::replay) >= 30);
}

#[test]
fn ha_autoswitch_wire_vectors_replay() {
    assert!(replay_wire(ha_autoswitch_wire::FILE, ha_autoswitch_wire::replay) >= 17);
}

/// The auto-switch replay can fail: a vector whose expected truncation point is changed is
/// reported.
#[test]
fn a_mutated_autoswitch_vector_is_caught() {
    let doc = load(ha_autoswitch_wire::FILE);
    let mut v = doc["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .find(|v| v["name"] == "slave_truncates_divergent_tail")
        .expect("the truncation vector")
        .clone();
    ha_autoswitch_wire::replay(&v).expect("the original replays");
    v["expect"]["events"][0]["offset"] = Value::String("1120".into());
    ha_autoswitch_wire::replay(&v).expect_err("a skipped truncation must be caught");
}

fn client_traces() -> Vec<(String, Value)> {
    let files = committed("lifecycle/client");
    assert!(files.len() >= 12, "client traces missing: {files:?}");
    files.into_iter().map(|f| (f.clone(), load(&f))).collect()
}

#[test]
fn client_traces_replay_on_the_oracle() {
    for (file, trace) in client_traces() {
        let mut target = client_trace::ModelTarget::new(client_trace::rules_of(&trace));
        let ops =
            client_trace::replay(&trace, &mut target).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(ops > 0, "{file}: no operations");
        if file.ends_with("incident_stale_groups_15000.json") {
            // What the issue asks for: 15,000 distinct abandoned groups, each removed, in a
            // small file.
            let iot = target
                .removed_producer_groups
                .iter()
                .filter(|g| g.starts_with("IotRuleEngine-"))
                .count();
            assert_eq!(iot, 15_000, "{file}");
            let size = std::fs::metadata(vectors_dir().join(&file)).map_or(0, |m| m.len());
            assert!(size < 512 * 1024, "{file}: {size} bytes");
        }
    }
}

#[test]
fn client_traces_replay_on_the_registry() {
    for (file, trace) in client_traces() {
        let mut target =
            client_trace::RegistryTarget::new(client_trace::rules_of(&trace), Faults::default());
        let ops =
            client_trace::replay(&trace, &mut target).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(ops > 0, "{file}: no operations");
    }
}

/// Client traces derived from the model (`lifecycle/model/client/`, written by
/// `models/trace/derive.py` from TLC's state graph of `models/ClientRegistry.tla`, not by the
/// generators here): their expectations come from the model's states.
fn model_traces() -> Vec<(String, Value)> {
    let files = committed("lifecycle/model/client");
    assert!(files.len() >= 5, "model-derived traces missing: {files:?}");
    files.into_iter().map(|f| (f.clone(), load(&f))).collect()
}

#[test]
fn model_derived_client_traces_replay_on_the_registry() {
    for (file, trace) in model_traces() {
        let mut target =
            client_trace::RegistryTarget::new(client_trace::rules_of(&trace), Faults::default());
        let ops =
            client_trace::replay(&trace, &mut target).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            ops > 2,
            "{file}: no operation beyond registering the channels"
        );
    }
}

#[test]
fn model_derived_client_traces_replay_on_the_oracle() {
    for (file, trace) in model_traces() {
        let mut target = client_trace::ModelTarget::new(client_trace::rules_of(&trace));
        client_trace::replay(&trace, &mut target).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

/// The model-derived traces are not vacuous. A registry that keeps empty groups (#8673) fails
/// exactly the traces in which a group's last member leaves, at that step; one whose heartbeat
/// ignores the tombstone fails exactly the traces that close a channel, at the heartbeat sent to
/// it afterwards (the model has no step for it, so it must change nothing). Faults that only show
/// when operations interleave (#10698's split remove-if-empty, events delivered after unlocking)
/// pass them, as models/README.md says: one call at a time never opens the window.
#[test]
fn a_faulty_registry_fails_the_model_derived_traces() {
    let traces = model_traces();
    let replays = |faults: Faults| -> Vec<Result<usize, String>> {
        traces
            .iter()
            .map(|(_, trace)| {
                let mut target =
                    client_trace::RegistryTarget::new(client_trace::rules_of(trace), faults);
                client_trace::replay(trace, &mut target)
            })
            .collect()
    };
    // The traces that fail are exactly those with a step that `marks`, each at its first one.
    let fails_exactly_at = |faults: Faults, marks: &dyn Fn(&Value) -> bool| {
        let mut caught = 0;
        for ((file, trace), result) in traces.iter().zip(replays(faults)) {
            let first = trace["steps"]
                .as_array()
                .expect("steps")
                .iter()
                .position(marks);
            caught += usize::from(fails_at(file, &format!("{faults:?}"), result, first));
        }
        assert!(caught >= 5, "{faults:?} failed only {caught} traces");
    };
    fails_exactly_at(
        Faults {
            keep_empty_groups: true,
            ..Faults::default()
        },
        &|s| canon(&s["events"]).contains("\"group_unregistered\""),
    );
    fails_exactly_at(
        Faults {
            register_after_close: true,
            ..Faults::default()
        },
        &|s| s["op"]["op"] == "heartbeat" && s["result"]["result"] == "refused",
    );
    for faults in [
        Faults {
            split_remove_if_empty: true,
            ..Faults::default()
        },
        Faults {
            emit_after_unlock: true,
            ..Faults::default()
        },
    ] {
        for ((file, _), r) in traces.iter().zip(replays(faults)) {
            r.unwrap_or_else(|e| {
                panic!("{file}: {faults:?} is not sequentially visible, yet: {e}")
            });
        }
    }
}

fn ha_traces() -> Vec<(String, Value)> {
    let files = committed("lifecycle/ha");
    assert!(files.len() >= 5, "HA traces missing: {files:?}");
    files.into_iter().map(|f| (f.clone(), load(&f))).collect()
}

#[test]
fn ha_traces_replay_on_the_oracle() {
    for (file, trace) in ha_traces() {
        let mut target = ha_trace::ModelTarget(rmq_lifecycle::core::HaModel::new(
            ha_trace::config_of(&trace),
        ));
        let ops = ha_trace::replay(&trace, &mut target).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(ops > 0, "{file}: no operations");
    }
}

#[test]
fn ha_traces_replay_on_the_real_master() {
    for (file, trace) in ha_traces() {
        let mut target =
            ha_trace::RealTarget::new(ha_trace::config_of(&trace), ha_ops::DriverFaults::default());
        let ops = ha_trace::replay(&trace, &mut target).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(ops > 0, "{file}: no operations");
        if file.ends_with("incident_probe_storm.json") {
            assert!(ops > 1_000 * 7, "{file}: only {ops} operations");
            let end = ha_trace::Target::observe(&target);
            assert_eq!(end.table.len(), 1, "{file}: only the slave is left");
            assert!(end.accepted_total > 1_000);
        }
    }
}

/// HA traces derived from the model (`lifecycle/model/ha/`, written by `models/trace/derive.py
/// --model ha` from TLC's state graph of `models/HaConnection.tla`, not by the generators here):
/// their expectations come from the model's states, and they leave out the fields the model does
/// not determine.
fn model_ha_traces() -> Vec<(String, Value)> {
    let files = committed("lifecycle/model/ha");
    assert!(
        files.len() >= 5,
        "model-derived HA traces missing: {files:?}"
    );
    files.into_iter().map(|f| (f.clone(), load(&f))).collect()
}

#[test]
fn model_derived_ha_traces_replay_on_the_real_master() {
    for (file, trace) in model_ha_traces() {
        let mut target =
            ha_trace::RealTarget::new(ha_trace::config_of(&trace), ha_ops::DriverFaults::default());
        let ops = ha_trace::replay(&trace, &mut target).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(ops > 0, "{file}: no operations");
    }
}

#[test]
fn model_derived_ha_traces_replay_on_the_oracle() {
    for (file, trace) in model_ha_traces() {
        let mut target = ha_trace::ModelTarget(rmq_lifecycle::core::HaModel::new(
            ha_trace::config_of(&trace),
        ));
        ha_trace::replay(&trace, &mut target).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

/// The model-derived HA traces are not vacuous, on the planted faults of the table and the
/// acceptor (feature `harness`). A table that removes a row without raising its stop signal
/// (`HaFaults::remove_without_stop`) fails exactly the traces in which a task ends by itself (a
/// peer close, an idle timeout, a task failure, a report that closes the link), at the first such
/// step: the other task runs on without a row. An acceptor that does not reap the slot of a task
/// that unwound (`AcceptorFaults::lost_reap_on_panic`) fails exactly the traces with a task
/// failure, at the first one: it still holds the handle. The others pass every trace, as
/// models/README.md says: `split_close_all` and `store_after_shutdown` need a step of another
/// operation inside shutdown (a race), and `upstream_514_order` lives in `HaAcceptor::accept`,
/// which the replayer's driver does not call (it registers and spawns in separate ops).
#[test]
fn a_faulty_master_fails_the_model_derived_ha_traces() {
    use rmq_lifecycle::lifecycle::AcceptorFaults;
    use rmq_lifecycle::registry::ha::HaFaults;
    let traces = model_ha_traces();
    // The traces that fail are exactly those with a step that `marks`, each at its first one;
    // returns how many failed.
    let fails_exactly_at =
        |table: HaFaults, acceptor: AcceptorFaults, marks: &dyn Fn(&Value) -> bool| {
            let mut caught = 0;
            for (file, trace) in &traces {
                let mut target =
                    ha_trace::RealTarget::with_faults(ha_trace::config_of(trace), table, acceptor);
                let result = ha_trace::replay(trace, &mut target);
                let first = trace["steps"]
                    .as_array()
                    .expect("steps")
                    .iter()
                    .position(marks);
                let faults = format!("{table:?} {acceptor:?}");
                caught += usize::from(fails_at(file, &faults, result, first));
            }
            caught
        };
    // A step that closed a connection by one of its tasks' own ends (the ops after the behaviour,
    // on closed connections, close nothing).
    let closes = |s: &Value| s["events"].as_array().is_some_and(|e| !e.is_empty());
    let task_ends = |s: &Value| {
        let op = &s["op"]["op"];
        closes(s)
            && (op == "peer_close" || op == "idle_timeout" || op == "task_fail" || op == "report")
    };
    let caught = fails_exactly_at(
        HaFaults {
            remove_without_stop: true,
            ..HaFaults::default()
        },
        AcceptorFaults::default(),
        &task_ends,
    );
    assert!(
        caught >= 5,
        "remove_without_stop failed only {caught} traces"
    );
    let caught = fails_exactly_at(
        HaFaults::default(),
        AcceptorFaults {
            lost_reap_on_panic: true,
            ..AcceptorFaults::default()
        },
        &|s| s["op"]["op"] == "task_fail" && closes(s),
    );
    assert!(caught >= 1, "lost_reap_on_panic failed no trace");
    for (table, acceptor) in [
        (
            HaFaults {
                split_close_all: true,
                ..HaFaults::default()
            },
            AcceptorFaults::default(),
        ),
        (
            HaFaults::default(),
            AcceptorFaults {
                store_after_shutdown: true,
                ..AcceptorFaults::default()
            },
        ),
        (
            HaFaults::default(),
            AcceptorFaults {
                upstream_514_order: true,
                ..AcceptorFaults::default()
            },
        ),
    ] {
        assert_eq!(fails_exactly_at(table, acceptor, &|_| false), 0);
    }
}

// ------------------------------------------------------------------------------------------------
// The replay can fail.
// ------------------------------------------------------------------------------------------------

#[test]
fn a_mutated_wire_vector_is_reported() {
    let doc = load(remoting_wire::FILE);
    let mut v = doc["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .find(|v| v["name"] == "json_request_heartbeat")
        .expect("vector")
        .clone();
    remoting_wire::replay(&v).expect("the original replays");
    v["expect"]["frames"][0]["opaque"] = json!(2);
    let err = remoting_wire::replay(&v).expect_err("a flipped opaque must be caught");
    assert!(err.contains("frames"), "{err}");

    let doc = load(ha_wire::FILE);
    let mut v = doc["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .find(|v| v["name"] == "report_timestamp_probe")
        .expect("vector")
        .clone();
    ha_wire::replay(&v).expect("the original replays");
    v["expect"]["state"] = json!("TRANSFER");
    ha_wire::replay(&v).expect_err("a probe that leaves the link open must be caught");
}

#[test]
fn a_mutated_client_trace_is_reported() {
    let trace = load("lifecycle/client/close.json");
    let mut mutants = Vec::new();
    // A flipped result: the second close claims it closed.
    let mut t = trace.clone();
    let steps = t["steps"].as_array_mut().expect("steps");
    let second_close = steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s["op"]["op"] == "close")
        .nth(1)
        .map(|(i, _)| i)
        .expect("a second close");
    steps[second_close]["result"]["closed"] = json!(true);
    mutants.push(("result", t));
    // A dropped event.
    let mut t = trace.clone();
    let first_close = t["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .position(|s| s["op"]["op"] == "close")
        .expect("a close");
    t["steps"][first_close]["events"]
        .as_array_mut()
        .expect("events")
        .pop();
    mutants.push(("events", t));
    // A state with a group that should be gone.
    let mut t = trace.clone();
    t["steps"][first_close]["state"]["producers"]["PID_1"] =
        json!({ "members": { "1": 0 }, "consumer": null });
    mutants.push(("state", t));
    for (what, mutant) in mutants {
        for target in [
            &mut client_trace::ModelTarget::new(ClientRules::default())
                as &mut dyn client_trace::Target,
            &mut client_trace::RegistryTarget::new(ClientRules::default(), Faults::default()),
        ] {
            let err = client_trace::replay(&mutant, target).expect_err(what);
            assert!(err.contains(what), "{what}: {err}");
        }
    }
    // And a mutated repeat template in the incident trace.
    let mut t = load("lifecycle/client/incident_stale_groups_15000.json");
    let block = t["steps"]
        .as_array_mut()
        .expect("steps")
        .iter_mut()
        .find(|s| s.get("repeat").is_some())
        .expect("a repeat block");
    block["steps"][1]["events"][0]["client_id"] = json!("someone-else");
    let err = client_trace::replay(
        &t,
        &mut client_trace::ModelTarget::new(client_trace::rules_of(&t)),
    )
    .expect_err("a wrong template");
    assert!(err.contains("repeat iteration 0"), "{err}");
}

/// A registry that keeps empty groups (upstream #8673's defect) must fail the traces.
#[test]
fn a_faulty_registry_is_reported() {
    for (file, trace) in client_traces()
        .into_iter()
        .filter(|(f, _)| f.ends_with("/close.json") || f.contains("incident"))
    {
        let mut target = client_trace::RegistryTarget::new(
            client_trace::rules_of(&trace),
            Faults {
                keep_empty_groups: true,
                ..Faults::default()
            },
        );
        let err = client_trace::replay(&trace, &mut target)
            .expect_err("keep_empty_groups must be caught");
        assert!(
            ["NoEmptyGroup", "events", "state"]
                .iter()
                .any(|w| err.contains(w)),
            "{file}: {err}"
        );
    }
    let trace = load("lifecycle/client/close.json");
    let mut target = client_trace::RegistryTarget::new(
        ClientRules::default(),
        Faults {
            register_after_close: true,
            ..Faults::default()
        },
    );
    let err = client_trace::replay(&trace, &mut target).expect_err("register_after_close");
    assert!(err.contains("is closed"), "{err}");
}

#[test]
fn a_mutated_ha_trace_is_reported() {
    let trace = load("lifecycle/ha/healthy_slave.json");
    let first_ack = trace["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .position(|s| s["result"]["result"] == "reported")
        .expect("a report");
    let mut result = trace.clone();
    result["steps"][first_ack]["result"]["acked"] = json!([1]);
    let mut observed = trace.clone();
    observed["steps"][first_ack]["observed"]["reported"] = json!(0);
    for (what, mutant) in [("result", result), ("observed", observed)] {
        for target in [
            &mut ha_trace::ModelTarget(rmq_lifecycle::core::HaModel::new(ha_trace::config_of(
                &mutant,
            ))) as &mut dyn ha_trace::Target,
            &mut ha_trace::RealTarget::new(
                ha_trace::config_of(&mutant),
                ha_ops::DriverFaults::default(),
            ),
        ] {
            let err = ha_trace::replay(&mutant, target).expect_err(what);
            assert!(err.contains(what), "{what}: {err}");
        }
    }
}

/// Upstream's two defects, planted in the real side, must fail the probe-storm trace: acks taken
/// unchecked (the probe's text becomes an offset) and a peer close that leaves the row behind.
#[test]
fn a_faulty_ha_master_is_reported() {
    let trace = load("lifecycle/ha/incident_probe_storm.json");
    for faults in [
        ha_ops::DriverFaults {
            unchecked_acks: true,
            ..Default::default()
        },
        ha_ops::DriverFaults {
            forget_on_peer_close: true,
            ..Default::default()
        },
    ] {
        let mut target = ha_trace::RealTarget::new(ha_trace::config_of(&trace), faults);
        let err = ha_trace::replay(&trace, &mut target).expect_err("a planted fault");
        assert!(err.contains("step"), "{faults:?}: {err}");
    }
}

/// A faulty variant's replay of a model-derived trace: it must fail exactly at the first step
/// that shows the fault (`first`), or pass if none does. True if it failed there.
fn fails_at<T>(file: &str, faults: &str, result: Result<T, String>, first: Option<usize>) -> bool {
    match (result, first) {
        (Err(err), Some(step)) => {
            assert!(
                err.starts_with(&format!("step {step}: ")),
                "{file}: {faults}: {err}"
            );
            true
        }
        (Err(err), None) => panic!("{file}: {faults} failed a trace it should pass: {err}"),
        (Ok(_), Some(step)) => panic!("{file}: {faults} passed, though step {step} shows it"),
        (Ok(_), None) => false,
    }
}
