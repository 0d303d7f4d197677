import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { join } from 'node:path';
import type { Metadata } from '@grpc/grpc-js';
import { err, ok, type Result } from '../core/result';
import { bearerToken, type Authenticator, type Caller } from './authenticator';
import { readIfExists, writeFileAtomic } from './data-dir';

/** The token agents outside Kubernetes present: `<dataDir>/bootstrap.token`, created 0600 on first start. */
export function loadOrCreateBootstrapToken(dataDir: string): string {
  const path = join(dataDir, 'bootstrap.token');
  const existing = readIfExists(path)?.trim();
  if (existing) return existing;
  const token = randomBytes(32).toString('hex');
  writeFileAtomic(path, token + '\n', 0o600);
  return token;
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/**
 * Local-mode authentication: the bearer token must equal the data directory's bootstrap token.
 * The token is shared by every agent, so it proves only "an agent of this mesh": the node the
 * caller names in `weft-node` metadata is trusted as claimed. Anyone holding the token can ask for
 * the identities of any node's pods; in Kubernetes use TokenReview, where the node is attested.
 */
export class BootstrapTokenAuthenticator implements Authenticator {
  private readonly expected: Buffer;

  constructor(token: string) {
    this.expected = digest(token);
  }

  async authenticate(metadata: Metadata): Promise<Result<Caller, string>> {
    const token = bearerToken(metadata);
    if (!token.ok) return err(`${token.error}: present the control plane's bootstrap.token (--token-file)`);
    if (!timingSafeEqual(digest(token.value), this.expected)) {
      return err('the bootstrap token does not match: check that --token-file is the control plane\'s <data-dir>/bootstrap.token');
    }
    const [node] = metadata.get('weft-node');
    if (typeof node !== 'string' || node === '') return err('no "weft-node" metadata: the agent must say which node it runs on (--node)');
    return ok({ node, subject: 'bootstrap-token' });
  }
}
