// The objects a lab hands to `weft local`, without building a lab.
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { manifests, toYamlStream, type NodeFacts, type PodFacts } from '../../agent/sandbox/manifests';

const node: NodeFacts = { name: 'lab-n1', ip: '172.30.1.1', ip6: 'fd00:30:1::1', podCidr: '10.244.1.0/24', podCidr6: 'fd00:244:1::/64' };
const pod = (name: string, namespace: string, ip6?: string): PodFacts => ({
  name, namespace, serviceAccount: `sa-${name}`, labels: { app: name }, nodeName: 'lab-n1', hostIp: '172.30.1.1',
  ip: '10.244.1.1', ip6, cgroupPath: `/sys/fs/cgroup/weft-lab-1/n1/pods/${name}`,
});

test('namespaces of pods and mesh namespaces come first, labelled only where asked', () => {
  const objs = manifests([node], [pod('a', 'default'), pod('b', 'other')], { meshNamespaces: ['default', 'weft-system'] }) as any[];
  const namespaces = objs.filter((o) => o.kind === 'Namespace');
  assert.deepEqual(namespaces.map((n) => [n.metadata.name, n.metadata.labels['weft.dev/mesh']]), [
    ['default', 'enabled'], ['other', undefined], ['weft-system', 'enabled'],
  ]);
  assert.deepEqual(objs.map((o) => o.kind), ['Namespace', 'Namespace', 'Namespace', 'Node', 'Pod', 'Pod']);
});

test('a pod carries node, service account, IPs and its cgroup annotation; a node its InternalIPs', () => {
  const objs = manifests([node], [pod('a', 'default', 'fd00:244:1::1')], { extra: [{ kind: 'Service' }] }) as any[];
  const p = objs.find((o) => o.kind === 'Pod');
  assert.equal(p.spec.nodeName, 'lab-n1');
  assert.equal(p.spec.serviceAccountName, 'sa-a');
  assert.equal(p.status.podIP, '10.244.1.1');
  assert.deepEqual(p.status.podIPs, [{ ip: '10.244.1.1' }, { ip: 'fd00:244:1::1' }]);
  assert.equal(p.metadata.annotations['weft.dev/cgroup'], '/sys/fs/cgroup/weft-lab-1/n1/pods/a');
  const n = objs.find((o) => o.kind === 'Node');
  assert.deepEqual(n.status.addresses.map((a: any) => a.address), ['172.30.1.1', 'fd00:30:1::1']);
  assert.equal(objs.at(-1).kind, 'Service');
});

test('the YAML stream parses back to the same objects', () => {
  const objs = manifests([node], [pod('a', 'default')], { meshNamespaces: ['default'] });
  const docs = parseAllDocuments(toYamlStream(objs));
  assert.deepEqual(Array.isArray(docs) ? docs.map((d) => d.toJS()) : [], objs);
});
