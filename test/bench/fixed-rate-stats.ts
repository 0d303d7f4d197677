/**
 * What the fixed-rate benchmark computes from its raw readings, apart from any socket: the
 * per-request results vegeta writes (`vegeta encode -to json`, one JSON object a line), their
 * latency percentiles, and whether the slowest requests overlap the pauses a probe recorded in the
 * agents (GC, event-loop stalls), against how often any request does.
 */

/** One request as vegeta saw it: when it was sent (epoch ms) and how long the answer took (ms). */
export interface Sample { startMs: number; latencyMs: number; ok: boolean; error?: string }

/** A pause recorded in a proxy process: from `startMs` to `endMs` (epoch ms). */
export interface Pause { startMs: number; endMs: number; kind: string; pid: number }

export interface LatencySummary { requests: number; failed: number; achievedRps: number; p50: number; p99: number; p999: number; max: number }

/** RFC 3339 with up to nanoseconds (Go's time.Time) to epoch ms with the fraction kept. */
export function parseTimestamp(ts: string): number {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(ts);
  if (!m) throw new Error(`vegeta result: timestamp '${ts}' is not RFC 3339`);
  const whole = Date.parse(`${m[1]}${m[3]}`);
  if (Number.isNaN(whole)) throw new Error(`vegeta result: timestamp '${ts}' is not a date`);
  return whole + (m[2] ? Number(`0.${m[2]}`) * 1000 : 0);
}

/** Parses `vegeta encode -to json` output; a line that is not a result names its line number. */
export function parseVegetaJson(text: string): Sample[] {
  const out: Sample[] = [];
  const lines = text.split('\n');
  for (const [i, line] of lines.entries()) {
    if (!line.trim()) continue;
    let r: { timestamp?: unknown; latency?: unknown; code?: unknown; error?: unknown };
    try { r = JSON.parse(line) as typeof r; } catch (e) { throw new Error(`vegeta result line ${i + 1}: not JSON (${(e as Error).message})`); }
    if (typeof r.timestamp !== 'string') throw new Error(`vegeta result line ${i + 1}: field timestamp missing`);
    if (typeof r.latency !== 'number') throw new Error(`vegeta result line ${i + 1}: field latency missing (nanoseconds)`);
    const error = typeof r.error === 'string' && r.error ? r.error : undefined;
    const ok = error === undefined && typeof r.code === 'number' && r.code >= 200 && r.code < 400;
    out.push({ startMs: parseTimestamp(r.timestamp), latencyMs: r.latency / 1e6, ok, ...(error ? { error } : {}) });
  }
  return out;
}

/** Nearest-rank percentile of an ascending array (NaN when empty). */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  // less a hair: 99.9 / 100 * 10,000 is 9,990.000000000002 in floating point
  const rank = Math.ceil((p / 100) * sorted.length - 1e-9);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/** Percentiles over every request, failures included (a fixed-rate request that failed still waited). */
export function summarize(samples: Sample[]): LatencySummary {
  const lat = samples.map((s) => s.latencyMs).sort((a, b) => a - b);
  const starts = samples.map((s) => s.startMs);
  const span = samples.length > 1 ? (Math.max(...starts) - Math.min(...starts)) / 1000 : 0;
  return {
    requests: samples.length,
    failed: samples.filter((s) => !s.ok).length,
    achievedRps: span > 0 ? (samples.length - 1) / span : 0,
    p50: percentile(lat, 50), p99: percentile(lat, 99), p999: percentile(lat, 99.9), max: lat.length ? lat[lat.length - 1]! : NaN,
  };
}

/** How many requests' [start, start + latency] overlaps at least one of `pauses`. */
export function overlapping(samples: Sample[], pauses: Pause[]): number {
  const ps = [...pauses].sort((a, b) => a.startMs - b.startMs);
  // A pause that starts more than the longest pause before a request cannot reach into it.
  const longest = ps.reduce((m, p) => Math.max(m, p.endMs - p.startMs), 0);
  let n = 0;
  for (const s of samples) {
    const end = s.startMs + s.latencyMs;
    // binary search the first pause starting after `end`
    let lo = 0, hi = ps.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (ps[mid]!.startMs <= end) lo = mid + 1; else hi = mid; }
    for (let i = lo - 1; i >= 0; i--) {
      if (ps[i]!.endMs >= s.startMs) { n++; break; }
      if (ps[i]!.startMs < s.startMs - longest) break;
    }
  }
  return n;
}

export interface Correlation {
  /** how many of the slowest requests were looked at (top 0.1 %, at least 10) */
  slowest: number;
  /** the latency from which a request counts as one of the slowest, ms */
  thresholdMs: number;
  /**
   * Per kind: share of the slowest requests overlapping a pause of that kind; share of all requests
   * doing so; and the chance share: how often a window as long as each slow request, placed at
   * CHANCE_WINDOWS even steps across the run, overlaps one (a long request overlaps more pauses by
   * its length alone: only a slow share well above the chance share says the pauses made it slow).
   */
  byKind: Array<{ kind: string; pauses: number; totalMs: number; maxMs: number; slowShare: number; allShare: number; chanceShare: number }>;
}

/**
 * Whether the slowest requests coincide with the recorded pauses more than requests in general do:
 * a kind whose slow share is far above its baseline share is a cause of the tail.
 */
const CHANCE_WINDOWS = 64;

function chanceShare(slow: Sample[], all: Sample[], pauses: Pause[]): number {
  if (slow.length === 0 || all.length === 0) return NaN;
  const from = Math.min(...all.map((s) => s.startMs));
  const to = Math.max(...all.map((s) => s.startMs));
  const step = (to - from) / CHANCE_WINDOWS;
  const windows = slow.flatMap((s) => Array.from({ length: CHANCE_WINDOWS }, (_, i) => ({ startMs: from + (i + 0.5) * step, latencyMs: s.latencyMs, ok: true })));
  return overlapping(windows, pauses) / windows.length;
}

export function correlate(samples: Sample[], pauses: Pause[]): Correlation {
  const sorted = [...samples].sort((a, b) => b.latencyMs - a.latencyMs);
  const k = Math.min(sorted.length, Math.max(10, Math.ceil(sorted.length / 1000)));
  const slow = sorted.slice(0, k);
  const kinds = [...new Set(pauses.map((p) => p.kind))].sort();
  return {
    slowest: k,
    thresholdMs: k ? slow[k - 1]!.latencyMs : NaN,
    byKind: ['any', ...kinds].map((kind) => {
      const ps = kind === 'any' ? pauses : pauses.filter((p) => p.kind === kind);
      const dur = ps.map((p) => p.endMs - p.startMs);
      return {
        kind, pauses: ps.length, totalMs: dur.reduce((a, b) => a + b, 0), maxMs: dur.length ? Math.max(...dur) : 0,
        slowShare: k ? overlapping(slow, ps) / k : NaN,
        allShare: samples.length ? overlapping(samples, ps) / samples.length : NaN,
        chanceShare: chanceShare(slow, samples, ps),
      };
    }),
  };
}

/** Parses the probe's lines (`<pid> <kind> <startMs> <durationMs>`); a bad line names the file and line. */
export function parseProbe(text: string, file: string): Pause[] {
  return text.split('\n').flatMap((line, i) => {
    if (!line.trim()) return [];
    const f = line.trim().split(' ');
    const [pid, start, dur] = [Number(f[0]), Number(f[2]), Number(f[3])];
    if (f.length !== 4 || !Number.isFinite(pid) || !Number.isFinite(start) || !Number.isFinite(dur)) throw new Error(`${file} line ${i + 1}: expected '<pid> <kind> <startMs> <durationMs>', got '${line}'`);
    return [{ pid, kind: f[1]!, startMs: start, endMs: start + dur }];
  });
}
