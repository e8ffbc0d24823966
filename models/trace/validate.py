#!/usr/bin/env python3
"""Trace validation: is each recorded trace a behaviour of models/ClientRegistry.tla (--model
client, the default), of models/HaConnection.tla (--model ha) or of models/Replication.tla
(--model replication)?

    python3 models/trace/validate.py [--model ha|replication] [options] TRACE.jsonl...
    python3 models/trace/validate.py [--model ha|replication] --self-test

Each trace is a JSON-lines file, one model event per line, sorted by "seq" (the schemas are in
models/README.md, "Trace validation" and the sections after it). This generates a TLA+ module
holding the traces, runs TLC on models/ClientRegistryTrace.tla (or HaConnectionTrace.tla, or
ReplicationTrace.tla) with it, and prints one line per trace:

    ACCEPTED <file> <n> events <ms> ms
    REJECTED <file> at event <k> of <n>: <event as JSON> (<ms> ms)
    REJECTED <file> at event <n+1> of <n>: end of trace, ... (<ms> ms)
    ERROR <file>: <why>

then a summary. Event k (counted from 1, in file order) is the first event that no behaviour of
the model matching events 1..k-1 can take. "Event n+1" means every event matched but no matching
behaviour ends with every operation finished (a heartbeat, unregister or close half-way, or a
scan with groups or candidates left): the trace lacks events at its end. --prefix accepts such
traces (for a recording cut mid-run).

Several traces go into one TLC run (--batch): the JVM's start-up (about 1.5 s) dominates short
traces. The traces of one run are explored separately, and its wall time is shared out among
them in the <ms> figures. A run that exceeds --timeout is retried one trace per run; a single
trace that exceeds it is an ERROR, not a rejection.

Exit status: 0; 1 if --expect is given and some trace got the other verdict; 2 on any error
(unreadable or malformed trace, unknown action, TLC failure or timeout).

Python 3 standard library only. Needs java and target/tla/tla2tools.jar (TLC 2.15; run
`bash .ci/models.sh ClientRegistry` once to install it).
"""

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
# The model's specs, hand-made examples and fault switches; --model ha replaces them (main()).
SPECS = ("ClientRegistry.tla", "ClientRegistryTrace.tla")
EXAMPLES = MODELS / "traces" / "client"
FAULTS = ("SplitRemoveIfEmpty", "KeepEmptyGroups", "RegisterAfterClose")
HA_FAULTS = ("RemoveWithoutStop",)

# Splitting the traces over --jobs TLC runs pays only when there is enough to explore, about this
# much per run (see Trace.cost; TLC's start-up is about 1.5 s).
COST_PER_RUN = 1500

# action -> {field: kind}
SCHEMA = {
    "HeartbeatStart": {"ch": "ch", "G": "groups", "g": "g"},
    "HeartbeatJoin": {"ch": "ch", "g": "g"},
    "HeartbeatRefused": {"ch": "ch"},
    "Unregister": {"ch": "ch", "g": "g"},
    "UnregisterFinish": {"ch": "ch"},
    "ChannelClosedStart": {"ch": "ch", "g": "g or null"},
    "ChannelClosedLeave": {"ch": "ch", "g": "g"},
    "ChannelClosedLeaveFinish": {"ch": "ch"},
    "ChannelClosedFinish": {"ch": "ch"},
    "ScanInactiveCollect": {"groups": "groups", "cands": "cands"},
    "ScanInactiveExpire": {"g": "g", "ch": "ch", "expired": "bool"},
    "ScanInactiveExpireFinish": {},
    "ScanInactiveStart": {},
    "ScanInactiveEnd": {},
}

# The HA lifecycle's events (models/HaConnectionTrace.tla).
HA_SCHEMA = {
    "Register": {"c": "c"},
    "RegisterRefused": {"closed": "bool"},
    "Begin": {"c": "c", "open": "bool"},
    "SpawnReader": {"c": "c"},
    "SpawnWriter": {"c": "c"},
    "OpenGate": {"c": "c"},
    "Store": {"c": "c", "held": "bool"},
    "Ack": {"c": "c", "o": "offset"},
    "End": {"c": "c", "t": "task", "why": "why", "removed": "bool", "stopped": "bool"},
    "Close": {"c": "c", "removed": "bool", "stopped": "bool"},
    "Reap": {"c": "c", "found": "bool", "held": "bool"},
    "Drain": {"taken": "ids"},
    "CloseAll": {},
    "Reclaim": {"c": "c"},
}
WHYS = ("PeerClosed", "Protocol", "Idle", "Fail", "Stop", "Dropped")

# Replication's events (models/ReplicationTrace.tla): every replica of one group, byte offsets.
REPL_SCHEMA = {
    "Open": {"r": "replica", "max": "offset", "epochs": "epochs"},
    "Crash": {"r": "replica"},
    "BeginEpoch": {"r": "replica", "e": "epoch", "start": "offset"},
    "Append": {"r": "replica", "from": "offset", "to": "offset"},
    "Truncate": {"r": "replica", "point": "offset"},
    "Report": {"r": "replica", "o": "offset", "first": "bool"},
    "Epoch": {"r": "replica", "e": "epoch", "start": "offset"},
    "Transfer": {"r": "replica", "from": "offset", "to": "offset"},
    "Sync": {"r": "replica", "to": "offset"},
    "Demote": {"r": "replica"},
    "Confirm": {"r": "replica", "o": "offset"},
}
# Replication.tla's fault switches (MinInSync is --min-in-sync).
REPL_FAULTS = ("SkipTruncation", "WrongEpoch", "AckBeforeHandshake", "EpochsFirst",
               "EmptyEpochsKeepLog", "ElectAnyInSync", "ConfirmLocalIsr", "CountLocalIsr",
               "ShrinkUnsynced")
REPLICA = re.compile(r"[A-Za-z0-9_.-]+")

GROUP_KEY = re.compile(r"[PC]:.+", re.S)
PROGRESS = re.compile(r'<<"progress", (\d+), (\d+)>>')
TLC_OK = "Model checking completed. No error has been found."


class TraceError(Exception):
    """The trace file is unreadable or does not follow the schema."""


class RunError(Exception):
    """TLC failed or timed out."""

    def __init__(self, msg, timeout=False):
        super().__init__(msg)
        self.timeout = timeout


# ----------------------------------------------------------------------------------------------
# Reading traces


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_field(kind, v, where):
    def bad(what):
        raise TraceError(f"{where}: expected {what}, got {json.dumps(v)}")

    def group(x):
        if not (isinstance(x, str) and GROUP_KEY.fullmatch(x)):
            raise TraceError(f"{where}: expected a group key \"P:<name>\" or \"C:<name>\", "
                             f"got {json.dumps(x)}")

    if kind == "ch":
        if not (is_int(v) and v > 0):
            bad("a positive integer channel id")
    elif kind == "g":
        group(v)
    elif kind == "g or null":
        if v is not None:
            group(v)
    elif kind == "groups":
        if not (isinstance(v, list) and v):
            bad("a non-empty list of group keys")
        for x in v:
            group(x)
        if len(set(v)) != len(v):
            bad("distinct group keys")
    elif kind == "cands":
        if not isinstance(v, list):
            bad("a list of [group, channel] pairs")
        for p in v:
            if not (isinstance(p, list) and len(p) == 2 and is_int(p[1]) and p[1] > 0):
                bad("a list of [group, channel] pairs")
            group(p[0])
        if len({(g, c) for g, c in v}) != len(v):
            bad("distinct candidates")
    elif kind == "bool":
        if not isinstance(v, bool):
            bad("true or false")
    elif kind == "c":
        if not (is_int(v) and v > 0):
            bad("a positive integer connection id")
    elif kind == "offset":
        if not (is_int(v) and v >= 0):
            bad("an unsigned integer offset")
    elif kind == "task":
        if v not in ("reader", "writer"):
            bad('"reader" or "writer"')
    elif kind == "why":
        if v not in WHYS:
            bad("one of " + ", ".join(WHYS))
    elif kind == "replica":
        if not (isinstance(v, str) and REPLICA.fullmatch(v)):
            bad("a replica name (letters, digits, _ . -)")
    elif kind == "epoch":
        if not (is_int(v) and v > 0):
            bad("a positive integer epoch")
    elif kind == "epochs":
        if not (isinstance(v, list) and all(
                isinstance(p, list) and len(p) == 2 and is_int(p[0]) and p[0] > 0
                and is_int(p[1]) and p[1] >= 0 for p in v)):
            bad("a list of [epoch, start] pairs")
    elif kind == "ids":
        if not (isinstance(v, list) and all(is_int(x) and x > 0 for x in v)
                and len(set(v)) == len(v)):
            bad("a list of distinct positive connection ids")


def read_trace(path, schema=None):
    """The events of a JSONL trace file, checked against the schema: [(line, event)]. Fields
    the schema (the client registry's unless given) does not name are ignored."""
    schema = SCHEMA if schema is None else schema
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TraceError(f"cannot read: {e}")
    events = []
    last_seq = None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"line {n}"
        try:
            ev = json.loads(line)
        except json.JSONDecodeError as e:
            raise TraceError(f"{where}: bad JSON: {e}")
        if not isinstance(ev, dict):
            raise TraceError(f"{where}: expected a JSON object")
        seq = ev.get("seq")
        if not (is_int(seq) and seq >= 0):
            raise TraceError(f"{where}: \"seq\" must be an unsigned integer")
        if last_seq is not None and seq <= last_seq:
            raise TraceError(f"{where}: seq {seq} after {last_seq}: not strictly increasing")
        last_seq = seq
        action = ev.get("action")
        if action not in schema:
            raise TraceError(f"{where}: unknown action {json.dumps(action)}")
        for field, kind in schema[action].items():
            if field not in ev:
                raise TraceError(f"{where}: {action} needs \"{field}\"")
            check_field(kind, ev[field], f"{where}, {action}.{field}")
        if action == "HeartbeatStart" and ev["g"] not in ev["G"]:
            raise TraceError(f"{where}: HeartbeatStart's g is not in its G")
        if action == "ScanInactiveCollect":
            for g, _ in ev["cands"]:
                if g not in ev["groups"]:
                    raise TraceError(f"{where}: candidate group {g} is not in the collect's groups")
        events.append((line.strip(), ev))
    return events


class Trace:
    """A trace file's events, with its channels numbered 1, 2, ... and its groups "g1", "g2", ...
    in order of appearance (the model is symmetric in both; small dense sets keep TLC's states
    small and let traces share a run)."""

    def __init__(self, path):
        self.path = str(path)
        self.events = read_trace(path)
        self.channels = {}
        self.groups = {}
        for _, ev in self.events:
            fields = SCHEMA[ev["action"]]
            for c in [ev["ch"]] if "ch" in fields else []:
                self.channels.setdefault(c, len(self.channels) + 1)
            names = list(ev["G"]) if "G" in fields else []
            names += [ev["g"]] if "g" in fields and ev["g"] is not None else []
            if ev["action"] == "ScanInactiveCollect":
                names += ev["groups"]
                for _, c in ev["cands"]:
                    self.channels.setdefault(c, len(self.channels) + 1)
            for g in names:
                self.groups.setdefault(g, len(self.groups) + 1)

    def cost(self):
        """A rough measure of TLC's work: an event costs about 1 ms with 4 channels and 3 groups,
        and more with larger states (215 events of 30 channels and 31 groups: 8 s)."""
        return len(self.events) * max(1, len(self.channels) * len(self.groups) // 20)

    def tla_group(self, g):
        return "NoGroup" if g is None else f'"g{self.groups[g]}"'

    def scans(self):
        """For each ScanInactiveStart, what its scan's collects list up to its ScanInactiveEnd
        (or the trace's end): (groups, candidates). None for the other events."""
        out, cur = [None] * len(self.events), None
        for k, (_, ev) in enumerate(self.events):
            a = ev["action"]
            if a == "ScanInactiveStart":
                cur = out[k] = (set(), set())
            elif a == "ScanInactiveEnd":
                cur = None
            elif a == "ScanInactiveCollect" and cur is not None:
                cur[0].update(ev["groups"])
                cur[1].update((g, c) for g, c in ev["cands"])
        return out

    def tla_event(self, ev, scan):
        a, g = ev["action"], self.tla_group
        fields = [f'action |-> "{a}"']
        if a == "ScanInactiveStart":
            listed, cands = scan
            fields.append("listed |-> {" + ", ".join(map(g, sorted(listed))) + "}")
            fields.append("cs |-> {" + ", ".join(
                f"<<{g(x)}, {self.channels[c]}>>" for x, c in sorted(cands)) + "}")
        for field in SCHEMA[a]:
            v = ev[field]
            if field == "ch":
                fields.append(f"ch |-> {self.channels[v]}")
            elif field == "g":
                fields.append(f"g |-> {g(v)}")
            elif field == "G":
                fields.append("G |-> {" + ", ".join(map(g, v)) + "}")
            elif field == "groups":
                fields.append("gseq |-> <<" + ", ".join(map(g, v)) + ">>")
                fields.append("gs |-> {" + ", ".join(map(g, v)) + "}")
            elif field == "cands":
                pairs = (f"<<{g(x)}, {self.channels[c]}>>" for x, c in v)
                fields.append("cs |-> {" + ", ".join(pairs) + "}")
            elif field == "expired":
                fields.append("expired |-> " + ("TRUE" if v else "FALSE"))
        return "[" + ", ".join(fields) + "]"

    def tla(self, faults):
        # One event a line: SANY takes seconds to parse one very long line.
        if not self.events:
            return "<<>>"
        return "<<\n      " + ",\n      ".join(
            self.tla_event(ev, sc) for (_, ev), sc in zip(self.events, self.scans())) + "\n    >>"

    def names(self):
        """What the numbers in the generated module stand for."""
        return ([f"channel {n} = {c}" for c, n in self.channels.items()]
                + [f'group "g{n}" = {json.dumps(g)}' for g, n in self.groups.items()])

    SPEC = "ClientRegistryTrace"
    UNFINISHED = "a channel mutex held, or a scan with groups or candidates left"

    @staticmethod
    def constants(traces, faults):
        nch = max((len(tr.channels) for tr in traces), default=0)
        ngr = max((len(tr.groups) for tr in traces), default=0)
        lines = ["    Channels = {" + ", ".join(str(n) for n in range(1, nch + 1)) + "}",
                 "    Groups = {" + ", ".join(f'"g{n}"' for n in range(1, ngr + 1)) + "}",
                 "    NoGroup = NoGroup"]
        lines += [f"    {f} = {'TRUE' if f in faults else 'FALSE'}" for f in FAULTS]
        lines += ["    Traces <- TrTraces",
                  "    \\* unused here, and every permutation of Channels and of Groups, which TLC",
                  "    \\* would compute at start-up (10 channels: 3.6 million functions, 4 s)",
                  "    Symmetry <- NoSymmetry"]
        return lines


class HaTrace:
    """An HA lifecycle trace file's events (HaConnectionTrace.tla), prepared for the model:
    connections numbered 1, 2, ... in the order of their first events (the accept order; a
    refused registration is a connection too), report offsets ranked 0, 1, ..., and the task
    ends recorded after their connection's Reap moved to just before it: a Reap runs when both
    task futures are gone, so both tasks have ended by then; what follows it is their
    registrations letting go, of a row already removed or about to be, which nothing between can
    tell apart (models/README.md)."""

    SPEC = "HaConnectionTrace"
    UNFINISHED = ("an accept half-way, a row, a task or a slot left, or a slot never reaped")

    def __init__(self, path):
        self.path = str(path)
        raw = read_trace(path, HA_SCHEMA)
        self.conns = {}
        prepared = []
        for line, ev in raw:
            ev = dict(ev)
            key = ("refused", len(prepared)) if ev["action"] == "RegisterRefused" else ev.get("c")
            if key is not None:
                ev["c"] = self.conns.setdefault(key, len(self.conns) + 1)
            if ev["action"] == "Drain":
                missing = [x for x in ev["taken"] if x not in self.conns]
                if missing:
                    raise TraceError(f"Drain takes connection(s) {missing} that no earlier "
                                     "event names")
                ev["taken"] = [self.conns[x] for x in ev["taken"]]
            prepared.append((line, ev))
        reap_at = {}
        for k, (_, ev) in enumerate(prepared):
            if ev["action"] == "Reap":
                if ev["c"] in reap_at:
                    raise TraceError(f"connection {ev['c']} reaped twice")
                reap_at[ev["c"]] = k
        late = lambda k, ev: ev["action"] == "End" and reap_at.get(ev["c"], k) < k
        self.events = []
        for k, (line, ev) in enumerate(prepared):
            if ev["action"] == "Reap":
                # The end that removed the row goes last: its task was the last holder (the
                # other's future was gone before the Reap, its registration let go later, the
                # row already removed), and the last holder's end is where the model raises the
                # Reap's stop, which that end's `stopped` then reports.
                moved = [(ln, e) for j, (ln, e) in enumerate(prepared) if late(j, e)
                         and e["c"] == ev["c"]]
                self.events += sorted(moved, key=lambda m: m[1].get("removed") is True)
            if not late(k, ev):
                self.events.append((line, ev))
        offsets = sorted({ev["o"] for _, ev in self.events if ev["action"] == "Ack"})
        self.rank = {o: n for n, o in enumerate(offsets)}
        self.max_offset = max(len(offsets) - 1, 0)

    def cost(self):
        """A rough measure of TLC's work (see Trace.cost)."""
        return len(self.events) * max(1, len(self.conns) // 2)

    def tla_event(self, ev):
        b = lambda v: "TRUE" if v else "FALSE"
        fields = [f'action |-> "{ev["action"]}"']
        for field, kind in HA_SCHEMA[ev["action"]].items():
            v = ev[field]
            if kind in ("bool",):
                fields.append(f"{field} |-> {b(v)}")
            elif kind == "offset":
                fields.append(f"{field} |-> {self.rank[v]}")
            elif kind in ("task", "why"):
                fields.append(f'{field} |-> "{v}"')
            elif kind == "ids":
                fields.append(f"{field} |-> {{{', '.join(map(str, v))}}}")
            elif kind == "c":
                fields.append(f"c |-> {v}")
        if ev["action"] == "RegisterRefused":
            fields.append(f"c |-> {ev['c']}")
        return "[" + ", ".join(fields) + "]"

    def tla(self, faults):
        return tla_seq(self.tla_event(ev) for _, ev in self.events)

    def names(self):
        out = []
        for key, n in self.conns.items():
            what = "a refused registration" if isinstance(key, tuple) else f"code id {key}"
            out.append(f"connection {n} = {what}")
        out += [f"offset rank {n} = {o}" for o, n in self.rank.items()]
        return out

    @staticmethod
    def constants(traces, faults):
        n = max([len(tr.conns) for tr in traces] + [1])
        m = max([tr.max_offset for tr in traces] + [0])
        return [f"    N = {n}", f"    MaxOffset = {m}",
                "    UpstreamOrder = FALSE", "    UpstreamAcks = FALSE",
                f"    RemoveWithoutStop = {'TRUE' if 'RemoveWithoutStop' in faults else 'FALSE'}",
                "    Traces <- TrTraces"]


def tla_seq(items):
    """A TLA+ sequence of the given expressions, one a line (SANY takes seconds to parse one very
    long line)."""
    items = list(items)
    if not items:
        return "<<>>"
    return "<<\n      " + ",\n      ".join(items) + "\n    >>"


def ranks(values):
    """{value: rank}: the distinct values in increasing order, numbered 0, 1, 2, ..."""
    return {v: n for n, v in enumerate(sorted(set(values)))}


class ReplTrace:
    """A replication trace file's events (ReplicationTrace.tla), prepared for the model: every
    distinct byte offset ranked 0, 1, 2, ... (0 always among them), so that the model's entry k
    is the bytes between ranks k - 1 and k (records have sizes from 40 to 900 bytes, and a slave
    may stop or be cut mid-record: a record is then several entries, on every replica alike);
    the epochs that BeginEpoch events hand out ranked 1, 2, ... in increasing order (the model's
    controller hands out epoch + 1; only order and equality matter), any other epoch 0, which
    no model epoch equals. The bounds (MaxLen, MaxCrashes, MaxElections, MaxDemotes) are the
    trace's own: every step that uses them is an event's, so larger bounds change no verdict.
    MaxDisconnects is the number of Truncate events, the handshakes a dropped connection (which
    the code does not record) can precede."""

    SPEC = "ReplicationTrace"
    UNFINISHED = "none: every matched trace is complete"
    MIN_IN_SYNC = 1   # --min-in-sync

    def __init__(self, path):
        self.path = str(path)
        self.events = read_trace(path, REPL_SCHEMA)
        offsets, begun = {0}, []
        for n, (_, ev) in enumerate(self.events, 1):
            a = ev["action"]
            if a in ("Append", "Transfer") and ev["to"] <= ev["from"]:
                raise TraceError(f"event {n}: {a} of [{ev['from']}, {ev['to']}): nothing")
            for field, kind in REPL_SCHEMA[a].items():
                if kind == "offset":
                    offsets.add(ev[field])
            if a == "Open":
                offsets.update(s for _, s in ev["epochs"])
            if a == "BeginEpoch":
                begun.append(ev["e"])
        self.rank = ranks(offsets)
        self.epoch = {e: n + 1 for e, n in ranks(begun).items()}
        self.replicas = sorted({ev["r"] for _, ev in self.events})
        count = lambda a: sum(ev["action"] == a for _, ev in self.events)
        self.max_len = len(self.rank) - 1
        self.bounds = (count("Crash"), max(count("BeginEpoch") - 1, 0), count("Demote"),
                       count("Truncate"))

    def cost(self):
        """A rough measure of TLC's work (see Trace.cost)."""
        return len(self.events) * max(1, len(self.replicas) // 2)

    def tla_event(self, ev):
        rk, ep = self.rank, lambda e: self.epoch.get(e, 0)
        a = ev["action"]
        fields = [f'action |-> "{a}"', f'r |-> "{ev["r"]}"']
        for field, kind in REPL_SCHEMA[a].items():
            v = ev[field]
            if kind == "offset":
                fields.append(f"{field} |-> {rk[v]}")
            elif kind == "bool":
                fields.append(f"{field} |-> {'TRUE' if v else 'FALSE'}")
            elif kind == "epoch":
                fields.append(f"ep |-> {ep(v)}")
            elif kind == "epochs":
                fields.append("es |-> <<" + ", ".join(f"<<{ep(e)}, {rk[s]}>>" for e, s in v)
                              + ">>")
        return "[" + ", ".join(fields) + "]"

    def tla(self, faults):
        return tla_seq(self.tla_event(ev) for _, ev in self.events)

    def names(self):
        return ([f"offset rank {n} = byte {o}" for o, n in self.rank.items()]
                + [f"epoch {n} = epoch {e}" for e, n in self.epoch.items()])

    @staticmethod
    def constants(traces, faults):
        names = sorted({r for tr in traces for r in tr.replicas}) or ["r1"]
        bound = lambda k: max([tr.bounds[k] for tr in traces] + [0])
        return (["    Replicas = {" + ", ".join(f'"{r}"' for r in names) + "}",
                 f"    MaxLen = {max([tr.max_len for tr in traces] + [0])}",
                 f"    MaxCrashes = {bound(0)}", f"    MaxElections = {bound(1)}",
                 f"    MaxDemotes = {bound(2)}", f"    MaxDisconnects = {bound(3)}",
                 f"    MinInSync = {ReplTrace.MIN_IN_SYNC}"]
                + [f"    {f} = {'TRUE' if f in faults else 'FALSE'}" for f in REPL_FAULTS]
                + ["    Traces <- TrTraces"])


# ----------------------------------------------------------------------------------------------
# Running TLC


def module_text(traces, faults, witness=None):
    spec = TRACE_CLASS.SPEC
    out = ["------------------------------ MODULE MCTrace ------------------------------",
           f"\\* Generated by models/trace/validate.py: the traces to check (see {spec}.tla).",
           "\\* Names are renumbered per trace.",
           f"EXTENDS {spec}", ""]
    for k, tr in enumerate(traces, 1):
        out.append(f"\\* trace {k}: {tr.path} ({len(tr.events)} events)")
        out += [f"\\*   {name}" for name in tr.names()]
    out += ["", "TrTraces == <<", ",\n".join("    " + tr.tla(faults) for tr in traces), "  >>"]
    if witness:
        out += ["", "\\* Violated by the first state that gets as far as the trace goes.",
                f"Witness == Reached < {witness}"]
    out.append("=" * 78)
    return "\n".join(out) + "\n"


def config_text(traces, faults, witness=None):
    lines = ["\\* Generated by models/trace/validate.py.", "CONSTANTS"]
    lines += TRACE_CLASS.constants(traces, faults)
    lines += ["INIT TraceInit",
              "NEXT TraceNext",
              "INVARIANT " + ("Witness" if witness else "Progress")]
    return "\n".join(lines) + "\n"


def run_tlc(traces, faults, args, witness=None):
    """TLC on the traces: ({trace number: furthest Reached}, wall seconds). With witness=k (one
    trace): TLC's output, ending with a behaviour of the model that reaches k."""
    tmp = Path(tempfile.mkdtemp(prefix="crtrace-"))
    try:
        for spec in SPECS:
            shutil.copy(MODELS / spec, tmp / spec)
        (tmp / "MCTrace.tla").write_text(module_text(traces, faults, witness))
        (tmp / "MCTrace.cfg").write_text(config_text(traces, faults, witness))
        cmd = ["java", "-XX:+UseParallelGC", f"-Djava.io.tmpdir={tmp}", "-cp", str(args.jar),
               "tlc2.TLC", "-workers", "1", "-deadlock", "-metadir", str(tmp / "states"),
               "-config", "MCTrace.cfg", "MCTrace.tla"]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            raise RunError(f"TLC timed out after {args.timeout:g} s", timeout=True)
        finally:
            if args.keep:
                keep = Path(tempfile.mkdtemp(prefix="run-", dir=args.keep))
                for f in ("MCTrace.tla", "MCTrace.cfg") + SPECS:
                    shutil.copy(tmp / f, keep / f)
                (keep / "tlc.out").write_text(out if isinstance(out, str) else "")
        wall = time.monotonic() - t0
        if witness:
            if proc.returncode != 12 or "Invariant Witness is violated" not in out:
                raise RunError(f"TLC found no witness (exit {proc.returncode})")
            return out
        if proc.returncode != 0 or TLC_OK not in out:
            tail = "\n    ".join(out.splitlines()[-20:])
            raise RunError(f"TLC failed (exit {proc.returncode}); its output ends:\n    {tail}")
        furthest = {}
        for m in PROGRESS.finditer(out):
            k, r = int(m.group(1)), int(m.group(2))
            furthest[k] = max(furthest.get(k, 0), r)
        if len(furthest) != len(traces):
            raise RunError("TLC printed no progress for some trace")
        return furthest, wall
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Result:
    def __init__(self, path, trace=None, verdict="error", ms=0.0, at=None, error=None):
        self.path, self.trace, self.verdict = path, trace, verdict
        self.ms, self.at, self.error = ms, at, error

    def line(self):
        tr, n = self.trace, len(self.trace.events) if self.trace else 0
        if self.verdict == "accept":
            return f"ACCEPTED {self.path} {n} events {self.ms:.0f} ms"
        if self.verdict == "reject":
            what = (tr.events[self.at - 1][0] if self.at <= n else
                    f"end of trace, with an operation unfinished ({TRACE_CLASS.UNFINISHED})")
            return f"REJECTED {self.path} at event {self.at} of {n}: {what} ({self.ms:.0f} ms)"
        return f"ERROR {self.path}: {self.error}"

    def short(self):
        if self.verdict == "reject":
            n = len(self.trace.events)
            return "reject@end" if self.at == n + 1 else f"reject@{self.at}"
        return self.verdict


def split_runs(traces, args):
    """The TLC runs for these traces: at most --batch traces each, over up to --jobs runs when
    there is enough to explore; balanced by cost."""
    if not traces:
        return []
    cost = sum(tr.cost() for tr in traces)
    n = min(args.jobs, len(traces), max(1, cost // COST_PER_RUN))
    n = max(n, -(-len(traces) // args.batch))
    runs = [[] for _ in range(n)]
    load = [0] * n
    for tr in sorted(traces, key=lambda tr: -tr.cost()):
        k = min((k for k in range(n) if len(runs[k]) < args.batch), key=lambda k: load[k])
        runs[k].append(tr)
        load[k] += tr.cost() + 10
    return runs


def validate(work, args, stats):
    """work: [(faults, [Trace])]. Runs TLC (up to --jobs at once); {(faults, path): Result}."""
    results = {}

    def run(item):
        faults, traces = item
        try:
            furthest, wall = run_tlc(traces, faults, args)
        except RunError as e:
            if e.timeout and len(traces) > 1:
                return [], [(faults, [tr]) for tr in traces]  # again, one trace per run
            return [(faults, Result(tr.path, tr, error=str(e))) for tr in traces], []
        stats["runs"].append((len(traces), wall))
        out = []
        for k, tr in enumerate(traces, 1):
            n, reached = len(tr.events), furthest[k]
            ms = wall * 1000 / len(traces)
            if reached == n + 2 or (reached == n + 1 and args.prefix):
                out.append((faults, Result(tr.path, tr, "accept", ms)))
            else:
                out.append((faults, Result(tr.path, tr, "reject", ms, at=reached)))
        return out, []

    pending = [(faults, run_) for faults, traces in work for run_ in split_runs(traces, args)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        while pending:
            retry = []
            for done, again in pool.map(run, pending):
                for faults, res in done:
                    results[(faults, res.path)] = res
                retry += again
            pending = retry
    return results


def load(paths):
    """({path: Trace}, {path: Result}) for the readable and the unreadable trace files."""
    traces, errors = {}, {}
    for p in map(str, paths):
        try:
            traces[p] = TRACE_CLASS(p)
        except TraceError as e:
            errors[p] = Result(p, error=str(e))
    return traces, errors


def summary_line(results, stats, t0):
    events = sum(len(r.trace.events) for r in results if r.trace)
    count = {v: sum(r.verdict == v for r in results) for v in ("accept", "reject", "error")}
    runs = stats["runs"]
    longest = f" (the longest {max(w for _, w in runs):.1f} s)" if runs else ""
    return (f"{len(results)} traces, {events} events: {count['accept']} accepted, "
            f"{count['reject']} rejected, {count['error']} errors; {len(runs)} TLC "
            f"run{'s' * (len(runs) != 1)}{longest}; {time.monotonic() - t0:.1f} s in all")


# ----------------------------------------------------------------------------------------------
# Command line


def write_witness(r, faults, args):
    """Writes TLC's behaviour of the model that matches r's trace as far as it goes."""
    out_dir = Path(args.witness)
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / (Path(r.path).stem + ".witness.txt")
    try:
        out = run_tlc([r.trace], faults, args, witness=r.at)
    except RunError as e:
        return f"witness: {e}"
    names = "\n".join(r.trace.names())
    start = out.find("Error: Invariant Witness is violated")
    n = len(r.trace.events)
    what = (f"matches events 1..{r.at - 1}; its last state is where event {r.at} fails (i is "
            "the next event)" if r.at <= n else
            f"matches all {n} events; its last state has an operation unfinished")
    dest.write_text(f"{r.line()}\n\nOne behaviour of the model ({TRACE_CLASS.SPEC}.tla) that "
                    f"{what}. Names:\n{names}\n\n{out[start:]}")
    return f"witness: {dest}"


def main_validate(args):
    t0 = time.monotonic()
    faults = tuple(sorted(set(args.fault or [])))
    traces, errors = load(args.traces)
    stats = {"runs": []}
    results = validate([(faults, list(traces.values()))], args, stats)
    ordered = [errors.get(str(p)) or results[(faults, str(p))] for p in args.traces]
    for r in ordered:
        print(r.line(), flush=True)
        if args.witness and r.verdict == "reject":
            print("    " + write_witness(r, faults, args), flush=True)
    print(summary_line(ordered, stats, t0))
    if any(r.verdict == "error" for r in ordered):
        return 2
    if args.expect and any(r.verdict != args.expect for r in ordered):
        return 1
    return 0


VERDICT = r"accept|reject(?:@(?:\d+|end))?"


def parse_manifest(path):
    """EXPECT's lines: (file, [(faults, verdict)], reason)."""
    entries = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) < 3 or not re.fullmatch(VERDICT, words[1]):
            raise TraceError(f"{path}:{n}: expected <file> <verdict> [<Fault>=<verdict>]... "
                             "<reason>")
        checks, rest = [((), words[1])], words[2:]
        while rest and "=" in rest[0]:
            fault, _, v = rest.pop(0).partition("=")
            if fault not in FAULTS or not re.fullmatch(VERDICT, v):
                raise TraceError(f"{path}:{n}: bad fault expectation {fault}={v}")
            checks.append(((fault,), v))
        if not rest:
            raise TraceError(f"{path}:{n}: no reason given")
        entries.append((words[0], checks, " ".join(rest)))
    return entries


def main_self_test(args):
    t0 = time.monotonic()
    try:
        entries = parse_manifest(EXAMPLES / "EXPECT")
    except (OSError, TraceError) as e:
        print(f"ERROR: {e}")
        return 2
    listed = [f for f, _, _ in entries]
    shown = os.path.relpath(EXAMPLES)
    on_disk = {p.name for p in EXAMPLES.glob("*.jsonl")}
    status = 0
    for f in sorted(on_disk - set(listed)):
        print(f"FAIL {f}: not in EXPECT")
        status = 1
    for f in sorted(set(listed) - on_disk):
        print(f"ERROR {f}: in EXPECT but not in {EXAMPLES}")
        status = 2
    traces, errors = load(os.path.join(shown, f) for f in listed if f in on_disk)
    by_faults = {}
    for f, checks, _ in entries:
        p = os.path.join(shown, f)
        for faults, _ in checks:
            if p in traces:
                by_faults.setdefault(faults, []).append(traces[p])
    stats = {"runs": []}
    results = validate(list(by_faults.items()), args, stats)
    kinds = {ev["action"] for tr in traces.values() for _, ev in tr.events}
    for faults in [()] + [(f,) for f in FAULTS]:
        for f, checks, _ in entries:
            p = os.path.join(shown, f)
            for want in (v for fs, v in checks if fs == faults and f in on_disk):
                r = errors.get(p) or results[(faults, p)]
                got = r.short()
                ok = got == want or (want == "reject" and r.verdict == "reject")
                status = 2 if r.verdict == "error" else status if ok else max(status, 1)
                label = f" [{faults[0]}]" if faults else ""
                print(f"{'ok  ' if ok else 'FAIL'} {r.line()}{label}"
                      + ("" if ok else f"   (expected {want})"))
    missing = sorted(set(ACTIVE_SCHEMA) - kinds - UNEXAMPLED)
    if missing:
        print(f"FAIL no example has: {', '.join(missing)}")
        status = max(status, 1)
    checks = sum(len(c) for _, c, _ in entries)
    print(f"self-test: {checks} checks of {len(listed)} examples in {shown}; every action in "
          f"some example: {'no' if missing else 'yes'}; {len(stats['runs'])} TLC runs; "
          f"{time.monotonic() - t0:.1f} s in all: {'OK' if status == 0 else 'FAILED'}")
    return status


# The model's trace class and schema, and the actions its examples need not show (set by main()).
TRACE_CLASS = Trace
ACTIVE_SCHEMA = SCHEMA
UNEXAMPLED = set()


def main():
    global SPECS, EXAMPLES, FAULTS, TRACE_CLASS, ACTIVE_SCHEMA, UNEXAMPLED
    ap = argparse.ArgumentParser(
        description="Validate model traces (JSONL) of the client registry, of the HA "
                    "lifecycle or of replication against models/ClientRegistry.tla, "
                    "models/HaConnection.tla or models/Replication.tla with TLC (see "
                    "models/README.md).")
    ap.add_argument("traces", nargs="*", metavar="TRACE.jsonl")
    ap.add_argument("--model", choices=("client", "ha", "replication"), default="client",
                    help="which model the traces are of (default client)")
    ap.add_argument("--expect", choices=("accept", "reject"),
                    help="exit 1 if some trace gets the other verdict")
    ap.add_argument("--prefix", action="store_true",
                    help="accept a trace that matches but ends with an operation unfinished")
    ap.add_argument("--fault", action="append", choices=FAULTS + HA_FAULTS + REPL_FAULTS,
                    help="check against the model with this fault switched on (repeatable)")
    ap.add_argument("--min-in-sync", type=int, default=1, metavar="N",
                    help="--model replication: the model's MinInSync (default 1, upstream's "
                         "minInSyncReplicas default)")
    ap.add_argument("--jobs", type=int, default=2, help="TLC runs at once (default 2)")
    ap.add_argument("--batch", type=int, default=100,
                    help="at most this many traces per TLC run (default 100)")
    ap.add_argument("--timeout", type=float, default=120,
                    help="wall-clock seconds per TLC run (default 120)")
    ap.add_argument("--jar", default=str(ROOT / os.environ.get("TLA_DIR", "target/tla")
                                         / "tla2tools.jar"),
                    help="TLC 2.15's tla2tools.jar (default: target/tla/tla2tools.jar)")
    ap.add_argument("--witness", metavar="DIR",
                    help="for each rejected trace, write to DIR a behaviour of the model that "
                         "matches it up to the event it fails at (TLC's counterexample)")
    ap.add_argument("--keep", metavar="DIR",
                    help="keep each run's modules, .cfg and TLC output in a new directory in DIR")
    ap.add_argument("--self-test", action="store_true",
                    help="check models/traces/<model>/*.jsonl against that directory's EXPECT")
    args = ap.parse_args()
    if args.model == "ha":
        SPECS = ("HaConnection.tla", "HaConnectionTrace.tla")
        EXAMPLES = MODELS / "traces" / "ha"
        FAULTS = HA_FAULTS
        TRACE_CLASS, ACTIVE_SCHEMA = HaTrace, HA_SCHEMA
        # No model action (the model has no housekeeping reclaim): a Reclaim is always rejected.
        UNEXAMPLED = {"Reclaim"}
    elif args.model == "replication":
        SPECS = ("Replication.tla", "ReplicationTrace.tla")
        EXAMPLES = MODELS / "traces" / "replication"
        FAULTS = REPL_FAULTS
        TRACE_CLASS, ACTIVE_SCHEMA = ReplTrace, REPL_SCHEMA
        if args.min_in_sync < 1:
            ap.error("--min-in-sync must be at least 1")
        ReplTrace.MIN_IN_SYNC = args.min_in_sync
    if any(f not in FAULTS for f in args.fault or []):
        ap.error(f"--fault for --model {args.model}: one of {', '.join(FAULTS)}")
    if args.jobs < 1 or args.batch < 1 or args.timeout <= 0:
        ap.error("--jobs, --batch and --timeout must be positive")
    if args.self_test == bool(args.traces):
        ap.error("give trace files, or --self-test")
    if not Path(args.jar).is_file():
        print(f"ERROR: {args.jar} not found: `bash .ci/models.sh ClientRegistry` installs it",
              file=sys.stderr)
        sys.exit(2)
    if not shutil.which("java"):
        print("ERROR: java not found", file=sys.stderr)
        sys.exit(2)
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    sys.exit(main_self_test(args) if args.self_test else main_validate(args))


if __name__ == "__main__":
    main()
