/**
 * Connections from the source proxy to endpoints, kept and reused across requests: HTTP/1.1
 * keep-alive connections (h1-upstream.ts: llhttp over the pooled stream, no Node http objects) or
 * one HTTP/2 session per endpoint, per source workload. A pooled connection is only ever reused for
 * the same source pod, since over HBONE it carries that pod's identity and address. Idle ones close
 * after IDLE_MS; an endpoint that leaves the Service loses its pool at the next sweep.
 */
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import { H1Upstream } from '../http/h1-upstream';

const IDLE_MS = 60_000;

/** Opens one new byte stream to the endpoint (HBONE, in-memory to deliver(), or plaintext). */
export type Opener = () => Promise<Duplex>;

export class UpstreamPools {
  private readonly agents = new Map<string, H1Upstream>();
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly sessions = new Map<string, Promise<http2.ClientHttp2Session>>();

  /** The keep-alive pool for `key` (source pod + endpoint); `open` makes its connections. */
  h1(key: string, open: Opener, maxRequestsPerConnection = 0): H1Upstream {
    let pool = this.agents.get(key);
    if (pool) pool.maxRequests = maxRequestsPerConnection;
    else {
      pool = new H1Upstream(open, maxRequestsPerConnection);
      this.agents.set(key, pool);
      // One timer for every pool: idle connections close after IDLE_MS.
      this.idleTimer ??= setInterval(() => {
        const before = performance.now() - IDLE_MS;
        for (const p of this.agents.values()) p.closeIdle(before);
      }, IDLE_MS / 4).unref();
    }
    return pool;
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
    clearInterval(this.idleTimer);
    this.idleTimer = undefined;
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
    for (const s of this.sessions.values()) s.then((x) => x.destroy(), () => undefined);
    this.sessions.clear();
  }
}
