/**
 * The control plane at scale (issue 10, "Benchmark"): 10,000 pods, 2,000 Services and 100
 * simulated agents (streams, not processes), and the same at 1,000 pods to show what grows with
 * the cluster. Printed per size:
 *   - control-plane RSS: idle before agents, with the agents connected, after the change rounds;
 *   - time to first snapshot per agent, all agents connecting together (p50/p99/max);
 *   - bytes sent per agent for one pod change (a pod turns not ready; its EndpointSlice follows),
 *     p50/max over agents; target: independent of cluster size;
 *   - time from a policy change (feed.publish) to every agent having it (the policy in a snapshot
 *     its onSnapshot received), p50/p99 over the rounds; target p99 < 1 s.
 *
 * What is real: the control plane's own process and production code from the feed on (gRPC over
 * TLS, the bootstrap-token authenticator, one Watch stream and TCP connection per agent, the
 * discovery service's encode and write path), the production discovery client in each agent, the
 * production Kubernetes converters building every snapshot. What is not: the Kubernetes informers
 * and API server. The cluster is generated (controlplane-cluster.ts) and changed in memory, then
 * published as kube-source.ts publishes after an informer event (without its 100 ms debounce):
 * 10,000 pods through a real kube-apiserver would measure the API server and etcd, not Weft.
 *
 * `node dist/test/bench/controlplane.js`; WEFT_CPBENCH_PODS=1000,10000 and WEFT_CPBENCH_AGENTS=100
 * change the sizes. Numbers are written down in docs/bench-controlplane.md.
 */
import { cpus, loadavg } from 'node:os';
import { buildSnapshot, generateCluster, hasChangePolicy, hasPodReadiness, type Cluster } from './controlplane-cluster';
import { AgentFleet, bytesBetween, bytesSentBy, ownCpuMs, quantile, startBenchControlPlane, type BenchControlPlane, type Published } from './controlplane-harness';
import type { ProcessMemory } from '../support/idle-connections';

export const TARGET_POLICY_P99_MS = 1_000;

export interface BenchOptions {
  pods: number;
  agents: number;
  podRounds: number;
  policyRounds: number;
  /** Pod rounds, then policy rounds, stop early (after at least one) once this much time went into them (a whole-snapshot protocol is slow at 10,000 pods). */
  budgetMs: number;
  /** Per round. */
  timeoutMs: number;
  /** For every agent's first snapshot. */
  firstSnapshotTimeoutMs: number;
  seed?: number;
  /** Progress lines, on stderr in the bench. */
  progress?: (line: string) => void;
}

export interface RoundResult {
  /** ms from feed.publish to each agent's first snapshot with the change; undefined: not seen within timeoutMs. */
  latencyMs: (number | undefined)[];
  missing: string[];
  /** Per agent connection, bytes the control plane sent during the round (kernel count, TLS included). */
  wireBytes: number[];
  /** Per agent, payload bytes its client counted during the round, when the client counts them. */
  payloadBytes?: number[];
  /** ms the control plane took to build the snapshot and compare its JSON with the last one, as kube-source does (before publish). */
  buildMs: number;
  /** CPU ms used during the round (change sent to every agent seen or the timeout) by the control plane process and by this one (the agents). */
  cpu: { controlPlane: number; agents: number };
}

type HeapUse = Awaited<ReturnType<BenchControlPlane['heap']>>;

export interface SizeResult {
  options: BenchOptions;
  cluster: BenchControlPlane['cluster'];
  /** The whole snapshot as JSON: what the first-generation protocol sends per agent per change. */
  snapshotJsonBytes: number;
  memory: { idle: ProcessMemory; connected?: ProcessMemory; afterRounds?: ProcessMemory };
  heap: { idle: HeapUse; connected?: HeapUse; afterRounds?: HeapUse };
  firstSnapshotMs: (number | undefined)[];
  /** CPU ms used while the agents connected and got their first snapshot, as in RoundResult. */
  connectCpu: { controlPlane: number; agents: number };
  /** The 1-minute load average before and after (other work on the machine shows here). */
  load: [number, number];
  /** Per agent, payload bytes of its first snapshot (the node's full state), when the client counts them. */
  firstPayloadBytes?: number[];
  /** TCP connections from agents seen at the control plane after the first snapshots. */
  connections: number;
  /** Why streams ended, summed over agents, when any did. */
  terminations: Record<string, number>;
  podRounds: RoundResult[];
  policyRounds: RoundResult[];
  /** Set when the agents could not all get their first snapshot, so no round was run. */
  failure?: string;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const SETTLE_MS = 1_000;

function nodesFor(agents: number, cluster: Cluster): string[] {
  if (agents > cluster.nodes.length) throw new Error(`bench options: agents is ${agents}, more than the cluster's ${cluster.nodes.length} nodes (one agent per node)`);
  return cluster.nodes.slice(0, agents).map((n) => n.metadata!.name!);
}

async function round(cp: BenchControlPlane, fleet: AgentFleet, name: string, test: Parameters<AgentFleet['expect']>[1], change: () => Promise<Published>, timeoutMs: number): Promise<RoundResult> {
  const expectation = fleet.expect(name, test);
  const before = bytesSentBy(cp.port);
  const payloadBefore = fleet.bytesReceived();
  const cpu = { controlPlane: cp.cpuMs(), agents: ownCpuMs() };
  const published = await change();
  const seen = await fleet.await(expectation, published.at, timeoutMs);
  const payloadAfter = fleet.bytesReceived();
  return {
    cpu: { controlPlane: cp.cpuMs() - cpu.controlPlane, agents: ownCpuMs() - cpu.agents },
    latencyMs: seen.latencyMs,
    missing: seen.missing,
    wireBytes: bytesBetween(before, bytesSentBy(cp.port)),
    ...(payloadBefore && payloadAfter ? { payloadBytes: payloadAfter.map((n, i) => n - payloadBefore[i]!) } : {}),
    buildMs: published.buildMs,
  };
}

/** One cluster size: a fresh control plane process, `agents` agents, the pod rounds, then the policy rounds. */
export async function measureControlPlane(options: BenchOptions): Promise<SizeResult> {
  const progress = options.progress ?? (() => {});
  const cluster = generateCluster({ pods: options.pods, ...(options.seed !== undefined ? { seed: options.seed } : {}) });
  const nodes = nodesFor(options.agents, cluster);
  const snapshotJsonBytes = Buffer.byteLength(JSON.stringify({ version: Date.now(), snapshot: buildSnapshot(cluster) }));
  const cp = await startBenchControlPlane({ pods: options.pods, ...(options.seed !== undefined ? { seed: options.seed } : {}) });
  let fleet: AgentFleet | undefined;
  try {
    if (cp.cluster.pods !== cluster.pods.length) throw new Error(`the control plane generated ${cp.cluster.pods} pods, the bench ${cluster.pods.length}: the generator is not deterministic`);
    await sleep(SETTLE_MS);
    const result: SizeResult = {
      options, cluster: cp.cluster, snapshotJsonBytes, memory: { idle: cp.memory() }, heap: { idle: await cp.heap() },
      firstSnapshotMs: [], connectCpu: { controlPlane: 0, agents: 0 }, load: [loadavg()[0]!, NaN], connections: 0, terminations: {}, podRounds: [], policyRounds: [],
    };
    progress(`${options.pods} pods: control plane up (pid ${cp.pid}), ${result.memory.idle.rss.toFixed(0)} MiB idle; connecting ${options.agents} agents`);
    const cpu = { controlPlane: cp.cpuMs(), agents: ownCpuMs() };
    fleet = new AgentFleet(cp, nodes);
    result.firstSnapshotMs = await fleet.firstSnapshots(options.firstSnapshotTimeoutMs);
    result.connectCpu = { controlPlane: cp.cpuMs() - cpu.controlPlane, agents: ownCpuMs() - cpu.agents };
    const firstPayload = fleet.bytesReceived();
    if (firstPayload) result.firstPayloadBytes = firstPayload;
    result.connections = bytesSentBy(cp.port).size;
    result.terminations = fleet.terminations();
    const got = result.firstSnapshotMs.filter((t) => t !== undefined).length;
    if (got < options.agents) {
      result.failure = `${got} of ${options.agents} agents had their first snapshot after ${options.firstSnapshotTimeoutMs / 1000} s; streams ended: ${JSON.stringify(result.terminations)}`;
      progress(`${options.pods} pods: ${result.failure}`);
      result.load[1] = loadavg()[0]!;
      return result;
    }
    await sleep(SETTLE_MS);
    result.memory.connected = cp.memory();
    result.heap.connected = await cp.heap();
    progress(`${options.pods} pods: ${options.agents} agents connected, ${result.memory.connected.rss.toFixed(0)} MiB; ${options.podRounds} pod changes`);

    let started = Date.now();
    for (let k = 0; k < options.podRounds; k++) {
      if (k > 0 && Date.now() - started > options.budgetMs) break;
      // Pods spread over namespaces and nodes; each turns not ready once.
      const index = (k * 2_003 + 17) % cluster.pods.length;
      const pod = { namespace: cluster.pods[index]!.metadata!.namespace!, name: cluster.pods[index]!.metadata!.name! };
      result.podRounds.push(await round(cp, fleet, `pod ${pod.namespace}/${pod.name} not ready`, (s) => hasPodReadiness(s, pod, false),
        () => cp.podChange(index, false), options.timeoutMs));
    }
    progress(`${options.pods} pods: ${options.policyRounds} policy changes (at most ${options.budgetMs / 1000} s)`);
    started = Date.now();
    for (let k = 1; k <= options.policyRounds; k++) {
      if (k > 1 && Date.now() - started > options.budgetMs) break;
      const r = await round(cp, fleet, `policy round ${k}`, (s) => hasChangePolicy(s, k), () => cp.policyChange(k), options.timeoutMs);
      result.policyRounds.push(r);
      if (r.missing.length > 0) break;
    }
    result.terminations = fleet.terminations();
    await sleep(SETTLE_MS);
    result.memory.afterRounds = cp.memory();
    result.heap.afterRounds = await cp.heap();
    result.load[1] = loadavg()[0]!;
    return result;
  } finally {
    fleet?.close();
    await cp.stop();
  }
}

/** Every agent's latency in a round, or undefined when one never saw it: the time to every agent. */
export function everyAgentMs(r: RoundResult): number | undefined {
  return r.latencyMs.some((t) => t === undefined) ? undefined : Math.max(...(r.latencyMs as number[]));
}

const mib = (m: ProcessMemory | undefined): string => (m ? `${m.rss.toFixed(1)} MiB` : 'n/a');
const ms = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(v < 10 ? 1 : 0)} ms` : 'n/a');
const bytes = (v: number): string => (!Number.isFinite(v) ? 'n/a' : v >= 2 ** 20 ? `${(v / 2 ** 20).toFixed(2)} MiB` : v >= 1024 ? `${(v / 1024).toFixed(1)} KiB` : `${v} B`);

const heapOf = (h: HeapUse | undefined): string => (h ? ` (live after GC: JS heap ${h.heapUsedMiB.toFixed(1)} of ${h.heapTotalMiB.toFixed(1)} MiB, external ${h.externalMiB.toFixed(1)} MiB)` : '');

/** Median CPU per round of each side: where the time went on a shared machine. */
function cpuPerRound(rounds: RoundResult[]): string {
  return `CPU per round: control plane ${ms(quantile(rounds.map((r) => r.cpu.controlPlane), 0.5))}, agents ${ms(quantile(rounds.map((r) => r.cpu.agents), 0.5))}`;
}

export function report(results: SizeResult[]): string[] {
  const lines: string[] = [];
  const say = (s: string): number => lines.push(s);
  for (const r of results) {
    const c = r.cluster;
    say(`\n## ${c.pods} pods on ${c.nodes} nodes, ${c.services} Services + ${c.endpointSlices} EndpointSlices, ${c.namespaces} namespaces, ${c.customs} policies/routes; ${r.options.agents} agents; whole snapshot ${bytes(r.snapshotJsonBytes)} as JSON; load average ${r.load[0].toFixed(1)} before, ${r.load[1].toFixed(1)} after`);
    say(`control-plane RSS: idle ${mib(r.memory.idle)}${heapOf(r.heap.idle)} | ${r.options.agents} agents connected ${mib(r.memory.connected)}${heapOf(r.heap.connected)} | after the rounds ${mib(r.memory.afterRounds)}${heapOf(r.heap.afterRounds)}`);
    const first = r.firstSnapshotMs.filter((t): t is number => t !== undefined);
    say(`time to first snapshot (${first.length}/${r.options.agents} agents, connecting together, over ${r.connections} TCP connections): p50 ${ms(quantile(first, 0.5))} p99 ${ms(quantile(first, 0.99))} max ${ms(Math.max(...first))}; CPU meanwhile: control plane ${ms(r.connectCpu.controlPlane)}, agents ${ms(r.connectCpu.agents)}` +
      (r.firstPayloadBytes ? `; first snapshot payload per agent p50 ${bytes(quantile(r.firstPayloadBytes, 0.5))} max ${bytes(Math.max(...r.firstPayloadBytes))}` : ''));
    if (Object.keys(r.terminations).length > 0) say(`streams ended (by reason, all agents): ${JSON.stringify(r.terminations)}`);
    if (r.failure) {
      say(`FAILED: ${r.failure}`);
      continue;
    }
    const wire = r.podRounds.flatMap((p) => p.wireBytes);
    const payload = r.podRounds.flatMap((p) => p.payloadBytes ?? []);
    const podEvery = r.podRounds.map(everyAgentMs).filter((t): t is number => t !== undefined);
    say(`one pod change (${r.podRounds.length} rounds), bytes sent per agent on the wire: p50 ${bytes(quantile(wire, 0.5))} max ${bytes(Math.max(...wire))}` +
      (payload.length > 0 ? `; payload (client's bytesReceived): p50 ${bytes(quantile(payload, 0.5))} max ${bytes(Math.max(...payload))}` : '') +
      `; to every agent p50 ${ms(quantile(podEvery, 0.5))} (${podEvery.length}/${r.podRounds.length} rounds seen by all); build ${ms(quantile(r.podRounds.map((p) => p.buildMs), 0.5))}; ${cpuPerRound(r.podRounds)}`);
    const every = r.policyRounds.map(everyAgentMs);
    const done = every.filter((t): t is number => t !== undefined);
    const perAgent = r.policyRounds.flatMap((p) => p.latencyMs.filter((t): t is number => t !== undefined));
    const p99 = quantile(done, 0.99);
    // The fastest agent of each round: the control plane's part plus one agent's decode, with the least waiting behind the other agents.
    const firstAgent = r.policyRounds.map((p) => Math.min(...p.latencyMs.filter((t): t is number => t !== undefined)));
    say(`policy change to every agent (${done.length}/${r.policyRounds.length} rounds of ${r.options.policyRounds} asked): p50 ${ms(quantile(done, 0.5))} p99 ${ms(p99)} ` +
      `(target p99 < ${TARGET_POLICY_P99_MS} ms: ${done.length > 0 && done.length === r.policyRounds.length && p99 < TARGET_POLICY_P99_MS ? 'met' : 'NOT met'}); per agent p50 ${ms(quantile(perAgent, 0.5))} p99 ${ms(quantile(perAgent, 0.99))}, first agent p50 ${ms(quantile(firstAgent, 0.5))}; ${cpuPerRound(r.policyRounds)}`);
    const missing = r.policyRounds.find((p) => p.missing.length > 0);
    if (missing) say(`a policy round was not seen by ${missing.missing.length} agents within ${r.options.timeoutMs / 1000} s (e.g. ${missing.missing.slice(0, 3).join(', ')})`);
  }
  const [small, large] = [results[0], results[results.length - 1]];
  if (small && large && small !== large && !small.failure && !large.failure) {
    const w = (r: SizeResult): number => quantile(r.podRounds.flatMap((p) => p.wireBytes), 0.5);
    const growth = w(large) / w(small);
    say(`\nbytes per agent for one pod change, ${large.cluster.pods} vs ${small.cluster.pods} pods: x${growth.toFixed(2)} for x${(large.cluster.pods / small.cluster.pods).toFixed(0)} the pods (target: independent of cluster size, ~x1: ${growth < 1.5 ? 'met' : 'NOT met'})`);
  } else if (small && large && small !== large) {
    say(`\nbytes per agent for one pod change at ${small.cluster.pods} vs ${large.cluster.pods} pods: not compared (${[small, large].filter((r) => r.failure).map((r) => `${r.cluster.pods} pods failed`).join(', ')})`);
  }
  return lines;
}

async function main(): Promise<void> {
  const sizes = (process.env.WEFT_CPBENCH_PODS ?? '1000,10000').split(',').map(Number);
  const agents = Number(process.env.WEFT_CPBENCH_AGENTS ?? 100);
  const progress = (line: string): void => { process.stderr.write(`# controlplane bench ${new Date().toISOString()} ${line}\n`); };
  const results: SizeResult[] = [];
  for (const pods of sizes) {
    results.push(await measureControlPlane({ pods, agents, podRounds: 5, policyRounds: 20, budgetMs: 20_000, timeoutMs: 60_000, firstSnapshotTimeoutMs: 90_000, progress }));
  }
  console.log(`\n# control plane bench on node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'unknown cpu'}`);
  console.log('# real: the control plane\'s own process (gRPC + TLS, bootstrap-token auth, one Watch stream and TCP connection per agent, the discovery service\'s encode/write),');
  console.log('#       the production discovery client per agent, the production Kubernetes converters building each snapshot; bytes are the kernel\'s count per connection (ss)');
  console.log('# not real: the Kubernetes informers and API server (the cluster is generated and changed in memory, then published as kube-source does, without its 100 ms debounce),');
  console.log('#       and the agents share one process and event loop (an agent\'s time includes decoding what reached the agents before it)');
  for (const line of report(results)) console.log(line);
  if (results.some((r) => r.failure)) process.exitCode = 1;
}

if (require.main === module) main().catch((e) => { console.error(e); process.exitCode = 1; });
