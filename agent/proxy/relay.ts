import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { pump } from '../core/pump';

export interface RelayResult {
  /** bytes from the downstream (client) side to the upstream side */
  sent: number;
  /** bytes from the upstream side back to the client */
  received: number;
  error?: Error;
}

/**
 * Moves bytes both ways until both directions are done. pump() gives backpressure (a slow reader
 * pauses the writer) and half-close (a FIN from one side becomes end() on the other, while the
 * other direction keeps flowing). An error on one side resets the other. The upstream may be a
 * socket (direct) or a tunnel stream.
 */
export function relay(downstream: Socket, upstream: Duplex): Promise<RelayResult> {
  return new Promise((resolve) => {
    let error: Error | undefined;
    let closed = 0;
    let sent = 0, received = 0;
    const onClose = () => {
      if (++closed < 2) return;
      resolve({ sent, received, ...(error ? { error } : {}) });
    };
    downstream.on('error', (e: Error) => { error ??= e; upstream.destroy(); });
    upstream.on('error', (e: Error) => { error ??= e; if (!downstream.destroyed) downstream.resetAndDestroy(); });
    downstream.on('close', onClose);
    upstream.on('close', onClose);
    pump(downstream, upstream, (n) => { sent += n; });
    pump(upstream, downstream, (n) => { received += n; });
    downstream.resume();
  });
}
