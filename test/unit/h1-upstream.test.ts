import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { H1Upstream, type UpstreamHead } from '../../agent/http/h1-upstream';

/** The Service path's HTTP/1.1 client (agent/http/h1-upstream.ts) against real loopback servers. */

interface Server { port: number; connections: () => number; close(): Promise<void> }

async function serve(handler: http.RequestListener | ((s: net.Socket) => void), raw = false): Promise<Server> {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = raw ? net.createServer(handler as (s: net.Socket) => void) : http.createServer(handler as http.RequestListener);
  server.on('connection', (s: net.Socket) => { connections++; sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    connections: () => connections,
    close: () => { for (const s of sockets) s.destroy(); return new Promise((r) => server.close(() => r())); },
  };
}

const opener = (port: number) => () => new Promise<net.Socket>((resolve, reject) => {
  const s = net.connect(port, '127.0.0.1', () => resolve(s));
  s.once('error', reject);
});

const head = (text: string) => Buffer.from(text.replace(/\n/g, '\r\n'), 'latin1');

/** The whole response: status, raw fields, body and trailers. */
function read(h: UpstreamHead): Promise<{ status: number; raw: string[]; body: string; trailers: readonly string[] }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    h.body.start({
      data: (b) => chunks.push(Buffer.from(b)),
      end: (trailers) => resolve({ status: h.status, raw: h.raw, body: Buffer.concat(chunks).toString(), trailers }),
      error: reject,
    });
  });
}

test('keep-alive: sequential requests reuse one connection; a repeated response field arrives as separate fields', async () => {
  const server = await serve((req, res) => {
    res.setHeader('x-seen', ['a', 'b']);
    res.end(`${req.method} ${req.url} ${req.headers.host}`);
  });
  const pool = new H1Upstream(opener(server.port));
  try {
    for (const path of ['/1', '/2', '/3']) {
      const r = await read(await pool.send({ head: head(`GET ${path} HTTP/1.1\nhost: svc\n\n`), replayable: Buffer.alloc(0), isHead: false }).result);
      assert.equal(r.status, 200);
      assert.equal(r.body, `GET ${path} svc`);
      assert.deepEqual(r.raw.filter((_, i) => i % 2 === 0 && r.raw[i]!.toLowerCase() === 'x-seen').length, 2);
    }
    assert.equal(server.connections(), 1);
    assert.equal(pool.size, 1);
  } finally {
    pool.destroy();
    await server.close();
  }
});

test('concurrent requests open one connection each; afterwards they are all idle and reused', async () => {
  const waiting: http.ServerResponse[] = [];
  const server = await serve((_req, res) => {
    waiting.push(res);
    if (waiting.length === 3) for (const w of waiting.splice(0)) w.end('ok');
  });
  const pool = new H1Upstream(opener(server.port));
  try {
    const send = () => pool.send({ head: head('GET / HTTP/1.1\nhost: svc\n\n'), replayable: Buffer.alloc(0), isHead: false }).result.then(read);
    const rs = await Promise.all([send(), send(), send()]);
    assert.deepEqual(rs.map((r) => r.body), ['ok', 'ok', 'ok']);
    assert.equal(server.connections(), 3);
    // The next three find three idle connections.
    const again = Promise.all([send(), send(), send()]);
    const more = await again;
    assert.equal(more.length, 3);
    assert.equal(server.connections(), 3);
  } finally {
    pool.destroy();
    await server.close();
  }
});

test('a body, streamed chunked, reaches the server whole; response trailers come back', async () => {
  const server = await serve((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => { body += d; });
    req.on('end', () => {
      res.writeHead(200, { trailer: 'x-sum', 'transfer-encoding': 'chunked' });
      res.write(`got ${body.length}:${body}`);
      res.addTrailers({ 'x-sum': String(body.length) });
      res.end();
    });
  });
  const pool = new H1Upstream(opener(server.port));
  try {
    const stream = new PassThrough();
    const ex = pool.send({ head: head('POST /up HTTP/1.1\nhost: svc\ntransfer-encoding: chunked\n\n'), stream, chunked: true, isHead: false });
    stream.write('hello ');
    setImmediate(() => stream.end('world'));
    const r = await read(await ex.result);
    assert.equal(r.body, 'got 11:hello world');
    assert.deepEqual([...r.trailers], ['x-sum', '11']);
  } finally {
    pool.destroy();
    await server.close();
  }
});

test('informational 100 Continue is skipped; a body framed by the close ends with the close and the connection is not reused', async () => {
  const server = await serve((s: net.Socket) => {
    s.once('data', () => {
      s.write('HTTP/1.1 100 Continue\r\n\r\n');
      s.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the close');
    });
  }, true);
  const pool = new H1Upstream(opener(server.port));
  try {
    const r = await read(await pool.send({ head: head('GET / HTTP/1.1\nhost: svc\n\n'), replayable: Buffer.alloc(0), isHead: false }).result);
    assert.equal(r.status, 200);
    assert.equal(r.body, 'until the close');
    // the next request needs a new connection
    const next = await read(await pool.send({ head: head('GET / HTTP/1.1\nhost: svc\n\n'), replayable: Buffer.alloc(0), isHead: false }).result);
    assert.equal(next.body, 'until the close');
    assert.equal(server.connections(), 2);
  } finally {
    pool.destroy();
    await server.close();
  }
});

test('a response to HEAD has no body even with a Content-Length; the connection stays reusable', async () => {
  const server = await serve((_req, res) => { res.setHeader('content-length', '5'); res.end(); });
  const pool = new H1Upstream(opener(server.port));
  try {
    const r = await read(await pool.send({ head: head('HEAD / HTTP/1.1\nhost: svc\n\n'), replayable: Buffer.alloc(0), isHead: true }).result);
    assert.equal(r.status, 200);
    assert.equal(r.body, '');
    const again = await read(await pool.send({ head: head('HEAD / HTTP/1.1\nhost: svc\n\n'), replayable: Buffer.alloc(0), isHead: true }).result);
    assert.equal(again.status, 200);
    assert.equal(server.connections(), 1);
  } finally {
    pool.destroy();
    await server.close();
  }
});

test('maxRequests closes a connection after that many responses', async () => {
  const server = await serve((_req, res) => res.end('ok'));
  const pool = new H1Upstream(opener(server.port), 2);
  try {
    for (let i = 0; i < 5; i++) await read(await pool.send({ head: head('GET / HTTP/1.1\nhost: svc\n\n'), replayable: Buffer.alloc(0), isHead: false }).result);
    assert.equal(server.connections(), 3);
  } finally {
    pool.destroy();
    await server.close();
  }
});

test('an endpoint that closes before answering fails the request (a reset), and a connect failure is the opener\'s error', async () => {
  const server = await serve((s: net.Socket) => { s.once('data', () => s.destroy()); }, true);
  const pool = new H1Upstream(opener(server.port));
  try {
    await assert.rejects(pool.send({ head: head('GET / HTTP/1.1\nhost: svc\n\n'), replayable: Buffer.alloc(0), isHead: false }).result, /closed the connection|ECONNRESET/);
    assert.equal(pool.size, 0);
  } finally {
    pool.destroy();
    await server.close();
  }
  const refused = new H1Upstream(() => Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })));
  await assert.rejects(refused.send({ head: head('GET / HTTP/1.1\nhost: svc\n\n'), replayable: Buffer.alloc(0), isHead: false }).result, /ECONNREFUSED/);
});

test('a malformed response is an error, and abort() gives up a request whose answer does not come', async () => {
  const server = await serve((s: net.Socket) => { s.once('data', (d) => { if (d.toString().includes('/bad')) s.write('HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n'); }); }, true);
  const pool = new H1Upstream(opener(server.port));
  try {
    await assert.rejects(pool.send({ head: head('GET /bad HTTP/1.1\nhost: svc\n\n'), replayable: Buffer.alloc(0), isHead: false }).result,
      (e: Error & { code?: string }) => e.code === 'HPE_INVALID_CONTENT_LENGTH' && /malformed response from the endpoint/.test(e.message));
    const ex = pool.send({ head: head('GET /silent HTTP/1.1\nhost: svc\n\n'), replayable: Buffer.alloc(0), isHead: false });
    setImmediate(() => ex.abort());
    await assert.rejects(ex.result, /aborted/);
    // the aborted request's connection is closed, not reused: the next request opens a third
    const third = pool.send({ head: head('GET /bad HTTP/1.1\nhost: svc\n\n'), replayable: Buffer.alloc(0), isHead: false });
    await assert.rejects(third.result, /malformed/);
    assert.equal(server.connections(), 3);
  } finally {
    pool.destroy();
    await server.close();
  }
});

test('a kept-alive connection the endpoint closes under a request (its idle timeout): an idempotent bodyless request goes once more on a new connection; a POST fails as a reset', async () => {
  // Each connection answers its first request and closes under the second, unanswered: the race of
  // an endpoint closing an idle connection as the next request goes out.
  const server = await serve((s: net.Socket) => {
    let n = 0;
    s.on('data', (d) => {
      if (++n === 1) s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${d.length}\r\n\r\n${d.toString('latin1')}`);
      else s.destroy();
    });
  }, true);
  const pool = new H1Upstream(opener(server.port));
  const get = (path: string) => pool.send({ head: head(`GET ${path} HTTP/1.1\nhost: svc\n\n`), replayable: Buffer.alloc(0), isHead: false, idempotent: true }).result;
  try {
    assert.equal((await read(await get('/1'))).status, 200);
    const second = await read(await get('/2'));
    assert.equal(second.status, 200);
    assert.match(second.body, /^GET \/2 /, 'the request answered on the new connection is the one sent again');
    assert.equal(server.connections(), 2);
    // Not idempotent: the pool does not send it again.
    await assert.rejects(pool.send({ head: head('POST /3 HTTP/1.1\nhost: svc\ncontent-length: 0\n\n'), replayable: Buffer.alloc(0), isHead: false, idempotent: false }).result, /closed the connection|ECONNRESET/);
    // Sent again once only: a fresh connection that also closes under it is a failure.
    const closer = await serve((s: net.Socket) => { s.once('data', () => s.destroy()); }, true);
    const once = new H1Upstream(opener(closer.port));
    try {
      await assert.rejects(once.send({ head: head('GET / HTTP/1.1\nhost: svc\n\n'), replayable: Buffer.alloc(0), isHead: false, idempotent: true }).result, /closed the connection|ECONNRESET/);
      assert.equal(closer.connections(), 1, 'a request on a fresh connection is not sent again');
    } finally { once.destroy(); await closer.close(); }
  } finally {
    pool.destroy();
    await server.close();
  }
});
