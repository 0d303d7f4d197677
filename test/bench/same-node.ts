/**
 * Same-node pod A → pod B: is delivering without a TLS hop (what Weft ships for a 'local' route)
 * worth it against the alternative, an HBONE hop from the node proxy to itself? In one run, on the
 * same two pods of one lab node:
 *
 *   (a)  direct: no mesh;
 *   (b)  Weft as shipped: eBPF capture, the outbound proxy delivers to pod B itself;
 *   (b′) a bench proxy (same-node-relay.ts) relaying plainly, as the outbound proxy does for 'local';
 *   (c)  the same bench proxy carrying the bytes through a real HBONE hop on the node: its
 *        HbonePool to its own HboneServer on the node's address, mutual TLS 1.3 with workload
 *        certificates from a real CertificateAuthority, then to pod B.
 *
 * (c) against (b′) is the cost of the TLS hop and nothing else (same process, same relay code, no
 * capture or access logs in either); (b) against (a) is the whole mesh, for context. Prints bulk
 * Gb/s with the proxy's CPU seconds per GiB, keep-alive req/s with p50/p99 (wrk), new-connection-
 * per-request req/s, the proxy's CPU µs per request, and the ratios.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { WEFT_NODE_FLAGS } from '../../agent/node-flags';
import { Lab, LabNode, LabPod } from '../../agent/sandbox';
import { startLocalAgent, WEFT_CLI } from '../../agent/sandbox/weft-agent';
import { BULK_BYTES, cpuTicks, HTTP_SERVER, TICK_S, WRK_SECONDS, wrk } from './load';
import { CLIENT_ID } from './same-node-relay';

const PORTS = { pod: 8080, plain: 15101, hbone: 15102, tunnel: 15108 };

interface Row {
  name: string;
  gbps: number;
  cpuSPerGiB: number;
  kaRps: number;
  p50: number;
  p99: number;
  kaCpuUsPerReq: number;
  closeRps: number;
  closeCpuUsPerReq: number;
}

/** One request outside the measurement: (c) opens its TLS session here, (b) has its state. */
async function warmUp(client: LabPod, base: string): Promise<void> {
  const r = await client.exec('curl', ['-sf', '-o', '/dev/null', `${base}/`], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`warm-up request to ${base} failed (${r.code}): ${r.stderr}`);
}

async function measure(name: string, client: LabPod, base: string, pids: number[]): Promise<Row> {
  await warmUp(client, base);
  const perReq = (ticks: number, requests: number) => (pids.length ? (ticks * TICK_S * 1e6) / requests : NaN);
  let t0 = cpuTicks(pids);
  const bulk = await client.exec('curl', ['-s', '-o', '/dev/null', '-w', '%{speed_download} %{size_download}', `${base}/bulk?bytes=${BULK_BYTES}`], { timeoutMs: 120_000 });
  const bulkTicks = cpuTicks(pids) - t0;
  const [speed, size] = bulk.stdout.trim().split(' ').map(Number);
  if (size !== BULK_BYTES) throw new Error(`${name}: bulk transfer moved ${size} of ${BULK_BYTES} bytes (${bulk.stderr})`);
  t0 = cpuTicks(pids);
  const ka = await wrk(client, `${base}/`, []);
  const kaTicks = cpuTicks(pids) - t0;
  t0 = cpuTicks(pids);
  const close = await wrk(client, `${base}/`, ['-H', 'Connection: close']);
  const closeTicks = cpuTicks(pids) - t0;
  return {
    name, gbps: (speed! * 8) / 1e9, cpuSPerGiB: pids.length ? (bulkTicks * TICK_S) / (BULK_BYTES / 2 ** 30) : NaN,
    kaRps: ka.rps, p50: ka.p50, p99: ka.p99, kaCpuUsPerReq: perReq(kaTicks, ka.requests),
    closeRps: close.rps, closeCpuUsPerReq: perReq(closeTicks, close.requests),
  };
}

/** The bench proxy (b′ and c) inside the node; resolves once it listens. */
async function startRelay(node: LabNode, server: LabPod, dataDir: string): Promise<{ process: ChildProcess; stats(): Promise<Record<string, unknown>>; stop(): Promise<void> }> {
  const child = node.spawn(process.execPath, [...WEFT_NODE_FLAGS, join(__dirname, 'same-node-relay.js'), node.ip, server.ip,
    String(PORTS.pod), dataDir, String(PORTS.plain), String(PORTS.hbone), String(PORTS.tunnel)]);
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  createInterface({ input: child.stdout! }).on('line', (l) => { lines.push(l); waiters.splice(0).forEach((w) => w()); });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const nextLine = (what: string) => new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`bench proxy: no ${what} within 15 s:\n${err}`)), 15_000);
    const take = () => { const l = lines.shift(); if (l === undefined) return void waiters.push(take); clearTimeout(timer); resolve(JSON.parse(l) as Record<string, unknown>); };
    void exited.then(() => { clearTimeout(timer); reject(new Error(`bench proxy exited (${child.exitCode}):\n${err}`)); });
    take();
  });
  await nextLine('ready line');
  return {
    process: child,
    stats: () => { child.stdin!.write('stats\n'); return nextLine('stats'); },
    async stop() { child.kill('SIGTERM'); await exited; },
  };
}

function report(rows: Row[]): void {
  const [direct, weft, plain, hbone] = rows as [Row, Row, Row, Row];
  const baseline = new Map([[weft, direct], [hbone, plain]]);
  const cell = (r: Row, v: (r: Row) => number, digits: number) => {
    const value = v(r);
    if (Number.isNaN(value)) return '—';
    const b = baseline.get(r);
    const bv = b && v(b);
    return value.toFixed(digits) + (bv && !Number.isNaN(bv) ? ` (${(value / bv).toFixed(2)}x)` : '');
  };
  console.log(`\n# same-node pod A -> pod B: ${BULK_BYTES / 2 ** 20} MiB bulk, wrk -t1 -c16 -d${WRK_SECONDS}s; (b) against (a), (c) against (b'), all in this run`);
  console.log(['path'.padEnd(30), 'bulk Gb/s', 'proxy CPU s/GiB', 'keep-alive req/s', 'p50 ms', 'p99 ms', 'proxy CPU us/req', 'new-conn req/s', 'proxy CPU us/new-conn req'].join(' | '));
  for (const r of rows) {
    console.log([r.name.padEnd(30), cell(r, (x) => x.gbps, 2), cell(r, (x) => x.cpuSPerGiB, 2), cell(r, (x) => x.kaRps, 0), cell(r, (x) => x.p50, 3),
      cell(r, (x) => x.p99, 3), cell(r, (x) => x.kaCpuUsPerReq, 1), cell(r, (x) => x.closeRps, 0), cell(r, (x) => x.closeCpuUsPerReq, 1)].join(' | '));
  }
  const x = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
  console.log(`TLS hop (c)/(b'): bulk ${x(hbone.gbps, plain.gbps)}, CPU per GiB ${x(hbone.cpuSPerGiB, plain.cpuSPerGiB)}, keep-alive req/s ${x(hbone.kaRps, plain.kaRps)}, ` +
    `CPU per request ${x(hbone.kaCpuUsPerReq, plain.kaCpuUsPerReq)}, new-conn req/s ${x(hbone.closeRps, plain.closeRps)}, CPU per new-conn request ${x(hbone.closeCpuUsPerReq, plain.closeCpuUsPerReq)}`);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-same-node-bench-'));
  const lab = await Lab.create({ name: 'samenode' });
  try {
    const node = await lab.node('n1');
    const a = await node.pod('client', { namespace: 'bench', serviceAccount: 'client' });
    const b = await node.pod('server', { namespace: 'bench', serviceAccount: 'server' });
    const srv = b.spawn(process.execPath, ['-e', HTTP_SERVER]);
    await new Promise<void>((r) => srv.stdout!.once('data', () => r()));
    const rows: Row[] = [];

    rows.push(await measure('(a) direct', a, `http://${b.ip}:${PORTS.pod}`, []));

    // (b′) and (c) before the agent runs: nothing captures pod A's connections to the bench proxy.
    const relay = await startRelay(node, b, join(dir, 'relay-ca'));
    const plain = await measure("(b') bench proxy, plain relay", a, `http://${node.ip}:${PORTS.plain}`, [relay.process.pid!]);
    const hbone = await measure('(c) bench proxy, HBONE mTLS', a, `http://${node.ip}:${PORTS.hbone}`, [relay.process.pid!]);
    const stats = await relay.stats();
    await relay.stop();
    if (!((stats.plain as number) > 0 && (stats.hbone as number) > 0 && (stats.streams as number) > 0 && (stats.peers as string[]).includes(CLIENT_ID))) {
      throw new Error(`the bench proxy did not carry both paths as meant: ${JSON.stringify(stats)}`);
    }

    const config = join(dir, 'mesh.yaml');
    writeFileSync(config, lab.yaml({ meshNamespaces: ['bench'] }));
    const agent = startLocalAgent(node, config);
    await agent.ready;
    const weft = await measure('(b) Weft as shipped (no TLS)', a, `http://${b.ip}:${PORTS.pod}`, [agent.process.pid!]);
    const line = agent.accessLog.find((l) => l['dst.addr'] === `${b.ip}:${PORTS.pod}`);
    await agent.kill('SIGTERM');
    if (!line) throw new Error('the Weft run did not go through the node proxy');
    if (line['dst.hbone_addr'] !== undefined) throw new Error(`the Weft run took a tunnel, not the same-node path: ${JSON.stringify(line)}`);

    rows.push(weft, plain, hbone);
    report(rows);
    console.log(`bench proxy: ${stats.plain} plain and ${stats.hbone} HBONE connections, ${stats.streams} CONNECT streams over ${stats.sessions} pooled session(s), ` +
      `${stats.streamErrors} streams and ${stats.relayErrors} relays ended in error (wrk cuts its connections when it stops)`);
  } finally {
    // only this lab's node: other labs may have agents on this host
    spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', `${lab.name}-n1`]);
    await lab.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
