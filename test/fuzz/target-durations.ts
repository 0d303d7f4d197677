import * as fc from 'fast-check';
import { Checker } from '../../agent/config/checker';
import type { ConfigError } from '../../agent/config/config-error';
import { readDuration } from '../../agent/route/duration';
import { formatMs, parseDurationMs } from '../../agent/traffic/duration';
import { stringOf, text } from './gen';
import { check, mustNotThrow, type FuzzTarget } from './target';

const part = fc.tuple(fc.oneof(fc.nat({ max: 999999 }).map(String), fc.constantFrom('0', '1.5', '.5', '1.', '00001', '-1', '1e3', '')), fc.constantFrom('h', 'm', 's', 'ms', 'us', 'µs', 'ns', 'd', 'S', ''));
const duration = fc.oneof(
  fc.array(part, { minLength: 1, maxLength: 6 }).map((ps) => ps.map(([n, u]) => n + u).join('')),
  stringOf('0123456789.hmsun ', 30),
);

export const target: FuzzTarget = {
  name: 'durations',
  what: 'Gateway API durations (agent/route/duration.ts readDuration, GEP-2257) and Istio durations (agent/traffic/duration.ts parseDurationMs): a non-negative finite number or a recorded error naming the field; formatMs output parses back to the same value',
  generators: [duration.map(text)],
  maxBytes: 80,
  run(input) {
    const value = input.toString('utf8');
    const errors: ConfigError[] = [];
    const ms = mustNotThrow('readDuration', () => readDuration(new Checker('HTTPRoute fuzz/r', errors), value, 'spec.rules[0].timeouts.request'));
    if (ms === undefined) check(errors.length === 1 && errors[0]!.field === 'spec.rules[0].timeouts.request' && errors[0]!.message.length > 0, 'readDuration refused without one error naming the field');
    else check(Number.isSafeInteger(ms) && ms >= 0 && errors.length === 0, `readDuration("${value}") = ${ms}`);
    const istio = mustNotThrow('parseDurationMs', () => parseDurationMs(value));
    if (istio === undefined) return;
    check(Number.isFinite(istio) && istio >= 0, `parseDurationMs("${value}") = ${istio}`);
    // Istio accepts a whole number of milliseconds written in seconds (`90.5s`, `4204142.002s`): that must read as whole ms.
    if (/^[0-9]{1,10}(\.[0-9]{1,3})?s$/.test(value)) check(Number.isInteger(istio), `parseDurationMs("${value}") = ${istio}, not a whole number of ms`);
    if (Number.isInteger(istio) && istio <= 1e10) check(parseDurationMs(formatMs(istio)) === istio, `formatMs(${istio}) = "${formatMs(istio)}" does not parse back`);
  },
};
