/**
 * Durations as Istio's CRDs take them: Go's `time.ParseDuration` grammar (`1.5s`, `100ms`, `2m`,
 * `1h30m`), which also covers protobuf's JSON form (`0.250s`). Weft works in milliseconds, so,
 * as Istio's validation does, a duration must be a whole number of milliseconds.
 */

/** Nanoseconds per unit: the sum is kept in exact integer nanoseconds (as Go's time.Duration). */
const UNIT_NS: Record<string, bigint> = { h: 3_600_000_000_000n, m: 60_000_000_000n, s: 1_000_000_000n, ms: 1_000_000n, us: 1000n, 'µs': 1000n, ns: 1n };
const PART = /(\d*)(?:\.(\d*))?(h|ms|m|s|us|µs|ns)/y;
const NS_PER_MS = 1_000_000n;

/** Milliseconds, or undefined when `text` is not a duration (a bare number has no unit and is refused). */
export function parseDurationMs(text: string): number | undefined {
  if (text === '' || text.length > 64) return undefined;
  let at = 0;
  let total = 0n;
  while (at < text.length) {
    PART.lastIndex = at;
    const m = PART.exec(text);
    if (m === null) return undefined;
    const [, whole = '', fraction = '', unit] = m;
    if (whole === '' && fraction === '') return undefined;
    const perUnit = UNIT_NS[unit!]!;
    // Decimal arithmetic, not floating point (`4204142.002s` is exactly 4204142002 ms); below a nanosecond is dropped, as Go does.
    total += BigInt(whole || '0') * perUnit + (fraction === '' ? 0n : (BigInt(fraction) * perUnit) / 10n ** BigInt(fraction.length));
    at = PART.lastIndex;
  }
  return total % NS_PER_MS === 0n ? Number(total / NS_PER_MS) : Number(total) / 1e6;
}

/** `1500` → `1.5s`, `100` → `100ms`: how a resolved duration is shown back to an operator. */
export function formatMs(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms >= 1000) return `${ms / 1000}s`;
  return `${ms}ms`;
}
