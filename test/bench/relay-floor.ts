/**
 * Node.js's own floor for one new connection through a proxy (docs/new-connections.md): what a
 * relay costs per connection before any Weft logic, on loopback, measured the way
 * new-connections.ts measures the agents (user+system CPU of the relay processes from
 * /proc/<pid>/stat around `wrk -H 'Connection: close'`, divided by the connections).
 *
 *   tcp relay   one process: accept, net.connect to the server, pipe both ways (a C proxy's shape)
 *   h2 pair     two processes, Weft's shape across nodes: the first accepts and opens an HTTP/2
 *               CONNECT stream on one pooled TLS session to the second, which connects to the
 *               server and pipes; the sum of both is comparable to the two agents' sum
 *   frames pair the same shape and the same HTTP/2 frames on the wire, framed by a few lines of
 *               JavaScript over the TLS socket instead of node:http2 (no Http2Stream, no nghttp2):
 *               what a framer of Weft's own would cost at best (docs/new-connections.md)
 *
 * WEFT_FLOOR_ROUNDS (default 3) rounds of WRK_SECONDS each per shape; WEFT_FLOOR_KEEPALIVE=1 drops
 * `Connection: close`, so the numbers are per keep-alive request instead of per connection.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { cpuTicks, TICK_S, WRK_SECONDS } from './load';
import { makeCerts } from './hop-lab';

const KEEP_ALIVE = process.env.WEFT_FLOOR_KEEPALIVE === '1';
const ROUNDS = Math.max(1, Math.min(10, Number(process.env.WEFT_FLOOR_ROUNDS ?? 3)));

const SERVER = `
require('http').createServer((req, res) => res.end('ok')).listen(0, '127.0.0.1', function () { console.log(this.address().port); });`;

const TCP_RELAY = `
const net = require('net');
const [port] = process.argv.slice(1);
net.createServer({ allowHalfOpen: true, noDelay: true }, (c) => {
  const u = net.connect({ host: '127.0.0.1', port: Number(port), allowHalfOpen: true, noDelay: true });
  c.on('error', () => u.destroy()); u.on('error', () => c.destroy());
  c.pipe(u); u.pipe(c);
}).listen(0, '127.0.0.1', function () { console.log(this.address().port); });`;

const H2_IN = `
const net = require('net'), http2 = require('http2'), fs = require('fs');
const [port, dir] = process.argv.slice(1);
const s = http2.createSecureServer({ key: fs.readFileSync(dir + '/server.key'), cert: fs.readFileSync(dir + '/server.crt'),
  ca: fs.readFileSync(dir + '/ca.pem'), requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' });
s.on('stream', (st, h) => {
  const u = net.connect({ host: '127.0.0.1', port: Number(port), allowHalfOpen: true, noDelay: true });
  u.on('connect', () => { st.respond({ ':status': 200 }); st.pipe(u); u.pipe(st); });
  u.on('error', () => st.destroyed || st.close()); st.on('error', () => u.destroy());
});
s.listen(0, '127.0.0.1', function () { console.log(this.address().port); });`;

const H2_OUT = `
const net = require('net'), http2 = require('http2'), fs = require('fs');
const [port, dir] = process.argv.slice(1);
let session;
const get = () => {
  if (session && !session.closed && !session.destroyed) return session;
  session = http2.connect('https://127.0.0.1:' + port, { key: fs.readFileSync(dir + '/client.key'), cert: fs.readFileSync(dir + '/client.crt'),
    ca: fs.readFileSync(dir + '/ca.pem'), checkServerIdentity: () => undefined, minVersion: 'TLSv1.3' });
  session.on('error', () => {});
  return session;
};
net.createServer({ allowHalfOpen: true, noDelay: true }, (c) => {
  const st = get().request({ ':method': 'CONNECT', ':authority': '127.0.0.1:' + port }, { endStream: false });
  st.on('response', () => { c.pipe(st); st.pipe(c); });
  st.on('error', () => c.destroy()); c.on('error', () => st.destroy());
}).listen(0, '127.0.0.1', function () { console.log(this.address().port); });`;


// A minimal HTTP/2 framer shared by both ends of the "frames pair": real frames (preface, SETTINGS,
// HEADERS with HPACK literals, DATA, RST_STREAM, WINDOW_UPDATE, PING), no node:http2 and no object per
// stream beyond a socket. Frames written in one tick leave as one TLS write (cork until nextTick);
// the TLS socket reads through `onread` into one buffer (no Readable, no 'data' event), as
// agent/core/pump.ts reads pod sockets. A floor, not a product: it trusts its peer (no window
// accounting on send, HPACK literals only, no Huffman), which real HBONE may not.
const FRAMER = `
const WIN = 1 << 24;
function framer(tls, onFrame, skip) {
  let buf = null; let corked = false;
  const uncork = () => { corked = false; tls.uncork(); };
  const send = (type, flags, id, payload) => {
    const n = payload ? payload.length : 0;
    const h = Buffer.allocUnsafe(9 + n);
    h[0] = n >>> 16; h[1] = (n >>> 8) & 255; h[2] = n & 255; h[3] = type; h[4] = flags; h.writeUInt32BE(id, 5);
    if (n) payload.copy(h, 9);
    if (!corked) { corked = true; tls.cork(); process.nextTick(uncork); }
    tls.write(h);
  };
  const onData = (d) => {
    if (skip) { const k = Math.min(skip, d.length); skip -= k; d = d.subarray(k); if (!d.length) return; }
    buf = buf ? Buffer.concat([buf, d]) : d;
    let o = 0;
    while (buf.length - o >= 9) {
      const n = (buf[o] << 16) | (buf[o + 1] << 8) | buf[o + 2];
      if (buf.length - o < 9 + n) break;
      onFrame(buf[o + 3], buf[o + 4], buf.readUInt32BE(o + 5) & 0x7fffffff, Buffer.from(buf.subarray(o + 9, o + 9 + n)));
      o += 9 + n;
    }
    buf = o === buf.length ? null : Buffer.from(buf.subarray(o));
  };
  if (tls.onreadTarget !== undefined) tls.onreadTarget.fn = onData; else tls.on('data', onData);
  const settings = Buffer.alloc(6); settings.writeUInt16BE(4, 0); settings.writeUInt32BE(WIN, 2);
  const wu = (id, n) => { const b = Buffer.allocUnsafe(4); b.writeUInt32BE(n, 0); send(8, 0, id, b); };
  let connRecv = 0;
  return {
    send, wu,
    hello() { send(4, 0, 0, settings); wu(0, WIN); },
    consumed(n) { connRecv += n; if (connRecv > WIN / 2) { wu(0, connRecv); connRecv = 0; } },
    data(id, chunk) { for (let i = 0; i < chunk.length; i += 16384) send(0, 0, id, chunk.subarray(i, i + 16384)); },
  };
}
// HPACK: literal without indexing, name indexed (static table) or literal; no Huffman either way.
function lit(nameIndex, value) { const v = Buffer.from(value, 'latin1'); return Buffer.concat([Buffer.from([nameIndex, v.length]), v]); }
function readLits(b) { const out = []; let o = 0; while (o < b.length) { const t = b[o++];
  if (t & 0x80) { out.push([t & 0x7f, null]); continue; }
  let name = t & 0x0f; if (!name) { const l = b[o++]; name = b.toString('latin1', o, o + l); o += l; }
  const l = b[o++]; out.push([name, b.toString('latin1', o, o + l)]); o += l; } return out; }
`;

const FRAMES_IN = FRAMER + `
const net = require('net'), tls = require('tls'), fs = require('fs');
const [port, dir] = process.argv.slice(1);
const ctx = tls.createSecureContext({ key: fs.readFileSync(dir + '/server.key'), cert: fs.readFileSync(dir + '/server.crt'),
  ca: fs.readFileSync(dir + '/ca.pem'), minVersion: 'TLSv1.3' });
const RB = Buffer.allocUnsafe(65536);
const s = net.createServer({ noDelay: true }, (raw) => {
  const target = { fn: null };
  const t = new tls.TLSSocket(raw, { isServer: true, secureContext: ctx, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['h2'] });
  // a server-side TLSSocket ignores the onread option (its handle is set up first): set it as net.Socket would
  const sy = Object.getOwnPropertySymbols(t);
  t[sy.find((x) => x.description === 'kBuffer')] = RB;
  t[sy.find((x) => x.description === 'kBufferCb')] = (n, b) => { target.fn(b.subarray(0, n)); };
  t._handle.useUserBuffer(RB);
  t.onreadTarget = target;
  t.on('error', () => {});
  const streams = new Map();
  const f = framer(t, (type, flags, id, p) => {
    if (type === 0) { const u = streams.get(id); f.consumed(p.length); if (!u) return;
      if (p.length) { u.write(p); u.recv += p.length; if (u.recv > (1 << 23)) { f.wu(id, u.recv); u.recv = 0; } }
      if (flags & 1) u.end(); return; }
    if (type === 1) { let auth = ''; for (const [n, v] of readLits(p)) if (n === 1) auth = v;
      const u = net.connect({ host: '127.0.0.1', port: Number(auth.slice(auth.lastIndexOf(':') + 1)), allowHalfOpen: true, noDelay: true });
      u.recv = 0; streams.set(id, u);
      u.on('connect', () => f.send(1, 4, id, Buffer.from([0x88])));
      u.on('data', (d) => f.data(id, d));
      u.on('end', () => f.send(0, 1, id, null));
      u.on('error', () => { const b = Buffer.alloc(4); b.writeUInt32BE(1, 0); f.send(3, 0, id, b); });
      u.on('close', () => streams.delete(id));
      return; }
    if (type === 3) { streams.get(id)?.destroy(); return; }
    if (type === 4 && !(flags & 1)) { f.send(4, 1, 0, null); return; }
    if (type === 6 && !(flags & 1)) { f.send(6, 1, 0, p); return; }
  }, 24); // the client's 24-byte preface comes before its first frame
  f.hello();
});
s.listen(0, '127.0.0.1', function () { console.log(this.address().port); });`;

const FRAMES_OUT = FRAMER + `
const net = require('net'), tls = require('tls'), fs = require('fs');
const [port, dir, target] = process.argv.slice(1);
let session;
const get = () => {
  if (session && !session.t.destroyed) return session;
  const target = { fn: null };
  const t = tls.connect({ host: '127.0.0.1', port: Number(port), key: fs.readFileSync(dir + '/client.key'), cert: fs.readFileSync(dir + '/client.crt'),
    ca: fs.readFileSync(dir + '/ca.pem'), checkServerIdentity: () => undefined, minVersion: 'TLSv1.3', ALPNProtocols: ['h2'],
    onread: { buffer: Buffer.allocUnsafe(65536), callback: (n, b) => { target.fn(b.subarray(0, n)); } } });
  t.onreadTarget = target;
  t.setNoDelay(true);
  const streams = new Map();
  const f = framer(t, (type, flags, id, p) => {
    const c = streams.get(id);
    if (type === 0) { f.consumed(p.length); if (!c) return;
      if (p.length) { c.write(p); c.recv += p.length; if (c.recv > (1 << 23)) { f.wu(id, c.recv); c.recv = 0; } }
      if (flags & 1) c.end(); return; }
    if (type === 1) { if (c) { c.resume(); } return; }
    if (type === 3) { c?.destroy(); return; }
    if (type === 4 && !(flags & 1)) { f.send(4, 1, 0, null); return; }
  }, 0);
  t.write('PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n');
  f.hello();
  session = { t, f, streams, next: 1 };
  t.on('error', () => {});
  return session;
};
net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (c) => {
  const s = get(); const id = s.next; s.next += 2;
  c.recv = 0; s.streams.set(id, c);
  s.f.send(1, 4, id, Buffer.concat([lit(2, 'CONNECT'), lit(1, '127.0.0.1:' + target)]));
  c.on('data', (d) => s.f.data(id, d));
  c.on('end', () => s.f.send(0, 1, id, null));
  c.on('error', () => { const b = Buffer.alloc(4); b.writeUInt32BE(8, 0); s.f.send(3, 0, id, b); });
  c.on('close', () => s.streams.delete(id));
}).listen(0, '127.0.0.1', function () { console.log(this.address().port); });`;

function start(script: string, args: string[], what: string, children: ChildProcess[]): Promise<{ pid: number; port: number }> {
  const p = spawn(process.execPath, ['-e', script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(p);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what} printed no port in 10 s`)), 10_000);
    createInterface({ input: p.stdout! }).once('line', (l) => { clearTimeout(t); resolve({ pid: p.pid!, port: Number(l) }); });
    p.once('exit', (code) => { clearTimeout(t); reject(new Error(`${what} exited (${code})`)); });
  });
}

function wrkClose(port: number): { rps: number; requests: number; failed: number } {
  const close = KEEP_ALIVE ? [] : ['-H', 'Connection: close'];
  const r = spawnSync('wrk', ['-t1', '-c16', `-d${WRK_SECONDS}s`, ...close, `http://127.0.0.1:${port}/`], { encoding: 'utf8', timeout: (WRK_SECONDS + 20) * 1000 });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1]);
  const requests = Number(/(\d+) requests in/.exec(r.stdout)?.[1]);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(r.stdout);
  if (!rps) throw new Error(`wrk gave no result on port ${port}:\n${r.stdout}\n${r.stderr}`);
  return { rps, requests, failed: sock ? sock.slice(1).reduce((s, v) => s + Number(v), 0) : 0 };
}

async function shape(name: string, entry: number, pids: number[]): Promise<void> {
  wrkClose(entry); // warm-up
  for (let i = 0; i < ROUNDS; i++) {
    const t0 = pids.map((p) => cpuTicks([p]));
    const r = wrkClose(entry);
    const us = pids.map((p, j) => ((cpuTicks([p]) - t0[j]!) * TICK_S * 1e6) / r.requests);
    console.log(`${name.padEnd(10)} round ${i + 1}: ${r.rps.toFixed(0)} conn/s (${r.requests} conns, ${r.failed} socket errors), CPU µs/conn ${us.map((u) => u.toFixed(1)).join(' + ')} = ${us.reduce((a, b) => a + b, 0).toFixed(1)}; load ${loadavg()[0]!.toFixed(2)}`);
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-relay-floor-'));
  const children: ChildProcess[] = [];
  try {
    makeCerts(dir);
    const server = await start(SERVER, [], 'server', children);
    const tcp = await start(TCP_RELAY, [String(server.port)], 'tcp relay', children);
    await shape('tcp relay', tcp.port, [tcp.pid]);
    const inb = await start(H2_IN, [String(server.port), dir], 'h2 inbound', children);
    const out = await start(H2_OUT, [String(inb.port), dir], 'h2 outbound', children);
    await shape('h2 pair', out.port, [out.pid, inb.pid]);
    const fin = await start(FRAMES_IN, [String(server.port), dir], 'frames inbound', children);
    const fout = await start(FRAMES_OUT, [String(fin.port), dir, String(server.port)], 'frames outbound', children);
    await shape('frames pair', fout.port, [fout.pid, fin.pid]);
  } finally {
    for (const c of children) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) main().catch((e) => { console.error(e); process.exitCode = 1; });
