/**
 * Fairness in the shared node proxy (issue 12, point 3; docs/fairness.md), on real namespaces: one
 * node running `weft local`, and two copies of the same four pods, one outside the mesh and one in
 * it: a noisy pod with its backend, a quiet pod with its own backend. The quiet pod makes
 * sequential small HTTP/1.1 requests on one kept-alive connection; its p99 is measured without and
 * with noise (the noisy pod's connection flood plus a bulk download from its backend), outside the
 * mesh and through it, in alternating rounds in one run.
 *
 * Growth is the ratio p99 with noise / p99 without (the issue states the problem as ratios: x48
 * through the proxy against x1.8 outside). The bound: the growth through the mesh is at most twice
 * the growth outside it, on the same machine at the same time (its own share of the noise).
 * How it is estimated on a shared host: the p99 without noise of each side is taken over every
 * round's samples together (5,000 requests; one round's quiet p99 moved 0.2-1.4 ms with the rest
 * of the host, and a ratio of ratios amplifies that); the noisy p99s are paired per round (the
 * mesh and outside noise run back to back, under the same host load) and the median round's pair
 * decides. One round disturbed by another process's burst does not decide the verdict; a proxy
 * that lets the noise through (x48, the measurement) fails it in every round.
 *
 * Then the per-pod limits, made small through ProxyConfig spec.fairness: connections past them are
 * reset, each counted in weft_overload_shed_total{pod_namespace,pod_name,reason} and logged with an error.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, LabNode, LabPod } from '../../agent/sandbox';
import { startLocalAgent, WEFT_CLI, type AgentHandle } from '../../agent/sandbox/weft-agent';
import { kernelTestBlocker } from '../support/requirements';

const blocker = kernelTestBlocker();
if (blocker) process.stderr.write(`\n*** SKIPPING fairness tests: ${blocker} ***\n\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Requests per measurement, and rounds of the four measurements. */
const REQUESTS = 1000;
const ROUNDS = 5;
/** Parallel connect/request/close loops of the flood. */
const FLOOD_LOOPS = 32;

/** A backend on the port it is given: `GET /bulk?bytes=N` sends N bytes, anything else `ok`. */
const SERVER = `
const http = require('http');
const chunk = Buffer.alloc(256 * 1024, 7);
const srv = http.createServer((req, res) => {
  const m = /bytes=(\\d+)/.exec(req.url);
  if (!m) { res.end('ok'); return; }
  let left = Number(m[1]);
  res.writeHead(200, { 'content-length': left });
  res.on('close', () => { left = 0; });
  const pump = () => { while (left > 0) { const c = left >= chunk.length ? chunk : chunk.subarray(0, left); left -= c.length; if (!res.write(c)) return res.once('drain', pump); } res.end(); };
  pump();
});
srv.keepAliveTimeout = 120000;
srv.listen(Number(process.argv[1]), '0.0.0.0', () => console.log('listening'));`;
/** The port the quiet pod and the flood use; the noisy backend serves its bulk download from another process on BULK_PORT. */
const PORT = 8080;
const BULK_PORT = 8081;

/** The quiet client: `n` sequential requests on one kept-alive connection (at most `deadlineMs`); prints each latency (ms). */
const QUIET = `
const net = require('net');
const [ip, n, deadlineMs] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const deadline = performance.now() + deadlineMs;
const s = net.connect({ host: ip, port: 8080, noDelay: true });
const req = Buffer.from('GET /quiet HTTP/1.1\\r\\nHost: quiet\\r\\n\\r\\n');
const lat = [];
let buf = '', t0 = 0;
const next = () => {
  if (lat.length >= n || performance.now() > deadline) { s.end(); console.log(JSON.stringify(lat)); return; }
  t0 = performance.now(); s.write(req);
};
s.setEncoding('latin1');
s.on('connect', next);
s.on('data', (d) => {
  buf += d;
  const e = buf.indexOf('\\r\\n\\r\\n'); if (e < 0) return;
  const len = Number(/content-length: (\\d+)/i.exec(buf)[1]); if (buf.length < e + 4 + len) return;
  buf = buf.slice(e + 4 + len); lat.push(Math.round((performance.now() - t0) * 1000) / 1000); next();
});
s.on('error', (e) => { console.error(e.message); process.exit(1); });`;

/** The flood: loops of connect, one request with Connection: close, read to the end; until SIGTERM, then prints what it did. */
const FLOOD = `
const net = require('net');
const [ip, k] = [process.argv[1], Number(process.argv[2])];
let done = 0, errs = 0, stop = false;
process.on('SIGTERM', () => { stop = true; console.log(JSON.stringify({ done, errs })); process.exit(0); });
const loop = () => {
  if (stop) return;
  const s = net.connect({ host: ip, port: 8080 });
  s.on('connect', () => s.end('GET /flood HTTP/1.1\\r\\nHost: f\\r\\nConnection: close\\r\\n\\r\\n'));
  s.resume(); s.on('error', () => { errs++; }); s.on('close', () => { done++; setImmediate(loop); });
};
for (let j = 0; j < k; j++) loop();
console.error('flooding');`;

/**
 * The limits walk (ProxyConfig maxConnectionsPerPod 3, maxPendingPerPod 2): A is set up by a
 * request, B and C wait idle (pending), D is refused (pending); a request on B sets it up, then E
 * is refused (open). Prints what each connection saw.
 */
const LIMITS = `
const net = require('net');
const ip = process.argv[1];
const out = {};
const open = (name) => new Promise((resolve) => {
  const s = net.connect({ host: ip, port: 8080 });
  s.on('error', (e) => { out[name] = e.code; });
  s.on('close', () => { out[name] ??= 'closed'; resolve(s); });
  s.on('connect', () => resolve(s));
});
const request = (s, name) => new Promise((resolve) => {
  if (s.destroyed) return resolve();
  let buf = '';
  const timer = setTimeout(() => { out[name] ??= 'no answer within 5 s'; resolve(); }, 5000);
  const onData = (d) => { buf += d; if (buf.includes('\\r\\n\\r\\nok')) { s.off('data', onData); clearTimeout(timer); out[name] = 'ok'; resolve(); } };
  s.on('data', onData); s.once('close', () => { clearTimeout(timer); resolve(); });
  s.write('GET /limits HTTP/1.1\\r\\nHost: l\\r\\n\\r\\n');
});
const refused = (s, name) => new Promise((resolve) => { if (s.destroyed) return resolve(); const t = setTimeout(() => { out[name] ??= 'not refused within 5 s'; resolve(); }, 5000); s.once('close', () => { clearTimeout(t); resolve(); }); });
(async () => {
  const a = await open('A'); await request(a, 'A');
  const b = await open('B'); const c = await open('C');
  const d = await open('D'); await refused(d, 'D');
  await request(b, 'B');
  const e = await open('E'); await refused(e, 'E');
  await request(c, 'C');
  console.log(JSON.stringify(out));
  for (const s of [a, b, c]) s.destroy();
})();`;

const p99 = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(0.99 * s.length))]!;
};

interface Side { noisy: LabPod; noisyBackend: LabPod; quiet: LabPod; quietBackend: LabPod }

describe('fairness in the shared node proxy', { skip: blocker ?? false }, () => {
  let lab: Lab, node: LabNode;
  let outside: Side, mesh: Side;
  let agent: AgentHandle;
  let dir: string, configPath: string;
  const servers: ChildProcess[] = [];

  const side = async (ns: string): Promise<Side> => ({
    noisy: await node.pod(`${ns}-noisy`, { namespace: ns }),
    noisyBackend: await node.pod(`${ns}-noisy-be`, { namespace: ns }),
    quiet: await node.pod(`${ns}-quiet`, { namespace: ns }),
    quietBackend: await node.pod(`${ns}-quiet-be`, { namespace: ns }),
  });
  const writeConfig = (extra: object[] = []) => writeFileSync(configPath, lab.yaml({ meshNamespaces: ['mesh'], extra }));

  /** The quiet pod's request latencies (ms). */
  const quiet = async (s: Side, n = REQUESTS): Promise<number[]> => {
    const r = await s.quiet.exec(process.execPath, ['-e', QUIET, s.quietBackend.ip, String(n), '20000'], { timeoutMs: 40_000 });
    assert.equal(r.code, 0, `quiet client in ${s.quiet.name}: ${r.stderr}`);
    const lat = JSON.parse(r.stdout) as number[];
    assert.ok(lat.length >= n / 4, `quiet client in ${s.quiet.name} made only ${lat.length} requests in 20 s`);
    return lat;
  };

  /** Runs `f` while the noisy pod floods its backend with connections and downloads from it in bulk; returns f's result and what the flood did. */
  const withNoise = async <T>(s: Side, f: () => Promise<T>): Promise<{ value: T; flood: { done: number; errs: number } }> => {
    const flood = s.noisy.spawn(process.execPath, ['-e', FLOOD, s.noisyBackend.ip, String(FLOOD_LOOPS)]);
    const bulk = s.noisy.spawn('curl', ['-s', '-o', '/dev/null', `http://${s.noisyBackend.ip}:${BULK_PORT}/bulk?bytes=${1024 * 2 ** 30}`]);
    let floodOut = '';
    flood.stdout!.setEncoding('utf8').on('data', (d: string) => (floodOut += d));
    const floodExit = new Promise<void>((r) => flood.once('exit', () => r()));
    const bulkExit = new Promise<void>((r) => bulk.once('exit', () => r()));
    let value: T;
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the flood in ${s.noisy.name} did not start within 10 s`)), 10_000);
        flood.stderr!.once('data', () => { clearTimeout(timer); resolve(); });
      });
      await sleep(1000); // the noise at full strength before the quiet pod is measured
      value = await f();
    } finally {
      flood.kill('SIGTERM'); // it prints what it did and exits
      bulk.kill('SIGKILL');
      const killer = setTimeout(() => flood.kill('SIGKILL'), 5000);
      await Promise.all([floodExit, bulkExit]);
      clearTimeout(killer);
    }
    return { value, flood: floodOut.trim() ? JSON.parse(floodOut) as { done: number; errs: number } : { done: -1, errs: -1 } };
  };

  before(async () => {
    if (blocker) return;
    lab = await Lab.create({ name: 'fair12' });
    node = await lab.node('n1');
    outside = await side('plain');
    mesh = await side('mesh');
    // The noisy backend serves the flood and the bulk download from two processes, as a real server
    // does not let one download starve its accept loop: with one single-threaded process, its
    // synchronous bulk pump held the flood outside the mesh to ~35 connections/s while the proxy's read
    // budget (which slows the bulk) let it run ~200/s through the mesh, so the two sides did not get the same noise.
    const backends: [LabPod, number][] = [[outside.noisyBackend, PORT], [outside.noisyBackend, BULK_PORT], [outside.quietBackend, PORT],
      [mesh.noisyBackend, PORT], [mesh.noisyBackend, BULK_PORT], [mesh.quietBackend, PORT]];
    for (const [p, port] of backends) {
      const child = p.spawn(process.execPath, ['-e', SERVER, String(port)]);
      servers.push(child);
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`backend in ${p.name} not listening after 8 s`)), 8000);
        child.stdout!.once('data', () => { clearTimeout(timer); resolve(); });
      });
    }
    dir = mkdtempSync(join(tmpdir(), 'weft-fair12-'));
    configPath = join(dir, 'mesh.yaml');
    writeConfig();
    agent = startLocalAgent(node, configPath);
    await agent.ready;
  });

  after(async () => {
    if (blocker) return;
    await agent?.kill('SIGTERM');
    if (node) spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', node.name]);
    await lab?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a noisy pod (connection flood + bulk download) beside a quiet pod: the quiet pod\'s p99 grows at most 2x as much through the mesh as outside it', async (t) => {
    // Warm-up (connections, JIT, the quiet pod's certificate): not measured.
    await quiet(outside, 200);
    await quiet(mesh, 200);
    type Cells = { outside: number[]; outsideNoisy: number[]; mesh: number[]; meshNoisy: number[] };
    const all: Cells = { outside: [], outsideNoisy: [], mesh: [], meshNoisy: [] };
    const rounds: { outsideNoisy: number; meshNoisy: number }[] = [];
    /** Connections the proxy refused for overload so far (access-log denials naming it). */
    const sheds = () => agent.accessLog.filter((l) => String(l.error ?? '').includes('overloaded')).length;
    for (let round = 0; round < ROUNDS; round++) {
      const c: Cells = { outside: await quiet(outside), mesh: await quiet(mesh), outsideNoisy: [], meshNoisy: [] };
      const o = await withNoise(outside, () => quiet(outside));
      c.outsideNoisy = o.value;
      const shedBefore = sheds();
      const m = await withNoise(mesh, () => quiet(mesh));
      c.meshNoisy = m.value;
      const shedInRound = sheds() - shedBefore;
      assert.ok(o.flood.done > 0 && m.flood.done > 0, `the flood ran: outside ${JSON.stringify(o.flood)}, mesh ${JSON.stringify(m.flood)}`);
      for (const k of Object.keys(all) as (keyof Cells)[]) all[k].push(...c[k]);
      rounds.push({ outsideNoisy: p99(c.outsideNoisy), meshNoisy: p99(c.meshNoisy) });
      t.diagnostic(`round ${round}: quiet pod p99 outside ${p99(c.outside).toFixed(2)} -> ${p99(c.outsideNoisy).toFixed(2)} ms, through the mesh ${p99(c.mesh).toFixed(2)} -> ${p99(c.meshNoisy).toFixed(2)} ms; ` +
        `flood outside ${JSON.stringify(o.flood)}, through the mesh ${JSON.stringify(m.flood)} (${shedInRound} refused while shed); samples ${c.outside.length}/${c.outsideNoisy.length}/${c.mesh.length}/${c.meshNoisy.length}`);
    }
    const base = { outside: p99(all.outside), mesh: p99(all.mesh) };
    const verdicts = rounds.map((r) => {
      const growth = { outside: r.outsideNoisy / base.outside, mesh: r.meshNoisy / base.mesh };
      return { ratio: growth.mesh / growth.outside,
        text: `outside ${base.outside.toFixed(2)} -> ${r.outsideNoisy.toFixed(2)} ms (x${growth.outside.toFixed(2)}), through the mesh ${base.mesh.toFixed(2)} -> ${r.meshNoisy.toFixed(2)} ms (x${growth.mesh.toFixed(2)})` };
    });
    const median = [...verdicts].sort((a, b) => a.ratio - b.ratio)[Math.floor(verdicts.length / 2)]!;
    t.diagnostic(`quiet pod p99 without noise over all rounds: outside ${base.outside.toFixed(2)} ms, through the mesh ${base.mesh.toFixed(2)} ms; ` +
      `mesh growth / outside growth per round: ${verdicts.map((v) => v.ratio.toFixed(2)).join(', ')}; median round: ${median.text}`);
    // The mesh pods' traffic, quiet and noisy, went through the proxy (its access log names them); the outside pods' did not.
    const through = (pod: LabPod) => agent.accessLog.filter((l) => String(l['src.addr']).startsWith(`${pod.ip}:`)).length;
    assert.ok(through(mesh.quiet) > 0 && through(mesh.noisy) > 0, 'the quiet and noisy mesh pods went through the node proxy');
    assert.equal(through(outside.quiet) + through(outside.noisy), 0, 'the pods outside the mesh bypass it');
    assert.ok(median.ratio <= 2,
      `in the median of ${ROUNDS} rounds the quiet pod's p99 grew ${median.ratio.toFixed(2)}x as much through the mesh as outside it (bound 2): ${median.text}; ` +
      `every round: ${verdicts.map((v) => v.ratio.toFixed(2)).join(', ')}`);
  });

  test('per-pod limits from ProxyConfig spec.fairness: past maxPendingPerPod and maxConnectionsPerPod a connection is reset, counted in weft_overload_shed_total and logged', async () => {
    // The backend's port is declared HTTP, so a connection waits (pending) for its first request before the proxy connects upstream.
    // The walk runs from the quiet pod (never shed) with shedding off (a lag threshold of a minute): its limits alone judge it.
    writeConfig([
      { apiVersion: 'config.weft.dev/v1', kind: 'ProxyConfig', metadata: { name: 'default' }, spec: { fairness: { maxConnectionsPerPod: 3, maxPendingPerPod: 2, overloadLagMs: 60000 } } },
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'quiet-be', namespace: 'mesh' },
        spec: { clusterIP: 'None', selector: { app: 'mesh-quiet-be' }, ports: [{ name: 'http', port: 8080, targetPort: 8080 }] } },
    ]);
    let dump = '';
    const taken = () => /"maxPendingPerPod":\s*2\b/.test(dump);
    for (let i = 0; i < 100 && !taken(); i++) {
      dump = (await node.exec('curl', ['-s', '--max-time', '2', 'http://127.0.0.1:15000/config_dump'], { timeoutMs: 5000 })).stdout;
      if (!taken()) await sleep(100);
    }
    assert.ok(taken(), `the agent took the new ProxyConfig: ${dump.slice(0, 300)}\n${agent.stderr().split('\n').slice(-8).join('\n')}`);
    await sleep(2000); // a shed begun before the change runs out (at most 8 x shedMs = 1.6 s)
    const metric = async () => (await node.exec('curl', ['-s', '--max-time', '5', `http://${node.ip}:15020/metrics`], { timeoutMs: 8000 })).stdout;
    const count = (text: string, reason: string) =>
      Number(new RegExp(`^weft_overload_shed_total\\{pod_namespace="mesh",pod_name="mesh-quiet",reason="${reason}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
    const before = await metric();
    const r = await mesh.quiet.exec(process.execPath, ['-e', LIMITS, mesh.quietBackend.ip], { timeoutMs: 40_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { A: 'ok', B: 'ok', C: 'ok', D: 'ECONNRESET', E: 'ECONNRESET' },
      `${r.stdout}\n${agent.accessLog.filter((l) => String(l.error).includes('spec.fairness')).slice(-5).map((l) => JSON.stringify(l)).join('\n')}`);
    const text = await metric();
    assert.equal(count(text, 'max_pending') - count(before, 'max_pending'), 1, text.split('\n').filter((l) => l.includes('shed')).join('\n'));
    assert.equal(count(text, 'max_connections') - count(before, 'max_connections'), 1);
    await agent.waitForLog((l) => /spec\.fairness\.maxPendingPerPod 2/.test(String(l.error)) && l['src.workload'] !== undefined && l.decision === 'deny');
    await agent.waitForLog((l) => /mesh\/mesh-quiet holds 3 connections \(spec\.fairness\.maxConnectionsPerPod 3\)/.test(String(l.error)));
    // Its connections closed, the pod is under its limits again.
    assert.equal((await quiet(mesh, 20)).length, 20);
  });
});
