import { constants, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import { pump } from '../core/pump';

export interface SpliceResult {
  /** Bytes from the tunnel peer delivered towards the target. */
  bytesIn: number;
  /** Bytes from the target sent back through the tunnel. */
  bytesOut: number;
  error?: string;
}

/**
 * Moves bytes both ways between a CONNECT stream and the target socket, with backpressure (pump)
 * and half-close: the stream's end ends the socket's write side and the socket's end ends the
 * stream. A reset of the stream destroys only this socket; a socket error resets only this stream.
 * `socket` must allow half-open connections. `done` is called once, when both are closed.
 */
export function splice(stream: ServerHttp2Stream, socket: Socket, done: (result: SpliceResult) => void): void {
  const result: SpliceResult = { bytesIn: 0, bytesOut: 0 };
  let open = 2;
  const closed = (): void => {
    if (--open === 0) done(result);
  };
  const fail = (e: Error): void => {
    result.error ??= e.message;
  };
  stream.on('error', fail);
  socket.on('error', fail);
  stream.on('close', () => {
    if (stream.rstCode !== constants.NGHTTP2_NO_ERROR || !stream.readableEnded) {
      result.error ??= `stream reset (HTTP/2 code ${stream.rstCode})`;
      socket.destroy();
    }
    closed();
  });
  socket.on('close', () => {
    if (!stream.closed && (result.error !== undefined || !socket.readableEnded)) stream.close(constants.NGHTTP2_CONNECT_ERROR);
    closed();
  });
  pump(stream, socket, (n) => { result.bytesIn += n; });
  pump(socket, stream, (n) => { result.bytesOut += n; });
}
