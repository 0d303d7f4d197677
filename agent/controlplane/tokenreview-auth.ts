import type { Metadata } from '@grpc/grpc-js';
import type { AuthenticationV1Api } from '@kubernetes/client-node';
import { err, ok, type Result } from '../core/result';
import { bearerToken, type Authenticator, type Caller } from './authenticator';

const NODE_NAME_EXTRA = 'authentication.kubernetes.io/node-name';

/**
 * The audience of the token the agent presents (daemonset/agent.yaml projects it with this
 * audience). A token for the control plane only: one the API server would accept (its default
 * audience) is refused, and a control plane that sees agents' tokens cannot replay them to it.
 */
export const AGENT_TOKEN_AUDIENCE = 'weft';

export interface AgentServiceAccount {
  namespace: string;
  name: string;
}

/** The agents' ServiceAccount (daemonset/rbac.yaml), the only one whose tokens are accepted by default. */
export const AGENT_SERVICE_ACCOUNT: AgentServiceAccount = { namespace: 'weft-system', name: 'weft-agent' };

/** "HTTP 403: tokenreviews is forbidden" rather than the client's dump of headers and body. */
function describeApiFailure(error: unknown): string {
  const { code, body } = error as { code?: unknown; body?: unknown };
  if (typeof code !== 'number') return (error as Error).message;
  let status: unknown = body;
  if (typeof body === 'string') {
    try { status = JSON.parse(body); } catch { status = undefined; }
  }
  const message = (status as { message?: unknown } | undefined)?.message;
  return typeof message === 'string' ? `HTTP ${code}: ${message}` : `HTTP ${code}`;
}

/**
 * Kubernetes authentication: the agent presents its pod-bound ServiceAccount token, projected with
 * the audience `weft`; the API server (TokenReview, asked for that audience) says whose it is and,
 * for pod-bound tokens, which node that pod runs on.
 */
export class TokenReviewAuthenticator implements Authenticator {
  constructor(
    private readonly api: Pick<AuthenticationV1Api, 'createTokenReview'>,
    private readonly agent: AgentServiceAccount = AGENT_SERVICE_ACCOUNT,
    private readonly audience: string = AGENT_TOKEN_AUDIENCE,
  ) {}

  async authenticate(metadata: Metadata): Promise<Result<Caller, string>> {
    const token = bearerToken(metadata);
    if (!token.ok) return err(`${token.error}: present the agent's ServiceAccount token`);
    let review;
    try {
      review = await this.api.createTokenReview({ body: { spec: { token: token.value, audiences: [this.audience] } } });
    } catch (error) {
      return err(`TokenReview failed (${describeApiFailure(error)}): check that the API server is reachable and the control plane may create tokenreviews.authentication.k8s.io`);
    }
    const status = review.status;
    if (status?.authenticated !== true) {
      return err(`the API server did not accept the token${status?.error ? `: ${status.error}` : ''} `
        + `(the agent presents a projected ServiceAccount token with audience ${this.audience}, as daemonset/agent.yaml mounts it)`);
    }
    // An authenticator that ignores audiences answers without any: that token is the API server's.
    if (!(status.audiences ?? []).includes(this.audience)) {
      return err(`the API server did not confirm that the token is for audience ${this.audience} (it answered ${JSON.stringify(status.audiences ?? [])}): `
        + `project the agent's ServiceAccount token with audience ${this.audience}, as daemonset/agent.yaml does`);
    }
    const username = status.user?.username ?? '';
    const expected = `system:serviceaccount:${this.agent.namespace}:${this.agent.name}`;
    if (username !== expected) return err(`the token belongs to ${username || 'an unnamed user'}, not to the agent's ServiceAccount ${expected}`);
    const nodes = status.user?.extra?.[NODE_NAME_EXTRA] ?? [];
    if (nodes.length !== 1 || nodes[0] === '') {
      return err(`the token of ${username} names no node (${NODE_NAME_EXTRA}): use a pod-bound projected token on Kubernetes >= 1.30`);
    }
    return ok({ node: nodes[0]!, subject: username });
  }
}
