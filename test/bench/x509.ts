/**
 * RSA-2048 via node-forge vs ECDSA P-256 via @peculiar/x509 (Node's WebCrypto), measured in one
 * run: CSR signings/s by a CA, mutual TLS 1.3 handshakes/s on loopback, key generations/s.
 * The decision it informs is written down in docs/x509.md.
 */
import * as tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import forge from 'node-forge';
import * as x509 from '@peculiar/x509';
import { CertificateAuthority } from '../../agent/controlplane/ca';
import { ECDSA_P256, generateKeyPair, generateWorkloadKey } from '../../agent/identity/keys';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';

const IDENTITY = 'spiffe://cluster.local/ns/bench/sa/client';
const SIGNINGS = 400;
const HANDSHAKES = 2000;
const RSA_KEYS = 40;
const EC_KEYS = 2000;

/** What one side of the comparison provides: a CA that signs CSRs and PEMs for a TLS pair. */
interface Contender {
  name: string;
  csrPem: string;
  sign(csrPem: string): Promise<string>;
  generateKey(): Promise<void>;
  /** Keys to generate when measuring: RSA generation is slow enough that a few dozen suffice. */
  keyCount: number;
  tlsMaterial(): Promise<{ ca: string; server: { key: string; cert: string }; client: { key: string; cert: string } }>;
}

async function forgeContender(): Promise<Contender> {
  const pki = forge.pki;
  const rootKeys = pki.rsa.generateKeyPair({ bits: 2048 });
  const root = pki.createCertificate();
  root.publicKey = rootKeys.publicKey;
  root.serialNumber = '01';
  root.validity.notBefore = new Date(Date.now() - 60_000);
  root.validity.notAfter = new Date(Date.now() + 365 * 86_400_000);
  root.setSubject([{ name: 'commonName', value: 'bench RSA root' }]);
  root.setIssuer(root.subject.attributes);
  root.setExtensions([{ name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', keyCertSign: true, critical: true }]);
  root.sign(rootKeys.privateKey, forge.md.sha256.create());

  const newCsr = (keys: forge.pki.rsa.KeyPair, identity: string): string => {
    const csr = pki.createCertificationRequest();
    csr.publicKey = keys.publicKey;
    csr.setAttributes([{ name: 'extensionRequest', extensions: [{ name: 'subjectAltName', altNames: [{ type: 6, value: identity }] }] }]);
    csr.sign(keys.privateKey, forge.md.sha256.create());
    return pki.certificationRequestToPem(csr);
  };
  const sign = async (csrPem: string): Promise<string> => {
    const csr = pki.certificationRequestFromPem(csrPem);
    if (!csr.verify()) throw new Error('CSR signature does not verify');
    const cert = pki.createCertificate();
    cert.publicKey = csr.publicKey as forge.pki.PublicKey;
    cert.serialNumber = '01' + forge.util.bytesToHex(forge.random.getBytesSync(15));
    cert.validity.notBefore = new Date(Date.now() - 60_000);
    cert.validity.notAfter = new Date(Date.now() + 86_400_000);
    cert.setIssuer(root.subject.attributes);
    cert.setExtensions([
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 6, value: IDENTITY }], critical: true },
    ]);
    cert.sign(rootKeys.privateKey, forge.md.sha256.create());
    return pki.certificateToPem(cert);
  };
  const leaf = async (identity: string) => {
    const keys = pki.rsa.generateKeyPair({ bits: 2048 });
    return { key: pki.privateKeyToPem(keys.privateKey), cert: await sign(newCsr(keys, identity)) };
  };
  return {
    name: 'RSA-2048 (node-forge)',
    csrPem: newCsr(pki.rsa.generateKeyPair({ bits: 2048 }), IDENTITY),
    sign,
    generateKey: async () => void pki.rsa.generateKeyPair({ bits: 2048 }),
    keyCount: RSA_KEYS,
    tlsMaterial: async () => ({ ca: pki.certificateToPem(root), server: await leaf(IDENTITY), client: await leaf(IDENTITY) }),
  };
}

async function peculiarContender(): Promise<Contender> {
  const rootKeys = await generateKeyPair();
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: 'CN=bench ECDSA root',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 365 * 86_400_000),
    keys: rootKeys,
    signingAlgorithm: ECDSA_P256,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
  });
  const sign = async (csrPem: string): Promise<string> => {
    const csr = new x509.Pkcs10CertificateRequest(csrPem);
    if (!(await csr.verify())) throw new Error('CSR signature does not verify');
    const cert = await x509.X509CertificateGenerator.create({
      issuer: root.subject,
      subject: '',
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 86_400_000),
      publicKey: csr.publicKey,
      signingKey: rootKeys.privateKey,
      signingAlgorithm: ECDSA_P256,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: IDENTITY }], true),
      ],
    });
    return cert.toString('pem');
  };
  const leaf = async (identity: string) => {
    const key = await generateWorkloadKey(identity);
    return { key: key.keyPem, cert: await sign(key.csrPem) };
  };
  return {
    name: 'ECDSA P-256 (@peculiar/x509)',
    csrPem: (await generateWorkloadKey(IDENTITY)).csrPem,
    sign,
    generateKey: async () => void (await generateKeyPair()),
    keyCount: EC_KEYS,
    tlsMaterial: async () => ({ ca: root.toString('pem'), server: await leaf(IDENTITY), client: await leaf(IDENTITY) }),
  };
}

async function ratePerSecond(count: number, op: () => Promise<void>): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < count; i++) await op();
  return count / (Number(process.hrtime.bigint() - start) / 1e9);
}

/** Full mutual-TLS 1.3 handshakes, one after the other; done when the server has verified the client. */
async function handshakesPerSecond(material: Awaited<ReturnType<Contender['tlsMaterial']>>): Promise<number> {
  const server = tls.createServer({
    ...material.server, ca: material.ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3',
  }, (socket) => socket.end('1'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const once = () => new Promise<void>((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1', port, ...material.client, ca: material.ca, minVersion: 'TLSv1.3',
      checkServerIdentity: () => undefined, // workload certs carry a URI SAN, no host name
    });
    socket.once('data', () => { socket.destroy(); resolve(); });
    socket.once('error', reject);
  });
  try {
    return await ratePerSecond(HANDSHAKES, once);
  } finally {
    server.close();
  }
}

/** The shipped CA's whole signing path (SPIFFE and SAN checks included): the rate the control plane has. */
async function shippedCaSigningsPerSecond(): Promise<number> {
  const dataDir = mkdtempSync(join(tmpdir(), 'weft-bench-ca-'));
  try {
    const ca = await CertificateAuthority.loadOrCreate({ dataDir, trustDomain: 'cluster.local' });
    if (!ca.ok) throw new Error(ca.error);
    const { csrPem } = await generateWorkloadKey(IDENTITY);
    return await ratePerSecond(SIGNINGS, async () => {
      const issued = await ca.value.signWorkloadCsr(csrPem, { identity: IDENTITY });
      if (!issued.ok) throw new Error(issued.error);
    });
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

interface Row { what: string; rsa: number; ecdsa: number }

export async function runX509Bench(): Promise<Row[]> {
  const rsa = await forgeContender();
  const ec = await peculiarContender();
  const rows: Row[] = [];
  const measure = async (what: string, run: (c: Contender) => Promise<number>) => {
    rows.push({ what, rsa: await run(rsa), ecdsa: await run(ec) });
  };
  await measure('CSR signings/s (parse, verify, build+sign leaf)', (c) => ratePerSecond(SIGNINGS, async () => void (await c.sign(c.csrPem))));
  await measure(`mTLS 1.3 handshakes/s (${HANDSHAKES}, sequential)`, async (c) => handshakesPerSecond(await c.tlsMaterial()));
  await measure('key generations/s', (c) => ratePerSecond(c.keyCount, c.generateKey));
  return rows;
}

async function main(): Promise<void> {
  console.log(`x509 bench on node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'unknown cpu'}`);
  for (const row of await runX509Bench()) {
    console.log(`${row.what.padEnd(52)} RSA ${row.rsa.toFixed(1).padStart(9)}  ECDSA ${row.ecdsa.toFixed(1).padStart(9)}  ECDSA/RSA ${(row.ecdsa / row.rsa).toFixed(2)}x`);
  }
  console.log(`shipped CA (agent/controlplane/ca.ts) signings/s: ${(await shippedCaSigningsPerSecond()).toFixed(1)}`);
}

if (require.main === module) {
  main().catch((error) => { console.error(error); process.exitCode = 1; });
}
