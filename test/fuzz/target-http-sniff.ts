import * as fc from 'fast-check';
import { classifyHead, classifyOnTimeout, H2_PREFACE } from '../../agent/http/sniff';
import { stringOf, text } from './gen';
import { check, mustNotThrow, type FuzzTarget } from './target';

const requestLine = fc.tuple(
  fc.oneof(fc.constantFrom('GET', 'POST', 'CONNECT', 'PRI', 'get', 'M-SEARCH'), stringOf('ABCZ!#$%&*+.^_`|~-/ ', 10)),
  fc.constantFrom(' ', '  ', '\t', ''),
  fc.oneof(fc.constantFrom('/', '*', 'http://a/b', '/a?b#c'), stringOf('/abc?=&%\x7f\x80 ', 20)),
  fc.constantFrom(' ', '  ', ''),
  fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.', 'http/1.1', 'HTTP/1.1 ', 'HTTP/3', ''),
  fc.constantFrom('\r\n', '\n', '\r', '', '\r\nHost: a\r\n\r\n'),
).map((p) => p.join(''));
const prefacePrefix = fc.tuple(fc.nat({ max: H2_PREFACE.length }), fc.uint8Array({ maxLength: 8 }))
  .map(([n, tail]) => Buffer.concat([H2_PREFACE.subarray(0, n), tail]));

type Answer = ReturnType<typeof classifyHead>;
const ANSWERS: ReadonlySet<Answer> = new Set(['http1', 'http2', 'tcp', 'more']);

export const target: FuzzTarget = {
  name: 'http-sniff',
  what: 'agent/http/sniff.ts classifyHead/classifyOnTimeout (the first bytes of every captured connection): only the four answers, and the first conclusive answer does not change as more bytes of the same stream arrive (TCP may split them anywhere)',
  generators: [requestLine.map(text), prefacePrefix],
  maxBytes: 512,
  run(input) {
    let first: { at: number; answer: Answer } | undefined;
    const cuts = new Set<number>([input.length]);
    for (let n = 1; n <= Math.min(input.length, 64); n++) cuts.add(n);
    for (let n = 64; n < input.length; n += 37) cuts.add(n);
    for (const n of [...cuts].sort((a, b) => a - b)) {
      const head = input.subarray(0, n);
      const answer = mustNotThrow('classifyHead', () => classifyHead(head));
      check(ANSWERS.has(answer), `classifyHead answered ${String(answer)}`);
      const late = mustNotThrow('classifyOnTimeout', () => classifyOnTimeout(head));
      check(late === 'http1' || late === 'http2' || late === 'tcp', `classifyOnTimeout answered ${String(late)}`);
      if (first === undefined && answer !== 'more') first = { at: n, answer };
      else if (first !== undefined) check(answer === first.answer, `classifyHead says ${first.answer} after ${first.at} bytes but ${answer} after ${n}`);
    }
  },
};
