import * as net from 'node:net';
import type { Socket } from 'node:net';
import { connectPooled } from '../core/pump';

/**
 * Opens a half-open-capable TCP connection, failing with ETIMEDOUT after `timeoutMs`. By default it
 * reads into pooled buffers: only pump() reads such a socket (no 'data' events). A socket an HTTP
 * parser will read (`reader: 'stream'`) is an ordinary one.
 */
export function connectWithTimeout(ip: string, port: number, timeoutMs: number, reader: 'pump' | 'stream' = 'pump'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const options = { host: ip, port, allowHalfOpen: true, noDelay: true };
    const s = reader === 'pump' ? connectPooled(options) : net.connect(options);
    const timer = setTimeout(() => {
      s.destroy();
      reject(Object.assign(new Error(`connect to ${ip}:${port} timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    s.once('connect', () => { clearTimeout(timer); resolve(s); });
    s.once('error', (e) => { clearTimeout(timer); s.destroy(); reject(e); });
  });
}
