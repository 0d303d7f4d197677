import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LATENCY_BUCKETS, LATENCY_FIRST_MS, LATENCY_RATIO, latencyBucket, latencyUpperMs, quantileMs, RollingWindow } from '../../agent/telemetry/live-window';

describe('live view window: latency buckets', () => {
  it('a duration falls into the bucket whose upper bound is the first at or above it', () => {
    for (const ms of [0.001, 0.05, 0.06, 0.3, 1, 4.2, 99.9, 100, 1234, 40_000]) {
      const i = latencyBucket(ms);
      assert.ok(ms <= latencyUpperMs(i), `${ms} ms ≤ upper bound of bucket ${i} (${latencyUpperMs(i)})`);
      if (i > 0) assert.ok(ms > latencyUpperMs(i - 1), `${ms} ms > upper bound of bucket ${i - 1} (${latencyUpperMs(i - 1)})`);
    }
    assert.equal(latencyBucket(0), 0);
    assert.equal(latencyBucket(-1), 0, 'a negative duration (clock step) lands in the first bucket, not out of range');
    assert.equal(latencyBucket(Number.NaN), 0);
    assert.equal(latencyBucket(10 * 3_600_000), LATENCY_BUCKETS - 1, 'ten hours: the last bucket');
    assert.equal(latencyUpperMs(LATENCY_BUCKETS - 1), Infinity);
    assert.ok(latencyUpperMs(LATENCY_BUCKETS - 2) > 50_000, 'finite buckets reach past 50 s');
    assert.equal(latencyUpperMs(0), LATENCY_FIRST_MS);
  });

  it('p99 is never below the true value and at most one bucket ratio above it', () => {
    // 1,000 durations 1..1000 ms: the true p99 is 990 ms.
    const hist = new Uint32Array(LATENCY_BUCKETS);
    for (let ms = 1; ms <= 1000; ms++) hist[latencyBucket(ms)]!++;
    const p99 = quantileMs(hist, 0.99, 1000)!;
    assert.ok(p99 >= 990 && p99 <= 990 * LATENCY_RATIO, `p99 ${p99}`);
    assert.equal(quantileMs(hist, 1, 1000), 1000, 'the maximum is clamped to the slowest seen');
    const p50 = quantileMs(hist, 0.5, 1000)!;
    assert.ok(p50 >= 500 && p50 <= 500 * LATENCY_RATIO, `p50 ${p50}`);
  });

  it('one slow request among 99 fast ones is not the p99; two are', () => {
    const hist = new Uint32Array(LATENCY_BUCKETS);
    for (let i = 0; i < 99; i++) hist[latencyBucket(2)]!++;
    hist[latencyBucket(800)]!++;
    assert.ok(quantileMs(hist, 0.99, 800)! < 3, 'rank 99 of 100 is a fast one');
    hist[latencyBucket(2)]!--;
    hist[latencyBucket(800)]!++;
    assert.equal(quantileMs(hist, 0.99, 800), 800);
  });

  it('an empty histogram has no quantile', () => {
    assert.equal(quantileMs(new Uint32Array(LATENCY_BUCKETS), 0.99, 0), undefined);
  });
});

describe('live view window: rolling slots', () => {
  it('sums the slots inside the window and forgets those that slid out', () => {
    const w = new RollingWindow({ slotMs: 1000, slots: 3 });
    w.slot(10_000).requests += 5;
    w.observe(10_000, 40);
    w.slot(11_500).requests += 2;
    w.observe(11_500, 3);
    w.slot(12_999).connectionsOpened += 1;
    let s = w.sums(12_999);
    assert.equal(s.requests, 7);
    assert.equal(s.connectionsOpened, 1);
    assert.equal(s.p99Ms, 40, 'the slowest of two, clamped to what was seen');
    s = w.sums(13_000); // slot 10 slid out
    assert.equal(s.requests, 2);
    assert.equal(s.p99Ms, 3);
    assert.equal(w.sums(16_000).requests, 0, 'three slots later nothing is left');
    assert.equal(w.sums(16_000).p99Ms, undefined);
    assert.equal(w.active(16_000), false);
  });

  it('a ring entry reused for a newer slot starts empty, histogram included', () => {
    const w = new RollingWindow({ slotMs: 1000, slots: 2 });
    w.slot(0).requests = 9;
    w.observe(0, 5000);
    // slot 2 shares ring entry 0 with slot 0
    w.slot(2000).requests += 1;
    w.observe(2000, 1);
    const s = w.sums(2000);
    assert.equal(s.requests, 1);
    assert.equal(s.p99Ms, 1);
  });

  it('slots from the future (a clock stepped back) are not summed', () => {
    const w = new RollingWindow({ slotMs: 1000, slots: 5 });
    w.slot(9000).requests += 4;
    assert.equal(w.sums(7000).requests, 0);
  });

  it('refuses a shape it cannot hold, naming the field', () => {
    assert.throws(() => new RollingWindow({ slotMs: 1000, slots: 0 }), /slots must be a positive whole number \(got 0\)/);
    assert.throws(() => new RollingWindow({ slotMs: 0, slots: 3 }), /slotMs must be positive \(got 0\)/);
  });
});
