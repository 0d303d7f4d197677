import type { PeerCertificate } from 'node:tls';
import { err, ok, type Result } from '../core/result';
import { parseSpiffeId } from '../identity/spiffe';

/** The SPIFFE ID a verified peer certificate carries: exactly one URI SAN, a valid workload ID. */
export function spiffeIdOf(cert: PeerCertificate | undefined): Result<string, string> {
  if (!cert || Object.keys(cert).length === 0) return err('the peer presented no certificate');
  const uris = (cert.subjectaltname ?? '').split(', ').filter((san) => san.startsWith('URI:')).map((san) => san.slice(4));
  if (uris.length !== 1) return err(`the peer certificate has ${uris.length} URI SANs; a workload certificate has exactly one SPIFFE ID`);
  const parsed = parseSpiffeId(uris[0]!);
  return parsed.ok ? ok(uris[0]!) : parsed;
}
