/**
 * Memory per agent (issue 11 point 3): `weft controlplane` and a `weft agent` on each of two lab
 * nodes, started as the harness starts them (agent/node-flags.ts), and their memory read from /proc
 *   - idle: started, warmed up (workload certificates issued), nothing flowing;
 *   - after the benchmark: 1 GiB bulk, wrk keep-alive and connection-per-request, as mtls-hop.ts;
 *   - with 10,000 idle connections from ten client pods on n1 (1,000 each) to a pod on n2, each proven alive with a
 *     one-byte echo; per connection is (with − after the benchmark) / 10,000;
 *   - after those connections closed (what stays).
 * Targets: <= 64 MiB idle, <= 96 MiB after the benchmark, <= 160 MiB with 10,000 idle connections.
 * A bare Node.js process in a pod is printed beside them as the floor.
 *
 * WEFT_BENCH_AGENT_FLAGS adds Node.js flags to the agents; the agents inherit this process's
 * environment, so `MALLOC_ARENA_MAX=2 node dist/test/bench/memory.js` measures that too.
 * WEFT_MEMORY_CONNECTIONS changes the 10,000. The agents run at log level debug (unless
 * WEFT_LOG_LEVEL says otherwise) so that their idle shrinks (core/idle-shrink.ts) are printed on a
 * timeline with the reads: whether V8's heap was given back before a read decides much of it.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, type LabPod } from '../../agent/sandbox';
import { BULK_BYTES, HTTP_SERVER, wrk } from './load';
import { startServer, uninstallWeft, type BenchContext } from './hop-lab';
import { startWeftMesh } from './weft-mesh';
import { formatMemory, holdIdleConnections, IDLE_ECHO_SERVER, processMemory, shares, type IdleHolder, type ProcessMemory } from '../support/idle-connections';

const CONNECTIONS = Number(process.env.WEFT_MEMORY_CONNECTIONS ?? 10_000);
/** 1,000 connections per pod: the proxy admits at most spec.fairness.maxConnectionsPerPod (1,024 by default) from one pod. */
const CLIENT_PODS = 10;
const IDLE_PORT = 9000;
const SETTLE_MS = 3_000;
const TARGETS = { idle: 64, afterLoad: 96, idleConnections: 160 };

/** The distinct reasons in the agents' access logs, with counts: why connections failed. */
function accessLogErrors(files: string[]): string {
  const counts = new Map<string, number>();
  for (const f of files) {
    for (const line of readFileSync(f, 'utf8').split('\n')) {
      const m = /"(error|reason)":"([^"]{0,200})/.exec(line);
      if (m) counts.set(`${f.split('/').pop()}: ${m[2]}`, (counts.get(`${f.split('/').pop()}: ${m[2]}`) ?? 0) + 1);
    }
  }
  return [...counts].map(([k, v]) => `  ${v} x ${k}`).join('\n') || '  (no errors in the access logs)';
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Where the run is, on stderr with the time: the 10,000 connections take minutes on a busy host. */
const progress = (what: string) => process.stderr.write(`# memory bench ${new Date().toISOString()} ${what}\n`);

/** The agents' idle shrinks (their debug lines) and the bench's reads, in time order, in seconds from the first read. */
function shrinkTimeline(agentLogs: string[], reads: Array<{ label: string; at: number }>): string[] {
  const events = reads.map((r) => ({ at: r.at, text: `read: ${r.label}` }));
  agentLogs.forEach((log, i) => {
    for (const line of log.split('\n')) {
      if (!line.includes('V8 heap given back')) continue;
      try {
        const e = JSON.parse(line) as { time: number; msg: string; beforeMiB: number; afterMiB: number; ms: number };
        events.push({ at: e.time, text: `n${i + 1} shrink (${e.msg.split(':')[0]}): V8 heap ${e.beforeMiB} -> ${e.afterMiB} MiB, ${e.ms} ms` });
      } catch { /* not a JSON line */ }
    }
  });
  const t0 = reads[0]?.at ?? 0;
  return events.sort((a, b) => a.at - b.at).map((e) => `${((e.at - t0) / 1000).toFixed(1).padStart(7)} s  ${e.text}`);
}

/** A request from each client pod until it works (bounded): the agent refuses a workload's tunnels until its certificate is issued. */
async function warmUp(pods: LabPod[], url: string): Promise<void> {
  for (const p of pods) {
    let last = '';
    for (let i = 0; i < 40; i++) {
      const r = await p.exec('curl', ['-sf', '-m', '5', '-o', '/dev/null', url], { timeoutMs: 8_000 });
      if (r.code === 0) { last = ''; break; }
      last = `curl exit ${r.code}: ${r.stderr}`;
      await sleep(250);
    }
    if (last) throw new Error(`warm-up from pod ${p.name} to ${url} failed 40 times (${last}); check the agents' logs`);
  }
}

/** The resident memory of a bare `node` idling in a pod: the floor the agent is compared with. */
async function bareNode(pod: LabPod): Promise<ProcessMemory> {
  const child = pod.spawn(process.execPath, ['-e', 'console.log("up"); setInterval(() => {}, 1000)']);
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('bare node did not start in 5 s')), 5_000);
    child.stdout!.once('data', () => { clearTimeout(t); resolve(); });
  });
  await sleep(500);
  const m = processMemory(child.pid!);
  child.kill('SIGKILL');
  return m;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-mem11b-'));
  let lab: Lab | undefined;
  const holders: IdleHolder[] = [];
  try {
    lab = await Lab.create({ name: 'mem11b' });
    const n1 = await lab.node('n1');
    const n2 = await lab.node('n2');
    const clients: LabPod[] = [];
    for (let i = 1; i <= CLIENT_PODS; i++) clients.push(await n1.pod(`client${i}`, { namespace: 'bench' }));
    const server = await n2.pod('server', { namespace: 'bench' });
    await startServer(server, HTTP_SERVER);
    const echo = server.spawn(process.execPath, ['--max-semi-space-size=1', '-e', IDLE_ECHO_SERVER, String(IDLE_PORT)]);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('idle echo server not listening after 10 s')), 10_000);
      echo.stdout!.once('data', () => { clearTimeout(t); resolve(); });
    });
    const ctx: BenchContext = { dir, lab, n1, n2, client: clients[0]!, server };
    // Both ports declared TCP: carried at L4, as the HAProxy pair in mtls-hop.ts carries them.
    const service = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'server', namespace: 'bench' },
      spec: { clusterIP: 'None', selector: server.labels, ports: [{ name: 'tcp-bench', port: 8080, targetPort: 8080 }, { name: 'tcp-idle', port: IDLE_PORT, targetPort: IDLE_PORT }] } };
    const floor = await bareNode(clients[0]!);
    const base = `http://${server.ip}:8080`;
    process.env.WEFT_LOG_LEVEL ??= 'debug';
    const mesh = await startWeftMesh(ctx, { meshNamespaces: ['bench'], extra: [service], warmUp: [['curl', ['-sf', '-m', '5', '-o', '/dev/null', `${base}/`]]] });
    try {
      await warmUp(clients, `${base}/`);
      const pids = mesh.pids();
      const reads: Array<{ label: string; at: number }> = [];
      const read = (label: string) => { reads.push({ label, at: Date.now() }); return pids.map(processMemory); };
      await sleep(SETTLE_MS);
      const idle = read('idle');
      progress(`idle read (agents ${pids.join(', ')}); loading`);

      const bulk = await clients[0]!.exec('curl', ['-s', '-o', '/dev/null', '-w', '%{size_download} %{speed_download}', `${base}/bulk?bytes=${BULK_BYTES}`], { timeoutMs: 120_000 });
      const [size, speed] = bulk.stdout.trim().split(' ').map(Number);
      if (size !== BULK_BYTES) throw new Error(`bulk moved ${bulk.stdout} of ${BULK_BYTES} bytes: ${bulk.stderr}`);
      const ka = await wrk(clients[0]!, `${base}/`, []);
      const close = await wrk(clients[0]!, `${base}/`, ['-H', 'Connection: close']);
      await sleep(SETTLE_MS);
      const afterLoad = read('after the benchmark');
      progress(`after-load read; opening ${CONNECTIONS} idle connections`);

      const perPod = shares(CONNECTIONS, CLIENT_PODS);
      holders.push(...clients.map((p, i) => holdIdleConnections(p, server.ip, IDLE_PORT, perPod[i]!, { phaseTimeoutMs: 600_000, inflight: 32 })));
      const held = await Promise.all(holders.map((h) => h.held));
      const opened = held.reduce((s, r) => s + r.ok, 0);
      if (opened !== CONNECTIONS) throw new Error(`only ${opened} of ${CONNECTIONS} idle connections echoed: ${JSON.stringify(held)}\n${accessLogErrors(mesh.accessLogs)}`);
      await sleep(SETTLE_MS);
      const withIdle = read(`with ${opened} idle connections`);
      progress(`read with ${opened} idle connections; pinging them`);
      const pinged = await Promise.all(holders.map((h) => h.ping()));
      const alive = pinged.reduce((s, r) => s + r.ok, 0);
      for (const h of holders.splice(0)) await h.stop();
      await sleep(SETTLE_MS);
      const released = read('after they closed');
      progress('read after the connections closed');

      console.log(`\n# memory per agent: two nodes, ${CONNECTIONS} idle connections from ${CLIENT_PODS} pods on n1 to one pod on n2 (${alive} still echoing when measured); MiB`);
      console.log(`# bare node in a pod: ${formatMemory(floor)}; load: ${BULK_BYTES / 2 ** 20} MiB bulk at ${((speed! * 8) / 1e9).toFixed(2)} Gb/s, keep-alive ${ka.rps.toFixed(0)} req/s, new-conn ${close.rps.toFixed(0)} req/s`);
      console.log(['agent'.padEnd(8), `idle (<= ${TARGETS.idle})`, `after benchmark (<= ${TARGETS.afterLoad})`, `${CONNECTIONS} idle conns (<= ${TARGETS.idleConnections})`, 'per conn KiB', 'after they closed', 'anon/file with conns'].join(' | '));
      const mark = (v: number, limit: number) => `${v.toFixed(1)}${v <= limit ? '' : ' OVER'}`;
      pids.forEach((_, i) => {
        const perConnKiB = ((withIdle[i]!.rss - afterLoad[i]!.rss) * 1024) / CONNECTIONS;
        console.log([`n${i + 1}`.padEnd(8), mark(idle[i]!.rss, TARGETS.idle), mark(afterLoad[i]!.rss, TARGETS.afterLoad), mark(withIdle[i]!.rss, TARGETS.idleConnections),
          perConnKiB.toFixed(2), released[i]!.rss.toFixed(1), `${withIdle[i]!.anon.toFixed(1)}/${withIdle[i]!.file.toFixed(1)}`].join(' | '));
      });
      console.log('# idle shrinks and reads (s from the first read):');
      for (const line of shrinkTimeline(mesh.agentLogs(), reads)) console.log(`#${line}`);
    } finally {
      for (const h of holders) await h.stop();
      await mesh.stop();
    }
  } finally {
    if (lab) {
      uninstallWeft(lab);
      await lab.close();
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
