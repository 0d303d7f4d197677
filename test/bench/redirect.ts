/**
 * Datapath benchmark: the same two pods, first connected directly (namespace not enrolled), then
 * through the eBPF redirect and the node proxy. Prints each number and the captured/direct ratio,
 * measured in the same run, plus the agent's memory idle and holding 1,000 captured connections.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, LabPod } from '../../agent/sandbox';
import { startLocalAgent, WEFT_CLI } from '../../agent/sandbox/weft-agent';
import { spawnSync } from 'node:child_process';

const SERVER = `
const net = require('net');
net.createServer((s) => {
  s.once('data', (d) => {
    const cmd = d.toString()[0];
    if (cmd === 'L') { s.end('x'); return; }                      // latency: first byte back, close
    if (cmd === 'H') { s.write('x'); s.on('data', () => {}); return; } // hold: one byte, keep open
    if (cmd === 'B') {                                             // bulk: send N bytes
      let left = Number(d.toString().slice(1)); const chunk = Buffer.alloc(256 * 1024, 7);
      const pump = () => { while (left > 0) { const c = left >= chunk.length ? chunk : chunk.subarray(0, left); left -= c.length; if (!s.write(c)) return s.once('drain', pump); } s.end(); };
      pump();
    }
  });
  s.on('error', () => {});
}).listen(9000, '0.0.0.0', () => console.log('listening'));`;

const CLIENT = `
const net = require('net');
const [mode, host, arg] = process.argv.slice(1);
const now = () => Number(process.hrtime.bigint()) / 1e6;
async function latency(n) {
  const ts = [];
  for (let i = 0; i < n; i++) {
    const t0 = now();
    await new Promise((res, rej) => { const s = net.connect(9000, host, () => s.write('L')); s.once('data', () => { ts.push(now() - t0); s.destroy(); res(); }); s.on('error', rej); });
  }
  ts.sort((a, b) => a - b);
  return { p50: ts[Math.floor(n * 0.5)], p99: ts[Math.floor(n * 0.99)] };
}
async function bulk(bytes) {
  const t0 = now(); let got = 0;
  await new Promise((res, rej) => { const s = net.connect(9000, host, () => s.write('B' + bytes)); s.on('data', (d) => got += d.length); s.on('end', res); s.on('error', rej); });
  if (got !== bytes) throw new Error('short read ' + got);
  return { gbps: (bytes * 8) / ((now() - t0) / 1000) / 1e9 };
}
async function hold(n) {
  const socks = [];
  for (let i = 0; i < n; i++) socks.push(await new Promise((res, rej) => { const s = net.connect(9000, host, () => s.write('H')); s.once('data', () => res(s)); s.on('error', rej); }));
  console.log(JSON.stringify({ held: socks.length }));
  process.stdin.once('data', () => { socks.forEach((s) => s.destroy()); process.exit(0); });
}
(async () => {
  if (mode === 'latency') console.log(JSON.stringify(await latency(Number(arg))));
  else if (mode === 'bulk') console.log(JSON.stringify(await bulk(Number(arg))));
  else await hold(Number(arg));
})().catch((e) => { console.error(e.message); process.exit(1); });`;

const CONNECTS = 2000;
const BULK_BYTES = 1024 * 1024 * 1024;

async function measure(client: LabPod, host: string): Promise<{ p50: number; p99: number; gbps: number }> {
  const lat = await client.exec(process.execPath, ['-e', CLIENT, 'latency', host, String(CONNECTS)], { timeoutMs: 120_000 });
  if (lat.code !== 0) throw new Error(`latency client failed: ${lat.stderr}`);
  const bulk = await client.exec(process.execPath, ['-e', CLIENT, 'bulk', host, String(BULK_BYTES)], { timeoutMs: 120_000 });
  if (bulk.code !== 0) throw new Error(`bulk client failed: ${bulk.stderr}`);
  return { ...JSON.parse(lat.stdout), ...JSON.parse(bulk.stdout) };
}

function rssMiB(pid: number): number {
  const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
  return kb / 1024;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-bench-'));
  const lab = await Lab.create({ name: 'bench' });
  try {
    const node = await lab.node('n1');
    const a = await node.pod('client', { namespace: 'bench' });
    const b = await node.pod('server', { namespace: 'bench' });
    const config = join(dir, 'mesh.yaml');
    writeFileSync(config, lab.yaml({ meshNamespaces: [] }));
    const server = b.spawn(process.execPath, ['-e', SERVER]);
    await new Promise<void>((r) => server.stdout!.once('data', () => r()));
    const agent = startLocalAgent(node, config);
    await agent.ready;

    const direct = await measure(a, b.ip);
    writeFileSync(config, lab.yaml({ meshNamespaces: ['bench'] }));
    await new Promise((r) => setTimeout(r, 500));
    const captured = await measure(a, b.ip);
    if (!agent.accessLog.some((l) => l['dst.addr'] === `${b.ip}:9000`)) throw new Error('the captured run did not go through the proxy');

    const idle = rssMiB(agent.process.pid!);
    const holder = a.spawn(process.execPath, ['-e', CLIENT, 'hold', b.ip, '1000']);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('holding 1,000 connections took over 60 s')), 60_000);
      holder.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('held')) { clearTimeout(t); resolve(); } });
    });
    const loaded = rssMiB(agent.process.pid!);
    holder.stdin!.write('x\n');
    await agent.kill('SIGTERM');

    const row = (name: string, d: number, c: number, unit: string) =>
      console.log(`${name.padEnd(34)} direct ${d.toFixed(3).padStart(9)} ${unit.padEnd(5)} captured ${c.toFixed(3).padStart(9)} ${unit.padEnd(5)} ratio ${(c / d).toFixed(2)}`);
    console.log(`\n# redirect benchmark: same pods, ${CONNECTS} connects, ${BULK_BYTES / 2 ** 20} MiB bulk`);
    row('connect + first byte p50', direct.p50, captured.p50, 'ms');
    row('connect + first byte p99', direct.p99, captured.p99, 'ms');
    row('bulk throughput', direct.gbps, captured.gbps, 'Gb/s');
    console.log(`${'agent RSS'.padEnd(34)} idle ${idle.toFixed(1)} MiB, with 1000 captured connections ${loaded.toFixed(1)} MiB, ratio ${(loaded / idle).toFixed(2)}`);
  } finally {
    spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', `${lab.name}-n1`]);
    await lab.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
