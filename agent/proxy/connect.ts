import net, { Socket } from 'node:net';
import { markPooled, pooledReads, RELAY_HIGH_WATER_MARK } from '../core/pump';

/**
 * Opens a half-open-capable TCP connection, failing with ETIMEDOUT after `timeoutMs`. It reads into
 * pooled buffers: only pump() reads it (no 'data' events).
 */
export function connectWithTimeout(ip: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // Node passes Duplex options through to the socket; @types/node's connect options omit them.
    const options: net.TcpNetConnectOpts & { writableHighWaterMark: number } = {
      host: ip, port, allowHalfOpen: true, noDelay: true, writableHighWaterMark: RELAY_HIGH_WATER_MARK, ...pooledReads(),
    };
    const s = net.connect(options);
    markPooled(s);
    const timer = setTimeout(() => {
      s.destroy();
      reject(Object.assign(new Error(`connect to ${ip}:${port} timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    s.once('connect', () => { clearTimeout(timer); resolve(s); });
    s.once('error', (e) => { clearTimeout(timer); s.destroy(); reject(e); });
  });
}
