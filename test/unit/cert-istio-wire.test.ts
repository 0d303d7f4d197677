import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeCertificateRequest, decodeCertificateResponse, encodeCertificateRequest, encodeCertificateResponse,
  type IstioCertificateRequest,
} from '../../agent/controlplane/istio-ca-wire';

// Produced by protobufjs from Istio's ca.proto and google/protobuf/struct.proto, for the request below.
const GOLDEN_REQUEST = '0a0343535218901c22640a240a14496d706572736f6e617465644964656e74697479120c1a0a7370696666653a2f2f780a0e0a016e120911000000000000f83f0a070a0162120220010a100a016c120b32090a0208000a031a01610a110a0173120c2a0a0a080a016b12031a0176';
const REQUEST: IstioCertificateRequest = {
  csr: 'CSR',
  validityDuration: 3600,
  metadata: { ImpersonatedIdentity: 'spiffe://x', n: 1.5, b: true, l: [null, 'a'], s: { k: 'v' } },
};

test('request encodes byte-for-byte as protobufjs does and decodes back', () => {
  assert.equal(encodeCertificateRequest(REQUEST).toString('hex'), GOLDEN_REQUEST);
  assert.deepEqual(decodeCertificateRequest(Buffer.from(GOLDEN_REQUEST, 'hex')), { ok: true, value: REQUEST });
});

test('response round-trips a chain', () => {
  const certChain = ['-----BEGIN CERTIFICATE-----\nleaf\n', '-----BEGIN CERTIFICATE-----\nroot é\n'];
  assert.deepEqual(decodeCertificateResponse(encodeCertificateResponse({ certChain })), { ok: true, value: { certChain } });
});

test('negative int64 validity decodes from its 10-byte two\'s complement form', () => {
  const decoded = decodeCertificateRequest(Buffer.from('0a0018ffffffffffffffffff01', 'hex'));
  assert.deepEqual(decoded, { ok: true, value: { csr: '', validityDuration: -1, metadata: {} } });
});

test('unknown fields of every wire type are skipped, at top level and inside Struct', () => {
  const unknown = Buffer.from([
    (9 << 3) | 0, 0x96, 0x01, // varint
    (10 << 3) | 1, 1, 2, 3, 4, 5, 6, 7, 8, // fixed64
    (11 << 3) | 2, 3, 0x61, 0x62, 0x63, // length-delimited
    (12 << 3) | 5, 1, 2, 3, 4, // fixed32
  ]);
  const plain = encodeCertificateRequest(REQUEST);
  const withUnknown = Buffer.concat([unknown, plain, unknown]);
  assert.deepEqual(decodeCertificateRequest(withUnknown), { ok: true, value: REQUEST });
  // An unknown field inside a Struct entry (field 3 of the map entry) is ignored too.
  const entry = Buffer.from([0x0a, 0x01, 0x6b, 0x12, 0x03, 0x1a, 0x01, 0x76, (3 << 3) | 0, 0x01]);
  const metadata = Buffer.concat([Buffer.from([0x0a, entry.length]), entry]);
  const request = Buffer.concat([Buffer.from([0x22, metadata.length]), metadata]);
  assert.deepEqual(decodeCertificateRequest(request), { ok: true, value: { csr: '', validityDuration: 0, metadata: { k: 'v' } } });
  const response = Buffer.concat([unknown, encodeCertificateResponse({ certChain: ['a'] })]);
  assert.deepEqual(decodeCertificateResponse(response), { ok: true, value: { certChain: ['a'] } });
});

test('malformed input is an error, never a throw', () => {
  for (const [hex, reason] of [
    ['0a05414243', 'field runs past the end'],
    ['18ffff', 'truncated varint'],
    ['4b', 'unsupported wire type 3'], // field 9 as a (deprecated) group
    ['0801', 'csr has wire type 0'],
    ['0a02c328', 'encoded data was not valid'],
    ['00', 'invalid field number 0'],
  ] as const) {
    const decoded = decodeCertificateRequest(Buffer.from(hex, 'hex'));
    assert.equal(decoded.ok, false, hex);
    if (!decoded.ok) assert.match(decoded.error, new RegExp(`^malformed IstioCertificateRequest: .*${reason}`), hex);
  }
});

test('a Struct key named __proto__ stays data', () => {
  const encoded = encodeCertificateRequest({ csr: 'c', validityDuration: 0, metadata: JSON.parse('{"__proto__": "x"}') });
  const decoded = decodeCertificateRequest(encoded);
  assert.ok(decoded.ok);
  assert.equal(Object.getPrototypeOf(decoded.value.metadata), Object.prototype);
  assert.deepEqual(Object.keys(decoded.value.metadata), ['__proto__']);
});

test('a negative validity_duration (int64) travels as its ten-byte two\'s complement and decodes back', () => {
  const bytes = encodeCertificateRequest({ csr: 'C', validityDuration: -5, metadata: {} });
  assert.equal(bytes.toString('hex'), '0a0143' + '18' + 'fbffffffffffffffff01');
  const back = decodeCertificateRequest(bytes);
  assert.ok(back.ok);
  assert.equal(back.value.validityDuration, -5);
});
