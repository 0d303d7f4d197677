import { err, ok, type Result } from '../core/result';
import type { RetryBudget } from './retry';
import type { ResolvedTrafficPolicy } from './traffic-policy';

/**
 * Circuit breaking for one Service port (Envoy: per cluster), as Istio's connectionPool sets it:
 * counters of connections, requests waiting for a connection, requests in flight and retries in
 * flight, each with its limit. `tryAcquire` either takes a lease, released once when the thing
 * ends, or says which limit overflowed: the proxy answers that request 503 at once with the flag
 * `UO` (Envoy's upstream overflow), never waits.
 *
 * How the proxy holds leases (Envoy's accounting): a `connection` lease per upstream connection
 * open or opening; a `pending` lease while a request waits for a connection; a `request` lease per
 * try in flight (a retry holds a new one); a `retry` lease from the decision to retry until that
 * try ends. An overflowing connection means the request waits (`pending`) if the pool can queue
 * it, as in Envoy; the other three answer 503 (a refused retry returns the previous answer).
 */

export type LimitKind = 'connection' | 'pending' | 'request' | 'retry';

export interface BreakerLimits {
  maxConnections: number;
  maxPendingRequests: number;
  maxRequests: number;
  maxRetries: number;
}

export interface Lease {
  readonly kind: LimitKind;
  /** Idempotent: a second call does nothing. */
  release(): void;
}

export interface Overflow {
  kind: LimitKind;
  /** Envoy's response flag for an upstream overflow. */
  flag: 'UO';
  limit: number;
  active: number;
  /** For the access log and the operator: which limit, where it is set, what to do. */
  reason: string;
}

const FIELD: Record<LimitKind, string> = {
  connection: 'connectionPool.tcp.maxConnections',
  pending: 'connectionPool.http.http1MaxPendingRequests',
  request: 'connectionPool.http.http2MaxRequests',
  retry: 'connectionPool.http.maxRetries',
};
const WHAT: Record<LimitKind, string> = {
  connection: 'connections open', pending: 'requests waiting for a connection', request: 'requests in flight', retry: 'retries in flight',
};

export function breakerLimits(policy: ResolvedTrafficPolicy): BreakerLimits {
  const { maxConnections, maxPendingRequests, maxRequests, maxRetries } = policy.connectionPool;
  return { maxConnections, maxPendingRequests, maxRequests, maxRetries };
}

export class CircuitBreaker {
  private readonly active: Record<LimitKind, number> = { connection: 0, pending: 0, request: 0, retry: 0 };
  /** Overflows by kind since creation: for metrics (Envoy's upstream_cx_overflow, upstream_rq_pending_overflow, ...). */
  readonly overflows: Record<LimitKind, number> = { connection: 0, pending: 0, request: 0, retry: 0 };

  /**
   * `name` says where in messages (`Service shop/reviews port 80`); `source` the TrafficPolicy
   * setting the limits (`shop/reviews-limits`), absent when they are the defaults.
   */
  constructor(
    readonly name: string,
    private limits: BreakerLimits,
    private budget?: RetryBudget,
    private source?: string,
  ) {}

  /** New limits (a policy edit); leases already held stay valid and count. */
  update(limits: BreakerLimits, budget?: RetryBudget, source?: string): void {
    this.limits = limits;
    this.budget = budget;
    this.source = source;
  }

  tryAcquire(kind: LimitKind): Result<Lease, Overflow> {
    const limit = this.limit(kind);
    const active = this.active[kind];
    if (active >= limit) {
      this.overflows[kind]++;
      return err({ kind, flag: 'UO', limit, active, reason: this.reason(kind, limit) });
    }
    this.active[kind] = active + 1;
    let held = true;
    return ok({
      kind,
      release: () => {
        if (!held) return;
        held = false;
        this.active[kind]--;
      },
    });
  }

  /** In use now. */
  inUse(kind: LimitKind): number {
    return this.active[kind];
  }

  /** The limit in force now; for retries the lower of maxRetries and the retry budget (which follows the load). */
  limit(kind: LimitKind): number {
    switch (kind) {
      case 'connection': return this.limits.maxConnections;
      case 'pending': return this.limits.maxPendingRequests;
      case 'request': return this.limits.maxRequests;
      case 'retry': {
        const budget = this.budget?.limit(this.active.request, this.active.pending) ?? Infinity;
        return Math.min(this.limits.maxRetries, budget);
      }
    }
  }

  private reason(kind: LimitKind, limit: number): string {
    const by = this.source === undefined ? 'the default' : `TrafficPolicy ${this.source}`;
    if (kind === 'retry' && this.budget !== undefined && limit < this.limits.maxRetries) {
      return `${this.name}: ${limit} retries in flight, the retry budget's limit (${this.budget.percent}% of ${this.active.request} requests in flight and ${this.active.pending} waiting, at least ${this.budget.minRetryConcurrency}; retries.retryBudget, ${by}): the backend is failing more than the budget allows retrying`;
    }
    return `${this.name}: ${limit} ${WHAT[kind]}, the limit of ${FIELD[kind]} (${by}); raise it, or add endpoints if they are saturated`;
  }
}
