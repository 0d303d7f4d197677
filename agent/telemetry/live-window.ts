/**
 * A rolling window of one edge's traffic, as the live view keeps it: a ring of fixed time slots
 * (default 12 of 5 s: the last minute), each with counters and a small fixed-bucket latency
 * histogram. Memory per window is bounded (slots × (counters + at most LATENCY_BUCKETS counts)),
 * whatever the traffic. The clock is passed in, so the window is stepped in tests, not timed.
 *
 * p99 comes from the histogram: buckets grow geometrically by 2^(1/4) (~19 %) from 50 µs to about
 * 74 s, and the answer is the upper bound of the bucket holding the 99th percentile, clamped to the
 * slowest request seen in the window. It is never below the true value and at most ~19 % above it
 * (exact when the slowest request is the percentile).
 */

/** Lower bound of the first latency bucket, in ms. */
export const LATENCY_FIRST_MS = 0.05;
/** Growth of the bucket bounds: four buckets per doubling. */
export const LATENCY_RATIO = 2 ** 0.25;
/** Number of latency buckets; the last one takes everything above its lower bound. */
export const LATENCY_BUCKETS = 84;

/** The bucket a duration falls into (0 .. LATENCY_BUCKETS-1). Pure. */
export function latencyBucket(ms: number): number {
  if (!(ms > LATENCY_FIRST_MS)) return 0;
  const i = Math.ceil(Math.log(ms / LATENCY_FIRST_MS) / Math.log(LATENCY_RATIO) - 1e-9);
  return Math.min(i, LATENCY_BUCKETS - 1);
}

/** The upper bound of bucket `i` in ms (Infinity for the last). Pure. */
export function latencyUpperMs(i: number): number {
  return i >= LATENCY_BUCKETS - 1 ? Infinity : LATENCY_FIRST_MS * LATENCY_RATIO ** i;
}

/**
 * The `q` quantile (0 < q ≤ 1) of the durations counted in `hist`, as the upper bound of the
 * bucket that holds it, never more than `maxMs` (the slowest seen). undefined when nothing was
 * counted. Pure.
 */
export function quantileMs(hist: ArrayLike<number>, q: number, maxMs: number): number | undefined {
  let n = 0;
  for (let i = 0; i < hist.length; i++) n += hist[i]!;
  if (n === 0) return undefined;
  const rank = Math.max(1, Math.ceil(q * n));
  let seen = 0;
  for (let i = 0; i < hist.length; i++) {
    seen += hist[i]!;
    if (seen >= rank) return Math.min(latencyUpperMs(i), maxMs);
  }
  return maxMs;
}

/** What one slot (or a sum of slots) counts. */
export interface Counts {
  requests: number;
  /** requests that failed: 5xx, no response, a non-OK gRPC status, or refused by the proxy (flags) */
  errors: number;
  /** requests refused by authorization policy */
  deniedRequests: number;
  /** connections refused (or closed) by authorization policy */
  deniedConnections: number;
  connectionsOpened: number;
  connectionsClosed: number;
  /** request direction (client → server), counted when a connection closes */
  bytesFromClient: number;
  /** response direction (server → client) */
  bytesToClient: number;
  /** events that travelled over mutual TLS, and in plaintext */
  mtls: number;
  plaintext: number;
}

export function zeroCounts(): Counts {
  return { requests: 0, errors: 0, deniedRequests: 0, deniedConnections: 0, connectionsOpened: 0, connectionsClosed: 0, bytesFromClient: 0, bytesToClient: 0, mtls: 0, plaintext: 0 };
}

interface Slot extends Counts {
  /** the slot's number (time / slotMs); a ring entry with an older number is stale */
  index: number;
  /** latency counts, allocated on the slot's first request */
  hist: Uint32Array | undefined;
  maxMs: number;
}

export interface WindowShape {
  slotMs: number;
  slots: number;
}

export const DEFAULT_WINDOW: WindowShape = { slotMs: 5_000, slots: 12 };

/** The window's sums at one moment. */
export interface WindowSums extends Counts {
  p99Ms: number | undefined;
}

export class RollingWindow {
  private readonly ring: Slot[];

  constructor(private readonly shape: WindowShape = DEFAULT_WINDOW) {
    if (!(Number.isInteger(shape.slots) && shape.slots > 0)) throw new Error(`live view window: slots must be a positive whole number (got ${shape.slots})`);
    if (!(shape.slotMs > 0)) throw new Error(`live view window: slotMs must be positive (got ${shape.slotMs})`);
    this.ring = Array.from({ length: shape.slots }, () => ({ ...zeroCounts(), index: -1, hist: undefined, maxMs: 0 }));
  }

  /** The slot for time `now` (ms), emptied first when it last served an older slot number. */
  slot(now: number): Counts {
    const index = Math.floor(now / this.shape.slotMs);
    const s = this.ring[index % this.shape.slots]!;
    if (s.index !== index) {
      Object.assign(s, zeroCounts());
      s.index = index;
      s.hist?.fill(0);
      s.maxMs = 0;
    }
    return s;
  }

  /** Counts one request's duration in the slot for `now`. */
  observe(now: number, durationMs: number): void {
    const s = this.slot(now) as Slot;
    s.hist ??= new Uint32Array(LATENCY_BUCKETS);
    s.hist[latencyBucket(durationMs)]!++;
    if (durationMs > s.maxMs) s.maxMs = durationMs;
  }

  /** The sums over the slots still inside the window at `now`. */
  sums(now: number): WindowSums {
    const current = Math.floor(now / this.shape.slotMs);
    const out = zeroCounts();
    let hist: Uint32Array | undefined;
    let maxMs = 0;
    for (const s of this.ring) {
      if (s.index < 0 || s.index > current || s.index <= current - this.shape.slots) continue;
      for (const k of Object.keys(out) as (keyof Counts)[]) out[k] += s[k];
      if (s.hist) {
        hist ??= new Uint32Array(LATENCY_BUCKETS);
        for (let i = 0; i < LATENCY_BUCKETS; i++) hist[i]! += s.hist[i]!;
        if (s.maxMs > maxMs) maxMs = s.maxMs;
      }
    }
    return { ...out, p99Ms: hist ? quantileMs(hist, 0.99, maxMs) : undefined };
  }

  /** Whether any slot inside the window at `now` counted something. */
  active(now: number): boolean {
    const s = this.sums(now);
    return s.requests + s.connectionsOpened + s.connectionsClosed > 0;
  }
}
