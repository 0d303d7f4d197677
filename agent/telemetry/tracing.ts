/**
 * Tracing: one span per HTTP request and proxy hop, in the request's own trace. The source proxy's
 * span (kind CLIENT) is a child of what the client application sent; the destination proxy's span
 * (kind SERVER) is a child of the source proxy's; the application sees the destination span as its
 * parent. Finished spans go to a sink (the OTLP exporter, otlp-exporter.ts), which never blocks.
 *
 * The data path asks for a span with `tracer.start(request, reporter)` only when tracing is on (a
 * Tracer exists); that is its one check per request when it is off.
 */
import { randomFillSync } from 'node:crypto';
import type { ConnectionEnds, Reporter, ResponseFlags, SecurityPolicy } from './events';
import { b3Carriers, extractContext, outgoingFields, PROPAGATION_FIELDS, type B3Carriers, type PropagationFormat, type SpanContext } from './tracing-context';

export type AttributeValue = string | number | boolean;

/** A span as exported: everything OTLP needs, nothing of the proxy's objects. */
export interface FinishedSpan {
  traceId: string;
  spanId: string;
  /** absent for a trace this hop started */
  parentSpanId?: string;
  traceState?: string;
  name: string;
  kind: 'server' | 'client';
  /** milliseconds since the epoch (fractions kept) */
  startMs: number;
  endMs: number;
  /** the resource this span is reported under: its `service.name` */
  service: string;
  /** attribute pairs (key, value), in OpenTelemetry's semantic-convention names */
  attributes: Array<[string, AttributeValue]>;
  /** OpenTelemetry status: ERROR with a message, or UNSET */
  error?: string;
  /** the parent came from another process (a header), not from this proxy */
  remoteParent: boolean;
}

/** Where finished spans go; add() must not block or throw (the exporter queues or drops). */
export interface SpanSink {
  add(span: FinishedSpan): void;
}

/** What the tracer reads of a request when its span starts. */
export interface SpanRequest {
  method: string;
  /** the request-target (`/a?b`) */
  path: string;
  /** Host or :authority */
  host: string;
  /** lower-case names */
  headers: Readonly<Record<string, string | string[] | undefined>>;
  protocol?: 'http1' | 'http2';
}

/**
 * How a request ended, for its span: the fields of the proxy's RequestCompletedEvent (events.ts)
 * by the same names, so a caller that publishes that event can hand the same object here.
 */
export interface SpanOutcome {
  ends: ConnectionEnds;
  security: SecurityPolicy;
  /** 0 when no response was sent */
  status: number;
  grpcStatus?: string;
  flags?: ResponseFlags;
  /** the AuthorizationPolicy that denied it */
  policy?: string;
  requestBytes?: number;
  responseBytes?: number;
  /** why the request failed, when it did (the access log's `error`) */
  error?: string;
}

export interface TracerOptions {
  /** the share of new traces (no sampled decision came with the request) that are recorded, 0..100 */
  samplingPercent: number;
  sink: SpanSink;
  /** fixed `service.name` for every span; absent: `<workload>.<namespace>` of the workload the hop acts for (Istio's convention) */
  serviceName?: string;
  /** this node's name (`k8s.node.name`) */
  node?: string;
  /** epoch milliseconds; tests pass a clock */
  now?: () => number;
}

const FALLBACK_SERVICE = 'weft-proxy';

/** Random non-zero ids from a pooled buffer (one randomFillSync per 256 ids, not one per id). */
class IdSource {
  private readonly pool = Buffer.alloc(4096);
  private offset = this.pool.length;

  hex(bytes: number): string {
    for (;;) {
      if (this.offset + bytes > this.pool.length) { randomFillSync(this.pool); this.offset = 0; }
      const id = this.pool.toString('hex', this.offset, this.offset + bytes);
      this.offset += bytes;
      if (!/^0+$/.test(id)) return id;
    }
  }
}

/**
 * Whether a new trace is recorded at `percent`: decided by the trace id's low 56 bits (the part W3C
 * level 2 calls random), so every hop that decides on the same id decides the same. Pure.
 */
export function sampledByRatio(traceId: string, percent: number): boolean {
  if (percent >= 100) return true;
  if (percent <= 0) return false;
  const r = parseInt(traceId.slice(18), 16) / 2 ** 56;
  return r < percent / 100;
}

/** The OpenTelemetry HTTP server address and port of a Host / :authority value. Pure. */
export function splitAuthority(host: string): { address: string; port?: number } {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(host);
  if (!m) return { address: host };
  const address = m[1]!.replace(/^\[|\]$/g, '');
  return m[2] === undefined ? { address } : { address, port: Number(m[2]) };
}

export class Tracer {
  private readonly ids = new IdSource();
  private readonly now: () => number;
  private readonly percent: number;

  constructor(readonly options: TracerOptions) {
    this.now = options.now ?? (() => performance.timeOrigin + performance.now());
    this.percent = options.samplingPercent;
  }

  /**
   * The span of one request at one hop, started now. Undefined when the request comes with a trace
   * that is not sampled: it then goes on unchanged. A new trace that the ratio does not sample gets
   * an unrecorded span (its context goes on with the sampled flag off, so the next hop agrees).
   */
  start(req: SpanRequest, reporter: Reporter): ActiveSpan | undefined {
    const x = extractContext(req.headers);
    if (x.kind === 'context') {
      const parent = x.value.context;
      if (!parent.sampled) return undefined;
      const context: SpanContext = { traceId: parent.traceId, spanId: this.ids.hex(8), sampled: true, ...(parent.traceState === undefined ? {} : { traceState: parent.traceState }) };
      return new ActiveSpan(this, req, reporter, context, parent.spanId, x.value.format, b3Carriers(req.headers), this.now());
    }
    if (x.sampled === false) return undefined;
    const traceId = this.ids.hex(16);
    const sampled = x.sampled === true || sampledByRatio(traceId, this.percent);
    const context: SpanContext = { traceId, spanId: this.ids.hex(8), sampled };
    return new ActiveSpan(this, req, reporter, context, undefined, undefined, b3Carriers(req.headers), this.now());
  }

  /** @internal: a span's end. */
  finish(span: ActiveSpan, o: SpanOutcome): void {
    const r = span.request;
    const server = span.reporter === 'destination';
    const status = o.status;
    const { address, port } = splitAuthority(r.host);
    const q = r.path.indexOf('?');
    const attrs: Array<[string, AttributeValue]> = [
      ['http.request.method', r.method],
      ['http.method', r.method],
      ['url.path', q < 0 ? r.path : r.path.slice(0, q)],
    ];
    if (q >= 0) attrs.push(['url.query', r.path.slice(q + 1)]);
    attrs.push(['url.scheme', 'http'], ['server.address', address]);
    if (port !== undefined) attrs.push(['server.port', port]);
    if (status > 0) attrs.push(['http.response.status_code', status], ['http.status_code', status]);
    if (r.protocol !== undefined) attrs.push(['network.protocol.name', 'http'], ['network.protocol.version', r.protocol === 'http2' ? '2' : '1.1']);
    const ua = r.headers['user-agent'];
    if (typeof ua === 'string') attrs.push(['user_agent.original', ua]);
    const e = o.ends;
    // The peer: the client for the destination's span, the endpoint for the source's.
    if (server) attrs.push(['client.address', e.srcIp], ['client.port', e.srcPort], ['network.peer.address', e.srcIp], ['network.peer.port', e.srcPort]);
    else attrs.push(['network.peer.address', e.dstIp], ['network.peer.port', e.dstPort]);
    attrs.push(['weft.reporter', span.reporter], ['weft.connection_security_policy', o.security]);
    if (e.src) attrs.push(['weft.source.workload', e.src.workload], ['weft.source.namespace', e.src.namespace], ['weft.source.principal', e.src.identity]);
    else if (e.srcIdentity !== undefined) attrs.push(['weft.source.principal', e.srcIdentity]);
    if (e.dst) attrs.push(['weft.destination.workload', e.dst.workload], ['weft.destination.namespace', e.dst.namespace], ['weft.destination.principal', e.dst.identity]);
    if (e.dstService) attrs.push(['weft.destination.service', `${e.dstService.name}.${e.dstService.namespace}.svc.cluster.local`]);
    if (o.grpcStatus !== undefined) attrs.push(['rpc.grpc.status_code', Number(o.grpcStatus)]);
    if (o.flags !== undefined && o.flags !== '-') attrs.push(['weft.response_flags', o.flags]);
    if (o.policy !== undefined) attrs.push(['weft.policy', o.policy]);
    if (o.requestBytes !== undefined) attrs.push(['http.request.body.size', o.requestBytes]);
    if (o.responseBytes !== undefined) attrs.push(['http.response.body.size', o.responseBytes]);
    if (span.format !== undefined) attrs.push(['weft.propagation', span.format]);
    if (this.options.node !== undefined) attrs.push(['k8s.node.name', this.options.node]);
    // OpenTelemetry's HTTP conventions: a server span errs on 5xx, a client span on 4xx too; no response is an error.
    const error = status === 0 ? (o.error ?? 'no response') : status >= 500 || (!server && status >= 400) ? (o.error ?? `HTTP ${status}`) : undefined;
    if (error !== undefined) attrs.push(['error.type', status === 0 ? 'no_response' : String(status)]);
    const actor = server ? e.dst : e.src;
    const service = this.options.serviceName ?? (actor ? `${actor.workload}.${actor.namespace}` : FALLBACK_SERVICE);
    this.options.sink.add({
      traceId: span.context.traceId, spanId: span.context.spanId,
      ...(span.parentSpanId === undefined ? {} : { parentSpanId: span.parentSpanId }),
      ...(span.context.traceState === undefined ? {} : { traceState: span.context.traceState }),
      name: r.method, kind: server ? 'server' : 'client', startMs: span.startMs, endMs: this.now(), service, attributes: attrs,
      ...(error === undefined ? {} : { error }), remoteParent: span.parentSpanId !== undefined,
    });
  }
}

/** A span in progress: its context goes on with the request; end() records it (once). */
export class ActiveSpan {
  private ended = false;
  /** the header fields (lower-case name, value, ...) that carry this span to the next hop */
  readonly outgoing: readonly string[];

  constructor(
    private readonly tracer: Tracer,
    readonly request: SpanRequest,
    readonly reporter: Reporter,
    readonly context: SpanContext,
    readonly parentSpanId: string | undefined,
    /** the format the parent came in; undefined for a trace this hop started */
    readonly format: PropagationFormat | undefined,
    b3: B3Carriers,
    readonly startMs: number,
  ) {
    this.outgoing = outgoingFields(context, b3, parentSpanId);
  }

  /** Whether end() exports anything (a new trace the ratio did not sample only propagates). */
  get recording(): boolean {
    return this.context.sampled;
  }

  /**
   * Sets this span's context on an outgoing header map (lower-case names, as the Service path's
   * HeaderMap): every trace-context field the request had is replaced.
   */
  inject(headers: Record<string, string | string[] | undefined>): void {
    for (const name of PROPAGATION_FIELDS) delete headers[name];
    const o = this.outgoing;
    for (let i = 0; i < o.length; i += 2) headers[o[i]!] = o[i + 1]!;
  }

  end(outcome: SpanOutcome): void {
    if (this.ended) return;
    this.ended = true;
    if (!this.context.sampled) return;
    try { this.tracer.finish(this, outcome); } catch { /* tracing must not break the data path */ }
  }
}
