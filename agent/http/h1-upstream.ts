/**
 * A lean HTTP/1.1 client over pooled byte streams (HBONE streams, in-memory pairs into deliver(),
 * plaintext sockets): the request head goes out as one Buffer (with a small body in the same
 * write), the response is parsed by llhttp directly ('response' mode, as http1-direct.ts adopts an
 * application connection), and a connection whose response ended cleanly and says keep-alive goes
 * back to its endpoint's idle list (last in, first out). No ClientRequest, IncomingMessage or Agent
 * per request. Only Buffers are written: Node 20's HTTP/2 stream writes a string from memory that
 * can be released before nghttp2 sends it (upstream-pools.ts had to convert them for Node's client).
 */
import type { Duplex, Readable } from 'node:stream';
import { llhttpParser, type LlhttpParser, type ParseError } from './llhttp';
import { chunk, lastChunk } from './http1-wire';

/** Opens one new byte stream to the endpoint. */
export type Opener = () => Promise<Duplex>;

/** Response body bytes buffered before the proxy starts relaying them; past this the upstream is paused. */
const BUFFER_BEFORE_START = 64 * 1024;
/** A request body up to this size leaves in the same write as its head. */
const COALESCE_LIMIT = 16 * 1024;

/** Where a response body goes once the proxy relays it. `end` gets the trailer fields (raw name/value list). */
export interface BodySink {
  data(chunk: Buffer): void;
  end(trailers: readonly string[]): void;
  error(e: Error): void;
}

/**
 * A response body from an endpoint: buffered until `start`, then delivered to the sink as it comes.
 * Exactly one of `end` and `error` reaches the sink, once.
 */
export class ResponseBody {
  private sink: BodySink | undefined;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended: readonly string[] | undefined;
  private failed: Error | undefined;
  private settled = false;
  private held = false;

  constructor(private readonly flow: { pause(): void; resume(): void; discard(): void }) {}

  start(sink: BodySink): void {
    this.sink = sink;
    const chunks = this.chunks;
    this.chunks = [];
    for (const c of chunks) sink.data(c);
    if (this.ended) sink.end(this.ended);
    else if (this.failed) sink.error(this.failed);
    else if (this.held) { this.held = false; this.flow.resume(); }
  }

  /** Backpressure from the client side. */
  pause(): void { if (!this.settled) this.flow.pause(); }
  resume(): void { if (!this.settled) this.flow.resume(); }
  /** Abandons the response (a retry, a timeout): its connection is not reused. */
  discard(): void { if (!this.settled) { this.settled = true; this.flow.discard(); } }

  push(b: Buffer): void {
    if (this.settled) return;
    if (this.sink) return this.sink.data(b);
    this.chunks.push(b);
    this.buffered += b.length;
    if (this.buffered > BUFFER_BEFORE_START && !this.held) { this.held = true; this.flow.pause(); }
  }

  finish(trailers: readonly string[]): void {
    if (this.settled) return;
    this.settled = true;
    if (this.sink) this.sink.end(trailers);
    else this.ended = trailers;
  }

  fail(e: Error): void {
    if (this.settled) return;
    this.settled = true;
    if (this.sink) this.sink.error(e);
    else this.failed = e;
  }
}

/** A response head from the endpoint, its body to come. `raw`: the header fields as received. */
export interface UpstreamHead {
  status: number;
  raw: string[];
  body: ResponseBody;
}

/** What to send: the head (request line and fields, framing decided by the caller) and the body. */
export interface UpstreamRequest {
  head: Buffer;
  /** the whole body, already framed by the head's Content-Length (empty: none) */
  replayable?: Buffer;
  /** a body streamed once; `chunked`: the head says Transfer-Encoding: chunked, so each piece is framed */
  stream?: Readable;
  chunked?: boolean;
  /** a response to HEAD has no body, whatever its fields say */
  isHead: boolean;
  /** the method is idempotent (http1-wire.ts isIdempotent): without a body, it may be sent again on a new connection when a kept-alive one closes under it before any answer */
  idempotent?: boolean;
}

/** A request under way: resolves with the response head, rejects when the connection fails before it. */
export interface UpstreamExchange {
  result: Promise<UpstreamHead>;
  abort(): void;
}

/** A parse error as the operator reads it: the endpoint sent something that is not HTTP/1.1 (llhttp's code and reason). */
function malformed(e: ParseError): Error {
  return Object.assign(new Error(`malformed response from the endpoint: ${e.code ?? 'parse error'}${e.reason ? ` (${e.reason})` : ''}`), { code: e.code });
}

class Exchange {
  resolve!: (h: UpstreamHead) => void;
  reject!: (e: Error) => void;
  readonly result: Promise<UpstreamHead>;
  body: ResponseBody | undefined;
  requestSent = false;
  informational = false;
  keepAlive = true;
  aborted = false;
  /** sent again on a new connection after a kept-alive one closed under it (once only) */
  resent = false;
  conn: Connection | undefined;

  constructor(readonly req: UpstreamRequest) {
    this.result = new Promise<UpstreamHead>((resolve, reject) => { this.resolve = resolve; this.reject = reject; });
  }
}

class Connection {
  readonly parser: LlhttpParser;
  current: Exchange | undefined;
  served = 0;
  idleSince = 0;
  dead = false;
  /** a byte of the current exchange's answer arrived */
  private answered = false;
  private error: Error | undefined;
  private headAcc: string[] = [];
  private trailers: string[] = [];
  /** how a response body steers this connection: one object for all of its responses */
  private readonly flow = {
    pause: () => { this.stream.pause(); },
    resume: () => { this.stream.resume(); },
    discard: () => { this.stream.destroy(); },
  };

  constructor(readonly stream: Duplex, private readonly pool: H1Upstream) {
    this.parser = llhttpParser('response', pool.maxHeaderBytes, {
      messageBegin: () => undefined,
      headers: (raw) => { if (this.current?.body) this.trailers.push(...raw); else this.headAcc.push(...raw); },
      headersComplete: (_ma, _mi, raw, _m, _u, status, _msg, _upgrade, keepAlive) => this.onHead(raw, status ?? 0, keepAlive),
      body: (b) => this.current?.body?.push(b),
      messageComplete: () => this.onComplete(),
    });
    stream.on('data', (data: Buffer) => {
      if (!this.current) return void stream.destroy();
      this.answered = true;
      const r = this.parser.execute(data);
      if (typeof r !== 'number') this.fail(malformed(r));
    });
    stream.on('end', () => {
      // A body framed by the close ends here; anything else cut short is an error.
      if (this.current) { const r = this.parser.finish(); if (r) this.fail(malformed(r)); }
      stream.destroy();
    });
    stream.on('error', (e: Error) => { this.error ??= e; stream.destroy(); });
    stream.once('close', () => {
      this.dead = true;
      pool.forget(this);
      const parser = this.parser;
      setImmediate(() => parser.close());
      const ex = this.current;
      // A kept-alive connection that closes under a request before any byte of its answer was most
      // likely closed by the endpoint as idle (its keep-alive timeout) while the request was on its
      // way: an idempotent request without a body goes once more on a new connection (RFC 9112
      // 9.3.1), as the destination proxy does, instead of failing as a reset.
      if (ex && this.served > 0 && !this.answered && !ex.resent && !ex.aborted && ex.req.idempotent === true && ex.req.replayable?.length === 0) {
        this.current = undefined;
        ex.resent = true;
        return pool.sendOnNew(ex);
      }
      if (ex) this.fail(this.error ?? Object.assign(new Error('socket hang up: the endpoint closed the connection'), { code: 'ECONNRESET' }));
    });
  }

  send(ex: Exchange): void {
    this.current = ex;
    this.answered = false;
    ex.conn = this;
    this.headAcc = [];
    this.trailers = [];
    const s = this.stream;
    const { head, replayable, stream } = ex.req;
    if (replayable !== undefined) {
      s.write(replayable.length === 0 ? head : replayable.length <= COALESCE_LIMIT ? Buffer.concat([head, replayable]) : head);
      if (replayable.length > COALESCE_LIMIT) s.write(replayable);
      ex.requestSent = true;
      return;
    }
    s.write(head);
    const body = stream!;
    const chunked = ex.req.chunked === true;
    const onData = (c: Buffer) => {
      if (this.dead || this.current !== ex) return;
      if (c.length === 0) return;
      if (!s.write(chunked ? chunk(c) : c)) { body.pause(); s.once('drain', () => body.resume()); }
    };
    body.on('data', onData);
    body.once('end', () => {
      if (this.dead || this.current !== ex) return;
      if (chunked) s.write(lastChunk([]));
      ex.requestSent = true;
    });
    body.once('error', (e: Error) => { if (this.current === ex) this.fail(e); });
  }

  private onHead(raw: string[] | undefined, status: number, keepAlive: boolean): number {
    if (!raw) { raw = this.headAcc; }
    this.headAcc = [];
    const ex = this.current;
    if (!ex) return 0;
    // 1xx before the answer (100 Continue, 103) is not the answer.
    if (status >= 100 && status < 200) { ex.informational = true; return 0; }
    ex.keepAlive = keepAlive;
    const body = new ResponseBody(this.flow);
    ex.body = body;
    if (!ex.aborted) ex.resolve({ status, raw, body });
    return ex.req.isHead ? 1 : 0;
  }

  private onComplete(): void {
    const ex = this.current;
    if (!ex) return;
    if (ex.informational) { ex.informational = false; return; }
    this.current = undefined;
    this.served++;
    const trailers = this.trailers;
    this.trailers = [];
    ex.body?.finish(trailers);
    // Reused only when the endpoint keeps it, the request went out whole and nothing abandoned it.
    if (ex.keepAlive && ex.requestSent && !ex.aborted && !this.dead && this.stream.readable && this.stream.writable) this.pool.release(this);
    else this.stream.destroy();
  }

  fail(e: ParseError | Error): void {
    const ex = this.current;
    this.current = undefined;
    this.stream.destroy();
    if (!ex) return;
    if (ex.body) ex.body.fail(e);
    else ex.reject(e);
  }
}

/**
 * The keep-alive connections of one (source pod, endpoint): idle ones are reused last in, first
 * out; a new one is opened when none is idle. `maxRequests` > 0 closes a connection after that many
 * responses (TrafficPolicy maxRequestsPerConnection).
 */
export class H1Upstream {
  private readonly idle: Connection[] = [];
  private readonly all = new Set<Connection>();

  constructor(private readonly open: Opener, public maxRequests = 0, readonly maxHeaderBytes = 64 * 1024) {}

  /** Connections open now (idle or busy). */
  get size(): number { return this.all.size; }

  send(req: UpstreamRequest): UpstreamExchange {
    const ex = new Exchange(req);
    const abort = () => {
      if (ex.aborted) return;
      ex.aborted = true;
      ex.reject(new Error('aborted'));
      ex.body?.discard();
      // A connection with this request on it cannot be reused (its response may still come).
      if (ex.conn && ex.conn.current === ex) ex.conn.stream.destroy();
    };
    let conn: Connection | undefined;
    while ((conn = this.idle.pop()) !== undefined) if (!conn.dead && conn.stream.writable) break;
    if (conn) conn.send(ex);
    else this.sendOnNew(ex);
    return { result: ex.result, abort };
  }

  /** Sends `ex` on a connection opened for it. */
  sendOnNew(ex: Exchange): void {
    this.open().then((stream) => {
      const c = new Connection(stream, this);
      this.all.add(c);
      if (ex.aborted) return this.release(c);
      c.send(ex);
    }, (e: Error) => ex.reject(e));
  }

  /** A connection whose response ended cleanly: back to the idle list, unless it has served its share. */
  release(c: Connection): void {
    if (this.maxRequests > 0 && c.served >= this.maxRequests) return void c.stream.destroy();
    c.idleSince = performance.now();
    this.idle.push(c);
  }

  forget(c: Connection): void {
    this.all.delete(c);
    const i = this.idle.indexOf(c);
    if (i >= 0) this.idle.splice(i, 1);
  }

  /** Closes connections idle since before `before` (performance.now() time). */
  closeIdle(before: number): void {
    for (const c of [...this.idle]) if (c.idleSince < before) c.stream.destroy();
  }

  destroy(): void {
    for (const c of [...this.all]) c.stream.destroy();
    this.idle.length = 0;
  }
}
