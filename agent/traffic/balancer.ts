import type { Random } from './prng';
import type { LoadBalancerKind } from './traffic-policy';
import { usable } from './weighted';

/**
 * Picking an endpoint of a Service port. Endpoints are named by a string key the caller chooses
 * (`ip:port`); the list passed to `pick` is the port's endpoints as they are now, so a balancer
 * holds only what it needs across picks (in-flight counts, the round-robin position) and never a
 * stale endpoint list. Ejected endpoints are skipped; randomness is passed in, so tests are exact.
 */
export interface Balancer {
  /** An endpoint of `endpoints` (skipping ejected ones), or undefined when none can take the request. */
  pick(endpoints: readonly string[], random: Random): string | undefined;
  /** A request (HTTP) or connection (TCP) to `key` began; least-request counts these. */
  started(key: string): void;
  /** ...and ended (each `started` gets exactly one `finished`). */
  finished(key: string): void;
}

export interface BalancerOptions {
  /** True while the outlier detector has `key` ejected; `OutlierDetector.balancerOptions(clock)` gives this and the two below. */
  ejected?: (key: string) => boolean;
  /** False when no endpoint can be ejected now: `pick` then skips the scan of the list (O(1) instead of O(n)). */
  anyEjected?: () => boolean;
  /**
   * Istio's `outlierDetection.minHealthPercent` (Envoy's panic threshold): when fewer than this
   * percentage of the endpoints are in service, ejections are ignored and every endpoint is used.
   * 0 (Istio's default): never; with every endpoint ejected, no endpoint is picked.
   */
  minHealthPercent?: number;
  /** Weight of an endpoint (default 1). Backend weights of an HTTPRoute are applied before, with pickWeighted. */
  weight?: (key: string) => number;
}

/** The endpoints that may take traffic: the ejected ones left out, unless too few remain (panic: all). */
export function inService(endpoints: readonly string[], options: BalancerOptions): readonly string[] {
  const ejected = options.ejected;
  if (ejected === undefined || options.anyEjected?.() === false || !endpoints.some(ejected)) return endpoints;
  const healthy = endpoints.filter((key) => !ejected(key));
  const min = options.minHealthPercent ?? 0;
  if (min > 0 && healthy.length * 100 < min * endpoints.length) return endpoints;
  return healthy;
}

/**
 * Least request (Istio's default, Envoy's LEAST_REQUEST with choice_count 2): two different
 * endpoints drawn at random, the one with fewer requests in flight wins, the first drawn on a tie.
 * With weights, Envoy's weighted rule instead: each endpoint's effective weight is weight / (in
 * flight + 1) (active_request_bias 1), and one endpoint is drawn in proportion to it (Envoy runs an
 * EDF schedule over the same effective weights), so an idle pool spreads exactly by weight and a
 * loaded endpoint gets less.
 */
export class LeastRequestBalancer implements Balancer {
  private readonly active = new Map<string, number>();

  constructor(private readonly options: BalancerOptions = {}) {}

  pick(endpoints: readonly string[], random: Random): string | undefined {
    const candidates = inService(endpoints, this.options);
    const n = candidates.length;
    if (n <= 1) return candidates[0];
    const weight = this.options.weight;
    if (weight === undefined) {
      const i = Math.floor(random() * n);
      let j = Math.floor(random() * (n - 1));
      if (j >= i) j++;
      const a = candidates[i]!;
      const b = candidates[j]!;
      return this.inFlight(b) < this.inFlight(a) ? b : a;
    }
    return drawWeighted(candidates, (key) => usable(weight(key)) / (this.inFlight(key) + 1), random);
  }

  started(key: string): void {
    this.active.set(key, this.inFlight(key) + 1);
  }

  finished(key: string): void {
    const n = this.inFlight(key) - 1;
    if (n > 0) this.active.set(key, n);
    else this.active.delete(key);
  }

  /** Requests in flight to `key`. */
  inFlight(key: string): number {
    return this.active.get(key) ?? 0;
  }
}

/**
 * Round robin: each endpoint in turn. Unweighted, a position that advances by one per pick; with
 * weights, nginx's smooth weighted round robin (each endpoint's share exact over a cycle, spread
 * out rather than in bursts). The position survives endpoint changes; a new list simply continues
 * from it. Randomness is not used.
 */
export class RoundRobinBalancer implements Balancer {
  private next = 0;
  private readonly current = new Map<string, number>();

  constructor(private readonly options: BalancerOptions = {}) {}

  pick(endpoints: readonly string[], _random: Random): string | undefined {
    const candidates = inService(endpoints, this.options);
    const n = candidates.length;
    if (n === 0) return undefined;
    const weight = this.options.weight;
    if (weight === undefined) {
      const key = candidates[this.next % n]!;
      this.next = (this.next + 1) % n;
      return key;
    }
    let total = 0;
    let best: string | undefined;
    let bestCurrent = -Infinity;
    for (const key of candidates) {
      const w = usable(weight(key));
      if (w === 0) continue;
      total += w;
      const c = (this.current.get(key) ?? 0) + w;
      this.current.set(key, c);
      if (c > bestCurrent) [best, bestCurrent] = [key, c];
    }
    if (best === undefined) return undefined;
    this.current.set(best, bestCurrent - total);
    if (this.current.size > 2 * n) this.forgetGone(candidates);
    return best;
  }

  started(): void {}
  finished(): void {}

  private forgetGone(candidates: readonly string[]): void {
    const keep = new Set(candidates);
    for (const key of this.current.keys()) if (!keep.has(key)) this.current.delete(key);
  }
}

/** Istio's RANDOM: any endpoint in service, uniformly (or by weight). */
export class RandomBalancer implements Balancer {
  constructor(private readonly options: BalancerOptions = {}) {}

  pick(endpoints: readonly string[], random: Random): string | undefined {
    const candidates = inService(endpoints, this.options);
    const weight = this.options.weight;
    if (weight === undefined) return candidates.length === 0 ? undefined : candidates[Math.floor(random() * candidates.length)];
    return drawWeighted(candidates, weight, random);
  }

  started(): void {}
  finished(): void {}
}

export function createBalancer(kind: LoadBalancerKind, options: BalancerOptions = {}): Balancer {
  switch (kind) {
    case 'LEAST_REQUEST': return new LeastRequestBalancer(options);
    case 'ROUND_ROBIN': return new RoundRobinBalancer(options);
    case 'RANDOM': return new RandomBalancer(options);
  }
}

/** One key drawn in proportion to its weight. */
function drawWeighted(keys: readonly string[], weight: (key: string) => number, random: Random): string | undefined {
  let total = 0;
  for (const key of keys) total += usable(weight(key));
  if (total <= 0) return undefined;
  let point = random() * total;
  let last: string | undefined;
  for (const key of keys) {
    const w = usable(weight(key));
    if (w === 0) continue;
    if (point < w) return key;
    point -= w;
    last = key;
  }
  return last;
}
