/**
 * A lean HTTP/1.x server on one client connection, driven by llhttp directly (no IncomingMessage,
 * ServerResponse or http.Server per connection): what Node's http server did for the Service path,
 * at a fraction of its cost per request. Requests are answered one at a time in order (pipelined
 * ones wait parsed, with reading paused); Upgrade and CONNECT hand the connection over at their
 * turn; malformed requests (llhttp strict) are answered 400/431, a head that does not arrive within
 * headersTimeoutMs 408, and nothing of them reaches the handler. As Node's server: HTTP/1.1 without
 * Host is answered 400, `Expect: 100-continue` gets `100 Continue` when the request's turn comes,
 * another expectation 417; a response without Content-Length is chunked (HTTP/1.1) or ends with the
 * connection (HTTP/1.0); HEAD, 1xx, 204 and 304 answers carry no body; a Date field is added when
 * the response has none.
 */
import { STATUS_CODES } from 'node:http';
import { Readable, type Duplex } from 'node:stream';
import { statusForParseError } from './http1-direct';
import { headerObject } from './http1-wire';
import { llhttpParser, METHODS, type LlhttpParser, type ParseError } from './llhttp';
import { rawResponse } from './tunnel';

/** A request head as the handler sees it: Node's shapes (lower-case joined `headers`, `rawHeaders` as received). */
export interface H1Head {
  method: string;
  url: string;
  /** `1.1` or `1.0` */
  httpVersion: string;
  headers: Record<string, string | string[]>;
  rawHeaders: string[];
}

export interface H1Request extends H1Head {
  /** No body is framed (neither Transfer-Encoding nor a Content-Length above 0). */
  readonly bodyless: boolean;
  /** The body as a stream (created on first call; flow controlled by the client connection). */
  body(): Readable;
  /** The body is not wanted: it is read and dropped. */
  discard(): void;
}

export interface H1ServerLimits {
  headersTimeoutMs: number;
  idleTimeoutMs: number;
  maxHeaderBytes: number;
}

export interface H1ServerHandlers {
  request(req: H1Request, res: H1Response): void;
  /** An Upgrade request at its turn: the connection is the handler's now, `head` the bytes after the request head. */
  upgrade(req: H1Head, socket: Duplex, head: Buffer): void;
  /** A CONNECT request at its turn: the connection is the handler's now. */
  connect(req: H1Head, socket: Duplex): void;
  /** The proxy is draining (an agent upgrade, docs/upgrade.md): answers say `connection: close` and the connection closes after them. */
  draining?(): boolean;
}

/** Header values as Node writes them: a list is one field line per value. */
export type OutgoingFields = Readonly<Record<string, string | number | readonly string[]>>;

const CONTINUE_EXPECTATION = /(?:^|\W)100-continue(?:$|\W)/i;
const BAD_VALUE = /[\r\n\0]/;
const BAD_NAME = /[^!#$%&'*+\-.^_`|~0-9A-Za-z]/;

let dateSecond = 0;
let dateValue = '';
/** The Date field value, made once per second. */
function httpDate(): string {
  const now = Date.now();
  const s = Math.floor(now / 1000);
  if (s !== dateSecond) { dateSecond = s; dateValue = new Date(now).toUTCString(); }
  return dateValue;
}

/** The response to one request. Nothing is written before the first body bytes or the end: a small response leaves as one write. */
export class H1Response {
  headersSent = false;
  /** end() was called (or the response was cut) */
  ended = false;
  private head = '';
  private chunked = false;
  private hasBody = true;
  private closeListeners: (() => void)[] | undefined;

  constructor(private readonly conn: H1Connection, private readonly req: Pending) {}

  /**
   * The status line and fields; throws a TypeError naming a field that cannot be written (CR/LF in
   * its value, a bad name). Framing (Content-Length kept, else chunked or close) and Connection are the server's.
   */
  writeHead(status: number, fields: OutgoingFields): void {
    if (this.headersSent) throw new TypeError('response head already written');
    const req = this.req;
    this.hasBody = req.method !== 'HEAD' && status !== 204 && status !== 304 && !(status >= 100 && status < 200);
    let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`;
    let length = false, date = false;
    for (const name in fields) {
      const v = fields[name]!;
      if (BAD_NAME.test(name) || name === '') throw new TypeError(`response header field name ${JSON.stringify(name)} is not valid`);
      if (name.length === 14 && name.toLowerCase() === 'content-length') length = true;
      else if (name.length === 4 && name.toLowerCase() === 'date') date = true;
      if (typeof v === 'object') {
        for (const one of v) {
          if (BAD_VALUE.test(one)) throw new TypeError(`response header field ${name} holds CR, LF or NUL`);
          head += `${name}: ${one}\r\n`;
        }
      } else {
        const s = typeof v === 'number' ? String(v) : v;
        if (BAD_VALUE.test(s)) throw new TypeError(`response header field ${name} holds CR, LF or NUL`);
        head += `${name}: ${s}\r\n`;
      }
    }
    if (!date) head += `date: ${httpDate()}\r\n`;
    if (this.hasBody && !length) {
      if (req.http10) req.closeAfter = true;
      else { this.chunked = true; head += 'transfer-encoding: chunked\r\n'; }
    }
    if (!req.closeAfter && this.conn.drainsAfter()) req.closeAfter = true;
    if (req.closeAfter) head += 'connection: close\r\n';
    else if (req.http10) head += 'connection: keep-alive\r\n';
    this.head = `${head}\r\n`;
    this.headersSent = true;
  }

  /** Body bytes; false when the client connection wants a drain first (onceDrain). */
  write(data: Buffer): boolean {
    if (this.ended || !this.headersSent) return false;
    const s = this.conn.socket;
    this.conn.cork();
    this.flushHead();
    if (!this.hasBody || data.length === 0) return !s.writableNeedDrain;
    if (this.chunked) {
      s.write(`${data.length.toString(16)}\r\n`, 'latin1');
      s.write(data);
      return s.write('\r\n', 'latin1');
    }
    return s.write(data);
  }

  onceDrain(cb: () => void): void {
    this.conn.socket.once('drain', cb);
  }

  /** Ends the response (trailer fields as a raw list, sent when chunked) and lets the next request have its turn. */
  end(data?: Buffer, trailers?: readonly string[]): void {
    if (this.ended) return;
    if (!this.headersSent) throw new TypeError('end() before writeHead()');
    if (data !== undefined) this.write(data);
    this.conn.cork();
    this.flushHead();
    if (this.chunked) {
      let last = '0\r\n';
      if (trailers) for (let i = 0; i + 1 < trailers.length; i += 2) {
        if (BAD_NAME.test(trailers[i]!) || BAD_VALUE.test(trailers[i + 1]!)) continue;
        last += `${trailers[i]}: ${trailers[i + 1]}\r\n`;
      }
      this.conn.socket.write(`${last}\r\n`, 'latin1');
    }
    this.ended = true;
    this.closeListeners = undefined;
    this.conn.finished(this.req);
  }

  /** Cuts the client connection (a response that cannot be completed). */
  destroy(): void {
    this.ended = true;
    this.conn.socket.destroy();
  }

  /** Calls `cb` if the client connection closes before the response ends; returns how to stop listening. */
  onClose(cb: () => void): () => void {
    (this.closeListeners ??= []).push(cb);
    return () => { const l = this.closeListeners; if (l) { const i = l.indexOf(cb); if (i >= 0) l.splice(i, 1); } };
  }

  /** @internal the connection closed */
  closed(): void {
    const l = this.closeListeners;
    this.closeListeners = undefined;
    this.ended = true;
    if (l) for (const cb of l) cb();
  }

  private flushHead(): void {
    if (this.head === '') return;
    this.conn.socket.write(this.head, 'latin1');
    this.head = '';
  }
}

/** One parsed request waiting for, or having, its turn. */
interface Pending {
  head: H1Head;
  method: string;
  http10: boolean;
  closeAfter: boolean;
  bodyless: boolean;
  /** the proxy answers it itself (no Host, an expectation it cannot meet) */
  refusal?: { status: number; body: string };
  expectContinue: boolean;
  /** Upgrade or CONNECT: the connection is handed over at its turn */
  tunnel?: 'upgrade' | 'connect';
  tunnelHead?: Buffer;
  /** body bytes parsed before the request's turn (or before its stream was read) */
  chunks: Buffer[];
  complete: boolean;
  stream?: Readable;
  res?: H1Response;
}

class H1Connection {
  private readonly parser: LlhttpParser;
  private readonly queue: Pending[] = [];
  private parsing: Pending | undefined;
  private acc: string[] = [];
  private accUrl = '';
  private stopped = false;
  private isClosed = false;
  private paused = false;
  private corked = false;
  /** the client ended its side: close once the queue is answered */
  private clientEnded = false;
  private pendingError: { status: number; message: string } | undefined;
  /** start of the request head being read (0: none); the connection went idle at (0: busy) */
  private headSince = 0;
  private idleSince = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(readonly socket: Duplex, private readonly limits: H1ServerLimits, private readonly h: H1ServerHandlers) {
    this.parser = llhttpParser('request', limits.maxHeaderBytes, {
      messageBegin: () => { this.headSince = performance.now(); },
      headers: (raw, url) => { if (this.parsing) return; for (const x of raw) this.acc.push(x); this.accUrl += url; },
      headersComplete: (major, minor, raw, method, url, _s, _m, upgrade, keepAlive) => this.onHead(major, minor, raw, method ?? 0, url, upgrade, keepAlive),
      body: (b) => this.onBody(b),
      messageComplete: () => this.onMessageComplete(),
    });
  }

  /** Draining, and no pipelined request waits behind the one being answered: close after its answer. */
  drainsAfter(): boolean {
    return this.queue.length <= 1 && this.h.draining?.() === true;
  }

  start(head: Buffer | undefined): void {
    const s = this.socket;
    s.on('data', this.onData);
    s.on('end', this.onEnd);
    s.on('error', () => s.destroy());
    s.once('close', () => this.onClose());
    this.idleSince = performance.now();
    // One timer per connection, checking both deadlines (as Node's server sweeps its connections): no timer per request.
    const every = Math.min(this.limits.headersTimeoutMs, this.limits.idleTimeoutMs);
    this.timer = setInterval(() => this.check(), Math.max(10, Math.min(every, 30_000)));
    this.timer.unref();
    if (head && head.length > 0) this.onData(head);
    if (!this.isClosed && !this.paused) s.resume();
  }

  cork(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    process.nextTick(() => { this.corked = false; this.socket.uncork(); });
  }

  private readonly onData = (data: Buffer): void => {
    if (this.isClosed) return;
    const last = this.queue[this.queue.length - 1];
    if (last?.tunnel) { last.tunnelHead = last.tunnelHead ? Buffer.concat([last.tunnelHead, data]) : data; return; }
    if (this.stopped) return;
    const r = this.parser.execute(data);
    if (typeof r !== 'number') return this.parseError(r);
    const tail = this.queue[this.queue.length - 1];
    if (tail?.tunnel && tail.tunnelHead === undefined) tail.tunnelHead = data.subarray(r);
    this.pump();
  };

  private readonly onEnd = (): void => {
    this.clientEnded = true;
    this.stopped = true;
    const p = this.parsing;
    // A request the client cut short: one still queued is dropped; one in progress sees its body end early.
    if (p && !p.complete) {
      const i = this.queue.indexOf(p);
      if (p.res === undefined && i >= 0) this.queue.splice(i, 1);
      else p.stream?.destroy(new Error('client closed before the request body was complete'));
    }
    if (this.queue.length === 0) this.closeDown();
  };

  private onHead(major: number, minor: number, raw: string[] | undefined, method: number, url: string | undefined, upgrade: boolean, keepAlive: boolean): number {
    this.headSince = 0;
    if (!raw) { raw = this.acc; this.acc = []; }
    if (url === undefined || url === '') url = this.accUrl;
    this.accUrl = '';
    if (this.stopped) return 0;
    const name = METHODS[method] ?? '';
    const headers = headerObject(raw);
    const http10 = major === 1 && minor === 0;
    const te = headers['transfer-encoding'], cl = headers['content-length'];
    const p: Pending = {
      head: { method: name, url, httpVersion: `${major}.${minor}`, headers, rawHeaders: raw }, method: name, http10, closeAfter: !keepAlive,
      bodyless: te === undefined && (cl === undefined || cl === '0'), expectContinue: false, chunks: [], complete: false,
    };
    this.parsing = p;
    this.queue.push(p);
    if (upgrade) {
      p.tunnel = name === 'CONNECT' ? 'connect' : 'upgrade';
      this.stopped = true;
      return 0;
    }
    if (major === 1 && minor === 1) {
      if (headers.host === undefined) {
        p.refusal = { status: 400, body: 'HTTP/1.1 request without Host' };
      } else if (headers.expect !== undefined) {
        if (CONTINUE_EXPECTATION.test(String(headers.expect))) p.expectContinue = true;
        else p.refusal = { status: 417, body: 'expectation failed' };
      }
      // Node closes after these; nothing after them is read.
      if (p.refusal) { p.closeAfter = true; this.stopped = true; }
    }
    return 0;
  }

  private onBody(b: Buffer): void {
    const p = this.parsing;
    if (!p || p.refusal) return;
    if (p.stream) { if (!p.stream.push(b) && this.queue[0] === p) this.pause(); return; }
    p.chunks.push(b);
    // Kept until the handler asks for the body (or its turn comes): bounded, reading waits past 64 KiB.
    if (p.chunks.length > 1 && p.chunks.reduce((n, c) => n + c.length, 0) > 64 * 1024) this.pause();
  }

  private onMessageComplete(): void {
    const p = this.parsing;
    this.parsing = undefined;
    if (!p) return;
    p.complete = true;
    p.stream?.push(null);
  }

  private parseError(e: ParseError): void {
    this.stopped = true;
    const p = this.parsing;
    this.parsing = undefined;
    if (p) {
      const i = this.queue.indexOf(p);
      // A request already with the handler: its body is cut; the connection closes after its answer.
      if (p.res !== undefined) { p.stream?.destroy(new Error(`malformed request body: ${e.code ?? e.message}`)); p.closeAfter = true; return; }
      if (i >= 0) this.queue.splice(i, 1);
    }
    this.pendingError = { status: statusForParseError(e.code), message: e.message };
    this.pump();
  }

  /** Gives the request at the head of the queue its turn when the one before it is answered. */
  private pump(): void {
    while (!this.isClosed) {
      const p = this.queue[0];
      if (!p) break;
      if (p.res !== undefined) return this.flow();
      if (p.tunnel) return this.handOver(p);
      if (p.refusal) {
        this.queue.shift();
        this.socket.write(rawResponse(p.refusal.status, p.refusal.body));
        this.queue.length = 0;
        return this.closeDown();
      }
      this.dispatch(p);
      // dispatch may have answered at once (a local reply): the loop gives the next one its turn.
    }
    if (this.pendingError) {
      const { status, message } = this.pendingError;
      this.pendingError = undefined;
      if (status && this.socket.writable) this.socket.write(rawResponse(status, message));
      return this.closeDown();
    }
    if (this.clientEnded) return this.closeDown();
    this.idleSince = performance.now();
    this.flow();
  }

  private dispatch(p: Pending): void {
    this.idleSince = 0;
    const res = new H1Response(this, p);
    p.res = res;
    if (p.expectContinue) this.socket.write('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');
    const conn = this;
    const head = p.head;
    const req: H1Request = {
      method: head.method, url: head.url, httpVersion: head.httpVersion, headers: head.headers, rawHeaders: head.rawHeaders,
      bodyless: p.bodyless,
      body(): Readable {
        if (p.stream) return p.stream;
        const s = new Readable({ read: () => conn.resumeFor(p) });
        for (const c of p.chunks) s.push(c);
        p.chunks = [];
        if (p.complete) s.push(null);
        p.stream = s;
        return s;
      },
      discard(): void {
        // A body already read whole (or none): dropped here, no stream made for it (a bodyless GET per request otherwise built a Readable).
        if (!p.stream && p.complete) { p.chunks = []; return; }
        this.body().resume();
      },
    };
    // A request with a body nobody reads would hold the connection: it is read (and dropped) unless the handler takes it.
    this.h.request(req, res);
  }

  /** The response of `p` ended: the next request's turn (or the connection closes). */
  finished(p: Pending): void {
    if (this.queue[0] !== p) return;
    this.queue.shift();
    if (p.closeAfter) { this.stopped = true; this.queue.length = 0; return this.closeDown(); }
    // A body still arriving that the handler did not read (a local answer) is read and dropped, so the next request can be parsed.
    if (!p.complete) {
      if (!p.stream) { p.chunks = []; p.stream = new Readable({ read: () => undefined }); }
      p.stream.resume();
    }
    this.pump();
  }

  private resumeFor(p: Pending): void {
    if (this.queue[0] === p || this.parsing === p) this.unpause();
  }

  private handOver(p: Pending): void {
    this.detach();
    const head = p.tunnelHead ?? Buffer.alloc(0);
    if (p.tunnel === 'connect') this.h.connect(p.head, this.socket);
    else this.h.upgrade(p.head, this.socket, head);
  }

  /** Reading waits while a request waits for its turn behind another (pipelining) or its body stream is full. */
  private flow(): void {
    if (this.isClosed) return;
    const waiting = this.queue.length > 1 || (this.queue[this.queue.length - 1]?.tunnel !== undefined);
    if (waiting) this.pause();
    else if (!this.bodyFull()) this.unpause();
  }

  private bodyFull(): boolean {
    const s = this.queue[0]?.stream;
    return s !== undefined && s.readableLength >= s.readableHighWaterMark;
  }

  private pause(): void {
    if (!this.paused) { this.paused = true; this.socket.pause(); }
  }

  private unpause(): void {
    if (this.paused && !this.isClosed) { this.paused = false; this.socket.resume(); }
  }

  private check(): void {
    if (this.isClosed) return;
    const now = performance.now();
    if (this.headSince > 0 && now - this.headSince >= this.limits.headersTimeoutMs && !this.stopped) {
      const p = this.parsing;
      if (p?.res) { p.stream?.destroy(new Error('request timeout')); return void this.socket.destroy(); }
      return this.parseError(Object.assign(new Error('request head did not arrive in time'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }));
    }
    if (this.headSince === 0 && this.idleSince > 0 && this.queue.length === 0 && now - this.idleSince >= this.limits.idleTimeoutMs) this.socket.destroy();
  }

  private detach(): void {
    clearInterval(this.timer);
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.pause();
    this.isClosed = true;
    const parser = this.parser;
    setImmediate(() => parser.close());
  }

  private closeDown(): void {
    this.stopped = true;
    clearInterval(this.timer);
    const s = this.socket;
    if (s.destroyed) return;
    if (!s.writable) return void s.destroy();
    s.end();
    s.once('finish', () => s.destroy());
    s.resume();
  }

  private onClose(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    clearInterval(this.timer);
    for (const p of this.queue) {
      p.res?.closed();
      if (p.stream && !p.complete) p.stream.destroy(new Error('client closed the connection'));
    }
    this.queue.length = 0;
    const parser = this.parser;
    setImmediate(() => parser.close());
  }
}

/** Serves HTTP/1.x on `socket` (with `head` already read from it) until it closes or is handed over. */
export function serveH1(socket: Duplex, head: Buffer | undefined, limits: H1ServerLimits, handlers: H1ServerHandlers): void {
  if (socket.destroyed) return;
  new H1Connection(socket, limits, handlers).start(head);
}
