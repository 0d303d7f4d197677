/**
 * Connections from the source proxy to endpoints, kept and reused across requests: an HTTP/1.1
 * keep-alive pool (Node's Agent) or one HTTP/2 session per endpoint, per source workload. A pooled
 * connection is only ever reused for the same source pod, since over HBONE it carries that pod's
 * identity and address. Idle ones close after IDLE_MS; an endpoint that leaves the Service loses
 * its pool at the next sweep.
 */
import http from 'node:http';
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';

const IDLE_MS = 60_000;

/** Opens one new byte stream to the endpoint (HBONE, in-memory to deliver(), or plaintext). */
export type Opener = () => Promise<Duplex>;

/**
 * What Node's HTTP client calls on its sockets that a tunnel stream may lack. Strings written to an
 * HTTP/2 stream (the client writes request heads as latin1 strings) are turned into Buffers first:
 * Node 20's HTTP/2 stream writes a string from memory that is released before nghttp2 has sent it,
 * and under load the far end received request heads with their first bytes overwritten.
 */
function socketLike(s: Duplex): Duplex {
  const o = s as Duplex & Record<string, unknown>;
  if ('rstCode' in s) {
    const write = s.write.bind(s) as (chunk: unknown, enc?: unknown, cb?: unknown) => boolean;
    const end = s.end.bind(s) as (chunk?: unknown, enc?: unknown, cb?: unknown) => Duplex;
    const asBuffer = (chunk: unknown, enc: unknown) => (typeof chunk === 'string' ? Buffer.from(chunk, typeof enc === 'string' ? enc as BufferEncoding : 'utf8') : chunk);
    o.write = (chunk: unknown, enc?: unknown, cb?: unknown) => (typeof enc === 'function' ? write(asBuffer(chunk, undefined), enc) : write(asBuffer(chunk, enc), cb));
    (o as Record<string, unknown>).end = (chunk?: unknown, enc?: unknown, cb?: unknown) => {
      if (typeof chunk === 'function' || chunk === undefined) return end(chunk);
      return typeof enc === 'function' ? end(asBuffer(chunk, undefined), enc) : end(asBuffer(chunk, enc), cb);
    };
  }
  for (const m of ['setKeepAlive', 'setNoDelay', 'ref', 'unref']) if (typeof o[m] !== 'function') o[m] = () => s;
  if (typeof o.setTimeout !== 'function') o.setTimeout = () => s;
  return s;
}

export class UpstreamPools {
  private readonly agents = new Map<string, http.Agent>();
  private readonly sessions = new Map<string, Promise<http2.ClientHttp2Session>>();

  /** The keep-alive pool for `key` (source pod + endpoint); `open` makes its connections. */
  h1(key: string, open: Opener, maxRequestsPerConnection = 0): http.Agent {
    let agent = this.agents.get(key);
    if (!agent) {
      agent = new http.Agent({ keepAlive: true, timeout: IDLE_MS, scheduling: 'lifo' });
      (agent as unknown as { createConnection: unknown }).createConnection = (_opts: unknown, done: (e: Error | null, s?: Duplex) => void) => {
        open().then((s) => {
          const sock = socketLike(s);
          if (maxRequestsPerConnection > 0) limitRequests(sock, maxRequestsPerConnection);
          done(null, sock);
        }, (e: Error) => done(e));
        return undefined;
      };
      this.agents.set(key, agent);
    }
    return agent;
  }

  /** The HTTP/2 session to `key`, opened on first use and again after it closes. */
  h2(key: string, open: Opener): Promise<http2.ClientHttp2Session> {
    let s = this.sessions.get(key);
    if (!s) {
      s = open().then((stream) => {
        const session = http2.connect('http://upstream.invalid', { createConnection: () => stream as never, peerMaxConcurrentStreams: 1000 });
        const forget = () => { if (this.sessions.get(key) === s) this.sessions.delete(key); };
        session.on('close', forget);
        session.on('goaway', forget);
        session.on('error', forget);
        session.setTimeout(IDLE_MS, () => session.close());
        return session;
      });
      s.catch(() => { if (this.sessions.get(key) === s) this.sessions.delete(key); });
      this.sessions.set(key, s);
    }
    return s;
  }

  /** Drops pools whose endpoint (the part of the key after the last '|') is not in `live`. */
  sweep(live: (endpoint: string) => boolean): void {
    for (const [key, agent] of this.agents) if (!live(key.slice(key.lastIndexOf('|') + 1))) { agent.destroy(); this.agents.delete(key); }
    for (const [key, s] of this.sessions) if (!live(key.slice(key.lastIndexOf('|') + 1))) { this.sessions.delete(key); s.then((x) => x.close(), () => undefined); }
  }

  close(): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
    for (const s of this.sessions.values()) s.then((x) => x.destroy(), () => undefined);
    this.sessions.clear();
  }
}

/** Closes a keep-alive connection after `max` responses (TrafficPolicy maxRequestsPerConnection). */
function limitRequests(sock: Duplex, max: number): void {
  let served = 0;
  sock.on('free', () => { if (++served >= max) sock.destroy(); });
}
