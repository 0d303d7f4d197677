import type { Http2Stream } from 'node:http2';

type Chunk = { chunk: Buffer | string; encoding: BufferEncoding };
type Writev = (chunks: Chunk[], cb: (error?: Error | null) => void) => void;

/**
 * Bytes read from and written to a stream by whoever uses it (an HTTP server running on it), as
 * a socket's bytesRead/bytesWritten count them; an Http2Stream keeps no such counts itself.
 */
export function countBytes(stream: Http2Stream): () => { read: number; written: number } {
  const counts = { read: 0, written: 0 };
  const length = (c: Buffer | string, encoding?: BufferEncoding): number => (typeof c === 'string' ? Buffer.byteLength(c, encoding) : c.length);
  const s = stream as unknown as { _writev: Writev; _write: (c: Buffer | string, e: BufferEncoding, cb: (error?: Error | null) => void) => void };
  const write = s._write;
  const writev = s._writev;
  s._write = function (this: unknown, chunk, encoding, cb) {
    counts.written += length(chunk, encoding);
    return write.call(this, chunk, encoding, cb);
  };
  s._writev = function (this: unknown, chunks, cb) {
    for (const c of chunks) counts.written += length(c.chunk, c.encoding);
    return writev.call(this, chunks, cb);
  };
  // Counted where the stream receives them (push), so that counting adds no reader of its own.
  const r = stream as unknown as { push: (chunk: Buffer | null, encoding?: BufferEncoding) => boolean };
  const push = r.push;
  r.push = function (this: unknown, chunk, encoding) {
    if (chunk) counts.read += chunk.length;
    return push.call(this, chunk, encoding);
  };
  return () => counts;
}
