import { KeyObject, webcrypto } from 'node:crypto';
import { buildCsrPem } from './csr-der';

/**
 * Workload keys are ECDSA P-256 (docs/x509.md has the measurements behind that choice), made
 * with Node's WebCrypto; the private key never leaves the agent, only the CSR does. Nothing here
 * loads @peculiar/x509: the agent imports this module and the CSR is encoded by csr-der.ts.
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

/** PKCS#8 PEM, 64-column lines, no trailing newline (byte for byte what x509.PemConverter wrote). */
export async function privateKeyPem(key: webcrypto.CryptoKey): Promise<string> {
  return (KeyObject.from(key).export({ type: 'pkcs8', format: 'pem' }) as string).trimEnd();
}

export async function generateWorkloadKey(identity: string): Promise<WorkloadKey> {
  const keys = await generateKeyPair();
  return { keyPem: await privateKeyPem(keys.privateKey), csrPem: await buildCsrPem(keys, identity) };
}
