import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { boundedApiClient } from '../../agent/controlplane/kube-client';
import { apiFailure } from '../../agent/controlplane/kube-api-failure';

/**
 * The API server is a dependency here, not the thing under test: a loopback HTTP server answers,
 * answers only its headers, or never answers, as each case scripts it.
 */

let script: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.writeHead(500).end();
let server: Server;
let core: CoreV1Api;
const TIMEOUT_MS = 400;

before(async () => {
  server = createServer((req, res) => script(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'fake', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
    users: [{ name: 'test', token: 'sekret' }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'test' }],
    currentContext: 'fake',
  });
  core = boundedApiClient(kc, CoreV1Api, TIMEOUT_MS);
});

after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const NAMESPACE = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { a: 'b' } } };

async function timed<T>(p: Promise<T>): Promise<{ ms: number; value?: T; error?: unknown }> {
  const start = Date.now();
  try {
    return { ms: Date.now() - start, value: await p };
  } catch (error) {
    return { ms: Date.now() - start, error };
  }
}

test('a call answered in time returns the object, with the kubeconfig\'s credentials sent', async () => {
  let auth: string | undefined;
  script = (req, res) => {
    auth = req.headers.authorization;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(NAMESPACE));
  };
  const ns = await core.readNamespace({ name: 'shop' });
  assert.deepEqual(ns.metadata?.labels, { a: 'b' });
  assert.equal(auth, 'Bearer sekret');
});

test('a call whose answer never starts fails at its deadline, saying so', async () => {
  script = () => { /* never answers */ };
  const r = await timed(core.readNamespace({ name: 'shop' }));
  assert.ok(r.error instanceof Error, 'rejected');
  assert.equal(r.error.message, `no answer from the API server in ${TIMEOUT_MS / 1000} s (GET /api/v1/namespaces/shop)`);
  assert.ok(r.ms >= TIMEOUT_MS - 50 && r.ms < 5_000, `after ${r.ms} ms`);
  assert.equal(apiFailure(r.error).code, undefined, 'read as "did not reach the API server" by the callers\' advice');
});

test('a call whose body stalls after its headers fails at the same deadline', async () => {
  script = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"apiVersion":"v1","kind":"Namespace",'); // then nothing, the connection kept open
  };
  const r = await timed(core.readNamespace({ name: 'shop' }));
  assert.ok(r.error instanceof Error, 'rejected');
  assert.match(r.error.message, /^no answer from the API server in 0\.4 s \(GET \/api\/v1\/namespaces\/shop\)$/);
  assert.ok(r.ms >= TIMEOUT_MS - 50 && r.ms < 5_000, `after ${r.ms} ms`);
});

test('a refusal is still the API\'s error, with its code, and each call gets its own deadline', async () => {
  script = (_req, res) => res.writeHead(404, { 'content-type': 'application/json' })
    .end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404, message: 'namespaces "shop" not found' }));
  await new Promise((resolve) => setTimeout(resolve, TIMEOUT_MS + 100)); // older than one deadline: a shared signal would have fired
  const r = await timed(core.readNamespace({ name: 'shop' }));
  assert.equal(apiFailure(r.error).code, 404);
  assert.match(apiFailure(r.error).message, /HTTP 404 NotFound: namespaces "shop" not found/);
});
