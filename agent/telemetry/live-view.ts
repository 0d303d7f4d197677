/**
 * The live view: who talks to whom through this node's proxy, per edge (source pod → destination
 * pod, or → Service when no endpoint was reached), over a rolling window (live-window.ts) and since
 * the agent started, with the last denials. It subscribes to the proxy's telemetry events
 * (events.ts) as metrics do; the admin port serves its feed (live-feed.ts) at `/live.json`, which
 * the page at `/live`, `weft status` and `weft top` read.
 *
 * Every event is reported by the source proxy, the destination proxy, or both (one process reports
 * both when the two pods share a node). An edge keeps each reporter's counts apart and shows the
 * destination's when it has any (it sees every request; the source proxy of a pod-to-pod tunnel sees
 * only bytes), so nothing is counted twice. A denial is listed once: as the destination reported it,
 * or as the source did when the destination pod is on another node.
 *
 * Memory is bounded: at most `maxEdges` edges (the longest idle without open connections goes
 * first), each a fixed ring of slots; idle edges are dropped after `idleMs`; `maxDenials` denials.
 */
import type { WorkloadRef } from '../core/workload';
import type { WorkloadStore } from '../state/store';
import { subscribeTelemetry, type ConnectionClosedEvent, type ConnectionEnds, type ConnectionOpenedEvent, type Reporter, type RequestCompletedEvent, type SecurityPolicy } from './events';
import type { LiveDenial, LiveEdge, LiveFeed, LiveVertex } from './live-feed';
import { DEFAULT_WINDOW, RollingWindow, zeroCounts, type Counts, type WindowShape } from './live-window';

export interface LiveViewOptions {
  /** this agent's node: named in the feed, and used to tell local destinations from remote ones */
  node: string;
  window?: WindowShape;
  maxEdges?: number;
  maxDenials?: number;
  /** an edge without events for this long and without open connections leaves the view */
  idleMs?: number;
  now?: () => number;
}

export const LIVE_DEFAULTS = { maxEdges: 1000, maxDenials: 20, idleMs: 15 * 60_000 } as const;

/** The two ends of a connection as the view names them. Pure. */
export function edgeEnds(ends: ConnectionEnds, security: SecurityPolicy, store: WorkloadStore | undefined): { source: LiveVertex; destination: LiveVertex; service?: string } {
  let source: LiveVertex;
  if (ends.src) source = podVertex(ends.src);
  else {
    // A plaintext client is named by its address (as the metrics do); a tunnel peer only when the pod at its address has the identity it proved.
    const pod = store?.podByIp(ends.srcIp);
    const named = pod && store && (security === 'none' || (ends.srcIdentity !== undefined && store.identityOf(pod) === ends.srcIdentity));
    if (named) source = podVertex(store.workloadRef(pod));
    else if (ends.srcIdentity !== undefined) source = identityVertex(ends.srcIdentity);
    else source = { id: `ip:${ends.srcIp}`, kind: 'external', name: ends.srcIp };
  }
  let destination: LiveVertex;
  const service = ends.dstService ?? (ends.dst ? undefined : store?.serviceByIp(ends.dstIp));
  if (ends.dst) destination = podVertex(ends.dst);
  else {
    const pod = store?.podByIp(ends.dstIp);
    if (pod && store) destination = podVertex(store.workloadRef(pod));
    else if (service) destination = { id: `service:${service.namespace}/${service.name}`, kind: 'service', name: service.name, namespace: service.namespace };
    else destination = { id: `ip:${ends.dstIp}`, kind: 'external', name: ends.dstIp };
  }
  return { source, destination, ...(service ? { service: `${service.name}.${service.namespace}.svc.cluster.local` } : {}) };
}

function podVertex(r: WorkloadRef): LiveVertex {
  return { id: `pod:${r.namespace}/${r.name}`, kind: 'pod', name: r.name, namespace: r.namespace, workload: r.workload, node: r.node, identity: r.identity };
}

function identityVertex(id: string): LiveVertex {
  const m = /\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(id);
  return { id: `identity:${id}`, kind: 'identity', name: m?.[2] ?? id, ...(m ? { namespace: m[1] } : {}), identity: id };
}

/** Whether a request failed, from the client's point of view. Pure. */
export function requestFailed(ev: Pick<RequestCompletedEvent, 'status' | 'grpcStatus' | 'flags'>): boolean {
  return ev.flags !== '-' || ev.status === 0 || ev.status >= 500 || (ev.grpcStatus !== undefined && ev.grpcStatus !== '0');
}

/** One reporter's counts on one edge. */
class Side {
  readonly window: RollingWindow;
  readonly totals: Counts = zeroCounts();
  active = 0;
  lastSecurity: SecurityPolicy = 'none';
  constructor(shape: WindowShape) {
    this.window = new RollingWindow(shape);
  }
}

interface Edge {
  id: string;
  source: LiveVertex;
  destination: LiveVertex;
  service?: string;
  sides: Partial<Record<Reporter, Side>>;
  protocol: LiveEdge['protocol'];
  lastSeen: number;
  /** left the view (evicted or idle): connections still pointing at it name their edge anew */
  gone: boolean;
}

const PROTOCOL_RANK = { tcp: 0, http: 1, grpc: 2 } as const;

export class LiveView {
  private readonly edges = new Map<string, Edge>();
  private denials: LiveDenial[] = [];
  private store: WorkloadStore | undefined;
  /** the edge of each connection seen (its ends are the same object for each of its requests), by security; dropped with the state */
  private named = namedBySecurity();
  private readonly started: number;
  private readonly shape: WindowShape;
  private readonly maxEdges: number;
  private readonly maxDenials: number;
  private readonly idleMs: number;
  private readonly now: () => number;
  /** set while subscribed: what unsubscribes */
  private unsubscribeAll: (() => void) | undefined;


  constructor(private readonly opts: LiveViewOptions) {
    this.shape = opts.window ?? DEFAULT_WINDOW;
    this.maxEdges = opts.maxEdges ?? LIVE_DEFAULTS.maxEdges;
    this.maxDenials = opts.maxDenials ?? LIVE_DEFAULTS.maxDenials;
    this.idleMs = opts.idleMs ?? LIVE_DEFAULTS.idleMs;
    if (!(Number.isInteger(this.maxEdges) && this.maxEdges > 0)) throw new Error(`live view: maxEdges must be a positive whole number (got ${this.maxEdges})`);
    if (!(Number.isInteger(this.maxDenials) && this.maxDenials >= 0)) throw new Error(`live view: maxDenials must be a whole number (got ${this.maxDenials})`);
    this.now = opts.now ?? Date.now;
    this.started = this.now();
    new RollingWindow(this.shape); // checks the shape now rather than at the first event
  }

  subscribe(): this {
    this.unsubscribeAll ??= subscribeTelemetry(this);
    return this;
  }

  unsubscribe(): void {
    if (this.unsubscribeAll === undefined) return;
    this.unsubscribeAll();
    this.unsubscribeAll = undefined;
  }

  /** The state ends are named against (plaintext clients by address, Services by cluster IP). */
  setStore(store: WorkloadStore): void {
    this.store = store;
    this.named = namedBySecurity();
  }

  /** How many edges are kept. */
  get size(): number {
    return this.edges.size;
  }

  opened(ev: ConnectionOpenedEvent): void {
    const now = this.now();
    const side = this.side(ev, now);
    side.active++;
    side.lastSecurity = ev.security;
    const slot = side.window.slot(now);
    slot.connectionsOpened++;
    side.totals.connectionsOpened++;
    this.security(slot, side.totals, ev.security);
  }

  closed(ev: ConnectionClosedEvent): void {
    const now = this.now();
    const edge = this.edge(ev, now);
    const side = this.sideOf(edge, ev.reporter);
    if (side.active > 0) side.active--;
    const slot = side.window.slot(now);
    slot.connectionsClosed++;
    side.totals.connectionsClosed++;
    slot.bytesFromClient += ev.bytesFromClient;
    slot.bytesToClient += ev.bytesToClient;
    side.totals.bytesFromClient += ev.bytesFromClient;
    side.totals.bytesToClient += ev.bytesToClient;
    if (ev.flags === 'DENY') {
      slot.deniedConnections++;
      side.totals.deniedConnections++;
      this.deny(edge, ev, 'connection', now);
    }
  }

  request(ev: RequestCompletedEvent): void {
    const now = this.now();
    const edge = this.edge(ev, now);
    if (PROTOCOL_RANK[ev.protocol] > PROTOCOL_RANK[edge.protocol]) edge.protocol = ev.protocol;
    const side = this.sideOf(edge, ev.reporter);
    side.lastSecurity = ev.security;
    const slot = side.window.slot(now);
    slot.requests++;
    side.totals.requests++;
    if (requestFailed(ev)) { slot.errors++; side.totals.errors++; }
    if (ev.flags === 'DENY') {
      slot.deniedRequests++;
      side.totals.deniedRequests++;
      this.deny(edge, ev, 'request', now);
    }
    this.security(slot, side.totals, ev.security);
    side.window.observe(now, ev.durationMs);
  }

  /** What the admin port serves at /live.json. Drops edges idle for longer than idleMs first. */
  feed(): LiveFeed {
    const now = this.now();
    for (const e of this.edges.values()) {
      if (now - e.lastSeen > this.idleMs && !hasOpen(e)) this.drop(e);
    }
    const windowMs = this.shape.slotMs * this.shape.slots;
    // Before a full window has passed, rates are over the time the view has been running.
    const seconds = Math.max(this.shape.slotMs, Math.min(windowMs, now - this.started)) / 1000;
    const vertices = new Map<string, LiveVertex>();
    const edges: LiveEdge[] = [];
    for (const e of this.edges.values()) {
      vertices.set(e.source.id, e.source);
      vertices.set(e.destination.id, e.destination);
      edges.push(summarize(e, now, seconds));
    }
    return { node: this.opts.node, at: now, windowSeconds: windowMs / 1000, vertices: [...vertices.values()], edges, denials: [...this.denials] };
  }

  private security(slot: Counts, totals: Counts, s: SecurityPolicy): void {
    if (s === 'mutual_tls') { slot.mtls++; totals.mtls++; } else { slot.plaintext++; totals.plaintext++; }
  }

  private deny(edge: Edge, ev: ConnectionClosedEvent | RequestCompletedEvent, kind: LiveDenial['kind'], now: number): void {
    // Once per denial: the destination's report, or the source's when the destination is another node's.
    const remote = ev.ends.dst !== undefined && ev.ends.dst.node !== this.opts.node;
    if (ev.reporter === 'source' && !remote) return;
    if (this.maxDenials === 0) return;
    const policy = ev.policy;
    const status = 'status' in ev ? ev.status : undefined;
    this.denials.unshift({ at: now, source: edge.source.id, destination: edge.destination.id, kind, reporter: ev.reporter,
      ...(kind === 'request' && status !== undefined ? { status } : {}), ...(policy !== undefined && policy !== '' ? { policy } : {}) });
    if (this.denials.length > this.maxDenials) this.denials.length = this.maxDenials;
  }

  private side(ev: ConnectionOpenedEvent, now: number): Side {
    return this.sideOf(this.edge(ev, now), ev.reporter);
  }

  private sideOf(edge: Edge, reporter: Reporter): Side {
    return (edge.sides[reporter] ??= new Side(this.shape));
  }

  private edge(ev: ConnectionOpenedEvent, now: number): Edge {
    const named = this.named[ev.security];
    let e = named.get(ev.ends);
    if (!e || e.gone) {
      const ends = edgeEnds(ev.ends, ev.security, this.store);
      const id = `${ends.source.id} > ${ends.destination.id}`;
      e = this.edges.get(id);
      if (!e) {
        if (this.edges.size >= this.maxEdges) this.evictOne();
        e = { id, source: ends.source, destination: ends.destination, ...(ends.service ? { service: ends.service } : {}), sides: {}, protocol: 'tcp', lastSeen: now, gone: false };
        this.edges.set(id, e);
      }
      named.set(ev.ends, e);
    }
    e.lastSeen = now;
    return e;
  }

  private drop(e: Edge): void {
    e.gone = true;
    this.edges.delete(e.id);
  }

  /** Makes room for one edge: the longest idle without open connections, else the longest idle. */
  private evictOne(): void {
    let victim: Edge | undefined;
    let fallback: Edge | undefined;
    for (const e of this.edges.values()) {
      if (!fallback || e.lastSeen < fallback.lastSeen) fallback = e;
      if (!hasOpen(e) && (!victim || e.lastSeen < victim.lastSeen)) victim = e;
    }
    const out = victim ?? fallback;
    if (out) this.drop(out);
  }
}

function hasOpen(e: Edge): boolean {
  return (e.sides.source?.active ?? 0) + (e.sides.destination?.active ?? 0) > 0;
}

/** The reporter whose counts an edge shows for one kind: the destination's when it counted any. */
function pick(e: Edge, has: (s: Side) => boolean): Reporter | null {
  if (e.sides.destination && has(e.sides.destination)) return 'destination';
  if (e.sides.source && has(e.sides.source)) return 'source';
  return null;
}

function summarize(e: Edge, now: number, seconds: number): LiveEdge {
  const reqReporter = pick(e, (s) => s.totals.requests > 0);
  const tcpReporter = pick(e, (s) => s.totals.connectionsOpened + s.totals.connectionsClosed > 0);
  const req = reqReporter ? e.sides[reqReporter]! : undefined;
  const tcp = tcpReporter ? e.sides[tcpReporter]! : undefined;
  const rw = req?.window.sums(now);
  const tw = tcp?.window.sums(now);
  // mTLS from what the shown reporter saw in the window; when idle, from its last event.
  const shown = tcp ?? req;
  const w = tw ?? rw;
  let mtls: LiveEdge['mtls'] = shown?.lastSecurity ?? 'none';
  if (w && w.mtls + w.plaintext > 0) mtls = w.mtls > 0 && w.plaintext > 0 ? 'mixed' : w.mtls > 0 ? 'mutual_tls' : 'none';
  const round = (n: number, digits: number) => Math.round(n * 10 ** digits) / 10 ** digits;
  return {
    id: e.id,
    source: e.source.id,
    destination: e.destination.id,
    ...(e.service ? { service: e.service } : {}),
    mtls,
    protocol: e.protocol,
    requests: {
      reporter: reqReporter,
      total: req?.totals.requests ?? 0,
      perSecond: round((rw?.requests ?? 0) / seconds, 3),
      successRate: rw && rw.requests > 0 ? round((rw.requests - rw.errors) / rw.requests, 4) : null,
      p99Ms: rw?.p99Ms === undefined ? null : round(rw.p99Ms, 3),
      errors: rw?.errors ?? 0,
      denied: rw?.deniedRequests ?? 0,
      deniedTotal: req?.totals.deniedRequests ?? 0,
    },
    tcp: {
      reporter: tcpReporter,
      opened: tcp?.totals.connectionsOpened ?? 0,
      active: tcp?.active ?? 0,
      perSecond: round((tw?.connectionsOpened ?? 0) / seconds, 3),
      bytesFromClient: tcp?.totals.bytesFromClient ?? 0,
      bytesToClient: tcp?.totals.bytesToClient ?? 0,
      bytesPerSecond: round(((tw?.bytesFromClient ?? 0) + (tw?.bytesToClient ?? 0)) / seconds, 1),
      deniedTotal: tcp?.totals.deniedConnections ?? 0,
    },
    lastSeen: e.lastSeen,
  };
}

/** A map per security policy, so a connection's edge is found without an object per connection. */
function namedBySecurity(): Record<SecurityPolicy, WeakMap<ConnectionEnds, Edge>> {
  return { mutual_tls: new WeakMap(), none: new WeakMap() };
}
