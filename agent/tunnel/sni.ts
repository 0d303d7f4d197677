import { createHash } from 'node:crypto';

/**
 * The TLS server name a source proxy sends to say which destination workload it expects the
 * destination proxy to answer as. SPIFFE IDs are not host names, so the name is a digest of the
 * identity: a DNS-safe label the destination maps back among its own local identities.
 */
export function sniFor(identity: string): string {
  return `${createHash('sha256').update(identity).digest('hex').slice(0, 40)}.hbone.weft`;
}
