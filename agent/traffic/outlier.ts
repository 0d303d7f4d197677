import type { BalancerOptions } from './balancer';
import type { ResolvedTrafficPolicy } from './traffic-policy';

/**
 * Outlier detection for one Service port (Envoy: per cluster), per endpoint, with Envoy's
 * consecutive-error rules (source/common/upstream/outlier_detection_impl.cc) and the clock passed
 * in as `now` (ms), so every decision is exact under test.
 *
 * - A 5xx response counts toward consecutive5xxErrors; 502, 503 and 504 also toward
 *   consecutiveGatewayErrors; any other response resets both. A connect failure, reset or timeout
 *   counts as a gateway error (Envoy maps it to 503/504), unless splitExternalLocalOriginErrors:
 *   then it counts only toward consecutiveLocalOriginFailures, which a response resets.
 * - Reaching a threshold (0 disables it) ejects the endpoint for baseEjectionTime × its ejection
 *   multiplier, capped at max(baseEjectionTime, maxEjectionTime). The multiplier grows by one per
 *   ejection (while base × multiplier < max + base) and falls by one per `interval` the endpoint
 *   spends in service, as Envoy's interval sweep does.
 * - At most maxEjectionPercent of the endpoints are ejected at once, counting the one about to be
 *   ejected (Envoy's rule). Unlike Envoy, one endpoint may always be ejected when none is and at
 *   least one other stays in service (Envoy's always_eject_one_host, limited so the last endpoint
 *   in service is never ejected by it): with Istio's default 10%, a Service with fewer than ten
 *   endpoints would otherwise never eject anything.
 * - An ejected endpoint returns when its time is up (exactly, not at the next sweep as in Envoy)
 *   with its counters reset. Failures that keep arriving past a threshold while an ejection is
 *   refused eject it as soon as the percentage allows (Envoy waits for the next threshold crossing).
 */

export type EndpointResult = 'success' | '5xx' | 'gatewayError' | 'localOriginFailure';
export type EjectionReason = 'consecutive5xxErrors' | 'consecutiveGatewayErrors' | 'consecutiveLocalOriginFailures';

export type OutlierEvent =
  | { type: 'eject'; endpoint: string; reason: EjectionReason; at: number; durationMs: number; multiplier: number }
  | { type: 'return'; endpoint: string; at: number }
  /** Reached a threshold, but ejecting would pass maxEjectionPercent: Envoy counts these too. */
  | { type: 'eject-refused'; endpoint: string; reason: EjectionReason; at: number; ejected: number; endpoints: number };

export type OutlierSettings = ResolvedTrafficPolicy['outlierDetection'];

/** What an upstream attempt means for its endpoint. */
export function resultOf(outcome: { status?: number; error?: 'connect-failure' | 'reset' | 'timeout' | 'refused-stream' }): EndpointResult {
  if (outcome.error !== undefined) return 'localOriginFailure';
  const status = outcome.status ?? 0;
  if (status === 502 || status === 503 || status === 504) return 'gatewayError';
  return status >= 500 && status <= 599 ? '5xx' : 'success';
}

interface HostState {
  consecutive5xx: number;
  consecutiveGateway: number;
  consecutiveLocalOrigin: number;
  /** Ejected until this time (ms); 0: in service. */
  ejectedUntil: number;
  multiplier: number;
  /** In service since (ms): the multiplier decays by one per interval from here. */
  decayFrom: number;
}

export class OutlierDetector {
  private readonly hosts = new Map<string, HostState>();
  private ejectedNow = 0;

  constructor(
    private settings: OutlierSettings,
    private readonly onEvent: (event: OutlierEvent) => void = () => undefined,
  ) {}

  /** New settings (a TrafficPolicy edit): ejections in force stay until their time is up. */
  update(settings: OutlierSettings): void {
    this.settings = settings;
  }

  /** The port's endpoints now: state of endpoints that left is dropped (maxEjectionPercent counts these). */
  setEndpoints(keys: readonly string[], now: number): void {
    const keep = new Set(keys);
    for (const [key, host] of this.hosts) {
      if (keep.has(key)) continue;
      if (this.expire(key, host, now)) this.ejectedNow--;
      this.hosts.delete(key);
    }
    for (const key of keys) if (!this.hosts.has(key)) this.hosts.set(key, fresh(now));
  }

  /**
   * Records one result for `key` (added if unknown). Returns what it caused: an `eject`, an
   * `eject-refused` (threshold reached, maxEjectionPercent in the way), or undefined.
   */
  record(key: string, result: EndpointResult, now: number): OutlierEvent | undefined {
    const s = this.settings;
    if (!s.enabled) return undefined;
    let host = this.hosts.get(key);
    if (host === undefined) this.hosts.set(key, (host = fresh(now)));
    if (this.expire(key, host, now)) return undefined;
    const local = result === 'localOriginFailure';
    if (local && s.splitExternalLocalOriginErrors) {
      host.consecutiveLocalOrigin++;
      return this.check(key, host, 'consecutiveLocalOriginFailures', host.consecutiveLocalOrigin, s.consecutiveLocalOriginFailures, now);
    }
    host.consecutiveLocalOrigin = 0;
    if (result === 'success') {
      host.consecutive5xx = 0;
      host.consecutiveGateway = 0;
      return undefined;
    }
    host.consecutive5xx++;
    if (result === '5xx') host.consecutiveGateway = 0;
    else host.consecutiveGateway++;
    // Envoy checks the gateway counter first: with both thresholds met, the gateway reason is reported.
    return this.check(key, host, 'consecutiveGatewayErrors', host.consecutiveGateway, s.consecutiveGatewayErrors, now)
      ?? this.check(key, host, 'consecutive5xxErrors', host.consecutive5xx, s.consecutive5xxErrors, now);
  }

  isEjected(key: string, now: number): boolean {
    const host = this.hosts.get(key);
    return host !== undefined && this.expire(key, host, now);
  }

  /**
   * What a balancer needs to skip this detector's ejected endpoints (with Istio's minHealthPercent),
   * reading time from `clock`. minHealthPercent is copied: after `update`, build the balancer's options again.
   */
  balancerOptions(clock: () => number): Pick<BalancerOptions, 'ejected' | 'anyEjected' | 'minHealthPercent'> {
    return {
      ejected: (key) => this.isEjected(key, clock()),
      // Conservative: an ejection whose time is up still counts until it is looked at.
      anyEjected: () => this.ejectedNow > 0,
      minHealthPercent: this.settings.minHealthPercent,
    };
  }

  /** Endpoints ejected at `now` (returning those whose time is up). */
  ejectedCount(now: number): number {
    for (const [key, host] of this.hosts) if (host.ejectedUntil !== 0) this.expire(key, host, now);
    return this.ejectedNow;
  }

  /** The ejection multiplier of `key` at `now` (after decay): how many base times its next ejection lasts, less one. */
  multiplier(key: string, now: number): number {
    const host = this.hosts.get(key);
    if (host === undefined) return 0;
    if (!this.expire(key, host, now)) this.decay(host, now);
    return host.multiplier;
  }

  private check(key: string, host: HostState, reason: EjectionReason, count: number, threshold: number, now: number): OutlierEvent | undefined {
    if (threshold === 0 || count < threshold) return undefined;
    const total = this.hosts.size;
    const ejected = this.ejectedCount(now);
    const max = this.settings.maxEjectionPercent;
    const withinPercent = (ejected + 1) * 100 <= max * total;
    const oneOfSeveral = max > 0 && ejected === 0 && total >= 2;
    if (!withinPercent && !oneOfSeveral) {
      const refused: OutlierEvent = { type: 'eject-refused', endpoint: key, reason, at: now, ejected, endpoints: total };
      this.onEvent(refused);
      return refused;
    }
    this.decay(host, now);
    const { baseEjectionTimeMs: base, maxEjectionTimeMs } = this.settings;
    const cap = Math.max(base, maxEjectionTimeMs);
    if (host.multiplier * base < cap + base) host.multiplier++;
    const durationMs = Math.min(base * host.multiplier, cap);
    host.ejectedUntil = now + durationMs;
    this.ejectedNow++;
    const event: OutlierEvent = { type: 'eject', endpoint: key, reason, at: now, durationMs, multiplier: host.multiplier };
    this.onEvent(event);
    return event;
  }

  /** Whether `key` is ejected at `now`; an ejection whose time is up ends here, with its event. */
  private expire(key: string, host: HostState, now: number): boolean {
    if (host.ejectedUntil === 0) return false;
    if (now < host.ejectedUntil) return true;
    const at = host.ejectedUntil;
    this.returnToService(host);
    this.onEvent({ type: 'return', endpoint: key, at });
    return false;
  }

  private returnToService(host: HostState): void {
    host.decayFrom = host.ejectedUntil;
    host.ejectedUntil = 0;
    host.consecutive5xx = 0;
    host.consecutiveGateway = 0;
    host.consecutiveLocalOrigin = 0;
    this.ejectedNow--;
  }

  private decay(host: HostState, now: number): void {
    const interval = this.settings.intervalMs;
    const steps = Math.floor((now - host.decayFrom) / interval);
    if (steps <= 0) return;
    host.multiplier = Math.max(0, host.multiplier - steps);
    host.decayFrom += steps * interval;
  }
}

function fresh(now: number): HostState {
  return { consecutive5xx: 0, consecutiveGateway: 0, consecutiveLocalOrigin: 0, ejectedUntil: 0, multiplier: 0, decayFrom: now };
}
