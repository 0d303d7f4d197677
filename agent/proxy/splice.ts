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
import { takeQueuedReads } from '../core/pump';
import type { RelayResult } from './relay';
import { relay, watchedRelay } from './relay';
import { directionFlushed, nextSpinWatch, POD_SPLICE_GIVE_UP_BYTES, SPIN_WATCH_MIN_MS, spinning, spliceWay, splicedTotals } from './splice-decision';
import { ServerArming } from './splice-arming';
import { podTuple, type SpliceEnd, type SpliceKernel } from './splice-kernel';

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

/** struct tcp_info (Linux 4.19+): tcpi_notsent_bytes (u32), tcpi_bytes_sent and tcpi_bytes_retrans (u64). */
const TCPI_NOTSENT_BYTES = 144;
const TCPI_BYTES_SENT = 200;
const TCPI_BYTES_RETRANS = 208;
const TCP_INFO_SENT_READ = 216;

/**
 * Bytes this socket has taken into its send queue so far, from one TCP_INFO (which the kernel fills
 * under the socket's lock): sent once (bytes sent less those sent again) plus not sent yet. Exact
 * at any moment, where bytesQueued() reads two counters in two calls and an ACK between them makes
 * it short by what that ACK acknowledged (the access log of a spliced 1 GiB was 65-195 KB short).
 * Only differences are used.
 */
export function bytesTaken(fd: number): bigint {
  const info = libc.getsockopt(fd, libc.IPPROTO_TCP, libc.TCP_INFO, TCP_INFO_SENT_READ, `fd ${fd} TCP_INFO`);
  if (info.length < TCP_INFO_SENT_READ) throw new Error(`TCP_INFO of fd ${fd} is ${info.length} bytes: the kernel has no tcpi_bytes_sent (Linux 4.19)`);
  return info.readBigUInt64LE(TCPI_BYTES_SENT) - info.readBigUInt64LE(TCPI_BYTES_RETRANS) + BigInt(info.readUInt32LE(TCPI_NOTSENT_BYTES));
}

/**
 * Stops this process reading `s` and returns what Node had read but nobody consumed yet. The
 * stream's `reading` flag is left set: Node then asks the handle for nothing (its maybeReadMore,
 * queued by the push that delivered the last chunk, restarted reading during the handover, and
 * libuv read part of an skb the program then sent whole: 64 KiB twice). letRead() clears it.
 */
function takeOver(s: Socket): Buffer[] {
  s.pause();
  // A pooled socket's reads that no pump took wait in its own queue (pump.ts), before anything Node buffered.
  const chunks = takeQueuedReads(s);
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

/**
 * Bytes written to `s` that have not reached the kernel yet. Not `writableLength` alone: that
 * counts the chunk being written whole until its callback, although libuv may have put most of it
 * in the kernel already (left in its queue: the handle's `writeQueueSize`); added to the kernel's
 * own count, a large handover write was counted twice in part (an access log 89,776 bytes over).
 */
export function unflushed(s: Socket): number {
  const state = (s as unknown as { _writableState?: { writing?: boolean; writelen?: number } })._writableState;
  const queued = (s as unknown as { _handle?: { writeQueueSize?: number } | null })._handle?.writeQueueSize;
  if (!state?.writing || typeof state.writelen !== 'number' || typeof queued !== 'number') return s.writableLength;
  return s.writableLength - (state.writelen - queued);
}

/** Resolves once everything written to `s` so far is in the kernel's send queue. */
function flushed(s: Socket): Promise<void> {
  if (s.writableLength === 0) return Promise.resolve();
  return new Promise((resolve) => s.write(EMPTY, () => resolve()));
}

/** How long a handover waits for its writes to reach the kernel before it relays instead. */
const HANDOVER_FLUSH_MS = 250;

/**
 * Whether everything written to both sockets reached the kernel within HANDOVER_FLUSH_MS. While a
 * handover waits, it reads neither socket: a pod that reads only once its own writes drain (an
 * echo server, a proxy) waits for this process, which waits for it (a slow echo spliced at the
 * pods' sendmsg() hung here when it went over to the proxy's sockets). Then the caller relays, as
 * it does for a reader too slow to take the writes within the bound.
 */
function flushedBoth(up: Socket, down: Socket): Promise<boolean> {
  if (up.writableLength === 0 && down.writableLength === 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), HANDOVER_FLUSH_MS);
    void Promise.all([flushed(up), flushed(down)]).then(() => { clearTimeout(timer); resolve(true); });
  });
}

/**
 * Splices a same-node connection (spliceSockets with this node's kernel side bound). `announce`,
 * called before the upstream connects to the pod at `ip`:`port`, lets the pod's socket accepted
 * there be entered on the kernel's side; what it returns withdraws that once the connect settled.
 */
export type Splicer = ((client: Socket, upstream: Socket, head?: Buffer, arm?: boolean) => Promise<RelayResult>)
  & { announce?(ip: string, port: number): () => void; arming?: ServerArming };

/**
 * A Splicer over `kernel`. `arming` says which destinations to announce and arm (splice-arming.ts):
 * the caller asks it before announcing, passes its answer as `arm`, and records each connection's
 * server bytes when it ends.
 */
export function splicerFor(kernel: SpliceKernel): Splicer {
  return Object.assign((client: Socket, upstream: Socket, head?: Buffer, arm = true) => spliceSockets(client, upstream, { kernel, arm }, head), {
    announce: (ip: string, port: number) => kernel.expect(ip, port),
    arming: new ServerArming(),
  });
}

export interface SpliceOptions {
  kernel: SpliceKernel;
  /** false: the server's socket is not armed before the first byte (its destination has gone quiet, splice-arming.ts); absent: armed */
  arm?: boolean;
  /** told once per connection whether it was spliced, and why not */
  onOutcome?: (spliced: boolean, reason?: string) => void;
}

/**
 * The spin watchdog (docs/splice.md, "Backpressure"): a pod switched at its sendmsg() whose proxy
 * socket has no room gets EAGAIN while its own socket stays writable, and a non-blocking pod retries
 * at once, for as long as its reader is behind. Looks every SPIN_WATCH_MIN_MS while `counts()` (the
 * verdict's count of each watched direction, map lookups) moves, backing off to 10 s while it does
 * not. A look whose counts moved since the previous one, which had seen them move too (not the
 * watch's start: bytes may have begun late in that interval), reads `taken()` (what each direction's proxy socket
 * took of them, TCP_INFO) and tells whether one spins for a slow reader over that interval
 * (splice-decision.ts spinning()): then `onSpin()`, once, and the watch ends. A probe that answers
 * undefined or throws ends the watch (its sockets are going); so does stop().
 */
export function watchSpin(counts: () => bigint[] | undefined, taken: () => number[] | undefined, onSpin: () => void): { stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  let interval = SPIN_WATCH_MIN_MS;
  // The previous look: its counts, and what was taken then when it read that (undefined when it did not).
  let seen: { counts: bigint[]; taken?: number[]; at: number } | undefined;
  const start = performance.now();
  const look = (): void => {
    try {
      const c = counts();
      if (c === undefined) return;
      const now = performance.now();
      // The watch's start is a quiet look: the bytes may have begun anywhere in the first interval
      // (a server answers after its request and its own setup), so judged from the start a fast
      // reader's first bytes read as slow. The first look that sees them records what was taken.
      const before = seen ?? { counts: c.map(() => 0n), at: start };
      const counting = c.some((n, i) => n !== before.counts[i]);
      let t: number[] | undefined;
      if (counting) {
        t = taken();
        if (t === undefined) return;
        const from = before.taken;
        if (from && c.some((n, i) => spinning(Number(n - before.counts[i]!), t![i]! - from[i]!, now - before.at))) return onSpin();
      }
      seen = { counts: c, taken: t, at: now };
      // Not judged (nothing seen taken before): next time, soon, since a slow reader's pod spins until then.
      interval = nextSpinWatch(interval, counting, before.taken !== undefined);
    } catch {
      return;
    }
    timer = setTimeout(look, interval);
    timer.unref();
  };
  timer = setTimeout(look, interval);
  timer.unref();
  return { stop: () => clearTimeout(timer) };
}

/**
 * A server pod's socket armed before its first byte (armServer): `tuple` names it (`client` the
 * client pod's), `fd` is the client's accepted socket its messages leave from. `seen` is what that
 * socket had taken when the client last sent; `atFin` what it had taken from the kernel by the
 * server's FIN.
 */
interface Armed { tuple: Buffer; client: Buffer; fd: number; seen: bigint; atFin?: number }

/**
 * Bytes of the server's direction that `down` (the client's accepted socket) took from the kernel,
 * not from this process: what its send queue took in all (bytesTaken: it is a fresh socket, see
 * armServer) less what this process wrote to it. Exact once the server's messages no longer pass
 * the verdict (its FIN, or its socket out of weft_splice_pods) and every write here is flushed.
 */
function kernelCarried(down: Socket, fd: number): number {
  return Number(bytesTaken(fd)) + unflushed(down) - down.bytesWritten;
}

/**
 * Arms the server pod's socket of a connection about to be spliced, before the first byte is
 * written to it (the caller then writes the client's first bytes): a server that answers with a
 * download sends it straight out of the client's accepted socket from its first sendmsg(), where
 * a connection proven by volume alone would go to the proxy's sockets (at most 0.41x direct in
 * bulk, docs/splice.md). undefined when it cannot be: no pods' side, or the client's socket has
 * been written to (its send queue's count must be this connection's server bytes alone).
 */
function armServer(down: Socket, up: Socket, k: SpliceKernel): Armed | undefined {
  if (!k.podSide || down.bytesWritten !== 0) return undefined;
  const fd = socketFd(down), t = podTuples(down, up);
  if (fd === undefined || !t) return undefined;
  try {
    k.armServer({ fd, cookie: libc.socketCookie(fd, 'client socket') }, t.server);
  } catch {
    return undefined;
  }
  return { tuple: t.server, client: t.client, fd, seen: 0n };
}

/**
 * Moves bytes both ways between `down` (the client's accepted socket) and `up` (the socket to the
 * destination pod, pooled or not: pump.ts) until both directions are done. It relays in user space
 * (watchedRelay) while the connection is young and splices it in the kernel once it has proven long-lived
 * (spliceWay: a second exchange, or enough bytes): a connection that closes after one
 * exchange would pay the splice's setup for nothing. Before the first byte is written to `up`
 * (`head`: the client's first bytes, read while sniffing), the server's socket is armed
 * (armServer), so its replies leave in the kernel from its first byte. The caller gets the same
 * RelayResult either way (`sent` without `head`).
 */
export function spliceSockets(down: Socket, up: Socket, o: SpliceOptions, head?: Buffer): Promise<RelayResult> {
  const arm = up.bytesWritten === 0 && o.arm !== false ? armServer(down, up, o.kernel) : undefined;
  let turns = 0, last: 'up' | 'down' | undefined, sent = 0, recv = 0;
  if (head !== undefined && head.length > 0) {
    up.write(head);
    turns = 1;
    last = 'up';
  }
  if (arm) {
    // The server's FIN follows every byte its sendmsg() redirected: what the client's socket took by
    // then is the direction's count (read before the relay's end() queues the FIN there).
    up.once('end', () => {
      try {
        arm.atFin = kernelCarried(down, arm.fd);
      } catch {
        // closed meanwhile: the verdict's count stands in
      }
    });
  }
  return new Promise((resolve) => {
    // Relayed here until spliceWay() hands it to the kernel, or to the end.
    let handed = false;
    // An armed server whose client's socket has no room spins on EAGAIN (watchSpin): its sockets go
    // back to TCP, and this process relays to the end with TCP's backpressure on the server.
    const armWatch = arm && watchSpin(() => [o.kernel.redirectedBy(arm.tuple)], () => [kernelCarried(down, arm.fd)], () => {
      handed = true;
      o.kernel.noteSpinHandover();
      try {
        o.kernel.dropPodSockets(arm.client, arm.tuple);
      } catch {
        // the kernel side is gone: so is the verdict
      }
    });
    const moved = (to: 'up' | 'down'): void => {
      if (to !== last) { turns++; last = to; }
      const way = spliceWay({ bytes: sent + recv, turns });
      if (way === undefined) return;
      handed = true;
      if (armWatch) armWatch.stop();
      const before = relaying.detach();
      const next = way === 'pods' ? splicePods(down, up, o, arm) ?? atProxy(down, up, o, arm) : atProxy(down, up, o, arm);
      resolve(next.then((r) => ({ ...r, sent: r.sent + before.sent, received: r.received + before.received,
        ...(r.error ?? before.error ? { error: r.error ?? before.error } : {}) })));
    };
    const relaying = watchedRelay(down, up, (to, n) => {
      if (handed) return;
      // A half-closed connection is relayed to the end (a socket past ESTABLISHED cannot enter a sockhash).
      if (down.readableEnded || up.readableEnded) return void (handed = true);
      if (to === 'down') {
        recv += n;
        return moved('down');
      }
      sent += n;
      // An armed server's replies never reach this process: its direction moved if the client's
      // socket took bytes since the client last sent.
      if (arm && last !== 'down') {
        try {
          const taken = bytesTaken(arm.fd);
          if (taken > arm.seen) { arm.seen = taken; moved('down'); }
        } catch {
          // closed: the 'close' and 'error' events follow
        }
      }
      if (!handed) moved('up');
    });
    if (armWatch) {
      // Either side's end settles it: relayed to the end, as a connection that was never armed.
      const ended = (): void => { handed = true; armWatch.stop(); };
      down.once('end', ended);
      up.once('end', ended);
    }
    // Relayed to the end: an armed server's direction adds what the kernel carried (at its FIN).
    void relaying.done.then((r) => {
      // An error ends it without 'end': the watch stops here too (it also stops by itself once the sockets are gone).
      armWatch?.stop();
      if (!arm) return resolve(r);
      let redirected = 0n;
      try {
        redirected = o.kernel.disarmServer(arm.tuple);
      } catch {
        // the map is gone with the kernel side: the FIN's count, or nothing, stands
      }
      const carried = arm.atFin ?? Number(redirected);
      o.kernel.noteMoved(BigInt(carried));
      resolve({ ...r, received: r.received + carried });
    });
  });
}

/**
 * Splices at once (spliceSockets does after the connection proved long-lived). `atBase` is told,
 * right before the sockets' queued counts are taken, what this has written on during its handover.
 */
export async function spliceNow(down: Socket, up: Socket, o: SpliceOptions, atBase?: (written: { sent: number; recv: number }) => void): Promise<RelayResult> {
  let userSent = 0, userRecv = 0;
  const fallback = async (reason: string): Promise<RelayResult> => {
    o.onOutcome?.(false, reason);
    if (!down.destroyed && !up.destroyed) atBase?.({ sent: userSent, recv: userRecv });
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
    if (!await flushedBoth(up, down)) return fallback(`a write did not reach the kernel within ${HANDOVER_FLUSH_MS} ms`);
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
    if (!await flushedBoth(up, down)) return fallback(`a write did not reach the kernel within ${HANDOVER_FLUSH_MS} ms`);
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
    atBase?.({ sent: userSent, recv: userRecv });
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

/**
 * spliceNow(), with the pods' sockets out of weft_splice_pods first: a pod socket left there sends
 * through the sk_msg verdict, and a bulk sender's every message paid for it (a spliced download at
 * 2.2 against 7.0 Gb/s, same-node bench).
 */
function atProxy(down: Socket, up: Socket, o: SpliceOptions, arm?: Armed): Promise<RelayResult> {
  const t = podTuples(down, up);
  if (t) o.kernel.dropPodSockets(t.client, t.server);
  if (!arm) return spliceNow(down, up, o);
  // An armed server's messages take TCP from here; what its sendmsg() redirected before is in the
  // client socket's send queue, read once spliceNow() has flushed its own handover writes.
  let redirected = 0n;
  try {
    redirected = o.kernel.disarmServer(arm.tuple);
  } catch {
    // the kernel side is gone: the count read at the base stands
  }
  let carried: number | undefined;
  const atBase = (): void => {
    try {
      carried = kernelCarried(down, arm.fd);
    } catch {
      // closed: the verdict's count stands in
    }
  };
  return spliceNow(down, up, o, atBase).then((r) => {
    const c = carried ?? Number(redirected);
    o.kernel.noteMoved(BigInt(c));
    return { ...r, received: r.received + c };
  });
}

/** The two pods' sockets' tuples, from the proxy's two sockets; undefined when a socket has no address. */
function podTuples(down: Socket, up: Socket): { client: Buffer; server: Buffer } | undefined {
  if (!down.remoteAddress || !down.localAddress || !up.remoteAddress || !up.localAddress) return undefined;
  try {
    // The client pod's socket is the accepted one seen from its other end; the server pod's, the upstream's.
    return { client: podTuple(down.remoteAddress, down.remotePort!, down.localAddress, down.localPort!),
      server: podTuple(up.remoteAddress, up.remotePort!, up.localAddress, up.localPort!) };
  } catch {
    return undefined;
  }
}

/**
 * Splices at the pods' own sendmsg() (docs/splice.md, "At the pods' own sendmsg()") when
 * both pods' sockets are on the kernel's side; undefined when not (spliceNow() then splices at the
 * proxy's sockets). The proxy keeps relaying in user space, and tells the kernel after each write
 * how much of each pod's bytes it has written on: a pod socket's next message leaves straight out
 * of the proxy's socket once nothing it sent earlier is still on its way, and from then on the
 * proxy sees only its FIN. A direction that keeps arriving here (a sender never idle: it always
 * has unacked bytes) for POD_SPLICE_GIVE_UP_BYTES goes over to spliceNow() with the other.
 * spliceSockets() splices this way from a connection's second exchange (spliceWay). From its first
 * byte, a bulk download switched at once (0.86x direct against 0.37x), but every connection paid the
 * setup, the ones that end after one exchange too: twice the proxy's CPU per new connection
 * (946 against 465 µs, same-node bench).
 */
export function splicePods(down: Socket, up: Socket, o: SpliceOptions, arm?: Armed): Promise<RelayResult> | undefined {
  const k = o.kernel;
  if (!k.podSide) return undefined;
  const fdDown = socketFd(down), fdUp = socketFd(up);
  const t = podTuples(down, up);
  if (fdDown === undefined || fdUp === undefined || !t) return undefined;
  const { client, server } = t;
  try {
    if (!k.hasPodSocket(client) || !k.hasPodSocket(server)) return undefined;
  } catch {
    return undefined;
  }
  // Nothing may be read past this point and lost: pause now, take what Node holds, write it on.
  const held = { down: takeOver(down), up: takeOver(up) };
  // Until podSpliced() has its own listeners (after a flush), an error is kept, not thrown.
  const setup: { error?: Error } = {};
  const keep = (e: Error): void => { setup.error ??= e; };
  down.on('error', keep);
  up.on('error', keep);
  return podSpliced(down, up, o, fdDown, fdUp, client, server, held, setup, arm !== undefined).finally(() => {
    down.off('error', keep);
    up.off('error', keep);
  });
}

async function podSpliced(down: Socket, up: Socket, o: SpliceOptions, fdDown: number, fdUp: number, client: Buffer, server: Buffer,
  held: { down: Buffer[]; up: Buffer[] }, setup: { error?: Error }, armed: boolean): Promise<RelayResult> {
  const k = o.kernel;
  let userSent = 0, userRecv = 0;
  // Each direction's bytes written before this took over: the caller counts those.
  const before = { up: up.bytesWritten, down: down.bytesWritten };
  for (const c of held.down) { up.write(c); userSent += c.length; }
  for (const c of held.up) { down.write(c); userRecv += c.length; }
  const relayFrom = async (reason: string): Promise<RelayResult> => {
    o.onOutcome?.(false, reason);
    // relayed, the pods' messages need not go through the verdict either
    k.dropPodSockets(client, server);
    // An armed server's replies so far went out of the client's socket without this process.
    let carried = 0;
    if (armed) {
      try {
        const redirected = k.disarmServer(server);
        carried = down.destroyed ? Number(redirected) : kernelCarried(down, fdDown);
      } catch {
        // closed meanwhile: nothing more to learn
      }
      k.noteMoved(BigInt(carried));
    }
    letRead(down);
    letRead(up);
    const r = await relay(down, up);
    const error = r.error ?? setup.error;
    return { ...r, sent: r.sent + userSent, received: r.received + userRecv + carried, ...(error ? { error } : {}) };
  };
  // Every write so far in the kernel: then each socket's bytesWritten is what the kernel has of that direction.
  if (!await flushedBoth(up, down)) return relayFrom(`a write did not reach the kernel within ${HANDOVER_FLUSH_MS} ms`);
  if (ended(down) || ended(up)) return relayFrom('a side had already ended');
  if (down.destroyed || up.destroyed || setup.error) return relayFrom('a socket closed during the handover');
  let a: SpliceEnd, b: SpliceEnd;
  // What each proxy socket's send queue had taken at its start (bytesTaken() less every byte written
  // to it, all in the kernel now): its queue later counts every byte of its direction, written here
  // or redirected by the pod's sendmsg() (docs/splice.md, "Exact accounting").
  let origin: { up: bigint; down: bigint };
  // An armed server's bytes the kernel carried before addPods() starts the verdict's count again:
  // only for an end without the server's FIN (then the verdict's count stands in for the rest).
  let armedBefore = 0;
  try {
    a = { fd: fdDown, cookie: libc.socketCookie(fdDown, 'client socket') };
    b = { fd: fdUp, cookie: libc.socketCookie(fdUp, 'upstream socket') };
    // An armed server's socket has sent out of the client's socket since its first byte: that socket's
    // count is all this connection's (armServer), so its origin is zero.
    origin = { up: bytesTaken(fdUp) - BigInt(up.bytesWritten), down: armed ? 0n : bytesTaken(fdDown) - BigInt(down.bytesWritten) };
    if (armed) armedBefore = kernelCarried(down, fdDown);
    k.addPods(a, b, client, server, { client: up.bytesWritten, server: down.bytesWritten });
  } catch (e) {
    return relayFrom(`the kernel refused the splice: ${(e as Error).message}`);
  }
  o.onOutcome?.(true);
  return new Promise((resolve) => {
    let error: Error | undefined = setup.error;
    let closed = 0;
    let handedOver = false;
    /**
     * One direction from `from` to `to`, for the pod socket `tuple`: what arrives here is written on,
     * and once in the kernel, counted and told (`relayed`: every byte of the direction written to
     * `to`, from the connection's start). Past POD_SPLICE_GIVE_UP_BYTES since addPods() it gives up.
     */
    const leg = (from: Socket, to: Socket, tuple: Buffer, count: (n: number) => void) => {
      let since = 0, relayed = to.bytesWritten;
      const onDrain = (): void => { from.resume(); };
      const onData = (c: Buffer): void => {
        const n = c.length;
        count(n);
        since += n;
        if (!to.write(c, () => { relayed += n; if (!handedOver && !unswitched) tell(() => k.setRelayed(tuple, relayed)); })) { from.pause(); to.once('drain', onDrain); }
        if (since >= POD_SPLICE_GIVE_UP_BYTES && !unswitched) giveUp();
      };
      return { onData, onDrain };
    };
    const toUp = leg(down, up, client, (n) => { userSent += n; });
    const toDown = leg(up, down, server, (n) => { userRecv += n; });
    const tell = (f: () => void): void => {
      try {
        f();
      } catch (e) {
        error ??= e as Error;
        up.destroy();
        if (!down.destroyed) down.resetAndDestroy();
      }
    };
    /**
     * A direction's bytes since this took over, read from its proxy socket's send queue when the
     * sender's FIN arrives: by then its sendmsg() has queued every byte it redirected, and this
     * process has not queued the FIN yet. undefined when the socket cannot say (then the verdict's
     * count stands in, which counts a message twice if its redirect failed and it was sent again).
     */
    const sinceTakeover = (s: Socket, fd: number, from: bigint, writtenBefore: number): number | undefined => {
      try {
        return Number(bytesTaken(fd) - from) + unflushed(s) - writtenBefore;
      } catch {
        return undefined;
      }
    };
    let sentTotal: number | undefined, recvTotal: number | undefined;
    // The pod's FIN travels TCP after every byte its sendmsg() redirected, so it can be passed on at once.
    const onDownEnd = (): void => { sentTotal = sinceTakeover(up, fdUp, origin.up, before.up); up.end(); };
    const onUpEnd = (): void => { recvTotal = sinceTakeover(down, fdDown, origin.down, before.down); down.end(); };
    const onDownError = (e: Error): void => { error ??= e; up.destroy(); };
    const onUpError = (e: Error): void => { error ??= e; if (!down.destroyed) down.resetAndDestroy(); };
    const forget = (open: boolean): { client: bigint; server: bigint } => k.forgetPods(a.cookie, b.cookie, client, server, open);
    const onClose = (): void => {
      if (handedOver || ++closed < 2) return;
      watch.stop();
      const moved = unswitched ?? forget(false);
      const sent = sentTotal ?? userSent + Number(moved.client), received = recvTotal ?? userRecv + armedBefore + Number(moved.server);
      k.noteMoved(BigInt(sent - userSent + received - userRecv));
      resolve({ sent, received, ...(error ? { error } : {}) });
    };
    const detach = (): void => {
      watch.stop();
      down.off('data', toUp.onData).off('end', onDownEnd).off('error', onDownError).off('close', onClose).off('drain', toDown.onDrain);
      up.off('data', toDown.onData).off('end', onUpEnd).off('error', onUpError).off('close', onClose).off('drain', toUp.onDrain);
    };
    // A sender that is never idle never switches: both directions go over to the splice at the proxy's sockets.
    const giveUp = (): void => {
      if (handedOver) return;
      handedOver = true;
      detach();
      const moved = forget(true);
      // Out of the pods' sockhash too: their sendmsg() goes back to plain TCP (through the verdict
      // every message of a bulk sender paid a copy, and the spliced download ran at 2 Gb/s).
      k.dropPodSockets(client, server);
      // The pods' messages take TCP again from here. What they redirected is counted from the send
      // queues when spliceNow() takes its own counts, after its handover: a sendmsg() that found its
      // entry just before it went has long finished by then. What spliceNow() wrote meanwhile is its own.
      let upTo = { sent: userSent + Number(moved.client), recv: userRecv + armedBefore + Number(moved.server) };
      const atBase = (written: { sent: number; recv: number }): void => {
        // A direction whose FIN was passed on has its count already: read again, a FIN still queued would count one.
        const sent = sentTotal ?? sinceTakeover(up, fdUp, origin.up, before.up), recv = recvTotal ?? sinceTakeover(down, fdDown, origin.down, before.down);
        if (sent !== undefined && recv !== undefined) upTo = { sent: sent - written.sent, recv: recv - written.recv };
      };
      const carried = { sent: userSent, recv: userRecv };
      resolve(spliceNow(down, up, o, atBase).then((r) => {
        k.noteMoved(BigInt(upTo.sent - carried.sent + upTo.recv - carried.recv));
        return { ...r, sent: r.sent + upTo.sent, received: r.received + upTo.recv, ...(r.error ?? error ? { error: r.error ?? error } : {}) };
      }));
    };
    /**
     * A switched pod spinning on a full proxy socket (the watchdog, below): its sockets go back to
     * TCP and this process relays from here, with TCP's backpressure on the pods. Not over to the
     * proxy's sockets: after that change mid-stream with a slow reader, the kernel's worker stalled
     * in 1 run of 14-20 (docs/splice.md, "Backpressure"). Each direction's count still comes from its
     * proxy socket's queue at its FIN, which holds what the kernel redirected before.
     */
    let unswitched: { client: bigint; server: bigint } | undefined;
    const unswitch = (): void => {
      if (handedOver || unswitched) return;
      watch.stop();
      k.noteSpinHandover();
      unswitched = forget(false);
      k.dropPodSockets(client, server);
    };
    // The spin watchdog (watchSpin), on both directions; it ends when a side has closed. What the
    // kernel carried into each proxy socket since the takeover: its queue's count less this process's
    // writes (and, for an armed server, less what its sendmsg() carried before addPods()).
    const watch = watchSpin(() => {
      if (handedOver || closed > 0 || unswitched) return undefined;
      return [k.redirectedBy(client), k.redirectedBy(server)];
    }, () => {
      const up_ = sinceTakeover(up, fdUp, origin.up, before.up), down_ = sinceTakeover(down, fdDown, origin.down, before.down);
      return up_ === undefined || down_ === undefined ? undefined : [up_ - userSent, down_ - userRecv - armedBefore];
    }, unswitch);
    down.on('data', toUp.onData).on('end', onDownEnd).on('error', onDownError).on('close', onClose);
    up.on('data', toDown.onData).on('end', onUpEnd).on('error', onUpError).on('close', onClose);
    letRead(down);
    letRead(up);
    down.resume();
    up.resume();
  });
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
      kernel.noteMoved(moved.fromA + moved.fromB);
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
