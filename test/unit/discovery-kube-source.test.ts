import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeConfig } from '@kubernetes/client-node';
import type { Snapshot } from '../../agent/config/objects';
import { kindFragment } from '../../agent/controlplane/discovery-kube-convert';
import { startKubeSource, type KubeSource } from '../../agent/controlplane/kube-source';

/**
 * The API server is a dependency here, not the thing under test: a loopback HTTP server answers
 * the list and watch endpoints the informers use, with objects shaped as the real API returns them.
 */

const WAIT_MS = 5000;

const HTTP_ROUTE = {
  apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'web-split', namespace: 'shop', resourceVersion: '1' },
  spec: {
    parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }],
    rules: [{ backendRefs: [{ name: 'web', port: 80, weight: 90 }, { name: 'web-canary', port: 80, weight: 10 }] }],
  },
};
const SLICES_PATH = '/apis/discovery.k8s.io/v1/endpointslices';
const lists: Record<string, { kind: string; items: object[] }> = {
  '/api/v1/namespaces': { kind: 'NamespaceList', items: [{ metadata: { name: 'shop', labels: { 'weft.dev/mesh': 'enabled' }, uid: 'n1' }, status: { phase: 'Active' } }] },
  '/api/v1/pods': {
    kind: 'PodList',
    items: [
      { metadata: { name: 'web-1', namespace: 'shop', uid: 'p1', labels: { app: 'web' } }, spec: { nodeName: 'node-a', serviceAccountName: 'web', containers: [] }, status: { phase: 'Running', podIP: '10.0.0.1', podIPs: [{ ip: '10.0.0.1' }, { ip: 'fd00:0::1' }], observedGeneration: 1, conditions: [{ type: 'Ready', status: 'True' }] } },
      { metadata: { name: 'job-1', namespace: 'shop', uid: 'p2' }, spec: { nodeName: 'node-a', containers: [] }, status: { phase: 'Succeeded' } },
      {
        metadata: { name: 'web-old', namespace: 'shop', uid: 'p4', labels: { app: 'web' }, deletionTimestamp: '2030-01-01T00:00:00Z' },
        spec: { nodeName: 'node-a', containers: [{ name: 'web', ports: [{ name: 'http', containerPort: 8080 }, { name: 'dns', containerPort: 53, protocol: 'UDP' }, { containerPort: 9000 }] }, { name: 'side', ports: [{ name: 'http', containerPort: 9999 }, { name: 'admin', containerPort: 15000, protocol: 'TCP' }] }] },
        status: { phase: 'Running', podIP: '10.0.0.4', conditions: [{ type: 'Ready', status: 'True' }] },
      },
      { metadata: { name: 'web-new', namespace: 'shop', uid: 'p5', labels: { app: 'web' } }, spec: { nodeName: 'node-a', containers: [] }, status: { phase: 'Running', podIP: '10.0.0.5', conditions: [{ type: 'Ready', status: 'False' }, { type: 'PodScheduled', status: 'True' }] } },
    ],
  },
  '/api/v1/nodes': { kind: 'NodeList', items: [{ metadata: { name: 'node-a' }, status: { addresses: [{ type: 'InternalIP', address: '192.168.1.10' }, { type: 'Hostname', address: 'node-a' }] } }] },
  '/api/v1/services': { kind: 'ServiceList', items: [{ metadata: { name: 'web', namespace: 'shop' }, spec: { selector: { app: 'web' }, clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'], ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] } }] },
  [SLICES_PATH]: {
    kind: 'EndpointSliceList',
    items: [
      {
        apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'web-v4', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } },
        addressType: 'IPv4',
        ports: [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'nonumber' }],
        endpoints: [
          { addresses: ['10.0.0.1'], conditions: { ready: true, serving: true, terminating: false }, nodeName: 'node-a', targetRef: { kind: 'Pod', name: 'web-1', namespace: 'shop', uid: 'p1' } },
          { addresses: ['10.0.0.4'], conditions: { ready: false, serving: true, terminating: true }, nodeName: 'node-a', targetRef: { kind: 'Pod', name: 'web-old', namespace: 'shop' } },
          { addresses: ['10.0.0.9'], conditions: {} },
          { addresses: ['fd00::9'] },
        ],
      },
      {
        apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'web-v6', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } },
        addressType: 'IPv6',
        ports: [{ name: 'http', port: 8080 }],
        endpoints: [{ addresses: ['FD00:0::1'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'web-1' } }],
      },
      { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'orphan', namespace: 'shop' }, addressType: 'IPv4', ports: [], endpoints: [] },
    ],
  },
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
lists['/apis/gateway.networking.k8s.io/v1/httproutes'] = { kind: 'HTTPRouteList', items: [HTTP_ROUTE] };
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
  assert.deepEqual(s.pods, [
    { namespace: 'shop', name: 'web-1', labels: { app: 'web' }, annotations: {}, nodeName: 'node-a', serviceAccount: 'web', ips: ['10.0.0.1', 'fd00::1'], uid: 'p1' },
    {
      namespace: 'shop', name: 'web-old', labels: { app: 'web' }, annotations: {}, nodeName: 'node-a', serviceAccount: 'default', ips: ['10.0.0.4'], uid: 'p4',
      terminating: true, containerPorts: { http: 8080, admin: 15000 },
    },
    { namespace: 'shop', name: 'web-new', labels: { app: 'web' }, annotations: {}, nodeName: 'node-a', serviceAccount: 'default', ips: ['10.0.0.5'], uid: 'p5', ready: false },
  ], 'terminated pods are left out; no cgroup path is made up, the UID the agent resolves it by is passed; '
    + 'a pod without a True Ready condition is not ready; a deletionTimestamp marks it terminating; named TCP container ports, the first container\'s name winning');
  assert.deepEqual(s.nodes, [{ name: 'node-a', internalIPs: ['192.168.1.10'] }]);
  assert.deepEqual(s.services, [{ namespace: 'shop', name: 'web', labels: {}, selector: { app: 'web' }, clusterIPs: ['10.96.0.10'], ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] }]);
  assert.deepEqual(s.peerAuthentications, [{ namespace: 'shop', name: 'strict', mode: 'STRICT', portLevel: {} }]);
  assert.deepEqual(s.authorizationPolicies, [ALLOW_GET], 'validated and normalized, as the config file does');
  assert.deepEqual(s.endpointSlices, [
    {
      namespace: 'shop', name: 'web-v4', service: 'web', addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      endpoints: [
        { addresses: ['10.0.0.1'], ready: true, serving: true, terminating: false, nodeName: 'node-a', pod: 'web-1' },
        { addresses: ['10.0.0.4'], ready: false, serving: true, terminating: true, nodeName: 'node-a', pod: 'web-old' },
        { addresses: ['10.0.0.9'], ready: true, serving: true, terminating: false },
      ],
    },
    {
      namespace: 'shop', name: 'web-v6', service: 'web', addressType: 'IPv6', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      endpoints: [{ addresses: ['fd00::1'], ready: true, serving: true, terminating: false, pod: 'web-1' }],
    },
  ], 'absent conditions read as the API says (ready and serving true, terminating false); a port without a number, an address of the other family '
    + 'and a slice without the kubernetes.io/service-name label are left out; addresses in canonical form');
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
  assert.deepEqual(snapshots[0]!.pods.map((p) => `${p.name}@${p.nodeName}`).sort(), ['web-1@node-a', 'web-2@node-b', 'web-new@node-a', 'web-old@node-a']);
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

test('EndpointSlices are watched: an added, a modified and a deleted slice each make a new snapshot', async () => {
  await until('the EndpointSlice informer opened its watch', () => watchers.has(SLICES_PATH));
  const watch = watchers.get(SLICES_PATH)!;
  const slice = (name: string, resourceVersion: string, ready: boolean) => ({
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { name, namespace: 'shop', resourceVersion, labels: { 'kubernetes.io/service-name': 'api' } },
    addressType: 'IPv4', ports: [{ name: '', port: 9090, protocol: 'TCP' }],
    endpoints: [{ addresses: ['10.0.0.7'], conditions: { ready }, targetRef: { kind: 'Pod', name: 'api-1' } }],
  });
  const api = () => source!.current().endpointSlices?.find((s) => s.name === 'api-x');

  watch.write(JSON.stringify({ type: 'ADDED', object: slice('api-x', '20', false) }) + '\n');
  await until('the added slice is in the snapshot', () => api() !== undefined);
  assert.deepEqual(api(), {
    namespace: 'shop', name: 'api-x', service: 'api', addressType: 'IPv4', ports: [{ port: 9090, protocol: 'TCP' }],
    endpoints: [{ addresses: ['10.0.0.7'], ready: false, serving: true, terminating: false, pod: 'api-1' }],
  }, 'the unnamed port ("") has no name; serving absent reads as true even when ready is false (the API: nil is "true")');

  watch.write(JSON.stringify({ type: 'MODIFIED', object: slice('api-x', '21', true) }) + '\n');
  await until('the modified slice is in force', () => api()?.endpoints[0]?.ready === true);

  watch.write(JSON.stringify({ type: 'DELETED', object: slice('api-x', '22', true) }) + '\n');
  await until('the deleted slice is gone', () => api() === undefined);
  assert.deepEqual(source!.current().endpointSlices?.map((s) => s.name), ['web-v4', 'web-v6'], 'the other slices are untouched');
});

test('an HTTPRoute is converted by the kind registry (agent/config/kinds.ts): in force exactly when the registry accepts it', () => {
  const expected = kindFragment('HTTPRoute', HTTP_ROUTE);
  const s = source!.current() as unknown as Record<string, unknown>;
  if (expected.ok) {
    assert.ok(Object.keys(expected.value).length > 0, 'an accepted route adds something to the snapshot');
    for (const [key, value] of Object.entries(expected.value)) assert.deepEqual(s[key], value, key);
  } else {
    assert.doesNotMatch(JSON.stringify(s), /web-split/, `a route the registry refuses (${expected.error}) is not in force`);
  }
});

test('a watch too old for the API server (410 Gone) makes the EndpointSlice informer list again, and the snapshot follows the new list', async () => {
  await until('the EndpointSlice informer opened its watch', () => watchers.has(SLICES_PATH));
  const watch = watchers.get(SLICES_PATH)!;
  watchers.delete(SLICES_PATH);
  const list = lists[SLICES_PATH]!;
  const [v4] = list.items as { metadata: { name: string } }[];
  // While the watch was away, web-v6 was deleted and web-v4 renamed (as a relist is the only way to learn it).
  list.items = [{ ...v4, metadata: { ...v4!.metadata, name: 'web-v4-relisted' } }];
  watch.write(JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410, message: 'too old resource version: 1 (20)' } }) + '\n');
  watch.end();
  await until('the relisted state is in force', () => source!.current().endpointSlices?.map((s) => s.name).join() === 'web-v4-relisted');
  await until('the informer watches again', () => watchers.has(SLICES_PATH));
});
