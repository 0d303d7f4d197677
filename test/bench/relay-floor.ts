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
 *
 * WEFT_FLOOR_ROUNDS (default 3) rounds of WRK_SECONDS each per shape.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { cpuTicks, TICK_S, WRK_SECONDS } from './load';
import { makeCerts } from './hop-lab';

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
  const r = spawnSync('wrk', ['-t1', '-c16', `-d${WRK_SECONDS}s`, '-H', 'Connection: close', `http://127.0.0.1:${port}/`], { encoding: 'utf8', timeout: (WRK_SECONDS + 20) * 1000 });
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
  } finally {
    for (const c of children) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) main().catch((e) => { console.error(e); process.exitCode = 1; });
