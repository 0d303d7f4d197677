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

/** A read buffer once a read has filled the small one: bulk moves in 64 KiB reads. */
export const READ_SIZE = 64 * 1024;
/**
 * A read buffer for a socket whose reads are small (a request, a reply, nothing at all): every
 * pooled socket holds its next read buffer for as long as it waits, and an idle connection that
 * held 64 KiB paid up to 64 KiB of RSS for it (pages a recycled buffer had touched): at 10,000
 * idle connections the destination agent's RSS per connection was about 5 KiB above the source's.
 */
export const SMALL_READ_SIZE = 4 * 1024;
/** Small reads in a row after which a socket on 64 KiB buffers goes back to small ones. */
const SMALL_READS_TO_SHRINK = 4;
/** Free read buffers kept for reuse, process-wide, of each size (64 × 64 KiB = 4 MiB, 64 × 4 KiB at most). */
const MAX_FREE_READ_BUFFERS = 64;
const freeReadBuffers: Buffer[] = [];
const freeSmallReadBuffers: Buffer[] = [];

/**
 * Whether the next read buffer handed out is a 64 KiB one. Node calls a socket's `onread.buffer`
 * function right after its `onread.callback` returns (and once when the socket opens, when this
 * is false): onPooledRead sets it for the socket it has just read, the generator takes and clears it.
 */
let nextReadBig = false;

const takeReadBuffer = (): Buffer => {
  const big = nextReadBig;
  nextReadBig = false;
  return big ? freeReadBuffers.pop() ?? Buffer.allocUnsafeSlow(READ_SIZE) : freeSmallReadBuffers.pop() ?? Buffer.allocUnsafeSlow(SMALL_READ_SIZE);
};
const giveReadBuffer = (b: Buffer): void => {
  const free = b.length === READ_SIZE ? freeReadBuffers : freeSmallReadBuffers;
  if (free.length < MAX_FREE_READ_BUFFERS) free.push(b);
};

const kPooledReads = Symbol('weft.pooledReads');

/** A pooled socket's read side: chunks wait in `queued` until a pump takes them over. */
interface PooledReads {
  sink?: (chunk: Buffer, buffer: Buffer) => boolean;
  queued: Array<[Buffer, Buffer]>;
  /** small reads in a row into 64 KiB buffers */
  smallReads: number;
}

/** Reads a pooled socket makes before a pump takes it over (a server that speaks first); then it waits. */
const MAX_QUEUED_READS = 4;

type PooledSocket = Socket & { [kPooledReads]?: PooledReads };

/**
 * The size of a socket's next read buffer, from its last read. Pure. A read that filled its buffer
 * moves to (or stays on) 64 KiB; SMALL_READS_TO_SHRINK reads in a row that a small buffer would have
 * held move back to small; a small buffer's read that did not fill it stays small.
 */
export function nextReadSize(bufferSize: number, nread: number, smallReads: number): { big: boolean; smallReads: number } {
  if (nread >= bufferSize) return { big: true, smallReads: 0 };
  if (bufferSize < READ_SIZE) return { big: false, smallReads: 0 };
  const small = nread <= SMALL_READ_SIZE ? smallReads + 1 : 0;
  return small >= SMALL_READS_TO_SHRINK ? { big: false, smallReads: 0 } : { big: true, smallReads: small };
}

function onPooledRead(this: PooledSocket, nread: number, buf: Uint8Array): boolean {
  const state = this[kPooledReads]!;
  const buffer = buf as Buffer;
  const next = nextReadSize(buffer.length, nread, state.smallReads);
  state.smallReads = next.smallReads;
  nextReadBig = next.big;
  const chunk = buffer.subarray(0, nread);
  if (state.sink) return state.sink(chunk, buffer);
  state.queued.push([chunk, buffer]);
  return state.queued.length < MAX_QUEUED_READS;
}

/**
 * net.connect, with the socket reading into reused buffers (4 KiB while its reads are small,
 * 64 KiB once one fills that) instead of a new ArrayBuffer per read. Those allocations are what drives V8's full collections on a node that sends bulk data
 * into the tunnel (26 mark-compacts per GiB, about a fifth of that agent's CPU). Such a socket
 * emits no 'data' events; only pump() reads it.
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
 * bytes pauses the reader; the reader's end ends the writer), counting them, and gathering the
 * chunks that arrive in one turn of the event loop into one write. A TLS/HTTP/2 tunnel hands data over in pieces of at most one
 * TLS record (and less where a frame straddles two records); written one by one, that is a
 * syscall per 8 KiB. The first chunk of a turn is written at once (a lone request or reply
 * waits for nothing); the ones after it are corked until the loop's check phase and leave in one
 * writev.
 */
export function pump(from: Readable, to: Writable, count: (bytes: number) => void = () => undefined): void {
  const budget = Math.max(PUMP_BUDGET, to.writableHighWaterMark);
  let inTurn = false;
  let corked = false;
  let waiting = false;
  const uncork = (): void => {
    if (!corked) return;
    corked = false;
    to.uncork();
  };
  const endTurn = (): void => {
    inTurn = false;
    uncork();
  };
  const resume = (): void => {
    waiting = false;
    from.resume();
  };
  const write = (chunk: Buffer, written?: () => void): boolean => {
    count(chunk.length);
    if (!inTurn) {
      inTurn = true;
      setImmediate(endTurn);
    } else if (!corked) {
      corked = true;
      to.cork();
    }
    if (written) to.write(chunk, written);
    else to.write(chunk);
    // Past the budget the last write returned false (budget >= high-water mark), so 'drain' comes.
    if (to.writableLength < budget) return true;
    if (!waiting) {
      waiting = true;
      to.once('drain', resume);
    }
    return false;
  };
  let ended = false;
  const end = (): void => {
    if (ended) return;
    ended = true;
    uncork();
    to.end();
  };
  from.on('end', end);

  const pooled = (from as PooledSocket)[kPooledReads];
  if (pooled) {
    // Returning false stops reading (readStop); resume() on drain starts it again.
    pooled.sink = (chunk, buffer) => write(chunk, () => giveReadBuffer(buffer));
    for (const [chunk, buffer] of pooled.queued.splice(0)) pooled.sink(chunk, buffer);
    // The end of a socket that ended before this pump was attached has already been emitted.
    if (from.readableEnded) return end();
    if (waiting) from.pause();
    else from.resume();
    return;
  }
  // A reader that ended before this pump was attached (a sniffer saw the client's half-close) has emitted its end.
  if (from.readableEnded) return end();
  from.on('data', (chunk: Buffer) => {
    if (!write(chunk)) from.pause();
  });
  // A reader someone paused before (a protocol sniffer that has stepped aside) flows again.
  if (!waiting) from.resume();
}
