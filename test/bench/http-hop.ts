/**
 * HTTP pod-to-pod across two lab nodes: direct, vs an HAProxy pair in HTTP mode doing the mutual-
 * TLS hop between the nodes, vs Weft with ten AuthorizationPolicies in force on the server
 * (http-hop-config.ts), all in one run on the same pods. Two loads per contender: HTTP/1.1 keep-
 * alive (wrk -t1 -c16) and HTTP/2 with prior knowledge (h2load -t1 -c16 -m10), each WRK_SECONDS.
 * Prints req/s, p50 and p99, the proxies' CPU per request, and req/s and p99 against HAProxy's,
 * beside the targets (Weft ≥ 1.0× HAProxy req/s, p99 ≤ HAProxy's). Missing a target is a result,
 * not an error: the exit status is non-zero only when the benchmark could not measure.
 *
 * Weft parses HTTP on the Service ports that say so (appProtocol http/http2); until the node proxy
 * has its HTTP layer it carries them at L4, and the output says which path it measured (per-request
 * access-log lines appear only on the L7 path).
 *
 * Fairness: the Weft node proxy is one Node.js thread per node, so HAProxy runs with nbthread 1;
 * both reuse connections to the next hop (HAProxy `http-reuse always`, Weft its HBONE pool).
 * ECDSA P-256 certificates and TLS 1.3 everywhere; HAProxy verifies both ways, ALPN h2 on the hop
 * for HTTP/2 and http/1.1 for HTTP/1.1. HAProxy writes no access log; Weft writes its own to a file.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { measureEach, spawnReady, stopPids, withHopLab, type BenchContext, type Contender, type Running } from './hop-lab';
import { httpHopObjects, PORTS } from './http-hop-config';
import { cpuTicks, h2load, TICK_S, WRK_SECONDS, wrk, type LoadResult } from './load';
import { startWeftMesh } from './weft-mesh';

/** An HTTP/1.1 server and an HTTP/2 (h2c, prior knowledge) server answering every request with a 3-byte body. */
const HTTP_SERVERS = `
const http = require('http');
const http2 = require('http2');
const body = Buffer.from('ok\\n');
let up = 0;
const ready = () => { if (++up === 2) console.log('listening'); };
http.createServer((req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
}).listen(${PORTS.h1}, '0.0.0.0', ready);
http2.createServer().on('stream', (stream) => {
  stream.on('error', () => {});
  stream.respond({ ':status': 200, 'content-type': 'text/plain', 'content-length': body.length });
  stream.end(body);
}).listen(${PORTS.h2}, '0.0.0.0', ready);`;

const H2_CONNECTIONS = 16;
const H2_STREAMS = 10;
const HAPROXY = 'HAProxy pair';

interface HttpEndpoint extends Running {
  host: string;
  h1Port: number;
  h2Port: number;
  /** what the contender did, once the loads have run (Weft: L4 or L7) */
  describe?(): string;
}

const direct: Contender<HttpEndpoint> = {
  name: 'direct',
  async start(c) { return { host: c.server.ip, h1Port: PORTS.h1, h2Port: PORTS.h2, pids: () => [], stop: async () => undefined }; },
};

/** Writes an HAProxy config in HTTP mode (one thread, keep-alive, `http-reuse always`) with `body` after the defaults; its path. */
export function haproxyHttpConfig(dir: string, name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, ['global', '  nbthread 1', '  maxconn 4000', 'defaults', '  mode http', '  option http-keep-alive', '  http-reuse always',
    '  timeout connect 5s', '  timeout client 60s', '  timeout server 60s', '  timeout http-keep-alive 60s', body].join('\n'));
  return p;
}

/** HAProxy's TLS 1.3 settings with certificate `crt` of `dir` (hop-lab's makeCerts), verifying the peer both ways. */
export const haproxyTls = (dir: string, crt: string): string => `ssl crt ${dir}/${crt}.pem ca-file ${dir}/ca.pem verify required ssl-min-ver TLSv1.3`;

const haproxyHttpPair: Contender<HttpEndpoint> = {
  name: HAPROXY,
  async start(c) {
    const conf = (name: string, body: string) => haproxyHttpConfig(c.dir, name, body);
    const tls = (crt: string) => haproxyTls(c.dir, crt);
    const hop = { h1: 28443, h2: 28444 };
    const server = conf('haproxy-http-n2.cfg', [
      `frontend hop-h1\n  bind ${c.n2.ip}:${hop.h1} ${tls('server')} alpn http/1.1\n  default_backend pod-h1`,
      `frontend hop-h2\n  bind ${c.n2.ip}:${hop.h2} ${tls('server')} alpn h2\n  default_backend pod-h2`,
      `backend pod-h1\n  server s ${c.server.ip}:${PORTS.h1}`,
      `backend pod-h2\n  server s ${c.server.ip}:${PORTS.h2} proto h2\n`,
    ].join('\n'));
    const client = conf('haproxy-http-n1.cfg', [
      `frontend plain-h1\n  bind ${c.n1.ip}:28080\n  default_backend hop-h1`,
      `frontend plain-h2\n  bind ${c.n1.ip}:28081 proto h2\n  default_backend hop-h2`,
      `backend hop-h1\n  server s ${c.n2.ip}:${hop.h1} ${tls('client')} alpn http/1.1`,
      `backend hop-h2\n  server s ${c.n2.ip}:${hop.h2} ${tls('client')} alpn h2\n`,
    ].join('\n'));
    const pids = [await spawnReady(c.n2, 'haproxy', ['-db', '-f', server]), await spawnReady(c.n1, 'haproxy', ['-db', '-f', client])];
    return { host: c.n1.ip, h1Port: 28080, h2Port: 28081, pids: () => pids, stop: () => stopPids(pids) };
  },
};

const weft: Contender<HttpEndpoint> = {
  name: 'Weft',
  async start(c) {
    const [h1, h2] = urls(c.server.ip, PORTS.h1, PORTS.h2);
    const mesh = await startWeftMesh(c, {
      meshNamespaces: [c.client.namespace, c.server.namespace],
      extra: httpHopObjects(c.client, c.server),
      warmUp: [['curl', ['-sf', '-m', '5', '-o', '/dev/null', h1]], ['curl', ['-sf', '-m', '5', '--http2-prior-knowledge', '-o', '/dev/null', h2]]],
    });
    return {
      host: c.server.ip, h1Port: PORTS.h1, h2Port: PORTS.h2, pids: mesh.pids, stop: mesh.stop,
      describe() {
        const requests = mesh.countLogLines('"method"');
        const tunnels = mesh.countLogLines('"dst.hbone_addr"');
        return requests > 0
          ? `Weft carried the requests at L7 (${requests} per-request access-log lines, policies judged per request; ${tunnels} tunnel log lines)`
          : `Weft carried the requests at L4 (${tunnels} tunnel log lines, no per-request ones: this build of the node proxy does not parse HTTP yet)`;
      },
    };
  },
};

function urls(host: string, h1Port: number, h2Port: number): [string, string] {
  const h = host.includes(':') ? `[${host}]` : host;
  return [`http://${h}:${h1Port}/`, `http://${h}:${h2Port}/`];
}

type Load = 'HTTP/1.1' | 'HTTP/2';
interface Row extends LoadResult { contender: string; load: Load; cpuUsPerReq: number }

async function measure(c: BenchContext, contender: Contender<HttpEndpoint>): Promise<{ rows: Row[]; note?: string }> {
  const ep = await contender.start(c);
  try {
    const [h1, h2] = urls(ep.host, ep.h1Port, ep.h2Port);
    for (const args of [['-sf', '-m', '5', '-o', '/dev/null', h1], ['-sf', '-m', '5', '--http2-prior-knowledge', '-o', '/dev/null', h2]]) {
      const r = await c.client.exec('curl', args, { timeoutMs: 15_000 });
      if (r.code !== 0) throw new Error(`${contender.name}: warm-up \`curl ${args.join(' ')}\` failed (exit ${r.code}): ${r.stderr}`);
    }
    const run = async (load: Load, go: () => Promise<LoadResult>): Promise<Row> => {
      const t0 = cpuTicks(ep.pids());
      const res = await go();
      const ticks = cpuTicks(ep.pids()) - t0;
      return { ...res, contender: contender.name, load, cpuUsPerReq: ep.pids().length ? (ticks * TICK_S * 1e6) / res.requests : NaN };
    };
    const rows = [
      await run('HTTP/1.1', () => wrk(c.client, h1, [])),
      await run('HTTP/2', () => h2load(c.client, h2, join(c.dir, 'h2load.log'), H2_CONNECTIONS, H2_STREAMS)),
    ];
    return { rows, note: ep.describe?.() };
  } finally {
    await ep.stop();
  }
}

const ratio = (v: number, h: number | undefined) => (h && Number.isFinite(v) ? ` (${(v / h).toFixed(2)}x)` : '');

function print(rows: Row[], notes: string[]): void {
  console.log(`\n# HTTP hop between two nodes (client pod on n1, server pod on n2); ratios against the ${HAPROXY} (HTTP mode, mTLS) in this run`);
  console.log(`# HTTP/1.1 keep-alive: wrk -t1 -c16 -d${WRK_SECONDS}s; HTTP/2 (h2c): h2load -t1 -c${H2_CONNECTIONS} -m${H2_STREAMS} -D${WRK_SECONDS}`);
  for (const n of notes) console.log(`# ${n}`);
  console.log(['load'.padEnd(8), 'contender'.padEnd(12), 'req/s', 'p50 ms', 'p99 ms', 'proxy CPU us/req', 'failed'].join(' | '));
  for (const r of rows) {
    const ha = rows.find((h) => h.contender === HAPROXY && h.load === r.load);
    console.log([r.load.padEnd(8), r.contender.padEnd(12), r.rps.toFixed(0) + ratio(r.rps, ha?.rps), r.p50.toFixed(3),
      r.p99.toFixed(3) + ratio(r.p99, ha?.p99), Number.isFinite(r.cpuUsPerReq) ? r.cpuUsPerReq.toFixed(1) + ratio(r.cpuUsPerReq, ha?.cpuUsPerReq) : '-',
      String(r.failed)].join(' | '));
  }
  for (const load of ['HTTP/1.1', 'HTTP/2'] as const) {
    const w = rows.find((r) => r.contender === 'Weft' && r.load === load);
    const ha = rows.find((r) => r.contender === HAPROXY && r.load === load);
    if (!w || !ha) continue;
    const rps = w.rps / ha.rps;
    const p99 = w.p99 / ha.p99;
    console.log(`target ${load}: Weft req/s ${rps.toFixed(2)}x HAProxy (target >= 1.00x: ${rps >= 1 ? 'met' : 'missed'}), `
      + `p99 ${p99.toFixed(2)}x HAProxy's (target <= 1.00x: ${p99 <= 1 ? 'met' : 'missed'})`);
  }
}

export async function runHttpHop(contenders: Array<Contender<HttpEndpoint>>): Promise<Row[]> {
  return withHopLab({
    name: 'hbench',
    client: { namespace: 'bench', serviceAccount: 'client' },
    server: { namespace: 'bench', serviceAccount: 'server' },
    serverScript: HTTP_SERVERS,
  }, async (c) => {
    const { rows, notes, errors } = await measureEach(contenders, (contender) => measure(c, contender));
    print(rows, notes);
    for (const r of rows.filter((row) => row.failed > 0)) {
      errors.push(`${r.contender} ${r.load}: ${r.failed} of ${r.requests} requests failed, so its numbers do not compare`
        + (r.contender === 'Weft' ? ' (check that no AuthorizationPolicy in http-hop-config.ts denies GET / from the client, and the agents\' logs)' : ''));
    }
    if (errors.length) throw new Error(`http-hop could not measure everything:\n  ${errors.join('\n  ')}`);
    return rows;
  });
}

if (require.main === module) {
  // Weft last: its agents' enrollment outlives them until `weft uninstall`, which its stop() runs.
  // HTTP_HOP_ONLY=haproxy,weft (names, lower case) runs only those contenders, to iterate faster.
  const only = (process.env.HTTP_HOP_ONLY ?? '').toLowerCase().split(',').filter(Boolean);
  const chosen = [direct, haproxyHttpPair, weft].filter((c) => only.length === 0 || only.some((o) => c.name.toLowerCase().startsWith(o)));
  runHttpHop(chosen).catch((e) => { console.error(e); process.exitCode = 1; });
}
