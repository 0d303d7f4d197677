import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { emptySnapshot, type PodInfo, type ServiceInfo, type Snapshot } from '../../agent/config/objects';
import { WorkloadStore } from '../../agent/state/store';

function pod(name: string, over: Partial<PodInfo> = {}): PodInfo {
  return { namespace: 'shop', name, labels: {}, annotations: {}, nodeName: 'node-a', serviceAccount: 'default', ips: [], ...over };
}

function service(name: string, selector: Record<string, string>, clusterIPs: string[], namespace = 'shop'): ServiceInfo {
  return { namespace, name, labels: {}, selector, clusterIPs, ports: [{ port: 80, targetPort: 8080, protocol: 'TCP' }] };
}

const snapshot: Snapshot = {
  ...emptySnapshot(),
  namespaces: [{ name: 'shop', labels: { 'weft.dev/mesh': 'enabled' } }],
  nodes: [{ name: 'node-a', internalIPs: ['192.168.50.2', 'fd00:50::2'] }, { name: 'node-b', internalIPs: [] }],
  pods: [
    pod('web-7d4b9c-x2x4q', { labels: { app: 'web', tier: 'front' }, serviceAccount: 'web', ips: ['10.0.1.5', 'fd00:1::5'] }),
    pod('db', { ips: ['10.0.2.7'], nodeName: 'node-b' }),
    pod('host-a', { ips: ['192.168.50.2'] }),
    pod('host-b', { ips: ['192.168.50.2'] }),
  ],
  services: [
    service('web', { app: 'web' }, ['10.96.0.10', 'fd00:96::a']),
    service('front', { tier: 'front' }, ['10.96.0.11']),
    service('all-web', { app: 'web', tier: 'back' }, ['10.96.0.12']),
    service('external', {}, ['10.96.0.13']),
    service('web', { app: 'web' }, ['10.96.1.10'], 'other'),
  ],
};
const store = new WorkloadStore(snapshot);

describe('WorkloadStore', () => {
  it('finds pods by name and by address in any IPv6 spelling', () => {
    const web = snapshot.pods[0];
    assert.equal(store.pod('shop', 'web-7d4b9c-x2x4q'), web);
    assert.equal(store.pod('other', 'web-7d4b9c-x2x4q'), undefined);
    assert.equal(store.podByIp('10.0.1.5'), web);
    assert.equal(store.podByIp('fd00:1::5'), web);
    assert.equal(store.podByIp('fd00:1:0::5'), web);
    assert.equal(store.podByIp('FD00:1:0:0:0:0:0:5'), web);
    assert.equal(store.podByIp('::ffff:10.0.1.5'), web, 'as a dual-stack socket reports an IPv4 peer');
    assert.equal(store.podByIp('10.0.1.6'), undefined);
    assert.equal(store.podByIp('not an ip'), undefined);
  });

  it('does not attribute an address shared by host-network pods to any of them', () => {
    assert.equal(store.podByIp('192.168.50.2'), undefined);
  });

  it('finds namespaces, nodes and node addresses', () => {
    assert.equal(store.namespace('shop')?.labels['weft.dev/mesh'], 'enabled');
    assert.equal(store.namespace('nope'), undefined);
    assert.equal(store.node('node-a'), snapshot.nodes[0]);
    assert.equal(store.nodeIpFor('node-a'), '192.168.50.2');
    assert.equal(store.nodeIpFor(snapshot.pods[0]), '192.168.50.2');
    assert.equal(store.nodeIpFor(snapshot.pods[1]), undefined, 'node-b has no InternalIP');
    assert.equal(store.nodeIpFor('node-z'), undefined);
  });

  it('lists the services selecting a pod: same namespace, full selector match, never an empty selector', () => {
    assert.deepEqual(store.servicesSelecting(snapshot.pods[0]).map((s) => `${s.namespace}/${s.name}`), ['shop/front', 'shop/web']);
    assert.deepEqual(store.servicesSelecting(snapshot.pods[1]), []);
  });

  it('finds services by cluster IP in any spelling', () => {
    assert.equal(store.serviceByIp('10.96.0.10')?.name, 'web');
    assert.equal(store.serviceByIp('fd00:96:0::a'), snapshot.services[0]);
    assert.equal(store.serviceByIp('10.96.1.10')?.namespace, 'other');
    assert.equal(store.serviceByIp('10.96.9.9'), undefined);
  });

  it('names workloads as Istio does', () => {
    const name = (p: Partial<PodInfo> & { name: string }) => store.workloadName(pod(p.name, p));
    assert.equal(name({ name: 'x-1', labels: { 'app.kubernetes.io/name': 'shop-ui', app: 'ui' } }), 'shop-ui');
    assert.equal(name({ name: 'x-1', labels: { app: 'ui' } }), 'ui');
    assert.equal(name({ name: 'web-7d4b9c-x2x4q' }), 'web');
    assert.equal(name({ name: 'my-web-app-5f6c8d9b7-k9zqw' }), 'my-web-app');
    assert.equal(name({ name: 'web-7d4b9c-x2x4q', labels: { 'pod-template-hash': '7d4b9c' } }), 'web');
    assert.equal(name({ name: 'web-abcdef-x2x4q', labels: { 'pod-template-hash': 'abcdef' } }), 'web');
    assert.equal(name({ name: 'web-7d4b9c-x2x4q', labels: { 'pod-template-hash': 'zzzz' } }), 'web-7d4b9c-x2x4q');
    assert.equal(name({ name: 'db' }), 'db');
    assert.equal(name({ name: 'redis-0' }), 'redis-0');
    assert.equal(name({ name: 'front-end-admin' }), 'front-end-admin');
  });

  it('gives SPIFFE identities in the default or a given trust domain', () => {
    assert.equal(store.identityOf(snapshot.pods[0]), 'spiffe://cluster.local/ns/shop/sa/web');
    assert.equal(store.identityOf(snapshot.pods[1], 'example.org'), 'spiffe://example.org/ns/shop/sa/default');
  });

  it('describes each pod once per snapshot: every connection to it shares the description', () => {
    const web = snapshot.pods[0]!;
    const ref = store.workloadRef(web);
    assert.deepEqual(ref, { namespace: 'shop', name: web.name, workload: store.workloadName(web), identity: 'spiffe://cluster.local/ns/shop/sa/web', node: web.nodeName });
    assert.equal(store.workloadRef(web), ref, 'the same object for the same pod');
    assert.ok(Object.isFrozen(ref), 'shared, so nobody may change it');
    assert.notEqual(store.workloadRef(snapshot.pods[1]!), ref);
    // A new snapshot is a new store: a pod that changed is described afresh.
    const renamed = { ...web, serviceAccount: 'web2' };
    const next = new WorkloadStore({ ...snapshot, pods: [renamed, ...snapshot.pods.slice(1)] });
    assert.equal(next.workloadRef(renamed).identity, 'spiffe://cluster.local/ns/shop/sa/web2');
    assert.equal(store.workloadRef(web).identity, 'spiffe://cluster.local/ns/shop/sa/web');
  });
});
