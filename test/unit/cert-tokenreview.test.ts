import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Metadata } from '@grpc/grpc-js';
import { AuthenticationV1Api, KubeConfig } from '@kubernetes/client-node';
import { TokenReviewAuthenticator } from '../../agent/controlplane/tokenreview-auth';

/** Stands in for the API server: answers TokenReviews from a table keyed by token. */
const reviews: Record<string, { status: number; body: unknown }> = {
  'agent-on-a': { status: 201, body: { status: { authenticated: true, user: { username: 'system:serviceaccount:weft-system:weft-agent', extra: { 'authentication.kubernetes.io/node-name': ['node-a'] } } } } },
  'other-sa': { status: 201, body: { status: { authenticated: true, user: { username: 'system:serviceaccount:shop:web', extra: { 'authentication.kubernetes.io/node-name': ['node-a'] } } } } },
  'no-node': { status: 201, body: { status: { authenticated: true, user: { username: 'system:serviceaccount:weft-system:weft-agent' } } } },
  'expired': { status: 201, body: { status: { authenticated: false, error: 'token has expired' } } },
  'forbidden': { status: 403, body: { kind: 'Status', status: 'Failure', message: 'tokenreviews is forbidden', code: 403 } },
};
const seen: Array<{ method?: string; url?: string; authorization?: string; body: { spec: { token: string } } }> = [];

const apiServer = createServer((request: IncomingMessage, response) => {
  let raw = '';
  request.on('data', (chunk) => { raw += chunk; });
  request.on('end', () => {
    const body = JSON.parse(raw) as { spec: { token: string } };
    seen.push({ method: request.method, url: request.url, authorization: request.headers.authorization, body });
    const answer = reviews[body.spec.token] ?? { status: 500, body: {} };
    response.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', ...answer.body as object }));
  });
});
let authenticator: TokenReviewAuthenticator;

before(async () => {
  await new Promise<void>((resolve) => apiServer.listen(0, '127.0.0.1', resolve));
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'test', server: `http://127.0.0.1:${(apiServer.address() as AddressInfo).port}`, skipTLSVerify: true }],
    users: [{ name: 'controlplane', token: 'controlplane-token' }],
    contexts: [{ name: 'test', cluster: 'test', user: 'controlplane' }],
    currentContext: 'test',
  });
  authenticator = new TokenReviewAuthenticator(kubeConfig.makeApiClient(AuthenticationV1Api));
});

after(() => apiServer.close());

function bearer(token: string): Metadata {
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  metadata.set('weft-node', 'node-claimed-by-caller');
  return metadata;
}

test('TokenReview: the agent ServiceAccount\'s token yields the node from the token, not the caller\'s claim', async () => {
  assert.deepEqual(await authenticator.authenticate(bearer('agent-on-a')), {
    ok: true, value: { node: 'node-a', subject: 'system:serviceaccount:weft-system:weft-agent' },
  });
  const request = seen.at(-1)!;
  assert.equal(request.method, 'POST');
  assert.equal(request.url, '/apis/authentication.k8s.io/v1/tokenreviews');
  assert.equal(request.authorization, 'Bearer controlplane-token');
  assert.equal(request.body.spec.token, 'agent-on-a');
});

test('TokenReview refusals say what to check', async () => {
  const cases: Array<[string, RegExp]> = [
    ['other-sa', /belongs to system:serviceaccount:shop:web, not to the agent's ServiceAccount system:serviceaccount:weft-system:weft-agent/],
    ['no-node', /names no node \(authentication.kubernetes.io\/node-name\): use a pod-bound projected token/],
    ['expired', /did not accept the token: token has expired/],
    ['forbidden', /^TokenReview failed \(HTTP 403: tokenreviews is forbidden\): check .* may create tokenreviews.authentication.k8s.io$/],
  ];
  for (const [token, reason] of cases) {
    const result = await authenticator.authenticate(bearer(token));
    assert.equal(result.ok, false, token);
    if (!result.ok) assert.match(result.error, reason, token);
  }
  const noToken = await authenticator.authenticate(new Metadata());
  assert.ok(!noToken.ok && /ServiceAccount token/.test(noToken.error));
});
