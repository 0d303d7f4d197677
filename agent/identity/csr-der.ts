/**
 * The one PKCS#10 request the node agent makes, encoded by hand in DER so that the agent process
 * does not load @peculiar/x509 and its asn1/tsyringe tree (about 14 MiB of RSS) to build it. The
 * control plane still parses requests with @peculiar/x509 (controlplane/csr.ts).
 *
 * The request (RFC 2986) is:
 *
 *   CertificationRequest ::= SEQUENCE {
 *     certificationRequestInfo SEQUENCE {
 *       version       INTEGER 0,
 *       subject       Name (empty SEQUENCE: the identity is in the SAN alone),
 *       subjectPKInfo SubjectPublicKeyInfo (WebCrypto's 'spki' export, as is),
 *       attributes    [0] IMPLICIT SET OF Attribute {
 *         SEQUENCE { extensionRequest, SET { Extensions {
 *           SEQUENCE { subjectAltName, BOOLEAN TRUE, OCTET STRING { GeneralNames { [6] IA5String uri } } }
 *         } } }
 *       }
 *     },
 *     signatureAlgorithm SEQUENCE { ecdsa-with-SHA256 } (parameters absent, RFC 5758),
 *     signature          BIT STRING { Ecdsa-Sig-Value SEQUENCE { INTEGER r, INTEGER s } }
 *   }
 */
import { webcrypto } from 'node:crypto';

export const OID_EXTENSION_REQUEST = '1.2.840.113549.1.9.14';
export const OID_SUBJECT_ALT_NAME = '2.5.29.17';
export const OID_ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';

const TAG_BOOLEAN = 0x01;
const TAG_INTEGER = 0x02;
const TAG_BIT_STRING = 0x03;
const TAG_OCTET_STRING = 0x04;
const TAG_OID = 0x06;
const TAG_SEQUENCE = 0x30;
const TAG_SET = 0x31;
/** [0] IMPLICIT, constructed: CertificationRequestInfo.attributes. */
const TAG_CONTEXT_0_CONSTRUCTED = 0xa0;
/** [6] IMPLICIT IA5String, primitive: GeneralName.uniformResourceIdentifier. */
const TAG_CONTEXT_6_PRIMITIVE = 0x86;

/** A DER length: one byte below 128, else 0x80|n followed by n big-endian bytes, minimal. */
export function derLength(length: number): Buffer {
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`DER length must be a non-negative integer, got ${length}`);
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** Tag, length, value: `contents` concatenated. */
export function tlv(tag: number, ...contents: Uint8Array[]): Buffer {
  const value = Buffer.concat(contents);
  return Buffer.concat([Buffer.from([tag]), derLength(value.length), value]);
}

export const sequence = (...contents: Uint8Array[]): Buffer => tlv(TAG_SEQUENCE, ...contents);
export const set = (...contents: Uint8Array[]): Buffer => tlv(TAG_SET, ...contents);

/** An OBJECT IDENTIFIER from its dotted form: 40*a+b, then each arc base-128, high bit on all but the last byte. */
export function objectIdentifier(dotted: string): Buffer {
  const arcs = dotted.split('.').map((arc) => (/^(0|[1-9][0-9]*)$/.test(arc) ? Number(arc) : NaN));
  if (arcs.length < 2 || arcs.some((arc) => !Number.isSafeInteger(arc))) throw new Error(`not an object identifier: ${dotted}`);
  const [first, second, ...rest] = arcs as [number, number, ...number[]];
  if (first > 2 || (first < 2 && second > 39)) throw new Error(`not an object identifier: ${dotted}`);
  const bytes: number[] = [];
  for (const arc of [first * 40 + second, ...rest]) {
    const base128: number[] = [];
    let value = arc;
    do {
      base128.unshift((value % 128) | (base128.length === 0 ? 0 : 0x80));
      value = Math.floor(value / 128);
    } while (value > 0);
    bytes.push(...base128);
  }
  return tlv(TAG_OID, Buffer.from(bytes));
}

/**
 * A DER INTEGER holding the non-negative big-endian `magnitude`: leading zero bytes stripped
 * (one kept for zero), then a 0x00 put back in front if the top bit is set, so it reads positive.
 */
export function unsignedInteger(magnitude: Uint8Array): Buffer {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start += 1;
  const trimmed = magnitude.length === 0 ? Buffer.from([0]) : Buffer.from(magnitude.subarray(start));
  return tlv(TAG_INTEGER, trimmed[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

/**
 * WebCrypto's ECDSA signature is r||s, each the curve's size (64 bytes in all for P-256); X.509
 * and PKCS#10 carry Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } (RFC 3279).
 */
export function ecdsaSignatureToDer(raw: Uint8Array): Buffer {
  if (raw.length === 0 || raw.length % 2 !== 0) throw new Error(`an ECDSA r||s signature has an even, non-zero length, got ${raw.length} bytes`);
  const half = raw.length / 2;
  return sequence(unsignedInteger(raw.subarray(0, half)), unsignedInteger(raw.subarray(half)));
}

/** IA5String is 7-bit ASCII; a SPIFFE ID is narrower still, but refuse anything IA5 cannot carry. */
function ia5(text: string): Buffer {
  if (!/^[\x00-\x7f]*$/.test(text)) throw new Error(`URI SAN must be ASCII (IA5String): ${JSON.stringify(text)}`);
  return Buffer.from(text, 'ascii');
}

/** The critical subjectAltName extension naming `uri` alone. */
export function uriSanExtension(uri: string): Buffer {
  const generalNames = sequence(tlv(TAG_CONTEXT_6_PRIMITIVE, ia5(uri)));
  return sequence(objectIdentifier(OID_SUBJECT_ALT_NAME), tlv(TAG_BOOLEAN, Buffer.from([0xff])), tlv(TAG_OCTET_STRING, generalNames));
}

/** CertificationRequestInfo: version 0, empty subject, `spkiDer`, extensionRequest { SAN `uri` }. */
export function certificationRequestInfo(spkiDer: Uint8Array, uri: string): Buffer {
  const extensionRequest = sequence(objectIdentifier(OID_EXTENSION_REQUEST), set(sequence(uriSanExtension(uri))));
  return sequence(
    unsignedInteger(Buffer.from([0])),
    sequence(),
    Buffer.from(spkiDer),
    tlv(TAG_CONTEXT_0_CONSTRUCTED, extensionRequest),
  );
}

/** The whole CertificationRequest from its signed info and r||s signature over it. */
export function certificationRequest(info: Uint8Array, rawSignature: Uint8Array): Buffer {
  const signature = Buffer.concat([Buffer.from([0]), ecdsaSignatureToDer(rawSignature)]); // 0 unused bits
  return sequence(Buffer.from(info), sequence(objectIdentifier(OID_ECDSA_WITH_SHA256)), tlv(TAG_BIT_STRING, signature));
}

/** PEM armour with 64-column base64 lines, no trailing newline (as @peculiar/x509 wrote it). */
export function pem(der: Uint8Array, label: string): string {
  const lines = Buffer.from(der).toString('base64').match(/.{1,64}/g) ?? [];
  return [`-----BEGIN ${label}-----`, ...lines, `-----END ${label}-----`].join('\n');
}

/** A PKCS#10 request for `uri` as its only (critical) URI SAN, signed ECDSA-SHA256 by a P-256 key pair. */
export async function buildCsrDer(keys: webcrypto.CryptoKeyPair, uri: string): Promise<Buffer> {
  const algorithm = keys.privateKey.algorithm as webcrypto.EcKeyAlgorithm;
  if (algorithm.name !== 'ECDSA' || algorithm.namedCurve !== 'P-256') {
    throw new Error(`CSR keys must be ECDSA P-256, got ${algorithm.name} ${algorithm.namedCurve ?? ''}`);
  }
  const spki = new Uint8Array(await webcrypto.subtle.exportKey('spki', keys.publicKey));
  const info = certificationRequestInfo(spki, uri);
  const raw = new Uint8Array(await webcrypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, keys.privateKey, info));
  return certificationRequest(info, raw);
}

export async function buildCsrPem(keys: webcrypto.CryptoKeyPair, uri: string): Promise<string> {
  return pem(await buildCsrDer(keys, uri), 'CERTIFICATE REQUEST');
}
