import { createPublicKey, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import type { Signer } from './ca-signer';

/** How certificates are built: the root's shape and a leaf's shape, nothing about policy. */

/** Issued leaves start a minute in the past so that small clock skew between nodes does not reject them. */
const BACKDATE_MS = 60_000;
const ROOT_LIFETIME_MS = 10 * 365 * 86_400_000;

export interface Issuer {
  cert: x509.X509Certificate;
  signer: Signer;
}

export async function createRootCertificate(trustDomain: string, keys: webcrypto.CryptoKeyPair, signer: Signer, now: Date): Promise<x509.X509Certificate> {
  return x509.X509CertificateGenerator.createSelfSigned({
    name: [{ O: [trustDomain] }, { CN: [`Weft root CA ${now.toISOString()}`] }],
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + ROOT_LIFETIME_MS),
    keys,
    signingAlgorithm: signer.algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
}

export interface LeafRequest {
  publicKey: x509.PublicKey;
  /** Subject alternative names; the subject itself stays empty, so the SAN extension is critical. */
  sans: x509.JsonGeneralName[];
  extendedKeyUsages: x509.ExtendedKeyUsage[];
  ttlSeconds: number;
}

/** RSA keys may be used for key transport; ECDSA keys only sign (TLS 1.3 uses signatures either way). */
function keyUsageFor(publicKey: x509.PublicKey): x509.KeyUsageFlags {
  const type = createPublicKey({ key: Buffer.from(publicKey.rawData), format: 'der', type: 'spki' }).asymmetricKeyType;
  return type === 'rsa'
    ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment
    : x509.KeyUsageFlags.digitalSignature;
}

async function authorityKeyId(issuer: x509.X509Certificate): Promise<string> {
  const own = issuer.getExtension(x509.SubjectKeyIdentifierExtension);
  return own?.keyId ?? (await x509.SubjectKeyIdentifierExtension.create(issuer.publicKey)).keyId;
}

/** A leaf valid from now-60s until now+ttl, cut short at the issuer's own expiry; random serial. */
export async function issueLeafCertificate(issuer: Issuer, request: LeafRequest, now: Date): Promise<x509.X509Certificate> {
  const notAfter = Math.min(now.getTime() + request.ttlSeconds * 1000, issuer.cert.notAfter.getTime());
  return x509.X509CertificateGenerator.create({
    issuer: issuer.cert.subjectName,
    subject: '',
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(notAfter),
    publicKey: request.publicKey,
    signingKey: issuer.signer.key,
    signingAlgorithm: issuer.signer.algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(keyUsageFor(request.publicKey), true),
      new x509.ExtendedKeyUsageExtension(request.extendedKeyUsages),
      new x509.SubjectAlternativeNameExtension(request.sans, true),
      new x509.AuthorityKeyIdentifierExtension(await authorityKeyId(issuer.cert)),
    ],
  });
}
