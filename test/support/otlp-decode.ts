/**
 * A test collector's reading of OTLP/HTTP protobuf: a generic protobuf wire decoder (written from the
 * encoding spec, sharing nothing with agent/telemetry/otlp-encode.ts) and the ExportTraceServiceRequest
 * fields of opentelemetry-proto v1, flattened to one plain object per span.
 */

type Field = { no: number; wire: number; value: bigint | Buffer };

function readVarint(b: Buffer, at: number): [bigint, number] {
  let v = 0n;
  let shift = 0n;
  for (let i = 0; i < 10; i++) {
    if (at >= b.length) throw new Error('truncated varint');
    const byte = b[at++]!;
    v |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [v, at];
    shift += 7n;
  }
  throw new Error('varint longer than 10 bytes');
}

/** The fields of one message, in order; throws on a malformed buffer. */
export function decodeFields(b: Buffer): Field[] {
  const out: Field[] = [];
  let at = 0;
  while (at < b.length) {
    const [key, next] = readVarint(b, at);
    at = next;
    const no = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (no === 0) throw new Error('field number 0');
    if (wire === 0) { const [v, n] = readVarint(b, at); at = n; out.push({ no, wire, value: v }); }
    else if (wire === 1) { if (at + 8 > b.length) throw new Error('truncated fixed64'); out.push({ no, wire, value: b.readBigUInt64LE(at) }); at += 8; }
    else if (wire === 5) { if (at + 4 > b.length) throw new Error('truncated fixed32'); out.push({ no, wire, value: BigInt(b.readUInt32LE(at)) }); at += 4; }
    else if (wire === 2) {
      const [len, n] = readVarint(b, at);
      at = n;
      const end = at + Number(len);
      if (end > b.length) throw new Error('truncated length-delimited field');
      out.push({ no, wire, value: b.subarray(at, end) });
      at = end;
    } else throw new Error(`unsupported wire type ${wire}`);
  }
  return out;
}

const buf = (f: Field): Buffer => f.value as Buffer;
const num = (f: Field): bigint => f.value as bigint;

export type Value = string | number | boolean | null;

function anyValue(b: Buffer): Value {
  for (const f of decodeFields(b)) {
    if (f.no === 1) return buf(f).toString('utf8');
    if (f.no === 2) return num(f) !== 0n;
    if (f.no === 3) return Number(BigInt.asIntN(64, num(f)));
    if (f.no === 4) { const d = Buffer.alloc(8); d.writeBigUInt64LE(num(f)); return d.readDoubleLE(0); }
  }
  return null;
}

function keyValues(fields: Field[], no: number): Record<string, Value> {
  const out: Record<string, Value> = {};
  for (const f of fields) {
    if (f.no !== no) continue;
    const kv = decodeFields(buf(f));
    const key = kv.find((x) => x.no === 1);
    const value = kv.find((x) => x.no === 2);
    if (key) out[buf(key).toString('utf8')] = value ? anyValue(buf(value)) : null;
  }
  return out;
}

export interface DecodedSpan {
  resource: Record<string, Value>;
  scope: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  traceState: string;
  name: string;
  /** 2 SERVER, 3 CLIENT */
  kind: number;
  startNanos: string;
  endNanos: string;
  attributes: Record<string, Value>;
  /** 0 UNSET, 2 ERROR */
  statusCode: number;
  statusMessage: string;
  flags: number;
}

/** Every span of an ExportTraceServiceRequest. */
export function decodeExportTraceRequest(body: Buffer): DecodedSpan[] {
  const spans: DecodedSpan[] = [];
  for (const rs of decodeFields(body).filter((f) => f.no === 1)) {
    const rsFields = decodeFields(buf(rs));
    const res = rsFields.find((f) => f.no === 1);
    const resource = res ? keyValues(decodeFields(buf(res)), 1) : {};
    for (const ss of rsFields.filter((f) => f.no === 2)) {
      const ssFields = decodeFields(buf(ss));
      const scopeField = ssFields.find((f) => f.no === 1);
      const scopeName = scopeField ? decodeFields(buf(scopeField)).find((f) => f.no === 1) : undefined;
      for (const sp of ssFields.filter((f) => f.no === 2)) {
        const s = decodeFields(buf(sp));
        const get = (no: number) => s.find((f) => f.no === no);
        const hex = (no: number) => { const f = get(no); return f ? buf(f).toString('hex') : ''; };
        const status = get(15) ? decodeFields(buf(get(15)!)) : [];
        spans.push({
          resource, scope: scopeName ? buf(scopeName).toString('utf8') : '',
          traceId: hex(1), spanId: hex(2), parentSpanId: hex(4),
          traceState: get(3) ? buf(get(3)!).toString('utf8') : '',
          name: get(5) ? buf(get(5)!).toString('utf8') : '',
          kind: get(6) ? Number(num(get(6)!)) : 0,
          startNanos: get(7) ? String(num(get(7)!)) : '0', endNanos: get(8) ? String(num(get(8)!)) : '0',
          attributes: keyValues(s, 9),
          statusCode: Number(status.find((f) => f.no === 3)?.value ?? 0n),
          statusMessage: status.find((f) => f.no === 2) ? buf(status.find((f) => f.no === 2)!).toString('utf8') : '',
          flags: get(16) ? Number(num(get(16)!)) : 0,
        });
      }
    }
  }
  return spans;
}
