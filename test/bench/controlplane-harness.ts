/**
 * The control-plane benchmark's harness: starts the control plane in its own process
 * (controlplane-server.ts), connects simulated agents to it (the production discovery client,
 * agent/node/discovery-client.ts, one stream and one TLS connection each), changes the cluster
 * over IPC and sees when each agent has the change in a snapshot it received. Bytes per agent are
 * read from the kernel: `ss -ti` on the control plane's side of each agent's TCP connection
 * (bytes_sent: TLS records with gRPC and HTTP/2 framing, no TCP/IP headers).
 *
 * Used by controlplane.ts (the numbers) and test/unit/controlplane-bench.test.ts (that the
 * observation can fail). Every wait is bounded and says what it saw.
 */
import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Snapshot } from '../../agent/config/objects';
import { operationalLogger } from '../../agent/core/log';
import { WEFT_NODE_FLAGS } from '../../agent/node-flags';
import { watchControlPlane, type DiscoveryWatch } from '../../agent/node/discovery-client';
import { processMemory, type ProcessMemory } from '../support/idle-connections';
import type { ServerReply, ServerRequest } from './controlplane-server';

const STARTUP_TIMEOUT_MS = 60_000;
const REQUEST_TIMEOUT_MS = 30_000;
const POLL_MS = 5;

const now = (): bigint => process.hrtime.bigint();
export const msBetween = (from: bigint, to: bigint): number => Number(to - from) / 1e6;

type Ready = Extract<ServerReply, { type: 'ready' }>;
type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

export interface Published {
  /** process.hrtime.bigint() in the control plane right before feed.publish (CLOCK_MONOTONIC: comparable with this process's). */
  at: bigint;
  /** ms the control plane took to build the snapshot from its objects and compare its JSON with the last one (as kube-source does). */
  buildMs: number;
}

export interface BenchControlPlane {
  pid: number;
  address: string;
  port: number;
  token: string;
  caPem: string;
  /** What the control plane process generated (its counts). */
  cluster: Omit<Ready, 'type' | 'address'>;
  /** RSS and the rest, from /proc/<pid>/smaps_rollup. */
  memory(): ProcessMemory;
  /** CPU time (user + system) the control plane process has used so far, ms. */
  cpuMs(): number;
  /** V8's heap and external memory (Buffers) after a full collection: what the control plane holds live. Call after memory(). */
  heap(): Promise<{ heapUsedMiB: number; heapTotalMiB: number; externalMiB: number }>;
  /** Readiness of pod `index` flips to `ready`; resolves with when the control plane published it. */
  podChange(index: number, ready: boolean): Promise<Published>;
  /** Change round `round`'s mesh-wide policy replaces the previous one; resolves with when the control plane published it. */
  policyChange(round: number): Promise<Published>;
  stop(): Promise<void>;
}

export async function startBenchControlPlane(options: { pods: number; seed?: number }): Promise<BenchControlPlane> {
  const dataDir = mkdtempSync(join(tmpdir(), 'weft-cpbench-'));
  const args = { pods: options.pods, seed: options.seed ?? 1, dataDir };
  const child: ChildProcess = fork(join(__dirname, 'controlplane-server.js'), [JSON.stringify(args)], {
    // The V8 flags `weft controlplane` runs with (the image's ENTRYPOINT), so its memory is the product's;
    // --expose-gc only lets heap() report live memory after a full collection.
    execArgv: [...WEFT_NODE_FLAGS, '--expose-gc'],
    env: { ...process.env, WEFT_LOG_LEVEL: process.env.WEFT_LOG_LEVEL ?? 'warn' },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let exited: string | undefined;
  const waiting = new Map<number, { resolve: (r: ServerReply) => void; reject: (e: Error) => void }>();
  let failure: string | undefined;
  child.on('exit', (code, signal) => {
    exited = `the bench control plane (pid ${child.pid}) exited with ${signal ?? `code ${code}`}`;
    for (const w of waiting.values()) w.reject(new Error(exited + (failure ? `: ${failure}` : '')));
    waiting.clear();
  });
  const cleanup = (): void => {
    if (exited === undefined) child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  };

  let ready: Ready;
  try {
    ready = await new Promise<Ready>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the bench control plane (${options.pods} pods) was not listening after ${STARTUP_TIMEOUT_MS / 1000} s`)), STARTUP_TIMEOUT_MS);
      child.on('message', (m: ServerReply) => {
        if (m.type === 'ready') { clearTimeout(timer); resolve(m); }
        if (m.type === 'failed') { failure = m.error; clearTimeout(timer); reject(new Error(`the bench control plane failed: ${m.error}`)); }
      });
      child.on('exit', () => { clearTimeout(timer); reject(new Error(exited + (failure ? `: ${failure}` : ''))); });
    });
  } catch (error) {
    cleanup();
    throw error;
  }
  child.on('message', (m: ServerReply) => {
    if (m.type === 'failed') {
      failure = m.error;
      for (const w of waiting.values()) w.reject(new Error(`the bench control plane failed: ${m.error}`));
      waiting.clear();
      return;
    }
    if (m.type === 'published' || m.type === 'memory') {
      waiting.get(m.id)?.resolve(m);
      waiting.delete(m.id);
    }
  });

  let nextId = 1;
  const request = (message: WithoutId<Extract<ServerRequest, { id: number }>>): Promise<ServerReply> => {
    if (exited !== undefined) return Promise.reject(new Error(exited));
    const id = nextId++;
    return new Promise<ServerReply>((resolve, reject) => {
      const timer = setTimeout(() => { waiting.delete(id); reject(new Error(`the bench control plane did not answer ${message.op} within ${REQUEST_TIMEOUT_MS / 1000} s`)); }, REQUEST_TIMEOUT_MS);
      waiting.set(id, { resolve: (r) => { clearTimeout(timer); resolve(r); }, reject: (e) => { clearTimeout(timer); reject(e); } });
      child.send({ ...message, id } as ServerRequest);
    });
  };
  const published = (r: ServerReply): Published => {
    if (r.type !== 'published') throw new Error(`the bench control plane answered ${r.type}, not published`);
    return { at: BigInt(r.at), buildMs: r.buildMs };
  };

  const { type: _type, address, ...cluster } = ready;
  return {
    pid: child.pid!,
    address,
    port: Number(address.split(':').pop()),
    token: readFileSync(join(dataDir, 'bootstrap.token'), 'utf8').trim(),
    caPem: readFileSync(join(dataDir, 'ca.pem'), 'utf8'),
    cluster,
    memory: () => processMemory(child.pid!),
    cpuMs: () => processCpuMs(child.pid!),
    async heap() {
      const r = await request({ op: 'memory' });
      if (r.type !== 'memory') throw new Error(`the bench control plane answered ${r.type}, not memory`);
      return { heapUsedMiB: r.heapUsedMiB, heapTotalMiB: r.heapTotalMiB, externalMiB: r.externalMiB };
    },
    podChange: async (index, ready) => published(await request({ op: 'pod', index, ready })),
    policyChange: async (round) => published(await request({ op: 'policy', round })),
    async stop() {
      if (exited === undefined) {
        const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        child.send({ op: 'stop' } satisfies ServerRequest);
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await gone;
        clearTimeout(timer);
      }
      cleanup();
    },
  };
}

/** Something to look for in the agents' snapshots; `seenAt[i]` is when agent i first received a snapshot where it holds. */
export interface Expectation {
  name: string;
  test: (snapshot: Snapshot) => boolean;
  seenAt: (bigint | undefined)[];
}

export interface ExpectationResult {
  name: string;
  /** ms from `from` to each agent's first snapshot with the change; undefined: not seen within the wait. */
  latencyMs: (number | undefined)[];
  /** Nodes of the agents that did not see it. */
  missing: string[];
}

export interface BenchAgent {
  node: string;
  watch: DiscoveryWatch;
  startedAt: bigint;
  firstSnapshotAt?: bigint;
  snapshots: number;
}

/**
 * `count` agents, one per node name, each its own watchControlPlane (its own gRPC channel, so its
 * own TLS connection, as each agent has), all started in the same tick. They share this process's event loop, so an agent's
 * latency includes decoding what reached the agents before it; real agents decode in parallel.
 */
export class AgentFleet {
  readonly agents: BenchAgent[] = [];
  private readonly pending = new Set<Expectation>();

  constructor(cp: Pick<BenchControlPlane, 'address' | 'token' | 'caPem'>, nodes: string[]) {
    const silent = operationalLogger('cpbench-agent', 'silent');
    nodes.forEach((node, i) => {
      const agent: BenchAgent = { node, startedAt: now(), snapshots: 0, watch: undefined as unknown as DiscoveryWatch };
      agent.watch = watchControlPlane({ address: cp.address, caPem: cp.caPem, token: cp.token, node }, (snapshot) => this.received(i, snapshot), silent);
      this.agents.push(agent);
    });
  }

  private received(i: number, snapshot: Snapshot): void {
    const at = now();
    const agent = this.agents[i]!;
    agent.snapshots++;
    agent.firstSnapshotAt ??= at;
    for (const e of this.pending) if (e.seenAt[i] === undefined && e.test(snapshot)) e.seenAt[i] = at;
  }

  /** Starts looking for `test` in every snapshot received from now on: call it before the change is made. */
  expect(name: string, test: (snapshot: Snapshot) => boolean): Expectation {
    const e: Expectation = { name, test, seenAt: this.agents.map(() => undefined) };
    this.pending.add(e);
    return e;
  }

  /** Waits (at most `timeoutMs`) until every agent has seen `e`, then stops looking for it. */
  async await(e: Expectation, from: bigint, timeoutMs: number): Promise<ExpectationResult> {
    const deadline = Date.now() + timeoutMs;
    while (e.seenAt.some((t) => t === undefined) && Date.now() < deadline) await sleep(POLL_MS);
    this.pending.delete(e);
    return {
      name: e.name,
      latencyMs: e.seenAt.map((t) => (t === undefined ? undefined : msBetween(from, t))),
      missing: this.agents.filter((_, i) => e.seenAt[i] === undefined).map((a) => a.node),
    };
  }

  /** Waits (at most `timeoutMs`) for every agent's first snapshot; the ms each took from its start. */
  async firstSnapshots(timeoutMs: number): Promise<(number | undefined)[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.agents.some((a) => a.firstSnapshotAt === undefined) && Date.now() < deadline) await sleep(POLL_MS);
    return this.agents.map((a) => (a.firstSnapshotAt === undefined ? undefined : msBetween(a.startedAt, a.firstSnapshotAt)));
  }

  /** Why streams ended so far, summed over agents (ztunnel's reasons), only the non-zero ones. */
  terminations(): Record<string, number> {
    const sum: Record<string, number> = {};
    for (const a of this.agents) for (const [reason, n] of Object.entries(a.watch.terminations())) if (n > 0) sum[reason] = (sum[reason] ?? 0) + n;
    return sum;
  }

  /** Payload bytes each agent's client received, when the client counts them (DiscoveryWatch.bytesReceived, issue 10's delta protocol); else undefined. */
  bytesReceived(): number[] | undefined {
    const counts = this.agents.map((a) => (a.watch as DiscoveryWatch & { bytesReceived?: () => number }).bytesReceived?.());
    return counts.every((n): n is number => typeof n === 'number') ? counts : undefined;
  }

  close(): void {
    for (const a of this.agents) a.watch.close();
    this.pending.clear();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The kernel's clock ticks per second for /proc/<pid>/stat (USER_HZ: 100 on every Linux this runs on). */
const USER_HZ = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** utime + stime of a process from /proc/<pid>/stat, in ms. */
export function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start at field 3, state; utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / USER_HZ;
}

/** CPU time (user + system) this process has used so far, ms. */
export function ownCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * bytes_sent of every established TCP connection whose local port is `port` (the control plane's
 * side of each agent's connection), keyed by the peer's address, from `ss -tin`.
 */
export function bytesSentBy(port: number): Map<string, number> {
  const r = spawnSync('ss', ['-tinH', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) throw new Error(`ss -tin failed (${r.error?.message ?? `exit ${r.status}`}: ${r.stderr}); the bench reads bytes per connection with iproute2's ss`);
  const out = new Map<string, number>();
  let peer: string | undefined;
  for (const line of r.stdout.split('\n')) {
    const socket = /^\s*\d+\s+\d+\s+(\S+)\s+(\S+)/.exec(line);
    if (socket && !line.includes('bytes_')) {
      // Only the listener's own side (another socket could have the same port number elsewhere).
      peer = socket[1]!.endsWith(`:${port}`) ? socket[2] : undefined;
      continue;
    }
    const sent = /\bbytes_sent:(\d+)/.exec(line);
    if (peer !== undefined && sent) {
      out.set(peer, Number(sent[1]));
      peer = undefined;
    } else if (peer !== undefined && /\brtt:/.test(line)) {
      out.set(peer, 0);
      peer = undefined;
    }
  }
  return out;
}

/** Per connection, what was sent between two bytesSentBy() readings (connections present in both). */
export function bytesBetween(before: Map<string, number>, after: Map<string, number>): number[] {
  const out: number[] = [];
  for (const [peer, n] of after) {
    const was = before.get(peer);
    if (was !== undefined) out.push(n - was);
  }
  return out;
}

/** The q-quantile (0..1) of `values` by nearest rank; NaN when empty. */
export function quantile(values: number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}
