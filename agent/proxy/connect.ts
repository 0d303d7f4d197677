import type { Socket } from 'node:net';
import { connectPooled } from '../core/pump';

/**
 * Opens a half-open-capable TCP connection, failing with ETIMEDOUT after `timeoutMs`. It reads into
 * pooled buffers: only pump() reads it (no 'data' events).
 */
export function connectWithTimeout(ip: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connectPooled({ host: ip, port, allowHalfOpen: true, noDelay: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(Object.assign(new Error(`connect to ${ip}:${port} timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    s.once('connect', () => { clearTimeout(timer); resolve(s); });
    s.once('error', (e) => { clearTimeout(timer); s.destroy(); reject(e); });
  });
}
