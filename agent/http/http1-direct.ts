import type { Duplex } from 'node:stream';
import { checkLimits, type HttpLimits } from './limits';
import { checkHttp1Request, refusalCloses, statusForUpstreamError, withoutHopByHop, type BodyFraming } from './headers';
import { decideSafely, Exchange, refusalVerdict } from './exchange';
import { onHttp1Tunnel } from './http1-tunnel';
import { chunk, firstValue, headerObject, isIdempotent, lastChunk, requestHead, statusHead } from './http1-wire';
import { llhttpParser, METHODS, type LlhttpParser, type ParseError } from './llhttp';
import { DEFAULT_PATH_NORMALIZATION, normalizeTarget } from './path-normalize';
import { rawResponse } from './tunnel';
import type { RequestInfo, ServeHttpOptions } from './types';

/** Methods whose requests carry no body unless framed; the others get `Content-Length: 0` upstream when they announce none. */
const NO_BODY_BY_DEFAULT = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']);

/** The names of a flat name/value list. */
function setNames(set: readonly string[]): string[] {
  const names: string[] = [];
  for (let i = 0; i < set.length; i += 2) names.push(set[i]!);
  return names;
}

/** Status Node's parser errors deserve: 431 for a head over maxHeaderSize, 408 for a slow head, 400 for the rest. */
export function statusForParseError(code: string | undefined): number {
  if (code === 'HPE_HEADER_OVERFLOW') return 431;
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return 408;
  if (code === 'ECONNRESET' || code === 'EPIPE') return 0;
  return 400;
}

function parseErrorBody(status: number): string {
  return status === 431 ? 'request header fields too large' : status === 408 ? 'request timeout' : 'bad request';
}

/** One request of a downstream connection, from its parsed head to the end of its answer. */
interface Pending {
  method: string;
  url: string;
  raw: string[];
  info: RequestInfo;
  ex: Exchange;
  http10: boolean;
  keepAlive: boolean;
  expectContinue: boolean;
  framing: BodyFraming;
  /** the proxy answers it itself (deny, refusal); `closes`: the connection closes after the answer */
  refusal?: { status: number; body: string; closes: boolean };
  /** sent on a kept-alive application connection (which the application may be closing just then) */
  onReused?: boolean;
  /** already sent again once after such a connection closed before answering */
  resent?: boolean;
  /** Upgrade or CONNECT: the connection becomes a tunnel at its turn; `head` is what followed the request head */
  tunnel?: { head: Buffer };
  /** 'queued' waits for its turn; 'forwarding' is at the application; 'done' is answered */
  state: 'queued' | 'forwarding' | 'done';
  /** body bytes parsed before the request's turn, framed for the application */
  body: Buffer[];
  /** llhttp has seen the whole request */
  complete: boolean;
  trailers: string[];
  // The answer.
  responded: boolean;
  informational: boolean;
  resChunked: boolean;
  closeAfter: boolean;
  upKeepAlive: boolean;
  resTrailers: string[];
}

/**
 * HTTP/1.x on one downstream connection, driven by llhttp directly in both directions: request
 * heads are parsed, put to decide(), written to one application connection with the hop-by-hop
 * fields removed; bodies pass as bytes (Content-Length) or re-framed chunks (chunked, validated by
 * llhttp); response heads and bodies come back the same way. Requests are answered one at a time,
 * in order (pipelining); later ones wait, with reading from the client paused.
 */
class DirectConnection {
  private readonly limits: HttpLimits;
  private readonly parser: LlhttpParser;
  private readonly queue: Pending[] = [];
  /** llhttp is inside a message (from its first byte to its end): the head deadline runs, not the idle one */
  private inMessage = false;
  /** the request whose message llhttp is reading */
  private parsing: Pending | undefined;
  private acc: string[] = [];
  private accUrl = '';
  /** no more requests are read: the connection closes after what is queued */
  private stopped = false;
  private closed = false;
  private clientEnded = false;
  /** an error answer (parse error, slow head) to write once the requests before it are answered */
  private pendingError: { status: number; ex: Exchange } | undefined;
  private upstream: Duplex | undefined;
  private upAcc: string[] = [];
  private upError: (Error & { code?: string }) | undefined;
  private opening = false;
  private upBlocked = false;
  private downPaused = false;
  /** the head deadline and the idle close: one timer each, re-armed with refresh() (no timer per request); `waitingFor` says which one counts */
  private headTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private waitingFor: 'head' | 'idle' | undefined;
  private requestTimer: NodeJS.Timeout | undefined;
  /** the connection became a tunnel (http1-tunnel.ts has it now) */
  private tunnelled = false;

  constructor(private readonly d: Duplex, private readonly o: ServeHttpOptions, private readonly done: () => void) {
    this.limits = o.limits;
    this.parser = llhttpParser('request', o.limits.maxHeaderBytes, {
      messageBegin: () => this.onMessageBegin(),
      headers: (raw, url) => { if (this.parsing) this.parsing.trailers.push(...raw); else { this.acc.push(...raw); this.accUrl += url; } },
      headersComplete: (major, minor, raw, method, url, _s, _m, upgrade, keepAlive) => this.onHead(major, minor, raw, method ?? 0, url, upgrade, keepAlive),
      body: (b) => this.onBody(b),
      messageComplete: () => this.onMessageComplete(),
    });
  }

  start(head: Buffer | undefined): void {
    const d = this.d;
    d.on('data', this.onData);
    d.on('end', this.onEnd);
    d.on('error', () => d.destroy());
    d.on('drain', () => { if (this.upstream?.isPaused() && !this.tunnelled) this.upstream.resume(); });
    d.once('close', () => this.onClose());
    this.arm('head', this.limits.headersTimeoutMs);
    if (head && head.length > 0) this.onData(head);
    if (!this.downPaused && !this.closed) d.resume();
  }

  // ---- client -> proxy

  private readonly onData = (data: Buffer): void => {
    if (this.closed) return;
    const last = this.queue[this.queue.length - 1];
    // Bytes after an Upgrade/CONNECT head belong to the tunnel.
    if (last?.tunnel) { last.tunnel.head = Buffer.concat([last.tunnel.head, data]); return; }
    if (this.stopped) return;
    const cork = this.upstream;
    cork?.cork();
    const r = this.parser.execute(data);
    cork?.uncork();
    // Requests start only after the whole chunk is parsed: a malformed byte later in it stops them
    // before anything reaches the application (no half-forwarded smuggling attempt).
    if (typeof r !== 'number') return this.parseError(r);
    const tail = this.queue[this.queue.length - 1];
    if (tail?.tunnel) tail.tunnel.head = data.subarray(r);
    this.pump();
  };

  private readonly onEnd = (): void => {
    this.clientEnded = true;
    this.stopped = true;
    const p = this.parsing;
    // A request cut short by the client's end: what reached the application is incomplete.
    if (p && !p.complete) {
      if (p.state === 'forwarding') return this.abort(p, 400, 'client closed before the request was complete');
      this.queue.splice(this.queue.indexOf(p), 1);
    }
    if (this.queue.length === 0) this.closeDown();
  };

  private onMessageBegin(): void {
    this.inMessage = true;
    this.arm('head', this.limits.headersTimeoutMs);
    if (this.limits.requestTimeoutMs > 0) {
      clearTimeout(this.requestTimer);
      this.requestTimer = setTimeout(() => this.slow(), this.limits.requestTimeoutMs);
    }
  }

  private onHead(major: number, minor: number, raw: string[] | undefined, method: number, url: string | undefined, upgrade: boolean, keepAlive: boolean): number {
    this.waitingFor = undefined;
    if (!raw) { raw = this.acc; this.acc = []; }
    if (url === undefined || url === '') { url = this.accUrl; }
    this.accUrl = '';
    if (this.stopped) { this.parsing = undefined; return 0; }
    const name = METHODS[method] ?? '';
    const headers = headerObject(raw);
    const host = headers.host;
    // The decision, the log and the application all get the normalized target (a path rule cannot be passed by `/./admin`).
    const sent = url;
    const target = normalizeTarget(url, name, this.o.pathNormalization ?? DEFAULT_PATH_NORMALIZATION);
    if (target.ok) url = target.value.target;
    const info: RequestInfo = { method: name, path: target.ok ? target.value.path : url, host: target.ok && target.value.authority !== undefined ? target.value.authority : typeof host === 'string' ? host : '', headers, protocol: 'http1' };
    if (target.ok && target.value.path !== sent) info.originalPath = sent;
    const p: Pending = {
      method: name, url, raw, info, ex: new Exchange(info, this.o.onExchange), http10: major === 1 && minor === 0, keepAlive,
      expectContinue: false, framing: { chunked: false }, state: 'queued', body: [], complete: false, trailers: [],
      responded: false, informational: false, resChunked: false, closeAfter: !keepAlive, upKeepAlive: true, resTrailers: [],
    };
    this.parsing = p;
    this.queue.push(p);
    if (!target.ok) {
      p.ex.verdict = refusalVerdict(400, target.error);
      p.ex.fail(target.error);
      this.refuseLater(p, 400, target.error, true);
      return 0;
    }
    if (upgrade) {
      // The tunnel judges and forwards the request itself (http1-tunnel.ts); llhttp stops after this head.
      p.tunnel = { head: Buffer.alloc(0) };
      this.stopped = true;
      return 0;
    }
    const checked = checkHttp1Request(raw, this.limits.maxRequestBodyBytes, this.limits.maxHeaderPairs);
    if (!checked.ok) {
      p.ex.verdict = refusalVerdict(checked.error.status, checked.error.reason);
      p.ex.fail(checked.error.reason);
      this.refuseLater(p, checked.error.status, checked.error.reason, true);
      return 0;
    }
    p.framing = checked.value;
    const expect = !p.http10 ? firstValue(raw, 'expect') : undefined;
    if (expect !== undefined) {
      if (expect.trim().toLowerCase() !== '100-continue') {
        p.ex.verdict = refusalVerdict(417, 'expectation failed');
        this.refuseLater(p, 417, 'expectation failed', refusalCloses(p.framing, true, this.limits.maxDenyDrainBytes));
        return 0;
      }
      p.expectContinue = true;
    }
    const decided = decideSafely(this.o.decide, info);
    p.ex.verdict = decided.verdict;
    if (decided.error) p.ex.fail(decided.error);
    if (!decided.verdict.allow) {
      this.refuseLater(p, decided.verdict.status, decided.verdict.body, refusalCloses(p.framing, p.expectContinue, this.limits.maxDenyDrainBytes));
    }
    return 0;
  }

  private refuseLater(p: Pending, status: number, body: string, closes: boolean): void {
    p.refusal = { status, body, closes };
    // Nothing after a request that closes the connection is read (or judged).
    if (closes) this.stopped = true;
  }

  private onBody(b: Buffer): void {
    const p = this.parsing;
    if (!p || p.refusal || p.state === 'done') return;
    p.ex.requestBytes += b.length;
    const limit = this.limits.maxRequestBodyBytes;
    if (limit !== undefined && p.ex.requestBytes > limit) {
      this.stopped = true;
      return this.abort(p, 413, `request body exceeds the limit of ${limit} bytes`);
    }
    const framed = p.framing.chunked ? chunk(b) : b;
    if (p.state === 'forwarding' && this.upstream && !this.opening) this.writeUp(framed);
    else p.body.push(framed);
    this.flow();
  }

  private onMessageComplete(): void {
    const p = this.parsing;
    this.parsing = undefined;
    this.inMessage = false;
    clearTimeout(this.requestTimer);
    if (!p) return;
    p.complete = true;
    if (p.refusal || p.state === 'done' || p.tunnel) return this.flow();
    if (p.framing.chunked) {
      const end = lastChunk(withoutHopByHop(p.trailers));
      if (p.state === 'forwarding' && this.upstream && !this.opening) this.writeUp(end);
      else p.body.push(end);
    }
    this.flow();
  }

  private parseError(e: ParseError): void {
    this.stopped = true;
    const p = this.parsing;
    const status = statusForParseError(e.code);
    const ex = new Exchange({ method: '', path: '', host: '', headers: {}, protocol: 'http1' }, this.o.onExchange);
    ex.verdict = refusalVerdict(status, e.code ?? e.message);
    ex.fail(`${e.code ?? 'error'}: ${e.message}`);
    // A request whose body turned out malformed: the application has part of it; stop both sides.
    if (p && p.state === 'forwarding') {
      ex.report();
      return this.abort(p, status, parseErrorBody(status));
    }
    if (p) {
      this.queue.splice(this.queue.indexOf(p), 1);
      p.ex.fail(ex.error);
      p.ex.report();
    }
    this.pendingError = { status, ex };
    this.pump();
  }

  /** The head did not arrive in time (or the whole request, with requestTimeoutMs): 408 once nothing is in flight. */
  private slow(): void {
    if (this.stopped || this.closed) return;
    const p = this.parsing;
    if (p && p.state === 'forwarding') { this.stopped = true; return this.abort(p, 408, 'request timeout'); }
    const e: ParseError = Object.assign(new Error('request head did not arrive in time'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' });
    this.parseError(e);
  }

  // ---- turns

  /** Starts the request at the head of the queue when the one before it is answered. */
  private pump(): void {
    while (!this.closed) {
      const p = this.queue[0];
      if (!p) break;
      if (p.state !== 'queued') return this.flow();
      if (p.tunnel) return this.toTunnel(p);
      if (p.refusal) {
        this.writeRefusal(p, p.refusal.status, p.refusal.body, p.refusal.closes);
        this.queue.shift();
        if (p.refusal.closes || p.closeAfter) { this.queue.length = 0; return this.closeDown(); }
        continue;
      }
      this.forward(p);
      return this.flow();
    }
    if (this.pendingError) {
      const { status, ex } = this.pendingError;
      this.pendingError = undefined;
      if (status && this.d.writable) {
        ex.status = status;
        this.d.write(rawResponse(status, parseErrorBody(status)));
      }
      ex.report();
      return this.closeDown();
    }
    if (this.clientEnded) return this.closeDown();
    if (!this.inMessage) this.arm('idle', this.limits.idleTimeoutMs);
    this.flow();
  }

  private writeRefusal(p: Pending, status: number, body: string, closes: boolean): void {
    const payload = Buffer.from(body);
    const fields = ['Content-Type', 'text/plain', 'Content-Length', String(payload.length)];
    if (closes || p.closeAfter) fields.push('Connection', 'close');
    p.ex.status = status;
    p.state = 'done';
    this.d.write(Buffer.concat([statusHead(status, undefined, fields), payload]));
    p.ex.report();
  }

  private toTunnel(p: Pending): void {
    this.tunnelled = true;
    this.clearTimers();
    this.d.off('data', this.onData);
    this.d.off('end', this.onEnd);
    this.d.pause();
    this.upstream?.destroy();
    const head = p.tunnel!.head;
    void onHttp1Tunnel({ o: this.o }, { method: p.method, url: p.url, path: p.info.path, ...(p.info.originalPath === undefined ? {} : { originalPath: p.info.originalPath }), host: p.info.host, headers: p.info.headers, rawHeaders: p.raw }, this.d, head);
  }

  // ---- proxy -> application

  private forward(p: Pending): void {
    p.state = 'forwarding';
    // Envoy's default: the proxy answers 100-continue itself once the request may pass, and does not forward Expect.
    if (p.expectContinue && !p.resent) this.d.write(Buffer.from('HTTP/1.1 100 Continue\r\n\r\n', 'latin1'));
    const v = p.ex.verdict;
    const set = v.allow ? v.setHeaders : undefined;
    const fields = withoutHopByHop(p.raw, { drop: set === undefined ? ['expect'] : ['expect', ...(v.allow && v.dropHeaders ? v.dropHeaders : []), ...setNames(set)] });
    if (set !== undefined) fields.push(...set);
    if (p.framing.chunked) fields.push('Transfer-Encoding', 'chunked');
    else if (p.framing.contentLength === undefined && !NO_BODY_BY_DEFAULT.has(p.method)) fields.push('Content-Length', '0');
    const head = requestHead(p.method, p.url, fields);
    const up = this.upstream;
    if (up && !up.destroyed && up.writable) { p.onReused = true; return this.send(p, head); }
    p.onReused = false;
    this.upstream = undefined;
    this.opening = true;
    this.o.connectUpstream().then((socket) => {
      this.opening = false;
      if (this.closed) return void socket.destroy();
      this.adopt(socket);
      this.send(p, head);
    }, (e: Error & { code?: string }) => {
      this.opening = false;
      const status = statusForUpstreamError(e);
      p.ex.fail(e);
      this.abort(p, status, status === 503 ? 'upstream connect error' : 'upstream reset before response');
    });
  }

  private send(p: Pending, head: Buffer): void {
    const up = this.upstream!;
    up.cork();
    this.writeUp(head);
    for (const b of p.body) this.writeUp(b);
    up.uncork();
    p.body = [];
    this.flow();
  }

  private writeUp(b: Buffer): void {
    if (!this.upstream!.write(b)) this.upBlocked = true;
  }

  private adopt(up: Duplex): void {
    this.upstream = up;
    this.upError = undefined;
    this.upBlocked = false;
    const parser = llhttpParser('response', this.limits.maxHeaderBytes, {
      messageBegin: () => undefined,
      headers: (raw) => { const p = this.queue[0]; if (p?.responded) p.resTrailers.push(...raw); else this.upAcc.push(...raw); },
      headersComplete: (_ma, _mi, raw, _m, _u, status, message, _upgrade, keepAlive) => this.onResponseHead(raw, status ?? 0, message, keepAlive),
      body: (b) => this.onResponseBody(b),
      messageComplete: () => this.onResponseComplete(up),
    });
    up.on('data', (data: Buffer) => {
      if (this.upstream !== up) return;
      const p = this.queue[0];
      if (!p || p.state !== 'forwarding') return void up.destroy();
      this.d.cork();
      const r = parser.execute(data);
      this.d.uncork();
      if (typeof r !== 'number') this.upstreamFailed(up, r);
    });
    up.on('drain', () => { this.upBlocked = false; this.flow(); });
    up.on('error', (e: Error & { code?: string }) => { this.upError ??= e; up.destroy(); });
    up.on('end', () => {
      // A body framed by the close ends here; anything else cut short is an error.
      if (this.upstream === up) {
        const r = parser.finish();
        if (r) return this.upstreamFailed(up, r);
      }
      up.destroy();
    });
    up.once('close', () => {
      setImmediate(() => parser.close());
      if (this.upstream !== up) return;
      this.upstream = undefined;
      this.upBlocked = false;
      const p = this.queue[0];
      if (p && p.state === 'forwarding') this.upstreamFailed(up, this.upError ?? new Error('upstream closed the connection'), true);
    });
  }

  private upstreamFailed(up: Duplex, e: Error & { code?: string }, closed = false): void {
    if (this.upstream === up) { this.upstream = undefined; this.upBlocked = false; }
    up.destroy();
    const p = this.queue[0];
    if (!p || p.state !== 'forwarding') return;
    // A kept-alive application connection that closes before answering was most likely being closed
    // by the application as idle when the request went out (its keep-alive timeout): an idempotent
    // request without a body is sent once more on a new connection, as HTTP/1.1 allows for such a
    // race (RFC 9112 9.3.1, which forbids it to a proxy for other methods), instead of answering 502.
    if (closed && p.onReused && !p.resent && !p.responded && !p.informational && p.complete && isIdempotent(p.method) && p.ex.requestBytes === 0 && !p.framing.chunked && (p.framing.contentLength ?? 0) === 0) {
      p.resent = true;
      p.state = 'queued';
      this.forward(p);
      return;
    }
    p.ex.fail(p.responded ? 'upstream closed the response early' : e);
    if (p.responded) return void this.d.destroy();
    this.abort(p, statusForUpstreamError(e), 'upstream reset before response');
  }

  private onResponseHead(raw: string[] | undefined, status: number, message: string | undefined, keepAlive: boolean): number {
    if (!raw) { raw = this.upAcc; this.upAcc = []; }
    const p = this.queue[0];
    if (!p || p.state !== 'forwarding') return 0;
    // 1xx before the answer (the application's own 100 Continue, 103) is not relayed.
    if (status >= 100 && status < 200) { p.informational = true; return 0; }
    p.responded = true;
    p.upKeepAlive = keepAlive;
    const hasBody = p.method !== 'HEAD' && status !== 204 && status !== 304;
    const lengthKnown = firstValue(raw, 'content-length') !== undefined;
    p.resChunked = hasBody && !lengthKnown && !p.http10;
    // An HTTP/1.0 client learns where an unframed body ends from the close.
    if (hasBody && !lengthKnown && p.http10) p.closeAfter = true;
    // Draining: the client reconnects (to the successor) for its next request; never with pipelined requests waiting.
    if (!p.closeAfter && this.queue.length === 1 && this.o.draining?.() === true) p.closeAfter = true;
    const out = withoutHopByHop(raw, p.resChunked ? {} : { drop: ['trailer'] });
    if (p.resChunked) out.push('Transfer-Encoding', 'chunked');
    // A client that asked to close knows; one that expected to keep the connection is told.
    if (p.closeAfter) { if (p.keepAlive) out.push('Connection', 'close'); } else if (p.http10) out.push('Connection', 'keep-alive');
    p.ex.status = status;
    const grpc = firstValue(raw, 'grpc-status');
    if (grpc !== undefined) p.ex.grpcStatus = grpc;
    this.d.write(statusHead(status, message, out));
    return p.method === 'HEAD' ? 1 : 0;
  }

  private onResponseBody(b: Buffer): void {
    const p = this.queue[0];
    if (!p || !p.responded) return;
    p.ex.responseBytes += b.length;
    if (!this.d.write(p.resChunked ? chunk(b) : b)) this.upstream?.pause();
  }

  private onResponseComplete(up: Duplex): void {
    const p = this.queue[0];
    if (!p || p.state !== 'forwarding') return;
    if (p.informational) { p.informational = false; return; }
    if (p.resChunked) {
      const trailers = withoutHopByHop(p.resTrailers);
      const g = firstValue(trailers, 'grpc-status');
      if (g !== undefined) p.ex.grpcStatus = g;
      this.d.write(lastChunk(trailers));
    }
    p.state = 'done';
    // The application closes, or answered before the request body was all sent: not reusable.
    if (!p.upKeepAlive || !p.complete) {
      if (this.upstream === up) { this.upstream = undefined; this.upBlocked = false; }
      up.destroy();
    }
    this.queue.shift();
    p.ex.report();
    if (p.closeAfter) { this.stopped = true; this.queue.length = 0; return this.closeDown(); }
    this.pump();
  }

  /** The request cannot go on: an answer if none has started (the connection then closes), else the connection is cut. */
  private abort(p: Pending, status: number, why: string): void {
    p.ex.fail(why);
    this.stopped = true;
    const up = this.upstream;
    if (up && p.state === 'forwarding') { this.upstream = undefined; up.destroy(); }
    if (p.responded || p.state === 'done') { p.ex.report(); return void this.d.destroy(); }
    p.state = 'done';
    p.ex.status = status;
    if (this.queue[0] === p) {
      if (this.d.writable) this.d.write(rawResponse(status, why));
      p.ex.report();
      this.queue.length = 0;
      return this.closeDown();
    }
    // Not yet its turn: answered in order, then the connection closes.
    p.refusal = { status, body: why, closes: true };
    p.state = 'queued';
  }

  // ---- connection

  /** Reads from the client only when it is the current request's body that arrives: a queued request waits unread. */
  private flow(): void {
    if (this.closed || this.tunnelled) return;
    const tunnelWaits = this.queue[this.queue.length - 1]?.tunnel !== undefined;
    const pause = tunnelWaits || (!this.stopped && (this.upBlocked || this.opening || this.queue.length > 1 || this.queue[0]?.state === 'queued'));
    if (pause && !this.downPaused) { this.downPaused = true; this.d.pause(); }
    else if (!pause && this.downPaused) { this.downPaused = false; this.d.resume(); }
  }

  private closeDown(): void {
    this.stopped = true;
    this.clearTimers();
    const d = this.d;
    if (d.destroyed) return;
    if (!d.writable) return void d.destroy();
    d.end();
    d.once('finish', () => d.destroy());
    d.resume();
  }

  private arm(what: 'head' | 'idle', ms: number): void {
    this.waitingFor = what;
    if (what === 'head') {
      if (this.headTimer) this.headTimer.refresh();
      else this.headTimer = setTimeout(() => { if (this.waitingFor === 'head' && !this.closed) this.slow(); }, ms);
    } else if (this.idleTimer) this.idleTimer.refresh();
    else this.idleTimer = setTimeout(() => { if (this.waitingFor === 'idle' && !this.closed) this.d.destroy(); }, ms);
  }

  private clearTimers(): void {
    this.waitingFor = undefined;
    clearTimeout(this.headTimer);
    clearTimeout(this.idleTimer);
    clearTimeout(this.requestTimer);
  }

  private onClose(): void {
    this.closed = true;
    this.clearTimers();
    this.upstream?.destroy();
    this.upstream = undefined;
    for (const p of this.queue) { if (p.state !== 'done' && !p.tunnel) { p.ex.fail('client closed the connection'); p.ex.report(); } }
    const parser = this.parser;
    setImmediate(() => parser.close());
    this.done();
  }
}

/** Serves HTTP/1.x on `downstream` until it closes, parsing with llhttp directly (no Node http objects). */
export function serveHttp1Direct(downstream: Duplex, o: ServeHttpOptions): Promise<void> {
  const checked = checkLimits(o.limits);
  if (!checked.ok) throw new TypeError(checked.error);
  return new Promise((resolve) => {
    if (downstream.destroyed) return resolve();
    new DirectConnection(downstream, o, resolve).start(o.head);
  });
}
