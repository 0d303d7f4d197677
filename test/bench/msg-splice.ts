/**
 * Prototype measurement: same-node splicing from the pods' own sockets with sk_msg
 * (bpf/weft_msg_splice.c, the proxy in msg-splice-proxy.ts) against direct and against the same
 * proxy relaying in user space, on one lab node, pod A -> pod B, ROUNDS alternated rounds:
 *   (a0) direct before the sockops program is attached (the pods' sockets in no sockhash);
 *   (a) direct, no proxy (the pods' sockets in the sockhash, their sendmsg through the verdict);
 *   (r) the proxy relaying in user space;
 *   (m) the same proxy with the sk_msg verdict: once a pod has nothing on its way through the proxy,
 *       its sendmsg() puts its bytes straight out of the proxy's socket to the other pod.
 * Prints bulk Gb/s (1 GiB download, size checked) with the proxy's CPU s/GiB, keep-alive req/s with
 * p50/p99 (wrk -t1 -c16, failures counted) with its CPU µs/request, the whole host's busy CPU per GiB
 * and per request (the pods' sendmsg() does the sk_msg work, charged to them), and the kernel's counters.
 * What the agent ships is bpf/weft_splice.c (sk_skb at the proxy's sockets, docs/splice.md); this
 * measures whether the sk_msg design is worth building into it. Usage: node dist/test/bench/msg-splice.js [rounds]
 */
import { type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { WEFT_NODE_FLAGS } from '../../agent/node-flags';
import { Lab, type LabNode, type LabPod } from '../../agent/sandbox';
import { BULK_BYTES, cpuTicks, HTTP_SERVER, TICK_S, wrk } from './load';

const PORTS = { pod: 8080, podEcho: 9090, plain: 15121, splice: 15122, echo: 15123 };

/** Pod B: echoes every byte back, half-close kept (its end follows the client's). */
const ECHO_SERVER = `require('net').createServer({ allowHalfOpen: true }, (s) => s.pipe(s)).listen(${PORTS.podEcho}, () => console.log('listening'));`;

/**
 * Pod A: writes ~32 MiB of random bytes in bursts of 1 B-256 KiB with pauses of 0-3 ms between them
 * (so the verdict can switch mid-stream, while echoes are still on their way back), half-closes,
 * and compares the hash and length of what came back with what it sent.
 */
const ECHO_CLIENT = (host: string, port: number) => `
const { createHash, randomBytes, randomInt } = require('crypto');
const s = require('net').connect({ host: '${host}', port: ${port}, allowHalfOpen: true });
const sent = createHash('sha256'), got = createHash('sha256');
let nSent = 0, nGot = 0, bursts = 0;
s.on('data', (c) => { got.update(c); nGot += c.length; });
s.on('end', () => { const a = sent.digest('hex'), b = got.digest('hex'); console.log(JSON.stringify({ nSent, nGot, bursts, same: a === b && nSent === nGot })); });
s.on('error', (e) => { console.log(JSON.stringify({ error: e.message, nSent, nGot })); process.exit(1); });
const next = () => {
  if (nSent >= 32 * 1024 * 1024) return void s.end();
  const b = randomBytes(randomInt(1, 256 * 1024)); sent.update(b); nSent += b.length; bursts++;
  const go = () => setTimeout(next, randomInt(0, 4));
  if (s.write(b)) go(); else s.once('drain', go);
};
s.on('connect', next);
`;
const ROUNDS = Number(process.argv[2] ?? 2);

interface Row { name: string; gbps: number; sPerGiB: number; hostSPerGiB: number; rps: number; p50: number; p99: number; usPerReq: number; hostUsPerReq: number; failed: number }

/** The host's busy CPU ticks, all CPUs (everything but idle and iowait): what the pods' own sendmsg() now does is charged to them, not to the proxy. */
function hostBusyTicks(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return f.slice(0, 8).reduce((x, y) => x + y, 0) - f[3]! - f[4]!;
}

async function measure(name: string, client: LabPod, base: string, pids: number[]): Promise<Row> {
  const warm = await client.exec('curl', ['-sf', '-o', '/dev/null', `${base}/`], { timeoutMs: 10_000 });
  if (warm.code !== 0) throw new Error(`${name}: warm-up request failed: ${warm.stderr}`);
  let t0 = cpuTicks(pids);
  let h0 = hostBusyTicks();
  const bulk = await client.exec('curl', ['-s', '-o', '/dev/null', '-w', '%{speed_download} %{size_download}', `${base}/bulk?bytes=${BULK_BYTES}`], { timeoutMs: 120_000 });
  const bulkTicks = cpuTicks(pids) - t0;
  const bulkHost = hostBusyTicks() - h0;
  const [speed, size] = bulk.stdout.trim().split(' ').map(Number);
  if (size !== BULK_BYTES) throw new Error(`${name}: bulk moved ${size} of ${BULK_BYTES} bytes`);
  t0 = cpuTicks(pids);
  h0 = hostBusyTicks();
  const ka = await wrk(client, `${base}/`, []);
  const kaTicks = cpuTicks(pids) - t0;
  const kaHost = hostBusyTicks() - h0;
  return { name, gbps: (speed! * 8) / 1e9, sPerGiB: pids.length ? (bulkTicks * TICK_S) / (BULK_BYTES / 2 ** 30) : NaN, hostSPerGiB: (bulkHost * TICK_S) / (BULK_BYTES / 2 ** 30),
    rps: ka.rps, p50: ka.p50, p99: ka.p99, usPerReq: pids.length ? (kaTicks * TICK_S * 1e6) / ka.requests : NaN, hostUsPerReq: (kaHost * TICK_S * 1e6) / ka.requests, failed: ka.failed };
}

async function startProxy(node: LabNode, server: LabPod, cgroups: string[]): Promise<{ child: ChildProcess; stats(): Promise<string>; stop(): Promise<void> }> {
  const child = node.spawn(process.execPath, [...WEFT_NODE_FLAGS, join(__dirname, 'msg-splice-proxy.js'), node.ip, server.ip, String(PORTS.pod), String(PORTS.plain), String(PORTS.splice),
    String(PORTS.echo), String(PORTS.podEcho), ...cgroups]);
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  createInterface({ input: child.stdout! }).on('line', (l) => { lines.push(l); waiters.splice(0).forEach((w) => w()); });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  void exited.then(() => { if (child.exitCode !== 0) console.error(`msg-splice proxy exited with ${child.exitCode}:\n${err}`); });
  const next = (): Promise<string> => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`msg-splice proxy: no answer in 15 s:\n${err}`)), 15_000);
    void exited.then(() => { clearTimeout(timer); reject(new Error(`msg-splice proxy exited (${child.exitCode}):\n${err}`)); });
    const take = (): void => { const l = lines.shift(); if (l === undefined) return void waiters.push(take); clearTimeout(timer); resolve(l); };
    take();
  });
  await next();
  return { child, stats: () => { child.stdin!.write('stats\n'); return next(); }, async stop() { child.kill('SIGTERM'); await exited; } };
}

async function main(): Promise<void> {
  const lab = await Lab.create({ name: process.env.WEFT_BENCH_LAB ?? 'msgsplice' });
  try {
    const node = await lab.node('n1');
    const a = await node.pod('client', { namespace: 'bench' });
    const b = await node.pod('server', { namespace: 'bench' });
    const srv = b.spawn(process.execPath, ['-e', HTTP_SERVER]);
    await new Promise<void>((r) => srv.stdout!.once('data', () => r()));
    const echo = b.spawn(process.execPath, ['-e', ECHO_SERVER]);
    await new Promise<void>((r) => echo.stdout!.once('data', () => r()));
    const rows: Row[] = [];
    // Direct before the sockops program exists: what having every pod socket in the sockhash costs.
    rows.push(await measure('(a0) direct, no sockops', a, `http://${b.ip}:${PORTS.pod}`, []));
    const proxy = await startProxy(node, b, [a.cgroupPath, b.cgroupPath]);
    try {
      const pid = [proxy.child.pid!];
      const contenders: Array<[string, string, number[]]> = [
        ['(a) direct', `http://${b.ip}:${PORTS.pod}`, []],
        ['(r) proxy, user-space relay', `http://${node.ip}:${PORTS.plain}`, pid],
        ['(m) proxy, sk_msg from the pods', `http://${node.ip}:${PORTS.splice}`, pid],
      ];
      for (let r = 0; r < ROUNDS; r++) for (const [name, url, pids] of (r % 2 === 0 ? contenders : [...contenders].reverse())) rows.push(await measure(name, a, url, pids));
      console.log(`proxy: ${await proxy.stats()}`);
      // Integrity: bursts both ways through a connection the verdict switches mid-stream.
      const before = JSON.parse(await proxy.stats()) as { kernel: { switched: number } };
      for (let i = 0; i < 3; i++) {
        const r = await a.exec(process.execPath, ['-e', ECHO_CLIENT(node.ip, PORTS.echo)], { timeoutMs: 120_000 });
        const out = JSON.parse(r.stdout.trim() || '{}') as { same?: boolean; nSent?: number; bursts?: number };
        console.log(`integrity ${i + 1}: ${r.stdout.trim()}`);
        if (!out.same) throw new Error(`the echoed stream differs from the one sent: ${r.stdout} ${r.stderr}`);
      }
      const after = JSON.parse(await proxy.stats()) as { kernel: { switched: number } };
      console.log(`integrity: 3 connections, ${after.kernel.switched - before.kernel.switched} pod sockets switched to sk_msg meanwhile`);
    } finally {
      await proxy.stop();
    }
    console.log(`\n# same node, pod A -> pod B: 1 GiB bulk, wrk -t1 -c16 keep-alive; ${ROUNDS} alternated rounds`);
    console.log(['path'.padEnd(34), 'bulk Gb/s', 'proxy s/GiB', 'host s/GiB', 'keep-alive req/s', 'p50 ms', 'p99 ms', 'proxy µs/req', 'host µs/req', 'failed'].join(' | '));
    for (const r of rows) console.log([r.name.padEnd(34), r.gbps.toFixed(2), r.sPerGiB.toFixed(2), r.hostSPerGiB.toFixed(2), r.rps.toFixed(0), r.p50.toFixed(3), r.p99.toFixed(3), r.usPerReq.toFixed(1), r.hostUsPerReq.toFixed(1), r.failed].join(' | '));
  } finally {
    await lab.close();
  }
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
