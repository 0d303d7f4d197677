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

const READ_SIZE = 64 * 1024;
/** Free read buffers kept for reuse, process-wide (64 × 64 KiB = 4 MiB at most). */
const MAX_FREE_READ_BUFFERS = 64;
const freeReadBuffers: Buffer[] = [];

const takeReadBuffer = (): Buffer => freeReadBuffers.pop() ?? Buffer.allocUnsafeSlow(READ_SIZE);
const giveReadBuffer = (b: Buffer): void => {
  if (freeReadBuffers.length < MAX_FREE_READ_BUFFERS) freeReadBuffers.push(b);
};

const kPooledReads = Symbol('weft.pooledReads');

/** A pooled socket's read side: chunks wait in `queued` until a pump takes them over. */
interface PooledReads {
  sink?: (chunk: Buffer, buffer: Buffer) => boolean;
  queued: Array<[Buffer, Buffer]>;
}

/** Reads a pooled socket makes before a pump takes it over (a server that speaks first); then it waits. */
const MAX_QUEUED_READS = 4;

type PooledSocket = Socket & { [kPooledReads]?: PooledReads };

function onPooledRead(this: PooledSocket, nread: number, buf: Uint8Array): boolean {
  const state = this[kPooledReads]!;
  const buffer = buf as Buffer;
  const chunk = buffer.subarray(0, nread);
  if (state.sink) return state.sink(chunk, buffer);
  state.queued.push([chunk, buffer]);
  return state.queued.length < MAX_QUEUED_READS;
}

/**
 * net.connect, with the socket reading into reused 64 KiB buffers instead of a new ArrayBuffer
 * per read. Those allocations are what drives V8's full collections on a node that sends bulk data
 * into the tunnel (26 mark-compacts per GiB, about a fifth of that agent's CPU). Such a socket
 * emits no 'data' events; only pump() reads it.
 */
export function connectPooled(options: net.TcpNetConnectOpts): Socket {
  const socket = net.connect({ ...options, onread: { buffer: takeReadBuffer, callback: onPooledRead as OnReadOpts['callback'] } });
  (socket as PooledSocket)[kPooledReads] = { queued: [] };
  return socket;
}

/**
 * connectPooled's reading for a socket made from `options` before it connects (a socket made
 * through libc and handed over by fd: the proxy's transparent upstream sockets). Node's Socket
 * constructor takes `onread` as net.connect does; the types only list it for connect.
 */
export function pooledSocket(options: net.SocketConstructorOpts): Socket {
  const socket = new net.Socket({ ...options, onread: { buffer: takeReadBuffer, callback: onPooledRead as OnReadOpts['callback'] } } as net.SocketConstructorOpts);
  (socket as PooledSocket)[kPooledReads] = { queued: [] };
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
  from.once('end', end);

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
