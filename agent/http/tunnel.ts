import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { pump } from '../core/pump';

/** An HTTP/1.1 response head written as is (raw header order and case). */
export function responseHead(status: number, message: string | undefined, rawHeaders: readonly string[]): Buffer {
  let head = `HTTP/1.1 ${status} ${message || STATUS_CODES[status] || 'Unknown'}\r\n`;
  for (let i = 0; i < rawHeaders.length; i += 2) head += `${rawHeaders[i]}: ${rawHeaders[i + 1]}\r\n`;
  return Buffer.from(`${head}\r\n`, 'latin1');
}

/** A text/plain response the proxy writes itself onto a connection it then closes (no ServerResponse at hand). */
export function rawResponse(status: number, body: string): Buffer {
  const payload = Buffer.from(body);
  return Buffer.concat([responseHead(status, undefined, ['Content-Type', 'text/plain', 'Content-Length', String(payload.length), 'Connection', 'close']), payload]);
}

/** Writes `status`/`body` as the last thing on `conn` and closes it once written. */
export function refuseRaw(conn: Duplex, status: number, body: string): void {
  if (conn.destroyed) return;
  conn.end(rawResponse(status, body));
  conn.once('finish', () => conn.destroy());
}

export interface SpliceCounts { fromClient: number; toClient: number; error?: string }

/**
 * Raw bytes both ways between the client and the application after an Upgrade or CONNECT was
 * agreed, with pump()'s backpressure and half-close. An error on one side destroys the other.
 * Resolves when both are closed.
 */
export function spliceRaw(client: Duplex, app: Duplex): Promise<SpliceCounts> {
  return new Promise((resolve) => {
    const counts: SpliceCounts = { fromClient: 0, toClient: 0 };
    let open = 2;
    const closed = (): void => { if (--open === 0) resolve(counts); };
    client.on('error', (e: Error) => { counts.error ??= e.message; app.destroy(); });
    app.on('error', (e: Error) => { counts.error ??= e.message; client.destroy(); });
    // A side that closed without ending its stream (reset, error) aborts the other; a clean end has
    // already become end() on the other side through pump(), so its last bytes still leave.
    client.once('close', () => { if (!client.readableEnded) app.destroy(); closed(); });
    app.once('close', () => { if (!app.readableEnded) client.destroy(); closed(); });
    pump(client, app, (n) => { counts.fromClient += n; });
    pump(app, client, (n) => { counts.toClient += n; });
    client.resume();
    app.resume();
  });
}
