import assert from 'node:assert/strict';
import { test } from 'node:test';
import { correlate, overlapping, parseProbe, parseTimestamp, parseVegetaJson, percentile, summarize, type Pause, type Sample } from '../bench/fixed-rate-stats';

test('vegeta timestamps keep their nanosecond fraction to the microsecond (Date.parse alone drops it or refuses 9 digits)', () => {
  assert.equal(parseTimestamp('2026-12-06T06:36:34.088517558Z'), Date.UTC(2026, 11, 6, 6, 36, 34) + 88.517558);
  assert.equal(parseTimestamp('2026-12-06T06:36:34Z'), Date.UTC(2026, 11, 6, 6, 36, 34));
  assert.equal(parseTimestamp('2026-12-06T07:36:34.5+01:00'), Date.UTC(2026, 11, 6, 6, 36, 34) + 500);
  assert.throws(() => parseTimestamp('yesterday'), /timestamp 'yesterday' is not RFC 3339/);
});

test('vegeta JSON results: latency from ns to ms, a non-2xx/3xx code or an error is a failure, a bad line names its number and field', () => {
  const text = [
    '{"code":200,"timestamp":"2026-12-06T06:36:34.000000000Z","latency":1500000,"error":""}',
    '{"code":503,"timestamp":"2026-12-06T06:36:34.001Z","latency":2000000,"error":""}',
    '',
    '{"code":0,"timestamp":"2026-12-06T06:36:34.002Z","latency":10000000000,"error":"Get \\"http://x/\\": timeout"}',
  ].join('\n');
  const s = parseVegetaJson(text);
  assert.deepEqual(s.map((x) => [x.latencyMs, x.ok]), [[1.5, true], [2, false], [10_000, false]]);
  assert.match(s[2]!.error!, /timeout/);
  assert.throws(() => parseVegetaJson('{"code":200,"latency":1}\n'), /line 1: field timestamp missing/);
  assert.throws(() => parseVegetaJson('{"code":200,"timestamp":"2026-12-06T06:36:34Z"}\nnot json'), /line 1: field latency missing/);
  assert.throws(() => parseVegetaJson('{"code":200,"timestamp":"2026-12-06T06:36:34Z","latency":1}\nnot json'), /line 2: not JSON/);
});

test('nearest-rank percentiles: p99.9 of 1,000 requests is the slowest, of 10,000 the tenth slowest', () => {
  const thousand = Array.from({ length: 1000 }, (_, i) => i + 1);
  assert.equal(percentile(thousand, 50), 500);
  assert.equal(percentile(thousand, 99), 990);
  assert.equal(percentile(thousand, 99.9), 999);
  assert.equal(percentile(thousand, 100), 1000);
  const tenThousand = Array.from({ length: 10_000 }, (_, i) => i + 1);
  assert.equal(percentile(tenThousand, 99.9), 9990);
  assert.ok(Number.isNaN(percentile([], 50)));
});

test('summary counts failures, the achieved rate from the send times, and keeps a failed request in the percentiles', () => {
  const samples: Sample[] = Array.from({ length: 101 }, (_, i) => ({ startMs: 1000 + i * 10, latencyMs: i === 50 ? 900 : 1, ok: i !== 50 }));
  const s = summarize(samples);
  assert.equal(s.requests, 101);
  assert.equal(s.failed, 1);
  assert.equal(s.achievedRps, 100);
  assert.equal(s.p50, 1);
  assert.equal(s.max, 900);
  assert.equal(s.p999, 900);
});

test('a request overlaps a pause that starts before it ends and ends after it starts, also a long pause that began well before', () => {
  const p = (startMs: number, endMs: number): Pause => ({ startMs, endMs, kind: 'gc-minor', pid: 1 });
  const r = (startMs: number, latencyMs: number): Sample => ({ startMs, latencyMs, ok: true });
  assert.equal(overlapping([r(100, 10)], [p(105, 106)]), 1, 'inside');
  assert.equal(overlapping([r(100, 10)], [p(90, 101)]), 1, 'reaching in');
  assert.equal(overlapping([r(100, 10)], [p(109, 200)]), 1, 'starting before the end');
  assert.equal(overlapping([r(100, 10)], [p(111, 120), p(50, 99)]), 0, 'after and before');
  assert.equal(overlapping([r(5000, 1)], [p(0, 6000), p(4990, 4991)]), 1, 'a 6 s pause that began 5 s earlier');
  assert.equal(overlapping([r(100, 10), r(300, 10), r(500, 10)], [p(305, 306)]), 1);
});

test('correlation: the slowest requests all sit on the GC pauses while requests in general rarely do', () => {
  // 10,000 requests of 1 ms every ms; the ten that coincide with a 20 ms pause take 20 ms.
  const pauses: Pause[] = [{ startMs: 5000, endMs: 5020, kind: 'gc-major', pid: 7 }, { startMs: 8000, endMs: 8001, kind: 'loop-wait', pid: 7 }];
  const samples: Sample[] = Array.from({ length: 10_000 }, (_, i) => ({ startMs: i, latencyMs: i >= 5000 && i < 5010 ? 20 : 0.5, ok: true }));
  const c = correlate(samples, pauses);
  assert.equal(c.slowest, 10);
  assert.equal(c.thresholdMs, 20);
  const gc = c.byKind.find((k) => k.kind === 'gc-major')!;
  assert.equal(gc.slowShare, 1);
  assert.ok(gc.allShare < 0.01, `baseline ${gc.allShare}`);
  assert.equal(gc.maxMs, 20);
  // ten 20 ms windows at 64 places across 10 s meet a 20 ms pause about 40 ms / 156 ms of the time at most
  assert.ok(gc.chanceShare < 0.1, `chance ${gc.chanceShare}`);
  const wait = c.byKind.find((k) => k.kind === 'loop-wait')!;
  assert.equal(wait.slowShare, 0);
  assert.deepEqual(c.byKind.map((k) => k.kind), ['any', 'gc-major', 'loop-wait']);
});

test('a long request overlapping frequent pauses by chance scores a chance share as high as its slow share', () => {
  // a pause of 1 ms every 10 ms; the slow requests last 50 ms: any window that long meets one
  const pauses: Pause[] = Array.from({ length: 1000 }, (_, i) => ({ startMs: i * 10, endMs: i * 10 + 1, kind: 'gc-minor', pid: 1 }));
  const samples: Sample[] = Array.from({ length: 10_000 }, (_, i) => ({ startMs: i + 0.2, latencyMs: i % 1000 === 3 ? 50 : 0.5, ok: true }));
  const gc = correlate(samples, pauses).byKind.find((k) => k.kind === 'gc-minor')!;
  assert.equal(gc.slowShare, 1);
  assert.equal(gc.chanceShare, 1);
  assert.ok(gc.allShare < 0.2, `all ${gc.allShare}`);
});

test("the probe's lines parse to pauses; a malformed one names the file and line", () => {
  assert.deepEqual(parseProbe('42 gc-minor 1000.5 2.25\n\n42 loop-run 2000 3\n', 'probe-42.txt'),
    [{ pid: 42, kind: 'gc-minor', startMs: 1000.5, endMs: 1002.75 }, { pid: 42, kind: 'loop-run', startMs: 2000, endMs: 2003 }]);
  assert.throws(() => parseProbe('42 gc-minor 1000\n', 'probe-42.txt'), /probe-42.txt line 1: expected/);
});
