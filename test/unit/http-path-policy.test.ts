// The proxy normalizes each request's path before deciding on it and forwards the same path
// (agent/http/path-normalize.ts through http1-direct.ts, http1-tunnel.ts and http2.ts): a rule on
// /admin cannot be passed by another spelling of /admin, on HTTP/1, HTTP/2 and an Upgrade; nor a
// rule on a host by an HTTP/2 request naming another host in its host field than in :authority.
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import type * as net from 'node:net';
import { test } from 'node:test';
import type { RequestInfo, Verdict } from '../../agent/http/serve';
import { closeApp, countApp, listen, rawExchange, startProxy, statuses } from './http-fixture';

const SNEAKY = ['/./admin/x', '/ADMIN/../admin/x', '/a/../admin/x', '/%61dmin/x', '/admin\\x', '/%2e/admin/x', '/admin/%2e%2e/admin/x'];

/** DENY paths ["/admin", "/admin/*"], as an AuthorizationPolicy's path match reads it (no query). */
function denyAdmin(r: RequestInfo): Verdict {
  const path = r.path.split('?')[0]!;
  return path === '/admin' || path.startsWith('/admin/') ? { allow: false, status: 403, body: 'RBAC: access denied' } : { allow: true };
}

async function h1App() {
  const seen: string[] = [];
  const server = http.createServer((req, res) => { seen.push(req.url ?? ''); res.end(`saw ${req.url}`); });
  server.on('upgrade', (req, socket: net.Socket) => { seen.push(req.url ?? ''); socket.end('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n'); });
  const counters = countApp(server);
  return { port: await listen(server), seen, close: () => closeApp(server, counters) };
}

const get = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: api\r\n${extra}Connection: close\r\n\r\n`;

test('HTTP/1: every spelling of /admin is denied before the application; allowed paths arrive normalized, query as sent', async () => {
  const app = await h1App();
  const proxy = await startProxy({ appPort: app.port, protocol: 'http1', decide: denyAdmin });
  try {
    for (const path of SNEAKY) assert.deepEqual(statuses(await rawExchange(proxy.port, get(path))), [403], path);
    assert.deepEqual(app.seen, [], 'the application saw a denied request');
    const ok = await rawExchange(proxy.port, get('/a/./b/../%7Ec?next=/../admin'));
    assert.match(ok, /^HTTP\/1\.1 200 /);
    assert.deepEqual(app.seen, ['/a/~c?next=/../admin']);
    const log = proxy.logs.at(-1)!;
    assert.equal(log.path, '/a/~c?next=/../admin', 'the access log has the path the application got');
    assert.equal(log.originalPath, '/a/./b/../%7Ec?next=/../admin', 'and the path as sent');
    assert.deepEqual(proxy.logs.filter((l) => l.status === 403).map((l) => [l.path, l.originalPath]), SNEAKY.map((p) => ['/admin/x', p]));
    // An Upgrade is judged on the normalized path too.
    assert.deepEqual(statuses(await rawExchange(proxy.port, get('/x/../admin/ws', 'Upgrade: websocket\r\nConnection: Upgrade\r\n').replace('Connection: close\r\n', ''))), [403]);
    assert.deepEqual(statuses(await rawExchange(proxy.port, get('http://api/x/../admin/ws', 'Upgrade: websocket\r\nConnection: Upgrade\r\n').replace('Connection: close\r\n', ''))), [403]);
    assert.deepEqual(app.seen, ['/a/~c?next=/../admin']);
  } finally { await proxy.close(); await app.close(); }
});

test('HTTP/1: a target that cannot be normalized is refused with 400 and reaches nothing; an absolute-form target is judged by its own host', async () => {
  const app = await h1App();
  const hosts: string[] = [];
  const proxy = await startProxy({ appPort: app.port, protocol: 'http1', decide: (r) => { hosts.push(r.host); return denyAdmin(r); } });
  try {
    for (const bad of ['/a%00b', 'admin/x', '*']) {
      const got = await rawExchange(proxy.port, get(bad));
      assert.deepEqual(statuses(got), [400], `${bad}: ${got}`);
    }
    assert.equal(hosts.length, 0, 'nothing was decided for a refused target');
    assert.deepEqual(statuses(await rawExchange(proxy.port, get('http://other.shop/./admin/x'))), [403]);
    const ok = await rawExchange(proxy.port, get('http://other.shop:8080/a/../b'));
    assert.match(ok, /^HTTP\/1\.1 200 /);
    assert.deepEqual(hosts, ['other.shop', 'other.shop:8080']);
    assert.deepEqual(app.seen, ['http://other.shop:8080/b']);
  } finally { await proxy.close(); await app.close(); }
});

test('HTTP/1: pathNormalization NONE forwards the path as sent (and the decision sees it so)', async () => {
  const app = await h1App();
  const proxy = await startProxy({ appPort: app.port, protocol: 'http1', decide: denyAdmin, pathNormalization: 'NONE' });
  try {
    assert.match(await rawExchange(proxy.port, get('/a/./b')), /^HTTP\/1\.1 200 /);
    assert.deepEqual(app.seen, ['/a/./b']);
    assert.equal(proxy.decided.at(-1)!.path, '/a/./b');
  } finally { await proxy.close(); await app.close(); }
});

test('HTTP/2: every spelling of /admin is denied; an allowed :path arrives normalized; %00 gets 400', async () => {
  const paths: string[] = [];
  const server = http2.createServer();
  server.on('stream', (stream, headers) => { paths.push(String(headers[':path'])); stream.respond({ ':status': 200 }); stream.end(); });
  const appPort = await listen(server as unknown as net.Server);
  const proxy = await startProxy({ appPort, protocol: 'http2', decide: denyAdmin });
  const client = http2.connect(`http://127.0.0.1:${proxy.port}`);
  const status = (path: string): Promise<number> => new Promise((resolve) => {
    const req = client.request({ ':path': path });
    req.on('response', (h) => resolve(Number(h[':status'])));
    req.on('error', () => resolve(-1));
    req.resume();
  });
  try {
    for (const path of SNEAKY) assert.equal(await status(path), 403, path);
    assert.deepEqual(paths, []);
    assert.equal(await status('/a/%2E/b/..//c?q=/./'), 200);
    assert.deepEqual(paths, ['/a//c?q=/./']);
    assert.equal(await status('/a%00'), 400);
    assert.equal(paths.length, 1);
  } finally {
    client.destroy();
    await proxy.close();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

test('HTTP/2: a host field that differs from :authority gets 400 and reaches nothing; the same host in both passes', async () => {
  const seen: string[] = [];
  const server = http2.createServer();
  server.on('stream', (stream, headers) => { seen.push(`${String(headers[':authority'])} ${String(headers.host)}`); stream.respond({ ':status': 200 }); stream.end(); });
  const appPort = await listen(server as unknown as net.Server);
  const proxy = await startProxy({ appPort, protocol: 'http2', decide: (r) => (r.host === 'admin.shop' ? { allow: false, status: 403, body: 'no' } : { allow: true }) });
  const client = http2.connect(`http://127.0.0.1:${proxy.port}`);
  const status = (h: http2.OutgoingHttpHeaders): Promise<number> => new Promise((resolve) => {
    const req = client.request(h);
    req.on('response', (x) => resolve(Number(x[':status'])));
    req.on('error', () => resolve(-1));
    req.resume();
  });
  try {
    assert.equal(await status({ ':path': '/', ':authority': 'public.shop', host: 'admin.shop' }), 400);
    assert.equal(await status({ ':path': '/', ':authority': 'admin.shop', host: 'public.shop' }), 400);
    assert.deepEqual(seen, []);
    assert.equal(await status({ ':path': '/', ':authority': 'Public.Shop', host: 'public.shop' }), 200);
    assert.equal(await status({ ':path': '/', ':authority': 'admin.shop' }), 403);
    assert.deepEqual(seen, ['Public.Shop public.shop']);
  } finally {
    client.destroy();
    await proxy.close();
    await new Promise<void>((r) => server.close(() => r()));
  }
});
