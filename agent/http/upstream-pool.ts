import type * as http from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * The HTTP/1 keep-alive pool of one downstream connection: one connection from connectUpstream(),
 * lent to one request at a time, as the Agent-like object Node's ClientRequest takes (`agent:`;
 * it calls addRequest() and hands the socket back with the socket's 'free' event once the
 * response has ended with keep-alive). A downstream connection carries one request at a time
 * (pipelined ones wait their turn in http1.ts), so the application sees as many connections as
 * the clients open, and a pipelined sequence reaches it in the order it was sent.
 *
 * It replaces an http.Agent limited to one socket: that Agent's bookkeeping per request (option
 * objects spread twice, a name key built, socket lists deleted and re-created, the server name
 * parsed from Host) was the largest single item of the destination proxy's HTTP/1 profile (412 of
 * 3740 ms of busy CPU in the benchmark's HTTP/1.1 load), more than the HTTP parsing.
 */
export class UpstreamPool {
  // What ClientRequest reads off an agent: keep-alive (`Connection: keep-alive`, reuse), the
  // protocol it checks the request against, the port it defaults to.
  readonly keepAlive = true;
  readonly maxSockets = 1;
  readonly protocol = 'http:';
  readonly defaultPort = 80;
  private socket: Duplex | undefined;
  private busy = false;
  private opening = false;
  private closed = false;
  /** Requests that arrived while the connection was lent out or being opened, in order. */
  private readonly waiting: http.ClientRequest[] = [];

  constructor(private readonly connectUpstream: () => Promise<Duplex>) {}

  addRequest(req: http.ClientRequest): void {
    if (this.busy || this.opening) return void this.waiting.push(req);
    const s = this.socket;
    if (s && !s.destroyed && s.writable) return this.lend(s, req);
    this.socket = undefined;
    if (this.closed) return onSocket(req, undefined, new Error('the downstream connection has closed'));
    this.opening = true;
    this.connectUpstream().then((socket) => {
      this.opening = false;
      if (this.closed) {
        socket.destroy();
        return this.failWaiting(req, new Error('the downstream connection has closed'));
      }
      this.adopt(socket);
      this.lend(socket, req);
    }, (e: Error) => {
      // This request fails (503 or 502 from its 'error'); the next one tries a new connection.
      this.opening = false;
      onSocket(req, undefined, e);
      this.next();
    });
  }

  /** Closes the connection; requests still waiting fail. */
  destroy(): void {
    this.closed = true;
    this.socket?.destroy();
    this.socket = undefined;
    this.failWaiting(undefined, new Error('the downstream connection has closed'));
  }

  private lend(s: Duplex, req: http.ClientRequest): void {
    this.busy = true;
    onSocket(req, s);
  }

  private adopt(s: Duplex): void {
    this.socket = s;
    // Between requests no ClientRequest listens: an error then only closes the connection.
    s.on('error', () => s.destroy());
    s.once('close', () => {
      if (this.socket !== s) return;
      this.socket = undefined;
      this.busy = false;
      this.next();
    });
    // The response ended with keep-alive: the connection is ours again (ClientRequest removed its listeners).
    s.on('free', () => {
      (s as Duplex & { _httpMessage?: unknown })._httpMessage = null;
      this.busy = false;
      this.next();
    });
    // ClientRequest takes the connection away for an upgrade or CONNECT (not sent through the pool, but kept out of it regardless).
    s.once('agentRemove', () => { if (this.socket === s) { this.socket = undefined; this.busy = false; } });
  }

  private next(): void {
    const req = this.waiting.shift();
    if (req) this.addRequest(req);
  }

  /** The pool has closed: `first` and every waiting request get the error (Node's own path: 'error' on each request). */
  private failWaiting(first: http.ClientRequest | undefined, e: Error): void {
    if (first) onSocket(first, undefined, e);
    for (const req of this.waiting.splice(0)) onSocket(req, undefined, e);
  }
}

/** ClientRequest.onSocket: public in Node's code, absent from its types. */
function onSocket(req: http.ClientRequest, socket: Duplex | undefined, error?: Error): void {
  (req as unknown as { onSocket(s: Duplex | undefined, e?: Error): void }).onSocket(socket, error);
}

export function upstreamPool(connectUpstream: () => Promise<Duplex>): UpstreamPool {
  return new UpstreamPool(connectUpstream);
}
