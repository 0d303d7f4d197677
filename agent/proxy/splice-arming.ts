/**
 * Which same-node connections get the pods' side of splicing: the destination announced, so the
 * kernel enters the server pod's accepted socket into weft_splice_pods (deliver.ts), and that socket
 * armed before the first byte (splice.ts armServer, docs/splice.md "A download from the server's
 * first byte"). That is what lets a download leave by the server's own sendmsg() from its first
 * byte (0.71-0.97x direct in bulk, against 0.24-0.39x spliced at the proxy's sockets), and it costs
 * the proxy about 100 µs of CPU per connection (the sockops work inside its connect(), SO_COOKIE,
 * two map updates, TCP_INFO at the FIN, a lookup-and-delete, a psock made and torn down): a
 * connection that carries one small answer pays it for nothing, which is what short-lived
 * connections to a port do (an HTTP/1.0 API, health checks, `Connection: close`).
 *
 * So a destination (pod address and port) gets it until SHORT_STREAK of its connections in a row
 * have each carried less than SHORT_BYTES from the server, and again from the next one that
 * carries more: every spliced connection's outcome is recorded, armed or not, so a download to a
 * port that had gone quiet is spliced at the proxy's sockets and re-arms the port for the next.
 */

/** A connection whose server sent less than this is short: arming it bought nothing. */
export const SHORT_BYTES = 64 * 1024;
/** Short connections in a row after which a destination is no longer armed. */
export const SHORT_STREAK = 16;
/** Destinations remembered; past it the oldest is forgotten (it is armed again, as a new one). */
export const MAX_DESTINATIONS = 4096;

export class ServerArming {
  /** short connections in a row, per destination (`ip|port`); absent: none */
  private readonly streaks = new Map<string, number>();
  /** connections not armed because their destination had gone quiet */
  skipped = 0;

  constructor(private readonly maxDestinations = MAX_DESTINATIONS) {}

  /** Whether this connection to `destination` gets the pods' side; asked once per connection, as a no is counted in `skipped`. */
  armFor(destination: string): boolean {
    if ((this.streaks.get(destination) ?? 0) < SHORT_STREAK) return true;
    this.skipped++;
    return false;
  }

  /** A connection to `destination` ended; its server sent `serverBytes`. */
  record(destination: string, serverBytes: number): void {
    if (serverBytes >= SHORT_BYTES) {
      this.streaks.delete(destination);
      return;
    }
    const n = this.streaks.get(destination);
    if (n === undefined && this.streaks.size >= this.maxDestinations) this.streaks.delete(this.streaks.keys().next().value as string);
    if (n === undefined || n < SHORT_STREAK) this.streaks.set(destination, (n ?? 0) + 1);
  }

  /** Destinations not armed now. */
  get quiet(): number {
    let q = 0;
    for (const n of this.streaks.values()) if (n >= SHORT_STREAK) q++;
    return q;
  }
}
