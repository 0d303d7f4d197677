import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import type * as net from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Writable } from 'node:stream';
import { listen, startProxy } from './http-fixture';

const MiB = 1 << 20;
const CHUNK = Buffer.alloc(64 * 1024, 0x61);

/** Largest RSS and heap seen, sampled as the test goes. */
function sampler() {
  const start = process.memoryUsage();
  const peak = { rss: start.rss, heap: start.heapUsed };
  return {
    sample: () => { const m = process.memoryUsage(); peak.rss = Math.max(peak.rss, m.rss); peak.heap = Math.max(peak.heap, m.heapUsed); },
    growth: () => ({ rssMiB: (peak.rss - start.rss) / MiB, heapMiB: (peak.heap - start.heapUsed) / MiB }),
  };
}

/** Writes `total` bytes with backpressure; after every write notes how far ahead of the application the client is. */
async function writeAll(w: Writable, total: number, onWrite: () => void): Promise<void> {
  for (let sent = 0; sent < total; sent += CHUNK.length) {
    const ok = w.write(CHUNK);
    onWrite();
    if (!ok) await new Promise((r) => w.once('drain', r));
  }
  w.end();
}

/**
 * A reader that stops for a while after every `every` bytes: without backpressure through the
 * proxy, the client would run ahead by what it can send in that time.
 */
function stallingReader(stream: NodeJS.ReadableStream, every: number, received: { n: number }, done: () => void) {
  let next = every;
  stream.on('data', (d: Buffer) => {
    received.n += d.length;
    if (received.n >= next) {
      next += every;
      stream.pause();
      void sleep(100).then(() => stream.resume());
    }
  });
  stream.on('end', done);
}

test('HTTP/1: a 1 GiB upload streams through with backpressure; the heap does not grow with it', async (t) => {
  const total = 1024 * MiB;
  const received = { n: 0 };
  const server = http.createServer((req, res) => stallingReader(req, 128 * MiB, received, () => res.end(String(received.n))));
  const port = await listen(server);
  const proxy = await startProxy({ appPort: port });
  const mem = sampler();
  let sent = 0;
  let maxAhead = 0;
  try {
    global.gc?.();
    const answer = await new Promise<string>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: proxy.port, method: 'PUT', path: '/upload', headers: { 'content-length': String(total) } }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => { body += d.toString(); });
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      void writeAll(req, total, () => { sent += CHUNK.length; maxAhead = Math.max(maxAhead, sent - received.n); mem.sample(); });
    });
    assert.equal(answer, String(total));
    const g = mem.growth();
    t.diagnostic(`1 GiB upload: RSS grew at most ${g.rssMiB.toFixed(1)} MiB, heap ${g.heapMiB.toFixed(1)} MiB; the client ran at most ${(maxAhead / MiB).toFixed(1)} MiB ahead of the application`);
    assert.ok(maxAhead < 64 * MiB, `the client ran ${(maxAhead / MiB).toFixed(1)} MiB ahead of the application: backpressure is not reaching it`);
    assert.ok(g.rssMiB < 200, `RSS grew ${g.rssMiB.toFixed(1)} MiB`);
  } finally { await proxy.close(); server.closeAllConnections(); server.close(); }
});

test('HTTP/2: a 100 MiB request body streams through within flow control; memory stays bounded', async (t) => {
  const total = 100 * MiB;
  const received = { n: 0 };
  const server = http2.createServer();
  server.on('stream', (stream) => stallingReader(stream, 16 * MiB, received, () => { stream.respond({ ':status': 200 }); stream.end(String(received.n)); }));
  const port = await listen(server as unknown as net.Server);
  const proxy = await startProxy({ appPort: port, protocol: 'http2' });
  const client = http2.connect(`http://127.0.0.1:${proxy.port}`);
  const mem = sampler();
  let sent = 0;
  let maxAhead = 0;
  try {
    const answer = await new Promise<string>((resolve, reject) => {
      const req = client.request({ ':method': 'POST', ':path': '/big' });
      let body = '';
      req.on('data', (d: Buffer) => { body += d.toString(); });
      req.on('end', () => resolve(body));
      req.on('error', reject);
      void writeAll(req, total, () => { sent += CHUNK.length; maxAhead = Math.max(maxAhead, sent - received.n); mem.sample(); });
    });
    assert.equal(answer, String(total));
    const g = mem.growth();
    t.diagnostic(`100 MiB HTTP/2 body: RSS grew at most ${g.rssMiB.toFixed(1)} MiB, heap ${g.heapMiB.toFixed(1)} MiB; the client ran at most ${(maxAhead / MiB).toFixed(1)} MiB ahead of the application`);
    assert.ok(maxAhead < 16 * MiB, `the client ran ${(maxAhead / MiB).toFixed(1)} MiB ahead of the application: flow control is not reaching it`);
    assert.ok(g.rssMiB < 100, `RSS grew ${g.rssMiB.toFixed(1)} MiB`);
  } finally { client.destroy(); await proxy.close(); server.close(); }
});
