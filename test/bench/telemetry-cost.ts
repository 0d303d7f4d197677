/**
 * What telemetry costs on the pod-to-pod HTTP path (issue 9's benchmark), in one run:
 *   1. HTTP/1.1 keep-alive req/s and p99 (wrk -t1 -c16, WRK_SECONDS) from a client pod on n1 to a
 *      server pod on n2 through both agents (http-hop's lab, objects and load), with ProxyConfig
 *      (a) defaults: metrics and access log on, (b) metrics off, access log on, (c) metrics on,
 *      access log off, (d) everything off, (e) everything on plus tracing of every request to a
 *      tiny OTLP sink on n1; ratios against (d). Target: (a) >= 0.90x (d).
 *      Each configuration gets fresh agents (the switches apply live too: telemetry-switches.test.ts).
 *   2. /metrics with 1,000 pod pairs: a child process fills a MeshMetrics (with the agent's health
 *      gauges) by publishing events for 1,000 distinct source/destination workload pairs on both
 *      reporters (HTTP and TCP series), then times registry.metrics() and an HTTP scrape of
 *      serveMetrics on loopback, and reports the size.
 * Missing the target is a result, not an error: the exit status is non-zero only when it could not measure.
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { withHopLab, type BenchContext } from './hop-lab';
import { httpHopObjects, PORTS } from './http-hop-config';
import { cpuTicks, HTTP_SERVER, TICK_S, WRK_SECONDS, wrk, type LoadResult } from './load';
import { startWeftMesh } from './weft-mesh';

const PAIRS = 1_000;
const OTLP_PORT = 4318;
/** each scrape of 1,000 pairs takes seconds: a few are enough for a median */
const SCRAPES = 3;

interface Variant { name: string; spec: object | undefined; tracing?: boolean }
const VARIANTS: Variant[] = [
  { name: 'a: metrics+logs on (default)', spec: undefined },
  { name: 'b: metrics off', spec: { telemetry: { metrics: false } } },
  { name: 'c: logs off', spec: { accessLog: { enabled: false } } },
  { name: 'd: everything off', spec: { telemetry: { metrics: false }, accessLog: { enabled: false } } },
  { name: 'e: all on + tracing 100%', spec: {}, tracing: true },
];
const BASELINE = 'd: everything off';

/** Counts the OTLP/HTTP export requests and bytes it receives; prints "listening" once up. */
const OTLP_SINK = `
let requests = 0, bytes = 0;
require('http').createServer((req, res) => {
  req.on('data', (d) => { bytes += d.length; });
  req.on('end', () => { requests++; res.writeHead(200, { 'content-type': 'application/x-protobuf' }); res.end(); });
}).listen(${OTLP_PORT}, process.argv[1], () => console.log('listening'));
process.on('SIGTERM', () => { console.log(JSON.stringify({ requests, bytes })); process.exit(0); });`;

interface Row extends LoadResult { variant: string; cpuUsPerReq: number; lines: number; note?: string }

async function measure(c: BenchContext, v: Variant): Promise<Row> {
  const url = `http://${c.server.ip}:${PORTS.h1}/`;
  let sink: ReturnType<BenchContext['n1']['spawn']> | undefined;
  let sinkOut = '';
  if (v.tracing) {
    sink = c.n1.spawn(process.execPath, ['-e', OTLP_SINK, c.n1.ip]);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the OTLP sink on n1 did not listen within 5 s')), 5_000);
      sink!.stdout!.setEncoding('utf8').on('data', (d: string) => { sinkOut += d; if (sinkOut.includes('listening')) { clearTimeout(t); resolve(); } });
    });
  }
  const spec = v.tracing ? { ...v.spec, tracing: { otlpEndpoint: `http://${c.n1.ip}:${OTLP_PORT}/v1/traces`, samplingPercent: 100 } } : v.spec;
  const extra = [...httpHopObjects(c.client, c.server),
    ...(spec === undefined ? [] : [{ apiVersion: 'config.weft.dev/v1', kind: 'ProxyConfig', metadata: { name: 'default' }, spec }])];
  try {
    const mesh = await startWeftMesh(c, {
      meshNamespaces: [c.client.namespace, c.server.namespace], extra,
      warmUp: [['curl', ['-sf', '-m', '5', '-o', '/dev/null', url]]],
    });
    try {
      const t0 = cpuTicks(mesh.pids());
      const res = await wrk(c.client, url, []);
      const ticks = cpuTicks(mesh.pids()) - t0;
      const lines = mesh.countLogLines('"method"');
      let note: string | undefined;
      if (sink) {
        const exited = new Promise<void>((r) => sink!.once('exit', () => r()));
        await new Promise((r) => setTimeout(r, 1_500)); // the exporter's batch interval
        sink.kill('SIGTERM');
        await exited;
        const got = JSON.parse(sinkOut.split('\n').filter((l) => l.startsWith('{')).pop() ?? '{"requests":0,"bytes":0}') as { requests: number; bytes: number };
        note = `OTLP sink got ${got.requests} exports, ${(got.bytes / 1024).toFixed(0)} KiB`;
        sink = undefined;
      }
      return { ...res, variant: v.name, cpuUsPerReq: (ticks * TICK_S * 1e6) / res.requests, lines, ...(note ? { note } : {}) };
    } finally {
      await mesh.stop();
    }
  } finally {
    sink?.kill('SIGKILL');
  }
}

/** Runs the scrape measurement in a child process (its own heap, nothing else registered); its JSON. */
function scrapeInChild(): Promise<{ pairs: number; series: number; bytes: number; registryMs: number[]; httpMs: number[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [__filename, '--scrape-child'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`the scrape child exited ${code}: ${out}`))));
  });
}

async function scrapeChild(): Promise<void> {
  const { emptySnapshot } = await import('../../agent/config/objects');
  const { WorkloadStore } = await import('../../agent/state/store');
  const { MeshMetrics } = await import('../../agent/telemetry/metrics');
  const { registerHealth } = await import('../../agent/telemetry/health');
  const { serveMetrics } = await import('../../agent/telemetry/serve');
  const { connectionClosed, connectionOpened, requestCompleted } = await import('../../agent/telemetry/events');
  type PodInfo = import('../../agent/config/objects').PodInfo;
  const pod = (name: string, i: number, app: string): PodInfo => ({ namespace: 'bench', name, labels: { app, version: 'v1' }, annotations: {}, nodeName: 'n1',
    serviceAccount: app, ips: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`] });
  const clients = Array.from({ length: PAIRS }, (_, i) => pod(`client-${i}`, i + 1, `client-${i}`));
  const servers = Array.from({ length: PAIRS }, (_, i) => pod(`server-${i}`, PAIRS + i + 1, `server-${i}`));
  const store = new WorkloadStore({ ...emptySnapshot(), namespaces: [{ name: 'bench', labels: { 'weft.dev/mesh': 'enabled' } }], pods: [...clients, ...servers] });
  const metrics = new MeshMetrics().subscribe();
  metrics.setStore(store);
  const stopHealth = registerHealth(metrics.registry, { connections: () => 0, certificates: () => [], version: 'bench' });
  for (let i = 0; i < PAIRS; i++) {
    const ends = { direction: 'inbound' as const, srcIp: clients[i]!.ips[0]!, srcPort: 40000, src: store.workloadRef(clients[i]!),
      dstIp: servers[i]!.ips[0]!, dstPort: 8080, dst: store.workloadRef(servers[i]!) };
    for (const reporter of ['source', 'destination'] as const) {
      connectionOpened.publish({ reporter, security: 'mutual_tls', ends });
      for (let r = 0; r < 3; r++) {
        requestCompleted.publish({ reporter, security: 'mutual_tls', ends, protocol: 'http', status: 200, requestBytes: 0, responseBytes: 3, durationMs: 1 + r, flags: '-' });
      }
      connectionClosed.publish({ reporter, security: 'mutual_tls', ends, bytesFromClient: 300, bytesToClient: 500, flags: '-' });
    }
  }
  const registryMs: number[] = [];
  let text = '';
  for (let i = 0; i < SCRAPES; i++) {
    const t = performance.now();
    text = await metrics.registry.metrics();
    registryMs.push(performance.now() - t);
  }
  const server = await serveMetrics('127.0.0.1', 0, metrics.registry);
  const port = (server.address() as AddressInfo).port;
  const httpMs: number[] = [];
  let bytes = 0;
  for (let i = 0; i < SCRAPES; i++) {
    const t = performance.now();
    bytes = await new Promise<number>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
        let n = 0;
        res.on('data', (d: Buffer) => { n += d.length; });
        res.on('end', () => resolve(n));
      }).on('error', reject);
    });
    httpMs.push(performance.now() - t);
  }
  server.close();
  stopHealth();
  metrics.unsubscribe();
  const series = text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length;
  process.stdout.write(JSON.stringify({ pairs: PAIRS, series, bytes, registryMs, httpMs }));
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const rows = await withHopLab({
    name: 'tlm2',
    client: { namespace: 'bench', serviceAccount: 'client' },
    server: { namespace: 'bench', serviceAccount: 'server' },
    serverScript: HTTP_SERVER,
  }, async (c) => {
    const out: Row[] = [];
    for (const v of VARIANTS) out.push(await measure(c, v));
    return out;
  });
  const base = rows.find((r) => r.variant === BASELINE)!;
  console.log(`\n# Telemetry cost: HTTP/1.1 keep-alive through two agents (client pod on n1, server pod on n2), wrk -t1 -c16 -d${WRK_SECONDS}s; ratios against "${BASELINE}"`);
  console.log(['variant'.padEnd(30), 'req/s', 'p50 ms', 'p99 ms', 'proxy CPU us/req', 'request log lines', 'failed'].join(' | '));
  const x = (v: number, b: number) => ` (${(v / b).toFixed(2)}x)`;
  for (const r of rows) {
    console.log([r.variant.padEnd(30), r.rps.toFixed(0) + x(r.rps, base.rps), r.p50.toFixed(3), r.p99.toFixed(3) + x(r.p99, base.p99),
      r.cpuUsPerReq.toFixed(1) + x(r.cpuUsPerReq, base.cpuUsPerReq), String(r.lines), String(r.failed)].join(' | ') + (r.note ? `  # ${r.note}` : ''));
  }
  const on = rows.find((r) => r.variant.startsWith('a:'))!;
  console.log(`target: metrics+logs on ${(on.rps / base.rps).toFixed(2)}x req/s of everything off (target >= 0.90x: ${on.rps / base.rps >= 0.9 ? 'met' : 'missed'}), p99 ${(on.p99 / base.p99).toFixed(2)}x`);
  const s = await scrapeInChild();
  console.log(`\n# /metrics with ${s.pairs} pod pairs (both reporters, HTTP and TCP series, plus the agent's health): ${s.series} samples, ${(s.bytes / 1024 / 1024).toFixed(2)} MiB`);
  console.log(`registry.metrics(): median ${median(s.registryMs).toFixed(1)} ms (min ${Math.min(...s.registryMs).toFixed(1)}, max ${Math.max(...s.registryMs).toFixed(1)}); `
    + `HTTP scrape on loopback: median ${median(s.httpMs).toFixed(1)} ms (min ${Math.min(...s.httpMs).toFixed(1)}, max ${Math.max(...s.httpMs).toFixed(1)})`);
  const failed = rows.filter((r) => r.failed > 0);
  if (failed.length) throw new Error(`telemetry-cost could not measure: ${failed.map((r) => `${r.variant}: ${r.failed} of ${r.requests} requests failed`).join('; ')} (check the agents' logs)`);
}

if (require.main === module) {
  (process.argv.includes('--scrape-child') ? scrapeChild() : main()).catch((e) => { console.error(e); process.exitCode = 1; });
}
