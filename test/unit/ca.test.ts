import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, webcrypto } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import * as x509 from '@peculiar/x509';
import { CertificateAuthority, type CaOptions } from '../../agent/controlplane/ca';
import { ECDSA_P256, generateKeyPair, generateWorkloadKey, privateKeyPem } from '../../agent/identity/keys';

const TD = 'cluster.local';
const WEB = 'spiffe://cluster.local/ns/shop/sa/web';

function dataDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'weft-ca-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function openCa(options: Partial<CaOptions> & { dataDir: string }): Promise<CertificateAuthority> {
  const ca = await CertificateAuthority.loadOrCreate({ trustDomain: TD, ...options });
  if (!ca.ok) throw new Error(ca.error);
  return ca.value;
}

async function issue(ca: CertificateAuthority, identity = WEB, ttlSeconds?: number): Promise<{ keyPem: string; chain: string[] }> {
  const { keyPem, csrPem } = await generateWorkloadKey(identity);
  const chain = await ca.signWorkloadCsr(csrPem, ttlSeconds === undefined ? { identity } : { identity, ttlSeconds });
  if (!chain.ok) throw new Error(chain.error);
  return { keyPem, chain: chain.value };
}

/** What OpenSSL says of a certificate a TLS 1.3 server presents, checked against `caPem`. */
async function tlsVerdict(presented: { keyPem: string; chain: string[] }, caPem: string): Promise<string> {
  const server = tls.createServer({ key: presented.keyPem, cert: presented.chain.join(''), minVersion: 'TLSv1.3' }, (socket) => socket.end());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    return await new Promise<string>((resolve, reject) => {
      const socket = tls.connect({
        host: '127.0.0.1', port: (server.address() as AddressInfo).port, ca: caPem, rejectUnauthorized: false, checkServerIdentity: () => undefined,
      }, () => {
        resolve(socket.authorized ? 'OK' : String((socket.authorizationError as NodeJS.ErrnoException | null)?.code ?? socket.authorizationError));
        socket.destroy();
      });
      socket.once('error', reject);
    });
  } finally {
    server.close();
  }
}

test('the root persists across reloads: same bundle, key file 0600, ca.pem is the bundle', async (t) => {
  const dir = dataDir(t);
  const first = await openCa({ dataDir: dir });
  const leaf = await issue(first);
  const second = await openCa({ dataDir: dir });
  assert.equal(second.trustBundlePem(), first.trustBundlePem());
  assert.equal(readFileSync(join(dir, 'ca.pem'), 'utf8'), first.trustBundlePem());
  assert.equal(statSync(join(dir, 'ca-key.pem')).mode & 0o777, 0o600);
  assert.equal(await tlsVerdict(await issue(second), first.trustBundlePem()), 'OK');
  assert.equal(await tlsVerdict(leaf, second.trustBundlePem()), 'OK');
});

test('a workload leaf: URI SAN only, EKU server+client, digitalSignature, not a CA, now-60s..now+ttl', async (t) => {
  const now = new Date('2030-01-01T00:00:00Z');
  const ca = await openCa({ dataDir: dataDir(t), clock: () => now });
  const { chain } = await issue(ca, WEB, 3600);
  const [leafPem, rootPem] = chain as [string, string];
  const leaf = new X509Certificate(leafPem);
  assert.equal(leaf.subject, undefined);
  assert.equal(leaf.subjectAltName, `URI:${WEB}`);
  assert.deepEqual([...leaf.keyUsage].sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']); // node names the EKU "keyUsage"
  assert.equal(leaf.ca, false);
  assert.equal(new Date(leaf.validFrom).getTime(), now.getTime() - 60_000);
  assert.equal(new Date(leaf.validTo).getTime(), now.getTime() + 3600_000);
  assert.equal(new X509Certificate(rootPem).fingerprint256, new X509Certificate(ca.trustBundlePem()).fingerprint256);
  const parsed = new x509.X509Certificate(leafPem);
  const keyUsage = parsed.getExtension(x509.KeyUsagesExtension)!;
  assert.equal(keyUsage.usages, x509.KeyUsageFlags.digitalSignature);
  assert.equal(keyUsage.critical, true);
  assert.equal(parsed.getExtension(x509.SubjectAlternativeNameExtension)!.critical, true);
  assert.notEqual(new X509Certificate((await issue(ca)).chain[0]!).serialNumber, leaf.serialNumber);
  assert.equal(new Date(new X509Certificate((await issue(ca)).chain[0]!).validTo).getTime(), now.getTime() + 86_400_000, 'default 24 h');
});

test('the chain verifies against the bundle; a leaf from another CA does not', async (t) => {
  const ca = await openCa({ dataDir: dataDir(t) });
  const other = await openCa({ dataDir: dataDir(t) });
  const ours = await issue(ca);
  const theirs = await issue(other);
  const root = new X509Certificate(ca.trustBundlePem());
  assert.ok(new X509Certificate(ours.chain[0]!).verify(root.publicKey));
  assert.ok(new X509Certificate(ours.chain[0]!).checkIssued(root));
  assert.equal(new X509Certificate(theirs.chain[0]!).verify(root.publicKey), false);
  assert.equal(await tlsVerdict(ours, ca.trustBundlePem()), 'OK');
  assert.equal(await tlsVerdict(theirs, ca.trustBundlePem()), 'SELF_SIGNED_CERT_IN_CHAIN');
});

test('an expired leaf is refused by TLS even though its signature is good', async (t) => {
  const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000);
  const ca = await openCa({ dataDir: dataDir(t), clock: () => twoDaysAgo });
  const expired = await issue(ca, WEB, 3600);
  const leaf = new X509Certificate(expired.chain[0]!);
  assert.ok(new Date(leaf.validTo) < new Date());
  assert.ok(leaf.verify(new X509Certificate(ca.trustBundlePem()).publicKey), 'X509Certificate.verify checks the signature only');
  assert.equal(await tlsVerdict(expired, ca.trustBundlePem()), 'CERT_HAS_EXPIRED');
});

test('signWorkloadCsr refuses what it must not sign, saying why', async (t) => {
  const ca = await openCa({ dataDir: dataDir(t) });
  const { csrPem } = await generateWorkloadKey(WEB);
  const der = Buffer.from(x509.PemConverter.decode(csrPem)[0]!);
  der[der.length - 1]! ^= 0x01;
  const tampered = x509.PemConverter.encode(der, 'CERTIFICATE REQUEST');
  const cases: Array<[string, Promise<unknown>, RegExp]> = [
    ['SAN differs from identity', ca.signWorkloadCsr(csrPem, { identity: 'spiffe://cluster.local/ns/shop/sa/db' }), /CSR asks for spiffe:\/\/cluster.local\/ns\/shop\/sa\/web but the certificate would be for .*sa\/db/],
    ['signature does not verify', ca.signWorkloadCsr(tampered, { identity: WEB }), /signature does not verify/],
    ['not a CSR', ca.signWorkloadCsr('hello', { identity: WEB }), /not a PEM-encoded PKCS#10/],
    ['other trust domain', ca.signWorkloadCsr(csrPem, { identity: 'spiffe://evil.example/ns/shop/sa/web' }), /outside this CA's trust domain cluster.local/],
    ['identity not a workload SPIFFE ID', ca.signWorkloadCsr(csrPem, { identity: 'spiffe://cluster.local/web' }), /path must be/],
    ['zero lifetime', ca.signWorkloadCsr(csrPem, { identity: WEB, ttlSeconds: 0 }), /positive number of seconds/],
  ];
  for (const [name, pending, reason] of cases) {
    const result = (await pending) as { ok: boolean; error?: string };
    assert.equal(result.ok, false, name);
    assert.match(result.error!, reason, name);
  }
});

test('an RSA workload key gets keyEncipherment as well', async (t) => {
  const ca = await openCa({ dataDir: dataDir(t) });
  const algorithm = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) };
  const keys = await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: algorithm, extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: WEB }])] });
  const chain = await ca.signWorkloadCsr(csr.toString('pem'), { identity: WEB });
  assert.ok(chain.ok);
  const usages = new x509.X509Certificate(chain.value[0]!).getExtension(x509.KeyUsagesExtension)!.usages;
  assert.equal(usages, x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment);
});

test('rotation: a second root signs while the first stays trusted, across a reload, until retired', async (t) => {
  const dir = dataDir(t);
  const ca = await openCa({ dataDir: dir });
  const oldLeaf = await issue(ca);
  const oldRoot = new X509Certificate(ca.trustBundlePem());
  assert.deepEqual(await ca.addRoot(), { ok: true, value: undefined });
  const bundle = x509.PemConverter.decode(ca.trustBundlePem()).map((der) => new X509Certificate(Buffer.from(der)));
  assert.equal(bundle.length, 2);
  assert.equal(bundle[1]!.fingerprint256, oldRoot.fingerprint256);
  const newLeaf = await issue(ca);
  assert.ok(new X509Certificate(newLeaf.chain[0]!).checkIssued(bundle[0]!));
  assert.equal(new X509Certificate(newLeaf.chain[1]!).fingerprint256, bundle[0]!.fingerprint256);
  assert.equal(await tlsVerdict(oldLeaf, ca.trustBundlePem()), 'OK');
  assert.equal(await tlsVerdict(newLeaf, ca.trustBundlePem()), 'OK');

  const reloaded = await openCa({ dataDir: dir });
  assert.equal(reloaded.trustBundlePem(), ca.trustBundlePem());
  assert.ok(new X509Certificate((await issue(reloaded)).chain[0]!).checkIssued(bundle[0]!));

  reloaded.retireOlderRoots();
  assert.deepEqual(x509.PemConverter.decode(readFileSync(join(dir, 'ca.pem'), 'utf8')).map((der) => new X509Certificate(Buffer.from(der)).fingerprint256), [bundle[0]!.fingerprint256]);
  assert.equal(await tlsVerdict(oldLeaf, reloaded.trustBundlePem()), 'SELF_SIGNED_CERT_IN_CHAIN');
  assert.equal(await tlsVerdict(newLeaf, reloaded.trustBundlePem()), 'OK');
});

async function operatorRoot(dir: string, lifetimeMs: number, ca = true): Promise<{ certPath: string; keyPath: string; cert: x509.X509Certificate }> {
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=Operator root', keys, signingAlgorithm: ECDSA_P256,
    notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + lifetimeMs),
    extensions: [new x509.BasicConstraintsExtension(ca, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
  });
  const certPath = join(dir, 'operator-root.pem');
  const keyPath = join(dir, 'operator-root-key.pem');
  writeFileSync(certPath, cert.toString('pem'));
  writeFileSync(keyPath, await privateKeyPem(keys.privateKey));
  return { certPath, keyPath, cert };
}

test('an operator-provided root is used instead of a generated one, and no leaf outlives it', async (t) => {
  const dir = dataDir(t);
  const root = await operatorRoot(dir, 3600_000);
  const ca = await openCa({ dataDir: join(dir, 'data'), operatorRoot: root });
  assert.equal(readFileSync(join(dir, 'data', 'ca.pem'), 'utf8'), root.cert.toString('pem') + '\n');
  assert.equal(existsSync(join(dir, 'data', 'ca-key.pem')), false);
  const leaf = await issue(ca, WEB, 86_400);
  assert.equal(new X509Certificate(leaf.chain[0]!).validTo, new X509Certificate(root.cert.toString('pem')).validTo);
  assert.equal(await tlsVerdict(leaf, ca.trustBundlePem()), 'OK');
  assert.match((await ca.addRoot() as { error: string }).error, /rotate by replacing them/);
});

test('an operator root that is not a CA, or whose key does not match, is refused with the reason', async (t) => {
  const dir = dataDir(t);
  const open = (root: { certPath: string; keyPath: string }) => CertificateAuthority.loadOrCreate({ dataDir: join(dir, 'data'), trustDomain: TD, operatorRoot: root });
  assert.match((await open(await operatorRoot(dir, 3600_000, false)) as { error: string }).error, /not a CA/);
  const root = await operatorRoot(dir, 3600_000);
  assert.ok((await open(root)).ok);
  writeFileSync(root.keyPath, await privateKeyPem((await generateKeyPair()).privateKey));
  assert.match((await open(root) as { error: string }).error, /private key does not belong to the root certificate/);
});

test('a data directory with a key but no ca.pem is an error, never a silent new root', async (t) => {
  const dir = dataDir(t);
  await openCa({ dataDir: dir });
  rmSync(join(dir, 'ca.pem'));
  const reopened = await CertificateAuthority.loadOrCreate({ dataDir: dir, trustDomain: TD });
  assert.match((reopened as { error: string }).error, /ca-key.pem exists but .*ca.pem does not: restore/);
});

test('the serving certificate names the DNS names and IPs it was asked for, for server auth only', async (t) => {
  const ca = await openCa({ dataDir: dataDir(t) });
  const serving = await ca.issueServingCertificate({ dnsNames: ['weft-controlplane.weft-system.svc'], ipAddresses: ['127.0.0.1'], ttlSeconds: 3600 });
  const leaf = new X509Certificate(serving.certChainPem);
  assert.equal(leaf.subjectAltName, 'DNS:weft-controlplane.weft-system.svc, IP Address:127.0.0.1');
  assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1']);
  assert.equal(leaf.checkHost('weft-controlplane.weft-system.svc'), 'weft-controlplane.weft-system.svc');
  assert.equal(leaf.checkIP('127.0.0.1'), '127.0.0.1');
});
