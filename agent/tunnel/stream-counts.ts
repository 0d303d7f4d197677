import type { Http2Stream } from 'node:http2';

type Chunk = { chunk: Buffer | string; encoding: BufferEncoding };
type Writev = (chunks: Chunk[], cb: (error?: Error | null) => void) => void;

/**
 * Node 20's Http2Stream corrupts the first string of a corked write batch (writev) that also holds
 * an empty string: the peer receives garbage in its place. Node's HTTP/1 server writes exactly such
 * a batch (response head, body, '' from end()) when it serves a response over a CONNECT stream,
 * which is how the destination proxy serves HTTP inside an HBONE tunnel. Measured with a plain
 * http2 server: cork(); write('HTTP/1.1 200 OK\r\n...', 'latin1'); write(buffer); write('');
 * uncork() delivers 16 bytes of garbage instead of the status line; without the '' it is intact.
 * Dropping empty chunks from the batch before Node sees it avoids it.
 */
export function dropEmptyWrites(stream: Http2Stream): void {
  const s = stream as unknown as { _writev: Writev };
  const writev = s._writev;
  s._writev = function (this: unknown, chunks, cb) {
    const kept = chunks.filter((c) => c.chunk.length > 0);
    if (kept.length === 0) return cb(null);
    return writev.call(this, kept, cb);
  };
}
