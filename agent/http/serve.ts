import type { Duplex } from 'node:stream';
import { serveHttp1Direct } from './http1-direct';
import { serveHttp2 } from './http2';
import type { ServeHttpOptions } from './types';

export type { ExchangeLog, RequestInfo, ServeHttpOptions, Verdict } from './types';

/**
 * Serves HTTP on `downstream` (a net.Socket, or any Duplex such as an HBONE CONNECT stream) until
 * it closes; resolves then. Closing is the caller's `downstream.destroy()`. Each request is put to
 * `decide` before anything reaches the application; allowed ones go to connections from
 * `connectUpstream` (HTTP/1: one keep-alive connection per downstream connection; HTTP/2: one h2c
 * session per downstream session).
 */
export function serveHttp(downstream: Duplex, o: ServeHttpOptions): Promise<void> {
  if (o.protocol !== 'http1' && o.protocol !== 'http2') {
    return Promise.reject(new TypeError(`serveHttp: options.protocol must be 'http1' or 'http2', got ${JSON.stringify(o.protocol)}`));
  }
  try {
    return o.protocol === 'http1' ? serveHttp1Direct(downstream, o) : serveHttp2(downstream, o);
  } catch (e) {
    // Limits that fail checkLimits(): the error names the field.
    return Promise.reject(e);
  }
}
