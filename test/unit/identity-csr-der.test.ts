import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CertificateAuthority } from '../../agent/controlplane/ca';
import { readCsr } from '../../agent/controlplane/csr';
import {
  derLength, ecdsaSignatureToDer, objectIdentifier, pem, unsignedInteger,
  OID_ECDSA_WITH_SHA256, OID_EXTENSION_REQUEST, OID_SUBJECT_ALT_NAME,
} from '../../agent/identity/csr-der';
import { generateWorkloadKey } from '../../agent/identity/keys';

const TD = 'cluster.local';
const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
/** 339 bytes: the SAN, the extension request and the request info all need two-byte (0x82) lengths. */
const LONG = `spiffe://cluster.local/ns/shop/sa/${'a'.repeat(305)}`;
/** 150 bytes: one-byte (0x81) long-form lengths. */
const MEDIUM = `spiffe://cluster.local/ns/shop/sa/${'b'.repeat(116)}`;

// --- a small, independent DER reader (strict about minimal lengths), to take the encoder's output apart ---

interface Node { tag: number; header: number; value: Buffer; whole: Buffer; children?: Node[] }

function readTlv(der: Buffer, at: number): Node {
  const tag = der[at]!;
  let length = der[at + 1]!;
  let header = 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    assert.ok(count >= 1 && count <= 4, `length of length ${count}`);
    assert.notEqual(der[at + 2], 0, 'long-form length has a leading zero byte');
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + der[at + 2 + i]!;
    assert.ok(length >= 0x80, `long form used for a length (${length}) that fits the short form`);
    header += count;
  }
  assert.ok(at + header + length <= der.length, 'value runs past its parent');
  const value = der.subarray(at + header, at + header + length);
  const node: Node = { tag, header, value, whole: der.subarray(at, at + header + length) };
  if (tag & 0x20) {
    node.children = [];
    for (let p = 0; p < value.length;) { const child = readTlv(value, p); node.children.push(child); p += child.whole.length; }
  }
  return node;
}

function parse(der: Buffer): Node {
  const node = readTlv(der, 0);
  assert.equal(node.whole.length, der.length, 'trailing bytes after the outer SEQUENCE');
  return node;
}

function oidText(node: Node): string {
  assert.equal(node.tag, 0x06);
  const arcs: number[] = [];
  let value = 0;
  for (const byte of node.value) {
    value = value * 128 + (byte & 0x7f);
    if (!(byte & 0x80)) { arcs.push(value); value = 0; }
  }
  const first = Math.min(2, Math.floor(arcs[0]! / 40));
  return [first, arcs[0]! - first * 40, ...arcs.slice(1)].join('.');
}

function derOfPem(text: string, label: string): Buffer {
  const lines = text.split('\n');
  assert.equal(lines[0], `-----BEGIN ${label}-----`);
  assert.equal(lines.at(-1), `-----END ${label}-----`);
  const body = lines.slice(1, -1);
  body.forEach((line, i) => assert.ok(i === body.length - 1 ? line.length <= 64 && line.length > 0 : line.length === 64, `line ${i} is ${line.length} columns`));
  return Buffer.from(body.join(''), 'base64');
}

/** The request's parts, each checked for the shape the encoder promises. */
function takeApart(csrPem: string) {
  const der = derOfPem(csrPem, 'CERTIFICATE REQUEST');
  const request = parse(der);
  assert.equal(request.tag, 0x30);
  const [info, algorithm, signature] = request.children as [Node, Node, Node];
  assert.equal(request.children!.length, 3);
  assert.equal(info.tag, 0x30);
  const [version, subject, spki, attributes] = info.children as [Node, Node, Node, Node];
  assert.equal(info.children!.length, 4);
  assert.deepEqual([...version.whole], [0x02, 0x01, 0x00]);
  assert.deepEqual([...subject.whole], [0x30, 0x00], 'subject is the empty Name');
  assert.equal(attributes.tag, 0xa0);
  assert.equal(attributes.children!.length, 1);
  const [attrOid, attrValues] = attributes.children![0]!.children as [Node, Node];
  assert.equal(oidText(attrOid), OID_EXTENSION_REQUEST);
  assert.equal(attrValues.tag, 0x31);
  const extensions = attrValues.children![0]!;
  assert.equal(extensions.children!.length, 1);
  const [extOid, critical, extValue] = extensions.children![0]!.children as [Node, Node, Node];
  assert.equal(oidText(extOid), OID_SUBJECT_ALT_NAME);
  assert.deepEqual([...critical.whole], [0x01, 0x01, 0xff]);
  assert.equal(extValue.tag, 0x04);
  const generalNames = parse(extValue.value);
  assert.equal(generalNames.tag, 0x30);
  const uris = generalNames.children!.map((name) => { assert.equal(name.tag, 0x86); return name.value.toString('ascii'); });
  assert.equal(algorithm.children!.length, 1, 'ecdsa-with-SHA256 has its parameters absent');
  assert.equal(oidText(algorithm.children![0]!), OID_ECDSA_WITH_SHA256);
  assert.equal(signature.tag, 0x03);
  assert.equal(signature.value[0], 0, 'no unused bits');
  const sigValue = signature.value.subarray(1);
  parse(sigValue);
  return { der, request, info, spki, uris, sigValue };
}

function tmp(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'weft-csr-der-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;

// --- the request ---

for (const [what, identity] of [['a workload identity', WEB], ['a 150-byte identity', MEDIUM], ['a 339-byte identity', LONG]] as const) {
  test(`${what}: the CSR has the promised shape, its signature verifies with node:crypto over the request info with its own SPKI`, async () => {
    const { keyPem, csrPem } = await generateWorkloadKey(identity);
    const { info, spki, uris, sigValue, der } = takeApart(csrPem);
    assert.deepEqual(uris, [identity]);
    if (identity !== WEB) assert.ok(der.length > 255 && info.header >= 3, 'outer lengths are long form');
    const publicKey = createPublicKey({ key: spki.whole, format: 'der', type: 'spki' });
    assert.ok(publicKey.equals(createPublicKey(createPrivateKey(keyPem))), 'the SPKI is the workload key');
    assert.equal(publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.ok(verify('sha256', info.whole, { key: publicKey, dsaEncoding: 'der' }, sigValue));
    const tampered = Buffer.from(info.whole);
    tampered[tampered.length - 1]! ^= 1;
    assert.ok(!verify('sha256', tampered, { key: publicKey, dsaEncoding: 'der' }, sigValue));
  });

  test(`${what}: the control plane's readCsr and CertificateAuthority.signWorkloadCsr accept the CSR`, async (t) => {
    const { keyPem, csrPem } = await generateWorkloadKey(identity);
    const read = await readCsr(csrPem);
    assert.ok(read.ok, read.ok ? '' : read.error);
    assert.deepEqual(read.value.uris, [identity]);
    const ca = await CertificateAuthority.loadOrCreate({ trustDomain: TD, dataDir: tmp(t) });
    assert.ok(ca.ok, ca.ok ? '' : ca.error);
    const chain = await ca.value.signWorkloadCsr(csrPem, { identity });
    assert.ok(chain.ok, chain.ok ? '' : chain.error);
    const leaf = new X509Certificate(chain.value[0]!);
    assert.equal(leaf.subjectAltName, `URI:${identity}`);
    assert.ok(leaf.publicKey.equals(createPublicKey(createPrivateKey(keyPem))));
    assert.ok(leaf.verify(new X509Certificate(chain.value[1]!).publicKey));
  });

  test(`${what}: openssl req -verify says the self-signature is OK and shows the critical URI SAN`, { skip: !hasOpenssl && 'no openssl' }, async (t) => {
    const { csrPem } = await generateWorkloadKey(identity);
    const file = join(tmp(t), 'req.pem');
    writeFileSync(file, csrPem);
    const run = spawnSync('openssl', ['req', '-in', file, '-noout', '-verify', '-text'], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const said = run.stdout + run.stderr;
    assert.match(said, /verify OK/);
    assert.match(said, /X509v3 Subject Alternative Name: critical\n\s+URI:(\S+)/);
    assert.equal(/X509v3 Subject Alternative Name: critical\n\s+URI:(\S+)/.exec(said)![1], identity);
    assert.match(said, /Signature Algorithm: ecdsa-with-SHA256/);
    assert.match(said, /Subject: *\n/);
    // openssl's own parse agrees on every length, and re-encodes the request byte for byte
    const der = execFileSync('openssl', ['req', '-in', file, '-outform', 'DER']);
    assert.deepEqual(der, derOfPem(csrPem, 'CERTIFICATE REQUEST'));
  });
}

test('a URI SAN IA5String cannot carry is refused, not mis-encoded', async () => {
  await assert.rejects(generateWorkloadKey('spiffe://cluster.local/ns/shop/sa/wéb'), /ASCII/);
});

test('the private key PEM is PKCS#8, 64-column lines, no trailing newline', async () => {
  const { keyPem } = await generateWorkloadKey(WEB);
  const der = derOfPem(keyPem, 'PRIVATE KEY');
  const key = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  assert.ok(!keyPem.endsWith('\n'));
});

// --- the DER pieces ---

test('lengths: short form below 128, minimal long form above', () => {
  const cases: [number, number[]][] = [
    [0, [0x00]], [1, [0x01]], [127, [0x7f]], [128, [0x81, 0x80]], [255, [0x81, 0xff]],
    [256, [0x82, 0x01, 0x00]], [65535, [0x82, 0xff, 0xff]], [65536, [0x83, 0x01, 0x00, 0x00]], [0x1234567, [0x84, 0x01, 0x23, 0x45, 0x67]],
  ];
  for (const [length, bytes] of cases) assert.deepEqual([...derLength(length)], bytes, `length ${length}`);
  assert.throws(() => derLength(-1));
  assert.throws(() => derLength(1.5));
});

test('object identifiers encode as the known bytes', () => {
  assert.equal(objectIdentifier(OID_ECDSA_WITH_SHA256).toString('hex'), '06082a8648ce3d040302');
  assert.equal(objectIdentifier(OID_SUBJECT_ALT_NAME).toString('hex'), '0603551d11');
  assert.equal(objectIdentifier(OID_EXTENSION_REQUEST).toString('hex'), '06092a864886f70d01090e');
  assert.equal(objectIdentifier('1.2.840.10045.2.1').toString('hex'), '06072a8648ce3d0201');
  assert.equal(objectIdentifier('2.999.3').toString('hex'), '0603883703');
  for (const bad of ['1', '3.1', '1.40', '1.2.-3', '1..2', '1.02', '1.2.x']) assert.throws(() => objectIdentifier(bad), /not an object identifier/, bad);
});

test('PEM wraps base64 at 64 columns', () => {
  for (const size of [0, 1, 47, 48, 49, 96, 300]) {
    const der = Buffer.alloc(size, 0xab);
    const text = pem(der, 'X');
    const lines = text.split('\n').slice(1, -1);
    assert.ok(lines.every((line) => line.length <= 64 && line.length > 0));
    assert.deepEqual(Buffer.from(lines.join(''), 'base64'), der);
  }
});

function integerValue(node: Node): bigint {
  assert.equal(node.tag, 0x02);
  assert.ok(node.value.length >= 1);
  if (node.value.length > 1) {
    assert.ok(!(node.value[0] === 0x00 && !(node.value[1]! & 0x80)), 'non-minimal: redundant leading 0x00');
    assert.ok(!(node.value[0] === 0xff && node.value[1]! & 0x80), 'non-minimal: redundant leading 0xff');
  }
  assert.ok(!(node.value[0]! & 0x80), 'negative');
  return BigInt(`0x${node.value.toString('hex')}`);
}

const big = (bytes: Uint8Array): bigint => (bytes.length === 0 ? 0n : BigInt(`0x${Buffer.from(bytes).toString('hex')}`));

test('unsigned integers: leading zeros stripped, 0x00 added before a high bit, zero is one byte', () => {
  const cases: [number[], string][] = [
    [[0x00], '020100'], [[], '020100'], [[0x00, 0x00, 0x00], '020100'], [[0x01], '020101'], [[0x7f], '02017f'],
    [[0x80], '02020080'], [[0xff], '020200ff'], [[0x00, 0x80], '02020080'], [[0x00, 0x00, 0x7f, 0x01], '02027f01'],
    [[0x00, 0x00, 0x80, 0x01], '0203008001'],
  ];
  for (const [bytes, hex] of cases) assert.equal(unsignedInteger(Buffer.from(bytes)).toString('hex'), hex, Buffer.from(bytes).toString('hex'));
});

test('r||s to Ecdsa-Sig-Value: crafted 64-byte signatures with high bits and leading zeros', () => {
  const half = (first: number[], fill: number): Buffer => Buffer.concat([Buffer.from(first), Buffer.alloc(32 - first.length, fill)]);
  const cases: { what: string; r: Buffer; s: Buffer; rLen: number; sLen: number }[] = [
    { what: 'both low', r: half([0x7f], 0x11), s: half([0x01], 0x22), rLen: 32, sLen: 32 },
    { what: 'r high bit', r: half([0x80], 0x11), s: half([0x01], 0x22), rLen: 33, sLen: 32 },
    { what: 's high bit', r: half([0x01], 0x11), s: half([0xff], 0x22), rLen: 32, sLen: 33 },
    { what: 'both high bit', r: half([0xc0], 0x11), s: half([0x90], 0x22), rLen: 33, sLen: 33 },
    { what: 'r one leading zero', r: half([0x00, 0x7f], 0x11), s: half([0x40], 0x22), rLen: 31, sLen: 32 },
    { what: 'r leading zero then high bit', r: half([0x00, 0x80], 0x11), s: half([0x40], 0x22), rLen: 32, sLen: 32 },
    { what: 's three leading zeros then high bit', r: half([0x40], 0x11), s: half([0x00, 0x00, 0x00, 0xf0], 0x22), rLen: 32, sLen: 30 },
    { what: 'r is 1, s is all 0xff', r: half([], 0x00).fill(1, 31), s: half([], 0xff), rLen: 1, sLen: 33 },
    { what: 'both zero', r: half([], 0x00), s: half([], 0x00), rLen: 1, sLen: 1 },
  ];
  for (const { what, r, s, rLen, sLen } of cases) {
    const der = ecdsaSignatureToDer(Buffer.concat([r, s]));
    const seq = parse(der);
    assert.equal(seq.tag, 0x30, what);
    const [rNode, sNode] = seq.children as [Node, Node];
    assert.equal(seq.children!.length, 2, what);
    assert.equal(rNode.value.length, rLen, `${what}: r length`);
    assert.equal(sNode.value.length, sLen, `${what}: s length`);
    assert.equal(integerValue(rNode), big(r), `${what}: r value`);
    assert.equal(integerValue(sNode), big(s), `${what}: s value`);
    assert.equal(der.length, 2 + 2 + rLen + 2 + sLen, `${what}: total`);
  }
  assert.throws(() => ecdsaSignatureToDer(Buffer.alloc(63)), /even/);
  assert.throws(() => ecdsaSignatureToDer(Buffer.alloc(0)), /even/);
});

test('r||s to Ecdsa-Sig-Value: agrees with OpenSSL for real signatures (high bits and leading zeros come up)', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  let highBit = 0;
  let leadingZero = 0;
  for (let i = 0; i < 600; i++) {
    const message = Buffer.from(`message ${i}`);
    const raw = sign('sha256', message, { key: privateKey, dsaEncoding: 'ieee-p1363' });
    assert.equal(raw.length, 64);
    for (const h of [raw.subarray(0, 32), raw.subarray(32)]) { if (h[0]! & 0x80) highBit++; if (h[0] === 0) leadingZero++; }
    const der = ecdsaSignatureToDer(raw);
    assert.ok(verify('sha256', message, { key: publicKey, dsaEncoding: 'der' }, der), `signature ${i}`);
    const [rNode, sNode] = parse(der).children as [Node, Node];
    assert.equal(integerValue(rNode), big(raw.subarray(0, 32)));
    assert.equal(integerValue(sNode), big(raw.subarray(32)));
  }
  assert.ok(highBit > 0, 'some halves had the high bit set');
  // about 1200/256 ≈ 4.7 halves start with 0x00; not asserted (it is chance), the crafted cases cover it
  void leadingZero;
});

// --- the agent process does not load @peculiar/x509 ---

test('loading the node agent (dist/agent/node/run-agent.js) does not load @peculiar/x509', () => {
  const repo = resolve(__dirname, '..', '..', '..');
  const entry = join(repo, 'dist', 'agent', 'node', 'run-agent.js');
  const script = `require(${JSON.stringify(entry)}); const ks = Object.keys(require.cache);`
    + ` console.log(JSON.stringify({ peculiar: ks.some((k) => k.includes('@peculiar')), keys: ks.some((k) => k.endsWith(${JSON.stringify(join('identity', 'keys.js'))})) }))`;
  const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', cwd: repo });
  assert.equal(run.status, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout.trim()), { peculiar: false, keys: true }, 'the agent loads keys.js, and with it no @peculiar module');
});
