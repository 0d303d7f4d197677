import type { Random } from './prng';
import type { RetryCondition, RetryOn } from './traffic-policy';

/**
 * Retry decisions, Envoy's (source/common/router/retry_state_impl.cc), pure:
 *
 * | outcome of a try                 | retried by                                                  |
 * | -------------------------------- | ----------------------------------------------------------- |
 * | any 5xx status                   | 5xx                                                         |
 * | 502, 503, 504                    | 5xx, gateway-error                                          |
 * | 409                              | retriable-4xx                                               |
 * | a status in `codes`              | retriable-status-codes                                      |
 * | connect failure                  | connect-failure, reset, 5xx, gateway-error                  |
 * | reset, per-try timeout           | reset, 5xx, gateway-error                                   |
 * | HTTP/2 REFUSED_STREAM            | refused-stream, reset, 5xx, gateway-error                   |
 * | grpc-status 1, 4, 8, 13, 14      | cancelled, deadline-exceeded, resource-exhausted, internal, unavailable |
 *
 * The whole-request timeout is never retried (the caller stops), nor a local overflow (503 UO).
 */

export interface TryOutcome {
  status?: number;
  /** `grpc-status` of a gRPC answer (headers or trailers). */
  grpcStatus?: number;
  error?: 'connect-failure' | 'reset' | 'timeout' | 'refused-stream';
}

const GRPC_CONDITIONS: Partial<Record<number, RetryCondition>> = {
  1: 'cancelled', 4: 'deadline-exceeded', 8: 'resource-exhausted', 13: 'internal', 14: 'unavailable',
};

/** Whether this outcome is one `retryOn` retries. */
export function retriable(retryOn: RetryOn, outcome: TryOutcome): boolean {
  const on = (condition: RetryCondition): boolean => retryOn.conditions.includes(condition);
  if (outcome.error !== undefined) {
    if (on('reset') || on('5xx') || on('gateway-error')) return true;
    if (outcome.error === 'connect-failure') return on('connect-failure');
    if (outcome.error === 'refused-stream') return on('refused-stream');
    return false;
  }
  if (outcome.grpcStatus !== undefined) {
    const condition = GRPC_CONDITIONS[outcome.grpcStatus];
    if (condition !== undefined && on(condition)) return true;
  }
  const status = outcome.status;
  if (status === undefined) return false;
  if (status >= 500 && status <= 599 && on('5xx')) return true;
  if ((status === 502 || status === 503 || status === 504) && on('gateway-error')) return true;
  if (status === 409 && on('retriable-4xx')) return true;
  return on('retriable-status-codes') && retryOn.codes.includes(status);
}

/**
 * Whether to try again after try number `attempt` (1 for the first try) ended with `outcome`.
 * `attempts` counts retries, as Istio and the Gateway API do: 2 allows three tries in all.
 */
export function shouldRetry(policy: { attempts: number; retryOn: RetryOn }, outcome: TryOutcome, attempt: number): boolean {
  return attempt <= policy.attempts && retriable(policy.retryOn, outcome);
}

/**
 * The wait before retry number `retry` (1 for the first retry): Envoy's fully jittered exponential
 * backoff, uniform in [0, min(base × 2^(retry-1), max)), max 10 × base unless given. Base 25 ms by
 * default (Envoy); an HTTPRoute's `retry.backoff` gives the base.
 */
export function backoffMs(retry: number, baseMs: number, maxMs: number = 10 * baseMs, random: Random = Math.random): number {
  const exponent = Math.min(Math.max(retry, 1) - 1, 30);
  const ceiling = Math.min(baseMs * 2 ** exponent, maxMs);
  return Math.floor(random() * ceiling);
}

/**
 * Envoy's retry budget (circuit_breakers.thresholds.retry_budget): retries may be in flight while
 * they are fewer than max(minRetryConcurrency, percent × (active + pending requests)). The limit
 * follows the load, so a failing backend cannot multiply it: with every request failing, at most
 * percent more tries are in flight than requests. CircuitBreaker applies it to its `retry` leases.
 */
export class RetryBudget {
  constructor(
    readonly percent: number,
    readonly minRetryConcurrency: number,
  ) {}

  /** How many retries may be in flight beside `activeRequests` requests in flight and `pendingRequests` waiting. */
  limit(activeRequests: number, pendingRequests = 0): number {
    return Math.max(this.minRetryConcurrency, Math.floor((this.percent / 100) * (activeRequests + pendingRequests)));
  }
}
