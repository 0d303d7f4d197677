import * as http from 'node:http';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { checkLimits, type HttpLimits } from './limits';
import { checkHttp1Request, pairs, refusalCloses, statusForUpstreamError, withoutHopByHop, type BodyFraming } from './headers';
import { decideSafely, Exchange, refusalVerdict } from './exchange';
import { upstreamPool, type UpstreamPool } from './upstream-pool';
import { onHttp1Tunnel } from './http1-tunnel';
import { rawResponse } from './tunnel';
import type { RequestInfo, ServeHttpOptions } from './types';

/** What the shared server needs to serve one downstream connection. */
export interface Http1Connection {
  o: ServeHttpOptions;
  pool: UpstreamPool;
  /**
   * Settles when the request before has finished with the application. Requests go one at a time:
   * http.Agent counts a socket only once an asynchronous createConnection has delivered it, so two
   * pipelined requests would open two connections; this keeps one, in order.
   */
  turn: Promise<void>;
}

/** The downstream connections each server is serving, by the Duplex handed to it. */
const connections = new WeakMap<Duplex, Http1Connection>();
/**
 * One Node http server per distinct limits (by value: a caller that builds a fresh limits object
 * per connection must not get a server, and a timeout-checking interval, per connection).
 */
const servers = new Map<string, http.Server>();

/** Methods whose requests carry no body unless framed; Node's client would invent chunked framing for the others. */
const NO_BODY_BY_DEFAULT = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']);

/**
 * A Node http server that never listens: connections are handed to it with emit('connection').
 * Strict parser (never insecureHTTPParser), Host required on HTTP/1.1, duplicates joined so a
 * decision sees every value. Node starts the headers/request timeout checker only on 'listening',
 * so it is started here by emitting that event (the slowloris test guards this).
 */
function http1ServerFor(limits: HttpLimits): http.Server {
  const key = JSON.stringify(limits);
  const existing = servers.get(key);
  if (existing) return existing;
  const checked = checkLimits(limits);
  if (!checked.ok) throw new TypeError(checked.error);
  const tick = Math.max(10, Math.min(1000, Math.floor(Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs || Infinity) / 4)));
  const server = http.createServer({
    insecureHTTPParser: false,
    maxHeaderSize: limits.maxHeaderBytes,
    requireHostHeader: true,
    joinDuplicateHeaders: true,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.idleTimeoutMs,
    connectionsCheckingInterval: tick,
  });
  // Node drops the fields past maxHeadersCount silently; one more than allowed is kept so the
  // request can be refused (431) instead of forwarded without them.
  server.maxHeadersCount = limits.maxHeaderPairs + 1;
  server.timeout = 0;
  // Node's default aborts the requests in flight when the client half-closes after sending them
  // (`printf ... | nc`, a CONNECT stream's END_STREAM); a proxy answers them, then closes.
  // (A net.Socket downstream needs allowHalfOpen for its write side to stay open meanwhile.)
  (server as http.Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => onRequest(req, res, false));
  server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => onRequest(req, res, true));
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => tunnel(req, socket, head));
  server.on('connect', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => tunnel(req, socket, head));
  server.on('clientError', onClientError);
  server.emit('listening');
  servers.set(key, server);
  return server;
}

function tunnel(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
  const c = connections.get(socket);
  if (!c) return void socket.destroy();
  void onHttp1Tunnel(c, req, socket, head);
}

/** Serves HTTP/1.x on `downstream` until it closes. */
export function serveHttp1(downstream: Duplex, o: ServeHttpOptions): Promise<void> {
  const server = http1ServerFor(o.limits);
  const pool = upstreamPool(o.connectUpstream);
  connections.set(downstream, { o, pool, turn: Promise.resolve() });
  return new Promise((resolve) => {
    const done = (): void => { pool.destroy(); resolve(); };
    if (downstream.destroyed) return done();
    downstream.once('close', done);
    // The sniffed bytes go back in front of the stream. With a net.Socket the parser then consumes
    // the socket's handle directly, so bytes still in the stream's buffer (these) are only read if
    // the stream flows: resume() in the same tick delivers them before anything newer from the
    // handle (docs/http.md; the replay tests guard the order).
    if (o.head && o.head.length > 0) downstream.unshift(o.head);
    buffersOnly(downstream);
    server.emit('connection', downstream);
    downstream.resume();
  });
}

/**
 * Node's http server writes its response heads as latin1 strings. An Http2Stream (an HBONE CONNECT
 * stream as the downstream) takes writes with decodeStrings off, and a string in a batched writev
 * reached the client as garbage (its copy freed before nghttp2 sent it; the replay test over a
 * CONNECT stream caught it). Such a stream is told to turn strings into Buffers at write().
 */
function buffersOnly(downstream: Duplex): void {
  if (downstream instanceof net.Socket) return;
  const state = (downstream as Duplex & { _writableState?: { decodeStrings: boolean } })._writableState;
  if (state) state.decodeStrings = true;
}

function requestInfo(req: http.IncomingMessage): RequestInfo {
  const host = req.headers.host;
  return { method: req.method ?? '', path: req.url ?? '', host: typeof host === 'string' ? host : '', headers: req.headers, protocol: 'http1' };
}

function onRequest(req: http.IncomingMessage, res: http.ServerResponse, expectContinue: boolean): void {
  const c = connections.get(req.socket);
  if (!c) return void req.socket.destroy();
  const info = requestInfo(req);
  const ex = new Exchange(info, c.o.onExchange);
  // Pass the application's response head through: no Date, no Connection of our own unless we close.
  res.sendDate = false;
  res.removeHeader('connection');
  res.once('close', () => ex.report());

  const checked = checkHttp1Request(req.rawHeaders, c.o.limits.maxRequestBodyBytes, c.o.limits.maxHeaderPairs);
  if (!checked.ok) {
    ex.verdict = refusalVerdict(checked.error.status, checked.error.reason);
    ex.fail(checked.error.reason);
    return refuse(req, res, ex, checked.error.status, checked.error.reason, { chunked: true }, expectContinue, c.o.limits);
  }
  const decided = decideSafely(c.o.decide, info);
  ex.verdict = decided.verdict;
  if (decided.error) ex.fail(decided.error);
  if (!decided.verdict.allow) return refuse(req, res, ex, decided.verdict.status, decided.verdict.body, checked.value, expectContinue, c.o.limits);
  // Envoy's default: the proxy answers 100-continue itself once the request may pass, and does not forward Expect.
  if (expectContinue) res.writeContinue();
  const previous = c.turn;
  let release!: () => void;
  c.turn = new Promise((r) => { release = r; });
  void previous.then(() => {
    if (res.destroyed || res.writableFinished) return release();
    forward(c, req, res, ex, checked.value, release);
  });
}

/**
 * Answers a request the application must not see. A small announced body is read and dropped (Node
 * dumps an unread request after the response) and the connection stays usable; otherwise it closes.
 */
function refuse(req: http.IncomingMessage, res: http.ServerResponse, ex: Exchange, status: number, body: string, framing: BodyFraming, expectContinue: boolean, limits: HttpLimits): void {
  const payload = Buffer.from(body);
  const closes = refusalCloses(framing, expectContinue, limits.maxDenyDrainBytes);
  const headers = ['Content-Type', 'text/plain', 'Content-Length', String(payload.length)];
  if (closes) headers.push('Connection', 'close');
  ex.status = status;
  res.writeHead(status, headers);
  res.end(payload);
  if (closes) req.socket.once('finish', () => req.socket.destroy());
}

function forward(c: Http1Connection, req: http.IncomingMessage, res: http.ServerResponse, ex: Exchange, framing: BodyFraming, done: () => void): void {
  const headers = withoutHopByHop(req.rawHeaders, { drop: ['expect'] });
  const method = req.method ?? 'GET';
  const hasBody = framing.chunked || (framing.contentLength ?? 0) > 0;
  if (framing.chunked) headers.push('Transfer-Encoding', 'chunked');
  else if (framing.contentLength === undefined && !NO_BODY_BY_DEFAULT.has(method)) headers.push('Content-Length', '0');
  const limit = c.o.limits.maxRequestBodyBytes;

  // The pool is Agent-like (what ClientRequest calls on an agent), not an http.Agent.
  const upReq = http.request({ agent: c.pool as unknown as http.Agent, method, path: req.url, headers });
  upReq.once('close', done);
  let responded = false;
  const abort = (status: number, why: string, e?: Error): void => {
    ex.fail(e ?? why);
    if (!upReq.destroyed) upReq.destroy();
    if (!res.headersSent && !responded) {
      responded = true;
      ex.status = status;
      const payload = Buffer.from(why);
      // The request's body may be half read: close rather than resynchronise on it.
      res.writeHead(status, ['Content-Type', 'text/plain', 'Content-Length', String(payload.length), 'Connection', 'close']);
      res.end(payload);
      res.once('finish', () => req.socket.destroy());
    } else {
      res.destroy();
    }
  };

  upReq.on('error', (e: Error & { code?: string }) => {
    if (res.writableFinished) return;
    const status = statusForUpstreamError(e);
    abort(status, status === 503 ? 'upstream connect error' : 'upstream reset before response', e);
  });
  // The client went away before the response was complete: stop the application's side too.
  res.once('close', () => { if (!res.writableFinished && !upReq.destroyed) upReq.destroy(); });

  if (hasBody) {
    req.on('data', (chunk: Buffer) => {
      ex.requestBytes += chunk.length;
      if (limit !== undefined && ex.requestBytes > limit) {
        req.pause();
        return abort(413, `request body exceeds the limit of ${limit} bytes`);
      }
      if (!upReq.write(chunk)) req.pause();
    });
    upReq.on('drain', () => req.resume());
    req.once('end', () => { if (!upReq.destroyed) upReq.end(); });
  } else {
    upReq.end();
    req.resume();
  }

  upReq.once('response', (up: http.IncomingMessage) => {
    if (responded) return void up.destroy();
    responded = true;
    const status = up.statusCode ?? 502;
    const hasResponseBody = method !== 'HEAD' && status !== 204 && status !== 304 && !(status >= 100 && status < 200);
    const lengthKnown = up.headers['content-length'] !== undefined;
    const chunked = hasResponseBody && !lengthKnown && req.httpVersion === '1.1';
    const out = withoutHopByHop(up.rawHeaders, chunked ? {} : { drop: ['trailer'] });
    ex.status = status;
    if (up.headers['grpc-status'] !== undefined) ex.grpcStatus = String(up.headers['grpc-status']);
    res.writeHead(status, up.statusMessage, out);
    up.on('data', (chunk: Buffer) => {
      ex.responseBytes += chunk.length;
      if (!res.write(chunk)) up.pause();
    });
    res.on('drain', () => up.resume());
    up.once('end', () => {
      if (chunked && up.rawTrailers.length > 0) {
        res.addTrailers(pairs(up.rawTrailers));
        const g = up.trailers['grpc-status'];
        if (g !== undefined) ex.grpcStatus = String(g);
      }
      res.end();
    });
    up.once('aborted', () => { ex.fail('upstream closed the response early'); res.destroy(); });
    up.once('error', (e: Error) => { ex.fail(e); res.destroy(); });
  });
}

/** Status Node's parser errors deserve: 431 for a head over maxHeaderSize, 408 for a slow head, 400 for the rest. */
export function statusForParseError(code: string | undefined): number {
  if (code === 'HPE_HEADER_OVERFLOW') return 431;
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return 408;
  if (code === 'ECONNRESET' || code === 'EPIPE') return 0;
  return 400;
}

function onClientError(e: Error & { code?: string }, socket: Duplex): void {
  const c = connections.get(socket);
  const status = statusForParseError(e.code);
  if (c) {
    const ex = new Exchange({ method: '', path: '', host: '', headers: {}, protocol: 'http1' }, c.o.onExchange);
    ex.verdict = refusalVerdict(status, e.code ?? e.message);
    ex.fail(`${e.code ?? 'error'}: ${e.message}`);
    // Node's own handler writes only when no response is under way on the connection; so do we.
    const inFlight = (socket as Duplex & { _httpMessage?: http.ServerResponse })._httpMessage;
    if (status && socket.writable && !inFlight?.headersSent) {
      ex.status = status;
      const body = status === 431 ? 'request header fields too large' : status === 408 ? 'request timeout' : 'bad request';
      socket.end(rawResponse(status, body));
    }
    ex.report();
  }
  if (socket.writable) socket.once('finish', () => socket.destroy());
  else socket.destroy();
}
