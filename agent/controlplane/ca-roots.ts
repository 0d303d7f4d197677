import { readFileSync } from 'node:fs';
import * as x509 from '@peculiar/x509';
import { err, ok, type Result } from '../core/result';
import { operationalLogger } from '../core/log';
import { generateKeyPair, privateKeyPem } from '../identity/keys';
import { createRootCertificate, type Issuer } from './ca-certs';
import { importSigner } from './ca-signer';
import type { RootStore, StoredRoot } from './ca-store';

/** Where the CA's roots come from: a root store (created on first start; ca-store.ts) or the operator's files. */

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

/** How often first start re-reads after losing the race to create the root, before giving up. */
const CREATE_ATTEMPTS = 3;

/**
 * The root in `store`, or on first start (the store holds neither key nor bundle) a new one. When
 * another control plane stores its root first, that root is used: a mesh never gets two.
 */
export async function loadOrCreateStoredRoot(store: RootStore, options: Omit<RootSource, 'dataDir'>): Promise<Result<LoadedRoots, string>> {
  const now = options.clock?.() ?? new Date();
  for (let attempt = 1; ; attempt++) {
    const stored = await store.read();
    if (!stored.ok) return stored;
    const { keyPem, bundlePem } = stored.value;
    if (keyPem !== undefined || bundlePem !== undefined) {
      if (attempt > 1) log.info({ store: store.location }, 'another control plane created the root first; using its root');
      return checkStoredRoot(store, { keyPem, bundlePem }, now);
    }
    if (attempt > CREATE_ATTEMPTS) return err(`${store.location} was emptied or recreated ${CREATE_ATTEMPTS} times while this control plane tried to create the root: check what else writes it`);
    const root = await generateRoot(options.trustDomain, now);
    if (!root.ok) return root;
    const created = await store.create({ keyPem: root.value.keyPem, bundlePem: pemOf(root.value.issuer.cert) });
    if (!created.ok) return created;
    if (created.value) {
      log.info({ store: store.location, root: root.value.issuer.cert.subject }, 'created a new root CA; agents must trust the new ca.pem');
      return ok({ signing: root.value.issuer, roots: [root.value.issuer.cert] });
    }
  }
}

/** The key must match a certificate in the bundle, and that certificate be a usable signing root. */
async function checkStoredRoot(store: RootStore, { keyPem, bundlePem }: StoredRoot, now: Date): Promise<Result<LoadedRoots, string>> {
  if (keyPem === undefined) return err(store.halfPresent('key'));
  if (bundlePem === undefined) return err(store.halfPresent('bundle'));
  const certs = parseCertificates(bundlePem, store.bundleName);
  if (!certs.ok) return certs;
  const signer = await importSigner(keyPem);
  if (!signer.ok) return err(`${store.keyName}: ${signer.error}`);
  const signingCert = certs.value.find((cert) => Buffer.from(cert.publicKey.rawData).equals(signer.value.spki));
  if (signingCert === undefined) return err(`no certificate in ${store.bundleName} matches the key in ${store.keyName}: restore the matching pair`);
  const signing = await checkSigningRoot({ cert: signingCert, signer: signer.value }, now, store.bundleName);
  if (!signing.ok) return signing;
  const others = unexpired(certs.value.filter((cert) => cert !== signingCert), now, store.bundleName);
  return ok({ signing: signing.value, roots: [signingCert, ...others] });
}
