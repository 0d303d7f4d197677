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
  return new Promise((resolve) => new Relay(downstream, upstream, resolve, undefined).start());
}

/** Told of each chunk a watched relay has written on: `'up'` from downstream to upstream, `'down'` back. */
export type RelayWatch = (to: 'up' | 'down', bytes: number) => void;

/** A relay someone may take its streams back from (a splice's handover). */
export interface WatchedRelay {
  /** resolves as relay()'s promise does; never, once detached */
  readonly done: Promise<RelayResult>;
  /**
   * Stops relaying, synchronously, and returns what it moved so far (and the first error): every
   * chunk read has been written on (corked ones too), no listener of the relay's is left, and the
   * streams are left flowing or paused as they were, for the caller to stop or read at once.
   */
  detach(): RelayResult;
}

/** relay(), telling `watch` of every chunk it moves, until detached. */
export function watchedRelay(downstream: Duplex, upstream: Duplex, watch: RelayWatch): WatchedRelay {
  let r!: Relay;
  const done = new Promise<RelayResult>((resolve) => { r = new Relay(downstream, upstream, resolve, watch); });
  r.start();
  return { done, detach: () => r.detach() };
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

  constructor(readonly downstream: Duplex, readonly upstream: Duplex, private readonly resolve: (r: RelayResult) => void,
    private readonly watch: RelayWatch | undefined) {}

  start(): void {
    const { downstream, upstream, watch } = this;
    (downstream as Relayed)[kRelay] = this;
    (upstream as Relayed)[kRelay] = this;
    downstream.on('error', onDownstreamError);
    upstream.on('error', onUpstreamError);
    downstream.on('close', onRelayClose);
    upstream.on('close', onRelayClose);
    this.out = pump(downstream, upstream, watch && ((n) => watch('up', n)));
    this.back = pump(upstream, downstream, watch && ((n) => watch('down', n)));
    downstream.resume();
  }

  detach(): RelayResult {
    const { downstream, upstream } = this;
    this.out!.stop();
    this.back!.stop();
    downstream.off('error', onDownstreamError).off('close', onRelayClose);
    upstream.off('error', onUpstreamError).off('close', onRelayClose);
    delete (downstream as Relayed)[kRelay];
    delete (upstream as Relayed)[kRelay];
    const error = this.error;
    return { sent: this.out!.bytes, received: this.back!.bytes, ...(error ? { error } : {}) };
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
