import { constants, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import { pump, type Pumping } from '../core/pump';

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
  new StreamSplice(stream, socket, done).start();
}

const kSplice = Symbol('weft.streamSplice');
type Spliced = (ServerHttp2Stream | Socket) & { [kSplice]?: StreamSplice };

/**
 * One spliced connection in one object, its listeners shared by every splice (they find it on the
 * stream or socket they are called on), instead of a context and six closures per connection.
 */
class StreamSplice {
  private error: string | undefined;
  private open = 2;
  private in: Pumping | undefined;
  private out: Pumping | undefined;

  constructor(readonly stream: ServerHttp2Stream, readonly socket: Socket, private readonly done: (result: SpliceResult) => void) {}

  start(): void {
    const { stream, socket } = this;
    (stream as Spliced)[kSplice] = this;
    (socket as Spliced)[kSplice] = this;
    stream.on('error', onSpliceError);
    socket.on('error', onSpliceError);
    stream.on('close', onStreamClose);
    socket.on('close', onSocketClose);
    this.in = pump(stream, socket);
    this.out = pump(socket, stream);
  }

  fail(e: Error): void {
    this.error ??= e.message;
  }

  streamClosed(): void {
    const { stream } = this;
    if (stream.rstCode !== constants.NGHTTP2_NO_ERROR || !stream.readableEnded) {
      this.error ??= `stream reset (HTTP/2 code ${stream.rstCode})`;
      this.socket.destroy();
    }
    this.closed();
  }

  socketClosed(): void {
    const { stream, socket } = this;
    if (!stream.closed && (this.error !== undefined || !socket.readableEnded)) stream.close(constants.NGHTTP2_CONNECT_ERROR);
    this.closed();
  }

  private closed(): void {
    if (--this.open > 0) return;
    this.done({ bytesIn: this.in!.bytes, bytesOut: this.out!.bytes, ...(this.error !== undefined ? { error: this.error } : {}) });
  }
}

function onSpliceError(this: Spliced, e: Error): void {
  this[kSplice]!.fail(e);
}

function onStreamClose(this: Spliced): void {
  this[kSplice]!.streamClosed();
}

function onSocketClose(this: Spliced): void {
  this[kSplice]!.socketClosed();
}
