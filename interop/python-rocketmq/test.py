#!/usr/bin/env python3
"""Interop: the PyPI `rocketmq` client (0.4.4: Python over the RocketMQ C++ client, written by
others) against `rmq-lifecycle serve`, which runs with `--in-sync-replicas 2` and one
`rmq-lifecycle slave` replicating its commit log.

Two push consumers of one group start (each its own client id, so its own connection), then a
Producer sends messages. Every frame they send is built by the C++ client; this file only starts
the two processes, plays the name server (which `serve` is not: GET_ROUTEINTO_BY_TOPIC answers a
route whose only broker is `serve`; the consumers' topic is write-only, perm 2, the producer's
read|write, perm 6, with 4 write queues), reads /metrics, the C++ client's own log and, after
both processes stopped, the two stores. Checked:

* both consumers register in the group, and the group and their channels are gone after
  shutdown;
* the C++ client's rebalance asked GET_CONSUMER_LIST_BY_GROUP (38) and was told both client ids;
* the first consumer heard NOTIFY_CONSUMER_IDS_CHANGED (40) for the group;
* a Producer's send_sync of 24 messages (distinct bodies, keys and a property): every result
  is SendStatus.OK with a message id (the wrapper exposes msg_id, the client's UNIQ_KEY, not the
  offset id), and when it is answered /metrics shows the slave acknowledged the log's end;
* /metrics shows the slave acknowledged the master's whole log; SIGTERM ends the slave and then
  `serve`, both with exit 0;
* every segment file of the slave equals the master's byte for byte (up to the master's length);
* the master's commit log, parsed as upstream's message records (records of another MAGIC
  skipped), holds every sent body exactly once under the sent topic, at the physical offset it
  is at, with the body's CRC, the client's KEYS, TAGS, the property and a UNIQ_KEY equal to the
  send's msg_id; the send's queue offset is the record's, and per queue the offsets count 0, 1,
  2, ... in send order.

Run: RMQ_LIFECYCLE_BIN=/abs/path/to/rmq-lifecycle python3 test.py   (or bash .ci/interop.sh)
Needs the `rocketmq` package on the path (.ci/interop.sh installs it into target/).
"""

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib

BIN = os.environ.get("RMQ_LIFECYCLE_BIN") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "target", "release", "rmq-lifecycle"))
WAIT = 15.0  # seconds any one condition may take
GROUP = "PY_INTEROP_CG"
TOPIC = "PY_INTEROP_TOPIC"
PRODUCER_GROUP = "PY_INTEROP_PG"
SEND_TOPIC = "PY_INTEROP_SEND_TOPIC"
SENDS = 24
MESSAGE_MAGIC = 0xDAA320A7


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def frame(code, opaque, body=b""):
    header = json.dumps({"code": code, "flag": 1, "language": "JAVA", "opaque": opaque,
                         "serializeTypeCurrentRPC": "JSON", "version": 493,
                         "extFields": {}}).encode()
    return struct.pack(">ii", 4 + len(header) + len(body), len(header)) + header + body


def stub_name_server(broker, writable):
    """Answers GET_ROUTEINTO_BY_TOPIC (105) with `broker` as the only broker. The topics in
    `writable` get read|write queues (perm 6), so a producer sends to them; any other topic's
    queues are write-only (perm 2), so the consumers find nothing to pull. Anything else:
    code 3."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)

    def route(topic):
        return json.dumps({
            "brokerDatas": [{"brokerName": "interop", "cluster": "interop",
                             "brokerAddrs": {"0": broker}}],
            "filterServerTable": {},
            "queueDatas": [{"brokerName": "interop", "perm": 6 if topic in writable else 2,
                            "readQueueNums": 4, "writeQueueNums": 4, "topicSynFlag": 0}],
        }).encode()

    def serve(conn):
        buf = b""
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">i", buf[:4])[0]:
                    n = struct.unpack(">i", buf[:4])[0]
                    f, buf = buf[4:4 + n], buf[4 + n:]
                    header = json.loads(f[4:4 + (struct.unpack(">i", f[:4])[0] & 0xFFFFFF)])
                    if header["code"] == 105:
                        topic = (header.get("extFields") or {}).get("topic")
                        conn.sendall(frame(0, header["opaque"], route(topic)))
                    else:
                        conn.sendall(frame(3, header["opaque"]))

    def accept():
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return "127.0.0.1:%d" % srv.getsockname()[1]


def scrape(url):
    """Samples of the Prometheus text, name (with its labels, if any) -> number."""
    with urllib.request.urlopen(url, timeout=2) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)$", line.strip())
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def slave_acked(m):
    """The highest offset a slave acknowledged, from a scrape (-1: no slave)."""
    return max([v for k, v in m.items() if k.startswith("rmq_ha_slave_acked_offset{")] or [-1])


def wait_for(what, check):
    deadline = time.monotonic() + WAIT
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def start(args):
    """Starts `rmq-lifecycle ARGS`; its stderr lines collect in the returned list."""
    proc = subprocess.Popen(
        [BIN] + args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env=dict(os.environ, RUST_LOG="info", NO_COLOR="1"))
    lines = []
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    return proc, lines


def stop(procs):
    """SIGTERM to each (name, proc, stderr lines) in turn, each to exit 0 within 15 s; a process
    that does not is killed. Returns what went wrong."""
    errors = []
    for name, proc, lines in procs:
        if proc is None:
            continue
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            errors.append("%s did not exit within 15 s of SIGTERM:\n%s" % (name, "".join(lines)))
            continue
        if code != 0:
            errors.append("%s exited %d:\n%s" % (name, code, "".join(lines)))
    return errors


def segments(store):
    return sorted(f for f in os.listdir(store) if re.fullmatch(r"\d{20}", f))


def read_messages(store):
    """Upstream's message records in the commit log of `store`, in log order. A record of any
    other MAGIC (a BLANK, or this store's own) is skipped by its TOTALSIZE."""
    out = []
    for name in segments(store):
        base = int(name)
        with open(os.path.join(store, name), "rb") as fh:
            data = fh.read()
        pos = 0
        while pos + 8 <= len(data):
            total, magic = struct.unpack_from(">iI", data, pos)
            assert 8 <= total <= len(data) - pos, \
                "segment %s: record at %d has TOTALSIZE %d, %d bytes left" % (
                    name, pos, total, len(data) - pos)
            if magic == MESSAGE_MAGIC:
                out.append(parse_message(data[pos:pos + total], base + pos))
            pos += total
        assert pos == len(data), "segment %s: %d trailing bytes" % (name, len(data) - pos)
    return out


def parse_message(rec, at):
    def take(n):
        nonlocal i
        i += n
        return rec[i - n:i]

    i = 8
    body_crc, queue_id, flag, queue_offset, phys, sys_flag, born_ts = struct.unpack(
        ">iiiqqiq", take(4 + 4 + 4 + 8 + 8 + 4 + 8))
    born_host = take(20 if sys_flag & 0x10 else 8)
    (store_ts,) = struct.unpack(">q", take(8))
    store_host = take(20 if sys_flag & 0x20 else 8)
    reconsume_times, prepared = struct.unpack(">iq", take(12))
    (body_len,) = struct.unpack(">i", take(4))
    body = take(body_len)
    topic = take(take(1)[0]).decode()
    (props_len,) = struct.unpack(">H", take(2))
    props = take(props_len).decode()
    assert i == len(rec), "record at %d: fields end at %d of TOTALSIZE %d" % (at, i, len(rec))
    return {
        "at": at, "phys": phys, "queue_id": queue_id, "queue_offset": queue_offset,
        "body_crc": body_crc, "body": body, "topic": topic, "sys_flag": sys_flag,
        "store_host": store_host, "born_host": born_host, "raw_props": props,
        "props": dict(p.split("\x01", 1) for p in props.split("\x02") if p),
    }


def check_replica(master, slave):
    """Every segment of the master is in the slave, equal up to the master's length."""
    names = segments(master)
    assert names, "the master's store %s has no segment file" % master
    assert segments(slave) == names, "segment files: master %r, slave %r" % (names, segments(slave))
    sizes = []
    for name in names:
        with open(os.path.join(master, name), "rb") as fh:
            m = fh.read()
        with open(os.path.join(slave, name), "rb") as fh:
            s = fh.read()
        assert len(s) >= len(m), "segment %s: slave has %d bytes, master %d" % (name, len(s), len(m))
        if s[:len(m)] != m:
            first = next(k for k in range(len(m)) if s[k] != m[k])
            raise AssertionError("segment %s: slave differs from master at byte %d of %d" % (
                name, first, len(m)))
        sizes.append(len(m))
    return sizes


def check_sends(sent, records):
    """`sent`: (body, keys, tags, result) in send order."""
    mine = [r for r in records if r["topic"] == SEND_TOPIC]
    by_body = {}
    for r in mine:
        by_body.setdefault(r["body"], []).append(r)
    for body, keys, tags, result in sent:
        found = by_body.get(body, [])
        assert len(found) == 1, "body %r stored %d times under %s (records under it: %d)" % (
            body, len(found), SEND_TOPIC, len(mine))
    assert len(mine) == len(sent), "%d records under %s for %d sends: %r" % (
        len(mine), SEND_TOPIC, len(sent), [r["body"] for r in mine])
    next_offset = {}
    for body, keys, tags, result in sent:
        r = by_body[body][0]
        assert r["phys"] == r["at"], "record at %d says PHYSICALOFFSET %d" % (r["at"], r["phys"])
        assert r["body_crc"] == zlib.crc32(body) & 0x7FFFFFFF, \
            "body %r: BODYCRC %d" % (body, r["body_crc"])
        props = r["props"]
        want = {"KEYS": keys, "TAGS": tags, "interop-seq": body.decode().rsplit("-", 1)[1],
                "UNIQ_KEY": result.msg_id}
        seen = {k: props.get(k) for k in want}
        assert seen == want, "body %r: properties %r, wanted %r (all: %r)" % (
            body, seen, want, r["raw_props"])
        q = r["queue_id"]
        assert 0 <= q < 4, "body %r stored in queue %d of a 4-queue route" % (body, q)
        assert result.offset == r["queue_offset"], \
            "body %r: send said queue offset %d, record has %d" % (body, result.offset, r["queue_offset"])
        expected = next_offset.get(q, 0)
        assert r["queue_offset"] == expected, \
            "queue %d: body %r at queue offset %d, next in send order was %d" % (
                q, body, r["queue_offset"], expected)
        next_offset[q] = expected + 1
    return next_offset


def main():
    assert os.access(BIN, os.X_OK), "no server binary at %s (set RMQ_LIFECYCLE_BIN)" % BIN
    # Two stores of 1 GiB segments: removed after a pass, kept after a failure (and with
    # RMQ_INTEROP_KEEP set) for a look at them.
    work = tempfile.mkdtemp(prefix="rmq-interop-py-")
    try:
        run(work)
    except BaseException:
        print("# stores kept in %s" % work)
        raise
    if os.environ.get("RMQ_INTEROP_KEEP"):
        print("# stores kept in %s" % work)
    else:
        shutil.rmtree(work)


def run(work):
    # The C++ client logs to $HOME/logs/rocketmq-cpp: a HOME of our own keeps the run's log apart.
    os.environ["HOME"] = work
    master_store, slave_store = os.path.join(work, "store"), os.path.join(work, "slave-store")
    port, ha_port, metrics_port = free_port(), free_port(), free_port()
    server, stderr = start([
        "serve", "--listen", "127.0.0.1:%d" % port, "--ha-listen", "127.0.0.1:%d" % ha_port,
        "--metrics", "127.0.0.1:%d" % metrics_port, "--store", master_store,
        "--in-sync-replicas", "2"])
    slave, slave_stderr = None, []
    metrics = "http://127.0.0.1:%d/metrics" % metrics_port
    try:
        wait_for("serve to log 'serving'", lambda: any("serving" in l for l in stderr))
        # --listen/--ha-listen are only used if the slave is promoted; free ports all the same.
        slave, slave_stderr = start([
            "slave", "--master", "127.0.0.1:%d" % ha_port, "--store", slave_store,
            "--listen", "127.0.0.1:%d" % free_port(), "--ha-listen", "127.0.0.1:%d" % free_port()])
        wait_for("the slave to connect", lambda: (
            lambda m: m if m.get("rmq_ha_connections") == 1 else None)(scrape(metrics)))
        ns = stub_name_server("127.0.0.1:%d" % port, {SEND_TOPIC})
        from rocketmq.client import Message, Producer, PushConsumer, SendStatus  # loads the C++ library

        consumers = []
        for name in ("py-one", "py-two"):
            consumer = PushConsumer(GROUP)
            consumer.set_namesrv_addr(ns)
            consumer.set_instance_name(name)
            consumer.subscribe(TOPIC, lambda msg: None)
            consumer.start()
            consumers.append(consumer)
            want = len(consumers)
            m = wait_for("%d consumer channel(s) in the group" % want, lambda: (
                lambda m: m if m.get("rmq_consumer_groups") == 1
                and m.get("rmq_client_channels") == want else None)(scrape(metrics)))
            print("# after %s started: groups %d, channels %d" % (
                name, m["rmq_consumer_groups"], m["rmq_client_channels"]))

        logs = os.path.join(work, "logs", "rocketmq-cpp")

        def log_text():
            text = ""
            for f in os.listdir(logs) if os.path.isdir(logs) else []:
                with open(os.path.join(logs, f), errors="replace") as fh:
                    text += fh.read()
            return text

        # 38: a rebalance that learned both client ids (the C++ client logs each id it got).
        wait_for("a rebalance listing both consumers", lambda: (
            lambda t: re.search(r"client id:\S*@py-one of topic", t)
            and re.search(r"client id:\S*@py-two of topic", t))(log_text()))
        # 40: pushed when the second consumer joined.
        wait_for("NOTIFY_CONSUMER_IDS_CHANGED for the group",
                 lambda: "notifyConsumerIdsChanged:%s" % GROUP in log_text())
        print("# GET_CONSUMER_LIST_BY_GROUP answered both ids; NOTIFY_CONSUMER_IDS_CHANGED heard")

        for consumer in consumers:
            consumer.shutdown()
        wait_for("the group and its channels gone", lambda: (
            lambda m: m.get("rmq_consumer_groups") == 0 and m.get("rmq_client_channels") == 0)(
                scrape(metrics)))
        print("# after shutdown: no group, no channel")

        # The producer: send_sync waits for the broker's answer, which waits for the slave.
        producer = Producer(PRODUCER_GROUP, timeout=5000)
        producer.set_namesrv_addr(ns)
        producer.start()
        sent = []
        try:
            for seq in range(SENDS):
                body = ("py-interop-body-%d" % seq).encode()
                keys, tags = "py-key-%d" % seq, "Tag%s" % "AB"[seq % 2]
                msg = Message(SEND_TOPIC)
                msg.set_keys(keys)
                msg.set_tags(tags)
                msg.set_property("interop-seq", str(seq))
                msg.set_body(body)
                began = time.monotonic()
                result = producer.send_sync(msg)
                took = time.monotonic() - began
                assert result.status == SendStatus.OK, "send %d: %r" % (seq, result)
                assert re.fullmatch(r"[0-9A-F]{32}", result.msg_id), "send %d: msg_id %r" % (
                    seq, result.msg_id)
                assert took < WAIT, "send %d took %.1f s" % (seq, took)
                # In sync: the answer came after the slave acknowledged the log's new end.
                m = scrape(metrics)
                acked = slave_acked(m)
                assert acked >= m.get("rmq_commitlog_max_offset", -1), \
                    "send %d answered with the slave at %r of %r" % (
                        seq, acked, m.get("rmq_commitlog_max_offset"))
                sent.append((body, keys, tags, result))
        finally:
            producer.shutdown()
        assert len({r.msg_id for _, _, _, r in sent}) == SENDS, "msg ids repeat: %r" % (
            [r.msg_id for _, _, _, r in sent])
        print("# %d send_sync results SendStatus.OK, e.g. %r" % (len(sent), sent[0][3]))
        wait_for("the producer's group and channel gone", lambda: (
            lambda m: m.get("rmq_producer_groups") == 0 and m.get("rmq_client_channels") == 0)(
                scrape(metrics)))

        def caught_up():
            m = scrape(metrics)
            top = m.get("rmq_commitlog_max_offset")
            return m if top and slave_acked(m) >= top else None

        m = wait_for("the slave to acknowledge the whole log", caught_up)
        print("# commit log %d bytes, slave acknowledged %d" % (
            m["rmq_commitlog_max_offset"], slave_acked(m)))
    finally:
        # The slave first: the master then has nothing left to send it.
        errors = stop([("slave", slave, slave_stderr), ("serve", server, stderr)])
    assert not errors, "\n".join(errors)
    print("# SIGTERM: slave and serve exited 0")

    sizes = check_replica(master_store, slave_store)
    print("# slave store equals the master's: segments of %r bytes" % sizes)
    next_offset = check_sends(sent, read_messages(master_store))
    print("# commit log: %d bodies once each under %s, queue offsets %r" % (
        len(sent), SEND_TOPIC, dict(sorted(next_offset.items()))))
    print("ok - python rocketmq (C++ client): two push consumers, 38 and 40; "
          "%d synced sends stored and replicated; clean exits" % len(sent))


if __name__ == "__main__":
    try:
        main()
    except AssertionError as error:
        print("not ok - %s" % error)
        sys.exit(1)
