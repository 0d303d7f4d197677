import type { Socket } from 'node:net';

export interface RelayResult {
  /** bytes from the downstream (client) side to the upstream side */
  sent: number;
  /** bytes from the upstream side back to the client */
  received: number;
  error?: Error;
}

/**
 * Moves bytes both ways until both directions are done. pipe() gives backpressure (a slow reader
 * pauses the writer) and half-close (a FIN from one side becomes end() on the other, while the
 * other direction keeps flowing). An error or reset on one side resets the other.
 */
export function relay(downstream: Socket, upstream: Socket): Promise<RelayResult> {
  return new Promise((resolve) => {
    let error: Error | undefined;
    let closed = 0;
    const onClose = () => {
      if (++closed < 2) return;
      resolve({ sent: upstream.bytesWritten, received: downstream.bytesWritten, ...(error ? { error } : {}) });
    };
    const fail = (other: Socket) => (e: Error) => {
      error ??= e;
      if (!other.destroyed) other.resetAndDestroy();
    };
    downstream.on('error', fail(upstream));
    upstream.on('error', fail(downstream));
    downstream.once('close', onClose);
    upstream.once('close', onClose);
    downstream.pipe(upstream);
    upstream.pipe(downstream);
    downstream.resume();
  });
}
