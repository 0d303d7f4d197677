/**
 * The source proxy's live state per Service port: its balancer (in-flight counts), outlier
 * detector (ejections), circuit breaker (connections, pending and active requests, retries) and
 * retry budget. It outlives snapshots (an endpoint's ejection survives an unrelated config change);
 * the TrafficPolicy settings in force are read from the latest snapshot, resolved once per store.
 * The decisions themselves are agent/traffic's pure modules; this only keeps their state.
 */
import type { ServiceInfo, ServicePort } from '../config/objects';
import { serviceEndpoints, usable, type Endpoint } from '../state/endpoints';
import type { WorkloadStore } from '../state/store';
import { trafficPolicyFor } from '../traffic/resolve';
import type { ResolvedTrafficPolicy } from '../traffic/traffic-policy';
import { createBalancer, type Balancer } from '../traffic/balancer';
import { OutlierDetector } from '../traffic/outlier';
import { CircuitBreaker } from '../traffic/circuit-breaker';
import { RetryBudget } from '../traffic/retry';
import { breakerLimits } from '../traffic/circuit-breaker';
import { sameFamilyFirst, servicePortKeyOf } from './service-target';
import type { LimitKind } from '../traffic/circuit-breaker';

export type EndpointResult = { kind: 'success' } | { kind: '5xx' } | { kind: 'gateway-error' } | { kind: 'local-origin-failure' } | 'success' | '5xx' | 'gateway-error' | 'local-origin-failure';

interface PortState {
  policy: ResolvedTrafficPolicy;
  balancer: Balancer;
  balancerKind: ResolvedTrafficPolicy['loadBalancer'];
  outlier: OutlierDetector;
  breaker: CircuitBreaker;
  /** HTTP/1.1 requests waiting (pending) for a connection lease, oldest first */
  waiting: (() => void)[];
  /** the store the policy was resolved from */
  store: WorkloadStore | undefined;
  /** the store whose endpoints the outlier detector last saw */
  outlierSynced?: WorkloadStore | undefined;
}

/** One Service port's counters, for metrics (agent/telemetry/service-metrics.ts). */
export interface ServicePortStats {
  service: { namespace: string; name: string };
  port: number;
  /** retries made (each admitted retry lease) */
  retries: number;
  /** ejections so far */
  ejections: number;
  /** endpoints ejected now */
  ejectedNow: number;
  /** requests and connections refused by the circuit breaker, by the limit that overflowed */
  overflows: Readonly<Record<LimitKind, number>>;
}

export type Admission = { ok: true; release(): void } | { ok: false; reason: string };

/** `ip:port` of an endpoint, made once per Endpoint object (a snapshot's endpoints live as long as it). */
const endpointKeys = new WeakMap<Endpoint, string>();
export function endpointKey(e: Endpoint): string {
  let k = endpointKeys.get(e);
  if (k === undefined) { k = `${e.ip}:${e.port}`; endpointKeys.set(e, k); }
  return k;
}

/** A candidate list's keys in order and its endpoints by key, built once per list (the lists are cached per snapshot). */
interface Keyed { keys: string[]; byKey: Map<string, Endpoint> }
const keyedLists = new WeakMap<readonly Endpoint[], Keyed>();
function keyed(candidates: readonly Endpoint[]): Keyed {
  let k = keyedLists.get(candidates);
  if (k === undefined) {
    const byKey = new Map<string, Endpoint>();
    for (const e of candidates) byKey.set(endpointKey(e), e);
    k = { keys: [...byKey.keys()], byKey };
    keyedLists.set(candidates, k);
  }
  return k;
}

/** sameFamilyFirst of a usable-endpoint list, per list and address family (a fresh array per request would defeat the key cache). */
const byFamily = new WeakMap<readonly Endpoint[], { v4?: readonly Endpoint[]; v6?: readonly Endpoint[] }>();

export class ServiceRuntime {
  private readonly ports = new Map<string, PortState>();
  private store: WorkloadStore | undefined;
  /** ejections so far, by Service port key (metrics, `weft status`) */
  readonly ejections = new Map<string, number>();
  /** retries made so far, by Service port key (metrics) */
  private readonly retries = new Map<string, number>();

  constructor(private readonly now: () => number = () => performance.now(), private readonly random: () => number = Math.random) {}

  /** The snapshot in force: settings are re-resolved from it; state of Service ports that are gone is dropped. */
  setStore(store: WorkloadStore): void {
    this.store = store;
    for (const key of this.ports.keys()) {
      const [nsName] = key.split(':') as [string];
      const [ns, name] = nsName.split('/') as [string, string];
      if (!store.snapshot.services.some((s) => s.namespace === ns && s.name === name)) { this.ports.delete(key); this.retries.delete(key); }
    }
  }

  /** The TrafficPolicy in force for a Service port, defaults filled in. */
  policy(service: { namespace: string; name: string }, port: number): ResolvedTrafficPolicy {
    return this.state(servicePortKeyOf(service, port), service, port).policy;
  }

  usableEndpoints(store: WorkloadStore, service: ServiceInfo, port: ServicePort): readonly Endpoint[] {
    return usable(serviceEndpoints(store, service, port).endpoints);
  }

  /** The usable endpoints of a Service port, those of the cluster IP's address family first (sameFamilyFirst), the same array for the same snapshot. */
  candidates(store: WorkloadStore, service: ServiceInfo, port: ServicePort, vip: string): readonly Endpoint[] {
    const all = this.usableEndpoints(store, service, port);
    let fam = byFamily.get(all);
    if (fam === undefined) { fam = {}; byFamily.set(all, fam); }
    const v6 = vip.includes(':');
    const known = v6 ? fam.v6 : fam.v4;
    if (known !== undefined) return known;
    const list = Object.freeze(sameFamilyFirst(all, vip));
    if (v6) fam.v6 = list; else fam.v4 = list;
    return list;
  }

  /** An endpoint for a new connection or request: not ejected, not in `exclude` (tried already) when another is left. */
  pick(key: string, service: { namespace: string; name: string }, port: number, candidates: readonly Endpoint[], exclude?: ReadonlySet<string>): Endpoint | undefined {
    if (candidates.length === 0) return undefined;
    const st = this.state(key, service, port);
    const now = this.now();
    const { keys: all, byKey } = keyed(candidates);
    let keys: readonly string[] = all;
    // The detector forgets endpoints that left the Service (once per snapshot, not per pick).
    if (st.policy.outlierDetection.enabled && st.outlierSynced !== this.store) { st.outlier.setEndpoints(keys, now); st.outlierSynced = this.store; }
    if (exclude && exclude.size > 0) {
      const fresh = keys.filter((k) => !exclude.has(k));
      if (fresh.length > 0) keys = fresh;
    }
    const chosen = st.balancer.pick(keys, this.random);
    return chosen === undefined ? undefined : byKey.get(chosen);
  }

  started(key: string, ep: Endpoint): void {
    this.ports.get(key)?.balancer.started(endpointKey(ep));
  }

  finished(key: string, ep: Endpoint, result: EndpointResult): void {
    const st = this.ports.get(key);
    if (!st) return;
    const k = endpointKey(ep);
    st.balancer.finished(k);
    const kind = typeof result === 'string' ? result : result.kind;
    if (!st.policy.outlierDetection.enabled) return;
    const event = st.outlier.record(k, kind === 'success' ? 'success' : kind === '5xx' ? '5xx' : kind === 'gateway-error' ? 'gatewayError' : 'localOriginFailure', this.now());
    if (event?.type === 'eject') this.ejections.set(key, (this.ejections.get(key) ?? 0) + 1);
  }

  /**
   * A request to the Service port, within its circuit breaker's limits (Envoy's accounting): a
   * `request` lease while it is in flight; over HTTP/1.1 also a `connection` lease (a request in
   * flight holds a connection), and when every connection is busy it waits as `pending` for one,
   * up to maxPendingRequests. Past a limit it is refused at once (503, UO). `release` when done.
   */
  admitRequest(key: string, backend: { service: ServiceInfo; port: ServicePort }, protocol: 'http1' | 'http2'): Admission | Promise<Admission> {
    const st = this.state(key, backend.service, backend.port.port);
    const request = st.breaker.tryAcquire('request');
    if (!request.ok) return { ok: false, reason: request.error.reason };
    if (protocol === 'http2') return { ok: true, release: () => request.value.release() };
    // A connection lease at once (the usual case) needs no promise; only a pending request waits.
    const lease = st.breaker.tryAcquire('connection');
    if (lease.ok) return { ok: true, release: () => { request.value.release(); lease.value.release(); this.wake(st); } };
    return this.pendingLease(st).then((connection) => {
      if (!connection.ok) { request.value.release(); return connection; }
      return { ok: true, release: () => { request.value.release(); connection.release(); } };
    });
  }

  /** A TCP connection to the Service port, within maxConnections. */
  admitConnection(key: string, service: ServiceInfo, port: number): Admission {
    const st = this.state(key, service, port);
    const lease = st.breaker.tryAcquire('connection');
    if (!lease.ok) return { ok: false, reason: lease.error.reason };
    return { ok: true, release: () => { lease.value.release(); this.wake(st); } };
  }

  /** A retry may start: a `retry` lease (maxRetries and the retry budget), released when that try ends. */
  admitRetry(key: string): Admission {
    const st = this.ports.get(key);
    if (!st) return { ok: false, reason: 'no state for this Service port' };
    const lease = st.breaker.tryAcquire('retry');
    if (!lease.ok) return { ok: false, reason: lease.error.reason };
    this.retries.set(key, (this.retries.get(key) ?? 0) + 1);
    return { ok: true, release: () => lease.value.release() };
  }

  private async connectionLease(st: PortState): Promise<Admission> {
    const lease = st.breaker.tryAcquire('connection');
    if (lease.ok) return { ok: true, release: () => { lease.value.release(); this.wake(st); } };
    return this.pendingLease(st);
  }

  /** No connection lease free: waits as a pending request (within maxPendingRequests) for one. */
  private async pendingLease(st: PortState): Promise<Admission> {
    const pending = st.breaker.tryAcquire('pending');
    if (!pending.ok) return { ok: false, reason: pending.error.reason };
    // Waits (FIFO) until a connection lease is released; bounded by the request's own timeouts.
    await new Promise<void>((resolve) => st.waiting.push(resolve));
    pending.value.release();
    return this.connectionLease(st);
  }

  private wake(st: PortState): void {
    st.waiting.shift()?.();
  }

  /** What `weft status` and the admin API show of each Service port this proxy has sent to. */
  summary(): unknown[] {
    const now = this.now();
    return [...this.ports].map(([key, st]) => ({
      servicePort: key,
      trafficPolicy: st.policy.source ?? 'defaults',
      ...(st.policy.ignored.length > 0 ? { ignoredTrafficPolicies: st.policy.ignored } : {}),
      loadBalancer: st.policy.loadBalancer,
      ejections: this.ejections.get(key) ?? 0,
      ejectedNow: st.outlier.ejectedCount(now),
      inUse: { connection: st.breaker.inUse('connection'), pending: st.breaker.inUse('pending'), request: st.breaker.inUse('request'), retry: st.breaker.inUse('retry') },
      overflows: st.breaker.overflows,
    }));
  }

  /** The counters of each Service port this proxy has sent to (those of Services that are gone are dropped). */
  stats(): ServicePortStats[] {
    const now = this.now();
    const out: ServicePortStats[] = [];
    for (const [key, st] of this.ports) {
      const { namespace, name, port } = parsePortKey(key);
      out.push({ service: { namespace, name }, port, retries: this.retries.get(key) ?? 0, ejections: this.ejections.get(key) ?? 0,
        ejectedNow: st.outlier.ejectedCount(now), overflows: st.breaker.overflows });
    }
    return out;
  }

  maxRequestsPerConnection(backend: { service: ServiceInfo; port: ServicePort }): number {
    return this.policy(backend.service, backend.port.port).connectionPool.maxRequestsPerConnection;
  }

  private state(key: string, service: { namespace: string; name: string }, port: number): PortState {
    let st = this.ports.get(key);
    if (st && st.store === this.store) return st;
    const policy = trafficPolicyFor(this.store?.snapshot.trafficPolicies ?? [], service, port);
    if (!st) {
      const outlier = new OutlierDetector(policy.outlierDetection);
      const fresh: PortState = {
        policy, store: this.store, balancerKind: policy.loadBalancer, balancer: undefined as unknown as Balancer,
        outlier, waiting: [],
        breaker: new CircuitBreaker(`Service ${service.namespace}/${service.name} port ${port}`, breakerLimits(policy), budgetOf(policy), policy.source),
      };
      fresh.balancer = this.makeBalancer(() => fresh.policy, outlier);
      this.ports.set(key, fresh);
      return fresh;
    }
    st.policy = policy;
    st.store = this.store;
    st.outlier.update(policy.outlierDetection);
    if (st.balancerKind !== policy.loadBalancer) { const cur = st; st.balancer = this.makeBalancer(() => cur.policy, st.outlier); st.balancerKind = policy.loadBalancer; }
    st.breaker.update(breakerLimits(policy), budgetOf(policy), policy.source);
    while (st.waiting.length > 0 && st.breaker.inUse('connection') < st.breaker.limit('connection')) this.wake(st);
    return st;
  }

  private makeBalancer(policy: () => ResolvedTrafficPolicy, outlier: OutlierDetector): Balancer {
    return createBalancer(policy().loadBalancer, {
      ...outlier.balancerOptions(this.now),
      // Read at each pick, so a TrafficPolicy edit takes effect without a new balancer.
      get minHealthPercent() { return policy().outlierDetection.minHealthPercent; },
    });
  }
}


/** `namespace/name:port` (servicePortKey) back to its parts. */
function parsePortKey(key: string): { namespace: string; name: string; port: number } {
  const colon = key.lastIndexOf(':');
  const slash = key.indexOf('/');
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1, colon), port: Number(key.slice(colon + 1)) };
}

function budgetOf(policy: ResolvedTrafficPolicy): RetryBudget {
  return new RetryBudget(policy.retries.budget.percent, policy.retries.budget.minRetryConcurrency);
}
