/**
 * Gives memory back when traffic stops. Under load the proxy's garbage grows V8's heap (tens of MiB
 * after a benchmark, docs/memory.md); V8's own memory reducer returns it only some 8-20 s after the
 * allocation rate falls, so an agent that just served a burst holds that RSS for as long. Once no
 * traffic has moved for IDLE_SAMPLES samples in a row (the proxy's activity count unchanged, and the
 * loop under IDLE_UTILIZATION: an idle agent's own timers keep it near 1 %) and the heap has grown by
 * at least GROWTH_BYTES since the last shrink, this runs V8's low-memory collection (what the memory
 * reducer runs, through an in-process inspector session: `HeapProfiler.collectGarbage`), at most
 * so rarely that its pauses take at most PAUSE_SHARE of the time (minInterval). Measured: 107.9 -> 76.0 MiB in 70 ms on an agent 3 s after a benchmark.
 * A trickle of traffic (any byte or connection within the 1.5 s) never triggers it: the collection
 * blocks the loop for those ms, which only a proxy with nothing to do can spare.
 *
 * The first idle stretch after start runs it once whatever the growth: loading and compiling the
 * agent's modules, the first snapshot and the first certificates leave a few MiB of garbage that V8
 * keeps for a long time on a quiet heap (measured: idle agents at 66.4-66.9 MiB with it against
 * 69.8-70.4 without, docs/memory.md). That one does not count against the interval, so a burst
 * that starts soon after still gets its own shrink when it ends.
 */
import { getHeapStatistics } from 'node:v8';
import type { EventLoopUtilization } from 'node:perf_hooks';

export const SAMPLE_MS = 500;
/** Samples in a row with no traffic: it has stopped, not paused between two requests. */
export const IDLE_SAMPLES = 3;
export const IDLE_UTILIZATION = 0.05;
/**
 * Heap growth since the last shrink (or start) worth a collection. An idle agent's heap stays within
 * about 3 MiB of its last shrink (the young generation's semi-spaces, its timers). At 16 MiB, a
 * burst that grew the heap by 6-9 MiB was left to V8's memory reducer: the memory bench's n2 read
 * 86-88 MiB after the load in three runs of four, for about 10 s, where a shrink gives 75-76.
 * What bounds the cost is minInterval, not this.
 */
export const GROWTH_BYTES = 4 * 2 ** 20;
/** The shortest time between two shrinks after traffic. */
export const MIN_INTERVAL_MS = 5_000;
/**
 * The share of time shrinks may pause the loop: the next one waits at least the last one's
 * duration divided by this (70 ms: 7 s; 150 ms, with 10,000 connections and 83 MiB live: 15 s).
 * What bounds the pauses is their length, not the growth. A fixed 30 s held tens of MiB of garbage
 * whenever a burst came within 30 s of the last shrink: the memory bench's agents read 198 instead
 * of 163 MiB with 10,000 idle connections opened just after its load, and 89-94 instead of 74-78
 * after the load when its warm-up had been shrunk moments before.
 */
export const PAUSE_SHARE = 0.01;

/** How long after the last shrink (after traffic) another may run, for how long the last one paused the loop. Pure. */
export function minInterval(lastMs: number): number {
  return Math.max(MIN_INTERVAL_MS, Math.ceil(lastMs / PAUSE_SHARE));
}

export interface ShrinkState {
  /** V8's total heap size after the last shrink (or at start) */
  baseline: number;
  /** idle samples in a row */
  idleRun: number;
  /** when the last shrink after traffic ran (ms), -Infinity: never */
  lastAt: number;
  /** how long the last shrink paused the loop (ms) */
  lastMs: number;
  /** the start's garbage is not given back yet */
  startPending: boolean;
}

/** One sample: the next state, and whether to shrink now. Pure. */
export function sampleShrink(s: ShrinkState, sample: { moved: boolean; utilization: number }, heapTotal: number, now: number): { state: ShrinkState; shrink: boolean } {
  const idleRun = !sample.moved && sample.utilization < IDLE_UTILIZATION ? s.idleRun + 1 : 0;
  // A heap smaller than the baseline (V8 shrank it itself) is the new baseline.
  const baseline = Math.min(s.baseline, heapTotal);
  const due = s.startPending || (heapTotal - baseline >= GROWTH_BYTES && now - s.lastAt >= minInterval(s.lastMs));
  const shrink = idleRun >= IDLE_SAMPLES && due;
  return { state: { ...s, baseline, idleRun: shrink ? 0 : idleRun, lastAt: shrink && !s.startPending ? now : s.lastAt, startPending: s.startPending && !shrink }, shrink };
}

/** V8's low-memory collection through an in-process inspector session; resolves when it is done (async: a throw, e.g. no inspector in this build, rejects). */
async function collectAllAvailableGarbage(): Promise<void> {
  // Loaded at the first shrink (the start's), not with the agent's modules.
  const inspector = require('node:inspector') as typeof import('node:inspector');
  const session = new inspector.Session();
  session.connect();
  await new Promise<void>((resolve, reject) => {
    session.post('HeapProfiler.collectGarbage', (error) => {
      // Disconnecting inside the session's own callback deadlocks the main thread (measured: the
      // agent stopped answering); after this turn it does not.
      setImmediate(() => {
        session.disconnect();
        if (error) reject(error); else resolve();
      });
    });
  });
}

/**
 * Starts sampling (an unref'd timer: it keeps nothing alive). `activity` is a count that grows with
 * traffic (FairShare.activity); `onShrink` is told what each shrink gave back, and after what;
 * `trimNative` runs after each collection (the agent's gives malloc's free memory back: libc.mallocTrim). Returns the stop function.
 */
export interface Shrunk {
  /** 'start': the start's garbage; 'traffic': what a burst of traffic left */
  after: 'start' | 'traffic';
  beforeBytes: number;
  afterBytes: number;
  ms: number;
}

export function startIdleShrink(activity: () => number, onShrink: (e: Shrunk) => void, onError: (e: Error) => void, trimNative: () => void = () => undefined): () => void {
  let state: ShrinkState = { baseline: getHeapStatistics().total_heap_size, idleRun: 0, lastAt: -Infinity, lastMs: 0, startPending: true };
  let last: EventLoopUtilization = performance.eventLoopUtilization();
  let lastActivity = activity();
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    const now = performance.eventLoopUtilization();
    const u = performance.eventLoopUtilization(now, last).utilization;
    last = now;
    const a = activity();
    const moved = a !== lastActivity;
    lastActivity = a;
    const before = getHeapStatistics().total_heap_size;
    const next = sampleShrink(state, { moved, utilization: u }, before, performance.now());
    const after = state.startPending ? 'start' : 'traffic';
    state = next.state;
    if (!next.shrink) return;
    running = true;
    const t0 = performance.now();
    collectAllAvailableGarbage().then(() => {
      // What the collection freed on the native side (buffers' backing stores, TLS and HTTP/2
      // state of closed connections) is back in malloc now; give it to the kernel too.
      trimNative();
      const afterBytes = getHeapStatistics().total_heap_size;
      const ms = performance.now() - t0;
      state = { ...state, baseline: afterBytes, lastMs: ms };
      onShrink({ after, beforeBytes: before, afterBytes, ms });
    }, (e: Error) => onError(e)).finally(() => {
      running = false;
      last = performance.eventLoopUtilization();
    });
  }, SAMPLE_MS);
  timer.unref();
  return () => clearInterval(timer);
}
