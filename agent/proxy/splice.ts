/**
 * Same-node splicing: after the proxy has authorized a plain TCP connection between two pods of
 * this node, the client's accepted socket and the upstream socket to the destination pod are
 * handed to the kernel (splice-kernel.ts), which moves the bytes between them without waking this
 * process. What stays here: the handover (bytes this process already read go first), half-close
 * (a FIN on one side becomes end() on the other once every byte the kernel redirected is in the
 * other's send queue), errors and the byte counts for the access log (docs/splice.md).
 */
import type { Socket } from 'node:net';
import * as libc from '../../native/libc';
import type { RelayResult } from './relay';
import { relay } from './relay';
import { directionFlushed, spliceWorthIt, splicedTotals } from './splice-decision';
import type { SpliceEnd, SpliceKernel } from './splice-kernel';

/** struct tcp_info: tcpi_bytes_acked (u64) sits at offset 120 since Linux 4.1; 136 bytes reach past it. */
const TCPI_BYTES_ACKED = 120;
const TCP_INFO_READ = 136;
const EMPTY = Buffer.alloc(0);
/** Handover rounds before giving up and relaying (each flushes what the previous one found). */
const MAX_HANDOVER_ROUNDS = 8;
/** Half-close: checks in the next turns of the event loop before falling back to timers. */
const IMMEDIATE_CHECKS = 8;
const DRAIN_READ_SIZE = 1 << 20;
const MAX_DRAIN_READS = 16;

interface StreamHandle { fd?: number; reading?: boolean; readStop(): number }
const handleOf = (s: Socket): StreamHandle | undefined => (s as unknown as { _handle?: StreamHandle | null })._handle ?? undefined;

/** The socket's fd, when Node exposes one (a TCP socket on Linux does). */
export function socketFd(s: Socket): number | undefined {
  const fd = handleOf(s)?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/**
 * Bytes this socket has taken into its send queue so far: acknowledged (tcpi_bytes_acked) plus not
 * yet acknowledged (SIOCOUTQ). Only differences are used (the SYN may count as one).
 */
export function bytesQueued(fd: number): bigint {
  const info = libc.getsockopt(fd, libc.IPPROTO_TCP, libc.TCP_INFO, TCP_INFO_READ, `fd ${fd} TCP_INFO`);
  if (info.length < TCPI_BYTES_ACKED + 8) throw new Error(`TCP_INFO of fd ${fd} is ${info.length} bytes: the kernel has no tcpi_bytes_acked`);
  return info.readBigUInt64LE(TCPI_BYTES_ACKED) + BigInt(libc.ioctlInt(fd, libc.SIOCOUTQ, `fd ${fd} SIOCOUTQ`));
}

/**
 * Stops this process reading `s` and returns what Node had read but nobody consumed yet. The
 * stream's `reading` flag is left set: Node then asks the handle for nothing (its maybeReadMore,
 * queued by the push that delivered the last chunk, restarted reading during the handover, and
 * libuv read part of an skb the program then sent whole: 64 KiB twice). letRead() clears it.
 */
function takeOver(s: Socket): Buffer[] {
  s.pause();
  const chunks: Buffer[] = [];
  for (let c = s.read() as Buffer | null; c !== null; c = s.read() as Buffer | null) chunks.push(c);
  const h = handleOf(s);
  if (h?.reading) {
    h.reading = false;
    h.readStop();
  }
  (s as unknown as { _readableState: { reading: boolean } })._readableState.reading = true;
  return chunks;
}

/** Lets Node read `s` again: the next resume() or read() (ours, or relay()'s) starts the handle. */
function letRead(s: Socket): void {
  (s as unknown as { _readableState: { reading: boolean } })._readableState.reading = false;
}

/**
 * Empties the socket's receive queue with non-blocking recv() until EAGAIN. The verdict program
 * takes whole skbs from that queue (tcp_read_skb does not skip what a reader already copied from
 * the first one): an skb libuv had read part of reached the peer twice (58296 bytes too many in a
 * 1 GiB transfer spliced after a relayed start). After this, only whole skbs wait there, as long
 * as nobody reads. `complete` is false when the bound was hit before EAGAIN.
 */
function drainQueue(s: Socket): { chunks: Buffer[]; eof: boolean; complete: boolean } {
  const fd = socketFd(s);
  const chunks: Buffer[] = [];
  if (fd === undefined) return { chunks, eof: false, complete: false };
  // Bounded: a receive queue holds at most tcp_rmem's maximum (6 MiB by default).
  for (let i = 0; i < MAX_DRAIN_READS; i++) {
    const buf = Buffer.allocUnsafe(DRAIN_READ_SIZE);
    const n = libc.recvNow(fd, buf, 'spliced socket');
    if (n <= 0) return { chunks, eof: n === 0, complete: true };
    chunks.push(buf.subarray(0, n));
  }
  return { chunks, eof: false, complete: false };
}

const ended = (s: Socket): boolean => s.readableEnded || (s as unknown as { _readableState: { ended: boolean } })._readableState.ended;

/** Resolves once everything written to `s` so far is in the kernel's send queue. */
function flushed(s: Socket): Promise<void> {
  if (s.writableLength === 0) return Promise.resolve();
  return new Promise((resolve) => s.write(EMPTY, () => resolve()));
}

/** Splices a same-node connection (spliceSockets with this node's kernel side bound). */
export type Splicer = (client: Socket, upstream: Socket) => Promise<RelayResult>;

export interface SpliceOptions {
  kernel: SpliceKernel;
  /** told once per connection whether it was spliced, and why not */
  onOutcome?: (spliced: boolean, reason?: string) => void;
}

/**
 * Moves bytes both ways between `down` (the client's accepted socket) and `up` (a plain socket,
 * not a pooled one, to the destination pod) until both directions are done. It relays in user
 * space while the connection is young and splices it in the kernel once it has proven long-lived
 * (spliceWorthIt: a second exchange, or enough bytes): a connection that closes after one
 * exchange would pay the splice's setup for nothing. The caller gets the same RelayResult either way.
 */
export function spliceSockets(down: Socket, up: Socket, o: SpliceOptions): Promise<RelayResult> {
  return new Promise((resolve) => {
    let sent = 0, recv = 0, turns = 0, last: 'up' | 'down' | undefined;
    let error: Error | undefined;
    const onDrainUp = (): void => { down.resume(); };
    const onDrainDown = (): void => { up.resume(); };
    const fromDown = (c: Buffer): void => {
      sent += c.length;
      if (!up.write(c)) { down.pause(); up.once('drain', onDrainUp); }
      moved('up');
    };
    const fromUp = (c: Buffer): void => {
      recv += c.length;
      if (!down.write(c)) { up.pause(); down.once('drain', onDrainDown); }
      moved('down');
    };
    const onEnd = (): void => hand(relay);
    // As relay() does: an error on one side cuts the other. Both 'close' events come later, so
    // relay() still sees them.
    const onDownError = (e: Error): void => { error ??= e; up.destroy(); hand(relay); };
    const onUpError = (e: Error): void => { error ??= e; if (!down.destroyed) down.resetAndDestroy(); hand(relay); };
    const moved = (to: 'up' | 'down'): void => {
      if (to !== last) { turns++; last = to; }
      if (spliceWorthIt({ bytes: sent + recv, turns })) hand((d, u) => spliceNow(d, u, o));
    };
    let handed = false;
    const hand = (next: (d: Socket, u: Socket) => Promise<RelayResult>): void => {
      if (handed) return;
      handed = true;
      down.off('data', fromDown).off('end', onEnd).off('error', onDownError).off('drain', onDrainDown);
      up.off('data', fromUp).off('end', onEnd).off('error', onUpError).off('drain', onDrainUp);
      resolve(next(down, up).then((r) => ({ ...r, sent: r.sent + sent, received: r.received + recv, ...(r.error ?? error ? { error: r.error ?? error } : {}) })));
    };
    down.on('data', fromDown).on('end', onEnd).on('error', onDownError);
    up.on('data', fromUp).on('end', onEnd).on('error', onUpError);
    // A side whose end was emitted before this was attached (the sniffer read the client's bytes and
    // its half-close: send-and-close clients) emits no 'end' again: relay() takes it from there.
    if (down.readableEnded || up.readableEnded) return hand(relay);
    down.resume();
    up.resume();
  });
}

/** Splices at once (spliceSockets does after the connection proved long-lived). */
export async function spliceNow(down: Socket, up: Socket, o: SpliceOptions): Promise<RelayResult> {
  let userSent = 0, userRecv = 0;
  const fallback = async (reason: string): Promise<RelayResult> => {
    o.onOutcome?.(false, reason);
    letRead(down);
    letRead(up);
    const r = await relay(down, up);
    return { ...r, sent: r.sent + userSent, received: r.received + userRecv };
  };
  // What this process has read goes first, written into the kernel before the sockets are spliced.
  // Another reader may start a handle again while a write is flushed (the fairness gate does), so
  // it is taken over until a turn finds nothing new.
  for (let round = 0; ; round++) {
    const fromDown = takeOver(down), fromUp = takeOver(up);
    for (const c of fromDown) { up.write(c); userSent += c.length; }
    for (const c of fromUp) { down.write(c); userRecv += c.length; }
    if (ended(down) || ended(up)) return fallback('a side had already ended');
    if (down.destroyed || up.destroyed) return fallback('a socket closed during the handover');
    if (fromDown.length === 0 && fromUp.length === 0 && up.writableLength === 0 && down.writableLength === 0) break;
    if (round === MAX_HANDOVER_ROUNDS) return fallback(`bytes still arriving in user space after ${round} handover rounds`);
    await Promise.all([flushed(up), flushed(down)]);
  }
  // Now nothing reads either socket: what waits in the kernel is taken once, down to whole skbs,
  // and written on before the program starts (it waits for that write to be queued; meanwhile new
  // bytes wait as whole skbs, read by no one).
  // A fast sender can keep a queue from emptying within the bound: write on what was read, wait
  // (the queue then fills at most to its receive buffer), and read again.
  for (let round = 0; ; round++) {
    let d, u;
    try {
      d = drainQueue(down);
      u = drainQueue(up);
    } catch (e) {
      return fallback(`reading a socket during the handover failed: ${(e as Error).message}`);
    }
    for (const c of d.chunks) { up.write(c); userSent += c.length; }
    for (const c of u.chunks) { down.write(c); userRecv += c.length; }
    // At EOF the kernel keeps answering 0, so the relay still sees it.
    if (d.eof || u.eof) return fallback('a side had already ended');
    await Promise.all([flushed(up), flushed(down)]);
    if (down.destroyed || up.destroyed) return fallback('a socket closed during the handover');
    if (d.complete && u.complete) break;
    if (round === MAX_HANDOVER_ROUNDS) return fallback(`a receive queue did not empty in ${round} handover rounds`);
  }
  const fdDown = socketFd(down), fdUp = socketFd(up);
  if (fdDown === undefined || fdUp === undefined) return fallback('a socket has no file descriptor');
  let a: SpliceEnd | undefined, b: SpliceEnd | undefined;
  let base: { down: bigint; up: bigint };
  try {
    a = { fd: fdDown, cookie: libc.socketCookie(fdDown, 'client socket') };
    b = { fd: fdUp, cookie: libc.socketCookie(fdUp, 'upstream socket') };
    base = { down: bytesQueued(fdDown), up: bytesQueued(fdUp) };
    o.kernel.add(a, b);
    // Bytes that arrived while neither this process nor the program read them wait in the receive
    // queue; setting SO_RCVLOWAT runs the socket's data_ready, which is now the verdict program.
    libc.setsockoptInt(fdDown, libc.SOL_SOCKET, libc.SO_RCVLOWAT, 1, 'client socket SO_RCVLOWAT');
    libc.setsockoptInt(fdUp, libc.SOL_SOCKET, libc.SO_RCVLOWAT, 1, 'upstream socket SO_RCVLOWAT');
  } catch (e) {
    // Nothing was redirected yet unless the kick failed, which only follows a successful add().
    if (a && b) o.kernel.forget(a.cookie, b.cookie);
    return fallback(`the kernel refused the splice: ${(e as Error).message}`);
  }
  o.onOutcome?.(true);
  return spliced(down, up, a.cookie, b.cookie, base, o.kernel, { sent: userSent, recv: userRecv });
}

/** The life of a spliced pair: this process sees only EOFs, errors and (rarely) bytes the kernel left to it. */
function spliced(down: Socket, up: Socket, cDown: bigint, cUp: bigint, base: { down: bigint; up: bigint }, kernel: SpliceKernel,
  user: { sent: number; recv: number }): Promise<RelayResult> {
  return new Promise((resolve) => {
    let error: Error | undefined;
    let closed = 0;
    // Bytes the kernel left to this process (the program found no peer entry or the peer gone).
    let extraSent = 0, extraRecv = 0;
    const onClose = (): void => {
      if (++closed < 2) return;
      const moved = kernel.forget(cDown, cUp, false);
      resolve({ ...splicedTotals(user, { sent: extraSent, recv: extraRecv }, moved), ...(error ? { error } : {}) });
    };
    down.on('error', (e: Error) => { error ??= e; up.destroy(); });
    up.on('error', (e: Error) => { error ??= e; if (!down.destroyed) down.resetAndDestroy(); });
    down.on('close', onClose);
    up.on('close', onClose);
    down.on('data', (c: Buffer) => { extraSent += c.length; up.write(c); });
    up.on('data', (c: Buffer) => { extraRecv += c.length; down.write(c); });
    // A FIN from one side ends the other once the kernel has queued every byte it redirected.
    const finish = (from: Socket, fromCookie: bigint, to: Socket, toBase: bigint, extra: () => number): void => {
      let tries = 0;
      const check = (): void => {
        if (to.destroyed || to.writableEnded) return;
        const fd = socketFd(to);
        if (fd === undefined) return;
        let done: boolean;
        try {
          done = to.writableLength === 0 && directionFlushed(toBase, kernel.redirected(fromCookie), extra(), bytesQueued(fd));
        } catch (e) {
          error ??= e as Error;
          to.destroy();
          return;
        }
        if (done) return void to.end();
        // The kernel's worker usually sends within microseconds: a few turns of the event loop,
        // then timers backing off to 50 ms (a slow receiver may take long).
        if (++tries <= IMMEDIATE_CHECKS) return void setImmediate(check);
        setTimeout(check, Math.min(50, 2 ** (tries - IMMEDIATE_CHECKS - 1)));
      };
      from.once('end', check);
    };
    finish(down, cDown, up, base.up, () => extraSent);
    finish(up, cUp, down, base.down, () => extraRecv);
    letRead(down);
    letRead(up);
    down.resume();
    up.resume();
  });
}
