#!/usr/bin/env python3
"""Interop: the PyPI `rocketmq` client (0.4.4: Python over the RocketMQ C++ client, written by
others) against `rmq-lifecycle serve`.

Two push consumers of one group start (each its own client id, so its own connection). Every
frame they send is built by the C++ client; this file only starts the server, plays the name
server (which `serve` is not: GET_ROUTEINTO_BY_TOPIC answers a route whose only broker is
`serve`), reads /metrics and reads the C++ client's own log. Checked:

* both consumers register in the group, and the group and their channels are gone after
  shutdown;
* the C++ client's rebalance asked GET_CONSUMER_LIST_BY_GROUP (38) and was told both client ids;
* the first consumer heard NOTIFY_CONSUMER_IDS_CHANGED (40) for the group;
* SIGTERM ends `serve` with exit 0.

Run: RMQ_LIFECYCLE_BIN=/abs/path/to/rmq-lifecycle python3 test.py   (or bash .ci/interop.sh)
Needs the `rocketmq` package on the path (.ci/interop.sh installs it into target/).
"""

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BIN = os.environ.get("RMQ_LIFECYCLE_BIN") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "target", "release", "rmq-lifecycle"))
WAIT = 15.0  # seconds any one condition may take
GROUP = "PY_INTEROP_CG"
TOPIC = "PY_INTEROP_TOPIC"


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


def stub_name_server(broker):
    """Answers GET_ROUTEINTO_BY_TOPIC (105) with `broker` as the only broker; queues are
    write-only (perm 2), so the consumers find nothing to pull. Anything else: code 3."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    route = json.dumps({
        "brokerDatas": [{"brokerName": "interop", "cluster": "interop",
                         "brokerAddrs": {"0": broker}}],
        "filterServerTable": {},
        "queueDatas": [{"brokerName": "interop", "perm": 2, "readQueueNums": 4,
                        "writeQueueNums": 4, "topicSynFlag": 0}],
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
                        conn.sendall(frame(0, header["opaque"], route))
                    else:
                        conn.sendall(frame(3, header["opaque"]))

    def accept():
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return "127.0.0.1:%d" % srv.getsockname()[1]


def scrape(url):
    with urllib.request.urlopen(url, timeout=2) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\s+(\S+)$", line.strip())
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def wait_for(what, check):
    deadline = time.monotonic() + WAIT
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def main():
    assert os.access(BIN, os.X_OK), "no server binary at %s (set RMQ_LIFECYCLE_BIN)" % BIN
    work = tempfile.mkdtemp(prefix="rmq-interop-py-")
    # The C++ client logs to $HOME/logs/rocketmq-cpp: a HOME of our own keeps the run's log apart.
    os.environ["HOME"] = work
    port, metrics_port = free_port(), free_port()
    server = subprocess.Popen(
        [BIN, "serve", "--listen", "127.0.0.1:%d" % port, "--ha-listen", "127.0.0.1:0",
         "--metrics", "127.0.0.1:%d" % metrics_port, "--store", os.path.join(work, "store")],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env=dict(os.environ, RUST_LOG="info", NO_COLOR="1"))
    stderr = []
    threading.Thread(target=lambda: stderr.extend(server.stderr), daemon=True).start()
    metrics = "http://127.0.0.1:%d/metrics" % metrics_port
    try:
        wait_for("serve to log 'serving'", lambda: any("serving" in l for l in stderr))
        ns = stub_name_server("127.0.0.1:%d" % port)
        from rocketmq.client import PushConsumer  # the C++ library loads here

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
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
    try:
        code = server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        raise AssertionError("serve did not exit within 15 s of SIGTERM:\n" + "".join(stderr))
    assert code == 0, "serve exited %d:\n%s" % (code, "".join(stderr))
    print("ok - python rocketmq (C++ client): two push consumers, 38 and 40, clean exit")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as error:
        print("not ok - %s" % error)
        sys.exit(1)
