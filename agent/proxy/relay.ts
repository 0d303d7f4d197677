import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { pump, type Pumping } from '../core/pump';

export interface RelayResult {
  /** bytes from the downstream (client) side to the upstream side */
  sent: number;
  /** bytes from the upstream side back to the client */
  received: number;
  error?: Error;
}

/**
 * Moves bytes both ways until both directions are done. pump() gives backpressure (a slow reader
 * pauses the writer) and half-close (a FIN from one side becomes end() on the other, while the
 * other direction keeps flowing). An error on one side resets the other (a socket with a TCP reset,
 * any other stream is destroyed). The upstream may be a socket (direct) or a tunnel stream.
 */
export function relay(downstream: Duplex, upstream: Duplex): Promise<RelayResult> {
  return new Promise((resolve) => new Relay(downstream, upstream, resolve).start());
}

const kRelay = Symbol('weft.relay');
type Relayed = Duplex & { [kRelay]?: Relay };

/**
 * One relayed connection in one object, its listeners shared by every relay (they find it on the
 * stream they are called on): an open connection held a context and six closures for it (about
 * 0.45 KiB, heap snapshot in docs/memory.md).
 */
class Relay {
  private error: Error | undefined;
  private closed = 0;
  private out: Pumping | undefined;
  private back: Pumping | undefined;

  constructor(readonly downstream: Duplex, readonly upstream: Duplex, private readonly resolve: (r: RelayResult) => void) {}

  start(): void {
    const { downstream, upstream } = this;
    (downstream as Relayed)[kRelay] = this;
    (upstream as Relayed)[kRelay] = this;
    downstream.on('error', onDownstreamError);
    upstream.on('error', onUpstreamError);
    downstream.on('close', onRelayClose);
    upstream.on('close', onRelayClose);
    this.out = pump(downstream, upstream);
    this.back = pump(upstream, downstream);
    downstream.resume();
  }

  downstreamFailed(e: Error): void {
    this.error ??= e;
    this.upstream.destroy();
  }

  upstreamFailed(e: Error): void {
    this.error ??= e;
    const d = this.downstream;
    if (d.destroyed) return;
    if (typeof (d as Socket).resetAndDestroy === 'function') (d as Socket).resetAndDestroy();
    else d.destroy();
  }

  sideClosed(): void {
    if (++this.closed < 2) return;
    const error = this.error;
    this.resolve({ sent: this.out!.bytes, received: this.back!.bytes, ...(error ? { error } : {}) });
  }
}

function onDownstreamError(this: Relayed, e: Error): void {
  this[kRelay]!.downstreamFailed(e);
}

function onUpstreamError(this: Relayed, e: Error): void {
  this[kRelay]!.upstreamFailed(e);
}

function onRelayClose(this: Relayed): void {
  this[kRelay]!.sideClosed();
}
