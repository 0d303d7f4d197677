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
 *        certificates from a real CertificateAuthority, then to pod B;
 *   (d′) the same bench proxy splicing its two sockets in the kernel (spliceSockets, bpf/weft_splice.c);
 *   (e)  Weft with pod B's port declared TCP (a Service port named tcp-*): L4 only, so the
 *        connection is spliced in the kernel after authorization (docs/splice.md);
 *   (e′) the same with ProxyConfig spec.sameNodeSplice: false: relayed in user space.
 *
 * Each Weft row connects from a client pod of its own (same namespace and service account as pod
 * A): every captured connection of a pod goes to the proxy's one outbound port, so a Weft row after
 * another would start with the earlier rows' ~10,000 connections per client still in TIME_WAIT on
 * that port's ephemeral range (docs/new-connections.md), and its new-connection column measured the
 * client's port search. Direct and the bench proxy's rows each have a destination port of their own.
 * A Weft row's new-connection phase follows 2 s of unmeasured ones from another pod (WARM_SECONDS):
 * the agent is measured warm, as the bench proxy already is after its bulk and keep-alive phases.
 *
 * (c) and (d′) against (b′) are the cost of the TLS hop and the gain of splicing and nothing else
 * (same process, no capture or access logs); (b), (e) and (e′) against (a) are the whole mesh:
 * same-node spliced vs relayed vs direct (issue 11.4 targets (e) >= 0.5x direct in bulk and
 * >= 0.7x in keep-alive). HTTP over a port declared TCP is opaque bytes to Weft. Prints bulk
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

const PORTS = { pod: 8080, plain: 15101, hbone: 15102, tunnel: 15108, splice: 15103 };

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

/**
 * Unmeasured new connections right before a Weft row's new-connection phase, from a pod of their own
 * (`warm`, off the measured client's source ports): the phase then measures the agent warm. Without
 * them it carried the JIT's and the heap's warm-up of the per-connection path whenever the phases
 * before it had not run that path in user space: a spliced row (its bulk and keep-alive phases are
 * carried by the kernel) cost 483-519 µs per connection in its first 5 s of them and 386-432 after,
 * where the relayed row had warmed its relay in the keep-alive phase.
 */
const WARM_SECONDS = 2;

async function measure(name: string, client: LabPod, base: string, pids: number[], warm?: LabPod): Promise<Row> {
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
  if (warm) await wrk(warm, `${base}/`, ['-H', 'Connection: close'], WARM_SECONDS);
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
    String(PORTS.pod), dataDir, String(PORTS.plain), String(PORTS.hbone), String(PORTS.tunnel), String(PORTS.splice)]);
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

function report(rows: Row[], baseline: Map<Row, Row>): void {
  const cell = (r: Row, v: (r: Row) => number, digits: number) => {
    const value = v(r);
    if (Number.isNaN(value)) return '—';
    const b = baseline.get(r);
    const bv = b && v(b);
    return value.toFixed(digits) + (bv && !Number.isNaN(bv) ? ` (${(value / bv).toFixed(2)}x)` : '');
  };
  console.log(`\n# same-node pod A -> pod B: ${BULK_BYTES / 2 ** 20} MiB bulk, wrk -t1 -c16 -d${WRK_SECONDS}s; Weft rows against (a), bench proxy rows against (b'), all in this run`);
  console.log(['path'.padEnd(44), 'bulk Gb/s', 'proxy CPU s/GiB', 'keep-alive req/s', 'p50 ms', 'p99 ms', 'proxy CPU us/req', 'new-conn req/s', 'proxy CPU us/new-conn req'].join(' | '));
  for (const r of rows) {
    console.log([r.name.padEnd(44), cell(r, (x) => x.gbps, 2), cell(r, (x) => x.cpuSPerGiB, 2), cell(r, (x) => x.kaRps, 0), cell(r, (x) => x.p50, 3),
      cell(r, (x) => x.p99, 3), cell(r, (x) => x.kaCpuUsPerReq, 1), cell(r, (x) => x.closeRps, 0), cell(r, (x) => x.closeCpuUsPerReq, 1)].join(' | '));
  }
}

/** Ratios of two rows, one line. */
function ratios(label: string, a: Row, b: Row): void {
  // Against direct (no proxy) a CPU ratio has no meaning: '—', not NaNx.
  const x = (p: number, q: number) => (Number.isNaN(p / q) ? '—' : `${(p / q).toFixed(2)}x`);
  console.log(`${label}: bulk ${x(a.gbps, b.gbps)}, CPU per GiB ${x(a.cpuSPerGiB, b.cpuSPerGiB)}, keep-alive req/s ${x(a.kaRps, b.kaRps)}, ` +
    `CPU per request ${x(a.kaCpuUsPerReq, b.kaCpuUsPerReq)}, new-conn req/s ${x(a.closeRps, b.closeRps)}, CPU per new-conn request ${x(a.closeCpuUsPerReq, b.closeCpuUsPerReq)}`);
}

/** Runs `weft local` on `node` with `yaml`, measures through it (warmed by `warm`), and checks which same-node path it took. */
async function measureWeft(name: string, node: LabNode, dir: string, yaml: string, a: LabPod, warm: LabPod, b: LabPod, expect: 'http' | 'spliced' | 'relayed'): Promise<Row> {
  const config = join(dir, `mesh-${expect}.yaml`);
  writeFileSync(config, yaml);
  const agent = startLocalAgent(node, config);
  try {
    await agent.ready;
    const row = await measure(name, a, `http://${b.ip}:${PORTS.pod}`, [agent.process.pid!], warm);
    const lines = agent.accessLog.filter((l) => l['dst.addr'] === `${b.ip}:${PORTS.pod}`);
    if (lines.length === 0) throw new Error(`${name}: the run did not go through the node proxy`);
    if (lines.some((l) => l['dst.hbone_addr'] !== undefined)) throw new Error(`${name}: the run took a tunnel, not the same-node path`);
    if (lines.some((l) => l.method !== undefined) !== (expect === 'http')) throw new Error(`${name}: the proxy ${expect === 'http' ? 'saw no' : 'saw'} HTTP requests`);
    const r = await node.exec('curl', ['-sf', 'http://127.0.0.1:15000/redirect'], { timeoutMs: 5000 });
    const splice = (JSON.parse(r.stdout) as { splice: { movedBytes: string; armSkipped: number } | null }).splice;
    const moved = Number(splice?.movedBytes ?? 0);
    if ((moved > 0) !== (expect === 'spliced')) throw new Error(`${name}: the kernel carried ${moved} bytes of spliced connections, expected ${expect}`);
    // Short connections to a destination stop getting the pods' side (proxy/splice-arming.ts): how many did not.
    if (expect === 'spliced') console.log(`${name}: ${splice?.armSkipped ?? 0} connections without the pods' side (their destination's last 16 were short)`);
    return row;
  } finally {
    await agent.kill('SIGTERM');
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-same-node-bench-'));
  // WEFT_BENCH_LAB: another lab name, when someone else may be running this bench on the host
  const lab = await Lab.create({ name: process.env.WEFT_BENCH_LAB ?? 'samenode' });
  try {
    const node = await lab.node('n1');
    const a = await node.pod('client', { namespace: 'bench', serviceAccount: 'client' });
    const b = await node.pod('server', { namespace: 'bench', serviceAccount: 'server', labels: { app: 'server' } });
    const aHttp = await node.pod('client-http', { namespace: 'bench', serviceAccount: 'client' });
    const aSpliced = await node.pod('client-spliced', { namespace: 'bench', serviceAccount: 'client' });
    const aRelayed = await node.pod('client-relayed', { namespace: 'bench', serviceAccount: 'client' });
    // the Weft rows' warm-up connections (measureWeft), kept off the measured clients' source ports
    const warm = await node.pod('client-warm', { namespace: 'bench', serviceAccount: 'client' });
    const srv = b.spawn(process.execPath, ['-e', HTTP_SERVER]);
    await new Promise<void>((r) => srv.stdout!.once('data', () => r()));
    const rows: Row[] = [];

    rows.push(await measure('(a) direct', a, `http://${b.ip}:${PORTS.pod}`, []));

    // (b′) and (c) before the agent runs: nothing captures pod A's connections to the bench proxy.
    const relay = await startRelay(node, b, join(dir, 'relay-ca'));
    const plain = await measure("(b') bench proxy, plain relay", a, `http://${node.ip}:${PORTS.plain}`, [relay.process.pid!]);
    const hbone = await measure('(c) bench proxy, HBONE mTLS', a, `http://${node.ip}:${PORTS.hbone}`, [relay.process.pid!]);
    const benchSplice = await measure("(d') bench proxy, kernel splice", a, `http://${node.ip}:${PORTS.splice}`, [relay.process.pid!]);
    const stats = await relay.stats();
    await relay.stop();
    if (!((stats.plain as number) > 0 && (stats.hbone as number) > 0 && (stats.streams as number) > 0 && (stats.peers as string[]).includes(CLIENT_ID) &&
      (stats.spliced as number) > 0 && (stats.kernel as Record<string, number>).redirected! > 0)) {
      throw new Error(`the bench proxy did not carry both paths as meant: ${JSON.stringify(stats)}`);
    }

    const http = lab.yaml({ meshNamespaces: ['bench'] });
    const weft = await measureWeft('(b) Weft as shipped (HTTP, no TLS)', node, dir, http, aHttp, warm, b, 'http');
    // Pod B's port declared TCP: no L7 feature applies, so the connection is spliced after authorization.
    const tcpService = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'server', namespace: 'bench' },
      spec: { clusterIP: 'None', selector: { app: 'server' }, ports: [{ name: 'tcp-web', port: PORTS.pod, targetPort: PORTS.pod }] } };
    const spliced = await measureWeft('(e) Weft, port declared TCP: spliced', node, dir, lab.yaml({ meshNamespaces: ['bench'], extra: [tcpService] }), aSpliced, warm, b, 'spliced');
    const relayOff = { apiVersion: 'config.weft.dev/v1', kind: 'ProxyConfig', metadata: { name: 'default' }, spec: { sameNodeSplice: false } };
    const relayed = await measureWeft("(e') Weft, port declared TCP: relayed", node, dir, lab.yaml({ meshNamespaces: ['bench'], extra: [tcpService, relayOff] }), aRelayed, warm, b, 'relayed');

    rows.push(weft, spliced, relayed, plain, benchSplice, hbone);
    report(rows, new Map([[weft, rows[0]!], [spliced, rows[0]!], [relayed, rows[0]!], [hbone, plain], [benchSplice, plain]]));
    ratios("same-node spliced (e) / direct (a)", spliced, rows[0]!);
    ratios("same-node relayed (e') / direct (a)", relayed, rows[0]!);
    ratios("spliced (e) / relayed (e')", spliced, relayed);
    ratios("TLS hop (c)/(b')", hbone, plain);
    ratios("bench splice (d')/(b')", benchSplice, plain);
    console.log(`bench proxy: ${stats.plain} plain, ${stats.hbone} HBONE and ${stats.splice} splice connections (${stats.spliced} spliced), ${stats.streams} CONNECT streams over ${stats.sessions} pooled session(s), ` +
      `${stats.streamErrors} streams and ${stats.relayErrors} relays ended in error (wrk cuts its connections when it stops)`);
  } finally {
    // only this lab's node: other labs may have agents on this host
    spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', `${lab.name}-n1`]);
    await lab.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
