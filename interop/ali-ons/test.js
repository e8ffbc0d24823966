'use strict';
// Interop: the `ali-ons` RocketMQ client (pure JavaScript, written by others) against
// `rmq-lifecycle serve`, which runs with `--in-sync-replicas 2` and one `rmq-lifecycle slave`
// replicating its commit log. Every HEART_BEAT, UNREGISTER_CLIENT, GET_CONSUMER_LIST_BY_GROUP and
// SEND_MESSAGE_V2 frame below is built and written by ali-ons's own code, and its own channel
// decodes the broker's NOTIFY_CONSUMER_IDS_CHANGED and the send responses; this file only starts
// the two processes, reads /metrics, plays the name server (which `serve` is not) for the
// Producer/Consumer tests, and reads the stores once both processes stopped. Checked:
// * MQClientAPI straight to the broker: heartbeats, the consumer list, the notification on a
//   join and a close, unregistering by group, the gauges after each; and through a tap, the
//   exact frames ali-ons writes and what serve answers;
// * a Producer and two push Consumers (their topic write-only, perm 2): one heartbeat for both
//   groups, the first consumer notified of the second, both listed, the groups gone on close;
// * a Producer sending 24 Messages (distinct bodies, keys, tags and a property) to a topic the
//   stub routes read|write (perm 6, 4 write queues) to the broker alone: every result SEND_OK with
//   a 32-hex msgId (ali-ons's msgId is the offset message id), the queue offsets 0, 1, 2, ... per
//   queue in send order, and /metrics showing the slave acknowledged the log's end when the send
//   is answered;
// * once /metrics shows the slave acknowledged the whole log, SIGTERM ends the slave and then
//   serve, both with exit 0;
// * the slave's segment files equal the master's byte for byte (up to the master's length), and
//   the master's commit log, parsed as upstream's message records (other MAGICs skipped), holds
//   every sent body exactly once under the sent topic, at the physical offset it is at, with the
//   body's CRC, the msgId naming its store host and offset, the send's queue and queue offset,
//   and the client-set KEYS, TAGS and property in its properties.
//
// Run: RMQ_LIFECYCLE_BIN=/abs/path/to/rmq-lifecycle node --test test.js   (or bash .ci/interop.sh)

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const util = require('node:util');

const MQClientAPI = require('ali-ons/lib/mq_client_api');
const MQClient = require('ali-ons/lib/mq_client');
const MQPushConsumer = require('ali-ons/lib/consumer/mq_push_consumer');
const MQProducer = require('ali-ons/lib/producer/mq_producer'); // ali-ons's exported Producer
const Message = require('ali-ons/lib/message/message'); // ali-ons's exported Message
const SendStatus = require('ali-ons/lib/producer/send_status');
const ConsumeType = require('ali-ons/lib/protocol/consume_type');
const MessageModel = require('ali-ons/lib/protocol/message_model');
const ConsumeFromWhere = require('ali-ons/lib/consumer/consume_from_where');
const RequestCode = require('ali-ons/lib/protocol/request_code');
const ResponseCode = require('ali-ons/lib/protocol/response_code');

const BIN = process.env.RMQ_LIFECYCLE_BIN ||
  path.resolve(__dirname, '..', '..', 'target', 'release', 'rmq-lifecycle');
const WAIT_MS = 10_000;
const SEND_TOPIC = 'ALI_ONS_SEND_TOPIC';
const SENDS = 24;
const MESSAGE_MAGIC = 0xDAA320A7;

// ali-ons logs warnings and errors to the console by default; keep them, but tagged and counted.
const clientLog = [];
const quietLogger = {
  info() {},
  debug() {},
  warn(...args) { clientLog.push([ 'warn', util.format(...args) ]); },
  error(...args) { clientLog.push([ 'error', util.format(...args) ]); },
};

let server; // { child, stderr(), exit: Promise<{code, signal}>, addr, port, metricsUrl, store }
let slave; // { child, stderr(), exit, store }
// The run's directory (two stores of 1 GiB segments): removed at the end unless
// RMQ_INTEROP_KEEP is set, so that repeated runs do not fill the disk.
let work;
// What the producer test sent and was told, in send order, for the store checks at the end:
// { body, keys, tags, seq, result }.
const sent = [];

// ---------------------------------------------------------------------------------------------
// helpers

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = ms => new Promise(r => setTimeout(r, ms));

/** `promise`, or a failure naming `what` if it has not settled within WAIT_MS. */
function within(what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${WAIT_MS} ms`)), WAIT_MS);
  });
  return Promise.race([ promise, timeout ]).finally(() => clearTimeout(timer));
}

function httpGet(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: 2000 }, res => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', d => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('timeout', () => req.destroy(new Error('GET timed out')));
    req.on('error', reject);
  });
}

/** Samples of the Prometheus text, name (with its labels, if any) -> number. */
async function scrape() {
  const { status, body } = await httpGet(server.metricsUrl);
  assert.equal(status, 200, `GET /metrics answered ${status}`);
  const out = {};
  for (const line of body.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)$/.exec(line.trim());
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

/** The highest offset a slave acknowledged, from a scrape (-1: no slave). */
const slaveAcked = m => Math.max(-1, ...Object.keys(m)
  .filter(k => k.startsWith('rmq_ha_slave_acked_offset{')).map(k => m[k]));

const GAUGES = [ 'rmq_producer_groups', 'rmq_consumer_groups', 'rmq_client_channels' ];
const show = m => GAUGES.map(g => `${g}=${m[g]}`).join(' ');

/** Polls /metrics until `pred` holds (the figures are read at each scrape). */
async function waitMetrics(what, pred) {
  const deadline = Date.now() + WAIT_MS;
  let last = {};
  for (;;) {
    try {
      last = await scrape();
      if (GAUGES.every(g => g in last) && pred(last)) return last;
    } catch (err) {
      last = { error: err.message };
    }
    if (Date.now() > deadline) {
      assert.fail(`timed out waiting for ${what}; last /metrics: ${JSON.stringify(last)}\n` +
        `server stderr:\n${server.stderr()}`);
    }
    await sleep(50);
  }
}

/** Records every request ali-ons's MQClientAPI#invoke sends and the response it decodes. */
function spyInvoke(api) {
  const exchanges = [];
  const invoke = api.invoke.bind(api);
  api.invoke = async (addr, request, timeout) => {
    const response = await invoke(addr, request, timeout);
    exchanges.push({ addr, request, response });
    return response;
  };
  return exchanges;
}

function assertAnswered(exchange, requestCode, responseCode) {
  const { request, response } = exchange;
  assert.equal(request.code, requestCode);
  assert.equal(response.code, responseCode, `code ${requestCode} answered ${response.code} (${response.remark})`);
  assert.ok(response.isResponseType, 'response flag bit 0 set');
  assert.equal(response.opaque, request.opaque, 'the response echoes the request opaque');
}

/** Builds a HeartbeatData exactly as ali-ons's MQClient#_prepareHeartbeatData does, from
 *  consumer subscriptions built by ali-ons's MQPushConsumer#buildSubscriptionData. */
function aliOnsHeartbeat(clientId, producerGroup, consumerGroup, topic, tags) {
  const subscriptionData = MQPushConsumer.prototype.buildSubscriptionData.call(null, consumerGroup, topic, tags);
  const consumer = {
    consumerGroup,
    consumeType: ConsumeType.CONSUME_PASSIVELY,
    messageModel: MessageModel.CLUSTERING,
    consumeFromWhere: ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET,
    unitMode: false,
    subscriptions: new Map([[ topic, { subscriptionData } ]]),
  };
  return MQClient.prototype._prepareHeartbeatData.call({
    clientId,
    _consumerTable: new Map([[ consumerGroup, consumer ]]),
    _producerTable: new Map([[ producerGroup, {} ]]),
  });
}

// Length-prefixed remoting frames out of a byte stream.
function splitFrames(buf) {
  const frames = [];
  let off = 0;
  while (buf.length - off >= 4) {
    const len = buf.readInt32BE(off);
    if (buf.length - off - 4 < len) break;
    const frame = buf.subarray(off, off + 4 + len);
    const word = frame.readUInt32BE(4);
    const headerLen = word & 0x00ffffff;
    frames.push({
      raw: frame,
      serializeType: word >>> 24,
      header: JSON.parse(frame.subarray(8, 8 + headerLen).toString('utf8')),
      rawHeader: frame.subarray(8, 8 + headerLen).toString('utf8'),
      body: frame.subarray(8 + headerLen),
    });
    off += 4 + len;
  }
  return { frames, rest: buf.subarray(off) };
}

/** A JSON remoting response frame (used only by the stub name server). */
function responseFrame(opaque, code, body) {
  const header = Buffer.from(JSON.stringify({
    code, flag: 1, language: 'JAVA', opaque, serializeTypeCurrentRPC: 'JSON', version: 0,
  }));
  const b = body ? Buffer.from(body) : Buffer.alloc(0);
  const out = Buffer.alloc(8 + header.length + b.length);
  out.writeInt32BE(4 + header.length + b.length, 0);
  out.writeInt32BE(header.length, 4);
  header.copy(out, 8);
  b.copy(out, 8 + header.length);
  return out;
}

/** The minimal name server ali-ons needs: GET_ROUTEINTO_BY_TOPIC answers a route whose only
 *  broker is `brokerAddr`. The topics in `writable` get 4 read|write queues (perm 6) for a
 *  producer to send to; any other topic's queues are write-only (perm 2) so a consumer finds
 *  nothing to rebalance or pull, and talks to the broker only through HEART_BEAT and
 *  UNREGISTER_CLIENT. */
function startStubNameServer(brokerAddr, writable = new Set()) {
  const topics = [];
  const sockets = new Set();
  const srv = net.createServer(sock => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    let pending = Buffer.alloc(0);
    sock.on('data', chunk => {
      const { frames, rest } = splitFrames(Buffer.concat([ pending, chunk ]));
      pending = rest;
      for (const f of frames) {
        if (f.header.code === RequestCode.GET_ROUTEINTO_BY_TOPIC) {
          const topic = f.header.extFields && f.header.extFields.topic;
          topics.push(topic);
          const route = {
            brokerDatas: [{ brokerName: 'interop-broker', brokerAddrs: { 0: brokerAddr } }],
            filterServerTable: {},
            queueDatas: [{
              brokerName: 'interop-broker', perm: writable.has(topic) ? 6 : 2,
              readQueueNums: 4, writeQueueNums: 4, topicSynFlag: 0,
            }],
          };
          sock.write(responseFrame(f.header.opaque, ResponseCode.SUCCESS, JSON.stringify(route)));
        } else {
          sock.write(responseFrame(f.header.opaque, 3, null));
        }
      }
    });
  });
  return new Promise(resolve => srv.listen(0, '127.0.0.1', () => resolve({
    addr: `127.0.0.1:${srv.address().port}`,
    topics,
    close: () => new Promise(r => { for (const s of sockets) s.destroy(); srv.close(() => r()); }),
  })));
}

/** A pass-through TCP tap: records both directions between ali-ons and `serve`. */
function startTap(targetPort) {
  const up = [];
  const down = [];
  const sockets = new Set();
  const srv = net.createServer(client => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    client.on('data', d => { up.push(d); upstream.write(d); });
    upstream.on('data', d => { down.push(d); client.write(d); });
    client.on('close', () => upstream.end());
    upstream.on('close', () => client.end());
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  return new Promise(resolve => srv.listen(0, '127.0.0.1', () => resolve({
    addr: `127.0.0.1:${srv.address().port}`,
    up: () => Buffer.concat(up),
    down: () => Buffer.concat(down),
    close: () => new Promise(r => { for (const s of sockets) s.destroy(); srv.close(() => r()); }),
  })));
}

// ---------------------------------------------------------------------------------------------
// the commit log

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/** CRC-32 (zlib's), as upstream stores a body's: with the sign bit cleared. */
function bodyCrc(buf) {
  let c = 0xFFFFFFFF;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >>> 8);
  return ((c ^ 0xFFFFFFFF) >>> 0) & 0x7FFFFFFF;
}

/** The segment files of a store (named by their 20-digit start offset), in order. */
const segments = dir => fs.readdirSync(dir).filter(f => /^\d{20}$/.test(f)).sort();

/** Upstream's message records in the commit log of `dir`, in log order. A record of any other
 *  MAGIC (a BLANK, or this store's own) is skipped by its TOTALSIZE. */
function readMessages(dir) {
  const out = [];
  for (const name of segments(dir)) {
    const base = Number(name);
    const data = fs.readFileSync(path.join(dir, name));
    let pos = 0;
    while (pos + 8 <= data.length) {
      const total = data.readInt32BE(pos);
      assert.ok(total >= 8 && total <= data.length - pos,
        `segment ${name}: record at ${pos} has TOTALSIZE ${total}, ${data.length - pos} bytes left`);
      if (data.readUInt32BE(pos + 4) === MESSAGE_MAGIC) {
        out.push(parseMessage(data.subarray(pos, pos + total), base + pos));
      }
      pos += total;
    }
    assert.equal(pos, data.length, `segment ${name}: ${data.length - pos} trailing bytes`);
  }
  return out;
}

/** One message record (upstream's layout, big-endian) found at log offset `at`. */
function parseMessage(rec, at) {
  let i = 8;
  const take = n => rec.subarray((i += n) - n, i);
  const bodyCrc = take(4).readInt32BE();
  const queueId = take(4).readInt32BE();
  take(4); // FLAG
  const queueOffset = Number(take(8).readBigInt64BE());
  const phys = Number(take(8).readBigInt64BE());
  const sysFlag = take(4).readInt32BE();
  take(8); // BORNTIMESTAMP
  take(sysFlag & 0x10 ? 20 : 8); // BORNHOST
  take(8); // STORETIMESTAMP
  const storeHost = take(sysFlag & 0x20 ? 20 : 8);
  take(4 + 8); // RECONSUMETIMES, PREPARED TX OFFSET
  const body = take(take(4).readInt32BE());
  const topic = take(take(1)[0]).toString('utf8');
  const rawProps = take(take(2).readUInt16BE()).toString('utf8');
  assert.equal(i, rec.length, `record at ${at}: fields end at ${i} of TOTALSIZE ${rec.length}`);
  const props = Object.fromEntries(rawProps.split('\x02').filter(p => p).map(p => {
    const cut = p.indexOf('\x01');
    return [ p.slice(0, cut), p.slice(cut + 1) ];
  }));
  return { at, phys, queueId, queueOffset, bodyCrc, body, topic, storeHost, rawProps, props };
}

// ---------------------------------------------------------------------------------------------
// the server and its slave

/** Starts `rmq-lifecycle ARGS` and resolves once its stderr matches `ready`. */
async function startProcess(name, args, ready) {
  const child = spawn(BIN, args, {
    env: { ...process.env, RUST_LOG: 'info', NO_COLOR: '1' }, stdio: [ 'ignore', 'ignore', 'pipe' ],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  const started = new Promise((resolve, reject) => {
    child.stderr.on('data', d => {
      stderr += d;
      if (ready.test(stderr)) resolve();
    });
    child.once('exit', (code, signal) => reject(new Error(`${name} exited early (code ${code}, signal ${signal}):\n${stderr}`)));
    setTimeout(() => reject(new Error(`${name} did not log ${ready} in ${WAIT_MS} ms:\n${stderr}`)), WAIT_MS).unref();
  });
  const exit = new Promise(resolve => child.once('exit', (code, signal) => resolve({ code, signal })));
  await started;
  return { child, exit, stderr: () => stderr };
}

/** SIGTERM, then exit 0 within 15 s. */
async function stopProcess(name, proc) {
  assert.ok(proc.child.kill('SIGTERM'));
  const timeout = new Promise(r => setTimeout(r, 15_000, { timeout: true }).unref());
  const result = await Promise.race([ proc.exit, timeout ]);
  assert.ok(!result.timeout, `${name} did not exit within 15 s of SIGTERM:\n${proc.stderr()}`);
  assert.deepEqual(result, { code: 0, signal: null }, `${name} exited ${JSON.stringify(result)}:\n${proc.stderr()}`);
}

before(async () => {
  assert.ok(fs.existsSync(BIN), `no server binary at ${BIN} (set RMQ_LIFECYCLE_BIN)`);
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'rmq-interop-ali-ons-'));
  const [ port, haPort, mport ] = [ await freePort(), await freePort(), await freePort() ];
  // Every send waits for one slave (--in-sync-replicas 2).
  const store = path.join(work, 'store');
  server = {
    ...await startProcess('serve', [
      'serve', '--listen', `127.0.0.1:${port}`, '--ha-listen', `127.0.0.1:${haPort}`,
      '--metrics', `127.0.0.1:${mport}`, '--store', store, '--in-sync-replicas', '2',
    ], /serving/),
    addr: `127.0.0.1:${port}`, port, metricsUrl: `http://127.0.0.1:${mport}/metrics`, store,
  };
  await waitMetrics('the first sample', m =>
    m.rmq_producer_groups === 0 && m.rmq_consumer_groups === 0 && m.rmq_client_channels === 0);
  // --listen and --ha-listen are used only if the slave is promoted; free ports all the same.
  const slaveStore = path.join(work, 'slave-store');
  slave = {
    ...await startProcess('slave', [
      'slave', '--master', `127.0.0.1:${haPort}`, '--store', slaveStore,
      '--listen', `127.0.0.1:${await freePort()}`, '--ha-listen', `127.0.0.1:${await freePort()}`,
    ], /replicating/),
    store: slaveStore,
  };
  await waitMetrics('the slave connected', m => m.rmq_ha_connections === 1 && slaveAcked(m) >= 0);
});

after(() => {
  // Only if the SIGTERM test did not get to run or a process ignored it.
  for (const proc of [ slave, server ]) {
    if (proc && proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill('SIGKILL');
  }
  if (!work) return;
  if (process.env.RMQ_INTEROP_KEEP) {
    console.log(`# stores kept in ${work}`);
  } else {
    fs.rmSync(work, { recursive: true, force: true });
  }
});

/** Options of an ali-ons Producer or Consumer that asks the stub name server at `nameSrv`. */
function clientOptions(nameSrv) {
  return {
    nameSrv,
    httpclient: {}, // required by the constructor, unused with nameSrv
    logger: quietLogger,
    // Short periods so that ali-ons's scheduled tasks (which sleep between runs) end soon after
    // close and let the process exit; the periodic heartbeats they send are harmless.
    heartbeatBrokerInterval: 1000,
    pollNameServerInteval: 1000,
    rebalanceInterval: 1000,
    persistConsumerOffsetInterval: 1000,
  };
}

// ---------------------------------------------------------------------------------------------
// the tests

test('MQClientAPI: HEART_BEAT, GET_CONSUMER_LIST_BY_GROUP, NOTIFY_CONSUMER_IDS_CHANGED and UNREGISTER_CLIENT straight to the broker', async t => {
  // nameSrv is required by the constructor but never contacted by these calls.
  const api = new MQClientAPI({ nameSrv: '127.0.0.1:1', httpclient: {}, logger: quietLogger, responseTimeout: 5000 });
  await api.ready();
  const exchanges = spyInvoke(api);
  const clientId = '127.0.0.1@ali-ons-api';
  const hb = aliOnsHeartbeat(clientId, 'ALI_ONS_PG', 'ALI_ONS_CG', 'ALI_ONS_TOPIC', 'TagA || TagB');
  t.diagnostic(`HeartbeatData: ${JSON.stringify(hb)}`);
  try {
    await api.sendHearbeat(server.addr, hb, 5000); // throws unless SUCCESS
    assertAnswered(exchanges[0], RequestCode.HEART_BEAT, ResponseCode.SUCCESS);
    assert.equal(exchanges[0].response.extFields.IS_SUPPORT_HEART_BEAT_V2, 'true');
    let m = await waitMetrics('1 producer and 1 consumer group', m =>
      m.rmq_producer_groups === 1 && m.rmq_consumer_groups === 1 && m.rmq_client_channels >= 1);
    t.diagnostic(`after HEART_BEAT: ${show(m)}`);

    // A repeated heartbeat changes nothing.
    await api.sendHearbeat(server.addr, hb, 5000);
    assertAnswered(exchanges[1], RequestCode.HEART_BEAT, ResponseCode.SUCCESS);

    // GET_CONSUMER_LIST_BY_GROUP (38), as a push consumer's rebalance calls it.
    assert.deepEqual(await api.getConsumerIdListByGroup(server.addr, 'ALI_ONS_CG', 5000), [ clientId ]);

    // A second client joins the group: the first hears NOTIFY_CONSUMER_IDS_CHANGED (40), a
    // oneway request its own channel decodes and emits; then 38 lists both. Its close is
    // announced too.
    const notices = [];
    api.on('request', request => notices.push(request.data || request));
    const noticeFor = async (n, what) => {
      const deadline = Date.now() + WAIT_MS;
      while (notices.length < n) {
        assert.ok(Date.now() < deadline, `no NOTIFY_CONSUMER_IDS_CHANGED for ${what} within ${WAIT_MS} ms`);
        await sleep(20);
      }
      const notice = notices[n - 1];
      assert.equal(notice.code, RequestCode.NOTIFY_CONSUMER_IDS_CHANGED);
      assert.equal(notice.extFields.consumerGroup, 'ALI_ONS_CG');
    };
    const other = new MQClientAPI({ nameSrv: '127.0.0.1:1', httpclient: {}, logger: quietLogger, responseTimeout: 5000 });
    await other.ready();
    const otherId = '127.0.0.1@ali-ons-api-2';
    try {
      await other.sendHearbeat(server.addr, aliOnsHeartbeat(otherId, 'ALI_ONS_PG2', 'ALI_ONS_CG', 'ALI_ONS_TOPIC', '*'), 5000);
      await noticeFor(1, 'the join');
      const ids = await api.getConsumerIdListByGroup(server.addr, 'ALI_ONS_CG', 5000);
      assert.deepEqual([ ...ids ].sort(), [ clientId, otherId ].sort());
    } finally {
      await other.close();
    }
    await noticeFor(2, 'the close');
    assert.deepEqual(await api.getConsumerIdListByGroup(server.addr, 'ALI_ONS_CG', 5000), [ clientId ]);
    t.diagnostic(`NOTIFY_CONSUMER_IDS_CHANGED received: ${notices.length}`);

    await api.unregisterClient(server.addr, clientId, 'ALI_ONS_PG', null, 5000); // throws unless SUCCESS
    assertAnswered(exchanges.at(-1), RequestCode.UNREGISTER_CLIENT, ResponseCode.SUCCESS);
    assert.deepEqual(exchanges.at(-1).request.extFields, { clientID: clientId, producerGroup: 'ALI_ONS_PG' });
    m = await waitMetrics('the producer group gone', m =>
      m.rmq_producer_groups === 0 && m.rmq_consumer_groups === 1 && m.rmq_client_channels >= 1);
    t.diagnostic(`after UNREGISTER_CLIENT(producerGroup): ${show(m)}`);

    await api.unregisterClient(server.addr, clientId, null, 'ALI_ONS_CG', 5000);
    assertAnswered(exchanges.at(-1), RequestCode.UNREGISTER_CLIENT, ResponseCode.SUCCESS);
    m = await waitMetrics('both groups gone', m =>
      m.rmq_producer_groups === 0 && m.rmq_consumer_groups === 0 && m.rmq_client_channels >= 1);
    t.diagnostic(`after UNREGISTER_CLIENT(consumerGroup), connection open: ${show(m)}`);
  } finally {
    await api.close();
  }
  const m = await waitMetrics('the channel closed', m =>
    m.rmq_producer_groups === 0 && m.rmq_consumer_groups === 0 && m.rmq_client_channels === 0);
  t.diagnostic(`after close: ${show(m)}`);
});

test('MQClientAPI wire format through a tap: what ali-ons sends and what it accepts', async t => {
  const tap = await startTap(server.port);
  const api = new MQClientAPI({ nameSrv: '127.0.0.1:1', httpclient: {}, logger: quietLogger, responseTimeout: 5000 });
  await api.ready();
  const clientId = '127.0.0.1@ali-ons-wire';
  const hb = aliOnsHeartbeat(clientId, 'WIRE_PG', 'WIRE_CG', 'WIRE_TOPIC', '*');
  try {
    await api.sendHearbeat(tap.addr, hb, 5000);
    await waitMetrics('the wire client\'s groups', m => m.rmq_producer_groups === 1 && m.rmq_consumer_groups === 1);
    await api.unregisterClient(tap.addr, clientId, 'WIRE_PG', 'WIRE_CG', 5000);
    await waitMetrics('the wire client\'s groups gone', m => m.rmq_producer_groups === 0 && m.rmq_consumer_groups === 0);
  } finally {
    await api.close();
  }
  await waitMetrics('the channel closed', m => m.rmq_client_channels === 0);
  await tap.close();

  const up = splitFrames(tap.up());
  const down = splitFrames(tap.down());
  assert.equal(up.rest.length, 0, 'no partial request frame');
  assert.equal(down.rest.length, 0, 'no partial response frame');
  assert.equal(up.frames.length, 2);
  // Down: the two responses, and the broker's own NOTIFY_CONSUMER_IDS_CHANGED for the join.
  const responses = down.frames.filter(f => (f.header.flag & 1) === 1);
  const notices = down.frames.filter(f => (f.header.flag & 1) === 0);
  assert.equal(responses.length, 2);
  assert.equal(notices.length, 1, 'one notice: the join (the unregister empties the group)');
  const [ hbReq, unregReq ] = up.frames;
  const [ hbResp, unregResp ] = responses;
  const [ notice ] = notices;
  t.diagnostic(`NOTIFY_CONSUMER_IDS_CHANGED header: ${notice.rawHeader}`);
  assert.equal(notice.header.code, 40);
  assert.equal(notice.header.flag, 2, 'oneway');
  assert.deepEqual(notice.header.extFields, { consumerGroup: 'WIRE_CG' });
  assert.equal(notice.body.length, 0);
  t.diagnostic(`HEART_BEAT request head (hex): ${hbReq.raw.subarray(0, 8).toString('hex')} header: ${hbReq.rawHeader}`);
  t.diagnostic(`HEART_BEAT body: ${hbReq.body.toString('utf8')}`);
  t.diagnostic(`HEART_BEAT response head (hex): ${hbResp.raw.subarray(0, 8).toString('hex')} header: ${hbResp.rawHeader}`);
  t.diagnostic(`UNREGISTER_CLIENT request header: ${unregReq.rawHeader}`);
  t.diagnostic(`UNREGISTER_CLIENT response header: ${unregResp.rawHeader}`);

  // What ali-ons writes: JSON header (serialize type 0), language JAVA, version 121, flag 0,
  // extFields always present, no serializeTypeCurrentRPC; the body is JSON.stringify(HeartbeatData).
  for (const req of up.frames) {
    assert.equal(req.serializeType, 0);
    assert.equal(req.header.language, 'JAVA');
    assert.equal(req.header.version, 121);
    assert.equal(req.header.flag, 0);
    assert.equal('serializeTypeCurrentRPC' in req.header, false);
  }
  assert.equal(hbReq.header.code, 34);
  assert.deepEqual(hbReq.header.extFields, {});
  assert.deepEqual(JSON.parse(hbReq.body.toString('utf8')), hb);
  assert.equal(unregReq.header.code, 35);
  assert.deepEqual(unregReq.header.extFields, { clientID: clientId, producerGroup: 'WIRE_PG', consumerGroup: 'WIRE_CG' });
  assert.equal(unregReq.body.length, 0);

  // What serve answers: JSON (as asked), SUCCESS, response flag, the opaque echoed, no body.
  for (const [ req, resp ] of [[ hbReq, hbResp ], [ unregReq, unregResp ]]) {
    assert.equal(resp.serializeType, 0);
    assert.equal(resp.header.code, 0);
    assert.equal(resp.header.flag, 1);
    assert.equal(resp.header.opaque, req.header.opaque);
    assert.equal(resp.body.length, 0);
  }
  assert.equal(hbResp.header.extFields.IS_SUPPORT_HEART_BEAT_V2, 'true');
});

test('Producer and push Consumer: ali-ons builds the heartbeat and unregisters on close', async t => {
  const ns = await startStubNameServer(server.addr);
  const errors = [];
  const common = clientOptions(ns.addr);
  const producer = new MQProducer({ ...common, producerGroup: 'ALI_ONS_LIFECYCLE_PG' });
  producer.on('error', err => errors.push(err));
  await producer.ready();
  const consumer = new MQPushConsumer({ ...common, consumerGroup: 'ALI_ONS_LIFECYCLE_CG' });
  consumer.on('error', err => errors.push(err));
  consumer.subscribe('ALI_ONS_LIFECYCLE_TOPIC', '*', async () => {});
  try {
    await consumer.ready();
    // The producer and the consumer share one MQClient (same clientId), so one connection and one
    // heartbeat naming both groups; ali-ons's own inner CLIENT_INNER_PRODUCER knows no broker.
    assert.equal(producer._mqClient, consumer._mqClient);
    let m = await waitMetrics('the lifecycle groups', m =>
      m.rmq_producer_groups === 1 && m.rmq_consumer_groups === 1 && m.rmq_client_channels >= 1);
    t.diagnostic(`after ready + subscribe: ${show(m)}; name server asked for ${JSON.stringify([ ...new Set(ns.topics) ])}`);
    assert.ok(ns.topics.includes('ALI_ONS_LIFECYCLE_TOPIC'));

    // A second push consumer of the group (its own client id, so its own connection): the first
    // is told (NOTIFY_CONSUMER_IDS_CHANGED) and GET_CONSUMER_LIST_BY_GROUP lists both.
    const notices = [];
    const secondErrors = [];
    consumer._mqClient.on('request', request => notices.push(request.data || request));
    const second = new MQPushConsumer({ ...common, consumerGroup: 'ALI_ONS_LIFECYCLE_CG', instanceName: 'interop-second' });
    // Its own name-server poll may be cut short by its close; that is between it and the stub.
    second.on('error', err => secondErrors.push(err.message));
    second.subscribe('ALI_ONS_LIFECYCLE_TOPIC', '*', async () => {});
    try {
      await second.ready();
      assert.notEqual(second._mqClient, consumer._mqClient);
      const deadline = Date.now() + WAIT_MS;
      while (!notices.some(r => r.code === RequestCode.NOTIFY_CONSUMER_IDS_CHANGED &&
                                r.extFields.consumerGroup === 'ALI_ONS_LIFECYCLE_CG')) {
        assert.ok(Date.now() < deadline, `the first consumer was not notified within ${WAIT_MS} ms: ${JSON.stringify(notices.map(r => [ r.code, r.extFields ]))}`);
        await sleep(20);
      }
      const ids = await consumer._mqClient.getConsumerIdListByGroup(server.addr, 'ALI_ONS_LIFECYCLE_CG', 5000);
      assert.deepEqual([ ...ids ].sort(), [ consumer._mqClient.clientId, second._mqClient.clientId ].sort());
      t.diagnostic(`second consumer: notices ${notices.length}, consumer ids ${JSON.stringify(ids)}`);
    } finally {
      await second.close();
    }
    assert.deepEqual(secondErrors.filter(e => e.includes(server.addr)), [], 'no error from the broker');

    await producer.close(); // UNREGISTER_CLIENT(producerGroup); the client stays up for the consumer
    m = await waitMetrics('the producer group gone', m =>
      m.rmq_producer_groups === 0 && m.rmq_consumer_groups === 1 && m.rmq_client_channels >= 1);
    t.diagnostic(`after producer.close(): ${show(m)}`);

    await consumer.close(); // UNREGISTER_CLIENT(consumerGroup), then the client closes its channel
    m = await waitMetrics('everything gone', m =>
      m.rmq_producer_groups === 0 && m.rmq_consumer_groups === 0 && m.rmq_client_channels === 0);
    t.diagnostic(`after consumer.close(): ${show(m)}`);
  } finally {
    // ali-ons's process-wide inner producer (CLIENT_INNER_PRODUCER) keeps timers until closed.
    if (MQProducer.defaultProducer) await MQProducer.defaultProducer.close();
    await ns.close();
  }
  assert.deepEqual(errors.map(e => e.message), [], 'no client errors');
});

test(`Producer: ${SENDS} sends, each SEND_OK once the slave has it, queue offsets counting per queue`, async t => {
  const ns = await startStubNameServer(server.addr, new Set([ SEND_TOPIC ]));
  const errors = [];
  const hadDefault = MQProducer.defaultProducer;
  const producer = new MQProducer({ ...clientOptions(ns.addr), producerGroup: 'ALI_ONS_SEND_PG', instanceName: 'interop-send' });
  producer.on('error', err => errors.push(err));
  try {
    await within('producer.ready()', producer.ready());
    const nextOffset = new Map(); // queue id -> the queue offset its next send must get
    for (let seq = 0; seq < SENDS; seq++) {
      const body = `ali-ons-interop-body-${seq}`;
      const keys = `ali-ons-key-${seq}`;
      const tags = seq % 2 ? 'TagB' : 'TagA';
      const msg = new Message(SEND_TOPIC, tags, body);
      msg.keys = [ keys ];
      msg.properties['interop-seq'] = String(seq);
      // ali-ons itself gives up on a send after sendMsgTimeout (3 s) plus a second for retries.
      const result = await within(`send ${seq}`, producer.send(msg));
      const seen = JSON.stringify(result);
      assert.equal(result.sendStatus, SendStatus.SEND_OK, `send ${seq}: ${seen}`);
      // ali-ons's msgId is the response header's msgId: the offset message id (store host, offset).
      assert.match(result.msgId, /^[0-9A-F]{32}$/, `send ${seq}: ${seen}`);
      assert.equal(result.messageQueue.topic, SEND_TOPIC, `send ${seq}: ${seen}`);
      const queueId = Number(result.messageQueue.queueId); // a header field: a string on the wire
      assert.ok(Number.isInteger(queueId) && queueId >= 0 && queueId < 4, `send ${seq}: ${seen}`);
      const expected = nextOffset.get(queueId) || 0;
      assert.equal(result.queueOffset, expected, `send ${seq}: queue ${queueId} should be at ${expected}: ${seen}`);
      nextOffset.set(queueId, expected + 1);
      // In sync: the answer came after the slave acknowledged the log's new end.
      const m = await scrape();
      assert.ok(slaveAcked(m) >= m.rmq_commitlog_max_offset,
        `send ${seq} answered with the slave at ${slaveAcked(m)} of ${m.rmq_commitlog_max_offset}`);
      sent.push({ body: Buffer.from(body), keys, tags, seq, result });
    }
    assert.equal(new Set(sent.map(s => s.result.msgId)).size, SENDS, `msgIds repeat: ${sent.map(s => s.result.msgId)}`);
    t.diagnostic(`first result: ${JSON.stringify(sent[0].result)}`);
    t.diagnostic(`sends per queue: ${JSON.stringify(Object.fromEntries([ ...nextOffset ].sort()))}`);
  } finally {
    await within('producer.close()', producer.close());
    // ali-ons's inner producer, if this test started it (it did not when an earlier test had).
    if (MQProducer.defaultProducer && MQProducer.defaultProducer !== hadDefault) {
      await within('the inner producer\'s close()', MQProducer.defaultProducer.close());
    }
    await ns.close();
  }
  const m = await waitMetrics('the producer gone', m =>
    m.rmq_producer_groups === 0 && m.rmq_client_channels === 0);
  t.diagnostic(`after producer.close(): ${show(m)}`);
  assert.deepEqual(errors.map(e => e.message), [], 'no client errors');
});

test('SIGTERM: once the slave caught up, the slave and then serve exit 0', async t => {
  let m = await waitMetrics('an idle server', m =>
    m.rmq_producer_groups === 0 && m.rmq_consumer_groups === 0 && m.rmq_client_channels === 0);
  t.diagnostic(`before SIGTERM: ${show(m)}`);
  m = await waitMetrics('the slave to acknowledge the whole log', m =>
    m.rmq_ha_connections === 1 && slaveAcked(m) >= m.rmq_commitlog_max_offset);
  t.diagnostic(`commit log ${m.rmq_commitlog_max_offset} bytes, slave acknowledged ${slaveAcked(m)}`);
  // The slave first: the master then has nothing left to send it.
  await stopProcess('slave', slave);
  await stopProcess('serve', server);
  assert.match(server.stderr(), /shutdown complete/);
  for (const [ level, text ] of [ ...new Set(clientLog.map(e => JSON.stringify(e))) ].map(e => JSON.parse(e))) {
    t.diagnostic(`ali-ons ${level}: ${text.split('\n')[0]}`);
  }
});

test('the stores: the slave\'s copy is the master\'s, and the master\'s log holds every send once', async t => {
  assert.ok(server.child.exitCode !== null && slave.child.exitCode !== null, 'both processes stopped first');
  const names = segments(server.store);
  assert.ok(names.length > 0, `no segment file in ${server.store}`);
  assert.deepEqual(segments(slave.store), names, 'the slave has the master\'s segment files');
  for (const name of names) {
    const m = fs.readFileSync(path.join(server.store, name));
    const s = fs.readFileSync(path.join(slave.store, name));
    assert.ok(s.length >= m.length, `segment ${name}: slave has ${s.length} bytes, master ${m.length}`);
    if (!s.subarray(0, m.length).equals(m)) {
      let first = 0;
      while (s[first] === m[first]) first++;
      assert.fail(`segment ${name}: slave differs from master at byte ${first} of ${m.length}`);
    }
    t.diagnostic(`segment ${name}: ${m.length} bytes, the slave's equal`);
  }

  assert.equal(sent.length, SENDS, 'the producer test recorded every send');
  const mine = readMessages(server.store).filter(r => r.topic === SEND_TOPIC);
  for (const { body, keys, tags, seq, result } of sent) {
    const found = mine.filter(r => r.body.equals(body));
    assert.equal(found.length, 1, `body ${body} stored ${found.length} times under ${SEND_TOPIC} (records under it: ${mine.length})`);
    const [ r ] = found;
    const what = `body ${body} (record at ${r.at})`;
    assert.equal(r.phys, r.at, `${what}: PHYSICALOFFSET`);
    assert.equal(r.bodyCrc, bodyCrc(body), `${what}: BODYCRC`);
    // The offset message id: STOREHOST's address and port, then the physical offset.
    const offset = Buffer.alloc(8);
    offset.writeBigInt64BE(BigInt(r.phys));
    assert.equal(result.msgId, Buffer.concat([ r.storeHost, offset ]).toString('hex').toUpperCase(), `${what}: msgId`);
    assert.deepEqual([ r.queueId, r.queueOffset ], [ Number(result.messageQueue.queueId), result.queueOffset ], `${what}: queue and offset`);
    const props = { KEYS: r.props.KEYS, TAGS: r.props.TAGS, 'interop-seq': r.props['interop-seq'] };
    assert.deepEqual(props, { KEYS: keys, TAGS: tags, 'interop-seq': String(seq) },
      `${what}: properties ${JSON.stringify(r.rawProps)}`);
  }
  assert.equal(mine.length, sent.length, `records under ${SEND_TOPIC}: ${mine.map(r => r.body.toString()).join(', ')}`);
  t.diagnostic(`${mine.length} records under ${SEND_TOPIC}, e.g. properties ${JSON.stringify(mine[0].rawProps)}`);
});
