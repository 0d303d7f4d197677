/**
 * The pure decisions of same-node splicing (splice.ts does the I/O): which connections are
 * spliced, when a direction's bytes have all left, and what the access log counts. Tested without
 * sockets (test/unit/splice-decision.test.ts).
 */
import type { AppProtocol } from '../http/protocol';

export type SpliceChoice = { splice: true } | { splice: false; reason: string };

export interface SpliceFacts {
  /** how the connection reached the proxy: only `local` (both pods on this node) is spliced */
  path: 'hbone' | 'local' | 'plaintext';
  /** the protocol delivery settled on: HTTP is served request by request, never spliced */
  protocol: AppProtocol;
  /** whether policy allowed the connection */
  allowed: boolean;
  /** the kernel side is loaded and ProxyConfig spec.sameNodeSplice is not false */
  available: boolean;
  /** the client side is a socket of this process (not a tunnel stream) */
  socket: boolean;
}

/**
 * Spliced: a same-node connection, plain TCP (no HTTP: no request to judge, route or report),
 * allowed by L4 policy, with the kernel side loaded and the switch on. Everything else is relayed.
 */
export function chooseSplice(f: SpliceFacts): SpliceChoice {
  if (!f.available) return { splice: false, reason: 'splicing is off (ProxyConfig spec.sameNodeSplice) or its kernel side is not loaded' };
  if (f.path !== 'local') return { splice: false, reason: `arrived over ${f.path}, not from a pod on this node` };
  if (f.protocol !== 'tcp') return { splice: false, reason: `${f.protocol}: requests are judged, routed and reported one by one` };
  if (!f.allowed) return { splice: false, reason: 'denied' };
  if (!f.socket) return { splice: false, reason: 'the client side is not a socket' };
  return { splice: true };
}

/** Bytes a young connection moves through user space before it is spliced anyway. */
export const SPLICE_AFTER_BYTES = 64 * 1024;

/**
 * Whether a connection relayed so far has proven long-lived enough to splice, and where
 * (undefined: not yet). It has when it has started a second exchange (the direction of its bytes
 * changed twice: request, response, next request; or greeting, command, reply), or has moved
 * SPLICE_AFTER_BYTES. A connection that closes after one exchange is never spliced: setting up and
 * forgetting a splice costs more than its bytes. A second exchange means its
 * senders pause, and a pod that pauses switches to the kernel at its next sendmsg(): 'pods'
 * (splicePods, when both pods' sockets are on the kernel's side). A connection that proved itself
 * by volume alone is streaming, and a sender that never pauses never switches: 'proxy' (the
 * sk_skb splice at the proxy's sockets, spliceNow). Pure.
 */
export function spliceWay(c: { bytes: number; turns: number }): 'pods' | 'proxy' | undefined {
  if (c.turns >= 3) return 'pods';
  return c.bytes >= SPLICE_AFTER_BYTES ? 'proxy' : undefined;
}

/**
 * Bytes a direction of a connection spliced at the pods' sendmsg() may still arrive at the proxy
 * before the connection goes over to the splice at the proxy's sockets: its sender is never idle
 * (it always has unacked bytes), so its messages never switch (docs/splice.md).
 */
export const POD_SPLICE_GIVE_UP_BYTES = 16 * 1024 * 1024;

/**
 * Bytes a direction switched at the pod's sendmsg() may count twice in one look before it is taken
 * for spinning (spinning()).
 */
export const SPIN_WASTE_BYTES = 4 * 1024 * 1024;
/** How often a switched connection is looked at while its verdict counts, and at most while it does not. */
export const SPIN_WATCH_MIN_MS = 100;
export const SPIN_WATCH_MAX_MS = 10_000;
/**
 * The look after one that first saw a direction count (at the watch's start or after a quiet
 * spell): that look only records what was taken, and this one judges the interval between them.
 */
export const SPIN_WATCH_FIRST_MS = 50;

/**
 * A switched direction carrying at least this many bytes a second keeps its switch although its pod
 * retries: its reader is fast, so the pod's spin costs it little per byte (a 256 MiB download read
 * at full speed: the server's CPU 0.44-0.48 s, against 0.28-0.34 s over TCP alone), and the relay
 * would carry less. A pod spinning for a slower reader costs up to a core for those bytes (0.65 s
 * of CPU for 8 MiB read at 4 MiB/s), where the relay's TCP makes it wait (docs/splice.md, "Backpressure").
 */
export const SPIN_KEEP_BYTES_PER_S = 256 * 1024 * 1024;

/**
 * Whether a direction switched at its pod's sendmsg() is spinning for a slow reader (docs/splice.md,
 * "Backpressure"): in the `ms` since the last look the verdict counted `counted` bytes (every
 * redirect it decided, a message sent again after its push found no room counted again) and the
 * proxy socket took `taken` of them. A pod whose proxy socket has no room gets EAGAIN while its own
 * socket stays writable, and a non-blocking pod retries at once: then the verdict counts far more
 * than the socket takes. Spinning when the difference is over SPIN_WASTE_BYTES and over what was
 * taken, and the socket took less than SPIN_KEEP_BYTES_PER_S. Pure.
 */
export function spinning(counted: number, taken: number, ms: number): boolean {
  const waste = counted - taken;
  return waste > SPIN_WASTE_BYTES && waste > taken && taken * 1000 < SPIN_KEEP_BYTES_PER_S * ms;
}

/**
 * The next look's delay: soon while the verdict counts (sooner still when this look could not judge,
 * its previous one having seen nothing taken: SPIN_WATCH_FIRST_MS), doubling to SPIN_WATCH_MAX_MS
 * while it does not. Pure.
 */
export function nextSpinWatch(ms: number, counting: boolean, judged = true): number {
  if (!counting) return Math.min(SPIN_WATCH_MAX_MS, ms * 2);
  return judged ? SPIN_WATCH_MIN_MS : SPIN_WATCH_FIRST_MS;
}

/**
 * A direction is flushed when its destination socket has taken into its send queue everything the
 * kernel redirected to it plus what this process wrote after the splice began. `base` is the
 * socket's queued count when the splice began; `queued` is its count now (both acked + SIOCOUTQ).
 */
export function directionFlushed(base: bigint, redirected: bigint, extra: number, queued: bigint): boolean {
  return queued - base >= redirected + BigInt(extra);
}

/**
 * The access log's counts of a spliced connection: what this process moved before the splice
 * (and any bytes the kernel left to it), plus what the kernel moved. `sent` is from the client,
 * `received` back to it.
 */
export function splicedTotals(user: { sent: number; recv: number }, extra: { sent: number; recv: number }, moved: { fromA: bigint; fromB: bigint }): { sent: number; received: number } {
  return { sent: user.sent + extra.sent + Number(moved.fromA), received: user.recv + extra.recv + Number(moved.fromB) };
}
