import * as http2 from 'node:http2';
import { isIP, type AddressInfo, type Socket } from 'node:net';
import * as tls from 'node:tls';
import { canonicalIp, unmapIp } from '../core/ip';
import { listenShared } from '../proxy/shared-listener';
import { operationalLogger } from '../core/log';
import { parseAuthority, type TunnelTarget } from './authority';
import { REASON_HEADER } from './hbone-error';
import { spiffeIdOf } from './peer-identity';
import { splice } from './splice';
import { TUNNEL_SETTINGS, TUNNEL_WINDOW } from './settings';

export interface Credentials {
  /** PKCS#8 PEM. */
  key: string;
  /** Leaf first, then any intermediates, PEM each (as the control plane returns them). */
  chain: string[];
}

export type Decision = { allow: true } | { allow: false; reason: string };

export interface StreamRequest {
  peerIdentity: string;
  target: TunnelTarget;
  traceparent?: string;
  /**
   * The source pod's address as the source proxy states it (`Forwarded: for=`); a claim by an
   * authenticated peer, to be checked against the peer's identity before it is believed.
   */
  forwardedFor?: { ip: string; port?: number };
  /** the source node proxy's address */
  remoteAddress?: string;
  remotePort?: number;
}

/** A CONNECT stream the server accepted at the tunnel level, handed to `serve`. */
export interface TunnelStream {
  /** Answers 200: from now on the stream carries the connection's bytes. */
  accept(): http2.ServerHttp2Stream;
  /** Answers `status` with a reason header and ends the stream (only before accept); reports nothing. */
  refuse(status: number, reason: string): void;
  /** Reports the stream's end to `onStream` (the server reports only the refusals it makes itself). */
  report(info: Omit<StreamInfo, 'peerIdentity' | 'traceparent' | 'durationMs' | 'remoteAddress' | 'remotePort'>): void;
}

/** One per CONNECT stream, when it ends: what an access log needs. */
export interface StreamInfo {
  peerIdentity: string;
  /** the source node proxy's address */
  remoteAddress?: string;
  remotePort?: number;
  target?: TunnelTarget;
  traceparent?: string;
  status: number;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  error?: string;
}

export interface HboneServerOptions {
  host: string;
  port: number;
  /**
   * PEM roots that client certificates must chain to. A function is asked at every handshake, so
   * a rotated bundle (a second root added, an old one retired) applies to new sessions at once.
   */
  trustBundle: string | (() => string);
  /**
   * The certificate to present to a client that asked for `servername` (SNI): the destination
   * proxy answers as the destination workload. Called per handshake, so certificates can rotate;
   * undefined refuses the handshake, as does a client that sends no server name.
   */
  identityFor(servername: string | undefined): Credentials | undefined | Promise<Credentials | undefined>;
  /** Whether the target may be served here at all (a local meshed pod); a refusal answers 403. */
  authorize(request: StreamRequest): Decision;
  /** Serves an authorized stream: accepts or refuses it and moves its bytes (see spliceToTarget). */
  serve(request: StreamRequest, tunnel: TunnelStream): void;
  onStream?(info: StreamInfo): void;
  maxConcurrentStreams?: number;
}

const log = operationalLogger('hbone-server');
const TLS13 = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;

/**
 * The inbound end of the tunnel (port 15008): HTTP/2 CONNECT over mutual TLS 1.3, ALPN h2 only.
 * Clients must present a certificate from the trust bundle carrying a SPIFFE ID.
 */
export class HboneServer {
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  /**
   * Per session, read once when it is admitted: the peer's identity and the source node proxy's
   * address, which every stream reports (read per stream they were two getters through the
   * session's socket proxy and a regex per connection).
   */
  private readonly peers = new WeakMap<http2.ServerHttp2Session, { identity: string; remote: { remoteAddress?: string; remotePort?: number } }>();
  private readonly contexts = new Map<string, tls.SecureContext>();
  private contextsBundle = '';

  private constructor(private readonly server: http2.Http2SecureServer, private readonly options: HboneServerOptions) {}

  static async listen(options: HboneServerOptions): Promise<HboneServer> {
    const server = http2.createSecureServer({
      ...TLS13,
      ca: bundleOf(options),
      SNICallback: (servername, cb) => {
        const answer = (creds: Credentials | undefined): void => {
          const context = creds && hbone.contextFor(creds);
          // The default context holds no certificate: the client gets a handshake_failure alert.
          if (!context) log.info({ servername }, 'no local workload answers to this server name');
          cb(null, context);
        };
        // A workload whose certificate is still being issued (a pod that just started) is waited for.
        const creds = options.identityFor(servername);
        if (creds instanceof Promise) creds.then(answer, () => answer(undefined));
        else answer(creds);
      },
      requestCert: true,
      rejectUnauthorized: true,
      allowHTTP1: false,
      handshakeTimeout: 10_000,
      settings: { ...TUNNEL_SETTINGS, maxConcurrentStreams: options.maxConcurrentStreams ?? 1000 },
    });
    const hbone = new HboneServer(server, options);
    server.on('tlsClientError', (e, socket) => log.info({ remote: socket.remoteAddress, reason: e.message }, 'refused a connection during the TLS handshake'));
    server.on('unknownProtocol', (socket) => {
      log.info({ remote: socket.remoteAddress }, 'refused a connection that did not negotiate ALPN h2');
      socket.destroy();
    });
    server.on('session', (session) => hbone.admit(session));
    server.on('stream', (stream, headers) => hbone.handle(stream, headers));
    // SO_REUSEPORT: a successor agent listens beside this one during an upgrade (docs/upgrade.md).
    await listenShared(server, { host: options.host, port: options.port });
    return hbone;
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /** Stops accepting, sends GOAWAY and lets open streams finish; cuts what remains after `graceMs`. */
  async close(graceMs = 5000): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const session of this.sessions) session.close();
    const timer = setTimeout(() => this.destroy(), graceMs);
    await closed;
    clearTimeout(timer);
  }

  destroy(): void {
    this.server.close();
    for (const session of this.sessions) session.destroy();
  }

  /**
   * A TLS context per presented certificate, reused across handshakes until it or the trust bundle
   * rotates. The context selected by SNI is the one that verifies the client's certificate.
   */
  private contextFor(creds: Credentials): tls.SecureContext {
    const bundle = bundleOf(this.options);
    if (bundle !== this.contextsBundle) {
      this.contexts.clear();
      this.contextsBundle = bundle;
    }
    const cacheKey = creds.chain[0]!;
    let context = this.contexts.get(cacheKey);
    if (!context) {
      if (this.contexts.size >= 256) this.contexts.clear();
      context = tls.createSecureContext({ ...TLS13, ...tlsMaterial(creds, bundle) });
      this.contexts.set(cacheKey, context);
    }
    return context;
  }

  private admit(session: http2.ServerHttp2Session): void {
    const socket = session.socket as tls.TLSSocket;
    const identity = spiffeIdOf(socket.getPeerCertificate());
    // Read now: once the session is closed its socket proxy throws ERR_HTTP2_SOCKET_UNBOUND on any
    // access, and a session that errors as it closes (a peer agent killed -9) would crash this one.
    const remote = socket.remoteAddress;
    session.on('error', (e) => log.debug({ remote, reason: e.message }, 'session error'));
    if (!identity.ok) {
      log.warn({ remote, reason: identity.error }, 'closed a session whose client certificate carries no valid SPIFFE ID');
      session.destroy();
      return;
    }
    session.setLocalWindowSize(TUNNEL_WINDOW);
    const port = socket.remotePort;
    this.peers.set(session, { identity: identity.value, remote: { ...(remote ? { remoteAddress: unmapIp(remote) } : {}), ...(port ? { remotePort: port } : {}) } });
    this.sessions.add(session);
    session.once('close', () => this.sessions.delete(session));
  }

  private handle(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    const started = Date.now();
    stream.on('error', logStreamError);
    const peer = this.peers.get(stream.session as http2.ServerHttp2Session);
    if (peer === undefined) return void stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    const { identity: peerIdentity, remote } = peer;
    const traceparent = typeof headers.traceparent === 'string' ? headers.traceparent : undefined;
    const tunnel = new ServedStream(stream, this.options.onStream, started, peerIdentity, remote, traceparent);
    if (headers[':method'] !== 'CONNECT') return tunnel.refuseAndReport(405, `only CONNECT is served here, not ${headers[':method']}`);
    const target = parseAuthority(headers[':authority']);
    if (!target.ok) return tunnel.refuseAndReport(400, target.error);
    const forwardedFor = forwardedForOf(headers.forwarded);
    const request: StreamRequest = { peerIdentity, target: target.value, ...remote,
      ...(traceparent === undefined ? {} : { traceparent }), ...(forwardedFor === undefined ? {} : { forwardedFor }) };
    const decision = this.options.authorize(request);
    if (!decision.allow) return tunnel.refuseAndReport(403, decision.reason, target.value);
    this.options.serve(request, tunnel);
  }
}

function logStreamError(e: Error): void {
  log.debug({ reason: e.message }, 'stream error');
}

/**
 * A CONNECT stream handed to `serve`: its facts in one object and its methods shared, so an open
 * connection holds no closures for them (they and their context were ~0.3 KiB per connection).
 */
class ServedStream implements TunnelStream {
  constructor(
    private readonly stream: http2.ServerHttp2Stream,
    private readonly onStream: ((info: StreamInfo) => void) | undefined,
    private readonly started: number,
    private readonly peerIdentity: string,
    private readonly remote: { remoteAddress?: string; remotePort?: number },
    private readonly traceparent: string | undefined,
  ) {}

  accept(): http2.ServerHttp2Stream {
    this.stream.respond({ ':status': 200 });
    return this.stream;
  }

  refuse(status: number, reason: string): void {
    const stream = this.stream;
    if (!stream.closed && !stream.headersSent) stream.respond({ ':status': status, [REASON_HEADER]: reason }, { endStream: true });
  }

  report(info: Omit<StreamInfo, 'peerIdentity' | 'traceparent' | 'durationMs' | 'remoteAddress' | 'remotePort'>): void {
    this.onStream?.({ peerIdentity: this.peerIdentity, ...this.remote, ...(this.traceparent === undefined ? {} : { traceparent: this.traceparent }), ...info,
      durationMs: Date.now() - this.started });
  }

  /** A refusal the server makes itself, before `serve`: answered and reported. */
  refuseAndReport(status: number, reason: string, target?: TunnelTarget): void {
    this.refuse(status, reason);
    this.report({ ...(target ? { target } : {}), status, bytesIn: 0, bytesOut: 0, error: reason });
  }
}

/**
 * The plain tunnel end: connects to the target (bounded by `timeoutMs`), answers 200 and moves bytes
 * both ways; a refused or timed-out connection answers 503 or 504. `connectTarget` must return a
 * socket that allows half-open (`allowHalfOpen: true`).
 */
export function spliceToTarget(connectTarget: (target: TunnelTarget) => Promise<Socket>, timeoutMs = 10_000): HboneServerOptions['serve'] {
  return (request, tunnel) => {
    const target = request.target;
    void connectBounded(() => connectTarget(target), timeoutMs).then((socket) => {
      let stream: http2.ServerHttp2Stream;
      try {
        stream = tunnel.accept();
      } catch {
        return void socket.destroy(); // the stream went away while connecting
      }
      splice(stream, socket, (r) => tunnel.report({ target, status: 200, ...r }));
    }, (e: NodeJS.ErrnoException) => {
      const status = e.code === 'ETIMEDOUT' ? 504 : 503;
      const reason = `${e.code ?? 'error'}: ${e.message}`;
      tunnel.refuse(status, reason);
      tunnel.report({ target, status, bytesIn: 0, bytesOut: 0, error: reason });
    });
  };
}

/** `connect()`, failing with ETIMEDOUT after `ms`; a socket that arrives late is closed. */
export function connectBounded(connect: () => Promise<Socket>, ms: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    let late = false;
    const timer = setTimeout(() => {
      late = true;
      reject(Object.assign(new Error(`no connection within ${ms} ms`), { code: 'ETIMEDOUT' }));
    }, ms);
    connect().then((socket) => {
      clearTimeout(timer);
      if (late) socket.destroy();
      else resolve(socket);
    }, (e: unknown) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** `Forwarded: for="10.0.0.1:4711"` or `for="[fd00::1]:4711"` (RFC 7239, first element, port optional); anything else is ignored. */
export function forwardedForOf(value: string | string[] | undefined): { ip: string; port?: number } | undefined {
  const first = (Array.isArray(value) ? value[0] : value)?.split(',')[0];
  if (!first) return undefined;
  const m = /(?:^|;)\s*for=("?)(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+))(?::([0-9]{1,5}))?\1\s*(?:;|$)/i.exec(first);
  const ip = m?.[2] ?? m?.[3];
  const family = ip === undefined ? 0 : isIP(ip);
  if (family === 0) return undefined;
  const port = m?.[4] === undefined ? undefined : Number(m[4]);
  // a dotted quad isIP accepts (no leading zeros) is already canonical
  return { ip: family === 4 ? ip! : canonicalIp(ip!), ...(port !== undefined && port >= 1 && port <= 65535 ? { port } : {}) };
}

function bundleOf(options: HboneServerOptions): string {
  return typeof options.trustBundle === 'function' ? options.trustBundle() : options.trustBundle;
}

function tlsMaterial(credentials: Credentials, trustBundle: string): { key: string; cert: string; ca: string } {
  return { key: credentials.key, cert: credentials.chain.join(''), ca: trustBundle };
}
