import * as fc from 'fast-check';
import { checkHttp1Request, h2WithoutConnectionHeaders, pairs, refusalCloses, repeatedFields, upgradeProtocols, withoutHopByHop } from '../../agent/http/headers';
import { stringOf } from './gen';
import { check, mustNotThrow, type FuzzTarget } from './target';

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'http2-settings'];
const name = fc.oneof(
  fc.constantFrom(...HOP_BY_HOP, 'Connection', 'Transfer-Encoding', 'Content-Length', 'content-length', 'host', 'Host', 'expect', 'set-cookie', 'cookie', 'x-a', ':path', 'trailer'),
  stringOf('abcxyz-_', 8),
);
const value = fc.oneof(
  fc.constantFrom('chunked', 'gzip, chunked', 'chunked, chunked', ' chunked ', 'close', 'keep-alive, x-a', 'x-a,,host', 'websocket', 'h2c, websocket', 'trailers', '100-continue', '0', '5', '-1', '1e3', '007', ' 12 ', '99999999999999999999', ''),
  fc.nat().map(String),
  stringOf('abc ,;=0123-', 16),
);
/** A raw header list rendered one field per line, `name:value`; the target splits it back. */
const list = fc.array(fc.tuple(name, value), { maxLength: 12 }).map((fields) => Buffer.from(fields.map(([n, v]) => `${n}:${v}`).join('\n'), 'latin1'));

function rawList(input: Buffer): string[] {
  const raw: string[] = [];
  for (const line of input.toString('latin1').split('\n')) {
    if (line === '') continue;
    const colon = line.indexOf(':', 1);
    raw.push(colon < 0 ? line : line.slice(0, colon), colon < 0 ? '' : line.slice(colon + 1));
  }
  return raw;
}

export const target: FuzzTarget = {
  name: 'http-headers',
  what: 'agent/http/headers.ts on raw header lists: hop-by-hop removal leaves no hop-by-hop or Connection-named field, the request checks answer a Result, an accepted decimal Content-Length is a safe integer, repeated fields keep every value',
  generators: [list],
  maxBytes: 512,
  run(input) {
    const raw = rawList(input);
    // The oracle, written here apart from the code under test: the names every Connection field lists.
    const named = new Set(raw.flatMap((v, i) => (i % 2 === 1 && raw[i - 1]!.toLowerCase() === 'connection' ? v.split(',').map((t) => t.trim().toLowerCase()).filter((t) => t) : [])));
    const kept = mustNotThrow('withoutHopByHop', () => withoutHopByHop(raw, { keep: ['upgrade'], drop: ['expect'] }));
    for (let i = 0; i < kept.length; i += 2) {
      const n = kept[i]!.toLowerCase();
      check(n === 'upgrade' || (!HOP_BY_HOP.includes(n) && !named.has(n)), `withoutHopByHop kept "${kept[i]}"`);
      check(n !== 'expect', 'withoutHopByHop kept a dropped field');
    }
    check(mustNotThrow('pairs', () => pairs(raw)).length === raw.length / 2, 'pairs() lost a field');
    for (const limit of [undefined, 0, 10]) {
      const r = mustNotThrow('checkHttp1Request', () => checkHttp1Request(raw, limit, 8));
      if (!r.ok) { check([400, 413, 431, 501].includes(r.error.status) && r.error.reason.length > 0, `checkHttp1Request refused with ${r.error.status}`); continue; }
      const cl = raw.filter((_, i) => i % 2 === 1 && raw[i - 1]!.toLowerCase() === 'content-length');
      if (cl.length === 1 && /^\s*[0-9]{1,15}\s*$/.test(cl[0]!)) check(Number.isSafeInteger(r.value.contentLength), 'a decimal Content-Length was not read as an integer');
      if (limit !== undefined && r.value.contentLength !== undefined) check(!(r.value.contentLength > limit), 'a body over the limit was accepted');
      mustNotThrow('refusalCloses', () => refusalCloses(r.value, true, 64));
    }
    mustNotThrow('upgradeProtocols', () => upgradeProtocols(raw));
    const repeated = mustNotThrow('repeatedFields', () => repeatedFields(raw));
    for (const [n, vs] of repeated ?? []) check(vs.length === raw.filter((x, i) => i % 2 === 0 && x.toLowerCase() === n).length, `repeatedFields lost a value of ${n}`);
    const h2: Record<string, string> = {};
    for (let i = 0; i < raw.length; i += 2) h2[raw[i]!.toLowerCase()] = raw[i + 1]!;
    const cleaned = mustNotThrow('h2WithoutConnectionHeaders', () => h2WithoutConnectionHeaders(h2));
    for (const n of Object.keys(cleaned)) check(!HOP_BY_HOP.includes(n) || (n === 'te' && cleaned[n]!.trim().toLowerCase() === 'trailers'), `h2WithoutConnectionHeaders kept ${n}`);
  },
};
