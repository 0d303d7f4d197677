import type { Duplex } from 'node:stream';
import type { AppProtocol } from './protocol';

/** The HTTP/2 connection preface a prior-knowledge (h2c) client opens with (RFC 9113 3.4). */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/**
 * Bytes sniffing reads at most. A request line longer than this that still looks like HTTP/1 is
 * called HTTP/1, so the HTTP parser answers it (414/431) instead of it passing through opaque.
 */
export const SNIFF_MAX_BYTES = 16 * 1024;

const TCHAR = /^[!#$%&'*+.^_`|~0-9A-Za-z-]$/;
// request-target: any visible ASCII (RFC 9112 3.2); the parser judges its form later.
const REQUEST_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([\x21-\x7e]+) HTTP\/1\.[01]$/;

/**
 * What the first bytes of a connection say: `http2` for the full preface, `http1` for a complete
 * HTTP/1.x request line, `tcp` as soon as they can be neither, `more` while they could still be
 * either. Pure: tested without sockets.
 */
export function classifyHead(head: Buffer): AppProtocol | 'more' {
  if (head.length === 0) return 'more';
  const n = Math.min(head.length, H2_PREFACE.length);
  if (head.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) return head.length >= H2_PREFACE.length ? 'http2' : 'more';
  const eol = head.indexOf('\r\n', 0, 'latin1');
  if (eol >= 0) return REQUEST_LINE.test(head.toString('latin1', 0, eol)) ? 'http1' : 'tcp';
  if (!looksLikeRequestLinePrefix(head)) return 'tcp';
  return head.length >= SNIFF_MAX_BYTES ? 'http1' : 'more';
}

/** A method token, then (after one space) visible ASCII, then (after one space) a prefix of `HTTP/1.x`. */
function looksLikeRequestLinePrefix(head: Buffer): boolean {
  const s = head.toString('latin1', 0, Math.min(head.length, SNIFF_MAX_BYTES));
  const sp1 = s.indexOf(' ');
  const method = sp1 < 0 ? s : s.slice(0, sp1);
  for (const c of method) if (!TCHAR.test(c)) return false;
  if (sp1 < 0) return method.length <= 32;
  const rest = s.slice(sp1 + 1);
  const sp2 = rest.indexOf(' ');
  const target = sp2 < 0 ? rest : rest.slice(0, sp2);
  if (!/^[\x21-\x7e]*$/.test(target)) return false;
  if (sp2 < 0) return true;
  const version = rest.slice(sp2 + 1).replace(/\r$/, '');
  return 'HTTP/1.1'.startsWith(version) || 'HTTP/1.0'.startsWith(version);
}

/**
 * What to call a connection when `boundMs` passed before its bytes were conclusive: nothing at
 * all is a server-first protocol (MySQL, SMTP) and travels as TCP; a started request line is
 * HTTP/1, so a client that dribbles its request cannot pass L7 policy as opaque TCP.
 */
export function classifyOnTimeout(head: Buffer): AppProtocol {
  if (head.length === 0) return 'tcp';
  if (H2_PREFACE.subarray(0, Math.min(head.length, H2_PREFACE.length)).equals(head.subarray(0, H2_PREFACE.length))) {
    return head.length >= 4 ? 'http2' : 'tcp';
  }
  return head.includes(0x20) && looksLikeRequestLinePrefix(head) ? 'http1' : 'tcp';
}

/**
 * Reads from a just-accepted connection until the bytes show HTTP/2 prior knowledge (the 24-byte
 * preface), an HTTP/1.x request line, or something else, or `boundMs` passes with nothing
 * conclusive (then 'tcp': server-first protocols such as MySQL/SMTP wait at most boundMs).
 * Returns the bytes consumed so they can be replayed (serveHttp's `head`, or written first to the
 * upstream of a TCP relay). The connection is left paused. A connection that ends or fails before
 * anything conclusive is 'tcp' with what it sent.
 */
export function sniffProtocol(conn: Duplex, boundMs: number): Promise<{ protocol: AppProtocol; head: Buffer }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const head = (): Buffer => (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length));
    const finish = (protocol: AppProtocol): void => {
      clearTimeout(timer);
      conn.pause();
      conn.removeListener('data', onData);
      conn.removeListener('end', onEnd);
      conn.removeListener('close', onEnd);
      conn.removeListener('error', onEnd);
      resolve({ protocol, head: head() });
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      length += chunk.length;
      const seen = classifyHead(head());
      if (seen !== 'more') finish(seen);
    };
    const onEnd = (): void => finish(classifyOnTimeout(head()) === 'http1' ? 'http1' : 'tcp');
    const timer = setTimeout(() => finish(classifyOnTimeout(head())), boundMs);
    conn.on('data', onData);
    conn.once('end', onEnd);
    conn.once('close', onEnd);
    conn.once('error', onEnd);
    conn.resume();
  });
}
