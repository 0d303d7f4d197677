import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { canonicalIp } from '../core/ip';

const run = promisify(execFile);

/**
 * The node-side interface each pod address is routed through, read from this network namespace's
 * routes (CNIs such as Calico give every pod a host route via its veth). Returns IP → ifindex.
 */
export async function podInterfaces(): Promise<Map<string, number>> {
  const [links, routes4, routes6] = await Promise.all([
    run('ip', ['-j', 'link', 'show']),
    run('ip', ['-j', '-4', 'route', 'show']),
    run('ip', ['-j', '-6', 'route', 'show']),
  ]);
  const ifindexByName = new Map<string, number>();
  for (const l of JSON.parse(links.stdout) as Array<{ ifindex: number; ifname: string }>) ifindexByName.set(l.ifname, l.ifindex);
  const out = new Map<string, number>();
  for (const r of [...JSON.parse(routes4.stdout), ...JSON.parse(routes6.stdout)] as Array<{ dst: string; dev?: string; gateway?: string }>) {
    if (!r.dev || r.gateway) continue;
    const host = /^([^/]+)(?:\/(32|128))?$/.exec(r.dst);
    if (!host || r.dst === 'default') continue;
    if (!r.dst.includes('/') || host[2]) {
      try { out.set(canonicalIp(host[1]!), ifindexByName.get(r.dev) ?? -1); } catch { /* not an address */ }
    }
  }
  for (const [ip, idx] of out) if (idx < 0) out.delete(ip);
  return out;
}

/** The interface holding each of this network namespace's own addresses (IP → ifindex). */
export async function addressInterfaces(): Promise<Map<string, number>> {
  const { stdout } = await run('ip', ['-j', 'addr', 'show']);
  const out = new Map<string, number>();
  for (const l of JSON.parse(stdout) as Array<{ ifindex: number; addr_info?: Array<{ local?: string }> }>) {
    for (const a of l.addr_info ?? []) {
      if (!a.local) continue;
      try { out.set(canonicalIp(a.local), l.ifindex); } catch { /* not an address */ }
    }
  }
  return out;
}
