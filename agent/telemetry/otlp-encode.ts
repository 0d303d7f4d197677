/**
 * OTLP's ExportTraceServiceRequest in binary protobuf (`application/x-protobuf`, the encoding every
 * OTLP/HTTP receiver must accept), written by hand for the handful of messages a proxy's spans use.
 * Field numbers are those of opentelemetry-proto v1 (`opentelemetry/proto/trace/v1/trace.proto`,
 * `common/v1/common.proto`, `resource/v1/resource.proto`, `collector/trace/v1/trace_service.proto`).
 * Why not the @opentelemetry/* packages: docs/tracing.md. Pure.
 */
import { Writer } from '../core/protobuf-wire';
import type { AttributeValue, FinishedSpan } from './tracing';

/** Epoch milliseconds (fractions kept to the nanosecond) as OTLP's fixed64 nanoseconds. */
export function unixNanos(ms: number): bigint {
  const whole = Math.floor(ms);
  return BigInt(whole) * 1_000_000n + BigInt(Math.round((ms - whole) * 1e6));
}

/** AnyValue: string 1, bool 2, int 3, double 4. */
function anyValue(w: Writer, v: AttributeValue): void {
  if (typeof v === 'string') w.string(1, v);
  else if (typeof v === 'boolean') w.bool(2, v);
  else if (Number.isSafeInteger(v) && v >= 0) w.uint(3, v);
  else w.double(4, v);
}

/** KeyValue: key 1, value 2. */
function keyValue(w: Writer, field: number, key: string, v: AttributeValue): void {
  w.message(field, (kv) => { kv.string(1, key); kv.message(2, (a) => anyValue(a, v)); });
}

/** Span.SpanKind */
const KIND = { server: 2, client: 3 } as const;
/** Status.StatusCode */
const STATUS_ERROR = 2;
/** Span.flags: the W3C trace flags in bits 0-7, then SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE (0x100) and _IS_REMOTE (0x200) for the parent. */
const HAS_IS_REMOTE = 0x100;
const IS_REMOTE = 0x200;

function span(w: Writer, s: FinishedSpan): void {
  w.hex(1, s.traceId);
  w.hex(2, s.spanId);
  if (s.traceState !== undefined) w.string(3, s.traceState);
  if (s.parentSpanId !== undefined) w.hex(4, s.parentSpanId);
  w.string(5, s.name);
  w.uint(6, KIND[s.kind]);
  w.fixed64(7, unixNanos(s.startMs));
  w.fixed64(8, unixNanos(s.endMs));
  for (const [k, v] of s.attributes) keyValue(w, 9, k, v);
  if (s.error !== undefined) {
    const message = s.error;
    w.message(15, (st) => { st.string(2, message).uint(3, STATUS_ERROR); });
  }
  w.fixed32(16, 0x01 | HAS_IS_REMOTE | (s.remoteParent ? IS_REMOTE : 0));
}

export interface ExportBatch {
  /** resource attributes every span shares (besides `service.name`, which each span names) */
  resource: Array<[string, AttributeValue]>;
  scope: { name: string; version: string };
  spans: readonly FinishedSpan[];
}

/**
 * ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1 }: one ResourceSpans per
 * `service.name` (resource 1, scope_spans 2), each with one ScopeSpans (scope 1, spans 2). Pure.
 */
export function encodeExportRequest(batch: ExportBatch): Buffer {
  const byService = new Map<string, FinishedSpan[]>();
  for (const s of batch.spans) {
    const list = byService.get(s.service);
    if (list) list.push(s); else byService.set(s.service, [s]);
  }
  const w = new Writer();
  for (const [service, spans] of byService) {
    w.message(1, (rs) => {
      rs.message(1, (res) => {
        keyValue(res, 1, 'service.name', service);
        for (const [k, v] of batch.resource) keyValue(res, 1, k, v);
      });
      rs.message(2, (ss) => {
        ss.message(1, (scope) => { scope.string(1, batch.scope.name); scope.string(2, batch.scope.version); });
        for (const s of spans) ss.message(2, (sw) => span(sw, s));
      });
    });
  }
  return w.finish();
}
