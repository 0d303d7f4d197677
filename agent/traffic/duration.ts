/**
 * Durations as Istio's CRDs take them: Go's `time.ParseDuration` grammar (`1.5s`, `100ms`, `2m`,
 * `1h30m`), which also covers protobuf's JSON form (`0.250s`). Weft works in milliseconds, so,
 * as Istio's validation does, a duration must be a whole number of milliseconds.
 */

const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001, 'µs': 0.001, ns: 0.000001 };
const PART = /(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)/y;

/** Milliseconds, or undefined when `text` is not a duration (a bare number has no unit and is refused). */
export function parseDurationMs(text: string): number | undefined {
  if (text === '' || text.length > 64) return undefined;
  let at = 0;
  let total = 0;
  while (at < text.length) {
    PART.lastIndex = at;
    const m = PART.exec(text);
    if (m === null) return undefined;
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    at = PART.lastIndex;
  }
  // Sums of fractions (`0.1s` is 100.00000000000001 ms in floating point): round to the nanosecond.
  return Math.round(total * 1e6) / 1e6;
}

/** `1500` → `1.5s`, `100` → `100ms`: how a resolved duration is shown back to an operator. */
export function formatMs(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms >= 1000) return `${ms / 1000}s`;
  return `${ms}ms`;
}
