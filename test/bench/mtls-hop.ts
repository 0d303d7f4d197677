/**
 * Pod-to-pod across two lab nodes: direct, vs an stunnel pair and an HAProxy pair doing the same
 * mutual-TLS hop between the nodes, vs Weft (eBPF capture + HBONE), all in one run on the same
 * pods. Prints bulk Gb/s, keep-alive req/s with p50/p99 (wrk), new-connection-per-request req/s,
 * the proxies' CPU per request and RSS, and each contender's ratio against HAProxy.
 *
 * Fairness: the Weft node proxy is one Node.js thread per node, so HAProxy runs with nbthread 1;
 * stunnel keeps its default (a thread per connection). ECDSA P-256 certificates everywhere.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, LabNode, LabPod } from '../../agent/sandbox';
import { CONTROL_PLANE_PORT, startControlPlane, startNodeAgent } from '../../agent/sandbox/weft-agent';
import { BULK_BYTES, cpuTicks, HTTP_SERVER, rssMiB, WRK_SECONDS, wrk } from './load';

export interface Endpoint { host: string; port: number; pids: () => number[]; stop(): Promise<void> }
export interface Contender { name: string; start(ctx: BenchContext): Promise<Endpoint> }
export interface BenchContext { dir: string; lab: Lab; n1: LabNode; n2: LabNode; client: LabPod; server: LabPod }


function makeCerts(dir: string): void {
  const o = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  o(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=bench-ca']);
  for (const who of ['server', 'client']) {
    o(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${who}.key`, '-out', `${who}.csr`, '-subj', `/CN=${who}`]);
    o(['x509', '-req', '-in', `${who}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${who}.crt`, '-days', '2']);
    writeFileSync(join(dir, `${who}.pem`), readFileSync(join(dir, `${who}.crt`), 'utf8') + readFileSync(join(dir, `${who}.key`), 'utf8'));
  }
}

async function spawnReady(node: LabNode, cmd: string, args: string[], settleMs = 500): Promise<number> {
  const p = node.spawn(cmd, args);
  let err = '';
  p.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
  p.stdout?.resume();
  await new Promise((r) => setTimeout(r, settleMs));
  if (p.exitCode !== null) throw new Error(`${cmd} exited at start (${p.exitCode}): ${err}`);
  return p.pid!;
}

const stop = async (pids: number[]) => { for (const pid of pids) { try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ } } };

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
    return { host: c.n1.ip, port: 18080, pids: () => pids, stop: () => stop(pids) };
  },
};

export const haproxyPair: Contender = {
  name: 'HAProxy pair',
  async start(c) {
    const conf = (name: string, body: string) => { const p = join(c.dir, name); writeFileSync(p, `global\n  nbthread 1\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n${body}`); return p; };
    const server = conf('haproxy-n2.cfg', `frontend hop\n  bind ${c.n2.ip}:28443 ssl crt ${c.dir}/server.pem ca-file ${c.dir}/ca.pem verify required ssl-min-ver TLSv1.3\n  default_backend pod\nbackend pod\n  server s ${c.server.ip}:8080\n`);
    const client = conf('haproxy-n1.cfg', `frontend plain\n  bind ${c.n1.ip}:28080\n  default_backend hop\nbackend hop\n  server s ${c.n2.ip}:28443 ssl crt ${c.dir}/client.pem ca-file ${c.dir}/ca.pem verify required ssl-min-ver TLSv1.3\n`);
    const pids = [await spawnReady(c.n2, 'haproxy', ['-db', '-f', server]), await spawnReady(c.n1, 'haproxy', ['-db', '-f', client])];
    return { host: c.n1.ip, port: 28080, pids: () => pids, stop: () => stop(pids) };
  },
};

export const weft: Contender = {
  name: 'Weft',
  async start(c) {
    const config = join(c.dir, 'weft.yaml');
    const dataDir = join(c.dir, 'weft-data');
    writeFileSync(config, c.lab.yaml({ meshNamespaces: ['bench'] }));
    const cp = startControlPlane(c.n1, config, dataDir);
    await cp.ready;
    const agents = [c.n1, c.n2].map((n) => startNodeAgent(n, `${c.n1.ip}:${CONTROL_PLANE_PORT}`, dataDir));
    await Promise.all(agents.map((a) => a.ready));
    // the first request waits for the workload certificates; warm up outside the measurement
    await c.client.exec('curl', ['-s', '-o', '/dev/null', `http://${c.server.ip}:8080/`], { timeoutMs: 10_000 });
    return {
      host: c.server.ip, port: 8080, pids: () => agents.map((a) => a.process.pid!),
      async stop() {
        for (const p of [...agents, cp]) await p.kill('SIGTERM');
        for (const n of [c.n1, c.n2]) spawnSync(process.execPath, [join(__dirname, '..', '..', 'agent', 'cli.js'), 'uninstall', '--node', n.name]);
      },
    };
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

export async function runMtlsHop(contenders: Contender[], prepare?: (c: BenchContext) => Promise<void>): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-mtls-bench-'));
  const lab = await Lab.create({ name: 'mtlsb' });
  try {
    makeCerts(dir);
    const n1 = await lab.node('n1');
    const n2 = await lab.node('n2');
    const client = await n1.pod('client', { namespace: 'bench' });
    const server = await n2.pod('server', { namespace: 'bench' });
    const srv = server.spawn(process.execPath, ['-e', HTTP_SERVER]);
    await new Promise<void>((r) => srv.stdout!.once('data', () => r()));
    const ctx = { dir, lab, n1, n2, client, server };
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
    return rows;
  } finally {
    // only this lab's nodes: other labs (a test run, another bench) may have agents on this host
    for (const n of ['n1', 'n2']) spawnSync(process.execPath, [join(__dirname, '..', '..', 'agent', 'cli.js'), 'uninstall', '--node', `${lab.name}-${n}`]);
    await lab.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  runMtlsHop([direct, stunnelPair, haproxyPair, weft]).catch((e) => { console.error(e); process.exitCode = 1; });
}
