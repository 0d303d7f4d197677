import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  backoffMs, breakerLimits, CircuitBreaker, resolveSettings, retriable, RetryBudget, seededRandom, shouldRetry,
  type Lease, type RetryOn, type TryOutcome,
} from '../../agent/traffic';

const LIMITS = { maxConnections: 2, maxPendingRequests: 1, maxRequests: 3, maxRetries: 1000 };

function take(b: CircuitBreaker, kind: 'connection' | 'pending' | 'request' | 'retry', n: number): Lease[] {
  const leases: Lease[] = [];
  for (let i = 0; i < n; i++) {
    const r = b.tryAcquire(kind);
    assert.ok(r.ok, `lease ${i + 1} of ${n} (${kind})`);
    leases.push(r.value);
  }
  return leases;
}

describe('circuit breaker', () => {
  it('answers overflow at once past each limit (flag UO, the field and the policy named); a release makes room', () => {
    const b = new CircuitBreaker('Service shop/reviews port 80', LIMITS, undefined, 'shop/limits');
    const requests = take(b, 'request', 3);
    const over = b.tryAcquire('request');
    assert.ok(!over.ok);
    assert.deepEqual({ ...over.error, reason: undefined }, { kind: 'request', flag: 'UO', limit: 3, active: 3, reason: undefined });
    assert.equal(over.error.reason, 'Service shop/reviews port 80: 3 requests in flight, the limit of connectionPool.http.http2MaxRequests (TrafficPolicy shop/limits); raise it, or add endpoints if they are saturated');
    requests[0]!.release();
    requests[0]!.release();
    assert.equal(b.inUse('request'), 2, 'a second release of one lease changes nothing');
    assert.ok(b.tryAcquire('request').ok);
    assert.ok(!b.tryAcquire('request').ok);
    take(b, 'connection', 2);
    const cx = b.tryAcquire('connection');
    assert.ok(!cx.ok && /connectionPool.tcp.maxConnections/.test(cx.error.reason));
    take(b, 'pending', 1);
    const pending = b.tryAcquire('pending');
    assert.ok(!pending.ok && /1 requests waiting for a connection, the limit of connectionPool.http.http1MaxPendingRequests/.test(pending.error.reason));
    assert.deepEqual(b.overflows, { connection: 1, pending: 1, request: 2, retry: 0 });
  });

  it('limits from a resolved policy; the defaults never overflow in practice (2^32-1)', () => {
    const open = new CircuitBreaker('x', breakerLimits(resolveSettings({})));
    take(open, 'request', 5000);
    const tight = breakerLimits(resolveSettings({ connectionPool: { tcp: { maxConnections: 1 }, http: { http2MaxRequests: 2 } } }));
    assert.deepEqual(tight, { maxConnections: 1, maxPendingRequests: 2 ** 32 - 1, maxRequests: 2, maxRetries: 2 ** 32 - 1 });
  });

  it('update keeps the leases held: lowering a limit refuses new ones until enough are released', () => {
    const b = new CircuitBreaker('x', LIMITS);
    const held = take(b, 'request', 3);
    b.update({ ...LIMITS, maxRequests: 1 });
    assert.ok(!b.tryAcquire('request').ok);
    held[0]!.release();
    held[1]!.release();
    assert.ok(!b.tryAcquire('request').ok, 'still one in flight, the new limit');
    held[2]!.release();
    assert.ok(b.tryAcquire('request').ok);
  });
});

describe('retry budget', () => {
  it('caps a storm: with 100 requests in flight all failing, 20 retries run at once, the rest are refused', () => {
    const b = new CircuitBreaker('Service shop/reviews port 80', { ...LIMITS, maxRequests: 1000 }, new RetryBudget(20, 3));
    take(b, 'request', 100);
    const outcomes = Array.from({ length: 100 }, () => b.tryAcquire('retry'));
    const granted = outcomes.filter((r) => r.ok) as { ok: true; value: Lease }[];
    assert.equal(granted.length, 20);
    const refused = outcomes.find((r) => !r.ok);
    assert.ok(refused !== undefined && !refused.ok);
    assert.match(refused.error.reason, /20 retries in flight, the retry budget's limit \(20% of 100 requests in flight and 0 waiting, at least 3; retries.retryBudget, the default\)/);
    // As retries end, others may start; never more than 20 at once.
    for (const g of granted.slice(0, 5)) g.value.release();
    assert.equal(Array.from({ length: 10 }, () => b.tryAcquire('retry')).filter((r) => r.ok).length, 5);
  });

  it('keeps a floor of minRetryConcurrency when few requests are in flight; maxRetries still caps it', () => {
    const b = new CircuitBreaker('x', LIMITS, new RetryBudget(20, 3));
    take(b, 'request', 2);
    assert.equal(Array.from({ length: 10 }, () => b.tryAcquire('retry')).filter((r) => r.ok).length, 3);
    const capped = new CircuitBreaker('x', { ...LIMITS, maxRequests: 1000, maxRetries: 5 }, new RetryBudget(20, 3));
    take(capped, 'request', 100);
    assert.equal(Array.from({ length: 30 }, () => capped.tryAcquire('retry')).filter((r) => r.ok).length, 5);
    assert.equal(new RetryBudget(20, 3).limit(100, 50), 30, 'waiting requests count as Envoy counts them');
  });
});

describe('retry decisions', () => {
  const on = (...conditions: RetryOn['conditions']): RetryOn => ({ conditions, codes: [] });
  const table: [retryOn: RetryOn, outcome: TryOutcome, retried: boolean][] = [
    [on('5xx'), { status: 500 }, true],
    [on('5xx'), { status: 404 }, false],
    [on('5xx'), { error: 'connect-failure' }, true],
    [on('5xx'), { error: 'timeout' }, true],
    [on('gateway-error'), { status: 503 }, true],
    [on('gateway-error'), { status: 500 }, false],
    [on('gateway-error'), { error: 'reset' }, true],
    [on('connect-failure'), { error: 'connect-failure' }, true],
    [on('connect-failure'), { error: 'reset' }, false],
    [on('connect-failure'), { status: 503 }, false],
    [on('reset'), { error: 'timeout' }, true],
    [on('reset'), { status: 503 }, false],
    [on('refused-stream'), { error: 'refused-stream' }, true],
    [on('refused-stream'), { error: 'reset' }, false],
    [on('retriable-4xx'), { status: 409 }, true],
    [on('retriable-4xx'), { status: 429 }, false],
    [{ conditions: ['retriable-status-codes'], codes: [429] }, { status: 429 }, true],
    [{ conditions: ['retriable-status-codes'], codes: [429] }, { status: 503 }, false],
    [on('unavailable'), { status: 200, grpcStatus: 14 }, true],
    [on('unavailable'), { status: 200, grpcStatus: 13 }, false],
    [on('cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted'), { status: 200, grpcStatus: 8 }, true],
    [on('5xx'), { status: 200 }, false],
  ];
  for (const [retryOn, outcome, retried] of table) {
    it(`${retryOn.conditions.join(',')}${retryOn.codes.length ? `:${retryOn.codes}` : ''} ${retried ? 'retries' : 'does not retry'} ${JSON.stringify(outcome)}`, () => {
      assert.equal(retriable(retryOn, outcome), retried);
    });
  }

  it('attempts counts retries: 2 allows a second and a third try, not a fourth', () => {
    const policy = { attempts: 2, retryOn: on('5xx') };
    assert.deepEqual([1, 2, 3].map((attempt) => shouldRetry(policy, { status: 503 }, attempt)), [true, true, false]);
    assert.equal(shouldRetry({ attempts: 0, retryOn: on('5xx') }, { status: 503 }, 1), false);
  });

  it('Istio\'s default policy retries connect failures and 503, not 500', () => {
    const { retries } = resolveSettings({});
    assert.equal(shouldRetry(retries, { error: 'connect-failure' }, 1), true);
    assert.equal(shouldRetry(retries, { status: 503 }, 1), true);
    assert.equal(shouldRetry(retries, { status: 500 }, 1), false);
    assert.equal(shouldRetry(retries, { error: 'timeout' }, 1), false);
  });

  it('backoff: full jitter under base × 2^(n-1), capped at 10 × base', () => {
    assert.equal(backoffMs(1, 25, undefined, () => 0), 0);
    assert.deepEqual([1, 2, 3, 4, 5, 6, 30, 1000].map((n) => backoffMs(n, 25, undefined, () => 0.999999)), [24, 49, 99, 199, 249, 249, 249, 249]);
    assert.equal(backoffMs(3, 100, 150, () => 0.5), 75, 'an explicit cap');
    const random = seededRandom(9);
    const waits = Array.from({ length: 2000 }, () => backoffMs(2, 25, undefined, random));
    assert.ok(waits.every((w) => w >= 0 && w < 50));
    const mean = waits.reduce((a, b) => a + b, 0) / waits.length;
    assert.ok(Math.abs(mean - 24.5) < 1.5, `uniform over [0, 50): mean ${mean}`);
  });
});
