import { createHash } from 'node:crypto';

/** Names kept (identities a node's sources talk to); past it the cache starts over. */
const MAX_CACHED = 4096;
const cache = new Map<string, string>();

/**
 * The TLS server name a source proxy sends to say which destination workload it expects the
 * destination proxy to answer as. SPIFFE IDs are not host names, so the name is a digest of the
 * identity: a DNS-safe label the destination maps back among its own local identities.
 *
 * Asked for every tunnelled connection (it picks the pooled session), so names are kept: a
 * SHA-256 per connection was ~0.6 % of the source agent's CPU under a new connection per request
 * (docs/new-connections.md).
 */
export function sniFor(identity: string): string {
  let name = cache.get(identity);
  if (name === undefined) {
    if (cache.size >= MAX_CACHED) cache.clear();
    name = `${createHash('sha256').update(identity).digest('hex').slice(0, 40)}.hbone.weft`;
    cache.set(identity, name);
  }
  return name;
}
