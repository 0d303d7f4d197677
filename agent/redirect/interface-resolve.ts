/**
 * Which host-side interface carries a pod's traffic, decided from the facts of interface-facts.ts
 * the way the kernel forwards a packet to the pod: the FIB answer for each of the pod's
 * addresses, and when that answer is a Linux bridge, the bridge port behind the pod's MAC
 * (neighbour table, then the bridge's forwarding database). This covers the common CNI wirings:
 *   ptp      a veth per pod with a /32 (/128) host route (Calico, the ptp plugin)
 *   subnet   a veth per pod whose host side holds a connected subnet's gateway address
 *   bridge   veths enslaved to a bridge holding the gateway (flannel, the bridge plugin); STRICT
 *            is attached to the pod's port, so pod-to-pod traffic on the bridge is judged too
 * Where no interface can be named, the answer says why; it never guesses a shared one.
 */
import type { FdbFact, LinkFact, NeighbourFact, RouteAnswer } from './interface-facts';

export interface InterfaceFacts {
  links: LinkFact[];
  /** FIB answers by pod address (canonical text) */
  routes: ReadonlyMap<string, RouteAnswer>;
  neighbours: NeighbourFact[];
  /** forwarding databases by bridge name */
  fdb: ReadonlyMap<string, FdbFact[]>;
  /** the node's own addresses towards the network (the node proxy's): their links are uplinks, never a pod's */
  uplinkIps: string[];
}

/** How one address reaches its pod: the FIB's device, and for a bridge the port. */
export interface InterfaceHop {
  ip: string;
  dev: string;
  port?: string;
}

/** Neighbour resolution to start so a later pass can find a bridged pod's port. */
export interface Probe {
  ip: string;
  bridge: string;
}

export type PodInterface =
  | { ok: true; ifindexes: number[]; hops: InterfaceHop[] }
  | { ok: false; reason: string; probes: Probe[] };

type HopResult = { ok: true; link: LinkFact; hop: InterfaceHop } | { ok: false; reason: string; probe?: Probe };

/** Pod-facing device kinds: a pod's own end of a veth pair. */
const POD_LINK_KINDS = new Set(['veth']);
const UNUSABLE_NEIGHBOUR = new Set(['INCOMPLETE', 'FAILED', 'NOARP', 'NONE']);

/** The host-side interfaces of one pod (all of its addresses must resolve), or why not. */
export function resolvePodInterface(ips: string[], facts: InterfaceFacts): PodInterface {
  if (ips.length === 0) return { ok: false, reason: 'the pod has no IP address yet (status.podIPs is empty)', probes: [] };
  const byName = new Map(facts.links.map((l) => [l.name, l]));
  const uplinks = new Set(facts.links.filter((l) => l.addresses.some((a) => facts.uplinkIps.includes(a))).map((l) => l.name));
  const hops = ips.map((ip) => resolveAddress(ip, facts, byName, uplinks));
  const failed = hops.filter((h): h is Extract<HopResult, { ok: false }> => !h.ok);
  if (failed.length > 0) {
    return { ok: false, reason: failed.map((f) => f.reason).join('; '), probes: failed.flatMap((f) => (f.probe ? [f.probe] : [])) };
  }
  const ok = hops as Array<Extract<HopResult, { ok: true }>>;
  return { ok: true, ifindexes: [...new Set(ok.map((h) => h.link.ifindex))].sort((a, b) => a - b), hops: ok.map((h) => h.hop) };
}

function resolveAddress(ip: string, facts: InterfaceFacts, byName: Map<string, LinkFact>, uplinks: Set<string>): HopResult {
  const route = facts.routes.get(ip);
  if (!route || !route.ok) return { ok: false, reason: `${ip}: the node has no route to it (${route?.error ?? 'not looked up'})` };
  if (route.type === 'local') return { ok: false, reason: `${ip}: an address of the node itself (on ${route.dev}), not behind a pod interface` };
  if (route.gateway) return { ok: false, reason: `${ip}: routed via ${route.gateway} on ${route.dev}, so the pod is not behind an interface of this node` };
  const dev = byName.get(route.dev);
  if (!dev) return { ok: false, reason: `${ip}: routed to ${route.dev}, which the link list does not show` };
  if (uplinks.has(dev.name)) return { ok: false, reason: `${ip}: on the node's uplink ${dev.name} (a host on the node's network, not a pod behind a veth)` };
  if (dev.kind === 'bridge') return bridgePort(ip, dev, facts, byName, uplinks);
  if (!POD_LINK_KINDS.has(dev.kind ?? '')) {
    return { ok: false, reason: `${ip}: routed out of ${dev.name} (${dev.kind ?? 'no kind: a physical or loopback device'}), which is not a pod's own veth and may carry other destinations` };
  }
  if (dev.master) return { ok: false, reason: `${ip}: routed out of ${dev.name}, which is enslaved to ${dev.master}` };
  return { ok: true, link: dev, hop: { ip, dev: dev.name } };
}

function bridgePort(ip: string, bridge: LinkFact, facts: InterfaceFacts, byName: Map<string, LinkFact>, uplinks: Set<string>): HopResult {
  const probe = { ip, bridge: bridge.name };
  const neigh = facts.neighbours.find((n) => n.ip === ip && n.dev === bridge.name);
  if (!neigh || !neigh.mac || neigh.state.some((s) => UNUSABLE_NEIGHBOUR.has(s))) {
    const seen = neigh ? ` (neighbour entry ${neigh.state.join(',') || 'without state'})` : '';
    return { ok: false, reason: `${ip}: behind bridge ${bridge.name}, but its MAC address is not known yet${seen}`, probe };
  }
  const ports = [...new Set((facts.fdb.get(bridge.name) ?? [])
    .filter((e) => e.mac === neigh.mac && !e.self && e.master === bridge.name && e.port !== bridge.name)
    .map((e) => e.port))];
  if (ports.length === 0) return { ok: false, reason: `${ip}: behind bridge ${bridge.name} with MAC ${neigh.mac}, which the bridge's forwarding database does not hold yet`, probe };
  if (ports.length > 1) return { ok: false, reason: `${ip}: MAC ${neigh.mac} is learned on several ports of ${bridge.name} (${ports.join(', ')})` };
  const port = byName.get(ports[0]!);
  if (!port) return { ok: false, reason: `${ip}: bridge ${bridge.name} learned MAC ${neigh.mac} on ${ports[0]}, which the link list does not show` };
  if (uplinks.has(port.name) || !POD_LINK_KINDS.has(port.kind ?? '')) {
    return { ok: false, reason: `${ip}: bridge ${bridge.name} reaches it through ${port.name} (${port.kind ?? 'a physical device'}), not a pod's own veth: the pod is not on this node` };
  }
  return { ok: true, link: port, hop: { ip, dev: bridge.name, port: port.name } };
}

export interface PodAddresses {
  key: string;
  ips: string[];
  strict: boolean;
}

/**
 * Every pod's interfaces. A STRICT pod whose interface another listed pod also resolves to is not
 * enforced: the program would refuse that pod's plaintext too (for a per-pod veth this cannot happen).
 */
export function resolvePodInterfaces(pods: PodAddresses[], facts: InterfaceFacts): Map<string, PodInterface> {
  const out = new Map(pods.map((p) => [p.key, resolvePodInterface(p.ips, facts)] as const));
  const owners = new Map<number, string[]>();
  for (const [key, r] of out) if (r.ok) for (const i of r.ifindexes) owners.set(i, [...(owners.get(i) ?? []), key]);
  const names = new Map(facts.links.map((l) => [l.ifindex, l.name]));
  for (const p of pods) {
    const r = out.get(p.key)!;
    if (!p.strict || !r.ok) continue;
    const shared = r.ifindexes.flatMap((i) => (owners.get(i)!.length > 1 ? [`${names.get(i) ?? i} also carries ${owners.get(i)!.filter((k) => k !== p.key).join(', ')}`] : []));
    if (shared.length > 0) out.set(p.key, { ok: false, reason: `interface shared with other pods: ${shared.join('; ')}`, probes: [] });
  }
  return out;
}
