import { createPrivateKey, createPublicKey, webcrypto, type KeyObject } from 'node:crypto';
import { err, ok, type Result } from '../core/result';

/** A CA private key in the form @peculiar/x509 signs with, and the algorithm that goes with it. */
export interface Signer {
  key: webcrypto.CryptoKey;
  algorithm: webcrypto.EcKeyImportParams & { hash: string } | webcrypto.RsaHashedImportParams;
  /** DER SubjectPublicKeyInfo of the matching public key, to check it against a certificate. */
  spki: Buffer;
}

function algorithmFor(key: KeyObject): Result<Signer['algorithm'], string> {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec' && details.namedCurve === 'prime256v1') return ok({ name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' });
  if (key.asymmetricKeyType === 'ec' && details.namedCurve === 'secp384r1') return ok({ name: 'ECDSA', namedCurve: 'P-384', hash: 'SHA-384' });
  if (key.asymmetricKeyType === 'rsa' && (details.modulusLength ?? 0) >= 2048) return ok({ name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' });
  return err(`unsupported CA key (${key.asymmetricKeyType} ${details.namedCurve ?? details.modulusLength ?? ''}): use ECDSA P-256/P-384 or RSA >= 2048 bits`);
}

/** Reads a PEM private key (PKCS#8, SEC1 or PKCS#1) for signing certificates. */
export async function importSigner(pem: string): Promise<Result<Signer, string>> {
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey(pem);
  } catch (error) {
    return err(`not a PEM private key: ${(error as Error).message}`);
  }
  const algorithm = algorithmFor(keyObject);
  if (!algorithm.ok) return algorithm;
  const der = keyObject.export({ type: 'pkcs8', format: 'der' });
  const key = await webcrypto.subtle.importKey('pkcs8', der, algorithm.value, false, ['sign']);
  const spki = createPublicKey(keyObject).export({ type: 'spki', format: 'der' });
  return ok({ key, algorithm: algorithm.value, spki });
}
