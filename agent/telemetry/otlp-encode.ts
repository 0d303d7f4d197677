/**
 * OTLP's ExportTraceServiceRequest in binary protobuf (`application/x-protobuf`, the encoding every
 * OTLP/HTTP receiver must accept), written by hand for the handful of messages a proxy's spans use.
 * Field numbers are those of opentelemetry-proto v1 (`opentelemetry/proto/trace/v1/trace.proto`,
 * `common/v1/common.proto`, `resource/v1/resource.proto`, `collector/trace/v1/trace_service.proto`).
 * Why not the @opentelemetry/* packages: docs/tracing.md. Pure.
 */
import type { AttributeValue, FinishedSpan } from './tracing';

/** Protobuf wire types. */
const VARINT = 0;
const FIXED64 = 1;
const LEN = 2;
const FIXED32 = 5;

function varintSize(v: number): number {
  let n = 1;
  while (v > 0x7f) { n++; v = Math.floor(v / 128); }
  return n;
}

/** A growing byte buffer with protobuf's primitive writers. */
class ProtoWriter {
  private buf = Buffer.allocUnsafe(64 * 1024);
  length = 0;

  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(bigger, 0, 0, this.length);
    this.buf = bigger;
  }

  varint(v: number): void {
    this.ensure(10);
    // Values here are below 2^53 (lengths, enums, int64 attribute values within safe integers).
    while (v > 0x7f) { this.buf[this.length++] = (v % 128) | 0x80; v = Math.floor(v / 128); }
    this.buf[this.length++] = v;
  }

  tag(field: number, wire: number): void { this.varint(field * 8 + wire); }

  bytes(field: number, b: Buffer): void {
    this.tag(field, LEN);
    this.varint(b.length);
    this.ensure(b.length);
    b.copy(this.buf, this.length);
    this.length += b.length;
  }

  string(field: number, s: string): void {
    this.tag(field, LEN);
    // Short ASCII (nearly every key and value here) is copied in JS: Buffer#write costs a native call each.
    if (s.length < 128) {
      this.ensure(s.length + 1);
      const buf = this.buf;
      const at = this.length + 1;
      let i = 0;
      for (; i < s.length; i++) {
        const c = s.charCodeAt(i);
        if (c > 0x7f) break;
        buf[at + i] = c;
      }
      if (i === s.length) { buf[this.length] = i; this.length = at + i; return; }
    }
    const n = Buffer.byteLength(s);
    this.varint(n);
    this.ensure(n);
    this.length += this.buf.write(s, this.length, 'utf8');
  }

  hex(field: number, h: string): void {
    this.tag(field, LEN);
    const n = h.length >> 1;
    this.varint(n);
    this.ensure(n);
    this.length += this.buf.write(h, this.length, n, 'hex');
  }

  fixed64(field: number, v: bigint): void {
    this.tag(field, FIXED64);
    this.ensure(8);
    this.buf.writeBigUInt64LE(v, this.length);
    this.length += 8;
  }

  fixed32(field: number, v: number): void {
    this.tag(field, FIXED32);
    this.ensure(4);
    this.buf.writeUInt32LE(v >>> 0, this.length);
    this.length += 4;
  }

  double(field: number, v: number): void {
    this.tag(field, FIXED64);
    this.ensure(8);
    this.buf.writeDoubleLE(v, this.length);
    this.length += 8;
  }

  /**
   * A nested message: `body` writes it in place, then it moves up by the size of its length prefix
   * (one buffer for the whole request; no writer or buffer per message).
   */
  message(field: number, body: (w: ProtoWriter) => void): void {
    this.tag(field, LEN);
    const start = this.length;
    body(this);
    const len = this.length - start;
    const prefix = varintSize(len);
    this.ensure(prefix);
    this.buf.copyWithin(start + prefix, start, this.length);
    const end = this.length + prefix;
    this.length = start;
    this.varint(len);
    this.length = end;
  }

  finish(): Buffer { return this.buf.subarray(0, this.length); }
}

/** Epoch milliseconds (fractions kept to the nanosecond) as OTLP's fixed64 nanoseconds. */
export function unixNanos(ms: number): bigint {
  const whole = Math.floor(ms);
  return BigInt(whole) * 1_000_000n + BigInt(Math.round((ms - whole) * 1e6));
}

/** AnyValue: string 1, bool 2, int 3, double 4. */
function anyValue(w: ProtoWriter, v: AttributeValue): void {
  if (typeof v === 'string') w.string(1, v);
  else if (typeof v === 'boolean') { w.tag(2, VARINT); w.varint(v ? 1 : 0); }
  else if (Number.isSafeInteger(v) && v >= 0) { w.tag(3, VARINT); w.varint(v); }
  else w.double(4, v);
}

/** KeyValue: key 1, value 2. */
function keyValue(w: ProtoWriter, field: number, key: string, v: AttributeValue): void {
  w.message(field, (kv) => { kv.string(1, key); kv.message(2, (a) => anyValue(a, v)); });
}

/** Span.SpanKind */
const KIND = { server: 2, client: 3 } as const;
/** Status.StatusCode */
const STATUS_ERROR = 2;
/** Span.flags: the W3C trace flags in bits 0-7, then SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE (0x100) and _IS_REMOTE (0x200) for the parent. */
const HAS_IS_REMOTE = 0x100;
const IS_REMOTE = 0x200;

function span(w: ProtoWriter, s: FinishedSpan): void {
  w.hex(1, s.traceId);
  w.hex(2, s.spanId);
  if (s.traceState !== undefined) w.string(3, s.traceState);
  if (s.parentSpanId !== undefined) w.hex(4, s.parentSpanId);
  w.string(5, s.name);
  w.tag(6, VARINT); w.varint(KIND[s.kind]);
  w.fixed64(7, unixNanos(s.startMs));
  w.fixed64(8, unixNanos(s.endMs));
  for (const [k, v] of s.attributes) keyValue(w, 9, k, v);
  if (s.error !== undefined) {
    const message = s.error;
    w.message(15, (st) => { st.string(2, message); st.tag(3, VARINT); st.varint(STATUS_ERROR); });
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
  const w = new ProtoWriter();
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
