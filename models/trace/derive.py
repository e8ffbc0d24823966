#!/usr/bin/env python3
"""Model-derived conformance vectors: behaviours of models/ClientRegistry.tla and
models/HaConnection.tla, from TLC's state graph of a small configuration, written as client and
HA traces (tests/vectors/README.md) that `cargo test --test vectors` replays on the shipped code.

    python3 models/trace/derive.py            # regenerate tests/vectors/lifecycle/model/*/
    python3 models/trace/derive.py --check    # the same, but only compare with the committed files
    python3 models/trace/derive.py --verify   # fast (CI): each committed file is what the model
                                              # gives along its recorded behaviour
    python3 models/trace/derive.py --model ha # one model only (client or ha; default both)
    python3 models/trace/derive.py --model ha --dot G  # reuse a dump kept by an earlier --keep run

What is below describes the client registry; the HA lifecycle is derived the same way (its
section, "The HA lifecycle", says what differs: the operations, the phases, what a vector pins).

It prints the coverage: the model's distinct (action, phase) pairs in the state graph and those
the vectors exercise, with the reason for each pair left out. The method, the mapping from model
steps to operations and the definition of "phase" are in models/README.md, "Model-derived
vectors".

In short:

1. TLC explores models/ClientRegistryDerive.tla (ClientRegistry plus a history variable `step`
   naming the action and parameters that produced each state) for 2 channels and 2 producer
   groups, without symmetry, and dumps the whole state graph (`-dump dot`). TLC also dumps
   ClientRegistry.tla's own graph with the same constants (`-dump dot,actionlabels`): the derive
   graph with `step` projected away must have exactly its states and its transitions, each with
   the action name TLC gives it.
2. A *sequential* behaviour is one in which each operation's steps are contiguous: from a state
   where no operation is in flight, one operation runs all its steps (a heartbeat's start and
   joins, an unregister, a close's start, leaves and finish, a scan's collects and expiries) and
   nothing else moves until it is done. `Age` steps (time passing) go between operations. Only
   these behaviours can be replayed one call at a time; the others need shuttle, loom or trace
   validation.
3. Vectors are picked greedily: each one starts at Init and repeatedly extends itself by the
   shortest sequential path to an operation that exercises a pair no vector has exercised yet,
   until it has MAX_OPS operations. The next vector starts again from Init. When every pair
   that some sequential behaviour reaches is exercised, more vectors are picked the same way
   until every state between operations that a sequential behaviour reaches is visited.
4. Each model behaviour becomes ops with their expected results, events and the whole registry
   state after each op, all computed from the model's states (groups, seen, index, clients,
   live, hasCid), not from the Rust. Concrete times: every heartbeat and scan gets a `now` that
   makes exactly the memberships the model holds stale at a scan older than the expiry at that
   scan (a system of difference constraints, solved for the least times). A behaviour whose
   ageing no clock can produce (two memberships written by one heartbeat that expire at
   different scans; the model ages memberships one by one) is not used.

Python 3 standard library only. Needs java and target/tla/tla2tools.jar (`bash .ci/models.sh
ClientRegistry` installs it).
"""

import argparse
import collections
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
JAR = ROOT / "target" / "tla" / "tla2tools.jar"
OUT = ROOT / "tests" / "vectors" / "lifecycle" / "model" / "client"

CHANNELS = ["a1", "a2"]  # registry channels 1, 2 (registered in this order)
GROUPS = ["p1", "p2"]  # producer groups of these names
CLIENT_ID = "model-client"  # every channel reports the same client id (the model's `clients`)
RULES = {"expiry_ms": 100, "max_channels": 1048576, "max_groups_per_channel": 10000}
MAX_OPS = 12  # operations per vector (register_channel and Age not counted)

CONFIG = """CONSTANTS
    Channels = {%s}
    Groups = {%s}
    NoGroup = NoGroup
    SplitRemoveIfEmpty = FALSE
    KeepEmptyGroups = FALSE
    RegisterAfterClose = FALSE
SPECIFICATION %s
""" % (", ".join(CHANNELS), ", ".join(GROUPS), "%s")

CHANNEL_ID = {c: i + 1 for i, c in enumerate(CHANNELS)}


def die(msg):
    print(f"derive.py: {msg}", file=sys.stderr)
    sys.exit(2)


# ------------------------------------------------------------------------------------------------
# TLC
# ------------------------------------------------------------------------------------------------


def run_tlc(work, spec, spec_op, dot=None, labels=False):
    """Runs TLC on models/<spec>.tla with the model's config; returns the number of distinct
    states."""
    # TLC reads the spec and its config from its working directory (as validate.py runs it).
    for f in (M.module, M.derive):
        shutil.copy(MODELS / f"{f}.tla", work / f"{f}.tla")
    (work / f"{spec}.cfg").write_text(M.config % spec_op)
    cmd = ["java", "-XX:+UseParallelGC", f"-Djava.io.tmpdir={work}", "-cp", str(JAR),
           "tlc2.TLC", "-workers", "1", "-metadir", f"states-{spec}", "-config", f"{spec}.cfg"]
    cmd += M.tlc_flags
    if dot:
        cmd += ["-dump", "dot,actionlabels" if labels else "dot", str(dot)]
    cmd.append(f"{spec}.tla")
    out = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    m = re.search(r"(\d+) distinct states found, 0 states left on queue", out.stdout)
    if out.returncode != 0 or not m or "No error has been found" not in out.stdout:
        die(f"TLC on {spec} failed (exit {out.returncode}):\n{out.stdout[-3000:]}{out.stderr}")
    return int(m.group(1))


# ------------------------------------------------------------------------------------------------
# The state graph: TLC's dot dump, its node labels parsed as TLA+ values
# ------------------------------------------------------------------------------------------------


class FDict(dict):
    """A TLA+ function (a :> x @@ b :> y), hashable."""

    def __hash__(self):
        return hash(frozenset(self.items()))


TOKEN = re.compile(r'\s*(<<|>>|:>|\|->|@@|[(){},\[\]]|"(?:[^"\\]|\\.)*"'
                   r'|[A-Za-z_][A-Za-z0-9_]*|-?\d+)')


def parse_value(text):
    toks = TOKEN.findall(text)
    if "".join(toks) != re.sub(r"\s+", "", text):
        die(f"cannot tokenize TLA+ value {text!r}")
    pos = 0

    def value():
        nonlocal pos
        t = toks[pos]
        pos += 1
        if t == "(":
            f = FDict()
            while True:
                k = value()
                assert toks[pos] == ":>", text
                pos += 1
                f[k] = value()
                t = toks[pos]
                pos += 1
                if t == ")":
                    return f
                assert t == "@@", text
        if t == "[":  # a record [f |-> v, ...]
            f = FDict()
            while True:
                k = toks[pos]
                assert toks[pos + 1] == "|->", text
                pos += 2
                f[k] = value()
                t = toks[pos]
                pos += 1
                if t == "]":
                    return f
                assert t == ",", text
        if t in ("{", "<<"):
            close = "}" if t == "{" else ">>"
            items = []
            if toks[pos] == close:
                pos += 1
            else:
                while True:
                    items.append(value())
                    t2 = toks[pos]
                    pos += 1
                    if t2 == close:
                        break
                    assert t2 == ",", text
            return frozenset(items) if t == "{" else tuple(items)
        if t.startswith('"'):
            return t[1:-1]
        if t in ("TRUE", "FALSE"):
            return t == "TRUE"
        if re.fullmatch(r"-?\d+", t):
            return int(t)
        return t  # a model value

    v = value()
    assert pos == len(toks), text
    return v


NODE = re.compile(r'^(-?\d+) \[label="(.*)"(?:,style = filled)?\];?$')
EDGE = re.compile(r'^(-?\d+) -> (-?\d+)(?: \[label="([^"]*)")?')
UNESCAPE = re.compile(r"\\(.)")


class Graph:
    """Nodes (TLC fingerprints) with their states, and every edge TLC generated."""

    def __init__(self, path):
        self.lines = {}  # a label line -> its id
        self.parsed = []  # id -> (variable, value)
        self.text = []  # id -> the line
        self.nodes = {}  # node -> tuple of line ids (sorted by variable)
        self.succ = collections.defaultdict(list)
        self.labelled = []  # (src, dst, action name) with TLC's actionlabels
        self.init = None
        self.inits = []  # every initial state (TLC fills them)
        ids = {}  # TLC's fingerprint -> node (a small int)

        def node(fp):
            return ids.setdefault(fp, len(ids))

        with open(path, encoding="utf-8") as f:
            for line in f:
                if " -> " in line:
                    m = EDGE.match(line)
                    self.succ[node(m.group(1))].append(node(m.group(2)))
                    if m.group(3) is not None:
                        self.labelled.append((node(m.group(1)), node(m.group(2)), m.group(3)))
                    continue
                m = NODE.match(line.rstrip("\n"))
                if not m:
                    continue
                label = UNESCAPE.sub(lambda e: "\n" if e.group(1) == "n" else e.group(1),
                                     m.group(2))
                lines = []
                # One line per variable; TLC breaks a long value over several lines.
                for ln in label.replace("\n/\\ ", "\0").replace("\n", " ").split("\0"):
                    i = self.lines.get(ln)
                    if i is None:
                        var, _, val = ln.removeprefix("/\\ ").partition(" = ")
                        i = len(self.parsed)
                        self.lines[ln] = i
                        self.parsed.append((var, parse_value(val)))
                        self.text.append(ln)
                    lines.append(i)
                n = node(m.group(1))
                self.nodes[n] = tuple(sorted(lines, key=lambda i: self.parsed[i][0]))
                if self.init is None:
                    self.init = n
                if m.group(0).endswith("style = filled]"):
                    self.inits.append(n)
        if self.init is None:
            die(f"{path}: no state in the dump")
        self.cache = {}

    def state(self, n):
        s = self.cache.get(n)
        if s is None:
            s = {self.parsed[i][0]: self.parsed[i][1] for i in self.nodes[n]}
            self.cache[n] = s
        return s

    def key(self, n):
        """The model state as text, comparable across dumps (without `step`)."""
        return tuple(self.text[i] for i in self.projected(n))

    def projected(self, n):
        """The model state, without the history variable `step`."""
        return tuple(i for i in self.nodes[n] if self.parsed[i][0] != "step")


# ------------------------------------------------------------------------------------------------
# Phases: the abstract state of the acting channel or group when an action is taken
# ------------------------------------------------------------------------------------------------


def member_kind(s, g, ch):
    if g not in s["groups"]:
        return "group absent"
    v = s["seen"][g][ch]
    return "not a member" if v == "none" else f"{v} member"


def others_in(s, g, ch):
    return any(s["seen"][g][c] != "none" for c in CHANNELS if c != ch)


def empties(s, g, ch):
    return "others stay" if others_in(s, g, ch) else "empties the group"


def phase(step, s, t):
    """(action, phase) of the step from state s to state t."""
    a = step[0]
    if a == "HeartbeatStart":
        _, ch, G, g = step
        return a, f"{'one group' if len(G) == 1 else 'several groups'}; {member_kind(s, g, ch)}"
    if a == "HeartbeatJoin":
        _, ch, g = step
        stale = "stale" if s["reqStale"][ch] else "fresh"
        more = "last join" if s["reqTodo"][ch] == {g} else "more to join"
        return a, f"{more}; {member_kind(s, g, ch)}; request now {stale}"
    if a == "Unregister":
        _, ch, g = step
        return a, f"{member_kind(s, g, ch)}; {empties(s, g, ch)}"
    if a == "ChannelClosedStart":
        ch = step[1]
        idx = s["index"][ch]
        if not idx:
            return a, "no group"
        (g,) = idx - t["closeTodo"][ch]
        n = "one group" if len(idx) == 1 else "several groups"
        return a, f"{n}; first leave {empties(s, g, ch)}"
    if a == "ChannelClosedLeave":
        _, ch, g = step
        return a, empties(s, g, ch)
    if a == "ScanInactiveCollect":
        g = step[1]
        pos = "first" if s["scanPc"] == "idle" else ("last" if s["scanTodo"] == {g} else "middle")
        if g not in s["groups"]:
            what = "group absent"
        elif any(s["seen"][g][c] == "stale" for c in CHANNELS):
            what = "stale members"
        else:
            what = "no stale member"
        return a, f"{pos} shard; {what}"
    if a == "ScanInactiveExpire":
        _, g, ch = step
        if ch not in s["live"] or s["tomb"][ch]:
            return a, "skip: channel closed"
        if s["seen"][g][ch] != "stale":
            why = "refreshed" if s["seen"][g][ch] == "fresh" else "left"
            return a, f"skip: membership {why}"
        return a, f"expires; {empties(s, g, ch)}"
    if a == "Age":
        _, g, ch = step
        return a, "its channel idle" if s["lock"][ch] == "free" else "its channel mid-operation"
    return a, "-"


def show(pair):
    return f"{pair[0]} [{pair[1]}]"


# ------------------------------------------------------------------------------------------------
# Sequential behaviours
# ------------------------------------------------------------------------------------------------


def quiescent(s):
    return (s["scanPc"] == "idle" and all(s["lock"][c] == "free" for c in CHANNELS)
            and all(s["closePc"][c] != "leaving" and s["reqOp"][c] == "idle" for c in CHANNELS))


def own(first, step, _s=None):
    """Is `step` one of the steps of the operation that `first` started?"""
    a = first[0]
    if a == "HeartbeatStart":
        return step[0] == "HeartbeatJoin" and step[1] == first[1]
    if a == "ChannelClosedStart":
        return step[0] in ("ChannelClosedLeave", "ChannelClosedFinish") and step[1] == first[1]
    if a == "ScanInactiveCollect":
        return step[0] in ("ScanInactiveCollect", "ScanInactiveExpire")
    return False


class Sequential:
    """Operations run one at a time from quiescent states: macro steps (lists of edges)."""

    def __init__(self, graph):
        self.g = graph
        self.rep = {}  # projected state -> a node holding it (its successors are the same)
        self.memo = {}

    def node(self, n):
        return self.rep.setdefault(self.g.projected(n), n)

    def macros(self, q):
        """Every way one operation (or one Age) runs to completion from quiescent node q:
        a list of (edges, end node); edges are (src, dst, step)."""
        q = self.node(q)
        if q in self.memo:
            return self.memo[q]
        out = []
        for n in self.g.succ[q]:
            step = self.g.state(n)["step"]
            if M.skip(step):
                continue  # never from a quiescent state, or no operation starts with it
            first = [(q, n, step)]
            stack = [(n, first)]
            while stack:
                m, path = stack.pop()
                if M.quiescent(self.g.state(m)):
                    out.append((path, self.node(m)))
                    continue
                for k in self.g.succ[m]:
                    st = self.g.state(k)["step"]
                    if M.own(step, st, self.g.state(m)):
                        stack.append((k, path + [(m, k, st)]))
        self.memo[q] = out
        return out


# ------------------------------------------------------------------------------------------------
# From a sequential behaviour to a client trace
# ------------------------------------------------------------------------------------------------


def members_of(s):
    return {(g, c) for g in GROUPS for c in CHANNELS if s["seen"][g][c] != "none"}


def solve(nvars, lower):
    """Least non-negative x with x[b] >= x[a] + w for each (a, b, w); None if there is none."""
    x = [0] * nvars
    for _ in range(nvars + 1):
        changed = False
        for a, b, w in lower:
            if x[a] + w > x[b]:
                x[b] = x[a] + w
                changed = True
        if not changed:
            return x
    return None


def registry_state(s, written, times):
    producers = {}
    for g in sorted(s["groups"]):
        members = {str(CHANNEL_ID[c]): times[written[(g, c)]]
                   for c in CHANNELS if s["seen"][g][c] != "none"}
        producers[g] = {"consumer": None, "members": members}
    channels = {str(CHANNEL_ID[c]): {"client_id": CLIENT_ID if s["hasCid"][c] else None,
                                     "consumer_groups": [],
                                     "producer_groups": sorted(s["index"][c])}
                for c in CHANNELS if c in s["live"]}
    clients = ({CLIENT_ID: sorted(CHANNEL_ID[c] for c in s["clients"])} if s["clients"] else {})
    return {"channels": channels, "clients": clients, "consumers": {}, "producers": producers}


def leave_events(s, t, g, ch, cause):
    ev = [{"cause": cause, "channel": CHANNEL_ID[ch],
           "client_id": CLIENT_ID if s["hasCid"][ch] else "", "event": "client_unregistered",
           "group": g, "kind": "producer"}]
    if g in s["groups"] and g not in t["groups"]:
        ev.append({"cause": cause, "event": "group_unregistered", "group": g, "kind": "producer"})
    return ev


def realize(graph, path):
    """The client trace steps for a sequential behaviour (a list of macro steps), or None if no
    clock gives its ageing."""
    E = RULES["expiry_ms"]
    lower = []  # (a, b, w): time b >= time a + w
    nvars = 0
    last = None
    written = {}  # (g, ch) -> the time variable of the heartbeat that last wrote it
    ops = []  # (op json without times, result, events, time var or None, written snapshot, state)
    for edges, _end in path:
        first = edges[0][2]
        s = graph.state(edges[0][0])
        t = graph.state(edges[-1][1])
        a = first[0]
        if a == "Age":
            continue
        tv = None
        if a in ("HeartbeatStart", "ScanInactiveCollect"):
            tv = nvars
            nvars += 1
            if last is not None:
                lower.append((last, tv, 0))
            last = tv
        if a == "HeartbeatStart":
            ch, G = first[1], first[2]
            order = [e[2][-1] for e in edges]  # the groups in join order
            assert set(order) == set(G) and len(order) == len(G), edges
            joined = []
            for e in edges:
                g = e[2][-1]
                pre = graph.state(e[0])
                if pre["seen"][g][ch] == "none":
                    joined.append(g)
                written[(g, ch)] = tv
            op = {"channel": CHANNEL_ID[ch], "op": "heartbeat", "now": None,
                  "data": {"clientID": CLIENT_ID, "consumerDataSet": [],
                           "heartbeatFingerprint": 0,
                           "producerDataSet": [{"groupName": g} for g in order],
                           "withoutSub": False}}
            result = {"outcome": {"joined": len(joined), "sub_changed": True},
                      "result": "heartbeat"}
            events = [{"channel": CHANNEL_ID[ch], "client_id": CLIENT_ID,
                       "event": "client_registered", "group": g, "kind": "producer"}
                      for g in joined]
        elif a == "Unregister":
            _, ch, g = first
            op = {"channel": CHANNEL_ID[ch], "consumer_group": None, "op": "unregister",
                  "producer_group": g}
            result = {"result": "unregistered"}
            events = leave_events(s, t, g, ch, "unregister")
        elif a == "ChannelClosedStart":
            ch = first[1]
            op = {"channel": CHANNEL_ID[ch], "op": "close"}
            result = {"closed": True, "result": "closed"}
            events = []
            for src, dst, st in edges:
                pre, post = graph.state(src), graph.state(dst)
                if st[0] == "ChannelClosedStart" and pre["index"][ch]:
                    (g,) = pre["index"][ch] - post["closeTodo"][ch]  # the group it left
                    events += leave_events(pre, post, g, ch, "channel_closed")
                elif st[0] == "ChannelClosedLeave":
                    events += leave_events(pre, post, st[2], ch, "channel_closed")
        elif a == "ScanInactiveCollect":
            # The memberships the model holds stale expire at this scan, the others do not.
            for g, c in members_of(s):
                w = written[(g, c)]
                if s["seen"][g][c] == "stale":
                    lower.append((w, tv, E + 1))
                else:
                    lower.append((tv, w, -E))
            op = {"now": None, "op": "scan"}
            events = []
            expired = set()
            for src, dst, st in edges:
                if st[0] != "ScanInactiveExpire":
                    continue
                pre, post = graph.state(src), graph.state(dst)
                g, c = st[1], st[2]
                if pre["seen"][g][c] != "none" and post["seen"][g][c] == "none":
                    events += leave_events(pre, post, g, c, "expired")
                    expired.add(c)
            orphaned = sorted(CHANNEL_ID[c] for c in expired
                              if c in t["live"] and not t["index"][c])
            result = {"orphaned": orphaned, "result": "scanned"}
        else:
            die(f"no operation starts with {first}")
        ops.append((op, result, events, tv, dict(written), t))
    times = solve(nvars, lower)
    if times is None:
        return None
    steps = []
    for c in CHANNELS:  # every model channel is live from the start
        s0 = graph.state(graph.init)
        partial = {**s0, "live": frozenset(x for x in CHANNELS
                                           if CHANNEL_ID[x] <= CHANNEL_ID[c])}
        steps.append({"events": [], "op": {"op": "register_channel"},
                      "result": {"channel": CHANNEL_ID[c], "result": "registered"},
                      "state": registry_state(partial, {}, times)})
    end, written_end = graph.state(graph.init), {}
    for op, result, events, tv, written_then, t in ops:
        op = dict(op)
        if "now" in op:
            op["now"] = times[tv]
        steps.append({"events": events, "op": op, "result": result,
                      "state": registry_state(t, written_then, times)})
        end, written_end = t, written_then
    # Then, for each channel the behaviour closed, the operations the model has no step for on
    # a closed channel (`disabled_when_closed` checks the graph): each must change nothing.
    state = registry_state(end, written_end, times)
    for c in CHANNELS:
        if end["closePc"][c] != "done":
            continue
        n = CHANNEL_ID[c]
        refused = {"error": f"ch#{n} is closed", "result": "refused"}
        probes = [
            ({"channel": n, "op": "heartbeat", "now": max(times, default=0),
              "data": {"clientID": CLIENT_ID, "consumerDataSet": [], "heartbeatFingerprint": 0,
                       "producerDataSet": [{"groupName": GROUPS[0]}], "withoutSub": False}},
             refused),
            ({"channel": n, "consumer_group": None, "op": "unregister",
              "producer_group": GROUPS[0]}, refused),
            ({"channel": n, "op": "close"}, {"closed": False, "result": "closed"}),
        ]
        for op, result in probes:
            steps.append({"events": [], "op": op, "result": result, "state": state})
    return steps


def disabled_when_closed(graph, edges):
    """The model has no heartbeat, unregister or close step of a closed channel: checked on
    every transition of the graph (this is what lets a vector expect them to change nothing)."""
    for a, b in edges:
        step = graph.state(b)["step"]
        if step[0] in ("HeartbeatStart", "Unregister", "ChannelClosedStart") \
                and graph.state(a)["closePc"][step[1]] == "done":
            die(f"the model takes {step_text(step)} on a closed channel")


def step_text(step):
    return " ".join([step[0]] + ["{" + ",".join(sorted(x)) + "}" if isinstance(x, frozenset)
                                 else str(x) for x in step[1:]])


# ------------------------------------------------------------------------------------------------
# Picking behaviours
# ------------------------------------------------------------------------------------------------


def pairs_of(graph, edges):
    return {M.phase(st, graph.state(a), graph.state(b)) for a, b, st in edges}


def pick(graph, seq, targets, states):
    """Vectors (lists of macro steps): first ones that together exercise every pair of
    `targets` a time-feasible sequential behaviour reaches, then ones that visit every state of
    `states` (the states between operations) not visited yet. Returns (vectors, the pairs left
    out, the states left out)."""
    init = seq.node(graph.init)
    covered, visited = set(), {init}
    vectors = []

    def ops(path):
        return sum(1 for e, _ in path if not M.silent(e[0][2]))

    for goal in ("pairs", "states"):
        while True:
            path, cur, gained, seen = [], init, set(), set()

            def hit(macro):
                if goal == "pairs":
                    return bool(pairs_of(graph, macro[0]) & (targets - covered - gained))
                return macro[1] not in visited and macro[1] not in seen

            while ops(path) < M.max_ops:
                found = extend(graph, seq, path, cur, hit)
                if found is None:
                    break
                path += found
                cur = found[-1][1]
                for edges, end in found:
                    gained |= pairs_of(graph, edges) & targets
                    seen.add(end)
            if not (gained if goal == "pairs" else seen - visited):
                break
            covered |= gained
            visited |= seen
            vectors.append(path)
    return vectors, targets - covered, states - visited


def extend(graph, seq, path, start, hit):
    """The shortest sequence of macro steps from `start` whose last one `hit`s and that keeps
    the behaviour time-feasible (breadth first)."""
    parent = {start: None}
    frontier = [start]
    while frontier:
        nxt = []
        for q in frontier:
            for macro in seq.macros(q):
                edges, end = macro
                if hit(macro):
                    route = [macro]
                    p = q
                    while parent[p] is not None:
                        route.append(parent[p][1])
                        p = parent[p][0]
                    route.reverse()
                    if M.realize(graph, path + route) is not None:
                        return route
                if end not in parent:
                    parent[end] = (q, macro)
                    nxt.append(end)
        frontier = nxt
    return None


# ------------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------------


def canon(v):
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def render(header, steps):
    head = canon(header)[:-1]
    return head + ',"steps":[\n' + ",\n".join(canon(s) for s in steps) + "\n]}\n"


def vector_file(graph, i, path, new_pairs):
    steps = realize(graph, path)
    behaviour = [step_text(st) for edges, _ in path for _, _, st in edges]
    header = {
        "format": "rmq-lifecycle/client-trace/1",
        "name": f"model_{i:02d}",
        "description": ("a sequential behaviour of models/ClientRegistry.tla (Channels "
                        f"{{{', '.join(CHANNELS)}}}, Groups {{{', '.join(GROUPS)}}}), picked "
                        "from TLC's state graph by models/trace/derive.py; every expected "
                        "result, event and state is computed from the model's states"),
        "rules": RULES,
        "model": {"behaviour": behaviour, "covers": sorted(show(p) for p in new_pairs),
                  "channels": {c: CHANNEL_ID[c] for c in CHANNELS}},
    }
    return render(header, steps)


def write_or_compare(files, check):
    """Writes the vectors, or (check) compares them with the committed ones; exit 1 if stale."""
    OUT = M.out
    if not check:
        OUT.mkdir(parents=True, exist_ok=True)
        for f in OUT.glob("*.json"):
            if f.name not in files:
                f.unlink()
        for name, text in files.items():
            (OUT / name).write_text(text, encoding="utf-8")
        print(f"wrote {len(files)} files to {OUT.relative_to(ROOT)}")
        return
    stale = []
    old = {f.name for f in OUT.glob("*.json")} if OUT.is_dir() else set()
    for name, text in files.items():
        f = OUT / name
        if not f.is_file() or f.read_text(encoding="utf-8") != text:
            stale.append(f"{name}: differs from what the model gives now")
    stale += [f"{n}: committed, but the model gives no such vector" for n in old - set(files)]
    if stale:
        print("\n".join(stale), file=sys.stderr)
        print(f"regenerate: python3 models/trace/derive.py{M.flag}", file=sys.stderr)
        sys.exit(1)
    print(f"the {len(files)} committed vectors are what the model gives")


def render_all(graph, vectors):
    """File name -> contents; `covers` lists the pairs a vector adds to the ones before it."""
    files, covered = {}, set()
    for i, path in enumerate(vectors, 1):
        mine = set().union(*(pairs_of(graph, e) for e, _ in path))
        files[f"model_{i:02d}.json"] = M.vector_file(graph, i, path, mine - covered)
        covered |= mine
    return files, covered


def generate(args, work):
    """The whole derivation: TLC's state graph, coverage, the covering set of vectors."""
    t0 = time.monotonic()
    if args.dot:
        dot, mdot = Path(args.dot), None
    else:
        dot, mdot = work / "graph.dot", work / "model.dot"
        run_tlc(work, M.module, "Spec", dot=mdot, labels=True)
        run_tlc(work, M.derive, "DSpec", dot=dot)
    t_tlc = time.monotonic() - t0
    graph = Graph(dot)
    distinct = len({graph.projected(n) for n in graph.nodes})
    edges = [(a, b) for a in graph.succ for b in graph.succ[a]]
    if mdot is not None:
        # The derive module's graph, `step` projected away, must be the model's: the same
        # transitions, each labelled with the action TLC names for it. A self-loop of an action
        # the derive module has no disjunct for (HaConnection's stutter of Terminated, which
        # HaConnectionDerive leaves out) is no transition.
        model = Graph(mdot)
        ours = {(graph.key(a), graph.key(b), graph.state(b)["step"][0]) for a, b in edges}
        named = {x for _, _, x in ours}
        theirs = {(model.key(a), model.key(b), x) for a, b, x in model.labelled
                  if a != b or x in named}
        states = len(model.nodes)
        del model
        if theirs != ours or distinct != states:
            die(f"the derive module's graph is not {M.module}'s: {distinct} against {states} "
                f"states, {len(ours - theirs)} transitions only in it, {len(theirs - ours)} only "
                f"in {M.module}'s")

    M.check_graph(graph, edges)

    # Every (action, phase) pair of the state graph, and those of sequential behaviours.
    every = collections.Counter()
    for a, b in edges:
        s, t = graph.state(a), graph.state(b)
        every[M.phase(t["step"], s, t)] += 1
    seq = Sequential(graph)
    reach, frontier = {seq.node(graph.init)}, [seq.node(graph.init)]
    sequential = set()
    while frontier:
        nxt = []
        for q in frontier:
            for macro_edges, end in seq.macros(q):
                sequential |= pairs_of(graph, macro_edges)
                if end not in reach:
                    reach.add(end)
                    nxt.append(end)
        frontier = nxt

    vectors, infeasible, unvisited = pick(graph, seq, sequential, reach)
    files, covered = render_all(graph, vectors)

    print(f"state graph: {distinct} states ({len(graph.nodes)} with the step history), "
          f"{len(edges)} transitions; {len(reach)} states between operations reachable "
          f"sequentially ({time.monotonic() - t0:.1f} s, of which TLC {t_tlc:.1f} s)")
    M.summary(vectors, files)
    n = len(covered & set(every))
    print(f"coverage: {n} of {len(every)} (action, phase) pairs = {100 * n / len(every):.0f}%"
          f" ({len(sequential)} occur in sequential behaviours)")
    print(f"states between operations: the vectors visit {len(reach) - len(unvisited)} of the "
          f"{len(reach)} that sequential behaviours reach")
    for p in sorted(every):
        if p in covered:
            continue
        print(f"  not covered: {show(p)}: {M.why_uncovered(p, p in infeasible, p in sequential)}")
    write_or_compare(files, args.check)


def client_summary(vectors, files):
    n_ops = sum(sum(1 for e, _ in p if e[0][2][0] != "Age") for p in vectors)
    print(f"vectors: {len(vectors)}, {n_ops} operations (and {len(CHANNELS)} register_channel "
          f"each), {sum(len(p) for p in vectors)} model operations and Age steps, "
          f"{sum(len(e) for p in vectors for e, _ in p)} model steps")
    steps = [st for text in files.values() for st in json.loads(text)["steps"]]
    probes = sum(1 for st in steps if st["result"] == {"closed": False, "result": "closed"}
                 or st["result"].get("result") == "refused")
    print(f"steps: {len(steps)} in all, of which {probes} on closed channels after the behaviour")


def client_why_uncovered(_pair, infeasible, _sequential):
    return ("no clock gives the ageing" if infeasible else
            "in no sequential behaviour: another step must come between two steps of one "
            "operation")


def parse_step(text):
    """A `behaviour` entry ("HeartbeatStart a1 {p1,p2} p1") as a TLA+ tuple."""
    out = []
    for i, w in enumerate(text.split(" ")):
        if i == 0:
            out.append(f'"{w}"')
        elif w.startswith("{"):
            out.append("{" + ", ".join(x for x in w[1:-1].split(",") if x) + "}")
        elif re.fullmatch(r"-?\d+", w) or w in M.model_values:
            out.append(w)
        else:
            out.append(f'"{w}"')  # a string ("reader")
    return "<<" + ", ".join(out) + ">>"


CHECK_MODULE = """---- MODULE DeriveCheck ----
EXTENDS %s, Sequences
%s
VARIABLES t, i
B == << %s >>
CInit == DInit /\\ t \\in 1..Len(B) /\\ i = 0
CNext == /\\ i < Len(B[t]) /\\ DNext /\\ step' = B[t][i + 1] /\\ i' = i + 1 /\\ UNCHANGED t
CSpec == CInit /\\ [][CNext]_<<vars, step, t, i>>
====
"""


def verify(work):
    """The fast check: TLC follows each committed vector's recorded behaviour (and nothing else);
    the vector must be exactly what the model's states along it give."""
    t0 = time.monotonic()
    committed = sorted(M.out.glob("model_*.json"))
    if not committed:
        die(f"no vectors in {M.out}")
    behaviours = [json.loads(f.read_text(encoding="utf-8"))["model"]["behaviour"]
                  for f in committed]
    names = M.model_values
    (work / "DeriveCheck.tla").write_text(CHECK_MODULE % (
        M.derive, "CONSTANTS " + ", ".join(names) if names else "",
        ",\n      ".join("<<" + ", ".join(parse_step(x) for x in b) + ">>" for b in behaviours)))
    for f in (M.module, M.derive):
        shutil.copy(MODELS / f"{f}.tla", work / f"{f}.tla")
    cfg = (M.config % "CSpec").replace("CONSTANTS\n", "CONSTANTS\n" + "".join(
        f"    {n} = {n}\n" for n in names))
    (work / "DeriveCheck.cfg").write_text(cfg)
    dot = work / "check.dot"
    cmd = ["java", "-XX:+UseParallelGC", f"-Djava.io.tmpdir={work}", "-cp", str(JAR),
           "tlc2.TLC", "-workers", "1", "-deadlock", "-metadir", "states-check",
           "-dump", "dot", str(dot), "-config", "DeriveCheck.cfg", "DeriveCheck.tla"]
    out = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    if out.returncode != 0 or "No error has been found" not in out.stdout:
        die(f"TLC on the recorded behaviours failed (exit {out.returncode}):\n"
            f"{out.stdout[-3000:]}{out.stderr}")
    graph = Graph(dot)
    starts = {graph.state(n)["t"]: n for n in graph.inits}
    vectors = []
    for k, b in enumerate(behaviours, 1):
        # Depth first along the recorded steps (a close's first group is a choice the next
        # step pins down).
        def follow(n, path):
            if len(path) == len(b):
                return path
            for m in graph.succ[n]:
                if graph.state(m)["i"] == len(path) + 1:
                    found = follow(m, path + [(n, m, graph.state(m)["step"])])
                    if found:
                        return found
            return None

        edges = follow(starts[k], [])
        if edges is None:
            die(f"{committed[k - 1].name}: its behaviour is not a behaviour of the model")
        path, cur = [], []
        for e in edges:
            cur.append(e)
            if M.quiescent(graph.state(e[1])):
                path.append((cur, e[1]))
                cur = []
        if cur:
            die(f"{committed[k - 1].name}: its behaviour ends with an operation in flight")
        vectors.append(path)
    files, _ = render_all(graph, vectors)
    print(f"TLC followed the {len(vectors)} recorded behaviours "
          f"({time.monotonic() - t0:.1f} s)")
    write_or_compare(files, check=True)

# ------------------------------------------------------------------------------------------------
# The HA lifecycle (--model ha): models/HaConnection.tla -> tests/vectors/lifecycle/model/ha/
# ------------------------------------------------------------------------------------------------

HA_N = 2  # connections (ids 1..N in accept order, as HaConn 1..N)
HA_MAX_OFFSET = 1  # the log grows from 0 to 1; a model offset o is the byte offset o
HA_CONFIG = """CONSTANTS
    N = %d
    MaxOffset = %d
    UpstreamOrder = FALSE
    UpstreamAcks = FALSE
    RemoveWithoutStop = FALSE
SPECIFICATION %%s
""" % (HA_N, HA_MAX_OFFSET)
# The model has no cap (register is refused only after close_all) and no in-sync gap: the cap is
# out of reach and `in_sync` is not pinned (see ha_observed).
HA_RULES = {"max_connections": 1048576, "max_gap": 1024}
HA_LIVE = ("Init", "Registered", "Running")  # HaObserved.live; the others are closed
HA_SHUT = ("Drained", "ClosedAll", "Returned")  # Slots.shut_down is set
# The steps of a task's end other than the ending task's: the other task sees the signal.
HA_ENDS = ("Report", "PeerClose", "IdleTimeout", "TaskFail")
HA_SHUTDOWN = ("Drain", "CloseConnection", "CloseAll", "ShutdownReturn", "StopSeen")
HA_SPAWN = ("SpawnReader", "SpawnWriter", "OpenGate", "Store", "StopSeen")


def ha_at(s, var, c):
    return s[var][c - 1]  # a function of 1..N is a tuple


def ha_alive(s, c):
    return any(v in ("Gated", "Running") for v in ha_at(s, "task", c).values())


def ha_valid(s, c, o):
    ack = ha_at(s, "ack", c)
    return o <= s["maxOffset"] and (ack == -1 or ha_at(s, "sent", c) >= o >= ack)


def ha_phase(step, s, t):
    """(action, phase) of the step from s to t: the acting connection's situation."""
    a = step[0]
    c = step[1] if len(step) > 1 and isinstance(step[1], int) else None
    if a == "Accept":
        return a, "accept loop cancelled" if s["cancelled"] else "serving"
    if a == "Register":
        return a, "refused: table closed" if s["closed"] else "admitted"
    if a == "Begin":
        return a, "refused: shut down (closes it)" if s["sd"] in HA_SHUT else "opens its slot"
    if a in ("SpawnReader", "SpawnWriter"):
        return a, "stop raised" if ha_at(s, "stop", c) else "stop not raised"
    if a == "OpenGate":
        return a, "stop raised: the tasks stay gated" if ha_at(s, "stop", c) else "tasks pass"
    if a == "Store":
        return a, "slot open: stored" if ha_at(s, "slot", c) == "Open" else \
            "slot gone: closes the handle"
    if a == "SpawnPanics":
        return a, f"{ha_at(s, 'phase', c)}"
    if a == "Report":
        o, ack = step[2], ha_at(s, "ack", c)
        if ha_valid(s, c, o):
            what = "valid; first ack" if ack == -1 else "valid; ack advances"
        elif o > s["maxOffset"]:
            what = "invalid: beyond the log"
        elif o < ack:
            what = "invalid: goes back"
        else:
            what = "invalid: beyond what was sent"
        return a, what
    if a in ("PeerClose", "IdleTimeout", "TaskFail", "StopSeen"):
        mine = "reader" if a == "PeerClose" else step[2]
        other = "writer" if mine == "reader" else "reader"
        tasks = ha_at(s, "task", c)
        where = "row present" if c in s["table"] else "row gone"
        what = f"{mine} {tasks[mine]}; {other} {tasks[other]}; {where}"
        if a == "StopSeen":
            what += f"; slot {ha_at(s, 'slot', c)}"
        return a, what
    if a == "Transfer":
        return a, "to the log's end" if t["sent"][c - 1] == s["maxOffset"] else "part of it"
    if a == "Cancel":
        held = sum(1 for x in s["slot"] if x == "Held")
        mid = "none" if s["cur"] == 0 else ha_at(s, "phase", s["cur"])
        return a, f"{'some' if held else 'no'} handle stored; mid-accept: {mid}"
    if a == "Drain":
        return a, "takes handles" if "Held" in s["slot"] else "nothing stored"
    if a == "CloseConnection":
        return a, "tasks alive" if ha_alive(s, c) else "tasks gone"
    if a == "CloseAll":
        return a, "removes rows" if s["table"] else "table empty"
    if a == "ShutdownReturn":
        return a, "tasks alive" if any(ha_alive(s, x) for x in range(1, HA_N + 1)) else \
            "no task alive"
    return a, "-"


def ha_quiescent(s):
    """No operation in flight: shutdown is not running, no accept is inside spawn (or holds a
    handle shutdown has refused), and no task is left to see a raised signal."""
    if s["sd"] not in ("Serving", "Returned") or s["closing"]:
        return False
    for c in range(1, HA_N + 1):
        ph = ha_at(s, "phase", c)
        if ph in ("Starting", "Spawning", "Spawned"):
            return False
        if s["cur"] == c and (ph == "Running" or ph == "Registered" and s["sd"] in HA_SHUT):
            return False
        if ha_alive(s, c) and ha_at(s, "stop", c):
            return False
        if len(set(ha_at(s, "task", c).values())) != 1:
            return False  # one task ended, the other has not yet
    return True


def ha_own(first, step, s):
    a, b = first[0], step[0]
    if a == "Begin":
        return b in HA_SPAWN and step[1] == first[1]
    if a in HA_ENDS:
        return b == "StopSeen" and step[1] == first[1]
    if a == "Cancel":
        return b in HA_SHUTDOWN or b == "Begin" and s["sd"] in HA_SHUT
    return False


def ha_table(s):
    rows = []
    for c in sorted(s["table"]):
        ack = ha_at(s, "ack", c)
        rows.append({"ack": None if ack == -1 else ack, "conn": c,
                     "sent": ha_at(s, "sent", c),
                     "state": "TRANSFER" if ha_at(s, "phase", c) == "Running" else "READY"})
    return rows


def ha_observed(s):
    """What the model pins of HaObserved: no accepted_total / closed_total (no counter in our
    order), no in_sync (no gap), and the events are the step's own."""
    acks = [ha_at(s, "ack", c) for c in s["table"]]
    return {"acked_max": sum(1 for a in acks if a != -1 and a >= s["maxOffset"]),
            "count": len(s["table"]),
            "live": [{"conn": c, "phase": ha_at(s, "phase", c).lower()}
                     for c in range(1, HA_N + 1) if ha_at(s, "phase", c) in HA_LIVE],
            "max_offset": s["maxOffset"],
            "reported": sum(1 for a in acks if a != -1),
            "shut_down": s["closed"],
            "table": ha_table(s)}


def ha_realize(graph, path):
    """The HA trace steps for a sequential behaviour (a list of macro steps)."""
    steps = []
    for edges, _end in path:
        first = edges[0][2]
        s = graph.state(edges[0][0])
        t = graph.state(edges[-1][1])
        a = first[0]
        c = first[1] if len(first) > 1 else None
        reason = None
        if a == "AcceptLoopExit":
            continue  # no operation: the loop's select sees the cancellation
        if a == "Accept":
            op, result = {"op": "accept"}, {"conn": c, "result": "accepted"}
        elif a == "Register":
            op = {"conn": c, "op": "register"}
            if s["closed"]:
                refusal = {"error": "shutting_down"}
                result = {"conn": c, "refusal": refusal, "result": "refused"}
                reason = {"reason": "rejected", "refusal": refusal}
            else:
                result = {"conn": c, "result": "registered"}
        elif a == "Begin":
            op, result = {"conn": c, "op": "spawn"}, {"conn": c, "result": "spawned"}
        elif a == "Report":
            o = first[2]
            op = {"bytes": list(o.to_bytes(8, "big")), "conn": c, "op": "report"}
            valid = ha_valid(s, c, o)
            result = {"acked": [o] if valid else [], "conn": c, "result": "reported"}
            reason = None if valid else {"reason": "protocol_error"}  # the rule: not modelled
        elif a == "Transfer":
            op = {"conn": c, "op": "flush"}
            result = {"conn": c, "result": "flushed", "sent": ha_at(t, "sent", c)}
        elif a == "Append":
            op = {"len": 1, "op": "append"}
            result = {"max_offset": t["maxOffset"], "result": "appended"}
        elif a in ("PeerClose", "IdleTimeout", "TaskFail"):
            name = {"PeerClose": "peer_close", "IdleTimeout": "idle_timeout",
                    "TaskFail": "task_fail"}[a]
            op, result = {"conn": c, "op": name}, {"conn": c, "result": "closed"}
            reason = {"reason": {"PeerClose": "peer_closed", "IdleTimeout": "idle_timeout",
                                 "TaskFail": "task_failed"}[a]}
        elif a == "Cancel":
            op = {"op": "shutdown"}
            reason = {"reason": "shutdown"}
            result = None  # below: the connections it closed
        else:
            die(f"no operation starts with {step_text(first)}")
        closed = [x for x in range(1, HA_N + 1)
                  if ha_at(s, "phase", x) in HA_LIVE and ha_at(t, "phase", x) not in HA_LIVE]
        if a == "Cancel":
            result = {"closed": closed, "result": "shut_down"}
        elif closed != ([c] if reason else []):
            die(f"{step_text(first)} closes {closed}")
        events = [{"conn": x, "deregistered": x in s["table"] and x not in t["table"],
                   "reason": reason} for x in closed]
        steps.append({"events": events, "observed": ha_observed(t), "op": op, "result": result})
    # Then ops the model has no step for (`ha_check_graph` checks the graph): on each connection
    # the behaviour closed, a report, a peer close and a task failure, and a second shutdown if
    # it shut down. Each must change nothing.
    end = graph.state(path[-1][1]) if path else graph.state(graph.init)
    probes = []
    for c in range(1, HA_N + 1):
        if ha_at(end, "phase", c) in ("Closed", "Refused"):
            ignored = {"conn": c, "phase": "closed", "result": "ignored"}
            probes += [({"bytes": [0] * 8, "conn": c, "op": "report"}, ignored),
                       ({"conn": c, "op": "peer_close"}, ignored),
                       ({"conn": c, "op": "task_fail"}, ignored)]
    if end["sd"] == "Returned":
        probes.append(({"op": "shutdown"}, {"closed": [], "result": "shut_down"}))
    for op, result in probes:
        steps.append({"events": [], "observed": ha_observed(end), "op": op, "result": result})
    return steps


def ha_vector_file(graph, i, path, new_pairs):
    steps = ha_realize(graph, path)
    behaviour = [step_text(st) for edges, _ in path for _, _, st in edges]
    header = {
        "format": "rmq-lifecycle/ha-trace/1",
        "name": f"model_{i:02d}",
        "description": ("a sequential behaviour of models/HaConnection.tla (N = "
                        f"{HA_N}, MaxOffset = {HA_MAX_OFFSET}), picked from TLC's state graph "
                        "by models/trace/derive.py --model ha; every expected result, event and "
                        "observed field is computed from the model's states, and a field the "
                        "model does not determine is left out"),
        "config": HA_RULES,
        "model": {"behaviour": behaviour, "covers": sorted(show(p) for p in new_pairs)},
    }
    return render(header, steps)


def ha_check_graph(graph, edges):
    """What the mapping relies on, checked on every transition: no step acts on a connection
    that is closed (or refused) with no task left, and no shutdown step follows a returned
    shutdown (what lets a vector expect the ops after the behaviour to change nothing); a
    transfer goes to the log's end (the driver's flush sends everything)."""
    for a, b in edges:
        step = graph.state(b)["step"]
        s = graph.state(a)
        if len(step) > 1 and isinstance(step[1], int) and \
                ha_at(s, "phase", step[1]) in ("Closed", "Refused") and not ha_alive(s, step[1]):
            die(f"the model takes {step_text(step)} on a closed connection")
        if s["sd"] == "Returned" and step[0] in ("Cancel", "Drain", "CloseAll", "ShutdownReturn"):
            die(f"the model takes {step_text(step)} after shutdown returned")
        if step[0] == "Transfer" and ha_at(graph.state(b), "sent", step[1]) != \
                graph.state(a)["maxOffset"] and HA_MAX_OFFSET == 1:
            die(f"{step_text(step)} stops short of the log's end with MaxOffset 1")


def ha_summary(vectors, files):
    steps = [st for text in files.values() for st in json.loads(text)["steps"]]
    probes = len(steps) - sum(1 for p in vectors for e, _ in p if not M.silent(e[0][2]))
    print(f"vectors: {len(vectors)}, {len(steps)} operations ({probes} of them after the "
          f"behaviour, on what it closed), {sum(len(e) for p in vectors for e, _ in p)} model "
          "steps")


HA_NO_OP = {"SpawnPanics": "no op: the replayer's driver cannot make spawn panic "
                           "(tests/spawn_panics.rs does)"}


def ha_why_uncovered(pair, _infeasible, sequential):
    if pair[0] in HA_NO_OP:
        return HA_NO_OP[pair[0]]
    if not sequential:
        return ("in no sequential behaviour: another step must come between two steps of one "
                "operation (a race: shuttle_ha, loom_ha, trace validation)")
    return "left out by the picking (a bug: every sequential pair should be picked)"


# ------------------------------------------------------------------------------------------------
# The two models
# ------------------------------------------------------------------------------------------------

MODELS_BY_NAME = {
    "client": types.SimpleNamespace(
        module="ClientRegistry", derive="ClientRegistryDerive", config=CONFIG, tlc_flags=[],
        out=OUT, flag=" --model client", model_values=CHANNELS + GROUPS, max_ops=MAX_OPS,
        phase=phase, quiescent=quiescent, own=own, skip=lambda st: st[0] == "AgeRequest",
        silent=lambda st: st[0] == "Age", realize=realize, vector_file=vector_file,
        check_graph=disabled_when_closed, summary=client_summary,
        why_uncovered=client_why_uncovered),
    "ha": types.SimpleNamespace(
        module="HaConnection", derive="HaConnectionDerive", config=HA_CONFIG,
        tlc_flags=["-deadlock"], out=OUT.parent / "ha", flag=" --model ha", model_values=[],
        max_ops=MAX_OPS, phase=ha_phase, quiescent=ha_quiescent, own=ha_own,
        skip=lambda st: st[0] in HA_NO_OP, silent=lambda st: st[0] == "AcceptLoopExit",
        realize=ha_realize, vector_file=ha_vector_file, check_graph=ha_check_graph,
        summary=ha_summary, why_uncovered=ha_why_uncovered),
}
M = MODELS_BY_NAME["client"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="derive everything again; exit 1 if the committed files differ")
    ap.add_argument("--verify", action="store_true",
                    help="fast: only re-derive each committed vector from its recorded "
                         "behaviour (TLC follows it); exit 1 if a file differs")
    ap.add_argument("--model", choices=["client", "ha", "all"], default="all",
                    help="which model's vectors (default: both)")
    ap.add_argument("--dot", help="use this dump of the derive module instead of running TLC "
                                  "(with --model client or ha)")
    ap.add_argument("--keep", help="keep TLC's work directory (and its dump) here")
    args = ap.parse_args()
    if not args.dot and not JAR.is_file():
        die(f"{JAR} is missing: run `bash .ci/models.sh ClientRegistry` once")
    if args.dot and args.model == "all":
        die("--dot needs --model client or --model ha")
    global M
    for name in (["client", "ha"] if args.model == "all" else [args.model]):
        M = MODELS_BY_NAME[name]
        print(f"--- {name}: models/{M.module}.tla -> {M.out.relative_to(ROOT)}")
        work = Path(args.keep or tempfile.mkdtemp(prefix="derive-")) / name
        work.mkdir(parents=True, exist_ok=True)
        try:
            if args.verify:
                verify(work)
            else:
                generate(args, work)
        finally:
            if not args.keep:
                shutil.rmtree(work.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
