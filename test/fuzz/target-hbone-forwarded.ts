import * as fc from 'fast-check';
import { isIP } from 'node:net';
import { forwardedForOf } from '../../agent/tunnel/hbone-server';
import { ipText, portText, stringOf, text } from './gen';
import { check, mustNotThrow, type FuzzTarget } from './target';

const pair = fc.oneof(
  fc.tuple(fc.constantFrom('for', 'FOR', 'For', 'by', 'host', 'proto', ' for'), fc.oneof(
    fc.tuple(ipText, portText).map(([ip, p]) => `"${ip}:${p}"`),
    fc.tuple(ipText, portText).map(([ip, p]) => `"[${ip}]:${p}"`),
    ipText,
    fc.tuple(ipText, portText).map(([ip, p]) => `[${ip}]:${p}`),
    stringOf('"[]:;,=abc0123456789.', 20),
  )).map(([k, v]) => `${k}=${v}`),
  stringOf(' ;,="for', 8),
);
const element = fc.array(pair, { minLength: 1, maxLength: 4 }).map((ps) => ps.join(';'));
const header = fc.array(element, { minLength: 1, maxLength: 3 }).map((es) => es.join(', '));

export const target: FuzzTarget = {
  name: 'hbone-forwarded',
  what: 'agent/tunnel/hbone-server.ts forwardedForOf (the Forwarded header of a CONNECT): undefined or a valid canonical IP with an optional port 1-65535; one value and a list of values alike',
  generators: [header.map(text)],
  maxBytes: 256,
  run(input) {
    const value = input.toString('utf8');
    for (const form of [value, value.split('\n')]) {
      const got = mustNotThrow('forwardedForOf', () => forwardedForOf(form));
      if (got === undefined) continue;
      check(isIP(got.ip) !== 0, `forwardedForOf(${JSON.stringify(form)}) gave ip "${got.ip}"`);
      check(got.port === undefined || (Number.isInteger(got.port) && got.port >= 1 && got.port <= 65535), `forwardedForOf gave port ${got.port}`);
    }
  },
};
