/** The part of a gRPC server stream the writer needs: a write whose callback fires once the message left. */
export interface MessageSink<T> {
  write(message: T, callback: (error?: Error | null) => void): boolean;
}

/**
 * Slow consumers never make the control plane buffer without bound: at most one message is in
 * flight per stream, and while it is, newer messages replace each other, so a consumer that falls
 * behind skips intermediate versions and gets the latest one next. This is correct only because
 * every message is a whole snapshot.
 */
export class CoalescingWriter<T> {
  private inFlight = false;
  private pending: T | undefined;
  private stopped = false;

  constructor(private readonly sink: MessageSink<T>) {}

  send(message: T): void {
    if (this.stopped) return;
    if (this.inFlight) {
      this.pending = message;
      return;
    }
    this.inFlight = true;
    this.sink.write(message, (error) => {
      this.inFlight = false;
      if (error) this.stopped = true;
      const next = this.pending;
      this.pending = undefined;
      if (next !== undefined) this.send(next);
    });
  }

  /** Drops anything pending; further sends are ignored. */
  stop(): void {
    this.stopped = true;
    this.pending = undefined;
  }
}
