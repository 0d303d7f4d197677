/**
 * Pod-to-pod across two lab nodes: direct, vs an stunnel pair and an HAProxy pair doing the same
 * mutual-TLS hop between the nodes, vs Weft (eBPF capture + HBONE), all in one run on the same
 * pods. Prints bulk Gb/s, keep-alive req/s with p50/p99 (wrk), new-connection-per-request req/s,
 * the proxies' CPU per request and RSS, and each contender's ratio against HAProxy. Then the
 * fixed-rate phase (fixed-rate-phase.ts): direct, the HAProxy pair and Weft at 25 % and 10 % of the
 * HAProxy pair's keep-alive req/s, p50/p99/p99.9/max from vegeta's per-request results.
 * WEFT_BENCH_LAB names the lab (default mtlsb) so that a second run on the host does not collide.
 *
 * Fairness: the Weft node proxy is one Node.js thread per node, so HAProxy runs with nbthread 1;
 * stunnel keeps its default (a thread per connection). ECDSA P-256 certificates everywhere.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BULK_BYTES, cpuTicks, HTTP_SERVER, rssMiB, WRK_SECONDS, wrk } from './load';
import { spawnReady, stopPids, withHopLab, type BenchContext, type Contender } from './hop-lab';
import { startWeftMesh } from './weft-mesh';
import { DEFAULT_FIXED_RATE, fixedRatePhase, printFixedRate } from './fixed-rate-phase';

export type { BenchContext, Contender, Endpoint } from './hop-lab';

export const direct: Contender = {
  name: 'direct',
  async start(c) { return { host: c.server.ip, port: 8080, pids: () => [], stop: async () => undefined }; },
};

export const stunnelPair: Contender = {
  name: 'stunnel pair',
  async start(c) {
    const conf = (name: string, body: string) => { const p = join(c.dir, name); writeFileSync(p, `foreground = yes\npid =\ndebug = 3\n${body}`); return p; };
    const server = conf('stunnel-n2.conf', `[hop]\naccept = ${c.n2.ip}:18443\nconnect = ${c.server.ip}:8080\ncert = ${c.dir}/server.crt\nkey = ${c.dir}/server.key\nCAfile = ${c.dir}/ca.pem\nverifyChain = yes\nsslVersionMin = TLSv1.3\n`);
    const client = conf('stunnel-n1.conf', `[hop]\nclient = yes\naccept = ${c.n1.ip}:18080\nconnect = ${c.n2.ip}:18443\ncert = ${c.dir}/client.crt\nkey = ${c.dir}/client.key\nCAfile = ${c.dir}/ca.pem\nverifyChain = yes\nsslVersionMin = TLSv1.3\n`);
    const pids = [await spawnReady(c.n2, 'stunnel4', [server]), await spawnReady(c.n1, 'stunnel4', [client])];
    return { host: c.n1.ip, port: 18080, pids: () => pids, stop: () => stopPids(pids) };
  },
};

export const haproxyPair: Contender = {
  name: 'HAProxy pair',
  async start(c) {
    const conf = (name: string, body: string) => { const p = join(c.dir, name); writeFileSync(p, `global\n  nbthread 1\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n${body}`); return p; };
    const server = conf('haproxy-n2.cfg', `frontend hop\n  bind ${c.n2.ip}:28443 ssl crt ${c.dir}/server.pem ca-file ${c.dir}/ca.pem verify required ssl-min-ver TLSv1.3\n  default_backend pod\nbackend pod\n  server s ${c.server.ip}:8080\n`);
    const client = conf('haproxy-n1.cfg', `frontend plain\n  bind ${c.n1.ip}:28080\n  default_backend hop\nbackend hop\n  server s ${c.n2.ip}:28443 ssl crt ${c.dir}/client.pem ca-file ${c.dir}/ca.pem verify required ssl-min-ver TLSv1.3\n`);
    const pids = [await spawnReady(c.n2, 'haproxy', ['-db', '-f', server]), await spawnReady(c.n1, 'haproxy', ['-db', '-f', client])];
    return { host: c.n1.ip, port: 28080, pids: () => pids, stop: () => stopPids(pids) };
  },
};

export const weft: Contender = {
  name: 'Weft',
  async start(c) {
    // The pod's port is declared TCP, so Weft carries it at L4 like the TCP-mode HAProxy pair (http-hop.ts measures L7).
    const service = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'server', namespace: 'bench' },
      spec: { clusterIP: 'None', selector: c.server.labels, ports: [{ name: 'tcp-bench', port: 8080, targetPort: 8080 }] } };
    const mesh = await startWeftMesh(c, { meshNamespaces: ['bench'], extra: [service], warmUp: [['curl', ['-sf', '-m', '5', '-o', '/dev/null', `http://${c.server.ip}:8080/`]]] });
    return { host: c.server.ip, port: 8080, pids: mesh.pids, stop: mesh.stop };
  },
};

interface Row { name: string; gbps: number; kaRps: number; p50: number; p99: number; closeRps: number; cpuUsPerReq: number; rssMiB: number }

async function measure(c: BenchContext, contender: Contender): Promise<Row> {
  const ep = await contender.start(c);
  try {
    const base = `http://${ep.host.includes(':') ? `[${ep.host}]` : ep.host}:${ep.port}`;
    const bulk = await c.client.exec('curl', ['-s', '-o', '/dev/null', '-w', '%{speed_download} %{size_download}', `${base}/bulk?bytes=${BULK_BYTES}`], { timeoutMs: 120_000 });
    const [speed, size] = bulk.stdout.trim().split(' ').map(Number);
    if (size !== BULK_BYTES) throw new Error(`${contender.name}: bulk transfer moved ${size} of ${BULK_BYTES} bytes (${bulk.stderr})`);
    const t0 = cpuTicks(ep.pids());
    const ka = await wrk(c.client, `${base}/`, []);
    const cpu = cpuTicks(ep.pids()) - t0;
    const close = await wrk(c.client, `${base}/`, ['-H', 'Connection: close']);
    return { name: contender.name, gbps: (speed! * 8) / 1e9, kaRps: ka.rps, p50: ka.p50, p99: ka.p99, closeRps: close.rps,
      cpuUsPerReq: ep.pids().length ? (cpu * 10_000) / ka.requests : 0, rssMiB: rssMiB(ep.pids()) };
  } finally {
    await ep.stop();
  }
}

export interface MtlsHopOptions {
  /** lab name, unique among the labs running on this machine (default mtlsb) */
  lab?: string;
  /** after the table, the fixed-rate tail phase (fixed-rate-phase.ts) for direct, the HAProxy pair and Weft at a share of HAProxy's rate */
  fixedRate?: boolean;
}

export async function runMtlsHop(contenders: Contender[], prepare?: (c: BenchContext) => Promise<void>, opts: MtlsHopOptions = {}): Promise<Row[]> {
  return withHopLab({ name: opts.lab ?? 'mtlsb', client: { namespace: 'bench' }, server: { namespace: 'bench' }, serverScript: HTTP_SERVER }, async (ctx) => {
    await prepare?.(ctx);
    const rows: Row[] = [];
    for (const c of contenders) rows.push(await measure(ctx, c));
    const ha = rows.find((r) => r.name === 'HAProxy pair');
    console.log(`\n# mTLS hop between two nodes: ${BULK_BYTES / 2 ** 20} MiB bulk, wrk -t1 -c16 -d${WRK_SECONDS}s; ratios against HAProxy in this run`);
    console.log(['contender'.padEnd(14), 'bulk Gb/s', 'keep-alive req/s', 'p50 ms', 'p99 ms', 'new-conn req/s', 'proxy CPU us/req', 'proxy RSS MiB'].join(' | '));
    for (const r of rows) {
      const ratio = (v: number, h: number | undefined) => (h ? ` (${(v / h).toFixed(2)})` : '');
      console.log([r.name.padEnd(14), r.gbps.toFixed(2) + ratio(r.gbps, ha?.gbps), r.kaRps.toFixed(0) + ratio(r.kaRps, ha?.kaRps),
        r.p50.toFixed(3), r.p99.toFixed(3), r.closeRps.toFixed(0) + ratio(r.closeRps, ha?.closeRps),
        r.cpuUsPerReq.toFixed(1) + ratio(r.cpuUsPerReq, ha?.cpuUsPerReq), r.rssMiB.toFixed(1) + ratio(r.rssMiB, ha?.rssMiB)].join(' | '));
    }
    if (opts.fixedRate && ha) {
      const tail = contenders.filter((c) => c.name !== 'stunnel pair');
      printFixedRate(await fixedRatePhase(ctx, tail, ha.kaRps, DEFAULT_FIXED_RATE), ha.kaRps);
    }
    return rows;
  });
}

if (require.main === module) {
  runMtlsHop([direct, stunnelPair, haproxyPair, weft], undefined, { fixedRate: true, ...(process.env.WEFT_BENCH_LAB ? { lab: process.env.WEFT_BENCH_LAB } : {}) }).catch((e) => { console.error(e); process.exitCode = 1; });
}
