// The spin watchdog's timing logic (splice.ts watchSpin) over probes that stand for the verdict's
// counts and the proxy socket's queue: it acts for a pod that retries while its reader is slow,
// not for one whose reader is fast, and judges only over an interval it watched whole. Real timers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { watchSpin } from '../../agent/proxy/splice';
import { SPIN_KEEP_BYTES_PER_S, SPIN_WATCH_MIN_MS } from '../../agent/proxy/splice-decision';

const MiB = 2 ** 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** A direction whose counts grow with the wall time: `counted` and `taken` bytes per second. */
function direction(counted: number, taken: number, from = performance.now()) {
  const s = () => Math.max(0, performance.now() - from) / 1000;
  return { counts: () => [BigInt(Math.round(counted * s()))], taken: () => [Math.round(taken * s())] };
}

test('watchSpin: a pod retrying for a reader at 4 MiB/s is handed over within two looks', async () => {
  const d = direction(2000 * MiB, 4 * MiB);
  let spun = 0;
  const t0 = performance.now();
  const w = watchSpin(d.counts, d.taken, () => { spun = performance.now() - t0; });
  try {
    for (let i = 0; i < 20 && spun === 0; i++) await sleep(25);
    assert.ok(spun > 0, 'the watchdog did not act');
    assert.ok(spun < 3 * SPIN_WATCH_MIN_MS + 100, `it acted after ${spun} ms`);
  } finally {
    w.stop();
  }
});

test('watchSpin: a pod whose reader takes at least SPIN_KEEP_BYTES_PER_S keeps its switch, however many retries', async () => {
  const d = direction(10 * SPIN_KEEP_BYTES_PER_S, 1.5 * SPIN_KEEP_BYTES_PER_S);
  let spun = false;
  const w = watchSpin(d.counts, d.taken, () => { spun = true; });
  await sleep(5 * SPIN_WATCH_MIN_MS);
  w.stop();
  assert.equal(spun, false);
});

test('watchSpin: a burst after a quiet spell is judged over the interval it watched, not the quiet one', async () => {
  // Three quiet looks (the watch backs off to 800 ms), then a fast reader's burst that began 50 ms
  // before the fourth: judged over the 800 ms since the third, its rate would read as slow.
  let calls = 0;
  let burst: ReturnType<typeof direction> | undefined;
  const counts = () => {
    if (++calls === 4) burst = direction(10 * SPIN_KEEP_BYTES_PER_S, 1.2 * SPIN_KEEP_BYTES_PER_S, performance.now() - 50);
    return burst?.counts() ?? [0n];
  };
  const taken = () => burst?.taken() ?? [0];
  let spun = false;
  const w = watchSpin(counts, taken, () => { spun = true; });
  for (let i = 0; i < 80 && calls < 7; i++) await sleep(50);
  w.stop();
  assert.ok(calls >= 7, `only ${calls} looks`);
  assert.equal(spun, false);
});

test('watchSpin: a fast reader whose bytes begin late in the first interval is kept (judged from the watch\'s start, it read as slow)', async () => {
  // The server answers 70 ms after the watch starts (its request, its own setup): over the first
  // 100 ms the socket took 30 ms of a fast reader's bytes, 0.36x SPIN_KEEP_BYTES_PER_S on average.
  const d = direction(10 * SPIN_KEEP_BYTES_PER_S, 1.2 * SPIN_KEEP_BYTES_PER_S, performance.now() + 70);
  let spun = false;
  const w = watchSpin(d.counts, d.taken, () => { spun = true; });
  await sleep(5 * SPIN_WATCH_MIN_MS);
  w.stop();
  assert.equal(spun, false);
});

test('watchSpin: a probe answering undefined ends the watch; stop() ends it too', async () => {
  let looks = 0;
  const w = watchSpin(() => { looks++; return undefined; }, () => [0], () => assert.fail('no spin'));
  await sleep(3 * SPIN_WATCH_MIN_MS);
  assert.equal(looks, 1);
  let looks2 = 0;
  const w2 = watchSpin(() => { looks2++; return [0n]; }, () => [0], () => assert.fail('no spin'));
  w2.stop();
  await sleep(2 * SPIN_WATCH_MIN_MS);
  assert.equal(looks2, 0);
  w.stop();
});
