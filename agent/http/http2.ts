import * as http2 from 'node:http2';
import { channel } from 'node:diagnostics_channel';
import type { Duplex } from 'node:stream';
import { pump } from '../core/pump';
import { checkLimits, RateBudget, type HttpLimits } from './limits';
import { DEFAULT_PATH_NORMALIZATION, normalizeTarget } from './path-normalize';
import { conflictingHost, h2WithoutConnectionHeaders, repeatedFields } from './headers';
import { decideSafely, Exchange, refusalVerdict } from './exchange';
import type { RequestInfo, ServeHttpOptions, Verdict } from './types';

const {
  NGHTTP2_NO_ERROR, NGHTTP2_CANCEL, NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_INTERNAL_ERROR, NGHTTP2_FLAG_END_STREAM, NGHTTP2_REFUSED_STREAM,
} = http2.constants;

/**
 * Sessions the proxy closed for abuse: `{ reason: 'rapid-reset' | 'settings-flood', streams }`.
 * Telemetry subscribes; the data path does not call it.
 */
export const abuseChannel = channel('weft:http:abuse');

/** One downstream HTTP/2 session and the one upstream (h2c) session its streams go to. */
class Http2Connection {
  private upstream: Promise<http2.ClientHttp2Session> | undefined;
  private ready: http2.ClientHttp2Session | undefined;
  private readonly resets: RateBudget;
  private readonly settings: RateBudget;
  private active = 0;
  private idle: NodeJS.Timeout | undefined;
  streams = 0;

  constructor(readonly o: ServeHttpOptions, readonly session: http2.ServerHttp2Session) {
    const l = o.limits;
    this.resets = new RateBudget(l.resetBurst, l.resetsPerSecond, Date.now());
    this.settings = new RateBudget(l.settingsBurst, l.settingsPerSecond, Date.now());
    session.on('error', () => undefined);
    session.on('remoteSettings', () => {
      if (!this.settings.take(Date.now())) this.calm('settings-flood');
    });
    session.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, raw: string[]) => { rawHeaders.set(stream, raw); this.onStream(stream, headers, flags); });
    session.once('close', () => {
      clearTimeout(this.idle);
      void this.upstream?.then((s) => s.destroy(), () => undefined);
    });
    this.armIdle();
  }

  /** Ends a session that misbehaves: GOAWAY ENHANCE_YOUR_CALM, then the socket closes. */
  private calm(reason: string): void {
    if (this.session.destroyed) return;
    if (abuseChannel.hasSubscribers) abuseChannel.publish({ reason, streams: this.streams });
    // destroy(undefined, code) would send NO_ERROR: Node's `error` parameter defaults to NO_ERROR and a number there replaces the code.
    this.session.destroy(new Error(`HTTP/2 session closed by the node proxy: ${reason}`), NGHTTP2_ENHANCE_YOUR_CALM);
  }

  private armIdle(): void {
    clearTimeout(this.idle);
    if (this.active > 0) return;
    this.idle = setTimeout(() => {
      if (this.active === 0 && !this.session.destroyed) this.session.close();
    }, this.o.limits.idleTimeoutMs);
    this.idle.unref();
  }

  private upstreamSession(): Promise<http2.ClientHttp2Session> {
    const current = this.upstream;
    if (current) return current.then((s) => (s.closed || s.destroyed ? this.openUpstream() : s), () => this.openUpstream());
    return this.openUpstream();
  }

  /** The upstream session when it is open and usable now (a stream then goes upstream in the same tick, without a promise). */
  private openSession(): http2.ClientHttp2Session | undefined {
    const s = this.ready;
    return s && !s.closed && !s.destroyed ? s : undefined;
  }

  private openUpstream(): Promise<http2.ClientHttp2Session> {
    const l = this.o.limits;
    const opening = this.o.connectUpstream().then((socket) => {
      const s = http2.connect('http://upstream', {
        createConnection: () => socket as never,
        settings: { enablePush: false },
        peerMaxConcurrentStreams: l.maxConcurrentStreams,
        maxSessionMemory: l.maxSessionMemoryMiB,
        maxHeaderListPairs: l.maxHeaderPairs + 4,
        maxOutstandingPings: l.maxOutstandingPings,
      });
      s.on('error', () => undefined);
      s.once('goaway', () => {
        if (this.upstream === opening) this.upstream = undefined;
        if (this.ready === s) this.ready = undefined;
      });
      if (this.upstream === opening) this.ready = s;
      return s;
    });
    this.upstream = opening;
    return opening;
  }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number): void {
    this.streams++;
    this.active++;
    clearTimeout(this.idle);
    const method = String(headers[':method'] ?? '');
    // The decision, the log and the application all get the normalized path (a path rule cannot be passed by `/./admin`).
    const sent = String(headers[':path'] ?? '');
    const target = normalizeTarget(sent, method, this.o.pathNormalization ?? DEFAULT_PATH_NORMALIZATION);
    if (target.ok && headers[':path'] !== undefined) headers[':path'] = target.value.target;
    const info: RequestInfo = {
      method,
      path: target.ok ? target.value.path : String(headers[':path'] ?? ''),
      host: String(headers[':authority'] ?? headers.host ?? ''),
      headers: headers as RequestInfo['headers'],
      protocol: 'http2',
      ...(target.ok && target.value.path !== sent ? { originalPath: sent } : {}),
    };
    const ex = new Exchange(info, this.o.onExchange);
    let weReset = false;
    stream.on('error', (e: Error) => ex.fail(e));
    // Trailers can arrive while the upstream session is still being opened: keep them from the start.
    const trailers: { value?: http2.IncomingHttpHeaders } = {};
    stream.once('trailers', (t: http2.IncomingHttpHeaders) => { trailers.value = t; });
    stream.once('close', () => {
      this.active--;
      this.armIdle();
      // A stream reset with an error code the proxy did not send: the client's. Rapid reset counts
      // these (a stream that completed both ways closes without RST_STREAM).
      if (!weReset && !this.session.destroyed && stream.rstCode !== NGHTTP2_NO_ERROR) {
        ex.fail(`client reset the stream (HTTP/2 code ${stream.rstCode})`);
        if (!this.resets.take(Date.now())) this.calm('rapid-reset');
      }
      ex.report();
    });

    const reqTimeout = this.o.limits.requestTimeoutMs;
    if (reqTimeout > 0 && !(flags & NGHTTP2_FLAG_END_STREAM)) {
      const t = setTimeout(() => { weReset = true; ex.fail('request timeout'); if (!stream.closed) stream.close(NGHTTP2_CANCEL); }, reqTimeout);
      t.unref();
      stream.once('end', () => clearTimeout(t));
      stream.once('close', () => clearTimeout(t));
    }

    const refuse = (status: number, body: string): void => {
      ex.status = status;
      const payload = Buffer.from(body);
      stream.respond({ ':status': status, 'content-type': 'text/plain', 'content-length': payload.length }, { sendDate: false } as http2.ServerStreamResponseOptions);
      // The request's remaining DATA is dropped; once the answer is out, RST_STREAM(NO_ERROR)
      // tells the client to stop sending it (RFC 9113 8.1).
      stream.resume();
      stream.end(payload, () => {
        if (!stream.readableEnded && !stream.closed) { weReset = true; stream.close(NGHTTP2_NO_ERROR); }
      });
    };
    const malformed = target.ok ? conflictingHost(headers) : target.error;
    if (malformed !== undefined) {
      ex.verdict = refusalVerdict(400, malformed);
      ex.fail(malformed);
      return refuse(400, malformed);
    }
    const length = headers['content-length'];
    const limit = this.o.limits.maxRequestBodyBytes;
    if (limit !== undefined && length !== undefined && Number(length) > limit) {
      ex.verdict = refusalVerdict(413, 'request body too large');
      ex.fail(`content-length ${length} exceeds the limit of ${limit} bytes`);
      return refuse(413, `request body exceeds the limit of ${limit} bytes`);
    }
    const decided = decideSafely(this.o.decide, info);
    ex.verdict = decided.verdict;
    if (decided.error) ex.fail(decided.error);
    if (!decided.verdict.allow) return refuse(decided.verdict.status, decided.verdict.body);
    this.forward(stream, headers, flags, ex, trailers, () => { weReset = true; });
  }

  private forward(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, ex: Exchange, requestTrailers: { value?: http2.IncomingHttpHeaders }, resetting: () => void): void {
    const open = this.openSession();
    if (open) return this.send(open, stream, headers, flags, ex, requestTrailers, resetting);
    this.upstreamSession().then((up) => this.send(up, stream, headers, flags, ex, requestTrailers, resetting), (e: unknown) => {
      ex.fail(e);
      if (!stream.closed && !stream.headersSent) {
        ex.status = 503;
        stream.respond({ ':status': 503, 'content-type': 'text/plain' }, { sendDate: false } as http2.ServerStreamResponseOptions);
        stream.end('upstream connect error');
      }
    });
  }

  private send(up: http2.ClientHttp2Session, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, ex: Exchange, requestTrailers: { value?: http2.IncomingHttpHeaders }, resetting: () => void): void {
    if (stream.closed || stream.destroyed) return;
    const endStream = (flags & NGHTTP2_FLAG_END_STREAM) !== 0 || stream.readableEnded;
    let upReq: http2.ClientHttp2Stream;
    try {
      upReq = up.request(withSetFields(h2WithoutConnectionHeaders(withRepeatedFields(headers, rawHeaders.get(stream))), ex.verdict) as http2.OutgoingHttpHeaders, { endStream, waitForTrailers: !endStream });
    } catch (e) {
      ex.fail(e);
      resetting();
      stream.close(NGHTTP2_INTERNAL_ERROR);
      return;
    }
    const limit = this.o.limits.maxRequestBodyBytes;
    let responseTrailers: http2.IncomingHttpHeaders | undefined;
    upReq.on('error', (e: Error) => ex.fail(e));
    upReq.once('wantTrailers', () => upReq.sendTrailers(requestTrailers.value ? h2WithoutConnectionHeaders(requestTrailers.value) as http2.OutgoingHttpHeaders : {}));
    if (!endStream) {
      pump(stream, upReq, (n) => {
        ex.requestBytes += n;
        if (limit !== undefined && ex.requestBytes > limit) {
          ex.fail(`request body exceeds the limit of ${limit} bytes`);
          upReq.close(NGHTTP2_CANCEL);
          if (!stream.headersSent) {
            ex.status = 413;
            stream.respond({ ':status': 413, 'content-type': 'text/plain' }, { sendDate: false } as http2.ServerStreamResponseOptions);
            stream.end('request body too large', () => { if (!stream.closed) { resetting(); stream.close(NGHTTP2_NO_ERROR); } });
          } else { resetting(); stream.close(NGHTTP2_CANCEL); }
        }
      });
    }

    upReq.once('response', (h: http2.IncomingHttpHeaders, f: number) => {
      if (stream.closed || stream.destroyed) return;
      ex.status = Number(h[':status']);
      if (h['grpc-status'] !== undefined) ex.grpcStatus = String(h['grpc-status']);
      // Draining (an upgrade): GOAWAY; the streams open finish, the client's next ones go on a new connection, to the successor.
      if (this.o.draining?.() === true && !this.session.closed) this.session.close();
      const out = h2WithoutConnectionHeaders(h) as http2.OutgoingHttpHeaders;
      if (f & NGHTTP2_FLAG_END_STREAM) {
        // Trailers-only (gRPC errors): one HEADERS frame that ends the stream, as the application sent it.
        stream.respond(out, { endStream: true, sendDate: false } as http2.ServerStreamResponseOptions);
        return;
      }
      stream.respond(out, { waitForTrailers: true, sendDate: false } as http2.ServerStreamResponseOptions);
      stream.once('wantTrailers', () => {
        const t = responseTrailers ? h2WithoutConnectionHeaders(responseTrailers) as http2.OutgoingHttpHeaders : {};
        stream.sendTrailers(t);
      });
      pump(upReq, stream, (n) => { ex.responseBytes += n; });
    });
    upReq.once('trailers', (t: http2.IncomingHttpHeaders) => {
      responseTrailers = t;
      if (t['grpc-status'] !== undefined) ex.grpcStatus = String(t['grpc-status']);
    });
    // RST_STREAM both ways: the code one side reset with reaches the other.
    upReq.once('close', () => {
      const code = upReq.rstCode ?? NGHTTP2_NO_ERROR;
      if (code !== NGHTTP2_NO_ERROR && !stream.closed) {
        ex.fail(`application reset the stream (HTTP/2 code ${code})`);
        resetting();
        stream.close(code === NGHTTP2_CANCEL && !stream.headersSent ? NGHTTP2_REFUSED_STREAM : code);
      } else if (!stream.headersSent && !stream.closed) {
        // Closed without a response (the upstream session went away).
        ex.fail('upstream closed the stream before a response');
        resetting();
        stream.close(NGHTTP2_INTERNAL_ERROR);
      }
    });
    stream.once('close', () => {
      if (upReq.closed) return;
      const code = stream.rstCode ?? NGHTTP2_NO_ERROR;
      upReq.close(code !== NGHTTP2_NO_ERROR ? code : NGHTTP2_CANCEL);
    });
  }
}

/** One Node http2 server per distinct limits (by value), never listening; sessions arrive with emit('connection'). */
const servers = new Map<string, { server: http2.Http2Server; pending: ServeHttpOptions[] }>();

/** nghttp2 and Node options from the limits, named so docs/http.md and the tests can point at each. */
export function http2ServerOptions(l: HttpLimits): http2.ServerOptions {
  return {
    settings: {
      maxConcurrentStreams: l.maxConcurrentStreams,
      maxHeaderListSize: l.maxHeaderBytes,
      enablePush: false,
    },
    // Pairs, pseudo-headers included (:method, :path, :scheme, :authority).
    maxHeaderListPairs: l.maxHeaderPairs + 4,
    maxSessionInvalidFrames: l.maxSessionInvalidFrames,
    maxSessionRejectedStreams: l.maxSessionRejectedStreams,
    maxSettings: l.maxSettingsEntries,
    maxOutstandingPings: l.maxOutstandingPings,
    maxSessionMemory: l.maxSessionMemoryMiB,
    // Streams the client may open before it has seen our SETTINGS.
    peerMaxConcurrentStreams: l.maxConcurrentStreams,
  } as http2.ServerOptions;
}

function http2ServerFor(limits: HttpLimits): { server: http2.Http2Server; pending: ServeHttpOptions[] } {
  const key = JSON.stringify(limits);
  const existing = servers.get(key);
  if (existing) return existing;
  const checked = checkLimits(limits);
  if (!checked.ok) throw new TypeError(checked.error);
  const entry = { server: http2.createServer(http2ServerOptions(limits)), pending: [] as ServeHttpOptions[] };
  // The session is created synchronously inside emit('connection'): the options waiting are its own.
  entry.server.on('session', (session: http2.ServerHttp2Session) => {
    const o = entry.pending.pop();
    if (!o) return void session.destroy();
    new Http2Connection(o, session);
  });
  servers.set(key, entry);
  return entry;
}

/** Serves HTTP/2 (prior knowledge) on `downstream` until it closes. */
export function serveHttp2(downstream: Duplex, o: ServeHttpOptions): Promise<void> {
  const { server, pending } = http2ServerFor(o.limits);
  return new Promise((resolve) => {
    if (downstream.destroyed) return resolve();
    downstream.once('close', () => resolve());
    // Bytes still in the stream's buffer (the sniffed head) are read by the session before the
    // handle: Node's Http2Session feeds `socket.read()` to nghttp2 first (nodejs/node#34532).
    if (o.head && o.head.length > 0) downstream.unshift(o.head);
    pending.push(o);
    try {
      server.emit('connection', downstream);
    } finally {
      if (pending[pending.length - 1] === o) pending.pop();
    }
  });
}

/** The header object with an allowed verdict's setHeaders in place of the fields they (and dropHeaders) name; the same object when there are none. Pure. */
export function withSetFields(headers: http2.IncomingHttpHeaders, v: Verdict): http2.IncomingHttpHeaders {
  if (!v.allow || v.setHeaders === undefined) return headers;
  const out: http2.IncomingHttpHeaders = { ...headers };
  if (v.dropHeaders) for (const name of v.dropHeaders) delete out[name];
  const set = v.setHeaders;
  for (let i = 0; i < set.length; i += 2) out[set[i]!] = set[i + 1]!;
  return out;
}

/** The request's header block as received (name, value, name, value, ...), per stream. */
const rawHeaders = new WeakMap<http2.ServerHttp2Stream, string[]>();

/** The request's header fields, each repeated name with its values as a list again (repeatedFields). Pure. */
export function withRepeatedFields(headers: http2.IncomingHttpHeaders, raw: readonly string[] | undefined): http2.IncomingHttpHeaders {
  const repeated = raw === undefined ? undefined : repeatedFields(raw);
  if (repeated === undefined) return headers;
  const out: http2.IncomingHttpHeaders = { ...headers };
  for (const [name, values] of repeated) out[name] = values;
  return out;
}
