/**
 * The conformance lab: upstream's base manifests (conformance/mesh/manifests.yaml) on the netns
 * harness. Two nodes; echo-v1 (also the usual client) on n1, echo-v2 and the consumer namespace's
 * echo-v1 on n2, so routed traffic crosses nodes; Services echo, echo-v1, echo-v2 with cluster IPs
 * of their own; both namespaces meshed; `weft controlplane` on a config file and a `weft agent` per
 * node. A test's routes are applied by rewriting the file, and each change is confirmed in force on
 * every agent (a generation label on the namespaces, read back from each agent's /config_dump) or
 * reported refused (the control plane's "config edit not applied" line).
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as readline from 'node:readline';
import { Lab, type LabNode, type LabPod } from '../../agent/sandbox';
import { toYamlStream } from '../../agent/sandbox/manifests';
import { killGroup } from '../../agent/sandbox/run';
import { CONTROL_PLANE_PORT, startControlPlane, startNodeAgent, WEFT_CLI, type AgentHandle } from '../../agent/sandbox/weft-agent';
import type { GammaData } from './cases';
import type { ClientAsk, ClientReply, DnsTable } from './client';
import type { ConfigState } from './convergence';
import type { DnsService } from './resolve-host';

export const LAB_NAME = 'gam';
export const GENERATION_LABEL = 'conformance.weft.dev/generation';
const CLUSTER_IP_BASE = '10.96.77.';
const READY_MS = 10_000;
const IN_FORCE_MS = 30_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Kubernetes-style pod name `<deployment>-<10-char template hash>-<5-char suffix>` from its safe alphabet. */
export function kubePodName(deployment: string): string {
  const alphabet = 'bcdfghjklmnpqrstvwxz2456789';
  const pick = (n: number) => [...randomBytes(n)].map((b) => alphabet[b % alphabet.length]).join('');
  return `${deployment}-${pick(10)}-${pick(5)}`;
}

/** One long-lived client process in a client pod; asks are answered one at a time. */
export class ClientSession {
  private readonly lines: readline.Interface;
  private readonly waiting: Array<(line: string | undefined) => void> = [];
  private readonly buffered: string[] = [];
  private stderr = '';
  private nextId = 1;
  private closed = false;
  readonly ready: Promise<void>;

  constructor(readonly pod: LabPod, private readonly child: ChildProcess) {
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { this.stderr += d; });
    this.lines = readline.createInterface({ input: child.stdout! });
    this.lines.on('line', (l) => { const w = this.waiting.shift(); if (w) w(l); else this.buffered.push(l); });
    child.once('exit', () => { this.closed = true; for (const w of this.waiting.splice(0)) w(undefined); });
    this.ready = this.next(READY_MS).then((l) => {
      if (l !== 'ready') throw new Error(`conformance client in pod ${pod.namespace}/${pod.name} did not start: ${l ?? 'exited'}; stderr: ${this.stderr}`);
    });
  }

  private next(timeoutMs: number): Promise<string | undefined> {
    const b = this.buffered.shift();
    if (b !== undefined) return Promise.resolve(b);
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`conformance client in pod ${this.pod.name}: no reply within ${timeoutMs} ms; stderr: ${this.stderr}`)), timeoutMs);
      this.waiting.push((l) => { clearTimeout(timer); resolve(l); });
    });
  }

  async ask(ask: ClientAsk): Promise<ClientReply> {
    const id = this.nextId++;
    const perRequest = ask.timeoutMs ?? 3000;
    this.child.stdin!.write(JSON.stringify({ ...ask, id }) + '\n');
    const line = await this.next(perRequest * (ask.count ?? 1) + 10_000);
    if (line === undefined) throw new Error(`conformance client in pod ${this.pod.name} exited; stderr: ${this.stderr}`);
    const reply = JSON.parse(line) as ClientReply;
    if (reply.id !== undefined && reply.id !== id) throw new Error(`conformance client in pod ${this.pod.name}: reply ${reply.id} to ask ${id}`);
    return reply;
  }

  close(): void {
    this.child.stdin?.end();
    killGroup(this.child, 'SIGKILL');
  }
}

export class ConformanceLab {
  private generation = 0;
  private readonly sessions = new Map<string, ClientSession>();

  private constructor(
    readonly lab: Lab,
    readonly nodes: LabNode[],
    /** `namespace/deployment` -> its pod */
    readonly pods: Map<string, LabPod>,
    readonly services: DnsService[],
    readonly data: GammaData,
    readonly dir: string,
    readonly configPath: string,
    readonly cp: AgentHandle,
    readonly agents: AgentHandle[],
    private readonly apps: ChildProcess[],
  ) {}

  /** Template variables the cases use (`${ECHO_V2_POD_IP}`). */
  vars(): Record<string, string> {
    return { ECHO_V2_POD_IP: this.pod(this.data.base.namespace, 'echo-v2').ip };
  }

  pod(namespace: string, deployment: string): LabPod {
    const p = this.pods.get(`${namespace}/${deployment}`);
    if (!p) throw new Error(`no pod of deployment ${namespace}/${deployment} in the conformance lab (have ${[...this.pods.keys()].join(', ')})`);
    return p;
  }

  dnsFor(namespace: string): DnsTable {
    return { namespace, services: this.services, vars: this.vars() };
  }

  /** The client process in that deployment's pod, started on first use. */
  async client(namespace: string, deployment: string): Promise<ClientSession> {
    const key = `${namespace}/${deployment}`;
    let s = this.sessions.get(key);
    if (!s) {
      const pod = this.pod(namespace, deployment);
      s = new ClientSession(pod, pod.spawn(process.execPath, [join(__dirname, 'client.js'), '--dns', JSON.stringify(this.dnsFor(namespace)), '--serve']));
      this.sessions.set(key, s);
      await s.ready;
    }
    return s;
  }

  static async create(data: GammaData, labName = LAB_NAME): Promise<ConformanceLab> {
    const apps: ChildProcess[] = [];
    const handles: AgentHandle[] = [];
    const dir = mkdtempSync(join(tmpdir(), `weft-${labName}-`));
    let lab: Lab | undefined;
    const nodes: LabNode[] = [];
    const abort = async () => {
      for (const h of handles) await h.kill('SIGKILL').catch(() => undefined);
      for (const c of apps) killGroup(c, 'SIGKILL');
      for (const n of nodes) spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', n.name]);
      await lab?.close().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    };
    try {
      lab = await Lab.create({ name: labName });
      nodes.push(await lab.node('n1'), await lab.node('n2'));
      const base = data.base;
      const placement: Record<string, LabNode> = {
        [`${base.namespace}/echo-v1`]: nodes[0]!,
        [`${base.namespace}/echo-v2`]: nodes[1]!,
        [`${base.consumer_namespace}/echo-v1`]: nodes[1]!,
      };
      const pods = new Map<string, LabPod>();
      for (const d of base.deployments) {
        const key = `${d.namespace}/${d.name}`;
        const node = placement[key] ?? nodes[0]!;
        pods.set(key, await node.pod(kubePodName(d.name), { namespace: d.namespace, serviceAccount: 'default', labels: d.pod_labels }));
      }
      const services: DnsService[] = base.services.map((s, i) => ({ name: s.name, namespace: s.namespace, clusterIP: `${CLUSTER_IP_BASE}${10 + i}` }));
      const configPath = join(dir, 'mesh.yaml');
      const cl = { lab, nodes, data, services, configPath };
      writeFileSync(configPath, ConformanceLab.configText(cl, [], 0));
      for (const p of pods.values()) apps.push(await startEcho(p));
      const dataDir = join(dir, 'data');
      const cp = startControlPlane(nodes[0]!, configPath, dataDir);
      handles.push(cp);
      await cp.ready;
      for (const n of nodes) handles.push(startNodeAgent(n, `${nodes[0]!.ip}:${CONTROL_PLANE_PORT}`, dataDir));
      await Promise.all(handles.slice(1).map((h) => h.ready));
      return new ConformanceLab(lab, nodes, pods, services, data, dir, configPath, cp, handles.slice(1), apps);
    } catch (e) {
      await abort();
      throw e;
    }
  }

  /** The whole config file: namespaces (meshed, with upstream's labels and the generation), nodes, pods, Services, `objects`. */
  private static configText(cl: { lab: Lab; data: GammaData; services: DnsService[] }, objects: object[], generation: number): string {
    const base = cl.data.base;
    const services = base.services.map((s) => ({
      apiVersion: 'v1', kind: 'Service', metadata: { name: s.name, namespace: s.namespace },
      spec: {
        selector: s.selector,
        clusterIP: cl.services.find((d) => d.name === s.name && d.namespace === s.namespace)!.clusterIP,
        ports: s.ports.map((p) => ({ name: p.name, port: p.port, ...(p.targetPort !== null ? { targetPort: p.targetPort } : {}), ...(p.appProtocol !== null ? { appProtocol: p.appProtocol } : {}) })),
      },
    }));
    const manifests = cl.lab.manifests({ meshNamespaces: base.namespaces.map((n) => n.name), extra: [...services, ...objects] }) as Array<Record<string, any>>;
    for (const m of manifests) {
      if (m.kind !== 'Namespace') continue;
      const upstream = base.namespaces.find((n) => n.name === m.metadata.name)?.labels ?? {};
      m.metadata.labels = { ...upstream, ...m.metadata.labels, [GENERATION_LABEL]: String(generation) };
    }
    return toYamlStream(manifests);
  }

  /**
   * Writes the base config plus `objects` and waits (bounded) until every agent holds it, or the
   * control plane says it refused it. Returns what is known about the config.
   */
  async apply(objects: object[]): Promise<ConfigState> {
    const generation = ++this.generation;
    const errOffset = this.cp.stderr().length;
    writeFileSync(this.configPath, ConformanceLab.configText(this, objects, generation));
    const deadline = Date.now() + IN_FORCE_MS;
    const done = new Set<LabNode>();
    while (Date.now() < deadline) {
      const refused = refusal(this.cp.stderr().slice(errOffset));
      if (refused) return { state: 'refused', why: refused };
      for (const n of this.nodes) if (!done.has(n) && (await agentGeneration(n)) === String(generation)) done.add(n);
      if (done.size === this.nodes.length) return { state: 'in-force', since: Date.now() };
      await sleep(100);
    }
    return { state: 'pending' };
  }

  /** How to reach the lab by hand (for --keep). */
  describe(): string {
    const client = this.pod(this.data.base.namespace, 'echo-v1');
    const dns = JSON.stringify(this.dnsFor(client.namespace));
    const ask = JSON.stringify({ protocol: 'http', host: 'echo', path: '/', method: 'GET', headers: {} });
    return [
      `lab ${this.lab.name}: nodes ${this.nodes.map((n) => `${n.name} (${n.ip}, netns ${n.netns})`).join(', ')}`,
      ...[...this.pods.entries()].map(([k, p]) => `  pod ${k}: ${p.name} ${p.ip} on ${p.node.name} (netns ${p.netns}, cgroup ${p.cgroupPath})`),
      ...this.services.map((s) => `  Service ${s.namespace}/${s.name}: ${s.clusterIP}`),
      `config (edit to change routes; the control plane follows it): ${this.configPath}`,
      `a request from ${client.namespace}/${client.name}, captured by the mesh (its cgroup and netns):`,
      `  sh -c 'echo $$ > ${client.cgroupPath}/cgroup.procs && exec nsenter --net=/run/netns/${client.netns} -- ${process.execPath} ${join(__dirname, 'client.js')} --dns "$0" --request "$1"' '${dns}' '${ask}'`,
      `agent admin: nsenter --net=/run/netns/${this.nodes[0]!.netns} curl -s 127.0.0.1:15000/config_dump`,
    ].join('\n');
  }

  async close(): Promise<void> {
    for (const s of this.sessions.values()) s.close();
    for (const h of [...this.agents, this.cp]) await h.kill('SIGKILL').catch(() => undefined);
    for (const c of this.apps) killGroup(c, 'SIGKILL');
    for (const n of this.nodes) spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', n.name]);
    try {
      await this.lab.close();
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

async function startEcho(pod: LabPod): Promise<ChildProcess> {
  const child = pod.spawn(process.execPath, [join(__dirname, 'echo-server.js'), '--pod', pod.name, '--namespace', pod.namespace]);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`echo server in pod ${pod.namespace}/${pod.name} not listening after ${READY_MS} ms; stderr: ${stderr}`)), READY_MS);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => { if (d.includes('listening')) { clearTimeout(timer); resolve(); } });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`echo server in pod ${pod.namespace}/${pod.name} exited (${code}); stderr: ${stderr}`)); });
  });
  return child;
}

/** The control plane's complaint about the latest edit, if its log has one. */
export function refusal(logText: string): string | undefined {
  for (const line of logText.split('\n')) {
    if (!line.includes('config edit not applied')) continue;
    try {
      const o = JSON.parse(line) as { problems?: string[]; msg?: string };
      return (o.problems ?? [o.msg ?? line]).join('; ');
    } catch {
      return line.trim();
    }
  }
  return undefined;
}

/** The generation label an agent holds, from its admin /config_dump (inside the node's netns). */
async function agentGeneration(node: LabNode): Promise<string | undefined> {
  const r = await node.exec('curl', ['-sS', '--max-time', '2', 'http://127.0.0.1:15000/config_dump'], { timeoutMs: 4000 }).catch(() => undefined);
  if (!r || r.code !== 0) return undefined;
  try {
    const snap = JSON.parse(r.stdout) as { namespaces?: Array<{ labels?: Record<string, string> }> };
    const gens = new Set((snap.namespaces ?? []).map((n) => n.labels?.[GENERATION_LABEL]).filter((g) => g !== undefined));
    return gens.size === 1 ? [...gens][0] : undefined;
  } catch {
    return undefined;
  }
}
