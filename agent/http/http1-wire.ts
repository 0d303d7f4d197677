import { STATUS_CODES } from 'node:http';

/**
 * What the direct HTTP/1 path writes, pure and tested without sockets: message heads from raw
 * header lists, chunked framing, the header object a decision sees. No parsing here: llhttp
 * decides every boundary (llhttp.ts).
 */

/**
 * RFC 9110 9.2.2's idempotent methods: the only ones a proxy may send again by itself when a
 * kept-alive connection closed under a request before any answer (RFC 9112 9.3.1: "A proxy MUST
 * NOT automatically retry non-idempotent requests").
 */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
export const isIdempotent = (method: string): boolean => IDEMPOTENT.has(method);

const CRLF = Buffer.from('\r\n', 'latin1');
const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');

function fields(raw: readonly string[]): string {
  let s = '';
  for (let i = 0; i < raw.length; i += 2) s += `${raw[i]}: ${raw[i + 1]}\r\n`;
  return s;
}

/** `METHOD target HTTP/1.1` and the fields, as latin1 bytes (header values are byte strings). */
export function requestHead(method: string, target: string, raw: readonly string[]): Buffer {
  return Buffer.from(`${method} ${target} HTTP/1.1\r\n${fields(raw)}\r\n`, 'latin1');
}

/** `HTTP/1.1 status reason` and the fields as given (order, case, repeats kept). */
export function statusHead(status: number, reason: string | undefined, raw: readonly string[]): Buffer {
  return Buffer.from(`HTTP/1.1 ${status} ${reason || STATUS_CODES[status] || 'Unknown'}\r\n${fields(raw)}\r\n`, 'latin1');
}

/** One chunk of a chunked body (empty data would end the body, so it is the caller's to skip). */
export function chunk(data: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${data.length.toString(16)}\r\n`, 'latin1'), data, CRLF]);
}

/** The last chunk, with trailer fields when there are any. */
export function lastChunk(trailers: readonly string[]): Buffer {
  return trailers.length === 0 ? LAST_CHUNK : Buffer.from(`0\r\n${fields(trailers)}\r\n`, 'latin1');
}

/**
 * The header object a decision sees, as Node's server built it with joinDuplicateHeaders: names
 * lower case, repeated fields joined with ', ' (cookie with '; '), set-cookie an array.
 */
export function headerObject(raw: readonly string[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    // A field named __proto__ is data, not the object's prototype.
    if (name === '__proto__' && !Object.prototype.hasOwnProperty.call(out, name)) Object.defineProperty(out, name, { value: undefined, writable: true, enumerable: true, configurable: true });
    const had = Object.prototype.hasOwnProperty.call(out, name) ? out[name] : undefined;
    if (name === 'set-cookie') {
      if (had === undefined) out[name] = [value];
      else (had as string[]).push(value);
    } else if (had === undefined) out[name] = value;
    else out[name] = `${had as string}${name === 'cookie' ? '; ' : ', '}${value}`;
  }
  return out;
}

/** The value of the first field `name` (lower case) in a raw list. */
export function firstValue(raw: readonly string[], name: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length === name.length && raw[i]!.toLowerCase() === name) return raw[i + 1];
  return undefined;
}
