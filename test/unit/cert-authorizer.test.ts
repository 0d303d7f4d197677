import { test } from 'node:test';
import assert from 'node:assert/strict';
import { authorizeCsr, type PodPlacement } from '../../agent/controlplane/cert-authorizer';

const pods: PodPlacement[] = [
  { namespace: 'shop', serviceAccount: 'web', nodeName: 'node-a' },
  { namespace: 'shop', serviceAccount: 'web', nodeName: 'node-b' },
  { namespace: 'shop', serviceAccount: 'db', nodeName: 'node-b' },
  { namespace: 'shop', serviceAccount: 'batch', nodeName: '' },
  { namespace: 'other', serviceAccount: 'web', nodeName: 'node-c' },
];

const cases: Array<{ name: string; node: string; ns: string; sa: string; allow: boolean; reason?: RegExp }> = [
  { name: 'pod with that identity on the caller\'s node', node: 'node-a', ns: 'shop', sa: 'web', allow: true },
  { name: 'the same identity from its other node', node: 'node-b', ns: 'shop', sa: 'web', allow: true },
  { name: 'identity whose pods are all on another node', node: 'node-a', ns: 'shop', sa: 'db', allow: false, reason: /shop\/db is scheduled on node node-a \(its pods are on node-b\).*--node/ },
  { name: 'same service account name in another namespace does not count', node: 'node-a', ns: 'other', sa: 'web', allow: false, reason: /other\/web .* node node-a \(its pods are on node-c\)/ },
  { name: 'identity with no pod at all', node: 'node-a', ns: 'shop', sa: 'ghost', allow: false, reason: /no pod runs as service account shop\/ghost: check the pod's spec.serviceAccountName/ },
  { name: 'unscheduled pod does not authorize anyone', node: 'node-a', ns: 'shop', sa: 'batch', allow: false, reason: /\(not scheduled\)/ },
  { name: 'caller without a node', node: '', ns: 'shop', sa: 'web', allow: false, reason: /did not say which node/ },
];

for (const c of cases) {
  test(`authorizeCsr: ${c.name}`, () => {
    const decision = authorizeCsr({ node: c.node }, { namespace: c.ns, serviceAccount: c.sa }, pods);
    assert.equal(decision.allow, c.allow);
    if (!decision.allow) assert.match(decision.reason, c.reason!);
  });
}
