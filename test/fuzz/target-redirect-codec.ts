import * as fc from 'fast-check';
import { isIP } from 'node:net';
import {
  CAPTURE_ROUTE_SIZE, decodeCaptureRoute, decodeConfig, decodeIpKey, decodeOrig, encodeCaptureRoute, encodeConfig, encodeIpKey, IP_KEY_SIZE, ORIG_SIZE,
} from '../../agent/redirect/codec';
import { weft_config } from '../../agent/core/bpf-layout.generated';
import { check, type FuzzTarget } from './target';

/** What the kernel maps hand back is sized by the map; the bytes are whatever a program (or another process) wrote. */
const SIZES = { orig: ORIG_SIZE, ip: IP_KEY_SIZE, config: weft_config.size, route: CAPTURE_ROUTE_SIZE };
const total = Object.values(SIZES).reduce((a, b) => a + b, 0);

/** A decoder may refuse a value with an Error naming the map; anything else escaping is a crash. */
function decodeOrRefuse<T>(what: string, f: () => T): T | undefined {
  try {
    return f();
  } catch (e) {
    check(e instanceof Error && e.constructor === Error && e.message.startsWith(`${what}:`), `${what} decoder threw ${String(e)} instead of an error naming the map`);
    return undefined;
  }
}

function slices(input: Buffer): Record<keyof typeof SIZES, Buffer> {
  const b = Buffer.alloc(total);
  for (let i = 0; i < total; i++) b[i] = input.length === 0 ? 0 : input[i % input.length]!;
  let at = 0;
  const take = (n: number): Buffer => b.subarray(at, (at += n));
  return { orig: take(SIZES.orig), ip: take(SIZES.ip), config: take(SIZES.config), route: take(SIZES.route) };
}

const family = fc.constantFrom(2, 10, 0, 1, 255);
const structured = fc.tuple(fc.uint8Array({ minLength: total, maxLength: total }), family, family).map(([bytes, f1, f2]) => {
  const b = Buffer.from(bytes);
  b[0] = f1; // often the family byte sits first; elsewhere the random bytes still exercise it
  b[SIZES.orig] = f2;
  return b;
});

export const target: FuzzTarget = {
  name: 'redirect-codec',
  what: 'agent/redirect/codec.ts decoders on map-sized bytes: decode or an Error naming the map; decoded addresses are IPs; what decodes re-encodes to the same decoded value',
  generators: [structured],
  maxBytes: total * 2,
  run(input) {
    const s = slices(input);
    const orig = decodeOrRefuse('weft_orig', () => decodeOrig(s.orig));
    if (orig) check(isIP(orig.ip) === orig.family && orig.port >= 0 && orig.port <= 65535, `decodeOrig gave ${JSON.stringify({ ...orig, cgroupId: String(orig.cgroupId) })}`);
    const ip = decodeOrRefuse('weft_ip', () => decodeIpKey(s.ip));
    if (ip !== undefined) check(decodeIpKey(encodeIpKey(ip)) === ip, `encodeIpKey(${ip}) does not decode back`);
    const config = decodeConfig(s.config);
    const back = decodeConfig(encodeConfig(config));
    check(JSON.stringify(back, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v)) === JSON.stringify(config, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v)), 'decodeConfig(encodeConfig(x)) differs from x');
    const route = decodeCaptureRoute(s.route);
    if (route) check(decodeCaptureRoute(encodeCaptureRoute(route))?.netnsIno === route.netnsIno, 'capture route does not round-trip');
  },
};
