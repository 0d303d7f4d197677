import * as fc from 'fast-check';
import { childTraceparent, formatTraceparent, parseTraceparent } from '../../agent/tunnel/traceparent';
import { stringOf, text } from './gen';
import { check, mustNotThrow, type FuzzTarget } from './target';

const hex = (n: number) => fc.oneof(fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: n, maxLength: n }), stringOf('0123456789abcdefABCDEF-', n + 1));
const header = fc.tuple(fc.constantFrom('00', '01', 'ff', 'fe', '0', 'zz'), hex(32), hex(16), hex(2), fc.constantFrom('', '-', '-extra', '-00', ' ', '\t'))
  .map(([v, t, p, f, tail]) => `${v}-${t}-${p}-${f}${tail}`);

export const target: FuzzTarget = {
  name: 'traceparent',
  what: 'agent/tunnel/traceparent.ts parseTraceparent/childTraceparent (the traceparent header of a CONNECT): accepted values format and parse back; the child of any input is a valid version-00 value of the same trace when the input was valid',
  generators: [header.map(text)],
  maxBytes: 128,
  run(input) {
    const value = input.toString('utf8');
    const parsed = mustNotThrow('parseTraceparent', () => parseTraceparent(value));
    const child = mustNotThrow('childTraceparent', () => childTraceparent(value));
    const childParsed = parseTraceparent(child);
    check(childParsed.ok, `childTraceparent(${JSON.stringify(value)}) = "${child}" does not parse`);
    if (!parsed.ok) return;
    const again = parseTraceparent(formatTraceparent(parsed.value));
    check(again.ok && again.value.traceId === parsed.value.traceId && again.value.parentId === parsed.value.parentId, `formatTraceparent of "${value}" does not parse back`);
    check(childParsed.value.traceId === parsed.value.traceId, 'the child keeps the trace id');
  },
};
