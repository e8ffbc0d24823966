#!/usr/bin/env python3
"""Random ClientRegistry traces, to test validate.py without the Rust.

    python3 models/trace/simulate.py OUT N [--seed S] [--channels C] [--groups G] [--ops K]
                                           [--scans S] [--shards H]
    python3 models/trace/simulate.py --mutate OUT SRC.jsonl... [--seed S]

The first form simulates src/registry/client.rs at the granularity of its critical sections:
per channel, a thread of heartbeats and unregisters and maybe a closer; one thread of scans;
interleaved at random; with a real clock that moves on by a random amount at random steps (the
model's Age and AgeRequest; a scan uses the `now` it read at its start, a heartbeat the `now` it
read at its first join). It writes N traces of what the Rust records, each of which the model must
accept.

The second form writes 4 mutants of each trace: two adjacent events swapped, one dropped or
duplicated, an `expired` flipped, a candidate added or removed, or a channel changed. Most must
be rejected, but not all: two events that commute can be swapped, a refresh can be repeated.

Comparing validate.py's verdicts on these with those of a version of the spec that tries every
unrecorded collect at every point, or with --batch 1, is how the reductions described in the README
were checked. Python 3 standard library only.
"""

import argparse
import json
import random
from pathlib import Path

EXPIRY = 100


class Registry:
    """The registry's state, and its operations as generators that yield, before each atomic step,
    the condition for taking it (a lock to be free)."""

    def __init__(self, channels, shards):
        self.shards = shards
        self.tab = {}  # group present -> {channel: last seen}
        self.live = set(channels)
        self.closed = {c: False for c in channels}
        self.index = {c: set() for c in channels}
        self.owner = {c: None for c in channels}  # who holds the channel mutex
        self.now = 0
        self.scanning = False
        self.events = []

    def emit(self, **ev):
        self.events.append({"seq": len(self.events), **ev})

    def leave(self, g, ch):
        members = self.tab.get(g)
        if members is not None and ch in members:
            del members[ch]
            if not members:
                del self.tab[g]

    def free(self, ch):
        return lambda: self.owner[ch] is None

    @staticmethod
    def always():
        return True

    def heartbeat(self, me, ch, keys):
        yield self.free(ch)
        self.owner[ch] = me
        if self.closed[ch]:
            self.emit(action="HeartbeatRefused", ch=ch)
        else:
            now = None
            for k, g in enumerate(keys):
                yield self.always
                if k == 0:
                    now = self.now  # read when the first join takes effect (README, "Time")
                    self.emit(action="HeartbeatStart", ch=ch, G=list(keys), g=g)
                else:
                    self.emit(action="HeartbeatJoin", ch=ch, g=g)
                self.tab.setdefault(g, {})[ch] = now
                self.index[ch].add(g)
        self.owner[ch] = None

    def unregister(self, me, ch, g):
        yield self.free(ch)
        self.owner[ch] = me
        if not self.closed[ch] and g in self.index[ch]:
            yield self.always
            self.index[ch].discard(g)
            self.emit(action="Unregister", ch=ch, g=g)
            self.leave(g, ch)
        self.owner[ch] = None

    def close(self, me, ch):
        yield self.free(ch)
        self.owner[ch] = me
        if not self.closed[ch]:
            self.closed[ch] = True
            groups = sorted(self.index[ch], key=lambda g: (g[0] != "P", g))
            self.index[ch] = set()
            for k, g in enumerate(groups):
                yield self.always
                self.emit(action="ChannelClosedLeave" if k else "ChannelClosedStart", ch=ch, g=g)
                self.leave(g, ch)
            yield self.always
            self.live.discard(ch)
            if groups:
                self.emit(action="ChannelClosedFinish", ch=ch)
            else:
                self.emit(action="ChannelClosedStart", ch=ch, g=None)
        self.owner[ch] = None

    def scan(self):
        yield self.always
        self.scanning = True
        now = self.now
        self.emit(action="ScanInactiveStart")
        cands = []
        for kind in "PC":
            for shard in range(self.shards):
                yield self.always
                groups = sorted(g for g in self.tab
                                if g[0] == kind and sum(g.encode()) % self.shards == shard)
                if groups:
                    found = [[g, ch] for g in groups for ch, seen in sorted(self.tab[g].items())
                             if now - seen > EXPIRY]
                    self.emit(action="ScanInactiveCollect", groups=groups, cands=found)
                    cands += found
        for g, ch in sorted(cands, key=lambda p: (p[0][0] != "P", p[0], p[1])):
            yield self.always
            if ch not in self.live:
                self.emit(action="ScanInactiveExpire", g=g, ch=ch, expired=False)
                continue
            yield self.free(ch)
            seen = self.tab.get(g, {}).get(ch)
            expired = not self.closed[ch] and seen is not None and now - seen > EXPIRY
            self.emit(action="ScanInactiveExpire", g=g, ch=ch, expired=expired)
            if expired:
                self.leave(g, ch)
                self.index[ch].discard(g)
        yield self.always
        self.emit(action="ScanInactiveEnd")
        self.scanning = False


def chain(gens):
    for gen in gens:
        yield from gen


def simulate(rng, args):
    channels = rng.sample(range(1, 100), args.channels)
    groups = sorted({f"{rng.choice('PC')}:grp{k}" for k in range(args.groups)})
    reg = Registry(channels, args.shards)
    threads = []
    for ch in channels:
        ops = []
        for _ in range(args.ops):
            if rng.random() < 0.7:
                keys = rng.sample(groups, rng.randint(1, min(3, len(groups))))
                ops.append(reg.heartbeat(f"w{ch}", ch, keys))
            else:
                ops.append(reg.unregister(f"w{ch}", ch, rng.choice(groups)))
        threads.append(chain(ops))
        if rng.random() < 0.5:
            threads.append(reg.close(f"c{ch}", ch))
    threads.append(chain(reg.scan() for _ in range(args.scans)))
    ready = {k: next(t) for k, t in enumerate(threads)}
    while ready:
        runnable = [k for k, cond in ready.items() if cond()]
        assert runnable, "deadlock"
        k = rng.choice(runnable)
        if rng.random() < 0.2:
            reg.now += rng.randint(1, EXPIRY // 2)  # a real clock (README, "Time")
        cond = next(threads[k], None)
        if cond is None:
            del ready[k]
        else:
            ready[k] = cond
    return reg.events


def mutants(rng, events):
    """Up to 4 mutants of a trace: (kind, events)."""
    out = []
    for _ in range(4):
        e = [dict(x) for x in events]
        kind = rng.choice(["swap", "drop", "dup", "flip", "cands", "ch"])
        k = rng.randrange(len(e))
        if kind == "swap" and k + 1 < len(e):
            e[k], e[k + 1] = e[k + 1], e[k]
        elif kind == "drop":
            del e[k]
        elif kind == "dup":
            e.insert(k, dict(e[k]))
        elif kind == "flip":
            xs = [j for j, x in enumerate(e) if x["action"] == "ScanInactiveExpire"]
            if not xs:
                continue
            j = rng.choice(xs)
            e[j]["expired"] = not e[j]["expired"]
        elif kind == "cands":
            xs = [j for j, x in enumerate(e) if x["action"] == "ScanInactiveCollect"]
            if not xs:
                continue
            j = rng.choice(xs)
            cands = [list(c) for c in e[j]["cands"]]
            if cands and rng.random() < 0.5:
                cands.pop(rng.randrange(len(cands)))
            else:
                chans = sorted({x["ch"] for x in e if "ch" in x})
                c = [rng.choice(e[j]["groups"]), rng.choice(chans)]
                if c in cands:
                    continue
                cands.append(c)
            e[j]["cands"] = cands
        elif kind == "ch" and "ch" in e[k]:
            others = sorted({x["ch"] for x in e if "ch" in x} - {e[k]["ch"]})
            if not others:
                continue
            e[k]["ch"] = rng.choice(others)
        else:
            continue
        for s, x in enumerate(e):
            x["seq"] = s
        out.append((kind, e))
    return out


def write(path, events):
    path.write_text("".join(json.dumps(x, separators=(",", ":")) + "\n" for x in events))


def main():
    ap = argparse.ArgumentParser(description="Random ClientRegistry traces (see the docstring).")
    ap.add_argument("out")
    ap.add_argument("rest", nargs="+", metavar="N | SRC.jsonl")
    ap.add_argument("--mutate", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--groups", type=int, default=3)
    ap.add_argument("--ops", type=int, default=4, help="requests per channel")
    ap.add_argument("--scans", type=int, default=2)
    ap.add_argument("--shards", type=int, default=1, help="shards per group table")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.mutate:
        for src in map(Path, args.rest):
            events = [json.loads(line) for line in src.read_text().splitlines() if line.strip()]
            for m, (kind, e) in enumerate(mutants(rng, events)):
                write(out / f"{src.stem}-{m}-{kind}.jsonl", e)
    else:
        for k in range(int(args.rest[0])):
            write(out / f"t{k:04d}.jsonl", simulate(rng, args))


if __name__ == "__main__":
    main()
