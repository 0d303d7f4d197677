/**
 * The pod addresses the delivering proxy holds transparent connections with (source address
 * preservation, source-address.ts), counted per address from the moment the connect starts until
 * the socket closes. The redirect manager keeps such an address in weft_capture after its pod
 * leaves the mesh (WEFT_CAPTURE_LINGER, reply-steering.ts withLingering): without it the pod's
 * replies to a connection that came from its client's address would go to that client itself, and
 * the connection would hang. When the last one ends, `onReleased` says so, so the entry can go.
 *
 * One Map entry per address with connections, one WeakMap entry and one shared close listener per
 * socket, no closure: about 76 bytes of heap per connection (measured on 20,000 sockets; docs/memory.md).
 */
import type { Socket } from 'node:net';

export class HeldAddresses {
  private readonly counts = new Map<string, number>();
  private readonly sockets = new WeakMap<Socket, string>();
  private readonly onClose: (this: Socket) => void;

  constructor(private readonly onReleased: (ip: string) => void) {
    const self = this;
    this.onClose = function onClose(this: Socket) {
      const ip = self.sockets.get(this);
      if (ip === undefined) return;
      self.sockets.delete(this);
      self.release(ip);
    };
  }

  /** A connection with `ip` (canonical) is being made: held until release(), or until its socket closes once handed to closeReleases(). */
  hold(ip: string): void {
    this.counts.set(ip, (this.counts.get(ip) ?? 0) + 1);
  }

  /** The held connection with `ip` was not made (its connect failed). */
  release(ip: string): void {
    const n = (this.counts.get(ip) ?? 0) - 1;
    if (n > 0) {
      this.counts.set(ip, n);
      return;
    }
    this.counts.delete(ip);
    this.onReleased(ip);
  }

  /** The held connection with `ip` is `socket`: released when it closes. */
  closeReleases(socket: Socket, ip: string): void {
    if (socket.destroyed) {
      this.release(ip);
      return;
    }
    this.sockets.set(socket, ip);
    // on, not once: a socket closes once, and once() wraps the listener (about 160 bytes more per connection, measured)
    socket.on('close', this.onClose);
  }

  holds(ip: string): boolean {
    return this.counts.has(ip);
  }
}
