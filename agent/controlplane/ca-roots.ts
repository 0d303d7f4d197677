import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { err, ok, type Result } from '../core/result';
import { operationalLogger } from '../core/log';
import { generateKeyPair, privateKeyPem } from '../identity/keys';
import { createRootCertificate, type Issuer } from './ca-certs';
import { importSigner } from './ca-signer';
import { readIfExists, writeFileAtomic } from './data-dir';

/** Where the CA's roots come from: the data directory (created on first start) or the operator's files. */

const log = operationalLogger('ca');

/** One certificate as PEM, newline-terminated so that PEMs concatenate into a valid bundle. */
export function pemOf(cert: x509.X509Certificate): string {
  return cert.toString('pem') + '\n';
}

export function pemsOf(certs: x509.X509Certificate[]): string {
  return certs.map(pemOf).join('');
}

function parseCertificates(pem: string, source: string): Result<x509.X509Certificate[], string> {
  try {
    const certs = x509.PemConverter.decode(pem).map((der) => new x509.X509Certificate(der));
    return certs.length > 0 ? ok(certs) : err(`${source} holds no certificate`);
  } catch (error) {
    return err(`${source} is not a PEM certificate bundle (${(error as Error).message})`);
  }
}

/** A root is usable as the signing root when it is a self-signed, unexpired CA whose key we hold. */
async function checkSigningRoot(issuer: Issuer, now: Date, source: string): Promise<Result<Issuer, string>> {
  const { cert } = issuer;
  if (!Buffer.from(cert.publicKey.rawData).equals(issuer.signer.spki)) return err(`${source}: the private key does not belong to the root certificate`);
  if (cert.getExtension(x509.BasicConstraintsExtension)?.ca !== true) return err(`${source}: the root certificate is not a CA (basicConstraints CA:TRUE missing)`);
  if (!(await cert.isSelfSigned())) return err(`${source}: the certificate is not self-signed; give a root, not an intermediate`);
  if (cert.notAfter <= now) return err(`${source}: the root expired at ${cert.notAfter.toISOString()}`);
  return ok(issuer);
}

export interface RootSource {
  dataDir: string;
  trustDomain: string;
  clock?: () => Date;
}

export interface LoadedRoots {
  signing: Issuer;
  roots: x509.X509Certificate[];
}

export async function readIssuer(certPem: string, keyPem: string, source: string, now: Date): Promise<Result<{ issuer: Issuer; keyPem: string; rest: x509.X509Certificate[] }, string>> {
  const certs = parseCertificates(certPem, source);
  if (!certs.ok) return certs;
  const signer = await importSigner(keyPem);
  if (!signer.ok) return err(`${source}: ${signer.error}`);
  const [cert, ...rest] = certs.value as [x509.X509Certificate, ...x509.X509Certificate[]];
  const issuer = await checkSigningRoot({ cert, signer: signer.value }, now, source);
  return issuer.ok ? ok({ issuer: issuer.value, keyPem, rest }) : issuer;
}

export async function generateRoot(trustDomain: string, now: Date): Promise<Result<{ issuer: Issuer; keyPem: string }, string>> {
  const keys = await generateKeyPair();
  const keyPem = await privateKeyPem(keys.privateKey);
  const signer = await importSigner(keyPem);
  if (!signer.ok) return signer;
  const cert = await createRootCertificate(trustDomain, keys, signer.value, now);
  return ok({ issuer: { cert, signer: signer.value }, keyPem });
}

function unexpired(certs: x509.X509Certificate[], now: Date, source: string): x509.X509Certificate[] {
  return certs.filter((cert) => {
    if (cert.notAfter > now) return true;
    log.warn({ root: cert.subject, notAfter: cert.notAfter.toISOString(), source }, 'dropping an expired root from the trust bundle');
    return false;
  });
}

export async function loadOperatorRoot(options: RootSource & { operatorRoot: { certPath: string; keyPath: string } }): Promise<Result<LoadedRoots, string>> {
  const { certPath, keyPath } = options.operatorRoot;
  let certPem: string;
  let keyPem: string;
  try {
    certPem = readFileSync(certPath, 'utf8');
    keyPem = readFileSync(keyPath, 'utf8');
  } catch (error) {
    return err(`cannot read the operator-provided root: ${(error as Error).message}`);
  }
  const now = options.clock?.() ?? new Date();
  const read = await readIssuer(certPem, keyPem, `operator root ${certPath} / ${keyPath}`, now);
  if (!read.ok) return read;
  return ok({ signing: read.value.issuer, roots: [read.value.issuer.cert, ...unexpired(read.value.rest, now, certPath)] });
}

export async function loadOrCreateDataDirRoot(options: RootSource): Promise<Result<LoadedRoots, string>> {
  const keyPath = join(options.dataDir, 'ca-key.pem');
  const bundlePath = join(options.dataDir, 'ca.pem');
  const keyPem = readIfExists(keyPath);
  const bundlePem = readIfExists(bundlePath);
  const now = options.clock?.() ?? new Date();
  if (keyPem === undefined && bundlePem === undefined) {
    const root = await generateRoot(options.trustDomain, now);
    if (!root.ok) return root;
    writeFileAtomic(keyPath, root.value.keyPem, 0o600);
    log.info({ dataDir: options.dataDir, root: root.value.issuer.cert.subject }, 'created a new root CA; agents must trust the new ca.pem');
    return ok({ signing: root.value.issuer, roots: [root.value.issuer.cert] });
  }
  if (keyPem === undefined || bundlePem === undefined) {
    const [present, missing] = keyPem === undefined ? [bundlePath, keyPath] : [keyPath, bundlePath];
    return err(`${present} exists but ${missing} does not: restore ${missing} from a backup, or remove both to create a new root (then every agent needs the new ca.pem)`);
  }
  const certs = parseCertificates(bundlePem, bundlePath);
  if (!certs.ok) return certs;
  const signer = await importSigner(keyPem);
  if (!signer.ok) return err(`${keyPath}: ${signer.error}`);
  const signingCert = certs.value.find((cert) => Buffer.from(cert.publicKey.rawData).equals(signer.value.spki));
  if (signingCert === undefined) return err(`no certificate in ${bundlePath} matches the key in ${keyPath}: restore the matching pair`);
  const signing = await checkSigningRoot({ cert: signingCert, signer: signer.value }, now, bundlePath);
  if (!signing.ok) return signing;
  const others = unexpired(certs.value.filter((cert) => cert !== signingCert), now, bundlePath);
  return ok({ signing: signing.value, roots: [signingCert, ...others] });
}
