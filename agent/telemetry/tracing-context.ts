/**
 * Trace context on HTTP requests, pure: read from W3C Trace Context (`traceparent`, `tracestate`)
 * or Zipkin's B3 (the single `b3` header, or the `x-b3-*` set), and the header fields that carry a
 * context on to the next hop. Tested without sockets (test/unit/tracing-context.test.ts).
 */
import { parseTraceparent } from '../tunnel/traceparent';

/** One span's place in a trace: lower-case hex ids, as on the wire. */
export interface SpanContext {
  /** 32 hex digits, not all zero */
  traceId: string;
  /** 16 hex digits, not all zero */
  spanId: string;
  /** the sampled flag (W3C flags bit 0; B3 `1` or `d`) */
  sampled: boolean;
  /** W3C `tracestate`, passed on unchanged; absent when there was none (or it was malformed) */
  traceState?: string;
}

/** How a context arrived, so the next hop gets it in the same format(s) (traceparent always). */
export type PropagationFormat = 'w3c' | 'b3' | 'b3multi';

export interface IncomingContext {
  context: SpanContext;
  /** the format the context was read from */
  format: PropagationFormat;
}

/** Which B3 forms a request carried (whatever the context was read from): the next hop gets them updated. */
export interface B3Carriers { b3: boolean; b3multi: boolean }

/** Which B3 forms the request carries. Pure. */
export function b3Carriers(h: Headers): B3Carriers {
  return { b3: h.b3 !== undefined, b3multi: h['x-b3-traceid'] !== undefined || h['x-b3-spanid'] !== undefined || h['x-b3-sampled'] !== undefined };
}

/** What a request says about its trace: a context, or (no header, or only an unsampled B3 decision) none. */
export type Extracted = { kind: 'context'; value: IncomingContext } | { kind: 'none'; sampled?: boolean };

type Headers = Readonly<Record<string, string | string[] | undefined>>;

const HEX16 = /^[0-9a-f]{16}$/;
const HEX32 = /^[0-9a-f]{32}$/;
const ALL_ZERO = /^0+$/;

function single(v: string | string[] | undefined): string | undefined {
  // A repeated traceparent is invalid (W3C: "vendors MUST ... treat as invalid"); Node joins repeats with ', '.
  if (Array.isArray(v)) return v.length === 1 ? v[0] : undefined;
  return v;
}

/**
 * W3C `tracestate`: at most 32 comma-separated `key=value` members (empty members allowed and
 * dropped), at most 512 characters as the spec asks a forwarder to keep; malformed: undefined
 * (the spec: discard it, keep the traceparent). Repeated fields are one list joined with ','.
 */
export function parseTracestate(v: string | string[] | undefined): string | undefined {
  if (v === undefined) return undefined;
  const text = Array.isArray(v) ? v.join(',') : v;
  const members = text.split(',').map((m) => m.trim()).filter((m) => m !== '');
  if (members.length === 0 || members.length > 32) return undefined;
  const keys = new Set<string>();
  for (const m of members) {
    const eq = m.indexOf('=');
    if (eq <= 0 || eq === m.length - 1) return undefined;
    const key = m.slice(0, eq);
    if (!/^[a-z0-9][_0-9a-z\-*/@]{0,255}$/.test(key) || keys.has(key)) return undefined;
    keys.add(key);
    if (!/^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/.test(m.slice(eq + 1))) return undefined;
  }
  const joined = members.join(',');
  return joined.length <= 512 ? joined : undefined;
}

/** A B3 trace id: 16 or 32 hex digits (a 64-bit id is left-padded to 128 bits). */
function b3TraceId(v: string): string | undefined {
  const id = v.toLowerCase();
  const full = HEX16.test(id) ? `0000000000000000${id}` : HEX32.test(id) ? id : undefined;
  return full === undefined || ALL_ZERO.test(full) ? undefined : full;
}

function b3SpanId(v: string): string | undefined {
  const id = v.toLowerCase();
  return HEX16.test(id) && !ALL_ZERO.test(id) ? id : undefined;
}

/** B3's sampling state: `1`/`d` (debug) sampled, `0` not, absent: the receiver decides. */
function b3Sampled(v: string | undefined): boolean | undefined | 'invalid' {
  if (v === undefined) return undefined;
  if (v === '1' || v === 'd' || v === 'true') return true;
  if (v === '0' || v === 'false') return false;
  return 'invalid';
}

/**
 * The single `b3` header: `{TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]`, or only a
 * sampling state (`0`, `1`, `d`). Invalid: undefined.
 */
export function parseB3Single(v: string): Extracted | undefined {
  const parts = v.trim().split('-');
  if (parts.length === 1) {
    const s = b3Sampled(parts[0]);
    return s === 'invalid' || s === undefined ? undefined : { kind: 'none', sampled: s };
  }
  if (parts.length > 4) return undefined;
  const traceId = b3TraceId(parts[0]!);
  const spanId = b3SpanId(parts[1]!);
  const s = b3Sampled(parts[2]);
  if (traceId === undefined || spanId === undefined || s === 'invalid') return undefined;
  if (parts[3] !== undefined && b3SpanId(parts[3]) === undefined) return undefined;
  return { kind: 'context', value: { context: { traceId, spanId, sampled: s ?? true }, format: 'b3' } };
}

/** The `x-b3-*` set: X-B3-TraceId and X-B3-SpanId together, X-B3-Sampled / X-B3-Flags optional. */
export function parseB3Multi(h: Headers): Extracted | undefined {
  const t = single(h['x-b3-traceid']);
  const s = single(h['x-b3-spanid']);
  const flags = single(h['x-b3-flags']);
  const sampled = flags === '1' ? true : b3Sampled(single(h['x-b3-sampled']));
  if (sampled === 'invalid') return undefined;
  if (t === undefined && s === undefined) return sampled === undefined ? undefined : { kind: 'none', sampled };
  if (t === undefined || s === undefined) return undefined;
  const traceId = b3TraceId(t.trim());
  const spanId = b3SpanId(s.trim());
  if (traceId === undefined || spanId === undefined) return undefined;
  // Absent sampling state: the upstream deferred; B3 says the receiver decides. A context carried
  // this far by an instrumented client is taken as sampled (Envoy's reading too).
  return { kind: 'context', value: { context: { traceId, spanId, sampled: sampled ?? true }, format: 'b3multi' } };
}

/**
 * The trace context of a request: W3C first (a valid traceparent wins over B3 headers), then the
 * single `b3`, then `x-b3-*`. Headers that do not parse are ignored as the specs ask (a new trace
 * starts). Pure.
 */
export function extractContext(h: Headers): Extracted {
  const tp = single(h.traceparent);
  if (tp !== undefined) {
    const parsed = parseTraceparent(tp);
    if (parsed.ok) {
      const { traceId, parentId, flags } = parsed.value;
      const traceState = parseTracestate(h.tracestate);
      const context: SpanContext = { traceId, spanId: parentId, sampled: (parseInt(flags, 16) & 1) === 1, ...(traceState === undefined ? {} : { traceState }) };
      return { kind: 'context', value: { context, format: 'w3c' } };
    }
  }
  const b3 = single(h.b3);
  const single3 = b3 === undefined ? undefined : parseB3Single(b3);
  if (single3 !== undefined) return single3;
  return parseB3Multi(h) ?? { kind: 'none' };
}

/** The `traceparent` value of a context (version 00). */
export function traceparentOf(c: SpanContext): string {
  return `00-${c.traceId}-${c.spanId}-${c.sampled ? '01' : '00'}`;
}

/**
 * The header fields (lower-case name, value, name, value, ...) that carry `c` to the next hop:
 * `traceparent` (and `tracestate` when there is one) always, plus each B3 form the request came
 * with, so an application that reads only B3 sees the proxy's span as its parent too (stale copies
 * are never left behind: the caller drops every PROPAGATION_FIELDS name first). `parentSpanId` is
 * B3's ParentSpanId (the span that is the parent of `c`). Pure.
 */
export function outgoingFields(c: SpanContext, b3: B3Carriers, parentSpanId?: string): string[] {
  const out = ['traceparent', traceparentOf(c)];
  if (c.traceState !== undefined) out.push('tracestate', c.traceState);
  const sampled = c.sampled ? '1' : '0';
  if (b3.b3) out.push('b3', `${c.traceId}-${c.spanId}-${sampled}${parentSpanId === undefined ? '' : `-${parentSpanId}`}`);
  if (b3.b3multi) {
    out.push('x-b3-traceid', c.traceId, 'x-b3-spanid', c.spanId, 'x-b3-sampled', sampled);
    if (parentSpanId !== undefined) out.push('x-b3-parentspanid', parentSpanId);
  }
  return out;
}

/** Names that outgoingFields() may set: a request going on loses its own copies of them first. */
export const PROPAGATION_FIELDS: readonly string[] = ['traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-sampled', 'x-b3-parentspanid', 'x-b3-flags'];
