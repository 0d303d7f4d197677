/**
 * HTTP through a Service cluster IP with an HTTPRoute in force (one header match, a 90/10 split
 * between two backend Services, retries on 503), client pod on n1, four backend pods on n2 (three
 * behind the 90 share, one behind the 10), in one run:
 *   (a) direct: wrk to one backend pod, no proxy, plaintext (the floor);
 *   (b) Weft: wrk to the cluster IP; n1's node proxy matches the route, picks a backend Service and
 *       an endpoint per request and carries it over HBONE (mTLS) to n2's node proxy;
 *   (c) an HAProxy pair in HTTP mode doing the same balancing (use_backend on the header, weighted
 *       servers, retry-on 503 / retries 2) over mutual TLS 1.3 between the nodes.
 * Load: HTTP/1.1 keep-alive, wrk -t1 -c16 for WRK_SECONDS, every request with the matched header,
 * after one unmeasured run of the same load (JIT, pools).
 * Then, with the same Weft processes, two diagnostic rows that tell where Weft's cost lies: the
 * cluster IP of `api-v1` (a Service without a route) and one pod IP (no Service: the pod-to-pod
 * L7 path http-hop.ts measures).
 * Prints req/s, p50/p99, the proxies' CPU per request, the split each contender produced (counted by
 * the backends themselves), and Weft/HAProxy and Weft/direct ratios beside the targets (Weft ≥ 1.0×
 * HAProxy req/s, p99 ≤ HAProxy's); then route matching with 1,000 routes in force (routes.ts).
 * Missing a target is a result; the exit status is non-zero only when something could not be measured.
 *
 * Fairness as in http-hop.ts: HAProxy runs one thread per node (the node proxy is one Node.js
 * thread), both reuse upstream connections, ECDSA P-256 certificates, TLS 1.3 verified both ways.
 */
import { readFileSync } from 'node:fs';
import type { LabPod } from '../../agent/sandbox';
import { measureEach, spawnReady, startServer, stopPids, withHopLab, type BenchContext, type Contender, type Endpoint } from './hop-lab';
import { haproxyHttpConfig, haproxyTls } from './http-hop';
import { cpuTicks, TICK_S, WRK_SECONDS, wrk, type LoadResult } from './load';
import { benchRoutes } from './routes';
import {
  BACKEND_PORT, CLUSTER_IPS, COUNT_PATH, COUNTING_SERVER, haproxySplitFrontend, SERVICE_PORT, SPLIT, TENANT_HEADER, weftRouteObjects, type Version,
} from './service-route-config';
import { startWeftMesh } from './weft-mesh';

const NAMESPACE = 'shop';
const HAPROXY = 'HAProxy pair';
const HOP_PORT_BASE = 28500;
const LISTEN_PORT = 28080;
/** Access-log lines of Weft's requests that failed, printed when any did. */
const ERROR_SAMPLES = 5;

const header = `${TENANT_HEADER.name}: ${TENANT_HEADER.value}`;

/**
 * A contender's entry point, what it has to say after the load (Weft: log line counts, errors), and
 * other entry points measured after it with the same processes, to tell where its cost lies.
 */
interface RouteEndpoint extends Endpoint {
  describe?(): string;
  diagnostics?: Array<{ label: string; host: string; port: number }>;
}
type Backends = LabPod[];

const url = (host: string, port: number, path = '/') => `http://${host}:${port}${path}`;

function direct(backends: Backends): Contender<RouteEndpoint> {
  return { name: 'direct', async start() { return { host: backends[0]!.ip, port: BACKEND_PORT, pids: () => [], stop: async () => undefined }; } };
}

function haproxySplitPair(backends: Backends): Contender<RouteEndpoint> {
  return {
    name: HAPROXY,
    async start(c) {
      const server = haproxyHttpConfig(c.dir, 'haproxy-split-n2.cfg', backends.map((b, i) =>
        `frontend hop-${b.name}\n  bind ${c.n2.ip}:${HOP_PORT_BASE + i} ${haproxyTls(c.dir, 'server')} alpn http/1.1\n  default_backend pod-${b.name}\n`
        + `backend pod-${b.name}\n  server s ${b.ip}:${BACKEND_PORT}`).join('\n') + '\n');
      const client = haproxyHttpConfig(c.dir, 'haproxy-split-n1.cfg', haproxySplitFrontend(`${c.n1.ip}:${LISTEN_PORT}`,
        backends.map((b, i) => ({ name: b.name, ip: b.ip, labels: b.labels, hop: `${c.n2.ip}:${HOP_PORT_BASE + i}` })), haproxyTls(c.dir, 'client')));
      const pids = [await spawnReady(c.n2, 'haproxy', ['-db', '-f', server]), await spawnReady(c.n1, 'haproxy', ['-db', '-f', client])];
      return { host: c.n1.ip, port: LISTEN_PORT, pids: () => pids, stop: () => stopPids(pids) };
    },
  };
}

const weft: Contender<RouteEndpoint> = {
  name: 'Weft',
  async start(c) {
    const vip = url(CLUSTER_IPS.api, SERVICE_PORT);
    const mesh = await startWeftMesh(c, {
      meshNamespaces: [NAMESPACE],
      extra: weftRouteObjects(NAMESPACE),
      warmUp: [['curl', ['-sf', '-m', '5', '-H', header, '-o', '/dev/null', vip]]],
    });
    return {
      host: CLUSTER_IPS.api, port: SERVICE_PORT, pids: mesh.pids, stop: mesh.stop,
      diagnostics: [
        { label: 'api-v1 cluster IP, no route', host: CLUSTER_IPS.v1, port: SERVICE_PORT },
        { label: 'one pod IP, no Service', host: c.server.ip, port: BACKEND_PORT },
      ],
      describe() {
        const requests = mesh.countLogLines('"method"');
        const failed = mesh.accessLogs.flatMap((f) => readFileSync(f, 'utf8').split('\n'))
          .filter((l) => l.includes('"method"') && (/"status":(0|5\d\d)\b/.test(l) || l.includes('"error"')));
        const sample = failed.slice(0, ERROR_SAMPLES).map((l) => `\n#   ${l}`).join('');
        return `Weft: ${requests} per-request access-log lines over both nodes and all of its runs (requests are handled at L7); ${failed.length} of them failed or erred${sample}`;
      },
    };
  },
};

/** Each backend's request count since the last call (read from n2's namespace, outside every pod: nothing captures it). */
async function takeCounts(c: BenchContext, backends: Backends): Promise<number[]> {
  return Promise.all(backends.map(async (b) => {
    const r = await c.n2.exec('curl', ['-sf', '-m', '5', url(b.ip, BACKEND_PORT, COUNT_PATH)], { timeoutMs: 10_000 });
    if (r.code !== 0) throw new Error(`reading the request count of backend pod ${b.name} (${b.ip}:${BACKEND_PORT}) from node ${c.n2.name} failed (curl exit ${r.code}): ${r.stderr}`);
    return Number(r.stdout.trim());
  }));
}

/** "v1 90.2% (30.1/30.0/30.1) v2 9.8%": each version's share and, within v1, each pod's. */
function describeSplit(backends: Backends, counts: number[]): string {
  const total = counts.reduce((s, n) => s + n, 0) || 1;
  const pct = (n: number) => ((100 * n) / total).toFixed(1);
  return (['v1', 'v2'] as Version[]).map((v) => {
    const mine = backends.flatMap((b, i) => (b.labels.version === v ? [counts[i]!] : []));
    const sum = mine.reduce((s, n) => s + n, 0);
    return `${v} ${pct(sum)}%${mine.length > 1 ? ` (${mine.map(pct).join('/')})` : ''}`;
  }).join(' ');
}

interface Row extends LoadResult { contender: string; cpuUsPerReq: number; split: string }

/** Checks that `path` answers `want` from the client pod, with or without the route's header. */
async function expectStatus(c: BenchContext, name: string, target: string, withHeader: boolean, want: number): Promise<void> {
  const r = await c.client.exec('curl', ['-s', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', ...(withHeader ? ['-H', header] : []), target], { timeoutMs: 15_000 });
  if (r.stdout.trim() !== String(want)) {
    throw new Error(`${name}: GET ${target} ${withHeader ? `with ${header}` : 'without the route header'} answered ${r.stdout.trim() || `nothing (curl exit ${r.code}: ${r.stderr.trim()})`}, expected ${want}`);
  }
}

/** One wrk run against `target` with the proxies' CPU over it and the split the backends counted. */
async function load(c: BenchContext, backends: Backends, contender: string, target: string, pids: number[]): Promise<Row> {
  const t0 = cpuTicks(pids);
  const res = await wrk(c.client, target, ['-H', header]);
  const ticks = cpuTicks(pids) - t0;
  const split = describeSplit(backends, await takeCounts(c, backends));
  return { ...res, contender, cpuUsPerReq: pids.length ? (ticks * TICK_S * 1e6) / res.requests : NaN, split };
}

async function measure(c: BenchContext, backends: Backends, contender: Contender<RouteEndpoint>): Promise<{ rows: Row[]; note?: string }> {
  await takeCounts(c, backends);
  const ep = await contender.start(c);
  try {
    const target = url(ep.host, ep.port);
    await expectStatus(c, contender.name, target, true, 200);
    // the route is in force: without its header nothing matches (direct has no route)
    if (contender.name !== 'direct') await expectStatus(c, contender.name, target, false, 404);
    // one unmeasured load first: it compiles the proxies' hot paths and fills their pools, so the
    // first measured row is not charged for what the diagnostic rows after it get for free
    await wrk(c.client, target, ['-H', header]);
    await takeCounts(c, backends);
    const rows = [await load(c, backends, contender.name, target, ep.pids())];
    for (const d of ep.diagnostics ?? []) rows.push(await load(c, backends, `${contender.name} (${d.label})`, url(d.host, d.port), ep.pids()));
    return { rows, note: ep.describe?.() };
  } finally {
    await ep.stop();
  }
}

const times = (v: number, base: number | undefined) => (base && Number.isFinite(v) ? `${(v / base).toFixed(2)}x` : '-');

function print(rows: Row[], notes: string[]): void {
  console.log(`\n# Service cluster IP + HTTPRoute (header match, ${SPLIT.v1}/${SPLIT.v2} split, retries on 503) across two nodes; client on n1, 3+1 backends on n2`);
  console.log(`# HTTP/1.1 keep-alive: wrk -t1 -c16 -d${WRK_SECONDS}s -H '${header}' after one unmeasured run of it; ratios against this run's ${HAPROXY} (HTTP mode, mTLS) and direct`);
  for (const n of notes) console.log(`# ${n}`);
  const ha = rows.find((r) => r.contender === HAPROXY);
  const floor = rows.find((r) => r.contender === 'direct');
  console.log(['contender'.padEnd(40), 'req/s', 'p50 ms', 'p99 ms', 'proxy CPU us/req', 'failed', 'split counted by the backends'].join(' | '));
  for (const r of rows) {
    console.log([r.contender.padEnd(40), `${r.rps.toFixed(0)} (${times(r.rps, ha?.rps)})`, r.p50.toFixed(3), `${r.p99.toFixed(3)} (${times(r.p99, ha?.p99)})`,
      Number.isFinite(r.cpuUsPerReq) ? `${r.cpuUsPerReq.toFixed(1)} (${times(r.cpuUsPerReq, ha?.cpuUsPerReq)})` : '-', String(r.failed), r.split].join(' | '));
  }
  const w = rows.find((r) => r.contender === 'Weft');
  if (w && ha) {
    const rps = w.rps / ha.rps;
    const p99 = w.p99 / ha.p99;
    console.log(`target: Weft req/s ${rps.toFixed(2)}x HAProxy (target >= 1.00x: ${rps >= 1 ? 'met' : 'missed'}), p99 ${p99.toFixed(2)}x HAProxy's (target <= 1.00x: ${p99 <= 1 ? 'met' : 'missed'})`);
  }
  if (w && floor) console.log(`Weft against direct (no mesh, plaintext): req/s ${times(w.rps, floor.rps)}, p50 ${times(w.p50, floor.p50)}, p99 ${times(w.p99, floor.p99)}`);
}

export async function runServiceRoute(only: string[] = []): Promise<Row[]> {
  const rows = await withHopLab({
    name: process.env.SERVICE_ROUTE_LAB ?? 'sbn',
    client: { namespace: NAMESPACE, serviceAccount: 'client' },
    server: { namespace: NAMESPACE, serviceAccount: 'api', labels: { app: 'api', version: 'v1' } },
    serverScript: COUNTING_SERVER,
  }, async (c) => {
    const backends: Backends = [c.server];
    for (const [name, version] of [['api-v1-b', 'v1'], ['api-v1-c', 'v1'], ['api-v2', 'v2']] as const) {
      const pod = await c.n2.pod(name, { namespace: NAMESPACE, serviceAccount: 'api', labels: { app: 'api', version } });
      await startServer(pod, COUNTING_SERVER);
      backends.push(pod);
    }
    // Weft last: its agents' enrollment outlives them until `weft uninstall`, which its stop() runs.
    const contenders = [direct(backends), haproxySplitPair(backends), weft]
      .filter((k) => only.length === 0 || only.some((o) => k.name.toLowerCase().startsWith(o)));
    const { rows: out, notes, errors } = await measureEach(contenders, (contender) => measure(c, backends, contender));
    print(out, notes);
    for (const r of out.filter((row) => row.failed > 0)) errors.push(`${r.contender}: ${r.failed} of ${r.requests} requests failed, so its numbers do not compare`);
    if (errors.length) throw new Error(`service-route could not measure everything:\n  ${errors.join('\n  ')}`);
    return out;
  });
  console.log('\n# route matching with 1,000 HTTPRoutes in force (routes.ts, in this process after the lab is gone)');
  await benchRoutes();
  return rows;
}

if (require.main === module) {
  // SERVICE_ROUTE_ONLY=haproxy,weft (names, lower case) runs only those contenders, to iterate faster.
  const only = (process.env.SERVICE_ROUTE_ONLY ?? '').toLowerCase().split(',').filter(Boolean);
  runServiceRoute(only).catch((e) => { console.error(e); process.exitCode = 1; });
}
