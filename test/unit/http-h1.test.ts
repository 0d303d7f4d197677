import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import { test } from 'node:test';
import { countApp, listen, rawExchange, startProxy, statuses } from './http-fixture';

/** An application that echoes what it saw: method, url, raw headers and the body length. */
async function echoApp() {
  const server = http.createServer((req, res) => {
    let n = 0;
    req.on('data', (d: Buffer) => { n += d.length; });
    req.on('end', () => {
      counters.requests.push(`${req.method} ${req.url}`);
      res.end(JSON.stringify({ method: req.method, url: req.url, raw: req.rawHeaders, bytes: n, version: req.httpVersion }));
    });
  });
  const counters = countApp(server);
  const port = await listen(server);
  return { server, port, counters, close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

function bodies(raw: string): string[] {
  return raw.split(/\r\n\r\n/).slice(1).map((b) => b.replace(/HTTP\/1\.1[\s\S]*$/, '').replace(/^[0-9a-f]+\r\n/, ''));
}

test('keep-alive and pipelining: three requests in one write, answered in order over one application connection', async () => {
  const app = await echoApp();
  const proxy = await startProxy({ appPort: app.port });
  try {
    const raw = await rawExchange(proxy.port,
      'GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    assert.deepEqual(statuses(raw), [200, 200, 200]);
    assert.deepEqual(app.counters.requests, ['GET /1', 'POST /2', 'GET /3']);
    assert.match(raw, /"url":"\/1"[\s\S]*"url":"\/2","raw":[^\]]*\],"bytes":3[\s\S]*"url":"\/3"/);
    assert.equal(app.counters.connections, 1, 'the pool reuses one application connection');
    assert.equal(proxy.upstreamConnections, 1);
  } finally { await proxy.close(); await app.close(); }
});

test('each downstream connection gets its own upstream connection', async () => {
  const app = await echoApp();
  const proxy = await startProxy({ appPort: app.port });
  try {
    const req = 'GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n';
    const [a, b] = await Promise.all([rawExchange(proxy.port, req), rawExchange(proxy.port, req)]);
    assert.deepEqual([statuses(a!), statuses(b!)], [[200, 200], [200, 200]]);
    assert.equal(app.counters.connections, 2);
  } finally { await proxy.close(); await app.close(); }
});

test('chunked and Content-Length bodies reach the application whole; chunked is re-framed, not passed raw', async () => {
  const app = await echoApp();
  const proxy = await startProxy({ appPort: app.port });
  try {
    const raw = await rawExchange(proxy.port,
      'POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n',
      'PUT /l HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd');
    assert.deepEqual(statuses(raw), [200, 200]);
    const [c, l] = bodies(raw).map((b) => JSON.parse(b.slice(0, b.lastIndexOf('}') + 1)));
    assert.equal(c.bytes, 11);
    assert.ok(c.raw.includes('Transfer-Encoding'));
    assert.equal(l.bytes, 4);
  } finally { await proxy.close(); await app.close(); }
});

test('an HTTP/1.0 client is answered in HTTP/1.0 terms (no chunking) and the body ends with the connection', async () => {
  const server = http.createServer((_req, res) => { res.write('part1-'); res.end('part2'); });
  const port = await listen(server);
  const proxy = await startProxy({ appPort: port });
  try {
    const raw = await rawExchange(proxy.port, 'GET /old HTTP/1.0\r\nHost: a\r\n\r\n');
    assert.match(raw, /^HTTP\/1\.1 200 OK\r\n/);
    assert.doesNotMatch(raw, /Transfer-Encoding/i);
    assert.ok(raw.endsWith('\r\n\r\npart1-part2'), raw);
  } finally { await proxy.close(); server.closeAllConnections(); server.close(); }
});

test('an HTTP/1.0 client that asks for keep-alive is told so and is served a second request on the connection; one whose unframed answer ends with the close is told that', async () => {
  const server = http.createServer((req, res) => {
    if (req.url === '/streamed') { res.write('a-'); res.end('b'); } else res.end('fixed');
  });
  const port = await listen(server);
  const proxy = await startProxy({ appPort: port });
  try {
    const raw = await rawExchange(proxy.port, 'GET /1 HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\nGET /streamed HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n');
    assert.deepEqual(statuses(raw), [200, 200]);
    const [first, second] = raw.split(/(?=HTTP\/1\.1 )/);
    assert.match(first!, /\r\nConnection: keep-alive\r\n(?:[^\r\n]+\r\n)*\r\nfixed$/);
    assert.match(second!, /\r\nConnection: close\r\n(?:[^\r\n]+\r\n)*\r\na-b$/);
    assert.doesNotMatch(second!, /Transfer-Encoding/i);
  } finally { await proxy.close(); server.closeAllConnections(); server.close(); }
});

test('an application that answers before the proxy has sent the whole body: the answer reaches the client, and the next request on the connection is served on a new application connection', async () => {
  const server = http.createServer((req, res) => {
    counters.requests.push(`${req.method} ${req.url}`);
    // Answered at once; Node's server then reads and drops the rest of the body.
    if (req.url === '/early') return void res.end('early');
    res.end('next');
  });
  const counters = countApp(server);
  const port = await listen(server);
  const proxy = await startProxy({ appPort: port });
  try {
    const size = 8 * 1024 * 1024;
    const raw = await rawExchange(proxy.port, `POST /early HTTP/1.1\r\nHost: a\r\nContent-Length: ${size}\r\n\r\n`, Buffer.alloc(size, 120), 'GET /next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    assert.deepEqual(statuses(raw), [200, 200], raw.slice(0, 400));
    assert.match(raw, /early[\s\S]*next$/);
    assert.deepEqual(counters.requests, ['POST /early', 'GET /next']);
    assert.equal(counters.connections, 2);
  } finally { await proxy.close(); server.closeAllConnections(); server.close(); }
});

test('Expect: 100-continue is answered by the proxy once the request is allowed, and the body follows', async () => {
  const app = await echoApp();
  const proxy = await startProxy({ appPort: app.port });
  try {
    const got = await new Promise<string>((resolve, reject) => {
      const c = net.connect(proxy.port, '127.0.0.1');
      let raw = '';
      c.on('error', reject);
      c.on('data', (d: Buffer) => {
        raw += d.toString('latin1');
        if (raw === 'HTTP/1.1 100 Continue\r\n\r\n') c.write('12345');
      });
      c.on('close', () => resolve(raw));
      c.write('POST /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n');
    });
    assert.ok(got.startsWith('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK'), got);
    const body = JSON.parse(got.slice(got.indexOf('{')));
    assert.equal(body.bytes, 5);
    assert.ok(!body.raw.map((h: string) => h.toLowerCase()).includes('expect'), 'Expect is not forwarded');
  } finally { await proxy.close(); await app.close(); }
});

test('response head passes through as the application wrote it: order, case, repeated fields, no Date or Keep-Alive invented', async () => {
  // A raw application, so the exact bytes it sends are known.
  const server = net.createServer((s) => {
    s.once('data', () => s.write('HTTP/1.1 201 Made It\r\nX-Zeta: 1\r\nset-Cookie: a=1\r\nSet-Cookie: b=2\r\nx-alpha: 2\r\nContent-Length: 2\r\n\r\nok'));
    s.on('error', () => undefined);
  });
  const port = await listen(server);
  const proxy = await startProxy({ appPort: port });
  try {
    const raw = await rawExchange(proxy.port, 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    assert.equal(raw, 'HTTP/1.1 201 Made It\r\nX-Zeta: 1\r\nset-Cookie: a=1\r\nSet-Cookie: b=2\r\nx-alpha: 2\r\nContent-Length: 2\r\n\r\nok');
  } finally { await proxy.close(); server.close(); }
});

test('hop-by-hop fields are dropped both ways, including those named in Connection; end-to-end ones pass', async () => {
  let seen: string[] = [];
  const server = net.createServer((s) => {
    s.once('data', (d: Buffer) => {
      seen = d.toString('latin1').split('\r\n').slice(1).filter((l) => l);
      s.write('HTTP/1.1 200 OK\r\nConnection: x-secret-resp\r\nX-Secret-Resp: 1\r\nKeep-Alive: timeout=9\r\nProxy-Connection: keep-alive\r\nX-Keep: yes\r\nContent-Length: 0\r\n\r\n');
    });
    s.on('error', () => undefined);
  });
  const port = await listen(server);
  const proxy = await startProxy({ appPort: port });
  try {
    const raw = await rawExchange(proxy.port,
      'GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nProxy-Connection: x\r\nTE: trailers\r\nX-End: 2\r\n\r\n');
    const names = seen.map((l) => l.split(':')[0]!.toLowerCase());
    for (const h of ['x-hop', 'keep-alive', 'proxy-connection', 'te']) assert.ok(!names.includes(h), `${h} reached the application: ${seen.join(' | ')}`);
    assert.ok(names.includes('x-end'));
    assert.ok(seen.includes('Host: a'));
    assert.match(raw, /X-Keep: yes/);
    for (const h of [/X-Secret-Resp/i, /Keep-Alive/i, /Proxy-Connection/i]) assert.doesNotMatch(raw, h);
  } finally { await proxy.close(); server.close(); }
});

test('trailers the application sends reach the client', async () => {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'Trailer': 'X-Checksum', 'Content-Type': 'text/plain' });
    res.write('body');
    res.addTrailers({ 'X-Checksum': 'abc123' });
    res.end();
  });
  const port = await listen(server);
  const proxy = await startProxy({ appPort: port });
  try {
    const raw = await rawExchange(proxy.port, 'GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nConnection: close\r\n\r\n');
    assert.match(raw, /Transfer-Encoding: chunked/);
    assert.match(raw, /\r\n0\r\nX-Checksum: abc123\r\n\r\n$/);
  } finally { await proxy.close(); server.closeAllConnections(); server.close(); }
});

test('a denied request is answered by the proxy; the connection stays usable and the application sees nothing of it', async () => {
  const app = await echoApp();
  const proxy = await startProxy({ appPort: app.port, decide: (r) => (r.path.startsWith('/admin') ? { allow: false, status: 403, body: 'RBAC: access denied' } : { allow: true }) });
  try {
    const raw = await rawExchange(proxy.port,
      'POST /admin HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nsecret-body',
      'GET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    assert.deepEqual(statuses(raw), [403, 200]);
    assert.match(raw, /^HTTP\/1\.1 403 Forbidden\r\nContent-Type: text\/plain\r\nContent-Length: 19\r\n\r\nRBAC: access denied/);
    assert.deepEqual(app.counters.requests, ['GET /ok'], 'the denied request never reached the application');
    assert.equal(proxy.logs[0]!.verdict.allow, false);
    assert.equal(proxy.logs[0]!.status, 403);
  } finally { await proxy.close(); await app.close(); }
});

test('a denied request opens no application connection at all', async () => {
  const app = await echoApp();
  const proxy = await startProxy({ appPort: app.port, decide: () => ({ allow: false, status: 403, body: 'RBAC: access denied' }) });
  try {
    const raw = await rawExchange(proxy.port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    assert.deepEqual(statuses(raw), [403, 403]);
    assert.equal(proxy.upstreamConnections, 0);
    assert.equal(app.counters.connections, 0);
  } finally { await proxy.close(); await app.close(); }
});

test('a denied request with a body too large to drain cheaply (or unannounced) closes the connection after the answer', async () => {
  const app = await echoApp();
  const proxy = await startProxy({ appPort: app.port, decide: () => ({ allow: false, status: 403, body: 'RBAC: access denied' }), limits: { maxDenyDrainBytes: 1024 } });
  try {
    // Only the head is sent: the proxy must not wait for a body it will not read.
    const big = await rawExchange(proxy.port, 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000000\r\n\r\n');
    assert.match(big, /^HTTP\/1\.1 403 Forbidden\r\n[\s\S]*Connection: close\r\n/);
    const chunked = await rawExchange(proxy.port, 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
    assert.match(chunked, /^HTTP\/1\.1 403 Forbidden\r\n[\s\S]*Connection: close\r\n/);
    assert.equal(app.counters.connections, 0);
  } finally { await proxy.close(); await app.close(); }
});

test('a decision that throws denies with 500 (fail closed) and says why in the log', async () => {
  const app = await echoApp();
  const proxy = await startProxy({ appPort: app.port, decide: () => { throw new Error('policy store not ready'); } });
  try {
    const raw = await rawExchange(proxy.port, 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    assert.deepEqual(statuses(raw), [500]);
    assert.match(proxy.logs[0]!.error ?? '', /policy store not ready/);
    assert.equal(app.counters.connections, 0);
  } finally { await proxy.close(); await app.close(); }
});

test('an application that refuses connections gives 503 naming the cause in the log', async () => {
  const closed = net.createServer();
  const port = await listen(closed);
  await new Promise<void>((r) => closed.close(() => r()));
  const proxy = await startProxy({ appPort: port });
  try {
    const raw = await rawExchange(proxy.port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.deepEqual(statuses(raw), [503]);
    assert.match(proxy.logs[0]!.error ?? '', /ECONNREFUSED/);
  } finally { await proxy.close(); }
});

test('the exchange log carries method, path, host, status, byte counts and the RequestInfo decide saw', async () => {
  const app = await echoApp();
  const proxy = await startProxy({ appPort: app.port });
  try {
    await rawExchange(proxy.port, 'POST /log?x=1 HTTP/1.1\r\nHost: svc.ns\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc');
    const l = proxy.logs[0]!;
    assert.deepEqual([l.method, l.path, l.host, l.protocol, l.status, l.requestBytes], ['POST', '/log?x=1', 'svc.ns', 'http1', 200, 3]);
    assert.ok(l.responseBytes > 0);
    assert.equal(l.request, proxy.decided[0]);
  } finally { await proxy.close(); await app.close(); }
});

test('the application closes its kept-alive connection under the next request: a GET is sent once more on a new connection, a bodyless POST gets 502', async () => {
  // Each application connection answers its first request and closes under the second (the race of
  // an idle timeout), as Node's keepAliveTimeout does to a proxy that reuses a connection at the wrong moment.
  const seen: string[] = [];
  const app = net.createServer((s) => {
    let n = 0;
    s.on('data', (d) => {
      seen.push(d.toString('latin1').split(' ').slice(0, 2).join(' '));
      if (++n === 1) s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      else s.destroy();
    });
  });
  const appPort = await listen(app);
  const proxy = await startProxy({ appPort, protocol: 'http1' });
  try {
    const req = (method: string, path: string, close = false) => `${method} ${path} HTTP/1.1\r\nHost: a\r\n${method === 'POST' ? 'Content-Length: 0\r\n' : ''}${close ? 'Connection: close\r\n' : ''}\r\n`;
    const got = await rawExchange(proxy.port, req('GET', '/1'), req('GET', '/2', true));
    assert.deepEqual(statuses(got), [200, 200], got);
    assert.deepEqual(seen, ['GET /1', 'GET /2', 'GET /2']);
    seen.length = 0;
    const post = await rawExchange(proxy.port, req('GET', '/3'), req('POST', '/4', true));
    assert.deepEqual(statuses(post), [200, 502], post);
    assert.deepEqual(seen, ['GET /3', 'POST /4'], 'a POST is not sent again (RFC 9112 9.3.1)');
  } finally {
    await proxy.close();
    await new Promise<void>((r) => app.close(() => r()));
  }
});
