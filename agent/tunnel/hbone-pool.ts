import * as http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import { operationalLogger } from '../core/log';
import { formatAuthority, type TunnelTarget } from './authority';
import { errorForEarlyClose, errorForSession, errorForStatus, HboneError, REASON_HEADER } from './hbone-error';
import type { Credentials } from './hbone-server';
import { spiffeIdOf } from './peer-identity';
import { TUNNEL_SETTINGS, TUNNEL_WINDOW } from './settings';
import { ignoreError } from '../core/socket-error';

export interface ConnectRequest {
  sourceIdentity: string;
  /** The source workload's own certificate: never a node-wide one. */
  credentials: Credentials;
  trustBundle: string;
  nodeAddress: { host: string; port: number };
  /** The destination workload's SPIFFE ID, or every ID acceptable for it. */
  expectedPeerIdentity: string | Iterable<string>;
  /** TLS server name (SNI) telling the destination proxy which local workload to answer as; part of the pool key */
  servername?: string;
  target: TunnelTarget;
  traceparent?: string;
  /** The source pod's address and port, sent as `Forwarded: for=` so the destination's policy sees its client. */
  source?: { ip: string; port: number };
}

export interface PoolOptions {
  /** Bound on opening a session (TCP + TLS + SETTINGS) and on waiting for a CONNECT answer. */
  timeoutMs?: number;
  /** A session with no traffic for this long is closed (gracefully) and leaves the pool. */
  idleMs?: number;
}

interface Session {
  http: http2.ClientHttp2Session;
  ready: Promise<void>;
  settled: boolean;
  peerIdentity?: string;
  active: number;
}

const log = operationalLogger('hbone-pool');

/** The session a CONNECT stream was opened on: one listener for every stream frees its slot, not a closure per stream. */
const kSession = Symbol('weft.hboneSession');
type PooledStream = http2.ClientHttp2Stream & { [kSession]?: Session };

function onPooledStreamClose(this: PooledStream): void {
  this[kSession]!.active--;
}

/**
 * The outbound end of the tunnel: CONNECT streams multiplexed over sessions pooled per
 * (source identity, destination node, destination identity by SNI). A session is opened when none has a free stream slot
 * under the server's SETTINGS_MAX_CONCURRENT_STREAMS, and leaves the pool on GOAWAY, error or close.
 */
export class HbonePool {
  private readonly pools = new Map<string, Session[]>();

  constructor(private readonly options: PoolOptions = {}) {}

  /** Number of pooled sessions (all keys). */
  get sessionCount(): number {
    let n = 0;
    for (const sessions of this.pools.values()) n += sessions.length;
    return n;
  }

  /**
   * Opens a CONNECT stream. A stream the peer refused unprocessed (REFUSED_STREAM: opened as the peer
   * sent GOAWAY, e.g. an agent draining for an upgrade) is sent again on another session, at most
   * twice: RFC 9113 8.7 makes that safe, and a new session reaches the node's successor agent.
   */
  async connect(request: ConnectRequest): Promise<Duplex> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.connectOnce(request);
      } catch (e) {
        if (attempt >= 2 || (e as { refusedStream?: boolean }).refusedStream !== true) throw e;
      }
    }
  }

  private async connectOnce(request: ConnectRequest): Promise<Duplex> {
    const expected = new Set(typeof request.expectedPeerIdentity === 'string' ? [request.expectedPeerIdentity] : request.expectedPeerIdentity);
    const node = hostPort(request.nodeAddress);
    const target = formatAuthority(request.target);
    const session = await this.acquire(request, expected);
    if (session.peerIdentity === undefined || !expected.has(session.peerIdentity)) {
      session.active--;
      throw new HboneError('HBONE_BAD_PEER', `node proxy ${node} presents ${session.peerIdentity}, not ${[...expected].join(' or ')}; check which node the destination runs on`);
    }
    const stream = session.http.request({
      ':method': 'CONNECT',
      ':authority': target,
      ...(request.traceparent === undefined ? {} : { traceparent: request.traceparent }),
      ...(request.source === undefined ? {} : { forwarded: forwardedHeader(request.source) }),
    }, { endStream: false });
    (stream as PooledStream)[kSession] = session;
    stream.on('close', onPooledStreamClose);
    return this.answered(stream, { node, target });
  }

  /** Closes every session gracefully (open streams finish). */
  async close(): Promise<void> {
    const all = [...this.pools.values()].flat();
    this.pools.clear();
    await Promise.all(all.map((s) => new Promise<void>((resolve) => (s.http.closed ? resolve() : s.http.close(() => resolve())))));
  }

  destroy(): void {
    for (const s of [...this.pools.values()].flat()) s.http.destroy();
    this.pools.clear();
  }

  private async acquire(request: ConnectRequest, expected: Set<string>): Promise<Session> {
    const key = `${request.sourceIdentity} ${hostPort(request.nodeAddress)} ${request.servername ?? ''}`;
    for (;;) {
      const sessions = this.pools.get(key) ?? [];
      const free = sessions.find((s) => s.settled && !s.http.closed && !s.http.destroyed && s.active < (s.http.remoteSettings.maxConcurrentStreams ?? 100));
      if (free) {
        free.active++;
        return free;
      }
      const pending = sessions.find((s) => !s.settled) ?? this.open(key, request, expected);
      await pending.ready;
    }
  }

  private open(key: string, request: ConnectRequest, expected: Set<string>): Session {
    const node = hostPort(request.nodeAddress);
    const timeoutMs = this.options.timeoutMs ?? 10_000;
    const where = { node, source: request.sourceIdentity };
    let tlsError: Error | undefined;
    let handshaken = false;
    const http = http2.connect(`https://${node}`, {
      settings: TUNNEL_SETTINGS,
      // Our own TLS socket, so that a TLS alert (the peer refusing our certificate) is seen: the
      // session itself only reports that it closed.
      createConnection: () => tls.connect({
        host: request.nodeAddress.host,
        port: request.nodeAddress.port,
        ALPNProtocols: ['h2'],
        ...(request.servername ? { servername: request.servername } : {}),
        key: request.credentials.key,
        cert: request.credentials.chain.join(''),
        ca: request.trustBundle,
        minVersion: 'TLSv1.3',
        maxVersion: 'TLSv1.3',
        checkServerIdentity: (_host: string, cert: tls.PeerCertificate) => {
          const id = spiffeIdOf(cert);
          if (id.ok && expected.has(id.value)) return undefined;
          const presents = id.ok ? `presents ${id.value}` : id.error;
          return new HboneError('HBONE_BAD_PEER', `node proxy ${node} ${presents}, not ${[...expected].join(' or ')}; check which node the destination runs on and its certificate`);
        },
      }).once('error', (e) => { tlsError = e; }).once('secureConnect', () => { handshaken = true; }),
    });
    const session: Session = { http, ready: Promise.resolve(), settled: false, active: 0 };
    const sessions = this.pools.get(key) ?? [];
    sessions.push(session);
    this.pools.set(key, sessions);
    const leave = (): void => {
      const rest = (this.pools.get(key) ?? []).filter((s) => s !== session);
      if (rest.length > 0) this.pools.set(key, rest);
      else this.pools.delete(key);
    };
    session.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => http.destroy(Object.assign(new Error(`no HTTP/2 session within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })), timeoutMs);
      http.once('remoteSettings', () => {
        clearTimeout(timer);
        session.settled = true;
        http.setLocalWindowSize(TUNNEL_WINDOW);
        const id = spiffeIdOf((http.socket as tls.TLSSocket).getPeerCertificate());
        if (id.ok) session.peerIdentity = id.value;
        resolve();
      });
      http.once('close', () => {
        clearTimeout(timer);
        leave();
        reject(tlsError ? errorForSession(tlsError, where) : errorForEarlyClose(handshaken, where));
      });
      http.on('error', (e) => {
        log.debug({ node, source: request.sourceIdentity, reason: e.message }, 'HBONE session error');
        reject(errorForSession(e, where));
      });
    });
    session.ready.catch(() => undefined);
    http.on('goaway', leave);
    http.setTimeout(this.options.idleMs ?? 60_000, () => {
      leave();
      http.close();
    });
    return session;
  }

  /**
   * Waits for the answer to CONNECT. An error (with its stack and message) is built only when the
   * answer fails. Once settled, the stream keeps one shared no-op 'error' listener, so that an
   * error before the caller attaches its own does not go unhandled, and nothing of this wait (its
   * closures and their context: ~0.3 KiB) stays with every open connection. A stream's
   * 'close' after a 200 answer is the normal end of every connection: building the HboneError it
   * would have rejected with anyway cost the source agent ~1.8 % of its CPU under a new connection
   * per request (docs/new-connections.md).
   */
  private answered(stream: http2.ClientHttp2Stream, where: { node: string; target: string }): Promise<Duplex> {
    const timeoutMs = this.options.timeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (): void => {
        settled = true;
        clearTimeout(timer);
        stream.off('response', onResponse);
        stream.off('close', onClose);
        stream.off('error', onError);
        stream.on('error', ignoreError);
      };
      const refused = (err: HboneError): HboneError =>
        (stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM ? Object.assign(err, { refusedStream: true }) : err);
      const onResponse = (headers: http2.IncomingHttpHeaders): void => {
        settle();
        const status = Number(headers[':status']);
        if (status === 200) return resolve(stream);
        stream.close();
        const reason = headers[REASON_HEADER];
        reject(errorForStatus(status, typeof reason === 'string' ? reason : undefined, where));
      };
      const onError = (e: Error): void => {
        settle();
        reject(refused(new HboneError('HBONE_PROTOCOL', `CONNECT ${where.target} via ${where.node} failed: ${e.message}`)));
      };
      const onClose = (): void => {
        if (settled) return;
        settle();
        reject(refused(new HboneError('HBONE_PROTOCOL', `node proxy ${where.node} closed CONNECT ${where.target} without an answer (HTTP/2 code ${stream.rstCode})`)));
      };
      const timer = setTimeout(() => {
        settle();
        stream.close(http2.constants.NGHTTP2_CANCEL);
        reject(new HboneError('HBONE_TIMEOUT', `node proxy ${where.node} did not answer CONNECT ${where.target} within ${timeoutMs} ms`));
      }, timeoutMs);
      stream.on('response', onResponse);
      stream.on('error', onError);
      stream.on('close', onClose);
    });
  }
}

/** `host:port`, an IPv6 address in brackets (the only kind of host with a colon). */
function hostPort({ host, port }: { host: string; port: number }): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** RFC 7239 `for="10.0.0.1:4711"`, `for="[fd00::1]:4711"`. */
function forwardedHeader({ ip, port }: { ip: string; port: number }): string {
  // joined, not a template: Node keeps the request's headers on the stream for its life (core/ip.ts formatAddr)
  return ip.includes(':') ? ['for="[', ip, ']:', port, '"'].join('') : ['for="', ip, ':', port, '"'].join('');
}
