/**
 * The metrics tests' mesh: two lab nodes, `weft controlplane` + a `weft agent` per node, the apps of
 * mesh-apps.ts, and a known traffic mix (HTTP allowed and denied, gRPC, one TCP echo, a same-node
 * pair, a plaintext client outside the mesh). Shared by the tests that read what the agents report
 * on :15020 (directly, or through a real Prometheus).
 */
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Lab, LabNode, LabPod, curl } from '../../agent/sandbox';
import { killGroup } from '../../agent/sandbox/run';
import { CONTROL_PLANE_PORT, startControlPlane, startNodeAgent, WEFT_CLI, type AgentHandle } from '../../agent/sandbox/weft-agent';
import { APP_SERVER, GRPC_CLIENT, RAW_CLIENT } from './mesh-apps';

export const SHOP = 'shop';
export const SVC = (name: string) => `${name}.${SHOP}.svc.cluster.local`;
export const ID = (sa: string) => `spiffe://cluster.local/ns/${SHOP}/sa/${sa}`;
export const ECHO = 'metrics-echo: 24 bytes\n'; // 23 bytes each way
export const MIX = { get: 3, denied: 2, local: 2 } as const;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const GRPC_JS = dirname(require.resolve('@grpc/grpc-js/package.json'));

export interface MetricsMesh {
  lab: Lab;
  n1: LabNode;
  n2: LabNode;
  /** n1: web (shop/web v1), bot (shop/bot), api1 (shop/api v2), outsider (legacy, not meshed); n2: api (shop/api v2) */
  pods: { web: LabPod; bot: LabPod; api1: LabPod; outsider: LabPod; api: LabPod };
  /** the pods `MeshExtras.pods` added, by the names it gave them */
  extraPods: Record<string, LabPod>;
  cp: AgentHandle;
  agents: [AgentHandle, AgentHandle];
  /** a temp directory removed by close() */
  dir: string;
  /** Starts mesh-apps' APP_SERVER in `pod` (bounded wait until it listens); close() kills it. */
  startApp(pod: LabPod): Promise<void>;
  /** Kills the control plane (SIGKILL) and starts it again on the same config and data directory; resolves once it is ready. */
  restartControlPlane(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A ProxyConfig for tests that count what the mesh carried, not how it behaves under overload: the
 * default overload detection (spec.fairness.overloadLagMs 20 ms) shed the busiest pod on a loaded
 * shared host (the agent logged "proxy overloaded", lag 38 ms), and the mix's requests and held
 * connections from web were reset (curl status 0, ECONNRESET). 60 s of lag is never reached.
 */
export const NO_OVERLOAD_SHEDDING = { apiVersion: 'config.weft.dev/v1', kind: 'ProxyConfig', metadata: { name: 'default' }, spec: { fairness: { overloadLagMs: 60_000 } } };

/** What a test adds to the standard mesh (before the control plane starts): pods and config objects. */
export interface MeshExtras {
  /** Creates more pods on the lab's nodes; their app is the test's to start. */
  pods?(n1: LabNode, n2: LabNode): Promise<Record<string, LabPod>>;
  /** More objects for the mesh config (Services, routes, policies); a function gets the nodes (for a Pod's spec.nodeName). */
  objects?: object[] | ((n1: LabNode, n2: LabNode) => object[]);
}

/**
 * Builds the lab `labName` and starts the control plane and both agents. On failure everything
 * built so far is torn down before the error is thrown.
 */
export async function startMetricsMesh(labName: string, extras: MeshExtras = {}): Promise<MetricsMesh> {
  const apps: ChildProcess[] = [];
  const handles: AgentHandle[] = [];
  const dir = mkdtempSync(join(tmpdir(), `weft-${labName}-`));
  let lab: Lab | undefined;
  const nodes: LabNode[] = [];
  const close = async () => {
    for (const h of handles) await h.kill('SIGKILL').catch(() => undefined);
    for (const c of apps) killGroup(c, 'SIGKILL');
    for (const n of nodes) spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', n.name]);
    await lab?.close();
    rmSync(dir, { recursive: true, force: true });
  };
  const startApp = async (p: LabPod) => {
    const child = p.spawn(process.execPath, ['-e', APP_SERVER, p.name, GRPC_JS]);
    apps.push(child);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`app in ${p.name} not listening after 8 s`)), 8000);
      child.stdout!.setEncoding('utf8').on('data', (d: string) => { if (d.includes('listening')) { clearTimeout(timer); resolve(); } });
    });
  };
  try {
    lab = await Lab.create({ name: labName });
    const n1 = await lab.node('n1');
    nodes.push(n1);
    const n2 = await lab.node('n2');
    nodes.push(n2);
    const web = await n1.pod('web', { namespace: SHOP, serviceAccount: 'web', labels: { app: 'web', version: 'v1' } });
    const bot = await n1.pod('bot', { namespace: SHOP, serviceAccount: 'bot', labels: { app: 'bot' } });
    const api1 = await n1.pod('api1', { namespace: SHOP, serviceAccount: 'api', labels: { app: 'api', version: 'v2' } });
    const outsider = await n1.pod('outsider', { namespace: 'legacy' });
    const api = await n2.pod('api', { namespace: SHOP, serviceAccount: 'api', labels: { app: 'api', version: 'v2' } });
    const extraPods = extras.pods ? await extras.pods(n1, n2) : {};
    const configPath = join(dir, 'mesh.yaml');
    writeFileSync(configPath, lab.yaml({
      meshNamespaces: [SHOP],
      extra: [
        { apiVersion: 'v1', kind: 'Service', metadata: { name: 'api', namespace: SHOP }, spec: { clusterIP: 'None', selector: { app: 'api' }, ports: [
          { name: 'http', port: 8080, targetPort: 8080 }, { name: 'grpc', port: 8444, targetPort: 8444 }] } },
        { apiVersion: 'v1', kind: 'Service', metadata: { name: 'echo', namespace: SHOP }, spec: { clusterIP: 'None', selector: { app: 'api' }, ports: [
          { name: 'tcp-echo', port: 7000, targetPort: 7000 }] } },
        { apiVersion: 'security.weft.dev/v1', kind: 'AuthorizationPolicy', metadata: { name: 'deny-bot', namespace: SHOP },
          spec: { selector: { matchLabels: { app: 'api' } }, action: 'DENY', rules: [{ from: [{ source: { principals: [`cluster.local/ns/${SHOP}/sa/bot`] } }] }] } },
        ...(typeof extras.objects === 'function' ? extras.objects(n1, n2) : extras.objects ?? []),
      ],
    }));
    for (const p of [api, api1]) await startApp(p);
    const dataDir = join(dir, 'data');
    let cp = startControlPlane(n1, configPath, dataDir);
    handles.push(cp);
    await cp.ready;
    const restartControlPlane = async () => {
      await cp.kill('SIGKILL');
      cp = startControlPlane(n1, configPath, dataDir);
      handles.push(cp);
      mesh.cp = cp;
      await cp.ready;
    };
    const agent1 = startNodeAgent(n1, `${n1.ip}:${CONTROL_PLANE_PORT}`, dataDir);
    handles.push(agent1);
    const agent2 = startNodeAgent(n2, `${n1.ip}:${CONTROL_PLANE_PORT}`, dataDir);
    handles.push(agent2);
    await Promise.all([agent1.ready, agent2.ready]);
    const mesh: MetricsMesh = { lab, n1, n2, pods: { web, bot, api1, outsider, api }, extraPods, cp, agents: [agent1, agent2], dir, startApp, restartControlPlane, close };
    return mesh;
  } catch (e) {
    await close();
    throw e;
  }
}

/** The traffic mix of MIX, each exchange's outcome asserted. */
export async function driveTrafficMix(mesh: MetricsMesh): Promise<void> {
  const { web, bot, api1, outsider, api } = mesh.pods;
  for (let i = 0; i < MIX.get; i++) assert.equal((await curl(web, `http://${api.ip}:8080/get/${i}`)).status, 200);
  for (let i = 0; i < MIX.denied; i++) assert.equal((await curl(bot, `http://${api.ip}:8080/denied/${i}`)).status, 403);
  const grpc = await web.exec(process.execPath, ['-e', GRPC_CLIENT, GRPC_JS, api.ip], { timeoutMs: 20_000 });
  assert.equal(grpc.code, 0, grpc.stdout + grpc.stderr);
  const r = JSON.parse(grpc.stdout.trim());
  assert.deepEqual([r.hello.hello, r.count.code, r.fail.code], ['weft', 0, 7]);
  const echo = await web.exec(process.execPath, ['-e', RAW_CLIENT, api.ip, '7000', JSON.stringify(ECHO)], { timeoutMs: 8000 });
  assert.equal(JSON.parse(echo.stdout.trim()), ECHO);
  for (let i = 0; i < MIX.local; i++) {
    const r = await curl(web, `http://${api1.ip}:8080/local/${i}`);
    // (says why when it fails: the same-node path is the one most often changed)
    assert.equal(r.status, 200, `same node web → api1: curl exit ${r.code}: ${r.stderr.trim()}\nn1 agent's log (last lines):\n${mesh.agents[0].stderr().split('\n').slice(-15).join('\n')}`);
  }
  assert.equal((await curl(outsider, `http://${api.ip}:8080/plain`)).status, 200);
}

/** One sample of Prometheus text exposition. */
export interface Sample { name: string; labels: Record<string, string>; value: number }

/** Parses Prometheus text exposition (the subset prom-client writes). */
export function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** A node's :15020/metrics, fetched from inside its netns. */
export async function scrapeNode(node: LabNode): Promise<Sample[]> {
  const r = await node.exec('curl', ['-sS', '--max-time', '5', `http://${node.ip}:15020/metrics`], { timeoutMs: 8000 });
  assert.equal(r.code, 0, r.stderr);
  return parseExposition(r.stdout);
}

/**
 * Scrapes each node (bounded: 50 tries, 100 ms apart) until every connection it counted as opened
 * has also been counted as closed: connections end shortly after their clients exit. Returns the
 * last scrape of each node.
 */
export async function scrapeSettled(nodes: LabNode[]): Promise<Map<LabNode, Sample[]>> {
  const settled = (samples: Sample[]) => {
    const sum = (name: string) => samples.filter((s) => s.name === name).reduce((a, s) => a + s.value, 0);
    return sum('istio_tcp_connections_opened_total') > 0 && sum('istio_tcp_connections_opened_total') === sum('istio_tcp_connections_closed_total');
  };
  const out = new Map<LabNode, Sample[]>();
  for (const node of nodes) {
    let samples: Sample[] = [];
    for (let i = 0; i < 50; i++) {
      samples = await scrapeNode(node);
      if (settled(samples)) break;
      await sleep(100);
    }
    out.set(node, samples);
  }
  return out;
}

/**
 * Run in a pod with `node -e HOLD_CLIENT <ip> <port> <count>`: opens `count` TCP connections to an
 * echo server, checks each echoes a line (so each is carried end to end), prints `held <count>`,
 * then keeps them open until its stdin ends (or 30 s pass), closes them all and exits 0.
 */
export const HOLD_CLIENT = String.raw`
const net = require('node:net');
const [ip, port, count] = process.argv.slice(1);
const socks = [];
const bail = setTimeout(() => { console.error('held for 30 s without release'); process.exit(3); }, 30000);
const one = (i) => new Promise((resolve, reject) => {
  const s = net.connect(Number(port), ip);
  socks.push(s);
  let got = '';
  s.setEncoding('utf8');
  s.on('error', reject);
  s.on('data', (d) => { got += d; if (got.includes('\n')) resolve(); });
  s.on('connect', () => s.write('hold ' + i + '\n'));
});
Promise.all(Array.from({ length: Number(count) }, (_, i) => one(i))).then(() => {
  process.stdout.write('held ' + count + '\n');
  process.stdin.resume();
  process.stdin.on('end', () => {
    for (const s of socks) s.end();
    Promise.all(socks.map((s) => new Promise((r) => s.once('close', r)))).then(() => { clearTimeout(bail); process.exit(0); });
  });
}, (e) => { console.error(String(e)); process.exit(2); });
`;
