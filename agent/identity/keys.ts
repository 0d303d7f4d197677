import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

/**
 * Workload keys are ECDSA P-256 (docs/x509.md has the measurements behind that choice), made
 * with Node's WebCrypto; the private key never leaves the agent, only the CSR does.
 */
export const ECDSA_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export interface WorkloadKey {
  /** PKCS#8 PEM, as node:tls takes it. */
  keyPem: string;
  /** PKCS#10 PEM asking for `identity` as its only URI SAN. */
  csrPem: string;
}

export async function generateKeyPair(): Promise<webcrypto.CryptoKeyPair> {
  return webcrypto.subtle.generateKey(ECDSA_P256, true, ['sign', 'verify']);
}

export async function privateKeyPem(key: webcrypto.CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

export async function generateWorkloadKey(identity: string): Promise<WorkloadKey> {
  const keys = await generateKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: ECDSA_P256,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: identity }], true)],
  });
  return { keyPem: await privateKeyPem(keys.privateKey), csrPem: csr.toString('pem') };
}
