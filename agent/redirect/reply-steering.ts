/**
 * Which enrolled pods' replies the ingress program (bpf/weft_ingress.c) steers back to the node
 * proxy's transparent sockets, so the proxy may connect to them from their client's address
 * (source address preservation, agent/proxy/source-address.ts). Pure decisions.
 *
 * Every enrolled pod address is in weft_capture: a PERMISSIVE pod's without flags (its inbound
 * plaintext is captured as well), a STRICT pod's with WEFT_CAPTURE_REPLIES_ONLY; an address of a
 * pod that left the mesh with WEFT_CAPTURE_LINGER while the proxy holds connections with it. A pod's replies
 * are steered when each of its addresses sits behind a routed veth of its own that carries the
 * ingress program: a bridged pod's frames to a pod on the same bridge never reach the node's
 * routing, so the capture mark's local route cannot apply (docs/source-address.md).
 */
import { weft_capture_flag } from '../core/bpf-layout.generated';
import type { PodInterface } from './interface-resolve';
import type { DesiredPod } from './plan';

/** weft_capture's desired content: pod address → flags. Pure. */
export function captureEntries(desired: DesiredPod[], forbidden: bigint): Map<string, number> {
  const out = new Map<string, number>();
  for (const p of desired) {
    if (p.cgroupId === forbidden) continue;
    for (const ip of p.ips ?? []) {
      // an address claimed by a PERMISSIVE and a STRICT pod at once (a stale snapshot) stays captured
      const flags = p.strict ? weft_capture_flag.WEFT_CAPTURE_REPLIES_ONLY : 0;
      out.set(ip, Math.min(out.get(ip) ?? flags, flags));
    }
  }
  return out;
}

/**
 * `want` plus a WEFT_CAPTURE_LINGER entry for each address weft_capture holds (`have`) that is no
 * longer wanted while the proxy still holds a connection with it (`held`): a pod that left the mesh
 * (its namespace's label turned off) keeps the segments of those connections flowing to the proxy's
 * sockets until they end, where removing its entry would strand them (the pod's replies would go
 * to the client's address itself). Pure.
 */
export function withLingering(want: Map<string, number>, have: Iterable<string>, held: (ip: string) => boolean): Map<string, number> {
  const out = new Map(want);
  for (const ip of have) if (!out.has(ip) && held(ip)) out.set(ip, weft_capture_flag.WEFT_CAPTURE_LINGER);
  return out;
}

/** The addresses of `entries` that only linger. Pure. */
export function lingeringAddresses(entries: Map<string, number>): string[] {
  return [...entries].filter(([, f]) => (f & weft_capture_flag.WEFT_CAPTURE_LINGER) !== 0).map(([ip]) => ip).sort();
}

export interface CapturePlan { put: Array<[string, number]>; remove: string[] }

/** What to write to and delete from weft_capture so it holds exactly `want` (flags included). Pure. */
export function planCaptureEntries(want: Map<string, number>, have: Map<string, number>): CapturePlan {
  return {
    put: [...want].filter(([ip, flags]) => have.get(ip) !== flags).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    remove: [...have.keys()].filter((ip) => !want.has(ip)).sort(),
  };
}

/**
 * The interfaces the ingress program watches: the uplinks and every pod interface while any pod
 * is captured or lingers (clients arrive on both); only the pod interfaces while only replies are
 * steered (replies leave pods there); none without entries. Pure.
 */
export function ingressInterfaces(entries: Map<string, number>, uplinks: Iterable<number>, podInterfaces: Iterable<number>): number[] {
  const flags = [...entries.values()];
  if (flags.length === 0) return [];
  const captured = flags.some((f) => (f & weft_capture_flag.WEFT_CAPTURE_REPLIES_ONLY) === 0);
  return [...new Set([...(captured ? uplinks : []), ...podInterfaces])].sort((a, b) => a - b);
}

export interface SteeredPod { key: string; ips: string[]; iface: PodInterface | undefined }

export interface Steering {
  /** pod addresses whose replies come back to the proxy's transparent sockets */
  addresses: string[];
  /** enrolled pods that get their connections from the node's address instead, and why */
  notSteered: Array<{ pod: string; reason: string }>;
}

/** Which pods' replies reach the proxy, given where the ingress program is attached. Pure. */
export function steeredPods(pods: SteeredPod[], attached: ReadonlySet<number>): Steering {
  const addresses: string[] = [];
  const notSteered: Steering['notSteered'] = [];
  for (const p of pods) {
    const reason = !p.iface ? 'its host-side interface was not looked up'
      : !p.iface.ok ? `no host-side interface found (${p.iface.reason})`
        : p.iface.hops.some((h) => h.port !== undefined) ? `it sits on a bridge (${p.iface.hops.map((h) => h.dev).join(', ')}): bridged replies are not routed, so they cannot be steered`
          : p.iface.ifindexes.some((i) => !attached.has(i)) ? 'the ingress program is not attached to its interface'
            : undefined;
    if (reason === undefined) addresses.push(...p.ips);
    else notSteered.push({ pod: p.key, reason });
  }
  return { addresses: [...new Set(addresses)].sort(), notSteered };
}
