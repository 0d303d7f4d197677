/**
 * HTTP from a meshed pod to a Service port, served by the source proxy request by request: each
 * request gets its plan (routes, filters, traffic policy: service-plan.ts), then an endpoint of
 * the chosen backend (the Service port's balancer, skipping ejected endpoints), and goes there over
 * a pooled upstream connection (HTTP/1.1 keep-alive or one HTTP/2 session per endpoint; HBONE to
 * other nodes, deliver() on this one, plaintext to pods outside the mesh). Retries, timeouts,
 * injected faults, circuit breaking and outlier detection are carried out here; what to do is
 * decided elsewhere.
 */
import http from 'node:http';
import http2, { type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { PassThrough, type Duplex, type Readable } from 'node:stream';
import { wantsLine, type AccessLog } from '../core/log';
import { numMember, strMember } from '../core/json-text';
import { conflictingHost, repeatedFields } from '../http/headers';
import type { ActiveSpan } from '../telemetry/tracing';
import type { Endpoint } from '../state/endpoints';
import { connectionClosed, connectionOpened, requestCompleted, type ResponseFlags, type SecurityPolicy } from '../telemetry/events';
import { connectionMembers, endsMembers, serviceRequestMembers, type ConnectionRecord } from './access-log';
import { dial, type Dialed } from './dial';
import type { AttemptOutcome, Backend, HeaderMap, RequestPlan } from './request-plan';
import type { PlanRequest, ServiceConnection, ServiceEnv } from './service-env';
import { servicePortKey, servicePortKeyOf } from './service-target';
import { endpointKey } from './service-runtime';
import { pump } from '../core/pump';
import type { BodySink } from '../http/h1-upstream';
import { serveH1, type H1Head, type OutgoingFields } from '../http/h1-server';
import { normalizeTarget } from '../http/path-normalize';
import { isIdempotent } from '../http/http1-wire';

/** A request from the client, whichever server parsed it (h1-server.ts for HTTP/1.x, Node's http2 for HTTP/2). */
interface ClientRequest {
  method: string;
  url: string;
  headers: Readonly<Record<string, string | string[] | undefined>>;
  rawHeaders: string[];
  /** no body framed (HTTP/2: END_STREAM on the head) */
  bodyless: boolean;
  body(): Readable;
  /** the body is not wanted: read and dropped */
  discard(): void;
}

/** The answer to the client (H1Response for HTTP/1.x, H2Response over Node's compat response). */
interface ClientResponse {
  readonly headersSent: boolean;
  readonly ended: boolean;
  writeHead(status: number, fields: OutgoingFields): void;
  write(data: Buffer): boolean;
  onceDrain(cb: () => void): void;
  /** ends the response; trailer fields as a raw name/value list */
  end(data?: Buffer, trailers?: readonly string[]): void;
  destroy(): void;
  /** `cb` when the client goes away before the end; returns how to stop listening */
  onClose(cb: () => void): () => void;
}

class H2Response implements ClientResponse {
  constructor(private readonly res: Http2ServerResponse) {}
  get headersSent(): boolean { return this.res.headersSent; }
  get ended(): boolean { return this.res.writableEnded; }
  get stream(): http2.ServerHttp2Stream { return this.res.stream; }
  writeHead(status: number, fields: OutgoingFields): void { this.res.writeHead(status, fields as http.OutgoingHttpHeaders); }
  write(data: Buffer): boolean { return this.res.write(data); }
  onceDrain(cb: () => void): void { this.res.once('drain', cb); }
  end(data?: Buffer, trailers?: readonly string[]): void {
    const t = trailers === undefined ? undefined : trailerMap(trailers);
    if (t) this.res.addTrailers(t as http.OutgoingHttpHeaders);
    if (data === undefined) this.res.end(); else this.res.end(data);
  }
  destroy(): void { this.res.destroy(); }
  onClose(cb: () => void): () => void { this.res.once('close', cb); return () => { this.res.off('close', cb); }; }
}

function h2Request(req: Http2ServerRequest): ClientRequest {
  return { method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders, bodyless: req.stream.endAfterHeaders, body: () => req, discard: () => { req.resume(); } };
}

/** Request bodies up to this size are kept so a retry or a mirror can send them again. */
const REPLAY_LIMIT = 64 * 1024;

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'http2-settings', 'host']);

/** Envoy's local-reply status → gRPC status (a gRPC client reads the trailers, not the HTTP status). */
function grpcStatusFor(httpStatus: number): number {
  switch (httpStatus) {
    case 400: return 13;
    case 401: return 16;
    case 403: return 7;
    case 404: return 12;
    case 429: case 502: case 503: case 504: return 14;
    default: return 2;
  }
}

export async function serveServiceHttp(env: ServiceEnv, c: ServiceConnection, protocol: 'http1' | 'http2', head: Buffer | undefined): Promise<void> {
  const started = performance.now();
  const client = c.client;
  const { service, vip, port } = c.target;
  const svcRef = { namespace: service.namespace, name: service.name };
  const ends = { direction: 'outbound' as const, srcIp: c.clientIp, srcPort: c.clientPort, src: c.src!, dstIp: vip, dstPort: port.port, dstService: svcRef };
  const security: SecurityPolicy = 'mutual_tls';
  if (connectionOpened.hasSubscribers) connectionOpened.publish({ reporter: 'source', ends, security });
  const limits = env.limits();
  let requests = 0;
  // The connection's ends are serialized once, at its first line written (never when every line is dropped).
  let connLog: AccessLog | undefined;
  const log = (): AccessLog => (connLog ??= env.accessLog.child(endsMembers(ends)));
  const ctx: RequestContext = { env, c, protocol, log, ends: new WeakMap(), endsNoEndpoint: undefined };
  const [read0, written0] = [client.bytesRead, client.bytesWritten];
  if (protocol === 'http1') {
    serveH1(client, head, { headersTimeoutMs: limits.headersTimeoutMs, idleTimeoutMs: limits.idleTimeoutMs, maxHeaderBytes: limits.maxHeaderBytes }, {
      request: (req, res) => { requests++; void handleRequest(ctx, req, res); },
      upgrade: (req, socket, upgradeHead) => { requests++; void upgrade(env, c, req, socket, upgradeHead, log); },
      connect: (req, socket) => { refuseRaw(socket, 405, 'CONNECT to a Service is not supported'); if (wantsLine(env.accessLog, { decision: 'allow', status: 405 })) log().info({ method: req.method, path: req.url }, 'CONNECT refused'); },
      ...(env.delivery.draining ? { draining: env.delivery.draining } : {}),
    });
  } else {
    if (head && head.length > 0) client.unshift(head);
    const server = http2.createServer({ maxSessionMemory: 64, settings: { maxConcurrentStreams: limits.maxConcurrentStreams ?? 100 } },
      (req: Http2ServerRequest, res: Http2ServerResponse) => { requests++; void handleRequest(ctx, h2Request(req), new H2Response(res)); });
    server.on('sessionError', () => client.destroy());
    server.emit('connection', client);
    client.resume();
  }
  await new Promise<void>((resolve) => client.once('close', () => resolve()));
  const sent = client.bytesRead - read0, recv = client.bytesWritten - written0;
  if (wantsLine(env.accessLog, { decision: 'allow' })) {
    env.accessLog.write(connectionMembers({ ...ends, decision: 'allow', bytesSent: sent, bytesRecv: recv, durationMs: performance.now() - started })
      + strMember('protocol', protocol) + numMember('requests', requests), 'connection complete');
  }
  if (connectionClosed.hasSubscribers) connectionClosed.publish({ reporter: 'source', ends, security, bytesFromClient: sent, bytesToClient: recv, flags: '-' });
}

/**
 * An HTTP/1.1 Upgrade (WebSocket) to a Service: routed and filtered like any request, then the
 * connection to the endpoint picked for it becomes a byte tunnel both ways. No retry: the
 * endpoint's answer (101 or a refusal) goes back as it is.
 */
async function upgrade(env: ServiceEnv, c: ServiceConnection, req: H1Head, socket: Duplex, upgradeHead: Buffer, log: () => AccessLog): Promise<void> {
  const started = performance.now();
  const info = planRequest(req, 'http1');
  const refused = normalizeRequest(env, info, req.headers);
  socket.on('error', () => undefined);
  const done = (fields: { status?: number; response_flags?: string; error?: string; [k: string]: unknown }, msg: string): void => {
    if (!wantsLine(env.accessLog, { decision: 'allow', status: fields.status, flags: fields.response_flags, error: fields.error })) return;
    log().info({ method: info.method, path: info.path, ...(info.originalPath === undefined ? {} : { original_path: info.originalPath }), authority: info.authority, protocol: 'http1', upgrade: String(req.headers.upgrade ?? ''),
      duration: Math.round((performance.now() - started) * 1000) / 1000, ...fields }, msg);
  };
  let plan: RequestPlan;
  try {
    plan = refused ?? env.plan({ clientNamespace: c.src!.namespace, target: c.target }, info);
  } catch (e) {
    plan = { kind: 'respond', status: 500, body: `routing failed: ${(e as Error).message}`, flag: 'NO_ROUTE' };
  }
  if (plan.kind === 'respond') {
    refuseRaw(socket, plan.status, plan.body, plan.headers);
    return done({ status: plan.status, ...(plan.route ? { route: plan.route } : {}), response_flags: plan.flag }, 'upgrade answered by the proxy');
  }
  const key = servicePortKey(plan.backend.service, plan.backend.port.port);
  const ep = env.runtime.pick(key, plan.backend.service, plan.backend.port.port, env.runtime.candidates(env.store(), plan.backend.service, plan.backend.port, c.target.vip));
  if (!ep) {
    refuseRaw(socket, 503, 'no healthy upstream');
    return done({ status: 503, response_flags: 'NO_HEALTHY_UPSTREAM' }, 'upgrade refused');
  }
  let upstream: Duplex;
  try {
    upstream = (await dial(env.dialer, { source: c.src!, client: { ip: c.clientIp, port: c.clientPort }, target: { ip: ep.ip, port: ep.port },
      service: { namespace: plan.backend.service.namespace, name: plan.backend.service.name } })).stream;
  } catch (e) {
    refuseRaw(socket, 503, `upstream connect error: ${(e as Error).message}`);
    return done({ status: 503, response_flags: 'CONNECT', error: (e as Error).message }, 'upgrade failed');
  }
  // The request head as it came (Connection and Upgrade included), with the route's edits.
  const headers: HeaderMap = {};
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!.toLowerCase();
    if (name === 'host') continue;
    const prev = headers[name];
    headers[name] = prev === undefined ? req.rawHeaders[i + 1]! : [...(Array.isArray(prev) ? prev : [prev]), req.rawHeaders[i + 1]!];
  }
  plan.editRequest(headers);
  const lines = [`${info.method} ${plan.path} HTTP/1.1`, `host: ${plan.authority}`];
  for (const [k, v] of Object.entries(headers)) for (const value of Array.isArray(v) ? v : [v]) lines.push(`${k}: ${value}`);
  upstream.write(Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'));
  if (upgradeHead.length > 0) upstream.write(upgradeHead);
  let sent = upgradeHead.length, recv = 0, open = 2;
  await new Promise<void>((resolve) => {
    const closed = () => { if (--open === 0) resolve(); };
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
    upstream.once('close', () => { socket.destroy(); closed(); });
    socket.once('close', () => { upstream.destroy(); closed(); });
    pump(socket, upstream, (n) => { sent += n; });
    pump(upstream, socket, (n) => { recv += n; });
  });
  done({ route: plan.route, upstream: `${ep.ip}:${ep.port}`, bytes_sent: sent, bytes_recv: recv }, 'upgraded connection complete');
}

function refuseRaw(socket: Duplex, status: number, reason: string, headers: Record<string, string> = {}): void {
  const body = reason === '' ? '' : `${reason}\n`;
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}connection: close\r\n\r\n${body}`);
}

/** The request as the plan sees it: lower-case names, no pseudo-headers, hop-by-hop fields out. */
function planRequest(req: { method?: string; url?: string; headers: Readonly<Record<string, string | string[] | undefined>>; rawHeaders: string[] }, protocol: 'http1' | 'http2'): PlanRequest & { rawHeaders: string[] } {
  let headers: Record<string, string | string[] | undefined>;
  if (protocol === 'http1') headers = req.headers as Record<string, string | string[]>;
  else {
    headers = {};
    for (const k in req.headers) if (!k.startsWith(':')) headers[k] = req.headers[k];
  }
  const authority = protocol === 'http2' ? String(req.headers[':authority'] ?? req.headers.host ?? '') : String(req.headers.host ?? '');
  const ct = req.headers['content-type'];
  return { method: req.method ?? 'GET', path: req.url ?? '/', authority, headers, rawHeaders: req.rawHeaders, grpc: typeof ct === 'string' && ct.startsWith('application/grpc'), protocol };
}

/**
 * The request's target normalized in place (ProxyConfig spec.pathNormalization, path-normalize.ts)
 * before routes, logs and the endpoint see it. An absolute-form target goes on in origin form, its
 * authority as the request's (as Envoy forwards it). A target that cannot be normalized, and an
 * HTTP/2 request whose host field differs from its :authority, get a 400 plan.
 */
function normalizeRequest(env: ServiceEnv, info: PlanRequest, raw: Readonly<Record<string, unknown>>): RequestPlan | undefined {
  const t = normalizeTarget(info.path, info.method, env.pathNormalization());
  if (!t.ok) return { kind: 'respond', status: 400, body: t.error, flag: '-' };
  const twoHosts = info.protocol === 'http2' ? conflictingHost(raw) : undefined;
  if (twoHosts !== undefined) return { kind: 'respond', status: 400, body: twoHosts, flag: '-' };
  if (t.value.path !== info.path) info.originalPath = info.path;
  info.path = t.value.path;
  if (t.value.authority !== undefined) info.authority = t.value.authority;
  return undefined;
}

const EMPTY = Buffer.alloc(0);

/** A request without body: nothing to wait for, and replayable as it is. */
function noBody(req: ClientRequest): { replayable: Buffer; bytes: () => number } {
  req.discard();
  return { replayable: EMPTY, bytes: () => 0 };
}

/** The request's body, replayable when small (retries, mirrors), else streamed once. */
async function readBody(clientReq: ClientRequest, replay: boolean): Promise<{ replayable?: Buffer; stream?: Readable; bytes: () => number }> {
  let bytes = 0;
  const counted = () => bytes;
  const req = clientReq.body();
  if (!replay) {
    req.on('data', (d: Buffer) => { bytes += d.length; });
    return { stream: req, bytes: counted };
  }
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    bytes += chunk.length;
    if (bytes > REPLAY_LIMIT) {
      // Too large to keep: the rest streams, and this request gets no retry and no mirror.
      const rest = new PassThrough();
      for (const b of chunks) rest.write(b);
      req.on('data', (d: Buffer) => { bytes += d.length; });
      req.pipe(rest);
      return { stream: rest, bytes: counted };
    }
  }
  return { replayable: Buffer.concat(chunks), bytes: counted };
}

interface Answer {
  status: number;
  flag: ResponseFlags;
  route?: string;
  endpoint?: Endpoint;
  security?: SecurityPolicy;
  retries: number;
  responseBytes: number;
  grpcStatus?: string;
  error?: string;
}

type RequestEnds = Omit<ConnectionRecord, 'decision' | 'bytesSent' | 'bytesRecv' | 'durationMs' | 'error'>;

/** What every request of one client connection shares. */
interface RequestContext {
  env: ServiceEnv;
  c: ServiceConnection;
  protocol: 'http1' | 'http2';
  /** the connection's access log (its ends as every line's first members), made at its first line */
  log: () => AccessLog;
  /**
   * The ends of a request's telemetry event, one object per endpoint (per snapshot's Endpoint
   * object) for the connection's life: metrics derive a label set once per ends object, not per request.
   */
  ends: WeakMap<Endpoint, RequestEnds>;
  endsNoEndpoint: RequestEnds | undefined;
}

function requestEnds(ctx: RequestContext, ep: Endpoint | undefined): RequestEnds {
  const c = ctx.c;
  const known = ep ? ctx.ends.get(ep) : ctx.endsNoEndpoint;
  if (known) return known;
  const ends: RequestEnds = {
    direction: 'outbound', srcIp: c.clientIp, srcPort: c.clientPort, src: c.src!,
    dstIp: ep?.ip ?? c.target.vip, dstPort: ep?.port ?? c.target.port.port, ...(ep?.pod ? { dst: ctx.env.store().workloadRef(ep.pod) } : {}),
    dstService: { namespace: c.target.service.namespace, name: c.target.service.name },
  };
  if (ep) ctx.ends.set(ep, ends);
  else ctx.endsNoEndpoint = ends;
  return ends;
}

async function handleRequest(ctx: RequestContext, req: ClientRequest, res: ClientResponse): Promise<void> {
  const { env, c, protocol, log } = ctx;
  const started = performance.now();
  const info = planRequest(req, protocol);
  const refused = normalizeRequest(env, info, req.headers);
  // The source hop's span (when tracing is on and the trace is sampled); its context goes upstream.
  const span = env.tracer()?.start({ method: info.method, path: info.path, host: info.authority, headers: info.headers, protocol }, 'source');
  let plan: RequestPlan;
  try {
    plan = refused ?? env.plan({ clientNamespace: c.src!.namespace, target: c.target }, info);
  } catch (e) {
    plan = { kind: 'respond', status: 500, body: `routing failed: ${(e as Error).message}`, flag: 'NO_ROUTE' };
  }
  let answer: Answer;
  let requestBytes = () => 0;
  if (plan.kind === 'respond') {
    if (plan.delayMs) await sleep(plan.delayMs);
    req.discard();
    answer = { status: plan.status, flag: plan.flag, ...(plan.route ? { route: plan.route } : {}), retries: 0, responseBytes: respondLocal(res, plan.status, plan.body, info.grpc, plan.headers, plan.grpcStatus) };
  } else {
    const replay = plan.retry.attempts > 0 || plan.mirror !== undefined;
    const body = req.bodyless ? noBody(req) : await readBody(req, replay);
    requestBytes = body.bytes;
    answer = await forward(env, c, info, plan, body, res, span);
  }
  const durationMs = performance.now() - started;
  const ep = answer.endpoint;
  if (wantsLine(env.accessLog, { decision: 'allow', status: answer.status, flags: answer.flag, ...(answer.error ? { error: answer.error } : {}) })) {
    log().write(serviceRequestMembers({ decision: 'allow', bytesSent: requestBytes(), bytesRecv: answer.responseBytes, durationMs, error: answer.error },
      { method: info.method, path: info.path, originalPath: info.originalPath, host: info.authority, protocol: info.grpc ? 'grpc' : protocol, status: answer.status, grpcStatus: answer.grpcStatus || undefined },
      { route: answer.route, retries: answer.retries, flag: answer.flag, upstream: ep }), 'request complete');
  }
  if (span !== undefined) {
    span.end({ ends: requestEnds(ctx, ep), security: answer.security ?? 'mutual_tls', status: answer.status, flags: answer.flag,
      ...(answer.grpcStatus === undefined ? {} : { grpcStatus: answer.grpcStatus }), requestBytes: requestBytes(), responseBytes: answer.responseBytes,
      ...(answer.error === undefined ? {} : { error: answer.error }) });
  }
  if (requestCompleted.hasSubscribers) {
    const ends = requestEnds(ctx, ep);
    requestCompleted.publish({ reporter: 'source', ends, security: answer.security ?? 'mutual_tls', protocol: info.grpc ? 'grpc' : 'http', status: answer.status,
      ...(answer.grpcStatus === undefined ? {} : { grpcStatus: answer.grpcStatus }), requestBytes: requestBytes(), responseBytes: answer.responseBytes, durationMs, flags: answer.flag });
  }
}

/** Answers from the proxy itself; gRPC requests get the gRPC status in a trailers-only response. */
function respondLocal(res: ClientResponse, status: number, body: string, grpc: boolean, headers: Record<string, string> = {}, grpcStatus?: number): number {
  if (res.headersSent) { res.destroy(); return 0; }
  if (grpc && (status >= 400 || grpcStatus !== undefined) && res instanceof H2Response) {
    // Trailers-only: one HEADERS frame that ends the stream.
    try {
      res.stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(grpcStatus ?? grpcStatusFor(status)), 'grpc-message': encodeURIComponent(body), ...headers }, { endStream: true });
    } catch { res.destroy(); }
    return 0;
  }
  if (grpc && status >= 400) {
    res.writeHead(200, { 'content-type': 'application/grpc', 'grpc-status': String(grpcStatusFor(status)), 'grpc-message': encodeURIComponent(body), ...headers });
    res.end();
    return 0;
  }
  const text = Buffer.from(body === '' ? '' : `${body}\n`);
  res.writeHead(status, { 'content-type': 'text/plain', 'content-length': String(text.length), ...headers });
  res.end(text);
  return text.length;
}

/** A response body still to come: buffered until started, then given to the sink (trailers at its end). */
interface UpstreamBody {
  start(sink: BodySink): void;
  pause(): void;
  resume(): void;
}

/** A response head from an endpoint, its body still to come. */
interface UpstreamResponse {
  status: number;
  headers: HeaderMap;
  body: UpstreamBody;
  /** HTTP/2: the head ended the stream (a gRPC trailers-only answer) */
  endStream: boolean;
  /** abandons the response (a retry, a timeout) */
  discard(): void;
}

async function forward(env: ServiceEnv, c: ServiceConnection, info: PlanRequest & { rawHeaders: string[] }, plan: Extract<RequestPlan, { kind: 'forward' }>,
  body: { replayable?: Buffer; stream?: Readable }, res: ClientResponse, span?: ActiveSpan): Promise<Answer> {
  const route = plan.route ? { route: plan.route } : {};
  if (plan.delayMs) await sleep(plan.delayMs);
  const deadline = plan.requestTimeoutMs === undefined ? undefined : performance.now() + plan.requestTimeoutMs;
  const headers = outgoingHeaders(info.headers, info.rawHeaders);
  plan.editRequest(headers);
  span?.inject(headers);
  if (plan.mirror && body.replayable !== undefined && Math.random() * 100 < plan.mirror.percent) {
    void mirror(env, c, info, plan, headers, body.replayable);
  }
  const key = servicePortKeyOf(plan.backend.service, plan.backend.port.port);
  const admission = env.runtime.admitRequest(key, plan.backend, info.protocol);
  const admitted = 'then' in admission ? await admission : admission;
  if (!admitted.ok) {
    return { ...route, status: 503, flag: 'UPSTREAM_OVERFLOW', retries: 0, error: admitted.reason,
      responseBytes: respondLocal(res, 503, 'upstream connect error or disconnect/reset before headers. reset reason: overflow', info.grpc) };
  }
  // Endpoints tried already: only a retry needs the set.
  let tried: Set<string> | undefined;
  let retries = 0;
  let retryLease: { release(): void } | undefined;
  try {
    for (let attempt = 0; ; attempt++) {
      const store = env.store();
      const candidates = env.runtime.candidates(store, plan.backend.service, plan.backend.port, c.target.vip);
      const ep = env.runtime.pick(key, plan.backend.service, plan.backend.port.port, candidates, tried);
      if (!ep) {
        const why = candidates.length === 0 ? `no ready endpoint for ${plan.backend.service.namespace}/${plan.backend.service.name}:${plan.backend.port.port}` : 'every endpoint is ejected';
        return { ...route, status: 503, flag: 'NO_HEALTHY_UPSTREAM', retries, error: why, responseBytes: respondLocal(res, 503, 'no healthy upstream', info.grpc) };
      }
      const remaining = deadline === undefined ? undefined : deadline - performance.now();
      const tryMs = minDefined(plan.tryTimeoutMs, remaining);
      env.runtime.started(key, ep);
      let dialed: Dialed | undefined;
      const r = await attemptOnce(env, c, info, plan, headers, body, ep, tryMs, (d) => { dialed = d; });
      retryLease?.release();
      retryLease = undefined;
      const outcome: AttemptOutcome = 'status' in r ? { kind: 'response', status: r.status } : r.outcome;
      env.runtime.finished(key, ep, outcomeKind(outcome));
      const timedOut = deadline !== undefined && performance.now() >= deadline;
      const wanted = !timedOut && attempt < plan.retry.attempts && body.replayable !== undefined && plan.retry.retryable(outcome);
      // A retry past maxRetries or the retry budget is not made: the answer in hand stands.
      const lease = wanted ? env.runtime.admitRetry(key) : undefined;
      if (lease?.ok) {
        retryLease = lease;
        (tried ??= new Set()).add(endpointKey(ep));
        if ('status' in r) r.discard();
        retries++;
        const wait = plan.retry.backoffMs(retries);
        await sleep(deadline === undefined ? wait : Math.min(wait, Math.max(0, deadline - performance.now())));
        continue;
      }
      const security = dialed?.security ?? 'mutual_tls';
      if (!('status' in r)) {
        const timeout = r.outcome.kind === 'timeout';
        const status = timeout ? 504 : 503;
        const text = timeout ? 'upstream request timeout' : `upstream connect error or disconnect/reset before headers. reset reason: ${r.outcome.kind === 'connect-failure' ? 'connection failure' : 'connection termination'}`;
        return { ...route, endpoint: ep, security, status, flag: timeout ? 'UPSTREAM_TIMEOUT' : r.outcome.kind === 'connect-failure' ? 'CONNECT' : 'UPSTREAM_RESET', retries,
          error: r.outcome.error, responseBytes: respondLocal(res, status, text, info.grpc) };
      }
      const relayed: Answer = Object.assign(await relayResponse(r, plan, res, deadline), { endpoint: ep, security, retries });
      if (plan.route) relayed.route = plan.route;
      return relayed;
    }
  } finally {
    retryLease?.release();
    admitted.release();
  }
}

function outcomeKind(o: AttemptOutcome): 'success' | '5xx' | 'gateway-error' | 'local-origin-failure' {
  if (o.kind !== 'response') return 'local-origin-failure';
  if (o.status === 502 || o.status === 503 || o.status === 504) return 'gateway-error';
  return o.status >= 500 ? '5xx' : 'success';
}

function minDefined(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.min(a, b);
}

/**
 * Incoming header fields to send upstream: hop-by-hop ones out, `te: trailers` kept (gRPC), a field
 * that came more than once sent as it came (Node joins them into `a, b` in `headers`).
 */
function outgoingHeaders(h: Readonly<Record<string, string | string[] | undefined>>, raw: readonly string[]): HeaderMap {
  const out: HeaderMap = {};
  // One raw line per name (the usual case): nothing was joined, no list to rebuild.
  let names = 0;
  for (const _ in h) names++;
  const repeated = raw.length / 2 === names ? undefined : repeatedFields(raw);
  const conn = h.connection;
  const listed = conn === undefined ? undefined : new Set((Array.isArray(conn) ? conn.join(',') : conn).split(',').map((t) => t.trim().toLowerCase()).filter(Boolean));
  for (const k in h) {
    const v = h[k];
    if (v === undefined || HOP_BY_HOP.has(k) || listed?.has(k)) continue;
    out[k] = repeated?.get(k) ?? v;
  }
  if (typeof h.te === 'string' && h.te.toLowerCase().includes('trailers')) out.te = 'trailers';
  return out;
}


type AttemptResult = UpstreamResponse | { outcome: Exclude<AttemptOutcome, { kind: 'response' }> };

/** An attempt under way: its result, and how to abandon it (a per-try timeout). */
interface Sending { result: Promise<AttemptResult>; abort(): void }

/** The upstream pool key of a client connection's requests to an endpoint (identity, client address, endpoint), once per pair. */
const poolKeys = new WeakMap<ServiceConnection, WeakMap<Endpoint, string>>();
function poolKeyOf(c: ServiceConnection, ep: Endpoint): string {
  let byEp = poolKeys.get(c);
  if (byEp === undefined) poolKeys.set(c, (byEp = new WeakMap()));
  let k = byEp.get(ep);
  if (k === undefined) byEp.set(ep, (k = `${c.src!.identity}|${c.clientIp}|${ep.ip}:${ep.port}`));
  return k;
}

/** Marks an error of opening the upstream connection (a connect failure, not a reset). */
const DIAL_FAILED = Symbol('dial failed');

/** One attempt at one endpoint, until its response head (or failure, or the per-try timeout). */
function attemptOnce(env: ServiceEnv, c: ServiceConnection, info: PlanRequest, plan: Extract<RequestPlan, { kind: 'forward' }>, headers: HeaderMap,
  body: { replayable?: Buffer; stream?: Readable }, ep: Endpoint, tryMs: number | undefined, onDial: (d: Dialed) => void): Promise<AttemptResult> {
  const open = async () => {
    try {
      const d = await dial(env.dialer, { source: c.src!, client: { ip: c.clientIp, port: c.clientPort }, target: { ip: ep.ip, port: ep.port },
        service: { namespace: plan.backend.service.namespace, name: plan.backend.service.name } });
      onDial(d);
      return d.stream;
    } catch (e) {
      throw Object.assign(e as Error, { [DIAL_FAILED]: true });
    }
  };
  const poolKey = poolKeyOf(c, ep);
  const sending = info.protocol === 'http2' ? sendH2(env, poolKey, open, info, plan, headers, body) : sendH1(env, poolKey, open, info, plan, headers, body);
  if (tryMs === undefined) return sending.result;
  return new Promise((resolve) => {
    let settled = false;
    const timer = setTimeout(() => {
      settled = true;
      sending.abort();
      resolve({ outcome: { kind: 'timeout', error: `no response head within ${Math.round(tryMs)} ms` } });
    }, Math.max(0, tryMs));
    void sending.result.then((r) => {
      if (settled) { if ('status' in r) r.discard(); return; }
      settled = true;
      clearTimeout(timer);
      resolve(r);
    });
  });
}

function failure(e: Error): { outcome: Exclude<AttemptOutcome, { kind: 'response' }> } {
  return { outcome: (e as Error & { [DIAL_FAILED]?: boolean })[DIAL_FAILED] ? { kind: 'connect-failure', error: e.message } : { kind: 'reset', error: e.message } };
}

/** Methods whose requests carry no body unless framed: no `Content-Length: 0` is added for them. */
const NO_BODY_BY_DEFAULT = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']);

function sendH1(env: ServiceEnv, poolKey: string, open: () => Promise<Duplex>, info: PlanRequest,
  plan: Extract<RequestPlan, { kind: 'forward' }>, headers: HeaderMap, body: { replayable?: Buffer; stream?: Readable }): Sending {
  const pool = env.pools.h1(poolKey, open, env.runtime.maxRequestsPerConnection(plan.backend));
  // Framing: a kept body by its length; a streamed one as the client framed it (length, else chunked).
  let framing = '';
  const hasLength = headers['content-length'] !== undefined;
  if (body.replayable !== undefined) {
    if (!hasLength && (body.replayable.length > 0 || !NO_BODY_BY_DEFAULT.has(info.method))) framing = `content-length: ${body.replayable.length}\r\n`;
  } else if (!hasLength) framing = 'transfer-encoding: chunked\r\n';
  const head = h1RequestHead(info.method, plan.path, plan.authority, headers, framing);
  if (typeof head === 'string') return { result: Promise.resolve({ outcome: { kind: 'reset', error: head } }), abort: () => undefined };
  const ex = pool.send({ head, ...(body.replayable !== undefined ? { replayable: body.replayable } : { stream: body.stream!, chunked: !hasLength }), isHead: info.method === 'HEAD', idempotent: isIdempotent(info.method) });
  const result = ex.result.then((h): AttemptResult => ({ status: h.status, headers: h1ResponseHeaders(h.raw), body: h.body, endStream: false, discard: () => h.body.discard() }), failure);
  return { result, abort: ex.abort };
}

const CRLF = /[\r\n]/;
const BREAKS_LINE = /[\r\n \t]/;
const BREAKS_HEAD = /[\r\n \t:]/;

/** The request head to an endpoint as one Buffer; a string names a field that cannot be sent. */
function h1RequestHead(method: string, path: string, authority: string, headers: HeaderMap, framing: string): Buffer | string {
  if (BREAKS_LINE.test(authority) || BREAKS_LINE.test(path)) return 'request target or authority not forwardable (holds CR, LF or a space)';
  let head = `${method} ${path} HTTP/1.1\r\nhost: ${authority}\r\n`;
  for (const name in headers) {
    const v = headers[name]!;
    if (BREAKS_HEAD.test(name)) return `request header field name ${JSON.stringify(name)} not forwardable`;
    if (typeof v === 'string') {
      if (CRLF.test(v)) return `request header field ${name} not forwardable (its value holds CR or LF)`;
      head += `${name}: ${v}\r\n`;
    } else {
      for (const one of v) {
        if (CRLF.test(one)) return `request header field ${name} not forwardable (its value holds CR or LF)`;
        head += `${name}: ${one}\r\n`;
      }
    }
  }
  return Buffer.from(`${head}${framing}\r\n`, 'latin1');
}

/** Response fields as received: lower-case names, hop-by-hop ones out, a repeated field kept as its values in order. */
function h1ResponseHeaders(raw: readonly string[]): HeaderMap {
  const out: HeaderMap = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (HOP_BY_HOP.has(name) || name === '__proto__') continue;
    const value = raw[i + 1]!;
    const prev = out[name];
    if (prev === undefined) out[name] = name === 'set-cookie' ? [value] : value;
    else if (name === 'content-length' || name === 'content-type') continue;
    else if (typeof prev === 'string') out[name] = [prev, value];
    else prev.push(value);
  }
  return out;
}

/** An HTTP/2 response stream's body as an UpstreamBody. */
function h2Body(s: http2.ClientHttp2Stream): UpstreamBody {
  let trailers: string[] = [];
  s.once('trailers', (t: Record<string, string | string[] | undefined>) => {
    for (const [k, v] of Object.entries(t)) {
      if (v === undefined || k.startsWith(':')) continue;
      for (const one of Array.isArray(v) ? v : [v]) trailers.push(k, one);
    }
  });
  return {
    start(sink) {
      let done = false;
      s.on('data', (d: Buffer) => sink.data(d));
      s.once('end', () => { if (!done) { done = true; sink.end(trailers); } });
      s.once('close', () => { if (!done) { done = true; sink.end(trailers); } });
      s.once('error', (e: Error) => { if (!done) { done = true; sink.error(e); } });
    },
    pause: () => s.pause(),
    resume: () => s.resume(),
  };
}

function sendH2(env: ServiceEnv, poolKey: string, open: () => Promise<Duplex>, info: PlanRequest,
  plan: Extract<RequestPlan, { kind: 'forward' }>, headers: HeaderMap, body: { replayable?: Buffer; stream?: Readable }): Sending {
  let stream: http2.ClientHttp2Stream | undefined;
  let aborted = false;
  const result = env.pools.h2(poolKey, open).then((session) => new Promise<AttemptResult>((resolve) => {
    if (aborted) return resolve({ outcome: { kind: 'reset', error: 'aborted' } });
    const endStream = body.replayable !== undefined && body.replayable.length === 0;
    let s: http2.ClientHttp2Stream;
    try {
      s = session.request({ ...headers, ':method': info.method, ':path': plan.path, ':authority': plan.authority, ':scheme': 'http' }, { endStream });
    } catch (e) {
      return resolve({ outcome: { kind: 'reset', error: (e as Error).message } });
    }
    stream = s;
    let answered = false;
    s.on('error', (e: Error) => { if (!answered) resolve({ outcome: { kind: 'reset', error: e.message } }); });
    s.on('close', () => { if (!answered) resolve({ outcome: { kind: 'reset', error: `stream closed (HTTP/2 code ${s.rstCode})` } }); });
    s.on('response', (h, flags) => {
      answered = true;
      resolve({ status: Number(h[':status'] ?? 502), headers: responseHeaders(h as Record<string, string | string[] | undefined>), body: h2Body(s),
        endStream: (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0, discard: () => { if (!s.closed) s.close(http2.constants.NGHTTP2_CANCEL); } });
    });
    if (endStream) return;
    if (body.replayable !== undefined) s.end(body.replayable);
    else body.stream!.pipe(s);
  }), (e: Error) => failure(e));
  return { result, abort: () => { aborted = true; if (stream && !stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL); } };
}

/** Trailer fields (a raw name/value list) as a header map; none: undefined. */
function trailerMap(raw: readonly string[]): HeaderMap | undefined {
  if (raw.length === 0) return undefined;
  const out: HeaderMap = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (name.startsWith(':') || name === '__proto__') continue;
    const prev = out[name];
    out[name] = prev === undefined ? raw[i + 1]! : [...(Array.isArray(prev) ? prev : [prev]), raw[i + 1]!];
  }
  return out;
}

function responseHeaders(h: Record<string, string | string[] | undefined>): HeaderMap {
  const out: HeaderMap = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || k.startsWith(':') || HOP_BY_HOP.has(k)) continue;
    out[k] = v;
  }
  return out;
}

/** Sends the endpoint's response to the client, with the response filters applied; ends it from the body's end (one write for a small response). */
function relayResponse(r: UpstreamResponse, plan: Extract<RequestPlan, { kind: 'forward' }>, res: ClientResponse, deadline: number | undefined):
  Promise<{ status: number; flag: ResponseFlags; responseBytes: number; grpcStatus?: string; error?: string }> {
  const headers = r.headers;
  plan.editResponse(headers);
  if (res instanceof H2Response) {
    delete headers['transfer-encoding'];
    if (r.endStream) {
      // A head that ends the stream (gRPC trailers-only) stays one: headers with END_STREAM.
      try { res.stream.respond({ ...headers, ':status': r.status }, { endStream: true }); } catch { res.destroy(); }
      const grpcStatus = headers['grpc-status'];
      return Promise.resolve({ status: r.status, flag: '-', responseBytes: 0, ...(grpcStatus === undefined ? {} : { grpcStatus: String(grpcStatus) }) });
    }
  }
  try {
    res.writeHead(r.status, headers);
  } catch (e) {
    r.discard();
    return Promise.resolve({ status: 502, flag: 'UPSTREAM_RESET', responseBytes: 0, error: `response head not forwardable: ${(e as Error).message}` });
  }
  return new Promise((resolve) => {
    let bytes = 0;
    let error: string | undefined;
    let flag: ResponseFlags = '-';
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    let stopListening: (() => void) | undefined;
    const finish = (raw?: readonly string[]): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stopListening?.();
      const trailers = raw === undefined ? undefined : trailerMap(raw);
      const grpcStatus = trailers?.['grpc-status'] ?? headers['grpc-status'];
      if (error !== undefined) { if (!res.ended) res.destroy(); }
      else if (!res.ended) res.end(undefined, trailers === undefined ? undefined : raw);
      resolve({ status: r.status, flag, responseBytes: bytes, ...(grpcStatus === undefined ? {} : { grpcStatus: String(grpcStatus) }), ...(error === undefined ? {} : { error }) });
    };
    stopListening = res.onClose(() => finish());
    r.body.start({
      data: (d: Buffer) => {
        if (settled) return;
        bytes += d.length;
        if (!res.write(d)) { r.body.pause(); res.onceDrain(() => r.body.resume()); }
      },
      end: (raw) => finish(raw),
      error: (e: Error) => { error ??= e.message; finish(); },
    });
    // The body may have ended already (a small response parsed with its head): no timer for it.
    if (!settled && deadline !== undefined) {
      timer = setTimeout(() => {
        error = 'request timeout while the response streamed';
        flag = 'UPSTREAM_TIMEOUT';
        r.discard();
        res.destroy();
        finish();
      }, Math.max(0, deadline - performance.now()));
    }
  });
}

/** RequestMirror: a copy of the request to the mirror backend, its answer ignored (Envoy's `-shadow` host). */
async function mirror(env: ServiceEnv, c: ServiceConnection, info: PlanRequest, plan: Extract<RequestPlan, { kind: 'forward' }>, headers: HeaderMap, body: Buffer): Promise<void> {
  const m = plan.mirror!;
  const backend: Backend = m.backend;
  const key = servicePortKey(backend.service, backend.port.port);
  const ep = env.runtime.pick(key, backend.service, backend.port.port, env.runtime.candidates(env.store(), backend.service, backend.port, c.target.vip));
  if (!ep) return;
  const shadow = { ...plan, backend, authority: `${plan.authority.replace(/(:\d+)?$/, '-shadow$1')}` };
  const r = await attemptOnce(env, c, info, shadow, headers, { replayable: body }, ep, 10_000, () => undefined);
  if (r && 'status' in r) r.discard();
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
