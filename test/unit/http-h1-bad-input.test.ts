import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import { test } from 'node:test';
import { countApp, listen, rawExchange, startProxy, statuses } from './http-fixture';

/** An application that records every request it parses and every byte it reads. */
async function recordingApp() {
  const server = http.createServer((req, res) => {
    counters.requests.push(`${req.method} ${req.url}`);
    req.resume();
    req.on('end', () => res.end('app'));
  });
  const counters = countApp(server);
  const port = await listen(server);
  const close = () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); });
  return { port, counters, close };
}

const cases: Array<[string, string, number]> = [
  ['bad request line', 'GET /x HTTP/1.1 extra\r\nHost: a\r\n\r\n', 400],
  ['invalid header name', 'GET / HTTP/1.1\r\nHost: a\r\nBad Header: 1\r\n\r\n', 400],
  ['both Content-Length and Transfer-Encoding', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
  ['two Content-Length', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc', 400],
  ['two differing Content-Length', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc', 400],
  ['obs-fold', 'GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n  b\r\n\r\n', 400],
  ['two Host headers', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400],
  ['HTTP/1.1 without Host', 'GET / HTTP/1.1\r\n\r\n', 400],
  ['HTTP/1.0 without Host', 'GET / HTTP/1.0\r\n\r\n', 400],
  ['space before the colon', 'GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n', 400],
  ['a transfer coding other than chunked', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', 501],
  ['NUL in a header value', 'GET / HTTP/1.1\r\nHost: a\r\nX: a\u0000b\r\n\r\n', 400],
  ['bare LF line ends', 'GET / HTTP/1.1\nHost: a\n\n', 400],
];

for (const [name, request, status] of cases) {
  test(`bad input: ${name} is answered ${status} and the application sees nothing`, async () => {
    const app = await recordingApp();
    const proxy = await startProxy({ appPort: app.port });
    try {
      const raw = await rawExchange(proxy.port, request);
      assert.deepEqual(statuses(raw), [status], raw);
      assert.equal(app.counters.connections, 0, 'no connection to the application');
      assert.equal(proxy.upstreamConnections, 0);
    } finally { await proxy.close(); await app.close(); }
  });
}

test('bad input: headers larger than maxHeaderBytes get 431', async () => {
  const app = await recordingApp();
  const proxy = await startProxy({ appPort: app.port, limits: { maxHeaderBytes: 4096 } });
  try {
    const raw = await rawExchange(proxy.port, `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'x'.repeat(8192)}\r\n\r\n`);
    assert.deepEqual(statuses(raw), [431]);
    assert.equal(app.counters.connections, 0);
  } finally { await proxy.close(); await app.close(); }
});

test('bad input: more header fields than maxHeaderPairs get 431 (Node alone would drop the extra ones and forward the rest)', async () => {
  const app = await recordingApp();
  const proxy = await startProxy({ appPort: app.port, limits: { maxHeaderPairs: 10 } });
  try {
    const fields = Array.from({ length: 11 }, (_, i) => `X-F${i}: ${i}\r\n`).join('');
    const raw = await rawExchange(proxy.port, `GET / HTTP/1.1\r\nHost: a\r\n${fields}\r\n`);
    assert.deepEqual(statuses(raw), [431]);
    assert.equal(app.counters.connections, 0);
    const fine = await rawExchange(proxy.port, `GET / HTTP/1.1\r\nHost: a\r\n${fields.split('\r\n').slice(0, 8).join('\r\n')}\r\nConnection: close\r\n\r\n`);
    assert.deepEqual(statuses(fine), [200]);
  } finally { await proxy.close(); await app.close(); }
});

test('bad input: an announced body over maxRequestBodyBytes gets 413 before anything is forwarded', async () => {
  const app = await recordingApp();
  const proxy = await startProxy({ appPort: app.port, limits: { maxRequestBodyBytes: 1000 } });
  try {
    const raw = await rawExchange(proxy.port, 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n');
    assert.deepEqual(statuses(raw), [413]);
    assert.equal(app.counters.connections, 0);
  } finally { await proxy.close(); await app.close(); }
});

test('bad input: a chunked body that grows past maxRequestBodyBytes is cut: 413, and the application never completes it', async () => {
  const app = await recordingApp();
  const proxy = await startProxy({ appPort: app.port, limits: { maxRequestBodyBytes: 1000 } });
  try {
    const chunk = `400\r\n${'y'.repeat(0x400)}\r\n`;
    const raw = await rawExchange(proxy.port, 'POST /grow HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n', chunk, chunk);
    assert.deepEqual(statuses(raw), [413]);
    assert.ok(!app.counters.requests.includes('POST /grow') || proxy.logs[0]!.status === 413);
    assert.match(proxy.logs[0]!.error ?? '', /exceeds the limit/);
  } finally { await proxy.close(); await app.close(); }
});

// Request smuggling: the application must parse exactly the requests the proxy accepted.
const smuggling: Array<[string, string]> = [
  ['CL.TE', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED'],
  ['TE.CL', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n'],
  ['TE.TE with xchunked', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n'],
  ['TE.TE with a folded chunked', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n'],
  ['TE.TE with two Transfer-Encoding lines', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: cow\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n'],
];
for (const [name, attack] of smuggling) {
  test(`smuggling: ${name} is refused and the application sees no request`, async () => {
    const app = await recordingApp();
    const proxy = await startProxy({ appPort: app.port });
    try {
      const raw = await rawExchange(proxy.port, attack, 'GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
      const got = statuses(raw);
      assert.ok(got.length >= 1 && got[0]! >= 400, `refused: ${raw}`);
      assert.deepEqual(app.counters.requests, []);
      assert.equal(app.counters.connections, 0);
    } finally { await proxy.close(); await app.close(); }
  });
}

test('smuggling: a request hidden in a body stays body; the application sees exactly the requests the proxy accepted', async () => {
  const app = await recordingApp();
  const accepted: string[] = [];
  const proxy = await startProxy({ appPort: app.port, decide: (r) => { accepted.push(`${r.method} ${r.path}`); return r.path === '/admin' ? { allow: false, status: 403, body: 'RBAC: access denied' } : { allow: true }; } });
  try {
    const hidden = 'GET /admin HTTP/1.1\r\nHost: a\r\n\r\n';
    const raw = await rawExchange(proxy.port,
      `POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: ${hidden.length}\r\n\r\n${hidden}`,
      `POST /upload2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${hidden.length.toString(16)}\r\n${hidden}\r\n0\r\n\r\n`,
      'GET /admin HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    assert.deepEqual(statuses(raw), [200, 200, 403]);
    assert.deepEqual(accepted, ['POST /upload', 'POST /upload2', 'GET /admin']);
    assert.deepEqual(app.counters.requests, ['POST /upload', 'POST /upload2']);
  } finally { await proxy.close(); await app.close(); }
});

for (const requestTimeoutMs of [400, 0]) test(`slowloris: a request head that does not complete within headersTimeoutMs gets 408 and the connection closes (requestTimeoutMs ${requestTimeoutMs})`, async () => {
  const app = await recordingApp();
  const proxy = await startProxy({ appPort: app.port, limits: { headersTimeoutMs: 200, requestTimeoutMs } });
  try {
    const raw = await new Promise<string>((resolve, reject) => {
      const c = net.connect(proxy.port, '127.0.0.1');
      let got = '';
      let n = 0;
      // One header byte at a time, for as long as the connection stays open (bounded).
      const drip = setInterval(() => { if (n++ < 200 && !c.destroyed) c.write(n === 1 ? 'GET / HTTP/1.1\r\nHost: a\r\n' : 'X'); }, 20);
      c.on('data', (d: Buffer) => { got += d.toString('latin1'); });
      c.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' || e.code === 'EPIPE' ? undefined : reject(e)));
      c.on('close', () => { clearInterval(drip); resolve(got); });
    });
    assert.deepEqual(statuses(raw), [408]);
    assert.equal(app.counters.connections, 0);
  } finally { await proxy.close(); await app.close(); }
});

test('idle: a keep-alive connection with no request for idleTimeoutMs is closed', async () => {
  const app = await recordingApp();
  const proxy = await startProxy({ appPort: app.port, limits: { idleTimeoutMs: 200 } });
  try {
    // No Connection: close; rawExchange resolves only when the proxy closes the idle connection.
    const raw = await rawExchange(proxy.port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.deepEqual(statuses(raw), [200]);
  } finally { await proxy.close(); await app.close(); }
});
