import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_HTTP_LIMITS } from '../../agent/http/limits';
import { serveHttp } from '../../agent/http/serve';
import { H2_PREFACE, sniffProtocol } from '../../agent/http/sniff';
import { listen, startProxy, statuses } from './http-fixture';

/** Accepts one connection, sniffs it, and hands back what the sniffer said plus the socket. */
async function sniffOne(boundMs: number, clientWrites: (c: net.Socket) => void) {
  const server = net.createServer();
  const port = await listen(server);
  const client = net.connect(port, '127.0.0.1');
  client.on('error', () => undefined);
  client.once('connect', () => clientWrites(client));
  const socket = await new Promise<net.Socket>((r) => server.once('connection', r));
  const result = await sniffProtocol(socket, boundMs);
  socket.destroy();
  client.destroy();
  server.close();
  return result;
}

test('sniff: the HTTP/2 preface, even in pieces, is http2 and every byte read is returned', async () => {
  const r = await sniffOne(2000, (c) => { c.write(H2_PREFACE.subarray(0, 5)); setTimeout(() => c.write(Buffer.concat([H2_PREFACE.subarray(5), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])])), 20); });
  assert.equal(r.protocol, 'http2');
  assert.ok(r.head.subarray(0, 24).equals(H2_PREFACE));
});

test('sniff: an HTTP/1.1 request line is http1', async () => {
  const r = await sniffOne(2000, (c) => c.write('GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n'));
  assert.equal(r.protocol, 'http1');
  assert.equal(r.head.toString(), 'GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n');
});

test('sniff: a server-first protocol (client silent) is tcp after boundMs, with nothing consumed', async () => {
  const r = await sniffOne(100, () => undefined);
  assert.deepEqual([r.protocol, r.head.length], ['tcp', 0]);
});

test('sniff: a TLS ClientHello and a Redis inline command are tcp at once', async () => {
  const tls = await sniffOne(5000, (c) => c.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc])));
  assert.equal(tls.protocol, 'tcp');
  const redis = await sniffOne(5000, (c) => c.write('GET key\r\n'));
  assert.equal(redis.protocol, 'tcp');
  assert.equal(redis.head.toString(), 'GET key\r\n');
});

test('sniff: a request line dribbled past boundMs is still http1 (it cannot slip through as opaque TCP)', async () => {
  const r = await sniffOne(100, (c) => c.write('POST /adm'));
  assert.equal(r.protocol, 'http1');
});

/** An application answering with the request's path and body length. */
async function echo() {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    let n = 0;
    req.on('data', (d: Buffer) => { n += d.length; });
    req.on('end', () => { seen.push(`${req.method} ${req.url} ${n}`); res.end(`${req.url}:${n}`); });
  });
  const port = await listen(server);
  return { port, seen, close: () => { server.closeAllConnections(); server.close(); } };
}

test('replay on a net.Socket: sniffed bytes, bytes that came while the caller was busy, and later bytes are parsed in order', async () => {
  const app = await echo();
  const server = net.createServer(async (socket) => {
    socket.on('error', () => undefined);
    const { protocol, head } = await sniffProtocol(socket, 1000);
    // The caller does other work (policy lookups) while the client keeps sending.
    await sleep(50);
    await serveHttp(socket, {
      protocol: protocol as 'http1', head, limits: DEFAULT_HTTP_LIMITS, decide: () => ({ allow: true }),
      connectUpstream: () => new Promise<Duplex>((r) => { const s = net.connect(app.port, '127.0.0.1', () => r(s)); }),
    });
  });
  const port = await listen(server);
  try {
    const raw = await new Promise<string>((resolve) => {
      const c = net.connect(port, '127.0.0.1');
      let got = '';
      c.on('data', (d: Buffer) => { got += d.toString('latin1'); });
      c.on('close', () => resolve(got));
      // The first write holds a whole request and half of the next; the rest follows in two steps.
      c.write('GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Le');
      setTimeout(() => c.write('ngth: 4\r\n\r\nab'), 20);
      setTimeout(() => c.write('cdGET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'), 120);
    });
    assert.deepEqual(statuses(raw), [200, 200, 200]);
    assert.deepEqual(app.seen, ['GET /1 0', 'POST /2 4', 'GET /3 0']);
  } finally { server.close(); app.close(); }
});

test('replay on a net.Socket: a sniffed HTTP/2 connection is served from its first byte', async () => {
  const h2app = http2.createServer();
  h2app.on('stream', (stream, headers) => { stream.respond({ ':status': 200 }); stream.end(`h2 ${headers[':path']}`); });
  const appPort = await listen(h2app as unknown as net.Server);
  const proxy = await startProxy({ appPort, protocol: 'sniff' });
  const client = http2.connect(`http://127.0.0.1:${proxy.port}`);
  try {
    const body = await new Promise<string>((resolve) => {
      const req = client.request({ ':path': '/sniffed' });
      let got = '';
      req.on('data', (d: Buffer) => { got += d.toString(); });
      req.on('end', () => resolve(got));
    });
    assert.equal(body, 'h2 /sniffed');
  } finally { client.destroy(); await proxy.close(); h2app.close(); }
});

/**
 * An HBONE-like server: each CONNECT stream is sniffed and served by serveHttp, with the stream as
 * the downstream Duplex. Returns the port and a client helper that opens such a stream.
 */
async function connectServer(appPort: number) {
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => { sessions.add(s); s.on('close', () => sessions.delete(s)); });
  server.on('stream', async (stream, headers) => {
    stream.on('error', () => undefined);
    assert.equal(headers[':method'], 'CONNECT');
    stream.respond({ ':status': 200 });
    const { protocol, head } = await sniffProtocol(stream, 1000);
    if (protocol === 'tcp') return void stream.close();
    await serveHttp(stream, {
      protocol, head, limits: DEFAULT_HTTP_LIMITS, decide: () => ({ allow: true }),
      connectUpstream: () => new Promise<Duplex>((r) => { const s = net.connect(appPort, '127.0.0.1', () => r(s)); }),
    });
  });
  const port = await listen(server as unknown as net.Server);
  const tunnel = http2.connect(`http://127.0.0.1:${port}`);
  const open = (): Promise<http2.ClientHttp2Stream> => new Promise((resolve) => {
    const s = tunnel.request({ ':method': 'CONNECT', ':authority': '10.0.0.1:80' });
    s.once('response', () => resolve(s));
  });
  return { open, close: () => { tunnel.destroy(); for (const s of sessions) s.destroy(); server.close(); } };
}

test('replay on an HTTP/2 CONNECT stream: HTTP/1 inside the tunnel stream, pipelined, is served', async () => {
  const app = await echo();
  const hbone = await connectServer(app.port);
  try {
    const stream = await hbone.open();
    const raw = await new Promise<string>((resolve) => {
      let got = '';
      stream.on('data', (d: Buffer) => { got += d.toString('latin1'); });
      stream.on('close', () => resolve(got));
      stream.write('GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n');
      setTimeout(() => stream.end('xyGET /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'), 20);
    });
    assert.deepEqual(statuses(raw), [200, 200, 200]);
    assert.deepEqual(app.seen, ['GET /a 0', 'POST /b 2', 'GET /c 0']);
  } finally { hbone.close(); app.close(); }
});

test('replay on an HTTP/2 CONNECT stream: HTTP/2 inside the tunnel stream is served', async () => {
  const h2app = http2.createServer();
  h2app.on('stream', (stream, headers) => { stream.respond({ ':status': 200 }); stream.end(`inner ${headers[':path']}`); });
  const appPort = await listen(h2app as unknown as net.Server);
  const hbone = await connectServer(appPort);
  try {
    const stream = await hbone.open();
    const inner = http2.connect('http://inner', { createConnection: () => stream as unknown as net.Socket });
    const body = await new Promise<string>((resolve) => {
      const req = inner.request({ ':path': '/via-tunnel' });
      let got = '';
      req.on('data', (d: Buffer) => { got += d.toString(); });
      req.on('end', () => resolve(got));
    });
    assert.equal(body, 'inner /via-tunnel');
    inner.destroy();
  } finally { hbone.close(); h2app.close(); }
});
