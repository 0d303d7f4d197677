import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Metadata } from '@grpc/grpc-js';
import { AuthenticationV1Api, KubeConfig } from '@kubernetes/client-node';
import { AGENT_TOKEN_AUDIENCE, TokenReviewAuthenticator } from '../../agent/controlplane/tokenreview-auth';

/**
 * Stands in for the API server: answers TokenReviews from a table of the tokens it issued, as the
 * real one does. A review without spec.audiences is for the API server's own audience; the token
 * is authenticated only if its audiences meet the review's, and status.audiences is that meeting.
 * One token stands for an authenticator that ignores audiences (a webhook): no status.audiences.
 */
const API_SERVER_AUDIENCE = 'https://kubernetes.default.svc.cluster.local';
const AGENT = 'system:serviceaccount:weft-system:weft-agent';
const onNode = (node: string) => ({ 'authentication.kubernetes.io/node-name': [node] });
const issued: Record<string, { username: string; extra?: Record<string, string[]>; audiences: string[] | 'unaware'; expired?: boolean }> = {
  'agent-on-a': { username: AGENT, extra: onNode('node-a'), audiences: ['weft'] },
  'agent-default-audience': { username: AGENT, extra: onNode('node-a'), audiences: [API_SERVER_AUDIENCE] },
  'audience-unaware': { username: AGENT, extra: onNode('node-a'), audiences: 'unaware' },
  'other-sa': { username: 'system:serviceaccount:shop:web', extra: onNode('node-a'), audiences: ['weft'] },
  'no-node': { username: AGENT, audiences: ['weft'] },
  'expired': { username: AGENT, extra: onNode('node-a'), audiences: ['weft'], expired: true },
};
const seen: Array<{ method?: string; url?: string; authorization?: string; body: { spec: { token: string; audiences?: string[] } } }> = [];

function review(spec: { token: string; audiences?: string[] }): { status: number; body: object } {
  if (spec.token === 'forbidden') return { status: 403, body: { kind: 'Status', status: 'Failure', message: 'tokenreviews is forbidden', code: 403 } };
  const token = issued[spec.token];
  const wanted = spec.audiences && spec.audiences.length > 0 ? spec.audiences : [API_SERVER_AUDIENCE];
  const refuse = (error: string) => ({ status: 201, body: { status: { authenticated: false, error } } });
  if (!token) return refuse('[invalid bearer token, square/go-jose: error in cryptographic primitive]');
  if (token.expired) return refuse('[invalid bearer token, token has expired]');
  if (token.audiences === 'unaware') return { status: 201, body: { status: { authenticated: true, user: { username: token.username, extra: token.extra } } } };
  const audiences = token.audiences.filter((a) => wanted.includes(a));
  if (audiences.length === 0) return refuse(`[invalid bearer token, token audiences ${JSON.stringify(token.audiences)} is invalid for the target audiences ${JSON.stringify(wanted)}]`);
  return { status: 201, body: { status: { authenticated: true, audiences, user: { username: token.username, ...(token.extra ? { extra: token.extra } : {}) } } } };
}

const apiServer = createServer((request: IncomingMessage, response) => {
  let raw = '';
  request.on('data', (chunk) => { raw += chunk; });
  request.on('end', () => {
    const body = JSON.parse(raw) as { spec: { token: string; audiences?: string[] } };
    seen.push({ method: request.method, url: request.url, authorization: request.headers.authorization, body });
    const answer = review(body.spec);
    response.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', ...answer.body }));
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
  assert.deepEqual(request.body.spec.audiences, [AGENT_TOKEN_AUDIENCE], 'the review asks for the agent token\'s audience');
});

test('TokenReview refusals say what to check', async () => {
  const cases: Array<[string, RegExp]> = [
    ['other-sa', /belongs to system:serviceaccount:shop:web, not to the agent's ServiceAccount system:serviceaccount:weft-system:weft-agent/],
    ['no-node', /names no node \(authentication.kubernetes.io\/node-name\): use a pod-bound projected token/],
    ['expired', /did not accept the token: \[invalid bearer token, token has expired\] \(the agent presents a projected ServiceAccount token with audience weft/],
    ['agent-default-audience', /did not accept the token: .*token audiences \["https:\/\/kubernetes.default.svc.cluster.local"\] is invalid for the target audiences \["weft"\]/],
    ['audience-unaware', /did not confirm that the token is for audience weft \(it answered \[\]\): project the agent's ServiceAccount token with audience weft/],
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
