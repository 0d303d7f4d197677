import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeConfig } from '@kubernetes/client-node';
import type { Snapshot } from '../../agent/config/objects';
import { startKubeSource, type KubeSource } from '../../agent/controlplane/kube-source';

/**
 * The API server is a dependency here, not the thing under test: a loopback HTTP server answers
 * the list and watch endpoints the informers use, with objects shaped as the real API returns them.
 */

const WAIT_MS = 5000;

const lists: Record<string, { kind: string; items: object[] }> = {
  '/api/v1/namespaces': { kind: 'NamespaceList', items: [{ metadata: { name: 'shop', labels: { 'weft.dev/mesh': 'enabled' }, uid: 'n1' }, status: { phase: 'Active' } }] },
  '/api/v1/pods': {
    kind: 'PodList',
    items: [
      { metadata: { name: 'web-1', namespace: 'shop', uid: 'p1', labels: { app: 'web' } }, spec: { nodeName: 'node-a', serviceAccountName: 'web', containers: [] }, status: { phase: 'Running', podIP: '10.0.0.1', podIPs: [{ ip: '10.0.0.1' }, { ip: 'fd00:0::1' }], observedGeneration: 1 } },
      { metadata: { name: 'job-1', namespace: 'shop', uid: 'p2' }, spec: { nodeName: 'node-a', containers: [] }, status: { phase: 'Succeeded' } },
    ],
  },
  '/api/v1/nodes': { kind: 'NodeList', items: [{ metadata: { name: 'node-a' }, status: { addresses: [{ type: 'InternalIP', address: '192.168.1.10' }, { type: 'Hostname', address: 'node-a' }] } }] },
  '/api/v1/services': { kind: 'ServiceList', items: [{ metadata: { name: 'web', namespace: 'shop' }, spec: { selector: { app: 'web' }, clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'], ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] } }] },
  '/apis/security.weft.dev/v1/peerauthentications': {
    kind: 'PeerAuthenticationList',
    items: [{ apiVersion: 'security.weft.dev/v1', kind: 'PeerAuthentication', metadata: { name: 'strict', namespace: 'shop' }, spec: { mtls: { mode: 'STRICT' } } }],
  },
  '/apis/security.weft.dev/v1/authorizationpolicies': {
    kind: 'AuthorizationPolicyList',
    items: [{ apiVersion: 'security.weft.dev/v1', kind: 'AuthorizationPolicy', metadata: { name: 'allow-get', namespace: 'shop', resourceVersion: '1' }, spec: { rules: [{ to: [{ operation: { methods: ['GET'] } }] }] } }],
  },
};
const AP_PATH = '/apis/security.weft.dev/v1/authorizationpolicies';
const ALLOW_GET = { namespace: 'shop', name: 'allow-get', action: 'ALLOW', rules: [{ to: [{ methods: ['GET'] }] }] };
const watchers = new Map<string, ServerResponse>();
const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  const list = lists[url.pathname];
  if (list === undefined) {
    res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404, message: 'the server could not find the requested resource' }));
    return;
  }
  if (url.searchParams.get('watch') === 'true') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.flushHeaders();
    watchers.set(url.pathname, res);
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ apiVersion: 'v1', kind: list.kind, metadata: { resourceVersion: '1' }, items: list.items }));
});

let source: KubeSource | undefined;
const snapshots: Snapshot[] = [];

before(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'fake', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
    users: [{ name: 'test' }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'test' }],
    currentContext: 'fake',
  });
  source = await startKubeSource(kc, (s) => snapshots.push(s));
});

after(async () => {
  source?.close();
  for (const res of watchers.values()) res.end();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

test('the first snapshot holds what the API lists, converted at the edge', () => {
  const s = source!.current();
  assert.deepEqual(s.namespaces, [{ name: 'shop', labels: { 'weft.dev/mesh': 'enabled' } }]);
  assert.deepEqual(s.pods, [{
    namespace: 'shop', name: 'web-1', labels: { app: 'web' }, annotations: {}, nodeName: 'node-a', serviceAccount: 'web', ips: ['10.0.0.1', 'fd00::1'], uid: 'p1',
  }], 'terminated pods are left out; no cgroup path is made up, the UID the agent resolves it by is passed');
  assert.deepEqual(s.nodes, [{ name: 'node-a', internalIPs: ['192.168.1.10'] }]);
  assert.deepEqual(s.services, [{ namespace: 'shop', name: 'web', labels: {}, selector: { app: 'web' }, clusterIPs: ['10.96.0.10'], ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] }]);
  assert.deepEqual(s.peerAuthentications, [{ namespace: 'shop', name: 'strict', mode: 'STRICT', portLevel: {} }]);
  assert.deepEqual(s.authorizationPolicies, [ALLOW_GET], 'validated and normalized, as the config file does');
});

test('a watch event becomes a new snapshot', async () => {
  const deadline = Date.now() + WAIT_MS;
  while (!watchers.has('/api/v1/pods')) {
    if (Date.now() > deadline) assert.fail('the pod informer never opened its watch');
    await sleep(10);
  }
  const added = { metadata: { name: 'web-2', namespace: 'shop', uid: 'p3', resourceVersion: '2' }, spec: { nodeName: 'node-b', serviceAccountName: 'web' }, status: { phase: 'Running', podIP: '10.0.0.2' } };
  watchers.get('/api/v1/pods')!.write(JSON.stringify({ type: 'ADDED', object: added }) + '\n');
  while (snapshots.length === 0) {
    if (Date.now() > deadline) assert.fail('no snapshot after the watch event');
    await sleep(10);
  }
  assert.deepEqual(snapshots[0]!.pods.map((p) => `${p.name}@${p.nodeName}`).sort(), ['web-1@node-a', 'web-2@node-b']);
  assert.deepEqual(source!.current(), snapshots[0]);
});

async function until(what: string, ready: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!ready()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await sleep(10);
  }
}

test('an invalid edit of an AuthorizationPolicy leaves its last valid version in force; a fixed edit replaces it', async () => {
  await until('the AuthorizationPolicy informer opened its watch', () => watchers.has(AP_PATH));
  const watch = watchers.get(AP_PATH)!;
  const object = (name: string, resourceVersion: string, spec: object) => ({ apiVersion: 'security.weft.dev/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace: 'shop', resourceVersion }, spec });
  const names = (): string[] => source!.current().authorizationPolicies.map((p) => p.name);
  // The invalid edit, then (on the same watch, so after it) a valid new policy to know the edit was seen.
  watch.write(JSON.stringify({ type: 'MODIFIED', object: object('allow-get', '10', { action: 'CUSTOM', rules: [{}] }) }) + '\n');
  watch.write(JSON.stringify({ type: 'ADDED', object: object('deny-all', '11', { action: 'DENY', rules: [{}] }) }) + '\n');
  await until('the new policy is in the snapshot', () => names().includes('deny-all'));
  assert.deepEqual(source!.current().authorizationPolicies, [ALLOW_GET, { namespace: 'shop', name: 'deny-all', action: 'DENY', rules: [{}] }], 'allow-get is still its last valid version');

  watch.write(JSON.stringify({ type: 'MODIFIED', object: object('allow-get', '12', { rules: [{ to: [{ operation: { methods: ['HEAD'] } }] }] }) }) + '\n');
  await until('the fixed edit is in force', () => source!.current().authorizationPolicies.some((p) => p.name === 'allow-get' && p.rules[0]?.to?.[0]?.methods?.[0] === 'HEAD'));

  watch.write(JSON.stringify({ type: 'DELETED', object: object('allow-get', '13', { rules: [] }) }) + '\n');
  await until('the deleted policy is gone', () => !names().includes('allow-get'));
  assert.deepEqual(names(), ['deny-all']);
});
