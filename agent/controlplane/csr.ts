import { createPublicKey } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { err, ok, type Result } from '../core/result';

/** A PKCS#10 request whose signature has been checked, with the URI SANs it asks for. */
export interface WorkloadCsr {
  publicKey: x509.PublicKey;
  uris: string[];
}

function keyProblem(publicKey: x509.PublicKey): string | undefined {
  const key = createPublicKey({ key: Buffer.from(publicKey.rawData), format: 'der', type: 'spki' });
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec' && (details.namedCurve === 'prime256v1' || details.namedCurve === 'secp384r1')) return undefined;
  if (key.asymmetricKeyType === 'rsa' && (details.modulusLength ?? 0) >= 2048) return undefined;
  return `CSR key ${key.asymmetricKeyType} ${details.namedCurve ?? details.modulusLength ?? ''} is not accepted: use ECDSA P-256/P-384 or RSA >= 2048 bits`;
}

export async function readCsr(pem: string): Promise<Result<WorkloadCsr, string>> {
  let request: x509.Pkcs10CertificateRequest;
  try {
    request = new x509.Pkcs10CertificateRequest(pem);
  } catch (error) {
    return err(`CSR is not a PEM-encoded PKCS#10 certificate request (${(error as Error).message})`);
  }
  if (!(await request.verify().catch(() => false))) {
    return err('CSR signature does not verify: it was not signed by the key it carries');
  }
  const problem = keyProblem(request.publicKey);
  if (problem !== undefined) return err(problem);
  const uris = [...request.extensions]
    .filter((extension): extension is x509.SubjectAlternativeNameExtension => extension instanceof x509.SubjectAlternativeNameExtension)
    .flatMap((san) => san.names.items.filter((name) => name.type === 'url').map((name) => name.value));
  return ok({ publicKey: request.publicKey, uris });
}
