//! Client lifecycle traces (`lifecycle/client/`): generated from the oracle `core::ClientModel`,
//! replayed on the oracle and on the registry through the `ClientChannel` handles.

use super::*;
use rmq_lifecycle::core::Millis;

/// Binds template variables for one iteration of a repeat block.
pub(super) type Binds = Vec<(String, i64)>;

/// Substitutes `{name}` in every string; a string that is exactly `{name}` becomes the number.
pub(super) fn expand(v: &Value, binds: &Binds) -> Value {
    match v {
        Value::String(s) if s.contains('{') => {
            for (name, value) in binds {
                if s.len() == name.len() + 2 && s[1..s.len() - 1] == **name {
                    return json!(value);
                }
            }
            let mut out = s.clone();
            for (name, value) in binds {
                out = out.replace(&format!("{{{name}}}"), &value.to_string());
            }
            Value::String(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| expand(x, binds)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), expand(x, binds)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The inverse of [`expand`] for one iteration's recorded steps: numbers equal to a variable
/// and its decimal text inside strings become placeholders. The generator then checks that
/// expanding the template reproduces every iteration exactly, so a coincidental match fails
/// generation instead of producing a wrong vector.
pub(super) fn abstract_(v: &Value, binds: &Binds) -> Value {
    match v {
        Value::Number(n) => match binds.iter().find(|(_, x)| n.as_i64() == Some(*x)) {
            Some((name, _)) => Value::String(format!("{{{name}}}")),
            None => v.clone(),
        },
        Value::String(s) => {
            let mut out = s.clone();
            let mut sorted = binds.clone();
            sorted.sort_by_key(|(_, x)| std::cmp::Reverse(x.to_string().len()));
            for (name, value) in &sorted {
                out = out.replace(&value.to_string(), &format!("{{{name}}}"));
            }
            Value::String(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| abstract_(x, binds)).collect()),
        // Raw bytes (an HA report) are data, never a variable.
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = if k == "bytes" {
                        x.clone()
                    } else {
                        abstract_(x, binds)
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn step_json(op: &ClientOp, result: &OpResult, events: &[ClientEvent]) -> Value {
    json!({
        "op": serde_json::to_value(op).expect("op serializes"),
        "result": serde_json::to_value(result).expect("result serializes"),
        "events": serde_json::to_value(events).expect("events serialize"),
    })
}

/// Builds a trace by applying ops to the oracle and recording what it answers.
pub(super) struct Builder {
    name: String,
    description: String,
    model: ClientModel,
    items: Vec<Value>,
    registered: u64,
    state_every_step: bool,
}

impl Builder {
    pub(super) fn new(name: &str, description: &str, rules: ClientRules) -> Self {
        Builder {
            name: name.into(),
            description: description.into(),
            model: ClientModel::new(rules),
            items: Vec::new(),
            registered: 0,
            state_every_step: true,
        }
    }

    /// Record the state only at checkpoints (after repeat blocks and [`Builder::checkpoint`]).
    pub(super) fn sparse(mut self) -> Self {
        self.state_every_step = false;
        self
    }

    fn apply(&mut self, op: &ClientOp) -> (OpResult, Vec<ClientEvent>) {
        let mut events = Vec::new();
        let result = self.model.apply(op, &mut events);
        // The structural invariants after every op; `NoResurrection`, which is linear in the
        // closed channels, at checkpoints (`state`).
        if let Err(v) = self.model.tables.check_invariants() {
            panic!(
                "{}: the oracle broke its own invariant after {op:?}: {v}",
                self.name
            );
        }
        if let OpResult::Registered { .. } = result {
            self.registered += 1;
        }
        (result, events)
    }

    fn state(&self) -> Value {
        if let Err(v) = self.model.check_invariants() {
            panic!("{}: the oracle broke its own invariant: {v}", self.name);
        }
        serde_json::to_value(&self.model.tables).expect("tables serialize")
    }

    /// Applies one op; returns the result.
    pub(super) fn op(&mut self, op: ClientOp) -> OpResult {
        let (result, events) = self.apply(&op);
        let mut step = step_json(&op, &result, &events);
        if self.state_every_step {
            step["state"] = self.state();
        }
        self.items.push(step);
        result
    }

    /// Registers a channel and returns its id.
    pub(super) fn register(&mut self) -> ChannelId {
        match self.op(ClientOp::RegisterChannel) {
            OpResult::Registered { channel } => channel,
            other => panic!("{}: register refused: {other:?}", self.name),
        }
    }

    pub(super) fn heartbeat(&mut self, ch: ChannelId, data: HeartbeatData, now: u64) -> OpResult {
        self.op(ClientOp::Heartbeat {
            channel: ch,
            data,
            now: Millis(now),
        })
    }

    pub(super) fn close(&mut self, ch: ChannelId) -> OpResult {
        self.op(ClientOp::Close { channel: ch })
    }

    pub(super) fn scan(&mut self, now: u64) -> OpResult {
        self.op(ClientOp::Scan { now: Millis(now) })
    }

    pub(super) fn unregister(
        &mut self,
        ch: ChannelId,
        p: Option<&str>,
        c: Option<&str>,
    ) -> OpResult {
        self.op(ClientOp::Unregister {
            channel: ch,
            producer_group: p.map(str::to_owned),
            consumer_group: c.map(str::to_owned),
        })
    }

    /// A state-only checkpoint: `{"state": ...}` with no op.
    pub(super) fn checkpoint(&mut self) {
        let state = self.state();
        self.items.push(json!({ "state": state }));
    }

    /// The id the next registered channel gets.
    pub(super) fn next_channel(&self) -> u64 {
        self.registered + 1
    }

    /// `count` iterations of `body`, stored once as a template. `vars` are `(name, from,
    /// step)`: in iteration `k` the variable is `from + k * step`. Panics if the iterations do
    /// not all fit the first one's template.
    pub(super) fn repeat(
        &mut self,
        count: usize,
        vars: &[(&str, i64, i64)],
        mut body: impl FnMut(&BTreeMap<&str, i64>) -> Vec<ClientOp>,
    ) {
        assert!(count > 0);
        let mut template: Option<Value> = None;
        for k in 0..count {
            let map: BTreeMap<&str, i64> = vars
                .iter()
                .map(|(n, from, step)| (*n, from + k as i64 * step))
                .collect();
            let binds: Binds = map.iter().map(|(n, x)| ((*n).to_owned(), *x)).collect();
            let ops = body(&map);
            // The template is taken from the first iteration and checked here against the
            // second and the last (a coincidental match between a variable and another value
            // shows there); the replay on the oracle checks every iteration.
            if k != 0 && k != 1 && k != count - 1 {
                for op in &ops {
                    let mut events = Vec::new();
                    if let OpResult::Registered { .. } = self.model.apply(op, &mut events) {
                        self.registered += 1;
                    }
                }
                continue;
            }
            let steps: Vec<Value> = ops
                .iter()
                .map(|op| {
                    let (result, events) = self.apply(op);
                    step_json(op, &result, &events)
                })
                .collect();
            let steps = Value::Array(steps);
            match &template {
                None => template = Some(abstract_(&steps, &binds)),
                Some(t) => {
                    let again = expand(t, &binds);
                    assert!(
                        again == steps,
                        "{}: iteration {k} of a repeat block does not fit the template:\n{}\n{}",
                        self.name,
                        canon(&again),
                        canon(&steps),
                    );
                }
            }
        }
        let vars_json: serde_json::Map<String, Value> = vars
            .iter()
            .map(|(n, from, step)| ((*n).to_owned(), json!({ "from": from, "step": step })))
            .collect();
        let state = self.state();
        self.items.push(json!({
            "repeat": { "count": count, "vars": vars_json },
            "steps": template.expect("count > 0"),
            "state": state,
        }));
    }

    pub(super) fn finish(self) -> String {
        let rules = serde_json::to_value(self.model.rules).expect("rules serialize");
        render(
            json!({
                "format": "rmq-lifecycle/client-trace/1",
                "name": self.name,
                "description": self.description,
                "rules": rules,
            }),
            "steps",
            &self.items,
        )
    }
}

/// An implementation a trace is replayed against.
pub(super) trait Target {
    fn apply(&mut self, op: &ClientOp) -> Result<(OpResult, Vec<ClientEvent>), String>;
    fn state(&self) -> ClientTables;
    fn check(&self) -> Result<(), String>;
}

/// The oracle, remembering which producer groups it removed.
pub(super) struct ModelTarget {
    model: ClientModel,
    pub(super) removed_producer_groups: std::collections::BTreeSet<String>,
}

impl ModelTarget {
    pub(super) fn new(rules: ClientRules) -> Self {
        ModelTarget {
            model: ClientModel::new(rules),
            removed_producer_groups: Default::default(),
        }
    }
}

impl Target for ModelTarget {
    fn apply(&mut self, op: &ClientOp) -> Result<(OpResult, Vec<ClientEvent>), String> {
        let mut events = Vec::new();
        let r = self.model.apply(op, &mut events);
        for e in &events {
            if let ClientEvent::GroupUnregistered {
                kind: GroupKind::Producer,
                group,
                ..
            } = e
            {
                self.removed_producer_groups.insert(group.clone());
            }
        }
        Ok((r, events))
    }
    fn state(&self) -> ClientTables {
        self.model.tables.clone()
    }
    fn check(&self) -> Result<(), String> {
        // Structural only: `NoResurrection` is linear in every channel ever closed; the
        // generator checked it at each recorded state.
        self.model
            .tables
            .check_invariants()
            .map_err(|v| v.to_string())
    }
}

/// The concurrent registry, driven sequentially through the public lifecycle API, with a
/// listener collecting its events. Each op maps onto one handle call: `RegisterChannel` is
/// `ClientChannel::new((), ..).register`, `Heartbeat` and `Unregister` go through the
/// channel's `ChannelHandle`, `Close` takes its `Registered` handle out of `open` and closes
/// it, and `Scan` is the housekeeping `scan_inactive`.
pub(super) struct RegistryTarget {
    registry: Arc<ClientRegistry>,
    heard: Arc<Mutex<Vec<ClientEvent>>>,
    /// Every channel registered so far (closed ones too: a late op on one must be refused).
    handles: BTreeMap<ChannelId, ChannelHandle>,
    /// The `Registered` handles not closed yet.
    open: BTreeMap<ChannelId, ClientChannel<Registered, ()>>,
}

impl RegistryTarget {
    pub(super) fn new(rules: ClientRules, faults: Faults) -> Self {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let sink = heard.clone();
        let config = RegistryConfig {
            rules,
            shards: 16,
            faults,
        };
        let registry = Arc::new(ClientRegistry::with_listener(
            config,
            move |e: &ClientEvent| sink.lock().expect("sink").push(e.clone()),
        ));
        RegistryTarget {
            registry,
            heard,
            handles: BTreeMap::new(),
            open: BTreeMap::new(),
        }
    }

    fn handle(&self, ch: ChannelId) -> Result<&ChannelHandle, String> {
        self.handles
            .get(&ch)
            .ok_or_else(|| format!("the trace names {ch}, which it never registered"))
    }

    /// `ClientOp::Close`: true if this call closed the channel, as the oracle answers. The
    /// first close consumes the `Registered` handle; a later one finds none. The registry
    /// must agree: open while the handle is held, closed after.
    fn close(&mut self, ch: ChannelId) -> Result<bool, String> {
        let handle = self.handle(ch)?.clone();
        match self.open.remove(&ch) {
            Some(registered) => {
                if handle.is_closed() {
                    return Err(format!(
                        "{ch} is closed in the registry, but its handle is held"
                    ));
                }
                registered.close(CloseReason::PeerClosed);
                if !handle.is_closed() {
                    return Err(format!(
                        "{ch} is still open in the registry after its handle closed"
                    ));
                }
                Ok(true)
            }
            None if handle.is_closed() => Ok(false),
            None => Err(format!(
                "{ch}'s handle was closed, but the registry has it open"
            )),
        }
    }
}

impl Target for RegistryTarget {
    fn apply(&mut self, op: &ClientOp) -> Result<(OpResult, Vec<ClientEvent>), String> {
        let refused = |e: rmq_lifecycle::core::ClientError| OpResult::Refused {
            error: e.to_string(),
        };
        let result = match op {
            ClientOp::RegisterChannel => {
                match ClientChannel::new((), "trace").register(&self.registry) {
                    Ok(registered) => {
                        let channel = registered.id();
                        self.handles.insert(channel, registered.handle());
                        self.open.insert(channel, registered);
                        OpResult::Registered { channel }
                    }
                    Err(refused_channel) => refused(refused_channel.error),
                }
            }
            ClientOp::Heartbeat { channel, data, now } => {
                match self.handle(*channel)?.heartbeat(data, *now) {
                    Ok(outcome) => OpResult::Heartbeat { outcome },
                    Err(e) => refused(e),
                }
            }
            ClientOp::Unregister {
                channel,
                producer_group,
                consumer_group,
            } => match self.handle(*channel)?.unregister(
                "",
                producer_group.as_deref(),
                consumer_group.as_deref(),
            ) {
                Ok(()) => OpResult::Unregistered,
                Err(e) => refused(e),
            },
            ClientOp::Close { channel } => OpResult::Closed {
                closed: self.close(*channel)?,
            },
            ClientOp::Scan { now } => OpResult::Scanned {
                orphaned: self.registry.scan_inactive(*now).orphaned,
            },
        };
        let events = std::mem::take(&mut *self.heard.lock().expect("sink"));
        Ok((result, events))
    }
    fn state(&self) -> ClientTables {
        self.registry.snapshot()
    }
    fn check(&self) -> Result<(), String> {
        self.registry.check_invariants().map_err(|v| v.to_string())
    }
}

fn sorted(mut v: Vec<ClientEvent>) -> Vec<ClientEvent> {
    v.sort();
    v
}

/// One step of a trace, typed.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    op: Option<ClientOp>,
    result: Option<OpResult>,
    events: Option<Vec<ClientEvent>>,
    state: Option<ClientTables>,
}

/// [`expand`] on a template step's canonical text: the same substitution, without building a
/// JSON tree per iteration (the incident trace has 60,000 expanded steps).
pub(super) fn expand_text(template: &str, binds: &Binds) -> String {
    let mut s = template.to_owned();
    for (name, value) in binds {
        s = s.replace(&format!("\"{{{name}}}\""), &value.to_string());
    }
    for (name, value) in binds {
        s = s.replace(&format!("{{{name}}}"), &value.to_string());
    }
    s
}

fn run_step(target: &mut dyn Target, step: Step) -> Result<(), String> {
    if let Some(op) = step.op {
        let want = step.result.ok_or("a step with an op has no result")?;
        let want_events = step.events.ok_or("a step with an op has no events")?;
        let (got, events) = target.apply(&op)?;
        if got != want {
            return Err(format!("{op:?}: result: expected {want:?}, got {got:?}"));
        }
        // A multiset: the order of events within one operation is not specified.
        let (want_events, events) = (sorted(want_events), sorted(events));
        if events != want_events {
            return Err(format!(
                "{op:?}: events: expected {want_events:?}, got {events:?}"
            ));
        }
    }
    if let Some(want) = step.state {
        target.check()?;
        let got = target.state();
        if got != want {
            return Err(format!(
                "state: expected {}, got {}",
                canon(&serde_json::to_value(&want).expect("tables")),
                canon(&serde_json::to_value(&got).expect("tables"))
            ));
        }
    }
    Ok(())
}

/// Replays a whole trace; returns the number of operations applied.
pub(super) fn replay(trace: &Value, target: &mut dyn Target) -> Result<usize, String> {
    replay_steps(trace, "state", |step: Step, _| run_step(target, step))
}

pub(super) fn rules_of(trace: &Value) -> ClientRules {
    serde_json::from_value(trace["rules"].clone()).expect("rules")
}

// -------------------------------------------------------------------------------------------
// Scenarios.
// -------------------------------------------------------------------------------------------

/// The channel id numbered `n`, as a trace spells it (`ChannelId` has no public constructor;
/// the `harness` feature lets a harness read one back). The generators predict ids by
/// registration order, as the oracle assigns them (the first channel is 1).
fn channel_id(n: i64) -> ChannelId {
    serde_json::from_value(json!(n)).expect("a channel id")
}

fn producers(client: &str, groups: &[&str]) -> HeartbeatData {
    HeartbeatData::producers(client, groups.iter().copied())
}

fn consumer(group: &str, model: MessageModel, topics: &[(&str, i64)]) -> ConsumerData {
    ConsumerData {
        group_name: group.into(),
        message_model: model,
        subscription_data_set: topics
            .iter()
            .map(|(t, v)| SubscriptionData {
                topic: (*t).into(),
                sub_string: "*".into(),
                sub_version: *v,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn both(client: &str, producer: &[&str], consumers: Vec<ConsumerData>) -> HeartbeatData {
    HeartbeatData {
        client_id: client.into(),
        producer_data_set: producer
            .iter()
            .map(|g| ProducerData {
                group_name: (*g).into(),
            })
            .collect(),
        consumer_data_set: consumers,
        ..Default::default()
    }
}

fn heartbeat_groups() -> String {
    let mut b = Builder::new(
        "heartbeat_producer_and_consumer",
        "heartbeats register a channel into producer and consumer groups; a second channel joins the clustering consumer group (CHANGE lists both); a refresh creates nothing",
        ClientRules::default(),
    );
    let a = b.register();
    let order = || consumer("CID_ORDER", MessageModel::Clustering, &[("TopicOrder", 1)]);
    b.heartbeat(a, both("10.0.0.1@1", &["PID_ORDER"], vec![order()]), 1_000);
    let c = b.register();
    b.heartbeat(c, both("10.0.0.2@1", &[], vec![order()]), 2_000);
    b.heartbeat(a, both("10.0.0.1@1", &["PID_ORDER"], vec![order()]), 31_000);
    b.heartbeat(
        c,
        both(
            "10.0.0.2@1",
            &["PID_PAY"],
            vec![consumer(
                "CID_ORDER",
                MessageModel::Clustering,
                &[("TopicOrder", 1), ("TopicRetry", 1)],
            )],
        ),
        32_000,
    );
    b.finish()
}

fn unregister() -> String {
    let mut b = Builder::new(
        "unregister",
        "UNREGISTER_CLIENT removes the named memberships only; the last member leaving removes the group; unregistering a group the channel is not in is a no-op",
        ClientRules::default(),
    );
    let a = b.register();
    let c = b.register();
    let data = both(
        "c1",
        &["PID_A", "PID_B"],
        vec![consumer("CID_A", MessageModel::Clustering, &[("T", 1)])],
    );
    b.heartbeat(a, data, 0);
    b.heartbeat(c, both("c2", &["PID_A"], vec![]), 0);
    b.unregister(a, Some("PID_A"), None);
    b.unregister(a, Some("PID_B"), Some("CID_A"));
    b.unregister(a, Some("PID_NEVER"), Some("CID_NEVER"));
    b.unregister(c, Some("PID_A"), None);
    b.heartbeat(a, producers("c1", &["PID_A"]), 10);
    b.finish()
}

fn close() -> String {
    let mut b = Builder::new(
        "close",
        "closing a channel removes it from exactly its groups (each emptied group goes) and unmaps its client id; a second close returns closed=false and emits nothing; heartbeat and unregister on a closed channel are refused",
        ClientRules::default(),
    );
    let a = b.register();
    let c = b.register();
    b.heartbeat(
        a,
        both(
            "client-a",
            &["PID_1", "PID_2"],
            vec![consumer("CID_1", MessageModel::Clustering, &[("T", 1)])],
        ),
        0,
    );
    b.heartbeat(
        c,
        both(
            "client-c",
            &["PID_2"],
            vec![consumer("CID_1", MessageModel::Clustering, &[("T", 1)])],
        ),
        0,
    );
    b.close(a);
    b.close(a);
    b.heartbeat(a, producers("client-a", &["PID_3"]), 5);
    b.unregister(a, Some("PID_2"), None);
    b.close(c);
    b.finish()
}

fn scan_expiry() -> String {
    let mut b = Builder::new(
        "scan_expiry_per_membership",
        "expiry is per (group, channel) membership (upstream #10435): a channel refreshing only one of its groups loses the other; when its last membership expires it is reported orphaned",
        ClientRules::default(),
    );
    let a = b.register();
    b.heartbeat(a, producers("c", &["old", "live"]), 0);
    b.heartbeat(a, producers("c", &["live"]), 100_000);
    b.scan(120_000);
    b.scan(120_001);
    b.scan(130_000);
    b.scan(220_000);
    b.scan(220_001);
    b.close(a);
    b.finish()
}

fn same_client_id() -> String {
    let mut b = Builder::new(
        "same_client_id_two_channels",
        "ProducerManagerTest.scanNotActiveChannelWithSameClientId (#6810): a client id on two channels; expiring one keeps the other mapped",
        ClientRules::default(),
    );
    let a = b.register();
    let c = b.register();
    b.heartbeat(a, producers("clientId", &["FooBar"]), 0);
    b.heartbeat(c, producers("clientId", &["FooBar"]), 100_000);
    b.scan(120_010);
    b.close(a);
    b.heartbeat(c, producers("clientId-renamed", &["FooBar"]), 130_000);
    b.finish()
}

fn caps() -> String {
    let mut b = Builder::new(
        "caps",
        "max_channels refuses a registration; max_groups_per_channel refuses a whole heartbeat and changes nothing; groups the channel is already in and duplicates in one heartbeat do not count twice",
        ClientRules {
            expiry_ms: 120_000,
            max_channels: 2,
            max_groups_per_channel: 3,
        },
    );
    let a = b.register();
    b.register();
    b.op(ClientOp::RegisterChannel);
    b.heartbeat(a, producers("c", &["g1", "g2"]), 0);
    b.heartbeat(a, producers("c", &["g1", "g3", "g4"]), 1);
    b.heartbeat(a, producers("other-id", &["g1", "g2", "g3", "g3"]), 2);
    b.heartbeat(
        a,
        both(
            "c",
            &["g1"],
            vec![consumer("cg", MessageModel::Clustering, &[])],
        ),
        3,
    );
    b.finish()
}

fn consumers() -> String {
    let mut b = Builder::new(
        "consumer_groups",
        "a broadcasting group never announces CHANGE; a clustering group announces joins, leaves and topic changes; a higher subVersion replaces a subscription without a CHANGE",
        ClientRules::default(),
    );
    let a = b.register();
    let c = b.register();
    let bc = |topics: &[(&str, i64)]| consumer("CID_BC", MessageModel::Broadcasting, topics);
    let cl = |topics: &[(&str, i64)]| consumer("CID_CL", MessageModel::Clustering, topics);
    b.heartbeat(
        a,
        both("a", &[], vec![bc(&[("T1", 1)]), cl(&[("T1", 1)])]),
        0,
    );
    b.heartbeat(
        c,
        both("c", &[], vec![bc(&[("T1", 1)]), cl(&[("T1", 1)])]),
        0,
    );
    b.heartbeat(
        a,
        both("a", &[], vec![bc(&[("T1", 1)]), cl(&[("T1", 2)])]),
        10,
    );
    b.heartbeat(
        a,
        both("a", &[], vec![bc(&[("T2", 1)]), cl(&[("T2", 1)])]),
        20,
    );
    b.unregister(c, None, Some("CID_CL"));
    b.close(c);
    b.finish()
}

fn heartbeat_v2() -> String {
    let mut b = Builder::new(
        "heartbeat_v2_fingerprint",
        "ClientManageProcessorTest.processRequest_heartbeat: full topicA -> IS_SUB_CHANGE false; withoutSub same fingerprint -> false; full topicB with a new fingerprint -> true; withoutSub topicB -> false; a v1 heartbeat (fingerprint 0) is always true",
        ClientRules::default(),
    );
    let a = b.register();
    let hb = |topic: &str, fp: i64, without: bool| {
        let topics: &[(&str, i64)] = if without { &[] } else { &[(topic, 1)] };
        HeartbeatData {
            client_id: "v2-client".into(),
            consumer_data_set: vec![consumer("FooBarGroup", MessageModel::Clustering, topics)],
            heartbeat_fingerprint: fp,
            without_sub: without,
            ..Default::default()
        }
    };
    b.heartbeat(a, hb("topicA", 111, false), 0);
    b.heartbeat(a, hb("topicA", 111, true), 1);
    b.heartbeat(a, hb("topicB", 222, false), 2);
    b.heartbeat(a, hb("topicB", 222, true), 3);
    b.heartbeat(a, hb("topicB", 0, false), 4);
    b.finish()
}

/// xorshift64*: a fixed, dependency-free generator, so the random traces never change with a
/// crate upgrade.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

fn random(seed: u64, steps: usize) -> String {
    const PG: &[&str] = &["pg0", "pg1", "pg2"];
    const CG: &[&str] = &["cg0", "cg1"];
    const TOPICS: &[&str] = &["t0", "t1"];
    const IDS: &[&str] = &["", "cA", "cB"];
    let mut rng = Rng(seed);
    let mut b = Builder::new(
        &format!("random_seed_{seed}"),
        &format!(
            "{steps} random operations (xorshift64* seed {seed}) over 3 producer and 2 consumer groups, expiry 100 ms, at most 4 channels and 4 groups per channel"
        ),
        ClientRules {
            expiry_ms: 100,
            max_channels: 4,
            max_groups_per_channel: 4,
        },
    );
    let mut now = 0u64;
    let mut channels: Vec<ChannelId> = Vec::new();
    while b.items.len() < steps {
        now += rng.below(40);
        let roll = rng.below(16);
        if channels.is_empty() || roll < 2 {
            if let OpResult::Registered { channel } = b.op(ClientOp::RegisterChannel) {
                channels.push(channel);
            }
            continue;
        }
        let ch = channels[rng.below(channels.len() as u64) as usize];
        match roll {
            2..=8 => {
                let producer_data_set = (0..rng.below(4))
                    .map(|_| ProducerData {
                        group_name: rng.pick(PG).into(),
                    })
                    .collect();
                let consumer_data_set = (0..rng.below(3))
                    .map(|_| {
                        let model = if rng.below(3) == 0 {
                            MessageModel::Broadcasting
                        } else {
                            MessageModel::Clustering
                        };
                        let subs: Vec<(&str, i64)> = (0..rng.below(3))
                            .map(|_| (rng.pick(TOPICS), rng.below(3) as i64))
                            .collect();
                        consumer(rng.pick(CG), model, &subs)
                    })
                    .collect();
                let data = HeartbeatData {
                    client_id: rng.pick(IDS).into(),
                    producer_data_set,
                    consumer_data_set,
                    heartbeat_fingerprint: [0, 7, 9][rng.below(3) as usize],
                    without_sub: rng.below(2) == 0,
                };
                b.heartbeat(ch, data, now);
            }
            9 | 10 => {
                let p = (rng.below(2) == 0).then(|| rng.pick(PG));
                let c = (rng.below(2) == 0).then(|| rng.pick(CG));
                b.unregister(ch, p, c);
            }
            11 | 12 => {
                b.close(ch);
            }
            _ => {
                b.scan(now);
            }
        }
    }
    b.finish()
}

/// The incident (#8673): a client creates producer group `IotRuleEngine-<timestamp>` over and
/// over and abandons it. 10,000 of them leave by their channel closing, 5,000 by expiry (each
/// expired channel orphaned, then closed by the transport), while two live channels keep
/// their groups. At the end only the live groups remain.
fn stale_groups() -> String {
    let mut b = Builder::new(
        "incident_stale_groups_15000",
        "15,000 abandoned IotRuleEngine-<timestamp> producer groups (#8673): 10,000 leave when their channel closes, 5,000 expire (one per scan, 121 s after their only heartbeat) and their orphaned channels are closed; two live channels keep PID_ORDER, PID_PAY and CID_ORDER; the table ends with only those",
        ClientRules::default(),
    )
    .sparse();
    let live1 = b.register();
    let live2 = b.register();
    let order = || consumer("CID_ORDER", MessageModel::Clustering, &[("TopicOrder", 1)]);
    let live = |b: &mut Builder, now: u64| {
        b.heartbeat(
            live1,
            both("10.0.0.1@live", &["PID_ORDER", "PID_PAY"], vec![order()]),
            now,
        );
        b.heartbeat(live2, both("10.0.0.2@live", &[], vec![order()]), now);
    };
    live(&mut b, 0);
    b.checkpoint();
    let iot = |ts: i64| format!("IotRuleEngine-{ts}");
    let client = |ts: i64| format!("10.0.9.9@IotRuleEngine-{ts}");
    let ts0: i64 = 1_729_000_000_000;
    let hb_op = |ch: i64, ts: i64, now: i64| ClientOp::Heartbeat {
        channel: channel_id(ch),
        data: producers(&client(ts), &[&iot(ts)]),
        now: Millis(now as u64),
    };
    // Closed: register, one heartbeat into a fresh group, close.
    let first = b.next_channel() as i64;
    b.repeat(
        10_000,
        &[
            ("ch", first, 1),
            ("ts", ts0, 60_000),
            ("now", 1_000_000, 1_000),
        ],
        |v| {
            vec![
                ClientOp::RegisterChannel,
                hb_op(v["ch"], v["ts"], v["now"]),
                ClientOp::Close {
                    channel: channel_id(v["ch"]),
                },
            ]
        },
    );
    // Expired: register, one heartbeat, the live channels refresh, scan. The first 121
    // iterations expire nothing; from then on each scan expires the group made 121 s before,
    // whose channel is then closed.
    let t0: i64 = 20_000_000;
    let ts1 = ts0 + 10_000 * 60_000;
    let lag = 121;
    let live_ops = |now: i64| {
        vec![
            ClientOp::Heartbeat {
                channel: live1,
                data: both("10.0.0.1@live", &["PID_ORDER", "PID_PAY"], vec![order()]),
                now: Millis(now as u64),
            },
            ClientOp::Heartbeat {
                channel: live2,
                data: both("10.0.0.2@live", &[], vec![order()]),
                now: Millis(now as u64),
            },
        ]
    };
    let first = b.next_channel() as i64;
    b.repeat(
        lag,
        &[("ch", first, 1), ("ts", ts1, 60_000), ("now", t0, 1_000)],
        |v| {
            let mut ops = vec![ClientOp::RegisterChannel, hb_op(v["ch"], v["ts"], v["now"])];
            ops.extend(live_ops(v["now"]));
            ops.push(ClientOp::Scan {
                now: Millis(v["now"] as u64),
            });
            ops
        },
    );
    let expiring = 5_000 - lag;
    let lag = lag as i64;
    b.repeat(
        expiring,
        &[
            ("ch", first + lag, 1),
            ("ts", ts1 + lag * 60_000, 60_000),
            ("now", t0 + lag * 1_000, 1_000),
            ("old_ch", first, 1),
            ("old_ts", ts1, 60_000),
        ],
        |v| {
            let mut ops = vec![ClientOp::RegisterChannel, hb_op(v["ch"], v["ts"], v["now"])];
            ops.extend(live_ops(v["now"]));
            ops.push(ClientOp::Scan {
                now: Millis(v["now"] as u64),
            });
            ops.push(ClientOp::Close {
                channel: channel_id(v["old_ch"]),
            });
            ops
        },
    );
    // The tail: the live channels refresh, one scan expires the last 121 groups, the
    // transport closes their channels.
    let end = t0 + 5_000 * 1_000 + 121_000;
    live(&mut b, end as u64);
    b.scan(end as u64);
    let tail_first = first + 5_000 - lag;
    b.repeat(lag as usize, &[("ch", tail_first, 1)], |v| {
        vec![ClientOp::Close {
            channel: channel_id(v["ch"]),
        }]
    });
    let tables = &b.model.tables;
    assert_eq!(
        tables.producers.keys().collect::<Vec<_>>(),
        ["PID_ORDER", "PID_PAY"],
        "the incident ends with only the live groups"
    );
    assert_eq!(tables.consumers.keys().collect::<Vec<_>>(), ["CID_ORDER"]);
    assert_eq!(tables.channels.len(), 2);
    b.checkpoint();
    b.finish()
}

/// Every client trace: (file name, contents).
pub(super) fn generate() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![
        ("heartbeat_producer_and_consumer".into(), heartbeat_groups()),
        ("unregister".into(), unregister()),
        ("close".into(), close()),
        ("scan_expiry_per_membership".into(), scan_expiry()),
        ("same_client_id_two_channels".into(), same_client_id()),
        ("caps".into(), caps()),
        ("consumer_groups".into(), consumers()),
        ("heartbeat_v2_fingerprint".into(), heartbeat_v2()),
        ("incident_stale_groups_15000".into(), stale_groups()),
    ];
    for seed in [1u64, 2, 3] {
        out.push((format!("random_seed_{seed}"), random(seed, 150)));
    }
    out.into_iter()
        .map(|(n, s)| (format!("lifecycle/client/{n}.json"), s))
        .collect()
}
