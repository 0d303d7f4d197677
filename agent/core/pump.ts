import * as net from 'node:net';
import type { OnReadOpts, Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';

/**
 * Unsent bytes a pump lets pile up in its writer before it pauses the reader. A writer's own
 * high-water mark (16 KiB for an HTTP/2 stream, which cannot be set per stream) paused the source
 * socket after every 64 KiB read until the tunnel had flushed it: a third of the CPU time of the
 * two-node bulk test stood idle. At 1 MiB (the tunnel's per-stream window) bulk went from 3.2-3.4
 * to 4.0-4.4 Gb/s (three runs each). It bounds memory per direction of a connection whose
 * destination is slower than its source.
 */
export const PUMP_BUDGET = 1 << 20;

/** A socket's own read buffer while its reads are large: bulk moves in 64 KiB reads. */
export const READ_SIZE = 64 * 1024;
/**
 * A read no larger than this is small: a request, a reply. A socket whose reads are small reads
 * into one buffer shared by every such socket (SHARED_READ), and each read is copied out at its own
 * size. Node keeps a socket's next `onread` buffer for as long as the socket waits, so a buffer of
 * its own costs an idle connection its size: 64 KiB buffers made the destination agent's RSS per
 * idle connection about 5 KiB above the source's, and 4 KiB ones still 4.8 KB of heap per
 * connection (heap snapshot, docs/memory.md). A shared buffer costs an idle connection nothing.
 */
export const SMALL_READ_SIZE = 4 * 1024;
/** Small reads in a row after which a socket on its own 64 KiB buffers goes back to the shared one. */
const SMALL_READS_TO_SHRINK = 4;
/** Free 64 KiB read buffers kept for reuse, process-wide (64 × 64 KiB = 4 MiB at most). */
const MAX_FREE_READ_BUFFERS = 64;
const freeReadBuffers: Buffer[] = [];
/**
 * The read buffer of every socket whose reads are small. Safe to share: libuv allocates, reads and
 * calls back for one socket at a time, synchronously, and onPooledRead copies a read out of it
 * before it returns. As large as a big buffer, so the read that starts a bulk transfer is whole.
 */
const SHARED_READ = Buffer.allocUnsafeSlow(READ_SIZE);

/**
 * Whether the next read buffer handed out is a socket's own 64 KiB one. Node calls a socket's
 * `onread.buffer` function right after its `onread.callback` returns (and once when the socket
 * opens, when this is false): onPooledRead sets it for the socket it has just read, the generator
 * takes and clears it.
 */
let nextReadBig = false;

const takeReadBuffer = (): Buffer => {
  const big = nextReadBig;
  nextReadBig = false;
  return big ? freeReadBuffers.pop() ?? Buffer.allocUnsafeSlow(READ_SIZE) : SHARED_READ;
};
const giveReadBuffer = (b: Buffer): void => {
  if (freeReadBuffers.length < MAX_FREE_READ_BUFFERS) freeReadBuffers.push(b);
};

const kPooledReads = Symbol('weft.pooledReads');

/** A pooled socket's read side: chunks wait in `queued` until a pump takes them over. */
interface PooledReads {
  /** the pump that has taken the socket over */
  pump?: Pump;
  /** a chunk, and the socket's own buffer it lies in (undefined: a copy out of the shared one) */
  queued: Array<[Buffer, Buffer | undefined]>;
  /** small reads in a row into the socket's own buffers */
  smallReads: number;
}

/** Reads a pooled socket makes before a pump takes it over (a server that speaks first); then it waits. */
const MAX_QUEUED_READS = 4;

type PooledSocket = Socket & { [kPooledReads]?: PooledReads };

/**
 * Where a socket's next read goes, from its last one. Pure. On the shared buffer, a read larger
 * than SMALL_READ_SIZE moves the socket to buffers of its own; on its own buffers, SMALL_READS_TO_SHRINK
 * small reads in a row move it back.
 */
export function nextReadSize(ownBuffer: boolean, nread: number, smallReads: number): { big: boolean; smallReads: number } {
  if (nread > SMALL_READ_SIZE) return { big: true, smallReads: 0 };
  if (!ownBuffer) return { big: false, smallReads: 0 };
  const small = smallReads + 1;
  return small >= SMALL_READS_TO_SHRINK ? { big: false, smallReads: 0 } : { big: true, smallReads: small };
}

function onPooledRead(this: PooledSocket, nread: number, buf: Uint8Array): boolean {
  const state = this[kPooledReads]!;
  const shared = buf === SHARED_READ;
  const next = nextReadSize(!shared, nread, state.smallReads);
  state.smallReads = next.smallReads;
  nextReadBig = next.big;
  let chunk: Buffer;
  let own: Buffer | undefined;
  if (shared) {
    // Small reads come out of Node's 8 KiB allocation pool: a copy costs about what a pooled buffer's return did.
    chunk = Buffer.allocUnsafe(nread);
    SHARED_READ.copy(chunk, 0, 0, nread);
  } else {
    own = buf as Buffer;
    chunk = own.subarray(0, nread);
  }
  if (state.pump) return state.pump.writeRead(chunk, own);
  // No pump: a reader of 'data' events (a splice's handover, docs/splice.md) takes the chunk as a
  // stream's reader would (a buffer of its own is then not reused: the reader may keep the chunk),
  // and pause() stops the reading (Node's net.Socket.pause() does readStop() for such a socket).
  if (this.listenerCount('data') > 0) {
    this.emit('data', chunk);
    return this.readableFlowing !== false;
  }
  state.queued.push([chunk, own]);
  return state.queued.length < MAX_QUEUED_READS;
}

/**
 * A pooled socket's reads that no pump has taken (waiting in its queue), handed over and forgotten;
 * none for another socket.
 */
export function takeQueuedReads(s: Socket): Buffer[] {
  const state = (s as PooledSocket)[kPooledReads];
  if (!state) return [];
  return state.queued.splice(0).map(([chunk]) => chunk);
}

/**
 * net.connect, with the socket reading into reused buffers (a shared one while its reads are small,
 * 64 KiB ones of its own once one is large) instead of a new ArrayBuffer per read. Those allocations are what drives V8's full collections on a node that sends bulk data
 * into the tunnel (26 mark-compacts per GiB, about a fifth of that agent's CPU). Such a socket is
 * read by pump(); only while no pump reads it are its reads emitted as 'data' to a listener.
 */
export function connectPooled(options: net.TcpNetConnectOpts): Socket {
  const socket = net.connect({ ...options, onread: { buffer: takeReadBuffer, callback: onPooledRead as OnReadOpts['callback'] } });
  (socket as PooledSocket)[kPooledReads] = { queued: [], smallReads: 0 };
  return socket;
}

/**
 * connectPooled's reading for a socket made from `options` before it connects (a socket made
 * through libc and handed over by fd: the proxy's transparent upstream sockets). Node's Socket
 * constructor takes `onread` as net.connect does; the types only list it for connect.
 */
export function pooledSocket(options: net.SocketConstructorOpts): Socket {
  const socket = new net.Socket({ ...options, onread: { buffer: takeReadBuffer, callback: onPooledRead as OnReadOpts['callback'] } } as net.SocketConstructorOpts);
  (socket as PooledSocket)[kPooledReads] = { queued: [], smallReads: 0 };
  return socket;
}

/**
 * Moves bytes from `from` to `to` like pipe() (backpressure: a writer holding PUMP_BUDGET unsent
 * bytes pauses the reader; the reader's end ends the writer), counting them (`count` is told of
 * each chunk once it is written), and gathering the
 * chunks that arrive in one turn of the event loop into one write. A TLS/HTTP/2 tunnel hands data over in pieces of at most one
 * TLS record (and less where a frame straddles two records); written one by one, that is a
 * syscall per 8 KiB. The first chunk of a turn is written at once (a lone request or reply
 * waits for nothing); the ones after it are corked until the loop's check phase and leave in one
 * writev.
 */
export function pump(from: Readable, to: Writable, count?: (bytes: number) => void): Pumping {
  const p = new Pump(from, to, count);
  p.start();
  return p;
}

/** A running pump: the bytes it has moved so far. */
export interface Pumping {
  readonly bytes: number;
  /** Stops it (Pump.stop). */
  stop(): void;
}

/** The pump reading a stream (a stream is read by one pump at most). */
const kPump = Symbol('weft.pump');
type Pumped = Readable & { [kPump]?: Pump };

/**
 * One direction of a connection: its state in one object, its listeners shared by every pump
 * (they find the pump on the stream they are called on), so an idle connection holds no closures
 * for its two pumps (they were ~0.45 KiB each: a context and six closures).
 */
class Pump implements Pumping {
  bytes = 0;
  private readonly budget: number;
  private inTurn = false;
  private corked = false;
  private waiting = false;
  private ended = false;
  private stopped = false;
  /** made at the first backpressure: most connections never wait */
  private onDrain: (() => void) | undefined;

  constructor(private readonly from: Readable, private readonly to: Writable, private readonly count: ((bytes: number) => void) | undefined) {
    this.budget = Math.max(PUMP_BUDGET, to.writableHighWaterMark);
  }

  start(): void {
    const from = this.from as Pumped;
    from[kPump] = this;
    from.on('end', onPumpedEnd);
    const pooled = (from as PooledSocket)[kPooledReads];
    if (pooled) {
      // Returning false stops reading (readStop); resume() on drain starts it again.
      pooled.pump = this;
      for (const [chunk, buffer] of pooled.queued.splice(0)) this.writeRead(chunk, buffer);
      // The end of a socket that ended before this pump was attached has already been emitted.
      if (from.readableEnded) return this.end();
      if (this.waiting) from.pause();
      else from.resume();
      return;
    }
    // A reader that ended before this pump was attached (a sniffer saw the client's half-close) has emitted its end.
    if (from.readableEnded) return this.end();
    from.on('data', onPumpedData);
    // A reader someone paused before (a protocol sniffer that has stepped aside) flows again.
    if (!this.waiting) from.resume();
  }

  /** A pooled socket's read: a buffer of its own goes back to the pool once written. */
  writeRead(chunk: Buffer, own: Buffer | undefined): boolean {
    return own ? this.write(chunk, () => giveReadBuffer(own)) : this.write(chunk);
  }

  write(chunk: Buffer, written?: () => void): boolean {
    this.bytes += chunk.length;
    const to = this.to;
    if (!this.inTurn) {
      this.inTurn = true;
      setImmediate(endTurn, this);
    } else if (!this.corked) {
      this.corked = true;
      to.cork();
    }
    if (written) to.write(chunk, written);
    else to.write(chunk);
    // Told after the write: a counter that stops this pump (a splice's handover) finds the chunk written.
    this.count?.(chunk.length);
    if (this.stopped) return true;
    // Past the budget the last write returned false (budget >= high-water mark), so 'drain' comes.
    if (to.writableLength < this.budget) return true;
    if (!this.waiting) {
      this.waiting = true;
      to.once('drain', this.onDrain ??= () => this.resume());
    }
    return false;
  }

  endTurn(): void {
    this.inTurn = false;
    this.uncork();
  }

  /**
   * Stops moving bytes, synchronously: the reader's listeners go and what is corked is written.
   * The reader is left as it is (flowing or paused): whoever takes it over stops or reads it at
   * once (a pooled socket's later reads wait in its queue).
   */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    const from = this.from as Pumped;
    from.off('data', onPumpedData).off('end', onPumpedEnd);
    delete from[kPump];
    const pooled = (from as PooledSocket)[kPooledReads];
    if (pooled) pooled.pump = undefined;
    if (this.onDrain) this.to.off('drain', this.onDrain);
    this.uncork();
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.uncork();
    this.to.end();
  }

  private uncork(): void {
    if (!this.corked) return;
    this.corked = false;
    this.to.uncork();
  }

  private resume(): void {
    this.waiting = false;
    this.from.resume();
  }
}

function endTurn(p: Pump): void {
  p.endTurn();
}

function onPumpedData(this: Pumped, chunk: Buffer): void {
  if (!this[kPump]!.write(chunk)) this.pause();
}

function onPumpedEnd(this: Pumped): void {
  this[kPump]!.end();
}
