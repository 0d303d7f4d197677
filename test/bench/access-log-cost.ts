/**
 * What the access log alone costs on the pod-to-pod HTTP path: telemetry-cost.ts's load (HTTP/1.1
 * keep-alive, wrk -t1 -c16, client pod on n1 -> server pod on n2 through both agents) with the
 * metrics off in both variants, the access log on or off, the two alternated ROUNDS times (fresh
 * agents each) so the host's changing load hits both alike; per round and as medians: req/s and
 * proxy CPU µs per request, and the difference (the log's cost per request).
 * Usage: node dist/test/bench/access-log-cost.js [lab name, default rlg2] [rounds, default 3]
 */
import { withHopLab, type BenchContext } from './hop-lab';
import { httpHopObjects, PORTS } from './http-hop-config';
import { cpuTicks, HTTP_SERVER, TICK_S, WRK_SECONDS, wrk } from './load';
import { startWeftMesh } from './weft-mesh';

const LAB = process.argv[2] ?? 'rlg2';
const ROUNDS = Number(process.argv[3] ?? 3);

const VARIANTS = [
  { name: 'log on', spec: { telemetry: { metrics: false } } },
  { name: 'log off', spec: { telemetry: { metrics: false }, accessLog: { enabled: false } } },
];

interface Row { variant: string; round: number; rps: number; cpuUsPerReq: number; lines: number; failed: number }

async function measure(c: BenchContext, v: typeof VARIANTS[number], round: number): Promise<Row> {
  const url = `http://${c.server.ip}:${PORTS.h1}/`;
  const extra = [...httpHopObjects(c.client, c.server), { apiVersion: 'config.weft.dev/v1', kind: 'ProxyConfig', metadata: { name: 'default' }, spec: v.spec }];
  const mesh = await startWeftMesh(c, { meshNamespaces: [c.client.namespace, c.server.namespace], extra, warmUp: [['curl', ['-sf', '-m', '5', '-o', '/dev/null', url]]] });
  try {
    const t0 = cpuTicks(mesh.pids());
    const res = await wrk(c.client, url, []);
    const ticks = cpuTicks(mesh.pids()) - t0;
    return { variant: v.name, round, rps: res.rps, cpuUsPerReq: (ticks * TICK_S * 1e6) / res.requests, lines: mesh.countLogLines('"method"'), failed: res.failed };
  } finally {
    await mesh.stop();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const rows = await withHopLab({ name: LAB, client: { namespace: 'bench', serviceAccount: 'client' }, server: { namespace: 'bench', serviceAccount: 'server' }, serverScript: HTTP_SERVER },
    async (c) => {
      const out: Row[] = [];
      for (let r = 0; r < ROUNDS; r++) for (const v of (r % 2 === 0 ? VARIANTS : [...VARIANTS].reverse())) out.push(await measure(c, v, r));
      return out;
    });
  console.log(`# access log cost: HTTP/1.1 keep-alive through two agents, metrics off, wrk -t1 -c16 -d${WRK_SECONDS}s, ${ROUNDS} alternated rounds`);
  for (const r of rows) console.log(`round ${r.round} ${r.variant.padEnd(8)} ${r.rps.toFixed(0).padStart(6)} req/s ${r.cpuUsPerReq.toFixed(1).padStart(6)} µs CPU/req  ${r.lines} request lines  ${r.failed} failed`);
  const m = (name: string, k: 'rps' | 'cpuUsPerReq') => median(rows.filter((r) => r.variant === name).map((r) => r[k]));
  console.log(`median: log on ${m('log on', 'rps').toFixed(0)} req/s, ${m('log on', 'cpuUsPerReq').toFixed(1)} µs/req; log off ${m('log off', 'rps').toFixed(0)} req/s, `
    + `${m('log off', 'cpuUsPerReq').toFixed(1)} µs/req; on/off ${(m('log on', 'rps') / m('log off', 'rps')).toFixed(2)}x req/s, `
    + `log ${(m('log on', 'cpuUsPerReq') - m('log off', 'cpuUsPerReq')).toFixed(1)} µs CPU/req`);
  const paired = Array.from({ length: ROUNDS }, (_, r) => rows.find((x) => x.round === r && x.variant === 'log on')!.cpuUsPerReq - rows.find((x) => x.round === r && x.variant === 'log off')!.cpuUsPerReq);
  console.log(`per round (on - off): ${paired.map((d) => d.toFixed(1)).join(', ')} µs CPU/req`);
  const failed = rows.filter((r) => r.failed > 0);
  if (failed.length) throw new Error(`access-log-cost could not measure: ${failed.map((r) => `${r.variant} round ${r.round}: ${r.failed} failed`).join('; ')} (check the agents' logs)`);
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
