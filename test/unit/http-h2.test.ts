import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { test } from 'node:test';
import { listen, startProxy } from './http-fixture';

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_NO_ERROR } = http2.constants;

/** An h2c application; counts its sessions and the streams it was handed. */
async function h2App(onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void) {
  const server = http2.createServer();
  const counters = { sessions: 0, streams: 0, paths: [] as string[] };
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => { counters.sessions++; sessions.add(s); s.on('close', () => sessions.delete(s)); });
  server.on('stream', (stream, headers) => { counters.streams++; counters.paths.push(String(headers[':path'])); stream.on('error', () => undefined); onStream(stream, headers); });
  const port = await listen(server as unknown as net.Server);
  return { port, counters, close: () => { for (const s of sessions) s.destroy(); return new Promise<void>((r) => server.close(() => r())); } };
}

function request(client: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: string) {
  return new Promise<{ headers: http2.IncomingHttpHeaders; trailers?: http2.IncomingHttpHeaders; body: string; rstCode: number }>((resolve) => {
    const req = client.request(headers, { endStream: body === undefined });
    let got = '';
    let h: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    req.on('response', (r) => { h = r; });
    req.on('trailers', (t) => { trailers = t; });
    req.on('data', (d: Buffer) => { got += d.toString(); });
    req.on('error', () => undefined);
    req.on('close', () => resolve({ headers: h, ...(trailers ? { trailers } : {}), body: got, rstCode: req.rstCode ?? 0 }));
    if (body !== undefined) req.end(body);
  });
}

test('HTTP/2: streams are forwarded over one upstream h2c session per downstream session; headers and body pass', async () => {
  const app = await h2App((stream, headers) => {
    let n = 0;
    stream.on('data', (d: Buffer) => { n += d.length; });
    stream.on('end', () => { stream.respond({ ':status': 200, 'x-app': 'yes', 'x-saw-path': String(headers[':path']) }); stream.end(`got ${n}`); });
  });
  const proxy = await startProxy({ appPort: app.port, protocol: 'http2' });
  const client = http2.connect(`http://127.0.0.1:${proxy.port}`);
  try {
    const results = await Promise.all([1, 2, 3].map((i) => request(client, { ':method': 'POST', ':path': `/p${i}` }, 'x'.repeat(i * 100))));
    for (const [i, r] of results.entries()) {
      assert.equal(r.headers[':status'], 200);
      assert.equal(r.headers['x-app'], 'yes');
      assert.equal(r.body, `got ${(i + 1) * 100}`);
    }
    assert.equal(app.counters.sessions, 1);
    assert.equal(proxy.upstreamConnections, 1);
    assert.equal(proxy.logs.length, 3);
    assert.ok(proxy.logs.every((l) => l.protocol === 'http2' && l.status === 200));
  } finally { client.destroy(); await proxy.close(); await app.close(); }
});

test('HTTP/2: response trailers reach the client, and a trailers-only response stays one HEADERS frame', async () => {
  const app = await h2App((stream, headers) => {
    if (headers[':path'] === '/trailers') {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'x-checksum': 'abc' }));
      stream.end('payload');
    } else {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '7', 'grpc-message': 'denied by app' }, { endStream: true });
    }
  });
  const proxy = await startProxy({ appPort: app.port, protocol: 'http2' });
  const client = http2.connect(`http://127.0.0.1:${proxy.port}`);
  try {
    const withTrailers = await request(client, { ':path': '/trailers' });
    assert.equal(withTrailers.body, 'payload');
    assert.deepEqual([withTrailers.trailers?.['grpc-status'], withTrailers.trailers?.['x-checksum']], ['0', 'abc']);
    const only = await new Promise<{ headers: http2.IncomingHttpHeaders; flags: number }>((resolve) => {
      const req = client.request({ ':path': '/only' });
      req.on('response', (h, flags) => resolve({ headers: h, flags }));
      req.resume();
    });
    assert.equal(only.headers['grpc-status'], '7');
    assert.ok(only.flags & http2.constants.NGHTTP2_FLAG_END_STREAM, 'the HEADERS frame ended the stream');
    assert.deepEqual(proxy.logs.map((l) => l.grpcStatus), ['0', '7']);
  } finally { client.destroy(); await proxy.close(); await app.close(); }
});

test('HTTP/2: a denied stream is answered by the proxy; other streams of the session go on, the application sees only them', async () => {
  const app = await h2App((stream) => { stream.respond({ ':status': 200 }); stream.end('app'); });
  const proxy = await startProxy({ appPort: app.port, protocol: 'http2', decide: (r) => (r.path === '/admin' ? { allow: false, status: 403, body: 'RBAC: access denied' } : { allow: true }) });
  const client = http2.connect(`http://127.0.0.1:${proxy.port}`);
  try {
    const denied = await request(client, { ':method': 'POST', ':path': '/admin' }, 'secret');
    assert.equal(denied.headers[':status'], 403);
    assert.equal(denied.headers['content-type'], 'text/plain');
    assert.equal(denied.body, 'RBAC: access denied');
    const ok = await request(client, { ':path': '/ok' });
    assert.equal(ok.body, 'app');
    assert.deepEqual(app.counters.paths, ['/ok']);
  } finally { client.destroy(); await proxy.close(); await app.close(); }
});

test('HTTP/2: RST_STREAM from the client reaches the application, and the application\'s reaches the client', async () => {
  const appSaw: number[] = [];
  let appStreamClosed!: () => void;
  const closedAtApp = new Promise<void>((r) => { appStreamClosed = r; });
  const app = await h2App((stream, headers) => {
    if (headers[':path'] === '/upload') {
      stream.on('close', () => { appSaw.push(stream.rstCode ?? -1); appStreamClosed(); });
      stream.resume();
    } else {
      stream.respond({ ':status': 200 });
      stream.write('partial');
      stream.close(NGHTTP2_INTERNAL_ERROR);
    }
  });
  const proxy = await startProxy({ appPort: app.port, protocol: 'http2' });
  const client = http2.connect(`http://127.0.0.1:${proxy.port}`);
  try {
    const req = client.request({ ':method': 'POST', ':path': '/upload' }, { endStream: false });
    req.on('error', () => undefined);
    req.write('first bytes');
    // Reset once the application has the stream (its first DATA went through).
    await new Promise<void>((r) => { const t = setInterval(() => { if (app.counters.streams > 0) { clearInterval(t); r(); } }, 5); });
    req.close(NGHTTP2_CANCEL);
    await closedAtApp;
    assert.deepEqual(appSaw, [NGHTTP2_CANCEL]);
    const reset = await request(client, { ':path': '/reset' });
    assert.equal(reset.rstCode, NGHTTP2_INTERNAL_ERROR);
  } finally { client.destroy(); await proxy.close(); await app.close(); }
});

test('HTTP/2: request trailers are forwarded to the application', async () => {
  let appTrailers: http2.IncomingHttpHeaders | undefined;
  const app = await h2App((stream) => {
    stream.on('trailers', (t) => { appTrailers = t; });
    stream.resume();
    stream.on('end', () => { stream.respond({ ':status': 200 }); stream.end(); });
  });
  const proxy = await startProxy({ appPort: app.port, protocol: 'http2' });
  const client = http2.connect(`http://127.0.0.1:${proxy.port}`);
  try {
    await new Promise<void>((resolve) => {
      const req = client.request({ ':method': 'POST', ':path': '/t' }, { waitForTrailers: true });
      req.on('wantTrailers', () => req.sendTrailers({ 'x-req-trailer': 'v' }));
      req.resume();
      req.on('close', () => resolve());
      req.end('body');
    });
    assert.equal(appTrailers?.['x-req-trailer'], 'v');
  } finally { client.destroy(); await proxy.close(); await app.close(); }
});

test('HTTP/2: an announced body over maxRequestBodyBytes gets 413 and the application sees nothing', async () => {
  const app = await h2App((stream) => { stream.respond({ ':status': 200 }); stream.end(); });
  const proxy = await startProxy({ appPort: app.port, protocol: 'http2', limits: { maxRequestBodyBytes: 10 } });
  const client = http2.connect(`http://127.0.0.1:${proxy.port}`);
  try {
    const r = await request(client, { ':method': 'POST', ':path': '/big', 'content-length': '11' }, 'x'.repeat(11));
    assert.equal(r.headers[':status'], 413);
    assert.equal(app.counters.streams, 0);
    assert.equal(proxy.upstreamConnections, 0);
    assert.ok(r.rstCode === NGHTTP2_NO_ERROR || r.rstCode === 0);
  } finally { client.destroy(); await proxy.close(); await app.close(); }
});

test('HTTP/2: a session with no stream for idleTimeoutMs is closed with GOAWAY', async () => {
  const app = await h2App((stream) => { stream.respond({ ':status': 200 }); stream.end(); });
  const proxy = await startProxy({ appPort: app.port, protocol: 'http2', limits: { idleTimeoutMs: 200 } });
  const client = http2.connect(`http://127.0.0.1:${proxy.port}`);
  try {
    const r = await request(client, { ':path': '/' });
    assert.equal(r.headers[':status'], 200);
    const code = await new Promise<number>((resolve) => client.once('goaway', (c) => resolve(c)));
    assert.equal(code, NGHTTP2_NO_ERROR);
  } finally { client.destroy(); await proxy.close(); await app.close(); }
});
