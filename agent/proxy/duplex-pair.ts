import { Duplex } from 'node:stream';

/**
 * Two connected in-memory byte streams, like a socketpair: what is written to one is read from the
 * other, ending one's writable side ends the other's readable side (half-close), destroying one
 * destroys the other. The source proxy uses it to hand an HTTP connection to a pod on its own node
 * to deliver(), which then sees an ordinary connection (policy, protocol, the pod) without a
 * kernel socket in between. Each end counts the bytes it read and wrote.
 */
export class PairEnd extends Duplex {
  peer!: PairEnd;
  bytesRead = 0;
  bytesWritten = 0;
  private pendingWrite: ((e?: Error | null) => void) | undefined;

  constructor() {
    super({ allowHalfOpen: true });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (e?: Error | null) => void): void {
    this.bytesWritten += chunk.length;
    this.peer.bytesRead += chunk.length;
    // Backpressure: the write completes when the peer's reader wants more.
    if (this.peer.push(chunk)) done();
    else this.pendingWrite = done;
  }

  override _final(done: (e?: Error | null) => void): void {
    this.peer.push(null);
    done();
  }

  override _read(): void {
    const w = this.peer.pendingWrite;
    if (w) { this.peer.pendingWrite = undefined; w(); }
  }

  override _destroy(err: Error | null, done: (e?: Error | null) => void): void {
    const w = this.pendingWrite;
    this.pendingWrite = undefined;
    if (w) w(err ?? new Error('stream destroyed'));
    if (!this.peer.destroyed) this.peer.destroy(err ? new Error(`peer reset: ${err.message}`) : undefined);
    done(err);
  }

  // What Node's HTTP client and Agent call on their sockets; an in-memory stream has nothing to set.
  setKeepAlive(): this { return this; }
  setNoDelay(): this { return this; }
  setTimeout(ms: number, cb?: () => void): this {
    if (cb) this.once('timeout', cb);
    clearTimeout(this.idle);
    if (ms > 0) { this.idle = setTimeout(() => this.emit('timeout'), ms); this.idle.unref(); }
    return this;
  }
  ref(): this { return this; }
  unref(): this { return this; }
  private idle: NodeJS.Timeout | undefined;
}

export function duplexPair(): [PairEnd, PairEnd] {
  const a = new PairEnd();
  const b = new PairEnd();
  a.peer = b;
  b.peer = a;
  return [a, b];
}
