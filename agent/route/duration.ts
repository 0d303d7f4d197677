import type { Checker } from '../config/checker';

/**
 * GEP-2257 durations (`10s`, `500ms`, `1h2m`): one to four components of 1-5 digits and a unit
 * h, m, s or ms. Weft also refuses a unit written twice (`1s1s`): Go's ParseDuration would add
 * them up, but such a value is almost always a typo, and the error says what was read.
 */
const FORMAT = /^([0-9]{1,5}(h|m|s|ms)){1,4}$/;
const COMPONENT = /([0-9]{1,5})(ms|h|m|s)/g;
const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1_000, ms: 1 };

/** Milliseconds, or undefined (and a recorded error naming the field) when the text is not a GEP-2257 duration. */
export function readDuration(c: Checker, value: unknown, field: string): number | undefined {
  if (typeof value !== 'string' || !FORMAT.test(value)) {
    c.fail(field, `${JSON.stringify(value)} is not a Gateway API duration (GEP-2257): 1 to 4 parts of up to 5 digits and a unit h, m, s or ms, e.g. 10s, 500ms, 1h30m`);
    return undefined;
  }
  const seen = new Set<string>();
  let total = 0;
  for (const [, digits, unit] of value.matchAll(COMPONENT)) {
    if (seen.has(unit!)) {
      c.fail(field, `"${value}" gives the unit "${unit}" twice; write each unit once, e.g. 1m30s`);
      return undefined;
    }
    seen.add(unit!);
    total += Number(digits) * UNIT_MS[unit!]!;
  }
  return total;
}
