import assert from 'node:assert/strict';
import { test } from 'node:test';
import { getHeapStatistics } from 'node:v8';
import { GROWTH_BYTES, IDLE_SAMPLES, MIN_INTERVAL_MS, minInterval, PAUSE_SHARE, SAMPLE_MS, sampleShrink, startIdleShrink, type ShrinkState, type Shrunk } from '../../agent/core/idle-shrink';

const MiB = 2 ** 20;
const start: ShrinkState = { baseline: 20 * MiB, idleRun: 0, lastAt: -Infinity, lastMs: 0, startPending: false };
const idle = { moved: false, utilization: 0.01 };
const busy = { moved: true, utilization: 0.9 };
/** A request now and then: the loop nearly idle, but traffic moved. */
const trickle = { moved: true, utilization: 0.01 };

test('sampleShrink: only after IDLE_SAMPLES samples in a row without traffic, with the heap grown by GROWTH_BYTES, no sooner than minInterval of the last pause', () => {
  const grown = start.baseline + GROWTH_BYTES;
  // Busy: never, however grown.
  assert.equal(sampleShrink(start, busy, grown * 4, 0).shrink, false);
  // Idle, but not long enough yet.
  let s = start;
  for (let i = 1; i < IDLE_SAMPLES; i++) {
    const r = sampleShrink(s, idle, grown, i * SAMPLE_MS);
    assert.equal(r.shrink, false, `sample ${i}`);
    s = r.state;
  }
  // Traffic moving resets the run, even with the loop nearly idle; so does a busy loop without counted traffic.
  assert.equal(sampleShrink(s, trickle, grown, 0).state.idleRun, 0);
  assert.equal(sampleShrink(s, { moved: false, utilization: 0.5 }, grown, 0).state.idleRun, 0);
  assert.ok(IDLE_SAMPLES >= 2);
  assert.equal(sampleShrink(sampleShrink(s, trickle, grown, 0).state, idle, grown, 0).shrink, false);
  // Long enough, but the heap has not grown enough.
  assert.equal(sampleShrink(s, idle, grown - 1, IDLE_SAMPLES * SAMPLE_MS).shrink, false);
  // Long enough and grown: shrink, and the run starts over.
  const r = sampleShrink(s, idle, grown, 10_000);
  assert.equal(r.shrink, true);
  assert.deepEqual(r.state, { baseline: start.baseline, idleRun: 0, lastAt: 10_000, lastMs: 0, startPending: false });
  // Not again within MIN_INTERVAL_MS, even idle and grown.
  let t = { ...r.state, idleRun: IDLE_SAMPLES };
  assert.equal(sampleShrink(t, idle, grown, 10_000 + MIN_INTERVAL_MS - 1).shrink, false);
  t = { ...r.state, idleRun: IDLE_SAMPLES };
  assert.equal(sampleShrink(t, idle, grown, 10_000 + MIN_INTERVAL_MS).shrink, true);
  // A long last pause holds the next one off longer: its pauses take at most PAUSE_SHARE of the time.
  assert.equal(minInterval(0), MIN_INTERVAL_MS);
  assert.equal(minInterval(150), Math.ceil(150 / PAUSE_SHARE));
  assert.ok(minInterval(150) > MIN_INTERVAL_MS);
  t = { ...r.state, idleRun: IDLE_SAMPLES, lastMs: 150 };
  assert.equal(sampleShrink(t, idle, grown, 10_000 + minInterval(150) - 1).shrink, false);
  assert.equal(sampleShrink(t, idle, grown, 10_000 + minInterval(150)).shrink, true);
  // A heap V8 shrank itself below the baseline becomes the baseline.
  assert.equal(sampleShrink(start, busy, 12 * MiB, 0).state.baseline, 12 * MiB);
});

test('sampleShrink: the first idle stretch after start shrinks whatever the growth, once, and leaves the interval to traffic', () => {
  let s: ShrinkState = { ...start, startPending: true };
  // Busy at start: not yet.
  assert.equal(sampleShrink(s, busy, start.baseline, 0).shrink, false);
  for (let i = 1; i < IDLE_SAMPLES; i++) {
    const r = sampleShrink(s, idle, start.baseline, i * SAMPLE_MS);
    assert.equal(r.shrink, false, `sample ${i}`);
    s = r.state;
  }
  // Idle long enough, not grown at all: the start's shrink.
  const r = sampleShrink(s, idle, start.baseline, 2_000);
  assert.equal(r.shrink, true);
  assert.deepEqual(r.state, { baseline: start.baseline, idleRun: 0, lastAt: -Infinity, lastMs: 0, startPending: false });
  // Not again without growth.
  let t = { ...r.state, idleRun: IDLE_SAMPLES };
  assert.equal(sampleShrink(t, idle, start.baseline + GROWTH_BYTES - 1, 3_000).shrink, false);
  // A burst right after it gets its own shrink: the start's did not start the interval.
  t = { ...r.state, idleRun: IDLE_SAMPLES };
  assert.equal(sampleShrink(t, idle, start.baseline + GROWTH_BYTES, 3_000).shrink, true);
});

test('startIdleShrink gives a heap grown by garbage back once the loop is idle, and the process keeps running', async () => {
  const shrinks: Shrunk[] = [];
  const errors: Error[] = [];
  let moved = 0;
  let trims = 0;
  const stop = startIdleShrink(() => moved, (e) => shrinks.push(e), (e) => errors.push(e), () => { trims++; });
  try {
    // Idle from the start: the start's shrink comes first, whatever the heap.
    let deadline = Date.now() + (IDLE_SAMPLES + 4) * SAMPLE_MS;
    while (shrinks.length === 0 && errors.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(errors, []);
    assert.equal(shrinks.length, 1, 'no shrink after start');
    assert.equal(shrinks.shift()!.after, 'start');
    // Garbage that survives long enough to reach the old generation: 48 MiB of small objects kept, then dropped.
    let keep: unknown[] = [];
    for (let i = 0; i < 48 * 1024; i++) keep.push({ i, pad: 'x'.repeat(1000 + (i % 7)) });
    await new Promise((r) => setTimeout(r, 50));
    const grown = getHeapStatistics().total_heap_size;
    keep = [];
    assert.equal(keep.length, 0);
    // Idle: the shrink comes within IDLE_SAMPLES + 2 samples.
    deadline = Date.now() + (IDLE_SAMPLES + 4) * SAMPLE_MS;
    while ((shrinks as Shrunk[]).length === 0 && errors.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(errors, []);
    assert.equal(shrinks.length, 1, `no shrink within ${(IDLE_SAMPLES + 4) * SAMPLE_MS} ms of idle (heap ${Math.round(grown / MiB)} MiB)`);
    const s = shrinks[0]!;
    assert.equal(s.after, 'traffic');
    assert.equal(trims, 2, 'native memory trimmed after each collection (the start\'s and this one)');
    assert.ok(s.beforeBytes - s.afterBytes >= GROWTH_BYTES, `gave back ${((s.beforeBytes - s.afterBytes) / MiB).toFixed(1)} MiB (${(s.beforeBytes / MiB).toFixed(1)} -> ${(s.afterBytes / MiB).toFixed(1)})`);
    // The loop still turns after it (the inspector session was let go).
    await new Promise((r) => setTimeout(r, 20));
    // Traffic moving holds it off: grow the heap again, keep 'moving'.
    for (let i = 0; i < 48 * 1024; i++) keep.push({ i, pad: 'y'.repeat(1000 + (i % 7)) });
    keep = [];
    const moving = setInterval(() => moved++, SAMPLE_MS / 4);
    await new Promise((r) => setTimeout(r, (IDLE_SAMPLES + 2) * SAMPLE_MS));
    clearInterval(moving);
    assert.equal(shrinks.length, 1, 'no shrink while traffic moves');
    // No second shrink within MIN_INTERVAL_MS even once it stops (the wait here is shorter than it).
    assert.ok((IDLE_SAMPLES + 2) * SAMPLE_MS + (IDLE_SAMPLES + 1) * SAMPLE_MS < MIN_INTERVAL_MS);
    await new Promise((r) => setTimeout(r, (IDLE_SAMPLES + 1) * SAMPLE_MS));
    assert.equal(shrinks.length, 1);
  } finally {
    stop();
  }
});
