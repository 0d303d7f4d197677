/**
 * What the node's network namespace says about where pod addresses live, read from iproute2's JSON
 * (`ip -j -d addr show`, `ip -j route get` in a batch, `ip -j neigh show`, `bridge -j fdb show`).
 * Parsing only: no I/O, so each shape is tested on output captured from the real tools.
 */
import { canonicalIp } from '../core/ip';

export interface LinkFact {
  ifindex: number;
  name: string;
  /** linkinfo.info_kind: 'veth', 'bridge', 'vxlan', ...; undefined for a physical NIC or loopback */
  kind: string | undefined;
  /** the bridge (or bond) this link is enslaved to */
  master: string | undefined;
  /** the link's own addresses, canonical text */
  addresses: string[];
}

/** The kernel's FIB answer for one address (`ip route get`), or why there is none. */
export type RouteAnswer =
  | { ok: true; dev: string; gateway?: string; type?: string }
  | { ok: false; error: string };

export interface NeighbourFact {
  ip: string;
  dev: string;
  mac: string | undefined;
  /** NUD states, e.g. ['REACHABLE'], ['STALE'], ['INCOMPLETE'], ['FAILED'] */
  state: string[];
}

export interface FdbFact {
  mac: string;
  /** the port the MAC was learned on (or the bridge itself for its own entries) */
  port: string;
  master: string | undefined;
  /** an entry of the device's own table ('self'), not the bridge's forwarding database */
  self: boolean;
}

type Json = Record<string, unknown>;

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

function ipOrUndefined(text: unknown): string | undefined {
  if (typeof text !== 'string') return undefined;
  try { return canonicalIp(text.replace(/%.*$/, '')); } catch { return undefined; }
}

function jsonArray(text: string, what: string): Json[] {
  const trimmed = text.trim();
  if (trimmed === '') return [];
  let v: unknown;
  try { v = JSON.parse(trimmed); } catch (e) { throw new Error(`${what}: output is not JSON (${(e as Error).message}); is iproute2 new enough for -j?`); }
  if (!Array.isArray(v)) throw new Error(`${what}: expected a JSON array`);
  return v.filter((x): x is Json => typeof x === 'object' && x !== null);
}

/** `ip -j -d addr show`: every link with its kind, master and addresses. */
export function parseLinks(text: string): LinkFact[] {
  return jsonArray(text, 'ip -j -d addr show').flatMap((l) => {
    const ifindex = l.ifindex, name = str(l.ifname);
    if (typeof ifindex !== 'number' || !name) return [];
    const info = (typeof l.linkinfo === 'object' && l.linkinfo !== null ? l.linkinfo : {}) as Json;
    const addrs = Array.isArray(l.addr_info) ? (l.addr_info as Json[]) : [];
    return [{
      ifindex, name, kind: str(info.info_kind), master: str(l.master),
      addresses: addrs.flatMap((a) => { const ip = ipOrUndefined(a?.local); return ip ? [ip] : []; }),
    }];
  });
}

/**
 * `ip -j -force -batch -` of `route get <ip>` lines: stdout holds one JSON array per command that
 * succeeded, stderr the failures as "<message>\nCommand failed -:<line>". Answers by the address
 * asked (canonical text); an address with neither an answer nor an error is reported as such.
 */
export function parseRouteBatch(asked: string[], stdout: string, stderr: string): Map<string, RouteAnswer> {
  const out = new Map<string, RouteAnswer>();
  for (const line of stdout.split('\n')) {
    for (const r of jsonArray(line, 'ip -j route get')) {
      const dst = ipOrUndefined(r.dst), dev = str(r.dev);
      if (!dst || !dev) continue;
      out.set(dst, { ok: true, dev, ...(str(r.gateway) ? { gateway: ipOrUndefined(r.gateway) ?? String(r.gateway) } : {}), ...(str(r.type) ? { type: String(r.type) } : {}) });
    }
  }
  let message: string[] = [];
  for (const line of stderr.split('\n')) {
    const failed = /^Command failed -:(\d+)\s*$/.exec(line);
    if (!failed) { if (line.trim()) message.push(line.trim()); continue; }
    const ip = asked[Number(failed[1]) - 1];
    if (ip !== undefined && !out.has(ip)) out.set(ip, { ok: false, error: message.join('; ').replace(/^RTNETLINK answers: /, '') || 'the lookup failed' });
    message = [];
  }
  for (const ip of asked) if (!out.has(ip)) out.set(ip, { ok: false, error: 'ip route get gave no answer' });
  return out;
}

/** `ip -j neigh show`: IPv4 and IPv6 neighbours of every link. */
export function parseNeighbours(text: string): NeighbourFact[] {
  return jsonArray(text, 'ip -j neigh show').flatMap((n) => {
    const ip = ipOrUndefined(n.dst), dev = str(n.dev);
    if (!ip || !dev) return [];
    return [{ ip, dev, mac: str(n.lladdr)?.toLowerCase(), state: Array.isArray(n.state) ? n.state.map(String) : [] }];
  });
}

/** `bridge -j fdb show br <bridge>`: the bridge's forwarding database (and its ports' own entries). */
export function parseFdb(text: string): FdbFact[] {
  return jsonArray(text, 'bridge -j fdb show').flatMap((e) => {
    const mac = str(e.mac), port = str(e.ifname);
    if (!mac || !port) return [];
    const flags = Array.isArray(e.flags) ? e.flags.map(String) : [];
    return [{ mac: mac.toLowerCase(), port, master: str(e.master), self: flags.includes('self') }];
  });
}
