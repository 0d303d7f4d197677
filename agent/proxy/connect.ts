import * as net from 'node:net';
import type { Socket } from 'node:net';
import { connectPooled } from '../core/pump';
import { ignoreError } from '../core/socket-error';

/**
 * Opens a half-open-capable TCP connection, failing with ETIMEDOUT after `timeoutMs`. By default it
 * reads into pooled buffers: only pump() reads such a socket (no 'data' events). A socket an HTTP
 * parser will read (`reader: 'stream'`) is an ordinary one.
 */
export function connectWithTimeout(ip: string, port: number, timeoutMs: number, reader: 'pump' | 'stream' = 'pump'): Promise<Socket> {
  const options = { host: ip, port, allowHalfOpen: true, noDelay: true };
  const s = reader === 'pump' ? connectPooled(options) : net.connect(options);
  return whenConnected(s, timeoutMs,
    () => Object.assign(new Error(`connect to ${ip}:${port} timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' }),
    (e) => e);
}

/**
 * Resolves with `s` once it connects; on its error (said by `failed`) or after `timeoutMs` (said by
 * `timedOut`) destroys it and rejects. Once connected the socket keeps one 'error' listener shared by
 * all sockets, a no-op until its user attaches its own, and nothing of this wait: the wait's
 * closures stayed with every open connection (~0.2 KiB each).
 */
export function whenConnected(s: Socket, timeoutMs: number, timedOut: () => Error, failed: (e: Error) => Error): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void => {
      clearTimeout(timer);
      s.destroy();
      reject(failed(e));
    };
    const timer = setTimeout(() => {
      s.off('connect', onConnect);
      s.destroy();
      reject(timedOut());
    }, timeoutMs);
    const onConnect = (): void => {
      clearTimeout(timer);
      s.off('connect', onConnect);
      s.off('error', onError);
      s.on('error', ignoreError);
      resolve(s);
    };
    s.on('connect', onConnect);
    s.on('error', onError);
  });
}

