import { err, ok, type Result } from '../core/result';

/**
 * Protobuf encoding of exactly the messages of Istio's certificate API (istio/api
 * security/v1alpha1/ca.proto), so Weft needs no protobuf dependency:
 *
 *   message IstioCertificateRequest  { string csr = 1; int64 validity_duration = 3; google.protobuf.Struct metadata = 4; }
 *   message IstioCertificateResponse { repeated string cert_chain = 1; }
 *
 * Unknown fields are skipped, as protobuf requires. Nothing past this file sees wire types.
 */
export const CREATE_CERTIFICATE_PATH = '/istio.v1.auth.IstioCertificateService/CreateCertificate';

export type StructValue = null | boolean | number | string | StructValue[] | { [key: string]: StructValue };

export interface IstioCertificateRequest {
  csr: string;
  /** Seconds; 0 when absent (the server's default applies). */
  validityDuration: number;
  metadata: { [key: string]: StructValue };
}

export interface IstioCertificateResponse {
  certChain: string[];
}

const enum WireType { Varint = 0, Fixed64 = 1, LengthDelimited = 2, Fixed32 = 5 }
const MAX_NESTING = 64;

class Reader {
  private pos = 0;
  constructor(private readonly buf: Uint8Array) {}

  done(): boolean {
    return this.pos >= this.buf.length;
  }

  varint(): bigint {
    let value = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (this.pos >= this.buf.length) throw new Error('truncated varint');
      const byte = this.buf[this.pos++]!;
      value |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return BigInt.asUintN(64, value);
    }
    throw new Error('varint longer than 10 bytes');
  }

  take(length: number): Uint8Array {
    if (length < 0 || this.pos + length > this.buf.length) throw new Error('field runs past the end of the message');
    const bytes = this.buf.subarray(this.pos, this.pos + length);
    this.pos += length;
    return bytes;
  }

  bytes(): Uint8Array {
    return this.take(Number(this.varint()));
  }

  string(): string {
    return new TextDecoder('utf-8', { fatal: true }).decode(this.bytes());
  }

  double(): number {
    const bytes = this.take(8);
    return new DataView(bytes.buffer, bytes.byteOffset, 8).getFloat64(0, true);
  }

  tag(): { field: number; wireType: number } {
    const tag = this.varint();
    const field = Number(tag >> 3n);
    if (field === 0 || field > 0x1fffffff) throw new Error(`invalid field number ${field}`);
    return { field, wireType: Number(tag & 7n) };
  }

  skip(wireType: number): void {
    switch (wireType) {
      case WireType.Varint: this.varint(); return;
      case WireType.Fixed64: this.take(8); return;
      case WireType.LengthDelimited: this.bytes(); return;
      case WireType.Fixed32: this.take(4); return;
      default: throw new Error(`unsupported wire type ${wireType}`);
    }
  }
}

function expect(actual: number, wanted: WireType, what: string): void {
  if (actual !== wanted) throw new Error(`${what} has wire type ${actual}, expected ${wanted}`);
}

function decodeValue(buf: Uint8Array, depth: number): StructValue {
  if (depth > MAX_NESTING) throw new Error(`Struct nested deeper than ${MAX_NESTING}`);
  const reader = new Reader(buf);
  let value: StructValue = null;
  while (!reader.done()) {
    const { field, wireType } = reader.tag();
    switch (field) {
      case 1: expect(wireType, WireType.Varint, 'Value.null_value'); reader.varint(); value = null; break;
      case 2: expect(wireType, WireType.Fixed64, 'Value.number_value'); value = reader.double(); break;
      case 3: expect(wireType, WireType.LengthDelimited, 'Value.string_value'); value = reader.string(); break;
      case 4: expect(wireType, WireType.Varint, 'Value.bool_value'); value = reader.varint() !== 0n; break;
      case 5: expect(wireType, WireType.LengthDelimited, 'Value.struct_value'); value = decodeStruct(reader.bytes(), depth + 1); break;
      case 6: expect(wireType, WireType.LengthDelimited, 'Value.list_value'); value = decodeList(reader.bytes(), depth + 1); break;
      default: reader.skip(wireType);
    }
  }
  return value;
}

function decodeList(buf: Uint8Array, depth: number): StructValue[] {
  const reader = new Reader(buf);
  const values: StructValue[] = [];
  while (!reader.done()) {
    const { field, wireType } = reader.tag();
    if (field === 1) {
      expect(wireType, WireType.LengthDelimited, 'ListValue.values');
      values.push(decodeValue(reader.bytes(), depth + 1));
    } else {
      reader.skip(wireType);
    }
  }
  return values;
}

function decodeStruct(buf: Uint8Array, depth: number, into: { [key: string]: StructValue } = {}): { [key: string]: StructValue } {
  const reader = new Reader(buf);
  while (!reader.done()) {
    const { field, wireType } = reader.tag();
    if (field !== 1) { reader.skip(wireType); continue; }
    expect(wireType, WireType.LengthDelimited, 'Struct.fields');
    const entry = new Reader(reader.bytes());
    let key = '';
    let value: StructValue = null;
    while (!entry.done()) {
      const tag = entry.tag();
      if (tag.field === 1) { expect(tag.wireType, WireType.LengthDelimited, 'Struct.fields key'); key = entry.string(); }
      else if (tag.field === 2) { expect(tag.wireType, WireType.LengthDelimited, 'Struct.fields value'); value = decodeValue(entry.bytes(), depth + 1); }
      else entry.skip(tag.wireType);
    }
    Object.defineProperty(into, key, { value, enumerable: true, writable: true, configurable: true }); // "__proto__" is data here
  }
  return into;
}

function decoded<T>(what: string, decode: () => T): Result<T, string> {
  try {
    return ok(decode());
  } catch (error) {
    return err(`malformed ${what}: ${(error as Error).message}`);
  }
}

export function decodeCertificateRequest(buf: Uint8Array): Result<IstioCertificateRequest, string> {
  return decoded('IstioCertificateRequest', () => {
    const reader = new Reader(buf);
    const request: IstioCertificateRequest = { csr: '', validityDuration: 0, metadata: {} };
    while (!reader.done()) {
      const { field, wireType } = reader.tag();
      if (field === 1) { expect(wireType, WireType.LengthDelimited, 'csr'); request.csr = reader.string(); }
      else if (field === 3) {
        expect(wireType, WireType.Varint, 'validity_duration');
        const seconds = BigInt.asIntN(64, reader.varint());
        if (seconds > BigInt(Number.MAX_SAFE_INTEGER) || seconds < BigInt(Number.MIN_SAFE_INTEGER)) throw new Error(`validity_duration ${seconds} is out of range`);
        request.validityDuration = Number(seconds);
      } else if (field === 4) { expect(wireType, WireType.LengthDelimited, 'metadata'); decodeStruct(reader.bytes(), 0, request.metadata); }
      else reader.skip(wireType);
    }
    return request;
  });
}

export function decodeCertificateResponse(buf: Uint8Array): Result<IstioCertificateResponse, string> {
  return decoded('IstioCertificateResponse', () => {
    const reader = new Reader(buf);
    const certChain: string[] = [];
    while (!reader.done()) {
      const { field, wireType } = reader.tag();
      if (field === 1) { expect(wireType, WireType.LengthDelimited, 'cert_chain'); certChain.push(reader.string()); }
      else reader.skip(wireType);
    }
    return { certChain };
  });
}

// Encoding.

function varint(value: bigint): Buffer {
  let rest = BigInt.asUintN(64, value);
  const bytes: number[] = [];
  while (rest >= 0x80n) {
    bytes.push(Number(rest & 0x7fn) | 0x80);
    rest >>= 7n;
  }
  bytes.push(Number(rest));
  return Buffer.from(bytes);
}

function tag(field: number, wireType: WireType): Buffer {
  return varint(BigInt((field << 3) | wireType));
}

function lengthDelimited(field: number, payload: Uint8Array): Buffer {
  return Buffer.concat([tag(field, WireType.LengthDelimited), varint(BigInt(payload.length)), payload]);
}

function encodeValue(value: StructValue): Buffer {
  if (value === null) return Buffer.concat([tag(1, WireType.Varint), varint(0n)]);
  if (typeof value === 'number') {
    const bytes = Buffer.alloc(8);
    bytes.writeDoubleLE(value);
    return Buffer.concat([tag(2, WireType.Fixed64), bytes]);
  }
  if (typeof value === 'string') return lengthDelimited(3, Buffer.from(value, 'utf8'));
  if (typeof value === 'boolean') return Buffer.concat([tag(4, WireType.Varint), varint(value ? 1n : 0n)]);
  if (Array.isArray(value)) return lengthDelimited(6, Buffer.concat(value.map((item) => lengthDelimited(1, encodeValue(item)))));
  return lengthDelimited(5, encodeStruct(value));
}

function encodeStruct(fields: { [key: string]: StructValue }): Buffer {
  return Buffer.concat(Object.entries(fields).map(([key, value]) =>
    lengthDelimited(1, Buffer.concat([lengthDelimited(1, Buffer.from(key, 'utf8')), lengthDelimited(2, encodeValue(value))]))));
}

export function encodeCertificateRequest(request: IstioCertificateRequest): Buffer {
  const parts = [lengthDelimited(1, Buffer.from(request.csr, 'utf8'))];
  if (request.validityDuration !== 0) parts.push(tag(3, WireType.Varint), varint(BigInt(request.validityDuration)));
  if (Object.keys(request.metadata).length > 0) parts.push(lengthDelimited(4, encodeStruct(request.metadata)));
  return Buffer.concat(parts);
}

export function encodeCertificateResponse(response: IstioCertificateResponse): Buffer {
  return Buffer.concat(response.certChain.map((pem) => lengthDelimited(1, Buffer.from(pem, 'utf8'))));
}
