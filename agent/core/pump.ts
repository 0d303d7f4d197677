import type { Readable, Writable } from 'node:stream';

/**
 * Moves bytes from `from` to `to` like pipe() (backpressure: a full writer pauses the reader; the
 * reader's end ends the writer), but gathers the chunks that arrive in one turn of the event loop
 * into one write. A TLS/HTTP/2 tunnel hands data over in pieces of at most one TLS record (and
 * less where a frame straddles two records); written one by one, that is a syscall per 8 KiB.
 * Corked until the loop's check phase, the pieces of one socket read leave in one writev.
 */
/**
 * Buffer bound for the proxy's plain TCP sockets: one socket read of tunnel data (up to 64 KiB)
 * fits in one corked batch, so it is written in one writev instead of being cut at Node's 16 KiB.
 */
export const RELAY_HIGH_WATER_MARK = 64 * 1024;

export function pump(from: Readable, to: Writable): void {
  let corked = false;
  let waiting = false;
  const uncork = (): void => {
    corked = false;
    to.uncork();
  };
  const resume = (): void => {
    waiting = false;
    from.resume();
  };
  from.on('data', (chunk: Buffer) => {
    if (!corked) {
      corked = true;
      to.cork();
      setImmediate(uncork);
    }
    if (!to.write(chunk) && !waiting) {
      waiting = true;
      from.pause();
      to.once('drain', resume);
    }
  });
  from.once('end', () => {
    if (corked) uncork();
    to.end();
  });
}
