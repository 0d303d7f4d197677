import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  createBalancer, LeastRequestBalancer, pickWeighted, RandomBalancer, RoundRobinBalancer, seededRandom, type Balancer,
} from '../../agent/traffic';

const EPS = ['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80'] as const;

function counts(keys: (string | undefined)[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of keys) out[String(k)] = (out[String(k)] ?? 0) + 1;
  return out;
}

/** `n` picks with `inFlight` requests open at a time (the oldest finishes before each new one). */
function run(b: Balancer, endpoints: readonly string[], n: number, inFlight: number, seed: number): Record<string, number> {
  const random = seededRandom(seed);
  const open: string[] = [];
  const picked: string[] = [];
  for (let i = 0; i < n; i++) {
    if (open.length >= inFlight) b.finished(open.shift()!);
    const key = b.pick(endpoints, random);
    assert.ok(key !== undefined);
    b.started(key);
    open.push(key);
    picked.push(key);
  }
  return counts(picked);
}

function within(actual: number, expected: number, tolerance: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual}, expected ${expected} ± ${tolerance}`);
}

describe('least request (power of two choices)', () => {
  it('spreads 3,000 picks over 3 idle endpoints within 3% each', () => {
    const c = run(new LeastRequestBalancer(), EPS, 3000, 1, 1);
    for (const ep of EPS) within(c[ep] ?? 0, 1000, 90, ep);
  });

  it('under load (30 requests in flight) spreads 3,000 picks within 1% each: p2c evens out in-flight counts', () => {
    const c = run(new LeastRequestBalancer(), EPS, 3000, 30, 2);
    for (const ep of EPS) within(c[ep] ?? 0, 1000, 30, ep);
  });

  it('never picks the busiest endpoint while two others are idle, and prefers the less loaded of two', () => {
    const b = new LeastRequestBalancer();
    const [busy, some, idle] = EPS;
    for (let i = 0; i < 5; i++) b.started(busy);
    for (let i = 0; i < 3; i++) b.started(some);
    const random = seededRandom(3);
    const c = counts(Array.from({ length: 3000 }, () => b.pick(EPS, random)));
    assert.equal(c[busy], undefined, 'the busiest loses every pair it is drawn into');
    // idle wins every pair it is in (2 of 3 pairs), some wins the pair {busy, some}.
    within(c[idle] ?? 0, 2000, 90, 'idle');
    within(c[some] ?? 0, 1000, 90, 'some');
    assert.equal(b.inFlight(busy), 5);
    for (let i = 0; i < 5; i++) b.finished(busy);
    b.finished(busy);
    assert.equal(b.inFlight(busy), 0, 'an extra finished does not go below zero');
  });

  it('weighted: idle endpoints share by weight (3:1 within 3%)', () => {
    const weights: Record<string, number> = { a: 3, b: 1 };
    const c = run(new LeastRequestBalancer({ weight: (k) => weights[k]! }), ['a', 'b'], 4000, 1, 4);
    within(c.a ?? 0, 3000, 120, 'a');
  });

  it('weighted: a loaded endpoint gets less (effective weight / (in flight + 1): 3 in flight of equal weights takes 20%)', () => {
    const b = new LeastRequestBalancer({ weight: () => 1 });
    for (let i = 0; i < 3; i++) b.started('a');
    const random = seededRandom(6);
    const c = counts(Array.from({ length: 2000 }, () => b.pick(['a', 'b'], random)));
    within(c.a ?? 0, 400, 60, 'a');
  });

  it('one endpoint, or none', () => {
    const b = new LeastRequestBalancer();
    assert.equal(b.pick(['only'], seededRandom(1)), 'only');
    assert.equal(b.pick([], seededRandom(1)), undefined);
  });
});

describe('round robin', () => {
  it('is exact: each endpoint in turn, and the turn goes on when the list changes', () => {
    const b = new RoundRobinBalancer();
    const random = seededRandom(1);
    assert.deepEqual(Array.from({ length: 7 }, () => b.pick(EPS, random)), [EPS[0], EPS[1], EPS[2], EPS[0], EPS[1], EPS[2], EPS[0]]);
    assert.deepEqual(Array.from({ length: 4 }, () => b.pick(['x', 'y'], random)), ['y', 'x', 'y', 'x']);
    assert.equal(b.pick([], random), undefined);
  });

  it('weighted (smooth): 5:1:1 is exact per cycle of 7 and spread out, not in a burst', () => {
    const weights: Record<string, number> = { a: 5, b: 1, c: 1 };
    const b = new RoundRobinBalancer({ weight: (k) => weights[k]! });
    const random = seededRandom(1);
    const first = Array.from({ length: 7 }, () => b.pick(['a', 'b', 'c'], random));
    assert.deepEqual(first, ['a', 'a', 'b', 'a', 'c', 'a', 'a']);
    const c = counts(Array.from({ length: 700 }, () => b.pick(['a', 'b', 'c'], random)));
    assert.deepEqual(c, { a: 500, b: 100, c: 100 });
  });
});

describe('ejected endpoints', () => {
  const ejected = new Set<string>([EPS[1]]);
  for (const kind of ['LEAST_REQUEST', 'ROUND_ROBIN', 'RANDOM'] as const) {
    it(`${kind} never picks an ejected endpoint`, () => {
      const b = createBalancer(kind, { ejected: (k) => ejected.has(k) });
      const random = seededRandom(5);
      const c = counts(Array.from({ length: 600 }, () => b.pick(EPS, random)));
      assert.equal(c[EPS[1]], undefined);
      assert.ok((c[EPS[0]] ?? 0) > 200 && (c[EPS[2]] ?? 0) > 200, JSON.stringify(c));
    });
  }

  it('all ejected: no endpoint (Istio\'s minHealthPercent 0); below minHealthPercent: every endpoint (panic)', () => {
    const all = (): boolean => true;
    assert.equal(new LeastRequestBalancer({ ejected: all }).pick(EPS, seededRandom(1)), undefined);
    assert.equal(new RoundRobinBalancer({ ejected: all }).pick(EPS, seededRandom(1)), undefined);
    // 1 of 3 in service is 33% < 50%: ejections are ignored.
    const two = (k: string): boolean => k !== EPS[2];
    const panic = new RandomBalancer({ ejected: two, minHealthPercent: 50 });
    const c = counts(Array.from({ length: 300 }, () => panic.pick(EPS, seededRandom(7))));
    assert.equal(Object.keys(c).length, 1, 'one seed, one pick');
    const random = seededRandom(8);
    assert.equal(Object.keys(counts(Array.from({ length: 300 }, () => panic.pick(EPS, random)))).length, 3);
    // 1 of 3 is not below 30%: the ejected stay out.
    const held = new RandomBalancer({ ejected: two, minHealthPercent: 30 });
    assert.deepEqual(Object.keys(counts(Array.from({ length: 300 }, () => held.pick(EPS, random)))), [EPS[2]]);
  });
});

describe('pickWeighted (HTTPRoute backendRefs)', () => {
  it('90/10 over 2,000 picks within ±3%', () => {
    const items = [{ name: 'v1', weight: 90 }, { name: 'v2', weight: 10 }];
    const random = seededRandom(42);
    const c = counts(Array.from({ length: 2000 }, () => pickWeighted(items, random)?.name));
    within(c.v1 ?? 0, 1800, 60, 'v1');
    within(c.v2 ?? 0, 200, 60, 'v2');
  });

  it('owns exact slices of [0, 1): the boundaries fall where the weights say', () => {
    const items = [{ n: 'a', weight: 1 }, { n: 'b', weight: 0 }, { n: 'c', weight: 3 }];
    assert.equal(pickWeighted(items, () => 0)?.n, 'a');
    assert.equal(pickWeighted(items, () => 0.2499)?.n, 'a');
    assert.equal(pickWeighted(items, () => 0.25)?.n, 'c', 'a weight of 0 owns nothing');
    assert.equal(pickWeighted(items, () => 0.9999999999999999)?.n, 'c');
  });

  it('nothing with weight: undefined (weights that sum to 0); bad weights count as 0', () => {
    assert.equal(pickWeighted([{ weight: 0 }, { weight: 0 }], Math.random), undefined);
    assert.equal(pickWeighted([], Math.random), undefined);
    const items = [{ n: 'nan', weight: NaN }, { n: 'neg', weight: -5 }, { n: 'inf', weight: Infinity }, { n: 'ok', weight: 1 }];
    assert.equal(pickWeighted(items, () => 0)?.n, 'ok');
  });
});
