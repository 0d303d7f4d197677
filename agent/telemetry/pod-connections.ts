/**
 * Connections open now per local pod, from the proxy's connection events (events.ts): a shared node
 * proxy must tell which pod holds what. `weft_pod_open_connections{pod_namespace, pod_name,
 * direction}`: `outbound` counts the connections a pod on this node opened that the proxy holds
 * (captured on 15001: to pods, Services, passthrough), `inbound` the connections the proxy delivers
 * into a pod on this node (over HBONE, from a pod on the same node, from a plaintext client). A
 * connection between two pods of this node counts once for each.
 *
 * Exact: every opened event is paired with its close by the connection's ends (the same object for
 * both) and reporter; a close whose open was not seen (listening started in between) changes
 * nothing. A pod's series exists from its first connection and goes when the pod leaves the state
 * (prune); a connection of a pod gone closing later changes only the record that was removed.
 *
 * Labels are `pod_namespace`/`pod_name`, not `namespace`/`pod`: the prometheus-operator's scrape
 * sets `namespace` and `pod` to the agent's own (a scraped label of the same name would be renamed
 * `exported_pod`), and so does the ztunnel view (`pod="ztunnel-..."`).
 */
import type { ConnectionEnds, ConnectionOpenedEvent } from './events';

export type Direction = 'inbound' | 'outbound';

/** The local pod a connection event is about and in which direction: the source pod for the source proxy, the destination pod for the destination proxy. Pure. */
export function localPodOf(ev: ConnectionOpenedEvent): { namespace: string; name: string; direction: Direction } | undefined {
  const w = ev.reporter === 'source' ? ev.ends.src : ev.ends.dst;
  return w && { namespace: w.namespace, name: w.name, direction: ev.reporter === 'source' ? 'outbound' : 'inbound' };
}

/** One pod's connections open now. */
export interface PodCount { readonly namespace: string; readonly name: string; inbound: number; outbound: number }

export class PodConnections {
  private readonly pods = new Map<string, PodCount>();
  /**
   * Each open connection's pod count, by its ends, per direction: what its close takes back. No
   * object per connection (an array and a record were ~0.1 KiB each open connection held).
   */
  private open = openByDirection();

  /** Every pod's counts now (read at scrape by health.ts's `weft_pod_open_connections`). */
  counts(): Iterable<Readonly<PodCount>> {
    return this.pods.values();
  }

  opened(ev: ConnectionOpenedEvent): void {
    const local = localPodOf(ev);
    if (!local) return;
    const open = this.open[local.direction];
    // One connection is one open per direction: its ends opened again in the same direction count once.
    if (open.has(ev.ends)) return;
    const key = `${local.namespace}/${local.name}`;
    let count = this.pods.get(key);
    if (!count) this.pods.set(key, (count = { namespace: local.namespace, name: local.name, inbound: 0, outbound: 0 }));
    count[local.direction]++;
    open.set(ev.ends, count);
  }

  closed(ev: ConnectionOpenedEvent): void {
    const local = localPodOf(ev);
    if (!local) return;
    const open = this.open[local.direction];
    const count = open.get(ev.ends);
    if (!count) return;
    count[local.direction]--;
    open.delete(ev.ends);
  }

  /** Removes the series of pods not in `present` (`namespace/name`); returns how many pods were removed. */
  prune(present: ReadonlySet<string>): number {
    let n = 0;
    for (const key of this.pods.keys()) if (!present.has(key)) { this.pods.delete(key); n++; }
    return n;
  }

  /** Forgets everything (listening stopped: counts of connections whose close will not be seen would only drift). */
  clear(): void {
    this.pods.clear();
    this.open = openByDirection();
  }

  /** The open connections of a pod now (tests, the admin API). */
  get(namespace: string, name: string): { inbound: number; outbound: number } | undefined {
    const c = this.pods.get(`${namespace}/${name}`);
    return c && { inbound: c.inbound, outbound: c.outbound };
  }
}

function openByDirection(): Record<Direction, WeakMap<ConnectionEnds, PodCount>> {
  return { inbound: new WeakMap(), outbound: new WeakMap() };
}
