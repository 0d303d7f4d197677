import type { Metadata } from '@grpc/grpc-js';
import { err, ok, type Result } from '../core/result';

/** Who is calling the control plane: the node the agent runs on, and the credential's subject (for logs). */
export interface Caller {
  node: string;
  subject: string;
}

export interface Authenticator {
  authenticate(metadata: Metadata): Promise<Result<Caller, string>>;
}

export function bearerToken(metadata: Metadata): Result<string, string> {
  const [header] = metadata.get('authorization');
  if (typeof header !== 'string') return err('no "authorization: Bearer <token>" metadata');
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  return match ? ok(match[1]!) : err('the authorization metadata is not "Bearer <token>"');
}
