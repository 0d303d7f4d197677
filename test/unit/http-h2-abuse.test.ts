import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { listen, startProxy } from './http-fixture';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const ENHANCE_YOUR_CALM = 0xb;

/** One HTTP/2 frame (RFC 9113 4.1). */
function h2frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}
// :method GET, :path /, :scheme http (static table), :authority "a" (literal, not indexed).
const GET_BLOCK = Buffer.from([0x82, 0x84, 0x86, 0x01, 0x01, 0x61]);
const headers = (id: number) => h2frame(0x1, 0x4 | 0x1, id, GET_BLOCK);
const rst = (id: number) => h2frame(0x3, 0, id, Buffer.from([0, 0, 0, 8]));
const settings = () => h2frame(0x4, 0, 0, Buffer.from([0, 2, 0, 0, 0, 0]));

/** A raw client: writes what it is told, reports the GOAWAY code it gets and when the socket closes. */
function rawH2(port: number) {
  const s = net.connect(port, '127.0.0.1');
  let buf = Buffer.alloc(0);
  let goaway: number | undefined;
  let closed = false;
  s.on('error', () => undefined);
  s.on('close', () => { closed = true; });
  s.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 9) {
      const len = buf.readUIntBE(0, 3);
      if (buf.length < 9 + len) break;
      if (buf[3] === 0x7) goaway ??= buf.readUInt32BE(9 + 4);
      buf = buf.subarray(9 + len);
    }
  });
  s.write(Buffer.concat([PREFACE, h2frame(0x4, 0, 0)]));
  return { socket: s, goaway: () => goaway, closed: () => closed };
}

/** An application that answers every stream at once. */
async function app() {
  const server = http2.createServer();
  let streams = 0;
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => { sessions.add(s); s.on('close', () => sessions.delete(s)); s.on('error', () => undefined); });
  server.on('stream', (stream) => { streams++; stream.on('error', () => undefined); stream.respond({ ':status': 200 }); stream.end('ok'); });
  const port = await listen(server as unknown as net.Server);
  return { port, streams: () => streams, close: () => { for (const s of sessions) s.destroy(); return new Promise<void>((r) => server.close(() => r())); } };
}

/** A well-behaved client on its own connection: sequential GETs until `stop()` says so; counts answers. */
function goodClient(port: number, stop: () => boolean) {
  const client = http2.connect(`http://127.0.0.1:${port}`);
  client.on('error', () => undefined);
  const counts = { ok: 0, failed: 0 };
  const done = (async () => {
    for (let i = 0; i < 10_000 && !stop(); i++) {
      const status = await new Promise<number>((resolve) => {
        const req = client.request({ ':path': '/good' });
        req.on('response', (h) => resolve(Number(h[':status'])));
        req.on('error', () => resolve(0));
        req.resume();
      });
      if (status === 200) counts.ok++; else counts.failed++;
    }
    client.close();
  })();
  return { counts, done };
}

async function flood(name: string, batch: (first: number) => Buffer) {
  const a = await app();
  const proxy = await startProxy({ appPort: a.port, protocol: 'http2', limits: { resetBurst: 200, resetsPerSecond: 100, settingsBurst: 50, settingsPerSecond: 10 } });
  const abuse: unknown[] = [];
  const onAbuse = (m: unknown) => abuse.push(m);
  subscribe('weft:http:abuse', onAbuse);
  try {
    let floodOver = false;
    const good = goodClient(proxy.port, () => floodOver);
    for (let i = 0; i < 10_000 && good.counts.ok === 0; i++) await tick();
    const attacker = rawH2(proxy.port);
    let sent = 0;
    let id = 1;
    let answeredDuringFlood = 0;
    // Bounded: at most 100 batches of 100; the proxy is expected to end it much sooner. After each
    // batch the well-behaved client must get an answer before the next one is sent.
    for (let b = 0; b < 100 && !attacker.closed() && attacker.goaway() === undefined; b++) {
      attacker.socket.write(batch(id));
      id += 200;
      sent += 100;
      const before = good.counts.ok;
      for (let i = 0; i < 10_000 && good.counts.ok === before; i++) await tick();
      if (good.counts.ok > before && attacker.goaway() === undefined) answeredDuringFlood++;
    }
    for (let i = 0; i < 1000 && !attacker.closed(); i++) await tick();
    const duringFlood = answeredDuringFlood;
    floodOver = true;
    await good.done;
    return { goaway: attacker.goaway(), closed: attacker.closed(), sent, duringFlood, good: good.counts, abuse, appStreams: a.streams() - good.counts.ok, name };
  } finally {
    unsubscribe('weft:http:abuse', onAbuse);
    await proxy.close();
    await a.close();
  }
}

test('HTTP/2 rapid reset (HEADERS then RST_STREAM, in bulk): the session gets GOAWAY ENHANCE_YOUR_CALM; another connection keeps being answered', async () => {
  const r = await flood('rapid-reset', (first) => {
    const frames: Buffer[] = [];
    for (let i = 0; i < 100; i++) frames.push(headers(first + 2 * i), rst(first + 2 * i));
    return Buffer.concat(frames);
  });
  assert.equal(r.goaway, ENHANCE_YOUR_CALM, `GOAWAY code ${r.goaway}`);
  assert.ok(r.closed, 'the flooding connection is closed');
  assert.ok(r.sent < 10_000, `the flood was cut short (${r.sent} streams sent)`);
  assert.deepEqual(r.abuse.map((m) => (m as { reason: string }).reason), ['rapid-reset']);
  assert.ok(r.duringFlood >= 1, 'the well-behaved client was answered while the flood ran');
  assert.equal(r.good.failed, 0);
});

test('HTTP/2 SETTINGS flood: the session gets GOAWAY ENHANCE_YOUR_CALM; another connection keeps being answered', async () => {
  const r = await flood('settings-flood', () => Buffer.concat(Array.from({ length: 20 }, settings)));
  assert.equal(r.goaway, ENHANCE_YOUR_CALM, `GOAWAY code ${r.goaway}`);
  assert.ok(r.closed);
  assert.ok(r.sent < 10_000);
  assert.deepEqual(r.abuse.map((m) => (m as { reason: string }).reason), ['settings-flood']);
  assert.ok(r.duringFlood >= 1, 'the well-behaved client was answered while the flood ran');
  assert.equal(r.good.failed, 0);
});
