/**
 * Kubernetes end to end on the netns harness (issue 10, "What must be shown"): a real
 * kube-apiserver, kube-controller-manager and etcd (test/support/kube-cluster.ts), Weft installed
 * from daemonset/ (namespace, CRDs, RBAC), the real `weft controlplane` in Kubernetes mode (its
 * ServiceAccount's token, daemonset/rbac.yaml's rules) on lab node n1, and a real `weft agent` on
 * each of two lab nodes, authenticated by a ServiceAccount token from the TokenRequest API (audience
 * weft, bound to an agent pod on its node) and verifying the control plane with the trust bundle
 * ConfigMap the control plane published.
 *
 * The test plays the kubelet and the scheduler: it creates pods through the API server, builds
 * their cgroups where the kubelet would (kubepods.slice/.../pod<uid>, named after the UID the API
 * server gave them) with the pod's processes in a container cgroup below, binds them to the lab's
 * Nodes (pods/binding) and writes their IPs and readiness through the status subresource. The
 * controller manager makes the EndpointSlices. The agents know the pods only from the API.
 *
 * Capture is judged by kernel facts, not by the absence of a log line: each node's redirect
 * counters (the agent's /redirect, read from the pinned weft_counters map) before and after one
 * connection say whether its connect() was steered to the node proxy (redirect4) or its SYN
 * captured at the destination (capture_listener). Latencies (API write to the change in effect)
 * are printed as diagnostics with the probe resolution, never asserted: speed belongs to benchmarks.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { Lab, LabNode, LabPod, startEchoServer, startHttpServer, tcpRequest } from '../../agent/sandbox';
import { podCidr4 } from '../../agent/sandbox/addresses';
import { CONTROL_PLANE_PORT, startNodeAgent, WEFT_CLI, type AgentHandle } from '../../agent/sandbox/weft-agent';
import { WEFT_NODE_FLAGS } from '../../agent/node-flags';
import { bridgeApiServer, type ApiServerBridge } from '../support/kube-lab-bridge';
import { scrapeNode } from '../support/metrics-mesh';
import { startKubeCluster, type KubeCluster } from '../support/kube-cluster';
import { kernelTestBlocker } from '../support/requirements';

const blocker = kernelTestBlocker();
const ROOT = join(__dirname, '..', '..', '..');
const CRDS = join(ROOT, 'daemonset', 'crds.yaml');
const AUTHZ_CRD = 'authorizationpolicies.security.weft.dev';
const MESH_LABEL = 'weft.dev/mesh';
const NS = 'shop';
const TRUST_DOMAIN = 'cluster.local';
/** Every wait is bounded; generous, for a loaded 2-vCPU machine. */
const WAIT_MS = 30_000;
/** How long a change may take before the test fails (the issue asks for "within a second"; the measured value is printed). */
const CHANGE_WAIT_MS = 10_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const spiffe = (ns: string, sa: string) => `spiffe://${TRUST_DOMAIN}/ns/${ns}/sa/${sa}`;

/**
 * Traffic for the restart test, run in a meshed pod: an HTTP request on a new connection every
 * INTERVAL ms, and HOLD long-lived connections to the echo port that each send a numbered line every
 * 200 ms and check the echo. On 'stop' (stdin) or after MAX ms it waits (bounded) for what is in
 * flight and prints one JSON summary. A held connection that closes or errs before the stop is a drop.
 */
const TRAFFIC = String.raw`
const net = require('net'), http = require('http');
const [host, httpPort, echoPort, hold, interval, max] = process.argv.slice(1).map((v, i) => i === 0 ? v : Number(v));
const s = { requests: 0, ok: 0, failed: 0, failures: [], held: hold, drops: 0, dropInfo: [], pings: 0, echoed: 0 };
let stopping = false, inflight = 0;
const holders = [];
for (let i = 0; i < hold; i++) {
  const c = net.connect(echoPort, host);
  const h = { c, sent: 0, got: 0, buf: '', open: false };
  holders.push(h);
  c.setEncoding('utf8');
  c.on('connect', () => { h.open = true; });
  c.on('data', (d) => {
    h.buf += d;
    const lines = h.buf.split('\n'); h.buf = lines.pop();
    for (const l of lines) if (l.startsWith('ping ')) { h.got++; s.echoed++; }
  });
  const drop = (why) => { if (!stopping && !h.dropped) { h.dropped = true; s.drops++; s.dropInfo.push(i + ': ' + why + ' after ' + h.got + ' echoes'); } };
  c.on('error', (e) => drop(e.code || e.message));
  c.on('close', () => drop('closed'));
  h.timer = setInterval(() => { if (h.open && !h.dropped) { c.write('ping ' + i + ' ' + (h.sent++) + '\n'); s.pings++; } }, 200);
}
const one = () => {
  if (stopping) return;
  s.requests++; inflight++;
  const n = s.requests;
  const fail = (why) => { s.failed++; if (s.failures.length < 20) s.failures.push(n + ': ' + why + ' at ' + new Date().toISOString()); };
  const req = http.get({ host, port: httpPort, path: '/r' + n, agent: false, timeout: 10000 }, (res) => {
    let b = ''; res.setEncoding('utf8'); res.on('data', (d) => b += d);
    res.on('end', () => { inflight--; if (res.statusCode === 200 && b.includes('"pod"')) s.ok++; else fail('status ' + res.statusCode + ' ' + b.slice(0, 100)); });
    res.on('error', (e) => { inflight--; fail('response ' + (e.code || e.message)); });
  });
  req.on('timeout', () => req.destroy(new Error('timed out')));
  req.on('error', (e) => { inflight--; fail(e.code || e.message); });
};
const ticker = setInterval(one, interval);
const finish = async () => {
  if (stopping) return;
  stopping = true;
  clearInterval(ticker);
  for (const h of holders) clearInterval(h.timer);
  for (let i = 0; i < 100 && (inflight > 0 || holders.some((h) => !h.dropped && h.got < h.sent)); i++) await new Promise((r) => setTimeout(r, 50));
  s.unanswered = holders.filter((h) => !h.dropped).map((h) => h.sent - h.got).reduce((a, b) => a + b, 0);
  s.inflight = inflight;
  for (const h of holders) h.c.destroy();
  console.log(JSON.stringify(s));
  process.exit(0);
};
console.log('started');
process.stdin.on('data', (d) => { if (String(d).includes('stop')) finish(); });
setTimeout(finish, max);
`;

interface TrafficSummary {
  requests: number; ok: number; failed: number; failures: string[];
  held: number; drops: number; dropInfo: string[]; pings: number; echoed: number; unanswered: number; inflight: number;
}

/** One HTTP request by curl from inside a pod: status, body and the client's local port. */
interface Reply { code: number | null; status: number; body: string; localPort: number; stderr: string }

/** What a node's kernel did with one connection: whether it was steered at the source or captured at the destination. */
interface Probe { reply: Reply; redirected: bigint; capturedInbound: bigint }

describe('Kubernetes end to end: pods from a real API server meshed on the netns harness', { skip: blocker ?? false }, () => {
  let cluster: KubeCluster;
  let core: CoreV1Api;
  let lab: Lab, n1: LabNode, n2: LabNode;
  let dir: string;
  let bridge: ApiServerBridge;
  let kubeconfig: string, cpData: string, caFile: string;
  let cp: ChildProcess | undefined;
  let cpOutput = '';
  const agents = new Map<LabNode, AgentHandle>();
  let client: LabPod, server: LabPod, doomed: LabPod, echo1: LabPod, echo2: LabPod;
  let echoVip = '';

  const agentOf = (node: LabNode): AgentHandle => agents.get(node)!;
  const tailOf = (text: string, lines = 30) => text.trimEnd().split('\n').slice(-lines).join('\n');
  /** Whether each process still runs, and each agent's last warnings: first, as CI shows only a failure's first lines. */
  const processes = (): string => {
    const state = (p: ChildProcess | undefined): string => !p ? 'not started' : p.exitCode !== null ? `exited ${p.exitCode}` : p.signalCode !== null ? `killed by ${p.signalCode}` : `running (pid ${p.pid})`;
    const warnings = (text: string): string[] => text.split('\n').filter((l) => /"level":(4|5|6)0/.test(l)).slice(-2).map((l) => `    ${l.slice(0, 240)}`);
    return [`control plane: ${state(cp)}`, ...[...agents].flatMap(([node, a]) => [`agent ${node.name}: ${state(a.process)}`, ...warnings(a.stderr())])].join('\n');
  };

  /**
   * What each agent holds and runs now: the config generation it last received and its stream's
   * state (/metrics), and the processes it is waiting on (e.g. an `ip` of its interface lookup).
   */
  const agentStates = async (): Promise<string> => {
    const table = spawnSync('ps', ['-eo', 'pid=,ppid=,etimes=,args='], { encoding: 'utf8' }).stdout.split('\n')
      .map((l) => /^\s*(\d+)\s+(\d+)\s+(\d+)\s+(.*)$/.exec(l)).filter((m): m is RegExpExecArray => m !== null)
      .map((m) => ({ pid: Number(m[1]), ppid: Number(m[2]), age: Number(m[3]), args: m[4]!.slice(0, 120) }));
    const lines: string[] = [];
    for (const [node, a] of agents) {
      const below = new Set([a.process.pid]);
      for (let grew = true; grew;) {
        grew = false;
        for (const p of table) if (below.has(p.ppid) && !below.has(p.pid)) { below.add(p.pid); grew = true; }
      }
      const children = table.filter((p) => below.has(p.ppid) && !/ cli\.js /.test(` ${p.args} `)).map((p) => `${p.args} (${p.age} s)`);
      let held = '';
      try {
        const m = await scrapeNode(node);
        const value = (name: string) => m.filter((x) => x.name === name).map((x) => `${Object.values(x.labels).join(',') || ''}=${x.value}`).join(' ');
        held = `generation ${value('weft_agent_config_generation')}, connected ${value('weft_agent_control_plane_connected')}, messages ${value('istio_xds_message_total')}`;
      } catch (e) {
        held = `no /metrics: ${(e as Error).message}`;
      }
      lines.push(`agent ${node.name} now: ${held}; waiting on: ${children.length ? children.join('; ') : 'no process'}`);
    }
    return lines.join('\n');
  };
  /**
   * The control plane's path to the API server (it runs in n1's netns, through the bridge): each
   * bridged connection's traffic, whether a new request through it is answered now, and what the
   * API server itself holds for the test's namespace, to set against what the agents hold.
   */
  const apiPath = async (): Promise<string> => {
    const through = await n1.exec('curl', ['-sk', '--max-time', '3', '-o', '/dev/null', '-w', '%{http_code} in %{time_total} s', `${bridge.server}/readyz`], { timeoutMs: 6_000 })
      .then((r) => (r.code === 0 ? r.stdout : `curl ${r.code}: ${r.stderr.trim()}`), (e: Error) => e.message);
    const ns = await core.readNamespace({ name: NS }).then((n) => `labels ${JSON.stringify(n.metadata?.labels ?? {})}, resourceVersion ${n.metadata?.resourceVersion}`, (e: Error) => e.message);
    return `${bridge?.describe() ?? 'no bridge'}\na new request through it now: /readyz ${through}\nthe API server holds namespace ${NS}: ${ns}`;
  };
  const failureReport = async (): Promise<string> => `${await agentStates()}\n${await apiPath()}\n${diagnostics()}`;

  /** What a failure prints: the processes' state, the control plane's and agents' recent logs and the API server's. */
  const diagnostics = (): string => [
    processes(),
    `--- control plane (last 30 lines) ---\n${tailOf(cpOutput)}`,
    ...[...agents].map(([node, a]) => `--- agent ${node.name} (last 20 lines) ---\n${tailOf(a.stderr(), 20)}`),
    ...[...agents].map(([node, a]) => `--- agent ${node.name} access log (last 8 lines) ---\n${a.accessLog.slice(-8).map((l) => JSON.stringify(l)).join('\n')}`),
    `--- kube-apiserver (last 10 lines) ---\n${cluster ? cluster.logTail('kube-apiserver', 10) : ''}`,
  ].join('\n');

  async function waitFor<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = WAIT_MS): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let lastError = '';
    for (;;) {
      try {
        const value = await probe();
        if (value !== undefined && value !== false) return value;
      } catch (e) {
        lastError = (e as Error).message;
      }
      if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs / 1000} s waiting for ${what}${lastError ? ` (last error: ${lastError})` : ''}\n${await failureReport()}`);
      await sleep(50);
    }
  }

  async function kubectl(args: string[], stdin?: string): Promise<string> {
    const r = await cluster.kubectl(args, stdin);
    if (r.code !== 0) assert.fail(`kubectl ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
    return r.stdout;
  }
  const apply = (obj: object): Promise<string> => kubectl(['apply', '--server-side', '--field-manager=weft-test', '-f', '-'], JSON.stringify(obj));

  const admin = async <T>(node: LabNode, path: string): Promise<T> => {
    const r = await node.exec('curl', ['-sS', '--max-time', '5', `http://127.0.0.1:15000${path}`], { timeoutMs: 8_000 });
    if (r.code !== 0) throw new Error(`admin ${path} on ${node.name}: curl exited ${r.code}: ${r.stderr.trim()}`);
    return JSON.parse(r.stdout) as T;
  };
  const enrolled = async (node: LabNode) => admin<Array<{ pod: string; cgroupId: string; identity?: string }>>(node, '/workloads');
  const heldIdentities = async (node: LabNode) => (await admin<Array<{ identity: string; notAfter?: string }>>(node, '/certs')).filter((c) => c.notAfter).map((c) => c.identity);
  const counters = async (node: LabNode) => (await admin<{ counters: Record<string, string> }>(node, '/redirect')).counters;

  /** curl from inside `pod`; -w adds the status and the client's own port on the last line. */
  async function request(pod: LabPod, url: string, timeoutMs = 5_000): Promise<Reply> {
    const r = await pod.exec('curl', ['-sS', '-g', '--max-time', String(timeoutMs / 1000), '-w', '\n%{http_code} %{local_port}', url], { timeoutMs: timeoutMs + 3_000 });
    const cut = r.stdout.lastIndexOf('\n');
    const [status, port] = r.stdout.slice(cut + 1).split(' ');
    return { code: r.code, status: Number(status) || 0, body: r.stdout.slice(0, Math.max(cut, 0)), localPort: Number(port) || 0, stderr: r.stderr };
  }

  /** One request from `from` to `to`'s HTTP port, with both nodes' redirect counters read around it. */
  async function probe(from: LabPod, to: LabPod): Promise<Probe> {
    const [src0, dst0] = await Promise.all([counters(from.node), counters(to.node)]);
    const reply = await request(from, `http://${to.ip}:8080/probe`);
    const [src1, dst1] = await Promise.all([counters(from.node), counters(to.node)]);
    return {
      reply,
      redirected: BigInt(src1.redirect4 ?? '0') - BigInt(src0.redirect4 ?? '0'),
      capturedInbound: BigInt(dst1.capture_listener ?? '0') - BigInt(dst0.capture_listener ?? '0'),
    };
  }
  const describeProbe = (p: Probe) => `status ${p.reply.status} (curl ${p.reply.code}${p.reply.stderr ? `: ${p.reply.stderr.trim()}` : ''}), redirect4 +${p.redirected} at the source, capture_listener +${p.capturedInbound} at the destination`;

  function podStatus(pod: LabPod, ready: boolean): object {
    const now = new Date().toISOString();
    const flag = ready ? 'True' : 'False';
    return {
      status: {
        phase: 'Running', podIP: pod.ip, podIPs: [{ ip: pod.ip }], hostIP: pod.node.ip, hostIPs: [{ ip: pod.node.ip }], startTime: now,
        conditions: [
          { type: 'PodScheduled', status: 'True', lastTransitionTime: now },
          { type: 'Initialized', status: 'True', lastTransitionTime: now },
          { type: 'ContainersReady', status: flag, lastTransitionTime: now },
          { type: 'Ready', status: flag, lastTransitionTime: now },
        ],
      },
    };
  }
  const writePodStatus = (pod: LabPod, ready: boolean) =>
    core.patchNamespacedPodStatus({ name: pod.name, namespace: pod.namespace, body: podStatus(pod, ready) }, merge);

  /**
   * What the kubelet does for a pod, in its order: the pod exists in the API (created here), the
   * scheduler binds it, the kubelet makes its cgroups (named after the API's UID) and starts its
   * containers (an HTTP server on 8080, an echo server on 7000), then reports its IP and readiness.
   */
  async function kubeletPod(node: LabNode, name: string, o: { namespace?: string; serviceAccount: string; labels: Record<string, string> }): Promise<LabPod> {
    const namespace = o.namespace ?? NS;
    await apply({
      apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace, labels: o.labels },
      spec: { serviceAccountName: o.serviceAccount, containers: [{ name: 'app', image: 'weft.test/app:1', ports: [{ name: 'http', containerPort: 8080 }, { name: 'echo', containerPort: 7000 }] }] },
    });
    const uid = (await core.readNamespacedPod({ name, namespace })).metadata?.uid;
    assert.ok(uid, `pod ${namespace}/${name} has no metadata.uid`);
    await core.createNamespacedPodBinding({ name, namespace, body: { metadata: { name }, target: { apiVersion: 'v1', kind: 'Node', name: node.name } } });
    // Both cgroup drivers, as kube-pod-cgroup.test.ts shows the agent resolves either.
    const driver = node === n1 ? 'systemd' : 'cgroupfs';
    const pod = await node.pod(name, { namespace, serviceAccount: o.serviceAccount, labels: o.labels, kubelet: { driver, qos: 'burstable', uid } });
    await Promise.all([startHttpServer(pod, 8080), startEchoServer(pod, 7000)].map((s) => s.ready)); // stopped with the lab
    await writePodStatus(pod, true);
    return pod;
  }

  async function startControlPlane(): Promise<void> {
    cpOutput += `\n=== weft controlplane started ${new Date().toISOString()} ===\n`;
    const child = n1.spawn(process.execPath, [...WEFT_NODE_FLAGS, WEFT_CLI, 'controlplane', `--kubeconfig=${kubeconfig}`,
      `--listen=0.0.0.0:${CONTROL_PLANE_PORT}`, `--data-dir=${cpData}`], { env: { ...process.env, WEFT_LOG_LEVEL: 'info' } });
    cp = child;
    const mark = cpOutput.length;
    const collect = (c: Buffer): void => { cpOutput += c.toString('utf8'); };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    let exited: number | null | undefined;
    child.once('exit', (code) => { exited = code; });
    await waitFor('the control plane to be ready', () => {
      if (exited !== undefined) assert.fail(`weft controlplane exited (${exited}):\n${cpOutput.slice(mark)}`);
      return cpOutput.slice(mark).includes('"control plane ready"') || undefined;
    });
  }

  async function stopControlPlane(): Promise<void> {
    const child = cp;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    if (await Promise.race([gone.then(() => true), sleep(10_000).then(() => false)]) === false) {
      child.kill('SIGKILL');
      await gone;
    }
  }

  /** A `weft agent` for `node`, as daemonset/agent.yaml runs it: a pod-bound token with audience weft, the published trust bundle. */
  async function startAgent(node: LabNode): Promise<AgentHandle> {
    const agentPod = `weft-agent-${node.name}`;
    await apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name: agentPod, namespace: 'weft-system', labels: { app: 'weft-agent' } },
      spec: { serviceAccountName: 'weft-agent', nodeName: node.name, containers: [{ name: 'agent', image: 'weft.test/agent:1' }] } });
    const token = (await kubectl(['create', 'token', 'weft-agent', '-n', 'weft-system', '--audience=weft',
      '--bound-object-kind=Pod', `--bound-object-name=${agentPod}`, '--duration=2h'])).trim();
    const tokenFile = join(dir, `token-${node.name}`);
    writeFileSync(tokenFile, token, { mode: 0o600 });
    // startNodeAgent names the bootstrap credentials of a file-source control plane's data directory;
    // these flags come after them and win (the CLI's parseArgs keeps the last value).
    const agent = startNodeAgent(node, `${n1.ip}:${CONTROL_PLANE_PORT}`, dir, ['--token-file', tokenFile, '--ca-file', caFile, '--kubepods-cgroup', node.cgroupPath]);
    agents.set(node, agent);
    await agent.ready.catch((e: Error) => assert.fail(`${e.message}\n${diagnostics()}`));
    return agent;
  }

  before(async () => {
    if (blocker) return;
    dir = mkdtempSync(join(tmpdir(), 'weft-wk8e-'));
    cluster = await startKubeCluster({ name: 'wk8e' });
    process.stderr.write(`kube-e2e: Kubernetes ${cluster.versions.kubernetes}, etcd ${cluster.versions.etcd}; startup ${JSON.stringify(cluster.startup)}\n`);
    core = cluster.kubeConfig().makeApiClient(CoreV1Api);
    lab = await Lab.create({ name: 'wk8e' });
    n1 = await lab.node('n1');
    n2 = await lab.node('n2');
    // The kubelet makes its kubepods tree when it starts, before any pod (and before the agent here).
    mkdirSync(join(n1.cgroupPath, 'kubepods.slice', 'kubepods-burstable.slice'), { recursive: true });
    mkdirSync(join(n2.cgroupPath, 'kubepods', 'burstable'), { recursive: true });

    // Installed as an operator would, but for the AuthorizationPolicy CRD, so the control plane
    // starts without it (a test below installs it and a policy takes effect). Not applied and then
    // deleted: a CRD's deletion waits for the API server's instance cleanup, which once took over
    // 60 s in CI right after the CRD was established.
    const crdsWithoutAuthz = join(dir, 'crds-without-authz.yaml');
    writeFileSync(crdsWithoutAuthz, parseAllDocuments(readFileSync(CRDS, 'utf8'))
      .filter((d) => (d.toJS() as { metadata?: { name?: string } } | null)?.metadata?.name !== AUTHZ_CRD).map((d) => { const text = d.toString(); return text.startsWith('---') ? text : `---\n${text}`; }).join(''));
    await kubectl(['apply', '--server-side', '-f', join(ROOT, 'daemonset', 'namespace.yaml')]);
    await kubectl(['apply', '--server-side', '-f', crdsWithoutAuthz]);
    await kubectl(['apply', '--server-side', '-f', join(ROOT, 'daemonset', 'rbac.yaml')]);
    await kubectl(['wait', '--for=condition=Established', '--timeout=60s', '-f', crdsWithoutAuthz]);

    for (const node of [n1, n2]) {
      await apply({ apiVersion: 'v1', kind: 'Node', metadata: { name: node.name, labels: { 'kubernetes.io/hostname': node.name } }, spec: { podCIDR: podCidr4(node.index), podCIDRs: [podCidr4(node.index)] } });
      const now = new Date().toISOString();
      await core.patchNodeStatus({ name: node.name, body: { status: {
        addresses: [{ type: 'InternalIP', address: node.ip }, { type: 'Hostname', address: node.name }],
        conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'the test plays the kubelet', lastHeartbeatTime: now, lastTransitionTime: now }],
      } } }, merge);
    }

    // The control plane on n1, as its ServiceAccount, reaching the API server through the bridge.
    bridge = await bridgeApiServer(n1, cluster.server, dir);
    kubeconfig = await cluster.serviceAccountKubeconfig('weft-system', 'weft-controlplane', join(dir, 'controlplane.kubeconfig'), bridge.server);
    cpData = join(dir, 'controlplane');
    await startControlPlane();
    // The trust bundle agents verify the control plane with: the ConfigMap it published (daemonset/agent.yaml mounts it).
    const bundle = await waitFor('the weft-trust-bundle ConfigMap', async () =>
      (await core.readNamespacedConfigMap({ namespace: 'weft-system', name: 'weft-trust-bundle' })).data?.['ca.pem']);
    caFile = join(dir, 'trust-bundle.pem');
    writeFileSync(caFile, bundle);

    for (const node of [n1, n2]) await startAgent(node);

    await apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, labels: { [MESH_LABEL]: 'enabled' } } });
    for (const sa of ['client', 'server', 'doomed', 'echo', 'late']) await apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: sa, namespace: NS } });
    client = await kubeletPod(n1, 'client', { serviceAccount: 'client', labels: { app: 'client' } });
    server = await kubeletPod(n2, 'server', { serviceAccount: 'server', labels: { app: 'server' } });
    doomed = await kubeletPod(n1, 'doomed', { serviceAccount: 'doomed', labels: { app: 'doomed' } });
    echo1 = await kubeletPod(n2, 'echo-1', { serviceAccount: 'echo', labels: { app: 'echo' } });
    echo2 = await kubeletPod(n1, 'echo-2', { serviceAccount: 'echo', labels: { app: 'echo' } });
    await apply({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'echo', namespace: NS },
      spec: { selector: { app: 'echo' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } });
    echoVip = (await core.readNamespacedService({ name: 'echo', namespace: NS })).spec?.clusterIP ?? '';
    assert.match(echoVip, /^10\.96\./, 'a ClusterIP from the API server\'s range');
  });

  after(async () => {
    if (blocker) return;
    for (const a of agents.values()) await a.kill('SIGKILL').catch(() => undefined);
    await stopControlPlane().catch(() => undefined);
    for (const n of [n1, n2]) if (n) spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', n.name]);
    await bridge?.close().catch(() => undefined);
    let labError: unknown;
    await lab?.close().catch((e: unknown) => { labError = e; }); // the kubepods trees go with the lab's cgroups
    await cluster?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (labError) throw labError;
  });

  test('pods created through the API server become meshed: enrolled at the kubelet\'s pod cgroups, a workload certificate each, and a connection across nodes captured, carried over HBONE mTLS and logged by both agents naming both pods', async () => {
    const [on1, on2] = await Promise.all([
      waitFor('n1\'s pods enrolled', async () => { const e = await enrolled(n1); return ['shop/client', 'shop/doomed', 'shop/echo-2'].every((k) => e.some((w) => w.pod === k)) && e; }),
      waitFor('n2\'s pods enrolled', async () => { const e = await enrolled(n2); return ['shop/server', 'shop/echo-1'].every((k) => e.some((w) => w.pod === k)) && e; }),
    ]);
    for (const pod of [client, doomed, echo2, server, echo1]) {
      const w = [...on1, ...on2].find((x) => x.pod === `${NS}/${pod.name}`)!;
      assert.equal(w.cgroupId, pod.cgroupId.toString(), `${pod.name} is enrolled at its kubelet pod cgroup (${pod.cgroupPath})`);
      assert.equal(w.identity, spiffe(NS, pod.serviceAccount));
    }
    assert.deepEqual(new Set(on1.map((w) => w.pod)), new Set(['shop/client', 'shop/doomed', 'shop/echo-2']), 'n1 enrolls only its own pods');
    await waitFor('the workload certificates on both nodes', async () => {
      const [c1, c2] = await Promise.all([heldIdentities(n1), heldIdentities(n2)]);
      return ['client', 'doomed', 'echo'].every((sa) => c1.includes(spiffe(NS, sa))) && ['server', 'echo'].every((sa) => c2.includes(spiffe(NS, sa)));
    });

    const p = await probe(client, server);
    assert.equal(p.reply.status, 200, describeProbe(p));
    assert.equal(JSON.parse(p.reply.body).pod, 'server');
    assert.ok(p.redirected > 0n, `the client's connect was not steered to the node proxy: ${describeProbe(p)}`);
    const srcAddr = `${client.ip}:${p.reply.localPort}`;
    const out = await agentOf(n1).waitForLog((l) => l['src.addr'] === srcAddr && l.direction === 'outbound' && l.method === undefined);
    assert.equal(out['src.pod'], 'client');
    assert.equal(out['src.identity'], spiffe(NS, 'client'));
    assert.equal(out['dst.pod'], 'server');
    assert.equal(out['dst.identity'], spiffe(NS, 'server'));
    assert.equal(out['dst.hbone_addr'], `${server.node.ip}:15008`, 'carried in an HBONE tunnel to the server\'s node');
    const inbound = await agentOf(n2).waitForLog((l) => l['src.addr'] === srcAddr && l.direction === 'inbound' && l.method === undefined);
    assert.equal(inbound['src.identity'], spiffe(NS, 'client'), 'the server\'s node saw the client\'s own certificate (mTLS)');
    assert.equal(inbound['src.pod'], 'client');
    assert.equal(inbound['dst.pod'], 'server');

    // Istio's metrics name both pods' workloads and identities, on both nodes.
    for (const [node, reporter] of [[n1, 'source'], [n2, 'destination']] as const) {
      const series = await waitFor(`${node.name}'s istio_tcp_connections_opened_total for client -> server (reporter ${reporter})`, async () =>
        (await scrapeNode(node)).find((m) => m.name === 'istio_tcp_connections_opened_total' && m.labels.reporter === reporter
          && m.labels.source_workload === 'client' && m.labels.destination_workload === 'server' && m.value >= 1));
      assert.equal(series.labels.source_principal, spiffe(NS, 'client'));
      assert.equal(series.labels.destination_principal, spiffe(NS, 'server'));
      assert.equal(series.labels.source_workload_namespace, NS);
      assert.equal(series.labels.connection_security_policy, 'mutual_tls');
    }
  });

  test('flipping the namespace label off stops capturing new connections, and on captures them again; time from the API write to the change in effect', async (t) => {
    for (const [value, captured] of [['disabled', false], ['enabled', true]] as const) {
      const written = Date.now();
      await core.patchNamespace({ name: NS, body: { metadata: { labels: { [MESH_LABEL]: value } } } }, merge);
      const acknowledged = Date.now() - written;
      let previousStart = written;
      let last: Probe | undefined;
      let probes = 0;
      for (;;) {
        const start = Date.now();
        const p = await probe(client, server);
        probes++;
        last = p;
        if (p.reply.status !== 200) assert.fail(`every connection succeeds while the label changes: ${describeProbe(p)}\n${await failureReport()}`);
        const inEffect = captured ? p.redirected > 0n : p.redirected === 0n && p.capturedInbound === 0n;
        if (inEffect) {
          t.diagnostic(`namespace label ${MESH_LABEL}=${value} (API write acknowledged in ${acknowledged} ms) -> new connections ${captured ? 'captured' : 'not captured'}: `
            + `between ${previousStart - written} and ${start - written} ms after the write (probe ${probes})`);
          break;
        }
        if (Date.now() - written > CHANGE_WAIT_MS) assert.fail(`label ${value}: after ${CHANGE_WAIT_MS / 1000} s a new connection is still ${captured ? 'not ' : ''}captured: ${describeProbe(last)}\n${diagnostics()}`);
        previousStart = start;
      }
      if (captured) {
        await agentOf(n1).waitForLog((l) => l['src.addr'] === `${client.ip}:${last.reply.localPort}` && l['src.pod'] === 'client' && l['dst.pod'] === 'server');
      } else {
        const [e1, e2] = await Promise.all([enrolled(n1), enrolled(n2)]);
        assert.deepEqual([...e1, ...e2].filter((w) => w.pod.startsWith(`${NS}/`)), [], 'no pod of the unlabelled namespace is enrolled');
      }
    }
    // Everything back as the other tests expect it.
    await waitFor('all pods enrolled again', async () => (await enrolled(n1)).length === 3 && (await enrolled(n2)).length === 2);
  });

  test('deleting a pod removes its enrollment and its certificate: the agent no longer holds its identity and its processes are no longer captured', async (t) => {
    const identity = spiffe(NS, 'doomed');
    if (!(await enrolled(n1)).some((w) => w.pod === 'shop/doomed' && w.cgroupId === doomed.cgroupId.toString())) assert.fail(`the doomed pod is enrolled before its deletion\n${await failureReport()}`);
    await waitFor('the doomed pod\'s certificate', async () => (await heldIdentities(n1)).includes(identity));
    const before = await probe(doomed, server);
    assert.ok(before.redirected > 0n, `the pod is captured before its deletion: ${describeProbe(before)}`);

    // Graceful deletion marks it terminating; the kubelet's final delete (grace 0) removes it.
    await kubectl(['delete', 'pod', 'doomed', '-n', NS, '--wait=false']);
    const written = Date.now();
    await kubectl(['delete', 'pod', 'doomed', '-n', NS, '--grace-period=0', '--force']);
    await waitFor('the deleted pod unenrolled and its identity dropped', async () => {
      const [e, c] = await Promise.all([enrolled(n1), heldIdentities(n1)]);
      return !e.some((w) => w.pod === 'shop/doomed') && !c.includes(identity);
    }, CHANGE_WAIT_MS);
    t.diagnostic(`pod deleted (final delete issued by kubectl) -> unenrolled and certificate dropped: within ${Date.now() - written} ms`);
    assert.ok((await enrolled(n1)).some((w) => w.pod === 'shop/client'), 'the other pods stay enrolled');
    assert.ok(agentOf(n1).stderr().split('\n').some((l) => l.includes('identity dropped') && l.includes(identity)), 'the agent logged the dropped identity');

    // Its processes still run (the kubelet has not killed them here): the kernel no longer steers them.
    const afterDelete = await probe(doomed, server);
    assert.equal(afterDelete.redirected, 0n, `a connection from the deleted pod's cgroup was still steered: ${describeProbe(afterDelete)}`);
    assert.equal(afterDelete.reply.status, 200, describeProbe(afterDelete));
  });

  test('an endpoint of a Service turning not ready (its EndpointSlice) stops getting connections to the Service\'s cluster IP, and gets them again once ready', async (t) => {
    type Slice = { namespace: string; service: string; endpoints: Array<{ addresses: string[]; ready: boolean }> };
    const readiness = async () => {
      const dump = await admin<{ endpointSlices?: Slice[] }>(n1, '/config_dump');
      const eps = (dump.endpointSlices ?? []).filter((s) => s.namespace === NS && s.service === 'echo').flatMap((s) => s.endpoints);
      const of = (pod: LabPod) => eps.find((e) => e.addresses.includes(pod.ip))?.ready;
      return { echo1: of(echo1), echo2: of(echo2) };
    };
    await waitFor('both echo endpoints ready in n1\'s agent', async () => { const r = await readiness(); return r.echo1 === true && r.echo2 === true; });
    const url = `http://${echoVip}/`;
    const hit = async (): Promise<string> => {
      const r = await request(client, url);
      if (r.status !== 200) assert.fail(`request to the cluster IP ${url}: curl ${r.code} ${r.stderr}\n${await failureReport()}`);
      return JSON.parse(r.body).pod as string;
    };
    const seen = new Set<string>();
    for (let i = 0; i < 60 && seen.size < 2; i++) seen.add(await hit());
    assert.deepEqual([...seen].sort(), ['echo-1', 'echo-2'], 'both endpoints take connections to the cluster IP');

    for (const ready of [false, true]) {
      // Rounds of one connection to the cluster IP and one read of the agent's state, until the state
      // has the change: the change took effect between the last read without it and the read with it.
      const written = Date.now();
      await writePodStatus(echo1, ready);
      let previousRead = written;
      let lastToEcho1: number | undefined;
      const hits: string[] = [];
      for (;;) {
        const sent = Date.now();
        const pod = await hit();
        hits.push(pod);
        if (pod === 'echo-1') lastToEcho1 = sent - written;
        const read = Date.now();
        if ((await readiness()).echo1 === ready) {
          t.diagnostic(`echo-1 ready=${ready} written -> n1's agent holds it ${ready ? 'ready' : 'not ready'} between ${previousRead - written} and ${read - written} ms after the write`
            + (ready ? '' : lastToEcho1 === undefined ? '; no connection reached echo-1 after the write' : `; the last connection that reached echo-1 began ${lastToEcho1} ms after it`)
            + ` (${hits.length} connections meanwhile: ${hits.join(' ')})`);
          break;
        }
        if (Date.now() - written > CHANGE_WAIT_MS) assert.fail(`echo-1 ready=${ready}: not in n1's agent after ${CHANGE_WAIT_MS / 1000} s; connections went to ${hits.join(' ')}\n${diagnostics()}`);
        previousRead = read;
      }
      if (!ready) {
        for (let i = 0; i < 20; i++) assert.equal(await hit(), 'echo-2', 'no connection goes to the not-ready endpoint');
      } else {
        await waitFor('a connection to reach echo-1 again', async () => (await hit()) === 'echo-1', CHANGE_WAIT_MS);
      }
    }
  });

  test('the AuthorizationPolicy CRD installed after the control plane started is followed: a DENY policy applied then refuses the connection it names, and nothing else', async (t) => {
    assert.match(cpOutput, new RegExp(`no ${AUTHZ_CRD.replace(/\./g, '\\.')} CRD`), 'the control plane started without the CRD');
    const installed = Date.now();
    await kubectl(['apply', '--server-side', '-f', CRDS]);
    await kubectl(['wait', '--for=condition=Established', '--timeout=60s', `crd/${AUTHZ_CRD}`]);
    const policy = { apiVersion: 'security.weft.dev/v1', kind: 'AuthorizationPolicy', metadata: { name: 'deny-client-echo', namespace: NS },
      spec: { selector: { matchLabels: { app: 'server' } }, action: 'DENY',
        rules: [{ from: [{ source: { principals: [`${TRUST_DOMAIN}/ns/${NS}/sa/client`] } }], to: [{ operation: { ports: ['7000'] } }] }] } };
    // The API server accepts objects of the kind once the CRD is established; the control plane
    // finds the CRD on its next look (every 2 s) and follows the kind from then on.
    const applied = Date.now();
    await apply(policy);
    const echoes = async (from: LabPod) => {
      const r = await tcpRequest(from, server.ip, 7000, { payload: 'hello\n', timeoutMs: 6_000 });
      return r.stdout.includes('echo server') && r.stdout.includes('hello');
    };
    await waitFor('the connection the policy names to be refused', async () => !(await echoes(client)), CHANGE_WAIT_MS + 5_000);
    const refusedAt = Date.now();
    t.diagnostic(`CRD applied -> policy in force: ${refusedAt - installed} ms (policy applied ${applied - installed} ms after the CRD; the control plane looks for a missing CRD every 2 s)`);
    const denied = await agentOf(n2).waitForLog((l) => l.decision === 'deny' && l['dst.addr'] === `${server.ip}:7000` && l['src.identity'] === spiffe(NS, 'client'));
    assert.equal(denied['dst.pod'], 'server');
    const http = await request(client, `http://${server.ip}:8080/still-allowed`);
    assert.equal(http.status, 200, 'the policy names only the echo port: HTTP to the same pod is allowed');
    assert.ok(await echoes(echo2), 'another identity reaches the echo port');

    await kubectl(['delete', 'authorizationpolicy.security.weft.dev', 'deny-client-echo', '-n', NS]);
    await waitFor('the echo port allowed again once the policy is deleted', () => echoes(client), CHANGE_WAIT_MS);
  });

  test('restarting the API server and then the control plane during traffic loses nothing: no failed request, no dropped connection; a pod created afterwards is meshed', async (t) => {
    const trafficStart = Date.now();
    const logMarks = new Map([...agents].map(([node, a]) => [node, a.stderr().length]));
    const traffic = client.spawn(process.execPath, ['-e', TRAFFIC, server.ip, '8080', '7000', '4', '20', '240000']);
    let out = '';
    let err = '';
    traffic.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
    traffic.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d; });
    const exited = new Promise<void>((r) => traffic.once('exit', () => r()));
    // One access-log line per connection, written when it ends: each request is a connection of its own.
    const requestsSoFar = (): number => agentOf(n1).accessLog.filter((l) => Number(l.time) >= trafficStart && l.direction === 'outbound'
      && l['src.pod'] === 'client' && l['dst.addr'] === `${server.ip}:8080` && l.method === undefined).length;
    await waitFor('the traffic to start', () => out.includes('started') || undefined);
    await waitFor('requests flowing through the mesh', () => {
      if (traffic.exitCode !== null) assert.fail(`the traffic client exited early: ${out} ${err}`);
      return requestsSoFar() >= 20;
    });

    const restartStart = Date.now();
    await cluster.restartApiServer();
    t.diagnostic(`API server restarted (stop + /readyz) in ${Date.now() - restartStart} ms`);
    // The control plane's watches come back: a change written now reaches the agents.
    await kubectl(['label', 'namespace', NS, 'weft.test/after-apiserver-restart=yes']);
    await waitFor('the control plane to relist after the API server restart', async () =>
      (await admin<{ namespaces: Array<{ name: string; labels: Record<string, string> }> }>(n1, '/config_dump')).namespaces
        .some((n) => n.name === NS && n.labels['weft.test/after-apiserver-restart'] === 'yes'));

    const cpStart = Date.now();
    await stopControlPlane();
    // A change written while no control plane runs is not lost: the new one lists it and the agents get it.
    await core.patchNamespace({ name: NS, body: { metadata: { labels: { 'weft.test/while-controlplane-down': 'yes' } } } }, merge);
    const cpLogMark = cpOutput.length;
    await startControlPlane();
    const cpReady = Date.now();
    t.diagnostic(`control plane restarted (SIGTERM, start, ready) in ${cpReady - cpStart} ms`);
    for (const node of [n1, n2]) {
      await waitFor(`${node.name}'s agent to get the label written while the control plane was down`, async () =>
        (await admin<{ namespaces: Array<{ name: string; labels: Record<string, string> }> }>(node, '/config_dump')).namespaces
          .some((n) => n.name === NS && n.labels['weft.test/while-controlplane-down'] === 'yes'));
    }
    t.diagnostic(`the label written while the control plane was down reached both agents ${Date.now() - cpReady} ms after it was ready`);

    // A change after both restarts (and the agents back on the stream): a new pod, meshed from the API alone.
    const created = Date.now();
    const late = await kubeletPod(n1, 'late', { serviceAccount: 'late', labels: { app: 'late' } });
    const statusWritten = Date.now();
    await waitFor('the new pod enrolled with its certificate', async () => {
      const [e, c] = await Promise.all([enrolled(n1), heldIdentities(n1)]);
      return e.some((w) => w.pod === 'shop/late' && w.cgroupId === late.cgroupId.toString()) && c.includes(spiffe(NS, 'late'));
    });
    t.diagnostic(`pod created after both restarts -> enrolled with a certificate: ${Date.now() - created} ms, of which ${Date.now() - statusWritten} ms after its status (IP, Ready) was written`);
    // When the agents' watches came back (their reconnect backoff): read from the control plane's log, for the record only.
    const reopened = cpOutput.slice(cpLogMark).split('\n').filter((l) => l.includes('discovery watch opened'))
      .map((l) => { try { return Number((JSON.parse(l) as { time: number }).time) - cpReady; } catch { return NaN; } });
    t.diagnostic(`agents' discovery watches reopened ${reopened.length ? reopened.map((ms) => `${ms} ms`).join(', ') : '(no "discovery watch opened" line logged)'} after the restarted control plane was ready`);
    const r = await request(late, `http://${server.ip}:8080/late`);
    assert.equal(r.status, 200, r.stderr);
    const line = await agentOf(n1).waitForLog((l) => l['src.addr'] === `${late.ip}:${r.localPort}` && l.direction === 'outbound');
    assert.equal(line['src.identity'], spiffe(NS, 'late'), 'the new pod\'s connection is captured and carries its own identity');

    await sleep(1_000); // traffic after the last change too
    traffic.stdin!.write('stop\n');
    await Promise.race([exited, sleep(15_000)]);
    const summaryLine = out.split('\n').find((l) => l.startsWith('{'));
    assert.ok(summaryLine, `the traffic client printed no summary: ${out} ${err}`);
    const s = JSON.parse(summaryLine) as TrafficSummary;
    t.diagnostic(`traffic during both restarts: ${s.requests} requests (${s.ok} ok), ${s.held} held connections with ${s.echoed}/${s.pings} echoes`);
    assert.equal(s.failed, 0, `failed requests: ${JSON.stringify(s.failures)}\n${diagnostics()}`);
    assert.equal(s.drops, 0, `dropped established connections: ${JSON.stringify(s.dropInfo)}\n${diagnostics()}`);
    assert.equal(s.unanswered, 0, 'every ping on the held connections was echoed');
    assert.equal(s.inflight, 0, 'no request was left hanging');
    assert.equal(s.ok, s.requests);
    assert.ok(s.requests > 100, `too few requests to show anything: ${s.requests}`);
    assert.ok(s.echoed > 20, `the held connections carried too little: ${s.echoed}`);
    // Not one of them went around the mesh: the source agent logged every request's connection as
    // captured (a transient empty snapshot from a restarted control plane would have unenrolled the
    // pods and let connections through in plaintext, which would not fail them).
    const captured = await waitFor(`an outbound access-log line for each of the ${s.requests} requests`, () => { const n = requestsSoFar(); return n >= s.requests && n; });
    assert.equal(captured, s.requests, 'one captured connection per request');
    for (const [node, a] of agents) {
      const since = a.stderr().slice(logMarks.get(node) ?? 0);
      assert.doesNotMatch(since, /"unenrolled":[1-9]|identity dropped/, `the agent on ${node.name} unenrolled a pod or dropped an identity during the restarts:\n${tailOf(since, 20)}`);
    }
  });
});
