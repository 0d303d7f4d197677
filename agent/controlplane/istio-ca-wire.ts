import { err, ok, type Result } from '../core/result';
import { expectWire as expect, fieldOf, Reader, setOwn, WireType, wireTypeOf, Writer } from '../core/protobuf-wire';

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

const MAX_NESTING = 64;

function decodeValue(buf: Uint8Array, depth: number): StructValue {
  if (depth > MAX_NESTING) throw new Error(`Struct nested deeper than ${MAX_NESTING}`);
  const reader = new Reader(buf);
  let value: StructValue = null;
  while (!reader.done()) {
    const t = reader.tag();
    const field = fieldOf(t);
    const wireType = wireTypeOf(t);
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
    const t = reader.tag();
    const field = fieldOf(t);
    const wireType = wireTypeOf(t);
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
    const t = reader.tag();
    const field = fieldOf(t);
    const wireType = wireTypeOf(t);
    if (field !== 1) { reader.skip(wireType); continue; }
    expect(wireType, WireType.LengthDelimited, 'Struct.fields');
    const entry = new Reader(reader.bytes());
    let key = '';
    let value: StructValue = null;
    while (!entry.done()) {
      const t = entry.tag();
      if (fieldOf(t) === 1) { expect(wireTypeOf(t), WireType.LengthDelimited, 'Struct.fields key'); key = entry.string(); }
      else if (fieldOf(t) === 2) { expect(wireTypeOf(t), WireType.LengthDelimited, 'Struct.fields value'); value = decodeValue(entry.bytes(), depth + 1); }
      else entry.skip(wireTypeOf(t));
    }
    setOwn(into, key, value); // "__proto__" is data here
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
      const t = reader.tag();
    const field = fieldOf(t);
    const wireType = wireTypeOf(t);
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
      const t = reader.tag();
    const field = fieldOf(t);
    const wireType = wireTypeOf(t);
      if (field === 1) { expect(wireType, WireType.LengthDelimited, 'cert_chain'); certChain.push(reader.string()); }
      else reader.skip(wireType);
    }
    return { certChain };
  });
}

// Encoding.

function writeValue(w: Writer, value: StructValue): void {
  if (value === null) w.uint(1, 0);
  else if (typeof value === 'number') w.double(2, value);
  else if (typeof value === 'string') w.string(3, value);
  else if (typeof value === 'boolean') w.bool(4, value);
  else if (Array.isArray(value)) w.message(6, (list) => { for (const item of value) list.message(1, (v) => writeValue(v, item)); });
  else w.message(5, (struct) => writeStruct(struct, value));
}

function writeStruct(w: Writer, fields: { [key: string]: StructValue }): void {
  for (const [key, value] of Object.entries(fields)) w.message(1, (entry) => { entry.string(1, key); entry.message(2, (v) => writeValue(v, value)); });
}

export function encodeCertificateRequest(request: IstioCertificateRequest): Buffer {
  const w = new Writer().string(1, request.csr);
  if (request.validityDuration !== 0) w.int(3, request.validityDuration);
  if (Object.keys(request.metadata).length > 0) w.message(4, (struct) => writeStruct(struct, request.metadata));
  return w.finish();
}

export function encodeCertificateResponse(response: IstioCertificateResponse): Buffer {
  const w = new Writer();
  for (const pem of response.certChain) w.string(1, pem);
  return w.finish();
}
