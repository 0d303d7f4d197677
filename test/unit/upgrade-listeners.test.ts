/**
 * The pieces of a hitless upgrade that need no kernel program (docs/upgrade.md): the drain grace
 * flag, the listener slots the reuseport program steers by, shared listeners on loopback, and the
 * drain helper every listener uses (close stops accepting, live connections finish).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { test } from 'node:test';
import { DEFAULT_DRAIN_GRACE_MS, parseDrainGrace } from '../../agent/node/drain-grace';
import { PORTS } from '../../agent/node/ports';
import { listenerSlot, listenShared, sharedListenerFd } from '../../agent/proxy/shared-listener';
import { Drainer } from '../../agent/proxy/drain';
import { serveH1 } from '../../agent/http/h1-server';
import { planProxyCgroups } from '../../agent/redirect/proxy-cgroups';
import * as libc from '../../native/libc';
import { listen, rawExchange, startProxy, statuses } from './http-fixture';

test('--drain-grace: seconds (fractions too) to milliseconds; anything else is refused naming the flag', () => {
  assert.deepEqual(parseDrainGrace('30'), { ok: true, value: 30_000 });
  assert.deepEqual(parseDrainGrace('0'), { ok: true, value: 0 });
  assert.deepEqual(parseDrainGrace('2.5'), { ok: true, value: 2_500 });
  for (const bad of ['', ' ', '-1', 'abc', '3601', 'Infinity', 'NaN']) {
    const r = parseDrainGrace(bad);
    assert.equal(r.ok, false, bad);
    if (!r.ok) assert.match(r.error, /^--drain-grace must be a number of seconds from 0 to 3600/);
  }
  assert.equal(DEFAULT_DRAIN_GRACE_MS, 30_000);
});

test('every agent port has a listener slot of its own per family; other ports are not steered', () => {
  const slots = Object.values(PORTS).flatMap((p) => [listenerSlot(p, 4), listenerSlot(p, 6)]);
  assert.ok(slots.every((s) => s !== undefined && s >= 0 && s < 128), JSON.stringify(slots));
  assert.equal(new Set(slots).size, slots.length, 'no two listeners share a slot');
  assert.equal(listenerSlot(15001, 4), 2);
  assert.equal(listenerSlot(15001, 6), 3);
  for (const p of [0, 80, 14999, 15064, 65535, 15001.5]) assert.equal(listenerSlot(p, 4), undefined, String(p));
});

async function listening(server: net.Server): Promise<number> {
  return (server.address() as net.AddressInfo).port;
}

function ask(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1');
    let got = '';
    c.on('data', (d) => { got += d; });
    c.on('end', () => { resolve(got); c.destroy(); });
    c.on('error', reject);
  });
}

test('two agents listen on one port at once (SO_REUSEPORT): both serve; after one closes, the other serves every new connection', async () => {
  const first = net.createServer((s) => s.end('first'));
  await listenShared(first, { host: '127.0.0.1', port: 0 });
  const port = await listening(first);
  const second = net.createServer((s) => s.end('second'));
  await listenShared(second, { host: '127.0.0.1', port });
  const seen = new Set<string>();
  for (let i = 0; i < 200 && seen.size < 2; i++) seen.add(await ask(port));
  assert.deepEqual([...seen].sort(), ['first', 'second'], 'the kernel spreads new connections over both');
  await new Promise((r) => first.close(r));
  for (let i = 0; i < 20; i++) assert.equal(await ask(port), 'second');
  await new Promise((r) => second.close(r));
});

test('a port held without SO_REUSEPORT is refused with the address and what to check', async () => {
  const plain = net.createServer();
  await new Promise<void>((r) => plain.listen({ host: '127.0.0.1', port: 0 }, r));
  const port = await listening(plain);
  try {
    assert.throws(() => sharedListenerFd({ host: '127.0.0.1', port }), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'EADDRINUSE');
      assert.match(e.message, new RegExp(`^listener on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE.*without SO_REUSEPORT`));
      return true;
    });
  } finally {
    await new Promise((r) => plain.close(r));
  }
  const fd = sharedListenerFd({ host: '127.0.0.1', port: 0 });
  libc.close(fd);
});

test('drain: close() stops accepting at once, an established connection keeps working and ends on its own before the grace', async () => {
  const server = net.createServer();
  const drainer = new Drainer([server]);
  server.on('connection', (s) => { drainer.track(s); s.on('data', (d) => s.write(d)); s.on('end', () => s.end()); });
  await listenShared(server, { host: '127.0.0.1', port: 0 });
  const port = await listening(server);
  const client = net.connect(port, '127.0.0.1');
  await new Promise((r) => client.once('connect', r));
  for (let i = 0; i < 50 && drainer.connections === 0; i++) await new Promise((r) => setImmediate(r));
  assert.equal(drainer.connections, 1);
  let closed = false;
  const closing = drainer.close(60_000).then(() => { closed = true; });
  await assert.rejects(ask(port), (e: NodeJS.ErrnoException) => e.code === 'ECONNREFUSED', 'no new connection is accepted while draining');
  client.write('still here');
  const echo = await new Promise<string>((r) => client.once('data', (d) => r(String(d))));
  assert.equal(echo, 'still here', 'the established connection is served while draining');
  assert.equal(closed, false, 'the drain waits for it');
  client.end();
  await closing;
  assert.equal(drainer.connections, 0);
});

test('proxy cgroups: a starting agent adds itself and the predecessor its config names, and drops agents that are gone', () => {
  const alive = (pid: number) => pid === 100 || pid === 200;
  // First agent of a node: only itself.
  assert.deepEqual(planProxyCgroups([], 11n, 100, undefined, alive), { put: [{ cgroupId: 11n, pid: 100 }], remove: [] });
  // A successor beside a draining predecessor that registered itself: both stay.
  assert.deepEqual(planProxyCgroups([{ cgroupId: 11n, pid: 100 }], 22n, 200, 11n, alive), { put: [{ cgroupId: 22n, pid: 200 }], remove: [] });
  // The next upgrade: the predecessor's agent is gone (pid 100 dead here), so is its entry.
  assert.deepEqual(planProxyCgroups([{ cgroupId: 11n, pid: 300 }, { cgroupId: 22n, pid: 200 }], 33n, 400, 22n, alive),
    { put: [{ cgroupId: 33n, pid: 400 }], remove: [11n] });
  // Upgrading from an agent without the map: the config's cgroup is kept (pid unknown) for this upgrade, dropped at the next.
  assert.deepEqual(planProxyCgroups([], 22n, 200, 11n, alive), { put: [{ cgroupId: 22n, pid: 200 }, { cgroupId: 11n, pid: 0 }], remove: [] });
  assert.deepEqual(planProxyCgroups([{ cgroupId: 11n, pid: 0 }, { cgroupId: 22n, pid: 200 }], 33n, 400, 22n, alive), { put: [{ cgroupId: 33n, pid: 400 }], remove: [11n] });
  // An agent restarted in the same cgroup (the lab, a container restart) keeps one entry.
  assert.deepEqual(planProxyCgroups([{ cgroupId: 11n, pid: 100 }], 11n, 200, 11n, alive), { put: [{ cgroupId: 11n, pid: 200 }], remove: [] });
});

test('draining: HTTP/1.1 keep-alive clients are told to reconnect (Connection: close after their response), pipelined requests are all answered first', { timeout: 10_000 }, async () => {
  const app = http.createServer((req, res) => { req.resume(); req.on('end', () => res.end(`ok ${req.url}`)); });
  const appPort = await listen(app);
  let draining = false;
  const proxy = await startProxy({ appPort, draining: () => draining });
  try {
    // Not draining: the connection stays open after the answer (the client closes it here).
    const kept = await new Promise<string>((resolve) => {
      const c = net.connect(proxy.port, '127.0.0.1', () => c.write('GET /a HTTP/1.1\r\nHost: x\r\n\r\n'));
      let got = '';
      c.on('data', (d) => { got += d; if (got.includes('ok /a')) { resolve(got); c.destroy(); } });
    });
    assert.doesNotMatch(kept, /connection: close/i);
    draining = true;
    const one = await rawExchange(proxy.port, 'GET /b HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.deepEqual(statuses(one), [200]);
    assert.match(one, /\r\nConnection: close\r\n/i, 'the answer tells the client to close');
    assert.match(one, /ok \/b$/, 'and the connection closed after it (rawExchange reads to the close)');
    const two = await rawExchange(proxy.port, 'GET /c HTTP/1.1\r\nHost: x\r\n\r\nGET /d HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.deepEqual(statuses(two), [200, 200], 'a pipelined request waiting is answered before the close');
    assert.match(two, /ok \/c[\s\S]*Connection: close[\s\S]*ok \/d$/i);
  } finally {
    await proxy.close();
    await new Promise((r) => app.close(r));
  }
});

test('draining: an HTTP/2 session gets GOAWAY after an answer, and the stream it carried completes', { timeout: 10_000 }, async () => {
  const app = http2.createServer((req, res) => { req.resume(); req.on('end', () => res.end(`ok ${req.url}`)); });
  const appPort = await listen(app);
  const proxy = await startProxy({ appPort, protocol: 'http2', draining: () => true });
  const client = http2.connect(`http://127.0.0.1:${proxy.port}`);
  client.on('error', () => undefined);
  try {
    const goaway = new Promise<number>((r) => client.once('goaway', (code) => r(code)));
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = client.request({ ':path': '/h2' });
      let body = '';
      let status = 0;
      req.on('response', (h) => { status = Number(h[':status']); });
      req.setEncoding('utf8').on('data', (d: string) => { body += d; });
      req.on('end', () => resolve({ status, body }));
      req.on('error', reject);
      req.end();
    });
    assert.deepEqual(answer, { status: 200, body: 'ok /h2' });
    assert.equal(await goaway, http2.constants.NGHTTP2_NO_ERROR, 'the client was told to go elsewhere, without an error');
  } finally {
    client.destroy();
    await proxy.close();
    await new Promise((r) => app.close(r));
  }
});

test('draining: the Service path\'s HTTP/1.1 server (h1-server) closes after the answer, pipelined requests answered first', { timeout: 10_000 }, async () => {
  const server = net.createServer((socket) => {
    serveH1(socket, undefined, { headersTimeoutMs: 5_000, idleTimeoutMs: 5_000, maxHeaderBytes: 1024 }, {
      request(req, res) {
        if (!req.bodyless) req.body().resume();
        const body = Buffer.from(`ok ${req.url}`);
        res.writeHead(200, { 'content-length': String(body.length) });
        res.end(body);
      },
      upgrade: (_req, s) => s.destroy(),
      connect: (_req, s) => s.destroy(),
      draining: () => true,
    });
  });
  const port = await listen(server);
  try {
    const one = await rawExchange(port, 'GET /s HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.deepEqual(statuses(one), [200]);
    assert.match(one, /\r\nconnection: close\r\n/i);
    const two = await rawExchange(port, 'GET /p HTTP/1.1\r\nHost: x\r\n\r\nGET /q HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.deepEqual(statuses(two), [200, 200], 'the pipelined request is answered before the close');
  } finally {
    await new Promise((r) => server.close(r));
  }
});
