import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import { CertificateAuthority } from '../../agent/controlplane/ca';
import { generateWorkloadKey } from '../../agent/identity/keys';
import { HbonePool, type ConnectRequest } from '../../agent/tunnel/hbone-pool';
import { HboneServer, type Credentials, type StreamInfo, type StreamRequest, spliceToTarget } from '../../agent/tunnel/hbone-server';
import { sniFor } from '../../agent/tunnel/sni';
import { childTraceparent, parseTraceparent } from '../../agent/tunnel/traceparent';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
const DB = 'spiffe://cluster.local/ns/shop/sa/db';
const LOOPBACK = '127.0.0.1';

const dirs: string[] = [];
const closers: (() => unknown)[] = [];
after(async () => {
  for (const close of closers.reverse()) await close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

let skewMs = 0;
async function openCa(): Promise<CertificateAuthority> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-tunnel-test-'));
  dirs.push(dir);
  const ca = await CertificateAuthority.loadOrCreate({ dataDir: dir, trustDomain: 'cluster.local', clock: () => new Date(Date.now() - skewMs) });
  if (!ca.ok) throw new Error(ca.error);
  return ca.value;
}

async function issue(ca: CertificateAuthority, identity: string, ttlSeconds = 3600): Promise<Credentials> {
  const { keyPem, csrPem } = await generateWorkloadKey(identity);
  const chain = await ca.signWorkloadCsr(csrPem, { identity, ttlSeconds });
  if (!chain.ok) throw new Error(chain.error);
  return { key: keyPem, chain: chain.value };
}

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, LOOPBACK, resolve));
  closers.push(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms); })])
    .finally(() => clearTimeout(timer));
}

/** Everything a stream yields until its end. */
function readAll(s: Duplex): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('error', reject);
  });
}

function waitFor<T>(find: () => T | undefined, what: string, ms = 5000): Promise<T> {
  return withTimeout(new Promise<T>((resolve) => {
    const poll = (): void => {
      const found = find();
      if (found !== undefined) resolve(found);
      else setTimeout(poll, 10);
    };
    poll();
  }), ms, what);
}

let ca: CertificateAuthority;
let web: Credentials;
let server: HboneServer;
let ports: { echo: number; sink: number; early: number; closed: number; denied: number };
const echoed: { first: string; bytes: number; sha256: string; closed: boolean }[] = [];
const lateData: Buffer[] = [];
const streams: StreamInfo[] = [];
const asked: StreamRequest[] = [];

before(async () => {
  ca = await openCa();
  web = await issue(ca, WEB);
  const echo = net.createServer({ allowHalfOpen: true }, (sock) => {
    const record = { first: '', bytes: 0, sha256: '', closed: false };
    echoed.push(record);
    const hash = createHash('sha256');
    sock.on('data', (c: Buffer) => {
      if (record.bytes === 0) record.first = c.subarray(0, 16).toString('latin1');
      record.bytes += c.length;
      hash.update(c);
    });
    sock.once('end', () => { record.sha256 = hash.digest('hex'); });
    sock.once('close', () => { record.closed = true; });
    sock.on('error', () => undefined);
    sock.pipe(sock);
  });
  // Reads to the end, then answers how much it got: data flows back after the client's half-close.
  const sink = net.createServer({ allowHalfOpen: true }, (sock) => {
    let n = 0;
    sock.on('data', (c: Buffer) => { n += c.length; });
    sock.once('end', () => sock.end(`received ${n}`));
  });
  // Speaks first and half-closes at once, then keeps reading: data flows in after the target's half-close.
  const early = net.createServer({ allowHalfOpen: true }, (sock) => {
    sock.end('hello');
    void readAll(sock).then((b) => lateData.push(b));
  });
  const gone = net.createServer();
  const closed = await listen(gone);
  gone.close();
  ports = { echo: await listen(echo), sink: await listen(sink), early: await listen(early), closed, denied: 7 };
  server = await startServer(await issue(ca, DB));
});

async function startServer(identity: Credentials | (() => Credentials), { maxConcurrentStreams, port = 0 }: { maxConcurrentStreams?: number; port?: number } = {}): Promise<HboneServer> {
  const s = await HboneServer.listen({
    host: LOOPBACK,
    port,
    trustBundle: ca.trustBundlePem(),
    identityFor: typeof identity === 'function' ? identity : () => identity,
    authorize: (request) => {
      asked.push(request);
      return request.target.port === ports.denied ? { allow: false, reason: 'no ALLOW policy matches shop/db' } : { allow: true };
    },
    serve: spliceToTarget(({ ip, port }) => new Promise((resolve, reject) => {
      const sock = net.connect({ host: ip, port, allowHalfOpen: true }, () => resolve(sock));
      sock.once('error', reject);
    })),
    onStream: (info) => streams.push(info),
    ...(maxConcurrentStreams === undefined ? {} : { maxConcurrentStreams }),
  });
  closers.push(() => s.close(1000));
  return s;
}

function newPool(): HbonePool {
  const pool = new HbonePool({ timeoutMs: 5000 });
  closers.push(() => pool.destroy());
  return pool;
}

function request(target: number, overrides: Partial<ConnectRequest> = {}): ConnectRequest {
  return {
    sourceIdentity: WEB,
    credentials: web,
    trustBundle: ca.trustBundlePem(),
    nodeAddress: { host: LOOPBACK, port: server.address().port },
    expectedPeerIdentity: DB,
    servername: sniFor(DB),
    target: { ip: LOOPBACK, port: target },
    ...overrides,
  };
}

async function rejection(p: Promise<unknown>, ms = 5000): Promise<Error & { code?: string }> {
  try {
    await withTimeout(p, ms, 'connect');
  } catch (e) {
    return e as Error & { code?: string };
  }
  return assert.fail('expected the connection to be refused');
}

test('64 MiB arrive byte-exact both ways through the tunnel (sha256)', { timeout: 60_000 }, async () => {
  const pool = newPool();
  const tunnel = await pool.connect(request(ports.echo));
  const sent = createHash('sha256');
  const back = createHash('sha256');
  let received = 0;
  tunnel.on('data', (c: Buffer) => { received += c.length; back.update(c); });
  const ended = new Promise<void>((resolve, reject) => { tunnel.once('end', resolve); tunnel.once('error', reject); });
  for (let i = 0; i < 64; i++) {
    const chunk = randomBytes(1 << 20);
    sent.update(chunk);
    if (!tunnel.write(chunk)) await new Promise((resolve) => tunnel.once('drain', resolve));
  }
  tunnel.end();
  await withTimeout(ended, 50_000, 'echo of 64 MiB');
  const expected = sent.digest('hex');
  assert.equal(received, 64 << 20);
  assert.equal(back.digest('hex'), expected);
  const echo = echoed.find((e) => e.bytes === 64 << 20);
  assert.equal(echo?.sha256, expected);
});

test('half-close: the client ends its side and still gets the answer', async () => {
  const tunnel = await newPool().connect(request(ports.sink));
  tunnel.end('x'.repeat(1000));
  assert.equal((await withTimeout(readAll(tunnel), 5000, 'sink answer')).toString(), 'received 1000');
});

test('half-close: the target ends its side and still gets the client\'s data', async () => {
  const tunnel = await newPool().connect(request(ports.early));
  assert.equal((await withTimeout(readAll(tunnel), 5000, 'greeting')).toString(), 'hello');
  tunnel.end('after your end');
  const got = await waitFor(() => lateData.find((b) => b.length > 0), 'late data at the target');
  assert.equal(got.toString(), 'after your end');
});

test('1,000 concurrent streams complete over one pooled session', { timeout: 30_000 }, async () => {
  const pool = newPool();
  const tunnels = await Promise.all(Array.from({ length: 1000 }, () => pool.connect(request(ports.echo))));
  assert.equal(pool.sessionCount, 1);
  const answers = await withTimeout(Promise.all(tunnels.map((t, i) => {
    t.end(`stream ${i}`);
    return readAll(t);
  })), 20_000, '1,000 echoes');
  answers.forEach((a, i) => assert.equal(a.toString(), `stream ${i}`));
  assert.equal(pool.sessionCount, 1);
});

test('a session opens another when the server\'s max concurrent streams are in use', async () => {
  const small = await startServer(await issue(ca, DB), { maxConcurrentStreams: 10 });
  const pool = newPool();
  const tunnels = await Promise.all(Array.from({ length: 25 }, () => pool.connect(request(ports.echo, { nodeAddress: { host: LOOPBACK, port: small.address().port } }))));
  assert.equal(pool.sessionCount, 3);
  for (const t of tunnels) t.destroy();
});

test('close() drains: an open stream finishes after GOAWAY, the pool drops the session and the next connect opens a new one', async () => {
  const draining = await startServer(await issue(ca, DB));
  const port = draining.address().port;
  const pool = newPool();
  const open = await pool.connect(request(ports.sink, { nodeAddress: { host: LOOPBACK, port } }));
  const closed = draining.close(5000);
  await waitFor(() => (pool.sessionCount === 0 ? true : undefined), 'the pool drops the session on GOAWAY');
  open.end('still here');
  assert.equal((await withTimeout(readAll(open), 5000, 'the draining stream')).toString(), 'received 10');
  await withTimeout(closed, 5000, 'close()');
  await startServer(await issue(ca, DB), { port });
  const next = await pool.connect(request(ports.sink, { nodeAddress: { host: LOOPBACK, port } }));
  next.end('ok');
  assert.equal((await withTimeout(readAll(next), 5000, 'the new session')).toString(), 'received 2');
  assert.equal(pool.sessionCount, 1);
});

test('destroy() cuts open streams at once and the pool lets go of the session', async () => {
  const cut = await startServer(await issue(ca, DB));
  const pool = newPool();
  const open = await pool.connect(request(ports.sink, { nodeAddress: { host: LOOPBACK, port: cut.address().port } }));
  const closed = new Promise<void>((resolve) => open.once('close', resolve));
  open.on('error', () => undefined);
  cut.destroy();
  await withTimeout(closed, 2000, 'the stream closing');
  await waitFor(() => (pool.sessionCount === 0 ? true : undefined), 'the pool drops the session', 2000);
});

test('a rotated server certificate is presented to new connections while pooled sessions go on', async () => {
  const CACHE = 'spiffe://cluster.local/ns/shop/sa/cache';
  let current = await issue(ca, DB);
  const rotating = await startServer(() => current);
  const node = { host: LOOPBACK, port: rotating.address().port };
  const old = await newPool().connect(request(ports.sink, { nodeAddress: node }));
  current = await issue(ca, CACHE);
  const fresh = await newPool().connect(request(ports.sink, { nodeAddress: node, expectedPeerIdentity: CACHE, servername: sniFor(CACHE) }));
  old.end('a');
  fresh.end('b');
  assert.deepEqual((await withTimeout(Promise.all([readAll(old), readAll(fresh)]), 5000, 'both answers')).map(String), ['received 1', 'received 1']);
});

test('resetting one stream closes only its own target connection; its neighbours go on', async () => {
  const pool = newPool();
  const [a, b, c] = await Promise.all([1, 2, 3].map(() => pool.connect(request(ports.echo))));
  b!.write('reset-me');
  const reset = await waitFor(() => echoed.find((r) => r.first === 'reset-me'), 'the stream reaches its target');
  (b as http2.ClientHttp2Stream).close(http2.constants.NGHTTP2_CANCEL);
  await waitFor(() => (reset.closed ? true : undefined), 'the reset stream\'s target connection closes');
  a!.end('left');
  c!.end('right');
  assert.deepEqual((await withTimeout(Promise.all([readAll(a!), readAll(c!)]), 5000, 'neighbours')).map(String), ['left', 'right']);
  assert.equal(pool.sessionCount, 1);
});

test('the destination sees the source\'s SPIFFE identity and a valid traceparent', async () => {
  const traceparent = childTraceparent();
  const tunnel = await newPool().connect(request(ports.sink, { traceparent }));
  tunnel.end('who');
  await readAll(tunnel);
  const info = await waitFor(() => streams.find((s) => s.traceparent === traceparent), 'access record');
  assert.equal(info.peerIdentity, WEB);
  assert.deepEqual(info.target, { ip: LOOPBACK, port: ports.sink });
  assert.equal(info.bytesIn, 3);
  assert.equal(info.status, 200);
  assert.ok(parseTraceparent(info.traceparent!).ok);
  assert.equal(asked.find((r) => r.traceparent === traceparent)?.peerIdentity, WEB);
});

test('two source identities on one node get two sessions, each presenting its own certificate', async () => {
  const pool = newPool();
  const api = await issue(ca, API);
  const tunnels = await Promise.all([pool.connect(request(ports.sink)), pool.connect(request(ports.sink, { sourceIdentity: API, credentials: api }))]);
  assert.equal(pool.sessionCount, 2);
  tunnels.forEach((t) => t.end());
  await Promise.all(tunnels.map(readAll));
  await waitFor(() => (streams.some((s) => s.peerIdentity === API) ? true : undefined), 'API\'s stream recorded');
});

test('a client certificate from another CA is refused', async () => {
  const foreign = await issue(await openCa(), WEB);
  const e = await rejection(newPool().connect(request(ports.echo, { credentials: foreign })));
  assert.equal(e.code, 'HBONE_CERT_REJECTED', e.message);
});

test('an expired client certificate is refused', async () => {
  skewMs = 2 * 86_400_000;
  const expired = await issue(ca, WEB, 3600).finally(() => { skewMs = 0; });
  const e = await rejection(newPool().connect(request(ports.echo, { credentials: expired })));
  assert.equal(e.code, 'HBONE_CERT_REJECTED', e.message);
});

test('a node proxy that does not present the expected identity is refused by the client', async () => {
  const e = await rejection(newPool().connect(request(ports.echo, { expectedPeerIdentity: [API, 'spiffe://cluster.local/ns/shop/sa/cache'] })));
  assert.equal(e.code, 'HBONE_BAD_PEER', e.message);
  assert.match(e.message, /presents spiffe:\/\/cluster\.local\/ns\/shop\/sa\/db/);
});

test('a pooled session is not reused for a destination whose identity it does not carry', async () => {
  const pool = newPool();
  const t = await pool.connect(request(ports.sink));
  const e = await rejection(pool.connect(request(ports.sink, { expectedPeerIdentity: API })));
  assert.equal(e.code, 'HBONE_BAD_PEER');
  t.destroy();
});

test('a node proxy whose certificate is from another CA is refused by the client', async () => {
  const imposter = await HboneServer.listen({
    host: LOOPBACK, port: 0, trustBundle: ca.trustBundlePem(), identityFor: () => foreignDb!, authorize: () => ({ allow: true }),
    serve: spliceToTarget(() => Promise.reject(new Error('unused'))),
  });
  closers.push(() => imposter.destroy());
  const e = await rejection(newPool().connect(request(ports.echo, { nodeAddress: { host: LOOPBACK, port: imposter.address().port } })));
  assert.equal(e.code, 'HBONE_BAD_PEER', e.message);
});
let foreignDb: Credentials | undefined;
before(async () => { foreignDb = await issue(await openCa(), DB); });

/** Resolves with what the server sent before it closed the connection (or errored). */
function answerOf(socket: net.Socket): Promise<string> {
  return withTimeout(new Promise((resolve) => {
    let text = '';
    socket.on('data', (c: Buffer) => { text += c.toString('latin1'); });
    socket.once('close', () => resolve(text));
    socket.on('error', () => undefined);
  }), 15_000, 'server closing the connection');
}

test('plaintext HTTP/1 and plain TCP to the port are refused', async () => {
  const port = server.address().port;
  const plain = net.connect(port, LOOPBACK, () => plain.write('hello, is this HBONE?\r\n\r\n'));
  assert.doesNotMatch(await answerOf(plain), /HTTP\/|hello/);
  const status = await withTimeout(new Promise<string>((resolve) => {
    http.get({ host: LOOPBACK, port, path: '/' }, (res) => resolve(String(res.statusCode))).on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  }), 15_000, 'HTTP/1 request');
  assert.ok(['ECONNRESET', 'HPE_INVALID_CONSTANT', 'HPE_INVALID_VERSION'].includes(status) || !/^\d+$/.test(status), status);
});

test('TLS without a client certificate, or without ALPN h2, is refused', async () => {
  const port = server.address().port;
  const anonymous = tls.connect({ host: LOOPBACK, port, servername: sniFor(DB), ca: ca.trustBundlePem(), ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
  anonymous.on('secureConnect', () => anonymous.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'));
  assert.equal(await answerOf(anonymous), '');
  const http1 = tls.connect({ host: LOOPBACK, port, servername: sniFor(DB), ca: ca.trustBundlePem(), key: web.key, cert: web.chain.join(''), ALPNProtocols: ['http/1.1'], checkServerIdentity: () => undefined });
  http1.on('secureConnect', () => http1.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  assert.equal(await answerOf(http1), '');
  const noAlpn = tls.connect({ host: LOOPBACK, port, servername: sniFor(DB), ca: ca.trustBundlePem(), key: web.key, cert: web.chain.join(''), checkServerIdentity: () => undefined });
  noAlpn.on('secureConnect', () => noAlpn.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  assert.equal(await answerOf(noAlpn), '');
});

test('a connection the policy denies fails with HBONE_FORBIDDEN and the reason', async () => {
  const e = await rejection(newPool().connect(request(ports.denied)));
  assert.equal(e.code, 'HBONE_FORBIDDEN');
  assert.match(e.message, /no ALLOW policy matches shop\/db/);
});

test('a target that refuses fails promptly with HBONE_TARGET_REFUSED', async () => {
  const started = Date.now();
  const e = await rejection(newPool().connect(request(ports.closed)), 2000);
  assert.equal(e.code, 'HBONE_TARGET_REFUSED', e.message);
  assert.ok(Date.now() - started < 2000);
});

test('a CONNECT whose :authority is not ip:port is answered 400', async () => {
  const session = http2.connect(`https://${LOOPBACK}:${server.address().port}`, {
    ca: ca.trustBundlePem(), key: web.key, cert: web.chain.join(''), checkServerIdentity: () => undefined, servername: sniFor(DB),
  });
  closers.push(() => session.destroy());
  const stream = session.request({ ':method': 'CONNECT', ':authority': 'db.shop:5432' });
  const headers = await withTimeout(new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once('response', resolve)), 5000, 'answer');
  assert.equal(headers[':status'], 400);
  session.close();
});

test('the destination proxy answers as the workload the client names by SNI, and refuses a name it does not hold', async () => {
  const [db, api] = await Promise.all([issue(ca, DB), issue(ca, API)]);
  const byName = await HboneServer.listen({
    host: LOOPBACK, port: 0, trustBundle: ca.trustBundlePem(),
    identityFor: (name) => (name === sniFor(DB) ? db : name === sniFor(API) ? api : undefined),
    authorize: () => ({ allow: true }),
    serve: spliceToTarget((t) => new Promise((resolve, reject) => { const sock = net.connect({ host: t.ip, port: t.port, allowHalfOpen: true }, () => resolve(sock)); sock.once('error', reject); })),
  });
  const pool = new HbonePool({ timeoutMs: 3000 });
  try {
    const nodeAddress = { host: LOOPBACK, port: byName.address().port };
    const toDb = await pool.connect(request(ports.sink, { nodeAddress }));
    const toApi = await pool.connect(request(ports.sink, { nodeAddress, expectedPeerIdentity: API, servername: sniFor(API) }));
    assert.equal(pool.sessionCount, 2, 'one session per destination identity');
    toDb.destroy(); toApi.destroy();
    for (const servername of [sniFor('spiffe://cluster.local/ns/x/sa/nobody'), undefined]) {
      const refused = await rejection(pool.connect(request(ports.sink, { nodeAddress, servername })));
      assert.equal(refused.code, 'HBONE_BAD_PEER', refused.message);
      assert.match(refused.message, /holds no certificate/);
    }
  } finally {
    pool.destroy();
    byName.destroy();
  }
});

test('a rotated trust bundle applies to the next session: a certificate from the new root is refused before, accepted after', { timeout: 20_000 }, async () => {
  const rotating = await openCa();
  const db = await issue(rotating, DB);
  let bundle = rotating.trustBundlePem();
  const oldBundle = bundle;
  const srv = await HboneServer.listen({
    host: LOOPBACK, port: 0, trustBundle: () => bundle,
    identityFor: (name) => (name === sniFor(DB) ? db : undefined),
    authorize: () => ({ allow: true }),
    serve: spliceToTarget((t) => new Promise((resolve, reject) => { const sock = net.connect({ host: t.ip, port: t.port, allowHalfOpen: true }, () => resolve(sock)); sock.once('error', reject); })),
  });
  const added = await rotating.addRoot();
  assert.ok(added.ok);
  const webFromNewRoot = await issue(rotating, WEB);
  const nodeAddress = { host: LOOPBACK, port: srv.address().port };
  const attempt = async () => {
    const pool = new HbonePool({ timeoutMs: 3000 });
    try {
      const s = await pool.connect(request(ports.sink, { nodeAddress, credentials: webFromNewRoot, trustBundle: rotating.trustBundlePem() }));
      s.destroy();
    } finally {
      pool.destroy();
    }
  };
  try {
    const refused = await rejection(attempt());
    assert.ok(refused.code, `refused while the server trusts only the old root: ${refused.message}`);
    bundle = rotating.trustBundlePem();
    assert.notEqual(bundle, oldBundle);
    await attempt();
  } finally {
    srv.destroy();
  }
});

test('every stream of a session reports the source node proxy\'s address (read once when the session is admitted)', async () => {
  const pool = newPool();
  const before = asked.length;
  for (const body of ['a', 'b']) {
    const t = await pool.connect(request(ports.sink));
    t.end(body);
    await withTimeout(readAll(t), 5000, 'sink answer');
  }
  const mine = asked.slice(before);
  assert.equal(mine.length, 2);
  for (const r of mine) {
    assert.equal(r.remoteAddress, LOOPBACK);
    assert.ok(Number.isInteger(r.remotePort) && r.remotePort! > 0 && r.remotePort! <= 65535, `remotePort ${r.remotePort}`);
  }
  assert.equal(mine[0]!.remotePort, mine[1]!.remotePort, 'one pooled session: one source port');
});
