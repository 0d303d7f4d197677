import { randomFillSync } from 'node:crypto';
import { err, ok, type Result } from '../core/result';

/** W3C Trace Context `traceparent`: `<version>-<trace-id>-<parent-id>-<flags>`, lower-case hex. */
export interface TraceParent {
  traceId: string;
  parentId: string;
  flags: string;
}

const VERSION_00 = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
// A later version keeps the same first four fields and may append `-<more>`.
const FUTURE = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

export function parseTraceparent(header: string): Result<TraceParent, string> {
  const text = header.trim();
  const v0 = VERSION_00.exec(text);
  const m = v0 ? [text, '00', v0[1], v0[2], v0[3]] : FUTURE.exec(text);
  if (!m) return err(`traceparent "${header}" is not <version>-<32 hex>-<16 hex>-<2 hex> in lower case`);
  const [, version, traceId, parentId, flags] = m as [string, string, string, string, string];
  if (version === 'ff') return err(`traceparent "${header}": version ff is invalid`);
  if (version === '00' && !v0) return err(`traceparent "${header}": version 00 has exactly four fields`);
  if (/^0+$/.test(traceId)) return err(`traceparent "${header}": trace id is all zeros`);
  if (/^0+$/.test(parentId)) return err(`traceparent "${header}": parent id is all zeros`);
  return ok({ traceId, parentId, flags });
}

export function formatTraceparent({ traceId, parentId, flags }: TraceParent): string {
  // joined, not a template: sent on every tunnel, whose headers Node keeps on the stream for its life (core/ip.ts formatAddr)
  return ['00-', traceId, '-', parentId, '-', flags].join('');
}

/**
 * Random bytes for ids, drawn from a 4 KiB block filled at once: the source proxy makes a
 * traceparent (24 random bytes) for every tunnelled connection, and two randomBytes() calls per
 * connection were ~1.6 % of its CPU under a new connection per request (docs/new-connections.md).
 */
const RANDOM_BLOCK = 4096;
const randomBlock = Buffer.allocUnsafeSlow(RANDOM_BLOCK);
let randomAt = RANDOM_BLOCK;

function nonZeroHex(bytes: number): string {
  for (;;) {
    if (randomAt + bytes > RANDOM_BLOCK) {
      randomFillSync(randomBlock);
      randomAt = 0;
    }
    const hex = randomBlock.toString('hex', randomAt, randomAt + bytes);
    randomAt += bytes;
    if (!ALL_ZEROS.test(hex)) return hex;
  }
}
const ALL_ZEROS = /^0+$/;

/**
 * The traceparent for the next hop: the same trace with a fresh span id, or, when `incoming` is
 * absent or invalid, a new sampled trace (an invalid header is not propagated, per the spec).
 */
export function childTraceparent(incoming?: string): string {
  const parent = incoming === undefined ? undefined : parseTraceparent(incoming);
  if (parent?.ok) return formatTraceparent({ ...parent.value, parentId: nonZeroHex(8) });
  return formatTraceparent({ traceId: nonZeroHex(16), parentId: nonZeroHex(8), flags: '01' });
}
