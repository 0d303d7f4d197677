import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  LeastRequestBalancer, OutlierDetector, resolveSettings, resultOf, seededRandom, type OutlierEvent, type OutlierSettings,
} from '../../agent/traffic';

/** Istio's defaults with outlierDetection on, overridden by `over`. */
function settings(over: Partial<OutlierSettings> = {}): OutlierSettings {
  return { ...resolveSettings({ outlierDetection: {} }).outlierDetection, ...over };
}

function detector(over: Partial<OutlierSettings>, endpoints: string[], now = 0): { d: OutlierDetector; events: OutlierEvent[] } {
  const events: OutlierEvent[] = [];
  const d = new OutlierDetector(settings(over), (e) => events.push(e));
  d.setEndpoints(endpoints, now);
  return { d, events };
}

function fail(d: OutlierDetector, key: string, times: number, now: number, result: 'localOriginFailure' | '5xx' | 'gatewayError' = '5xx'): OutlierEvent | undefined {
  let last: OutlierEvent | undefined;
  for (let i = 0; i < times; i++) last = d.record(key, result, now) ?? last;
  return last;
}

describe('outlier detection: consecutive errors', () => {
  it('5 consecutive 5xx eject for baseEjectionTime, then the endpoint returns with its counters reset', () => {
    const { d, events } = detector({ maxEjectionPercent: 100 }, ['a', 'b']);
    assert.equal(fail(d, 'a', 4, 1000), undefined);
    assert.equal(d.isEjected('a', 1000), false);
    const e = d.record('a', '5xx', 1000);
    assert.deepEqual(e, { type: 'eject', endpoint: 'a', reason: 'consecutive5xxErrors', at: 1000, durationMs: 30_000, multiplier: 1 });
    assert.equal(d.isEjected('a', 30_999), true);
    assert.equal(d.ejectedCount(30_999), 1);
    assert.equal(d.isEjected('a', 31_000), false);
    assert.deepEqual(events.map((x) => x.type), ['eject', 'return']);
    assert.deepEqual(events[1], { type: 'return', endpoint: 'a', at: 31_000 });
    assert.equal(fail(d, 'a', 4, 31_000), undefined, 'counters start again from zero after the return');
  });

  it('a success in between resets the count; results while ejected do not count', () => {
    const { d } = detector({ maxEjectionPercent: 100 }, ['a', 'b']);
    fail(d, 'a', 4, 0);
    d.record('a', 'success', 0);
    assert.equal(fail(d, 'a', 4, 0), undefined);
    assert.equal(d.record('a', '5xx', 0)?.type, 'eject');
    assert.equal(fail(d, 'a', 20, 1), undefined, 'in-flight requests finishing while ejected change nothing');
  });

  it('consecutiveGatewayErrors counts 502/503/504 only; another 5xx resets it but counts toward consecutive5xxErrors', () => {
    const { d } = detector({ consecutiveGatewayErrors: 3, consecutive5xxErrors: 0, maxEjectionPercent: 100 }, ['a', 'b']);
    fail(d, 'a', 2, 0, 'gatewayError');
    d.record('a', '5xx', 0);
    assert.equal(fail(d, 'a', 2, 0, 'gatewayError'), undefined);
    assert.equal(d.record('a', 'gatewayError', 0)?.type, 'eject');
    const { d: d2 } = detector({ consecutiveGatewayErrors: 3, maxEjectionPercent: 100 }, ['a', 'b']);
    const e = fail(d2, 'a', 3, 0, 'gatewayError');
    assert.equal(e?.type === 'eject' && e.reason, 'consecutiveGatewayErrors', 'both thresholds met: Envoy reports the gateway one');
  });

  it('connect failures count as gateway errors, unless split: then only toward consecutiveLocalOriginFailures', () => {
    const { d } = detector({ maxEjectionPercent: 100 }, ['a', 'b']);
    const e = fail(d, 'a', 5, 0, 'localOriginFailure');
    assert.equal(e?.type === 'eject' && e.reason, 'consecutive5xxErrors');
    const { d: split } = detector({ splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 2, maxEjectionPercent: 100 }, ['a', 'b']);
    fail(split, 'a', 4, 0, '5xx');
    assert.equal(split.record('a', 'localOriginFailure', 0), undefined, 'a local failure does not add to the 5xx count');
    assert.equal(split.record('a', 'localOriginFailure', 0)?.type === 'eject', true);
  });

  it('a threshold of 0 disables it; outlierDetection absent disables everything', () => {
    const { d } = detector({ consecutive5xxErrors: 0, maxEjectionPercent: 100 }, ['a', 'b']);
    assert.equal(fail(d, 'a', 50, 0), undefined);
    const off = new OutlierDetector(resolveSettings({}).outlierDetection);
    off.setEndpoints(['a', 'b'], 0);
    assert.equal(fail(off, 'a', 50, 0), undefined);
    assert.equal(off.isEjected('a', 0), false);
  });

  it('resultOf maps an attempt to its result', () => {
    assert.equal(resultOf({ status: 200 }), 'success');
    assert.equal(resultOf({ status: 404 }), 'success');
    assert.equal(resultOf({ status: 500 }), '5xx');
    assert.equal(resultOf({ status: 503 }), 'gatewayError');
    assert.equal(resultOf({ error: 'connect-failure' }), 'localOriginFailure');
    assert.equal(resultOf({ error: 'timeout' }), 'localOriginFailure');
  });
});

describe('outlier detection: ejection time', () => {
  it('grows by baseEjectionTime with each ejection, capped at maxEjectionTime', () => {
    const { d } = detector({ baseEjectionTimeMs: 30_000, maxEjectionTimeMs: 100_000, maxEjectionPercent: 100 }, ['a', 'b']);
    let now = 0;
    const durations: number[] = [];
    for (let i = 0; i < 6; i++) {
      const e = fail(d, 'a', 5, now);
      assert.ok(e?.type === 'eject');
      durations.push(e.durationMs);
      now += e.durationMs; // returns exactly then, and fails again at once (no interval in service: no decay)
      assert.equal(d.isEjected('a', now - 1), true);
      assert.equal(d.isEjected('a', now), false);
    }
    assert.deepEqual(durations, [30_000, 60_000, 90_000, 100_000, 100_000, 100_000]);
  });

  it('the multiplier falls by one per interval spent in service (Envoy\'s decay)', () => {
    const { d } = detector({ intervalMs: 10_000, maxEjectionPercent: 100 }, ['a', 'b']);
    let now = 0;
    for (let i = 0; i < 3; i++) {
      const e = fail(d, 'a', 5, now);
      assert.ok(e?.type === 'eject');
      now += e.durationMs;
    }
    assert.equal(d.multiplier('a', now), 3);
    assert.equal(d.multiplier('a', now + 19_999), 2, 'one whole interval in service');
    assert.equal(d.multiplier('a', now + 20_000), 1);
    const e = fail(d, 'a', 5, now + 20_000);
    assert.ok(e?.type === 'eject');
    assert.equal(e.durationMs, 60_000, 'multiplier 1 + 1');
    const back = now + 20_000 + 60_000;
    assert.equal(d.multiplier('a', back - 1), 2, 'no decay while ejected');
    assert.equal(d.multiplier('a', back + 9_999), 2, 'decay counts from the return');
    assert.equal(d.multiplier('a', back + 10_000), 1);
    assert.equal(d.multiplier('a', back + 10_000_000), 0);
  });
});

describe('outlier detection: maxEjectionPercent', () => {
  it('never more than the percentage at once, counting the one to eject; another goes when one returns', () => {
    const eps = Array.from({ length: 10 }, (_, i) => `e${i}`);
    const { d, events } = detector({ maxEjectionPercent: 20 }, eps);
    assert.equal(fail(d, 'e0', 5, 0)?.type, 'eject');
    assert.equal(fail(d, 'e1', 5, 0)?.type, 'eject');
    const refused = fail(d, 'e2', 5, 0);
    assert.deepEqual(refused, { type: 'eject-refused', endpoint: 'e2', reason: 'consecutive5xxErrors', at: 0, ejected: 2, endpoints: 10 });
    assert.equal(d.isEjected('e2', 0), false);
    assert.equal(d.ejectedCount(0), 2);
    // e0 and e1 come back at 30s; e2's next failure (still past its threshold) ejects it then.
    assert.equal(d.record('e2', '5xx', 30_000)?.type, 'eject');
    assert.deepEqual(events.filter((e) => e.type === 'eject').map((e) => e.endpoint), ['e0', 'e1', 'e2']);
  });

  it('one endpoint may always be ejected while another stays in service (10% of 3); the last in service never by that rule', () => {
    const { d } = detector({}, ['a', 'b', 'c']);
    assert.equal(fail(d, 'a', 5, 0)?.type, 'eject', '1 of 3 is 33% > 10%, but none is ejected yet');
    assert.equal(fail(d, 'b', 5, 0)?.type, 'eject-refused');
    const { d: single } = detector({}, ['only']);
    assert.equal(fail(single, 'only', 5, 0)?.type, 'eject-refused');
    const { d: zero } = detector({ maxEjectionPercent: 0 }, ['a', 'b', 'c']);
    assert.equal(fail(zero, 'a', 5, 0)?.type, 'eject-refused', '0% ejects nothing');
    const { d: all } = detector({ maxEjectionPercent: 100 }, ['only']);
    assert.equal(fail(all, 'only', 5, 0)?.type, 'eject', '100% may eject the only endpoint, as Envoy does');
  });

  it('an endpoint that leaves the Service frees its place', () => {
    const { d } = detector({ maxEjectionPercent: 50 }, ['a', 'b', 'c', 'd']);
    fail(d, 'a', 5, 0);
    fail(d, 'b', 5, 0);
    assert.equal(fail(d, 'c', 5, 0)?.type, 'eject-refused');
    d.setEndpoints(['b', 'c', 'd', 'e'], 1);
    assert.equal(d.ejectedCount(1), 1);
    assert.equal(d.record('c', '5xx', 1)?.type, 'eject');
  });
});

describe('outlier detection with a balancer', () => {
  it('an ejected endpoint gets no traffic while ejected and comes back after', () => {
    let now = 0;
    const { d } = detector({ maxEjectionPercent: 50 }, ['a', 'b', 'c']);
    const b = new LeastRequestBalancer(d.balancerOptions(() => now));
    const random = seededRandom(11);
    const picks = (): Set<string | undefined> => new Set(Array.from({ length: 300 }, () => b.pick(['a', 'b', 'c'], random)));
    assert.deepEqual(picks(), new Set(['a', 'b', 'c']));
    fail(d, 'b', 5, now);
    assert.deepEqual(picks(), new Set(['a', 'c']));
    now = 29_999;
    assert.deepEqual(picks(), new Set(['a', 'c']));
    now = 30_000;
    assert.deepEqual(picks(), new Set(['a', 'b', 'c']));
  });
});
