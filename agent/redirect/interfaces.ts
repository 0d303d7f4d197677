/**
 * Finds each pod's host-side interface in this network namespace by asking the kernel where it
 * would send a packet to the pod (interface-resolve.ts decides from the facts read here). One
 * `ip -batch` of FIB lookups for all addresses, one link list, one neighbour table, and one
 * forwarding database per bridge met. A bridged pod whose MAC the node has not learned yet is
 * probed without sending it traffic: a `managed` neighbour entry makes the kernel resolve the
 * address (ARP/NDP), whose answer also teaches the bridge the pod's port; the entry is removed
 * afterwards. The wait for answers is bounded; a pod still unresolved is reported, not guessed.
 */
import { execFile } from 'node:child_process';
import { canonicalIp } from '../core/ip';
import { parseFdb, parseLinks, parseNeighbours, parseRouteBatch, type LinkFact } from './interface-facts';
import { resolvePodInterfaces, type InterfaceFacts, type PodAddresses, type PodInterface, type Probe } from './interface-resolve';

export type { PodAddresses, PodInterface } from './interface-resolve';

/** How long a probe may take in all, and how often the tables are read back meanwhile. */
const PROBE_POLL_MS = 50;
const PROBE_POLLS = 20;

interface Output { stdout: string; stderr: string; code: number }

function run(cmd: string, args: string[], input?: string): Promise<Output> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err && typeof (err as { code?: unknown }).code !== 'number') {
        reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}; is iproute2 installed on the node?`));
        return;
      }
      resolve({ stdout, stderr, code: err ? Number((err as { code?: number }).code) : 0 });
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

async function checked(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

export interface InterfaceLookup {
  /** by pod key */
  pods: Map<string, PodInterface>;
  /** the interface holding each of the node's own addresses (IP → ifindex) */
  addressIfindex: Map<string, number>;
  /**
   * Every pod-facing interface of the node, enrolled or not (veths that are not an uplink, bridge
   * ports included): where same-node clients' packets enter, for inbound capture.
   */
  podLinks: number[];
}

/**
 * The host-side interfaces of `pods` (each must resolve for all of its addresses). `uplinkIps`
 * are the node proxy's addresses: the interfaces holding them are never taken for a pod's.
 */
export async function lookupPodInterfaces(pods: PodAddresses[], uplinkIps: string[]): Promise<InterfaceLookup> {
  const ips = [...new Set(pods.flatMap((p) => p.ips.map(canonicalIp)))];
  const canon = pods.map((p) => ({ ...p, ips: p.ips.map(canonicalIp) }));
  let facts = await readFacts(ips, uplinkIps.map(canonicalIp));
  let result = resolvePodInterfaces(canon, facts);
  const probes = [...result.values()].flatMap((r) => (r.ok ? [] : r.probes));
  if (probes.length > 0) {
    await startProbes(probes);
    try {
      const waiting = new Set(probes.map((p) => p.ip));
      for (let i = 0; i < PROBE_POLLS; i++) {
        await new Promise((r) => setTimeout(r, PROBE_POLL_MS));
        facts = await readFacts(ips, facts.uplinkIps, facts);
        result = resolvePodInterfaces(canon, facts);
        if (![...result.values()].some((r) => !r.ok && r.probes.some((p) => waiting.has(p.ip)))) break;
      }
    } finally {
      await stopProbes(probes, facts.neighbours);
    }
  }
  const addressIfindex = new Map<string, number>();
  for (const l of facts.links) for (const a of l.addresses) addressIfindex.set(a, l.ifindex);
  return { pods: result, addressIfindex, podLinks: podFacingLinks(facts) };
}

/**
 * Reads links, FIB answers, neighbours and the forwarding databases of the bridges the answers
 * name. With `previous`, the links and routes are kept (a probe changes only neighbours and FDBs).
 */
async function readFacts(ips: string[], uplinkIps: string[], previous?: InterfaceFacts): Promise<InterfaceFacts> {
  const [links, routes, neighbours] = await Promise.all([
    previous ? previous.links : checked('ip', ['-j', '-d', 'addr', 'show']).then(parseLinks),
    previous ? previous.routes : routeBatch(ips),
    checked('ip', ['-j', 'neigh', 'show']).then(parseNeighbours),
  ]);
  const bridges = bridgesAnswered(links, routes);
  const fdb = new Map(await Promise.all(bridges.map(async (b) => [b, parseFdb(await checked('bridge', ['-j', 'fdb', 'show', 'br', b]))] as const)));
  return { links, routes, neighbours, fdb, uplinkIps };
}

function podFacingLinks(facts: InterfaceFacts): number[] {
  const uplink = (l: LinkFact) => l.addresses.some((a) => facts.uplinkIps.includes(a));
  return facts.links.filter((l) => l.kind === 'veth' && !uplink(l)).map((l) => l.ifindex).sort((a, b) => a - b);
}

function bridgesAnswered(links: LinkFact[], routes: InterfaceFacts['routes']): string[] {
  const bridges = new Set(links.filter((l) => l.kind === 'bridge').map((l) => l.name));
  return [...new Set([...routes.values()].flatMap((r) => (r.ok && bridges.has(r.dev) ? [r.dev] : [])))].sort();
}

async function routeBatch(ips: string[]): Promise<InterfaceFacts['routes']> {
  if (ips.length === 0) return new Map();
  const r = await run('ip', ['-j', '-force', '-batch', '-'], ips.map((ip) => `route get ${ip}`).join('\n') + '\n');
  return parseRouteBatch(ips, r.stdout, r.stderr);
}

/**
 * One `ip` per probe: `ip neigh` exits at its first failure even with -batch -force. A managed
 * entry is kept resolved by the kernel, so a STALE one is probed again too, and the pod's answer
 * re-teaches a bridge whose forwarding entry aged out.
 */
async function startProbes(probes: Probe[]): Promise<void> {
  await Promise.all(probes.map((p) => run('ip', ['neigh', 'replace', p.ip, 'dev', p.bridge, 'managed'])));
}

/**
 * Leaves a resolved address as an ordinary STALE entry (the kernel ages it out as any other) and
 * removes an unresolved one, so no managed entry keeps probing a pod that has gone.
 */
async function stopProbes(probes: Probe[], neighbours: InterfaceFacts['neighbours']): Promise<void> {
  await Promise.all(probes.map((p) => {
    const mac = neighbours.find((n) => n.ip === p.ip && n.dev === p.bridge)?.mac;
    return run('ip', mac ? ['neigh', 'replace', p.ip, 'dev', p.bridge, 'lladdr', mac, 'nud', 'stale'] : ['neigh', 'del', p.ip, 'dev', p.bridge]);
  }));
}
